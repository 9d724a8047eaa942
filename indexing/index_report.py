"""What an index run reports: per product (the rows of the CLI's summary table) and for the run, and the
progress callbacks it calls while it works."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class Progress(Protocol):
    """What the pipeline reports while it works; the CLI renders it as progress bars."""

    def begin(self, key: str, description: str, total: int) -> None: ...

    def expect(self, key: str, total: int) -> None:
        """The total grew (work that is counted as it arrives, e.g. chunks while chunking runs)."""

    def advance(self, key: str, n: int = 1) -> None: ...

    def end(self, key: str) -> None: ...


class NoProgress:
    def begin(self, key: str, description: str, total: int) -> None: ...

    def expect(self, key: str, total: int) -> None: ...

    def advance(self, key: str, n: int = 1) -> None: ...

    def end(self, key: str) -> None: ...


@dataclass
class ProductReport:
    """What happened to one product in a run (the rows of the CLI's summary table)."""

    product_id: str
    gate: str = "passed"  # passed | blocked
    reason: str = ""
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    documents: int = 0
    chunks: int = 0
    tokens: int = 0
    embedded: int = 0
    reused: int = 0
    truncated: int = 0
    pii_findings: dict[str, int] = field(default_factory=dict)
    injection_flags: int = 0
    chunk_version: str | None = None
    embedding_version: str | None = None
    seconds: float = 0.0


@dataclass
class IndexReport:
    run_id: str
    release_id: str | None
    previous_release: str | None
    published: bool
    store: str
    elapsed_s: float
    products: list[ProductReport]
    kept: list[ProductReport] = field(default_factory=list)  # kept older versions, as `<product>@<version>`

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "release_id": self.release_id, "previous_release": self.previous_release,
                "published": self.published, "store": self.store, "elapsed_s": round(self.elapsed_s, 3),
                "products": {p.product_id: asdict(p) for p in self.products},
                "kept_versions": {p.product_id: asdict(p) for p in self.kept}}

    @property
    def blocked(self) -> list[ProductReport]:
        return [p for p in self.products if p.gate == "blocked"]

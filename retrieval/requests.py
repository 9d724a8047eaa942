"""One request builder and one set of limits for every entry point (REST JSON, SSE, chat, MCP, CLI).

Each entry point names where a value came from (`where`, e.g. ("body",) or ("body", "meshrag") or
("arguments",)), so an error names the offending field the caller's way, but the rules are these.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from knowledge.errors import MeshragError
from knowledge.model import Principal
from retrieval.settings import RetrievalSettings
from retrieval.types import CURRENT, SearchRequest

Loc = tuple[str | int, ...]
PINNED_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+\-]{0,63}$")  # the version part of `<id>@<version>`


class RequestLimitExceeded(MeshragError):
    """A request value is over a configured limit, or blank where text is needed (422 over HTTP)."""

    def __init__(self, loc: Loc, message: str, kind: str = "limit_exceeded") -> None:
        super().__init__(message)
        self.loc = list(loc)
        self.kind = kind


class RequestIdConflict(MeshragError):
    """The caller's request id already names one of the caller's earlier answers (409 over HTTP)."""


@dataclass(frozen=True)
class RequestLimits:
    max_question_chars: int
    max_k: int
    max_products: int
    top_k: int

    @classmethod
    def of(cls, settings: RetrievalSettings) -> RequestLimits:
        return cls(settings.max_question_chars, settings.max_k, settings.max_products, settings.top_k)

    def question(self, text: str, loc: Loc) -> str:
        if len(text) > self.max_question_chars:
            raise RequestLimitExceeded(loc, f"the question is {len(text)} characters; the limit is "
                                            f"{self.max_question_chars} (MESHRAG_MAX_QUESTION_CHARS)")
        if not text.strip():
            raise RequestLimitExceeded(loc, "the question is blank; ask something", kind="blank")
        return text

    def k(self, k: int | None, loc: Loc) -> int:
        if k is None:
            return min(self.top_k, self.max_k)
        if k < 1:
            raise RequestLimitExceeded(loc, f"k is {k}; it must be at least 1", kind="greater_than_equal")
        if k > self.max_k:
            raise RequestLimitExceeded(loc, f"k is {k}; the limit is {self.max_k} (MESHRAG_MAX_K)")
        return k

    def products(self, products: Sequence[str] | None, loc: Loc) -> tuple[str, ...] | None:
        if products is not None and len(products) > self.max_products:
            raise RequestLimitExceeded(loc, f"{len(products)} products were named; the limit is "
                                            f"{self.max_products} (MESHRAG_MAX_PRODUCTS)")
        if products is None:
            return None
        for i, item in enumerate(products):
            pid, at, version = item.partition("@")
            if not pid.strip() or (at and not PINNED_VERSION.match(version)):
                raise RequestLimitExceeded((*loc, i), f"{item!r} is not a product id or `<product id>@<version>` "
                                                      "(e.g. customer.subscription-metrics@1.0.0)", kind="value_error")
        return tuple(products)

    def as_of(self, value: str | date | None, loc: Loc) -> date | None:
        """The date a request is answered as of: each product at the version current on that day."""
        if value is None or isinstance(value, date):
            return value
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise RequestLimitExceeded(loc, f"as_of {value!r} is not a date; write YYYY-MM-DD, e.g. 2026-06-30",
                                       kind="value_error") from None

    def search_request(self, principal: Principal, query: str, *, where: Loc = ("body",),
                       query_loc: Loc | None = None, k: int | None = None, release: str = CURRENT,
                       products: Sequence[str] | None = None, domains: Sequence[str] | None = None,
                       classifications: Sequence[str] | None = None, documents: Sequence[str] | None = None,
                       rerank: bool | None = None, as_of: str | date | None = None) -> SearchRequest:
        """A SearchRequest from an entry point's fields, every limit checked and an offending one named
        by its place in the caller's request: `where` + field name (the question: `query_loc`)."""
        return SearchRequest(
            query=self.question(query, query_loc or (*where, "question")), principal=principal,
            k=self.k(k, (*where, "k")), release=release, products=self.products(products, (*where, "products")),
            domains=_tuple(domains), classifications=_tuple(classifications), documents=_tuple(documents),
            rerank=rerank, as_of=self.as_of(as_of, (*where, "as_of")))


def _tuple(values: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


def new_request_id() -> str:
    return uuid.uuid4().hex


# A client's own request id: a plain token (safe in headers, logs and provenance).
CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
_SCOPE_MARK = "~"


def scoped_request_id(client_id: str, scope: str) -> str:
    """The record name of a client-chosen request id: the id inside the caller's own namespace (`scope`:
    its API key id, or "anonymous"), so two callers may choose the same id and neither learns that the
    other did. Generated ids are random and used as they are."""
    tag = hashlib.sha256(scope.encode("utf-8")).hexdigest()[:16]
    return f"{client_id}{_SCOPE_MARK}{tag}"


def client_id_of(request_id: str) -> str:
    """The id the client chose (what it sees in X-Request-ID), from a record name."""
    return request_id.split(_SCOPE_MARK, 1)[0]

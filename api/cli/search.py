"""`meshrag search`: hybrid retrieval over a release, as a principal with the given roles."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from api.cli.common import console, domain_errors, err_console, print_json
from knowledge.model import Principal
from retrieval.requests import RequestLimits
from retrieval.searcher import MeshSearcher
from retrieval.serving import ServingContext
from retrieval.settings import RetrievalSettings
from retrieval.types import CURRENT, SearchRequest

SNIPPET_CHARS = 160


def search(
    query: str = typer.Argument(..., help="What to look for, in natural language."),
    roles: list[str] = typer.Option(None, "--as", help="Search with this role (repeatable). Without it: no roles, public products only."),
    principal_name: str | None = typer.Option(None, "--principal", help="Who is searching (recorded in the output)."),
    product: list[str] = typer.Option(None, "--product", help="Only this product (repeatable); PRODUCT@VERSION "
                                      "pins a version, e.g. customer.subscription-metrics@1.0.0."),
    domain: list[str] = typer.Option(None, "--domain", help="Only this domain (repeatable)."),
    release: str = typer.Option(CURRENT, "--release", help="Release id to search, or 'current'."),
    as_of: str | None = typer.Option(None, "--as-of", help="YYYY-MM-DD: search the product versions current on "
                                     "that date."),
    k: int | None = typer.Option(None, "-k", "--k", min=1, max=200, help="How many chunks to return (default: MESHRAG_TOP_K, else 8)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Index data directory (default: MESHRAG_DATA_DIR, else ./.meshrag)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Search the chunks you may read: dense + keyword, fused, with provenance and scores."""
    principal = Principal(id=principal_name or "anonymous", roles=frozenset(roles or ()))
    if not principal.roles:
        err_console.print(f"[yellow]searching as {principal.id} with no roles: public products only "
                          "(pass --as ROLE to read more)[/]")
    with domain_errors():
        settings = RetrievalSettings(**({"data_dir": data_dir} if data_dir is not None else {}))
        searcher = MeshSearcher(ServingContext(settings))
        searcher.warm_up()
        limits = RequestLimits.of(settings)  # the one request builder's checks of pins and dates
        result = searcher.search(SearchRequest(query=query, principal=principal, k=k or settings.top_k, release=release,
                                               products=limits.products(product or None, ("option", "product")),
                                               domains=tuple(domain) if domain else None,
                                               as_of=limits.as_of(as_of, ("option", "as_of"))))
    if as_json:
        print_json({"query": query, "principal": {"id": principal.id, "roles": sorted(principal.roles)},
                    **result.as_dict()})
        return
    table = Table(title=f"{len(result.hits)} chunks for {query!r}",
                  caption=f"release {result.release_id}; searched {', '.join(result.params['products_searched']) or 'nothing'}; "
                          f"{result.timings_ms.get('total', 0):.0f} ms")
    for col in ("#", "score", "product", "document", "section", "text"):
        table.add_column(col, no_wrap=col in ("#", "score", "product"), justify="right" if col in ("#", "score") else "left")
    for hit in result.hits:
        c = hit.chunk
        text = " ".join(c.text.split())
        table.add_row(str(hit.rank), f"{hit.score:.4f}", f"{c.product_id}\nv{hit.product_version}",
                      f"{c.document}\n[dim]{c.start}–{c.end}[/]", " > ".join(c.heading_path),
                      text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else ""))
    console.print(table)

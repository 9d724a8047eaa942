"""`meshrag ask`: a grounded answer with verified citations, recorded in the provenance log."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from api.cli.common import console, domain_errors, err_console, print_json
from knowledge.model import Principal
from retrieval.requests import new_request_id
from retrieval.service import MeshService
from retrieval.settings import RetrievalSettings
from retrieval.types import CURRENT, Outcome

# How `meshrag ask` labels an outcome, and the style of the label.
OUTCOME_STYLE: dict[Outcome, tuple[str, str]] = {
    "answered": ("answered", "bold green"),
    "possibly_relevant": ("possibly relevant (no confirmed answer)", "bold yellow"),
    "abstained": ("abstained", "bold yellow"),
}


def ask(
    question: str = typer.Argument(..., help="The question, in natural language."),
    roles: list[str] = typer.Option(None, "--as", help="Ask with this role (repeatable). Without it: public products only."),
    principal_name: str | None = typer.Option(None, "--principal", help="Who is asking (recorded in provenance)."),
    product: list[str] = typer.Option(None, "--product", help="Only this product (repeatable); PRODUCT@VERSION "
                                      "pins a version, e.g. customer.subscription-metrics@1.0.0."),
    domain: list[str] = typer.Option(None, "--domain", help="Only this domain (repeatable)."),
    release: str = typer.Option(CURRENT, "--release", help="Release id to answer from, or 'current'."),
    as_of: str | None = typer.Option(None, "--as-of", help="YYYY-MM-DD: answer from the product versions current "
                                     "on that date."),
    k: int | None = typer.Option(None, "-k", "--k", help="How many chunks the answerer sees (default MESHRAG_TOP_K, "
                                 "at most MESHRAG_MAX_K)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Index data directory (default: MESHRAG_DATA_DIR, else ./.meshrag)."),
    as_json: bool = typer.Option(False, "--json", help="Print answer, citations, retrieval and provenance as JSON."),
) -> None:
    """Answer from the products you may read, citing where each sentence comes from."""
    principal = Principal(id=principal_name or "cli", roles=frozenset(roles or ()))
    if not principal.roles:
        err_console.print("[yellow]asking with no roles: public products only (pass --as ROLE to read more)[/]")
    with domain_errors():
        settings = RetrievalSettings(**({"data_dir": data_dir} if data_dir is not None else {}))
        service = MeshService(settings)
        service.warm_up()
        req = service.limits.search_request(principal, question, where=("option",), query_loc=("argument", "QUESTION"),
                                            k=k, release=release, products=product or None, domains=domain or None,
                                            as_of=as_of)
        result = service.pipeline.run(req, new_request_id())
    answer = result.answer
    if as_json:
        print_json({"request_id": result.request_id, "answer": answer.as_dict(), "products": [asdict(p) for p in result.products],
                    "retrieval": result.search.as_dict(), "timings_ms": result.timings_ms,
                    "provenance": None if result.record is None else {"seq": result.record.seq,
                                                                      "hash": result.record.hash}})
        return
    label, style = OUTCOME_STYLE[answer.outcome]
    console.print(f"[{style}]{label}[/] [dim](answerability {answer.support:.2f})[/]")
    if answer.short is not None:
        console.print(f"[bold green]{escape(answer.short.text)}[/] [dim]({answer.short.kind}, "
                      f"[{answer.short.marker}])[/]")
    console.print(escape(answer.text), style="bold" if answer.answered else "yellow")
    if answer.closest_products:
        console.print(f"closest readable products: {', '.join(answer.closest_products)}")
    if answer.citations:
        table = Table(title="citations")
        for col in ("n", "product", "document", "span", "section", "support"):
            table.add_column(col, no_wrap=col in ("n", "product", "span"))
        for c in answer.citations:
            table.add_row(str(c.marker), f"{c.product_id} v{c.product_version}", c.document, f"{c.start}–{c.end}",
                          " > ".join(c.heading_path), f"{c.scores.get('support', 0):.2f}")
        console.print(table)
    for p in result.products:
        f = p.freshness
        last = f.last_update.date().isoformat() if f.last_update else "unknown"
        console.print(f"[dim]{p.id}: owner {p.owner} ({p.team}), {p.classification}, "
                      f"freshness {f.status} (last update {last}, SLA {f.sla_days:.0f} days)[/]")
    console.print(f"[dim]request {result.request_id} · release {result.search.release_id} · "
                  f"{answer.dropped_citations} citation(s) dropped · {result.timings_ms['total']:.0f} ms[/]")


def replay(
    request_id: str = typer.Argument(..., help="The request id of a recorded answer."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Index data directory (default: MESHRAG_DATA_DIR, else ./.meshrag)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Re-run a recorded retrieval against its pinned release; exit 1 when other chunks come back."""
    with domain_errors():
        settings = RetrievalSettings(**({"data_dir": data_dir} if data_dir is not None else {}))
        service = MeshService(settings)
        service.warm_up()
        report = service.replay(request_id)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    elif report.same:
        console.print(f"[green]reproduced[/]: the same {len(report.original)} chunks in the same order from {report.release_id}")
    else:
        d = report.as_dict()
        console.print(f"[bold red]differs[/] on {report.release_id}: missing {d['missing']}, extra {d['extra']}")
    if not report.same:
        raise typer.Exit(1)

"""`meshrag provenance show|list|verify`: read and check the log of what answered what.

The CLI runs with the operator's access to the data dir or database, so it reads every principal's
records (admin=True); the HTTP API passes the caller's principal instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import typer
from rich.markup import escape
from rich.table import Table

from api.cli.common import console, domain_errors, print_json
from api.cli.index import DataDirOption, index_settings
from retrieval.provenance import (
    ProvenanceKind,
    ProvenanceLog,
    ProvenanceRecord,
    create_provenance_log,
    record_hash,
)

app = typer.Typer(help="Show, list and verify the provenance log (one record per answer).",
                  no_args_is_help=True)

BackendOption = typer.Option(None, "--backend", help="sqlite or postgres (default: postgres when "
                             "MESHRAG_STORE=pgvector, else sqlite at <data dir>/provenance.sqlite).")
DsnOption = typer.Option(None, "--dsn", help="PostgreSQL URL (default: MESHRAG_DSN, else the embedded server "
                         "under the data dir).")
JsonOption = typer.Option(False, "--json", help="Print JSON.")


def open_log(data_dir: Path | None, backend: str | None, dsn: str | None) -> ProvenanceLog:
    settings = index_settings(data_dir, dsn=dsn)
    kind = cast(ProvenanceKind, backend or ("postgres" if settings.store == "pgvector" else "sqlite"))
    return create_provenance_log(kind, settings.resolved_data_dir(), settings.dsn, settings.pg_schema,
                                 create=False)


@app.command("show")
def show(
    request_id: str = typer.Argument(..., help="The request id an answer returned."),
    as_json: bool = JsonOption,
    data_dir: Path | None = DataDirOption,
    backend: str | None = BackendOption,
    dsn: str | None = DsnOption,
) -> None:
    """One record: who asked what, the release, retrieval params and chunks (in rank order), the answer."""
    with domain_errors():
        log = open_log(data_dir, backend, dsn)
        try:
            log.warm_up()
            record = log.get(request_id, admin=True)
        finally:
            log.close()
    if as_json:
        print_json(record.as_dict())
    else:
        print_record(record)


@app.command("list")
def list_records(
    limit: int = typer.Option(20, "--limit", help="How many records, newest first."),
    principal: str | None = typer.Option(None, "--principal", help="Only this principal's records."),
    as_json: bool = JsonOption,
    data_dir: Path | None = DataDirOption,
    backend: str | None = BackendOption,
    dsn: str | None = DsnOption,
) -> None:
    """The newest records, one line each."""
    with domain_errors():
        log = open_log(data_dir, backend, dsn)
        try:
            log.warm_up()
            records = log.list(limit, principal_id=principal)
        finally:
            log.close()
    if as_json:
        print_json([r.as_dict() for r in records])
        return
    table = Table(title=f"{len(records)} provenance records (newest first)")
    for col in ("seq", "request id", "created", "principal", "release", "outcome", "citations", "question"):
        table.add_column(col, no_wrap=col != "question")
    for r in records:
        table.add_row(str(r.seq), escape(r.request_id), r.created_at, escape(r.principal.id),
                      escape(r.release_id), escape(r.outcome), str(len(r.citations)),
                      escape(_short(r.question, 70)))
    console.print(table)


@app.command("verify")
def verify(
    as_json: bool = JsonOption,
    data_dir: Path | None = DataDirOption,
    backend: str | None = BackendOption,
    dsn: str | None = DsnOption,
) -> None:
    """Walk the hash chain and its anchor. Exit 0 when intact; exit 1 and one line per damaged record."""
    with domain_errors():
        log = open_log(data_dir, backend, dsn)
        try:
            report = log.verify()
        finally:
            log.close()
    if as_json:
        print_json(report.as_dict())
    elif report.ok:
        console.print(f"[green]intact[/]: {report.records} records; head seq {report.head_seq}, "
                      f"hash {report.head_hash} (keep a copy elsewhere to detect a rewritten chain)")
    else:
        console.print(f"[bold red]NOT intact[/]: {len(report.problems)} problem(s) in {report.records} "
                      "records")
        for problem in report.problems:
            console.print(f"  {escape(str(problem))}", soft_wrap=True)
    raise typer.Exit(0 if report.ok else 1)


def print_record(r: ProvenanceRecord) -> None:
    p = console.print
    p(f"[bold]{escape(r.request_id)}[/]  seq {r.seq}  {r.created_at}")
    p(f"principal  {escape(r.principal.id)} (roles: {escape(', '.join(sorted(r.principal.roles)) or '-')})")
    p(f"release    {escape(r.release_id)}")
    p(f"answerer   {escape(r.answerer)}  prompt {escape(str(r.prompt_version))}  "
      f"model {escape(str(r.model))}")
    p(f"params     {escape(json.dumps(r.retrieval_params, sort_keys=True, default=str))}", soft_wrap=True)
    p(f"question   {escape(r.question)}", soft_wrap=True)
    outcome = escape(r.outcome.replace("_", " "))
    state = outcome if r.outcome == "answered" else f"[yellow]{outcome}[/]"
    p(f"answer     ({state}, support {r.support:.3f}, {r.dropped_citations} citation(s) dropped)")
    if r.short:
        short = r.short
        p(f"short      {escape(short['text'])} ({escape(short['kind'])}; chars {short['start']}-{short['end']} "
          f"of citation [{short['marker']}])", soft_wrap=True)
    if r.decision:
        p(f"decision   {escape(json.dumps(r.decision, sort_keys=True, default=str))}", soft_wrap=True)
    p(escape(r.answer), soft_wrap=True)
    table = Table(title=f"retrieved ({len(r.retrieved)}, rank order)")
    for col in ("rank", "chunk", "product", "document", "span", "score"):
        table.add_column(col, no_wrap=True)
    for i, ref in enumerate(r.retrieved, 1):
        score = ref.scores.get("score")
        table.add_row(str(ref.scores.get("rank", i)), escape(ref.chunk_id),
                      escape(f"{ref.product_id} v{ref.product_version}"),
                      escape(f"{ref.document}@{ref.doc_revision[:12]}"), f"{ref.start}-{ref.end}",
                      "" if score is None else f"{score:.4f}")
    console.print(table)
    for c in r.citations:
        where = f"[{c.marker}] {c.product_id} v{c.product_version} {c.document}@{c.doc_revision[:12]}"
        p(f"{escape(where)} {c.start}-{c.end}: {escape(_short(c.text, 160))}", soft_wrap=True)
    p(f"timings ms {escape(json.dumps(r.timings, sort_keys=True))}")
    p(f"chain      prev {r.prev_hash}  hash {r.hash}", soft_wrap=True)
    if record_hash(r.as_dict()) != r.hash:
        p("[bold red]this record no longer matches its hash[/]: run `meshrag provenance verify`")


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"

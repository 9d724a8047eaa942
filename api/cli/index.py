"""`meshrag index` and `meshrag releases …`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich import box
from rich.table import Table

from api.cli.common import console, domain_errors, err_console, print_json
from api.cli.progress import RichProgress
from indexing.pipeline import IndexPipeline, IndexReport
from indexing.releases import ReleaseRegistry, release_registry
from indexing.settings import IndexSettings
from indexing.shared_releases import PgReleaseRegistry

if TYPE_CHECKING:
    from retrieval.settings import RetrievalSettings

DataDirOption = typer.Option(None, "--data-dir", help="Index data directory (default: MESHRAG_DATA_DIR, else ./.meshrag).")
StoreOption = typer.Option(None, "--store", help="faiss (default) or pgvector: where the releases live (shared mode: PostgreSQL).")
DsnOption = typer.Option(None, "--dsn", help="PostgreSQL URL in shared mode (default: MESHRAG_DSN, else the embedded server).")
releases_app = typer.Typer(help="List, inspect, diff, publish and roll back releases.", no_args_is_help=True)


def index_settings(data_dir: Path | None = None, **overrides) -> IndexSettings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return IndexSettings(**values)


def registry_of(data_dir: Path | None, store: str | None, dsn: str | None) -> ReleaseRegistry | PgReleaseRegistry:
    """The release registry the settings call for: the data dir's files, or PostgreSQL in shared mode."""
    return release_registry(index_settings(data_dir, store=store, dsn=dsn))


def index_report_table(report: IndexReport) -> Table:
    """The per-product summary of a run. It fits 80 columns for ids up to ~30 characters (one space between
    columns, no outer border); a longer id folds onto a second line instead of being cut off."""
    table = Table(title="index run", caption="docs: added/changed/removed · PII: findings (handled per policy)",
                  box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0))
    table.add_column("product", overflow="fold")
    for col in ("docs", "chunks", "embedded", "reused", "PII", "gate", "s"):
        table.add_column(col, justify="left" if col == "gate" else "right", overflow="fold")
    for p in report.products:
        gate = "[green]passed[/]" if p.gate == "passed" else "[bold red]blocked[/]"
        table.add_row(p.product_id, f"{p.added}/{p.changed}/{p.removed}", str(p.chunks), str(p.embedded),
                      str(p.reused), str(sum(p.pii_findings.values())), gate, f"{p.seconds:.1f}")
    return table


def print_index_report(report: IndexReport) -> None:
    console.print(index_report_table(report))
    for p in report.products:
        if p.gate == "blocked":
            console.print(f"[bold red]blocked[/] {p.product_id}: {p.reason}")
    state = "published as current" if report.published else (
        "unchanged (already current)" if report.release_id == report.previous_release else "not published")
    console.print(f"release [bold]{report.release_id}[/] — {state}; previous {report.previous_release}; "
                  f"store {report.store}; elapsed {report.elapsed_s:.2f} s")


def index(
    store: str | None = typer.Option(None, "--store", help="faiss (default) or pgvector."),
    dsn: str | None = typer.Option(None, "--dsn", help="PostgreSQL URL for pgvector (default: embedded server under the data dir)."),
    data_dir: Path | None = DataDirOption,
    product: list[str] = typer.Option(None, "--product", help="Only these products (repeatable)."),
    publish: bool = typer.Option(True, "--publish/--no-publish", help="Move `current` to the new release."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Shared mode: when another run is indexing one of "
                              "these products, wait for it (default) or stop at once with an error."),
    answer_vectors: bool = typer.Option(
        True, "--answer-vectors/--no-answer-vectors",
        help="Also embed the passages the answer stage compares questions with (once per release, into the "
             "data dir's embedding cache), so a server on this data dir is ready in seconds."),
) -> None:
    """Index knowledge products into chunk and embedding versions and publish a release."""
    with domain_errors():
        settings = index_settings(data_dir, store=store, dsn=dsn)

        def notice(message: str) -> None:
            err_console.print(f"[yellow]{message}[/]")

        if as_json:
            report = IndexPipeline(settings, notice=notice).run(product or None, publish=publish, wait=wait)
        else:
            with RichProgress() as bars:
                report = IndexPipeline(settings, progress=bars, notice=notice).run(product or None, publish=publish,
                                                                                   wait=wait)
    passages = None
    if answer_vectors and report.release_id is not None:
        with domain_errors():
            from retrieval.settings import RetrievalSettings

            passages = prepare_answer_passages(RetrievalSettings(**settings.model_dump(exclude_unset=True)),
                                               report.release_id, quiet=as_json)
    if as_json:
        print_json(report.as_dict() | {"answer_passages": passages})
    else:
        print_index_report(report)
        if passages is not None:
            console.print(f"answer passages of {passages['release_id']}: {passages['passages']} "
                          f"({passages['embedded']} embedded now) in {passages['seconds']:.1f} s")
    if report.blocked:
        err_console.print(f"[yellow]{len(report.blocked)} product(s) blocked by a gate; their previous version (if any) keeps serving.[/]")


def prepare_answer_passages(settings: RetrievalSettings, release: str, *, quiet: bool = False) -> dict:
    """Embed the answer stage's passages of `release` into the data dir's persistent embedding cache."""
    from retrieval.service import MeshService

    service = MeshService(settings)
    service.warm_up()
    if quiet:
        return service.prepare_answer_vectors(release)
    seen = [0]
    with RichProgress() as bars:
        bars.begin("answer", "answer passages", total=0)

        def progress(done: int, total: int) -> None:
            bars.expect("answer", total)
            bars.advance("answer", done - seen[0])
            seen[0] = done

        result = service.prepare_answer_vectors(release, progress=progress)
        bars.end("answer")
    return result


@releases_app.command("list")
def list_releases(data_dir: Path | None = DataDirOption, as_json: bool = typer.Option(False, "--json"),
                  store: str | None = StoreOption, dsn: str | None = DsnOption) -> None:
    """Every release, oldest first; the current one is marked."""
    with domain_errors():
        reg = registry_of(data_dir, store, dsn)
        current = reg.current_id()
        rels = reg.list()
    if as_json:
        print_json([{"id": r.id, "created_at": r.created_at, "current": r.id == current, "parent": r.parent,
                     "products": {p: e.embedding_version for p, e in r.products.items()}} for r in rels])
        return
    table = Table(title=f"{len(rels)} releases")
    for col in ("id", "created", "products", "chunks", "current"):
        table.add_column(col, no_wrap=col == "id")
    for r in rels:
        table.add_row(r.id, r.created_at, str(len(r.products)), str(sum(e.n_chunks for e in r.products.values())),
                      "[green]●[/]" if r.id == current else "")
    console.print(table)


@releases_app.command("show")
def show_release(release: str = typer.Argument("current"), data_dir: Path | None = DataDirOption,
                 as_json: bool = typer.Option(False, "--json"), store: str | None = StoreOption,
                 dsn: str | None = DsnOption) -> None:
    """One release: its products and their chunk/embedding versions."""
    with domain_errors():
        rel = registry_of(data_dir, store, dsn).get(release)
    if as_json:
        print_json(rel.as_dict())
        return
    console.print(f"[bold]{rel.id}[/] created {rel.created_at}, store {rel.store}, model {rel.model_id}, parent {rel.parent}")
    for pid, e in sorted(rel.products.items()):
        console.print(f"  {pid} v{e.product_version}: {len(e.documents)} docs, {e.n_chunks} chunks, "
                      f"{e.chunk_version} → {e.embedding_version}")


@releases_app.command("diff")
def diff_releases(a: str, b: str, data_dir: Path | None = DataDirOption,
                  as_json: bool = typer.Option(False, "--json"), store: str | None = StoreOption,
                  dsn: str | None = DsnOption) -> None:
    """Documents added, removed and changed from release A to release B."""
    with domain_errors():
        d = registry_of(data_dir, store, dsn).diff(a, b)
    if as_json:
        print_json(d.as_dict())
        return
    console.print(f"{d.a} → {d.b}")
    for label, pairs, style in (("added", d.added, "green"), ("changed", d.changed, "yellow"), ("removed", d.removed, "red")):
        for pid, doc in pairs:
            console.print(f"  [{style}]{label:8}[/] {pid}:{doc}")
    for pid in d.products_added:
        console.print(f"  [green]product added[/] {pid}")
    for pid in d.products_removed:
        console.print(f"  [red]product removed[/] {pid}")
    if not (d.added or d.changed or d.removed or d.products_added or d.products_removed):
        console.print("  no differences")


@releases_app.command("publish")
def publish_release(release: str, data_dir: Path | None = DataDirOption,
                    as_json: bool = typer.Option(False, "--json"),
                    gate: bool = typer.Option(False, "--gate", help="Evaluate RELEASE on the golden sets first and refuse "
                                              "it when it fails the thresholds or regresses against the current release."),
                    thresholds: Path | None = typer.Option(None, "--thresholds", help="Thresholds file (default: eval_sets/thresholds.yaml)."),
                    sets: list[str] = typer.Option(None, "--set", help="Golden set for --gate (repeatable; default: all of eval_sets/golden/)."),
                    store: str | None = StoreOption, dsn: str | None = DsnOption) -> None:
    """Make RELEASE current (atomic); with --gate only when it passes the eval gate."""
    with domain_errors():
        settings = index_settings(data_dir, store=store, dsn=dsn)
        registry = release_registry(settings)
        if gate:
            _gate_publish(registry, release, settings, thresholds, sets, as_json)
        rel = registry.publish(release, reason="publish --gate" if gate else "publish")
    print_json({"current": rel.id}) if as_json else console.print(f"current → [bold]{rel.id}[/]")


def _gate_publish(registry: ReleaseRegistry | PgReleaseRegistry, release: str, settings: IndexSettings,
                  thresholds: Path | None, sets: list[str] | None, as_json: bool) -> None:
    """Evaluate the candidate (and the current release); exit 1, leaving `current` alone, if it fails."""
    from api.cli.evaluate import print_failures, print_report
    from eval_sets.gates import check_publish, load_thresholds
    from eval_sets.harness import EvalRun
    from retrieval.settings import RetrievalSettings

    limits = load_thresholds(thresholds)
    check = check_publish(RetrievalSettings(**settings.model_dump(exclude_unset=True)), release, limits,
                          EvalRun.load(sets))
    print_report(check.report, err_console if as_json else console)
    if registry.current_id() != check.current_id:
        err_console.print(f"[bold red]refused[/]: the current release moved from {check.current_id} to "
                          f"{registry.current_id()} during the evaluation; run the gated publish again")
        raise typer.Exit(1)
    if check.passed:
        return
    print_failures(check.failures)
    if as_json:
        print_json({"refused": check.report.release_id, "current": check.current_id,
                    "failures": [f.as_dict() for f in check.failures]})
    err_console.print(f"[bold red]refused[/]: {check.report.release_id} fails the eval gate "
                      f"({', '.join(dict.fromkeys(f.metric for f in check.failures))}); "
                      f"current stays {check.current_id or 'unset'}")
    raise typer.Exit(1)


@releases_app.command("rollback")
def rollback_release(release: str | None = typer.Argument(None, help="Release to make current (default: the previous one)."),
                     data_dir: Path | None = DataDirOption, as_json: bool = typer.Option(False, "--json"),
                     store: str | None = StoreOption, dsn: str | None = DsnOption) -> None:
    """Move `current` back to the previous release (or to RELEASE)."""
    with domain_errors():
        rel = registry_of(data_dir, store, dsn).rollback(release)
    print_json({"current": rel.id}) if as_json else console.print(f"rolled back: current → [bold]{rel.id}[/]")

"""`meshrag eval [SET...]` (golden sets against a release, optionally gated) and `meshrag eval beir PATH`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from api.cli.common import console, domain_errors, err_console
from eval_sets.gates import GateFailure, GateResult, check_gate, load_thresholds
from eval_sets.harness import EvalRun, evaluate_release
from eval_sets.report import (
    EvalReport,
    markdown,
    overall_table,
    product_compare_table,
    product_table,
    section_table,
)
from indexing.release_evals import ReleaseEval
from indexing.shared_evals import release_eval_store
from retrieval.settings import RetrievalSettings
from retrieval.types import CURRENT

DataDirOption = typer.Option(None, "--data-dir", help="Index data directory (default: MESHRAG_DATA_DIR, else ./.meshrag).")
ThresholdsOption = typer.Option(None, "--thresholds", help="Thresholds file (default: eval_sets/thresholds.yaml).")


class _RunByDefault(TyperGroup):
    """`meshrag eval ARGS` means `meshrag eval run ARGS` unless ARGS starts with a sub-command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_RunByDefault, help="Evaluate releases on the golden sets (`meshrag eval [SET...]`, the "
                  "same as `meshrag eval run`) or a BEIR dataset (`meshrag eval beir PATH`).")


def retrieval_settings(data_dir: Path | None) -> RetrievalSettings:
    return RetrievalSettings(**({"data_dir": data_dir} if data_dir is not None else {}))


def _table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        table.add_row(*row)
    return table


def print_report(report: EvalReport, out: Console = console) -> None:
    """The overall and per-product tables (and the comparison, when there is one)."""
    o = report.overall
    out.print(_table(f"release {report.release_id}: {o.get('n')} questions ({o.get('n_answerable')} answerable)"
                     if report.compare is None else f"release {report.release_id} vs {report.compare.release_id}",
                     *overall_table(report)))
    out.print(_table("discovery and versions", *section_table(report)))
    out.print(_table("per product", *product_table(report)))
    if report.compare is not None:
        out.print(_table(f"per product: A = {report.release_id}, B = {report.compare.release_id}, Δ = A − B",
                         *product_compare_table(report)))
    out.print(f"[dim]restricted products probed: {', '.join(report.restricted_products) or 'none'} · "
              f"sets {report.sets_digest} · {report.timings_s.get('total', 0):.0f} s[/]")


def print_failures(failures: tuple[GateFailure, ...], out: Console = err_console) -> None:
    for f in failures:
        out.print(f"[bold red]FAIL[/] {f.message()}")


def record_results(report: EvalReport, settings: RetrievalSettings) -> list[str]:
    """Keep the aggregates of every release the run evaluated (the catalog's product pages show them).
    Returns the release ids recorded."""
    store = release_eval_store(settings)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    recorded = []
    for evaluated in (report, report.compare):
        if evaluated is None:
            continue
        store.save(ReleaseEval(release_id=evaluated.release_id, recorded_at=now, sets=report.sets,
                               sets_digest=report.sets_digest, overall=evaluated.overall,
                               per_product=evaluated.per_product, settings=evaluated.settings))
        recorded.append(evaluated.release_id)
    return recorded


def _write(path: Path, text: str) -> None:
    if str(path) == "-":
        typer.echo(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@app.command("run")
def run(
    sets: list[str] = typer.Argument(None, help="Golden sets: names in eval_sets/golden/ or JSONL paths (default: all)."),
    release: str = typer.Option(CURRENT, "--release", help="Release id to evaluate, or 'current'."),
    compare: str | None = typer.Option(None, "--compare", help="A second release to evaluate side by side (Δ = release − compare)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the JSON report to this file ('-': stdout)."),
    md_out: Path | None = typer.Option(None, "--md", help="Write the Markdown report to this file ('-': stdout)."),
    gate: bool = typer.Option(False, "--gate", help="Exit 1 when a metric is below (or above) its threshold."),
    thresholds: Path | None = ThresholdsOption,
    answer_metrics: bool = typer.Option(True, "--answer-metrics/--no-answer-metrics", help="Compute the ragas answer metrics."),
    data_dir: Path | None = DataDirOption,
) -> None:
    """Ask every golden question against a release and report retrieval, answer, abstention, access,
    citation and latency metrics, overall and per product."""
    settings = retrieval_settings(data_dir)
    with domain_errors():
        limits = load_thresholds(thresholds) if gate else None
        report = evaluate_release(settings, EvalRun.load(sets), release, compare=compare,
                                  answer_metrics=answer_metrics)
        recorded = record_results(report, settings)
    to_stdout = "-" in (str(json_out), str(md_out))
    out = err_console if to_stdout else console
    print_report(report, out)
    out.print(f"[dim]results recorded for {', '.join(recorded)} (the catalog's product pages show them)[/]")
    if json_out is not None:
        _write(json_out, json.dumps(report.as_dict(), indent=2, default=str))
    if md_out is not None:
        _write(md_out, markdown(report))
    if limits is not None:
        result = check_gate(report, limits)
        _print_gate(result)
        if not result.passed:
            raise typer.Exit(1)


def _print_gate(result: GateResult) -> None:
    if result.not_measured:
        err_console.print(f"[yellow]not measured on these sets (not gated): {', '.join(result.not_measured)}[/]")
    if result.passed:
        err_console.print("[bold green]gate passed[/]")
        return
    print_failures(result.failures)
    err_console.print(f"[bold red]gate failed[/]: {len(result.failures)} metric(s) outside their thresholds")


@app.command("beir")
def beir(
    path: Path = typer.Argument(..., help="BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/)."),
    split: str = typer.Option("test", "--split", help="The qrels split to evaluate."),
    methods: str = typer.Option("dense,keyword,hybrid,hybrid-served", "--methods",
                                help="Comma-separated: dense, keyword, keyword-tuned, hybrid-rrf60, hybrid "
                                     "(fusion tuned on train), hybrid-served (the service's default fusion)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the JSON report to this file ('-': stdout)."),
    data_dir: Path | None = DataDirOption,
) -> None:
    """nDCG@10 and Recall@100 of dense, keyword and hybrid retrieval on a BEIR-format dataset (the
    train-tuned fusion and the service's own default fusion)."""
    from eval_sets.beir import run_beir
    from indexing.embedder import create_embedder

    with domain_errors():
        settings = retrieval_settings(data_dir)
        cache_dir = settings.resolved_data_dir() / "beir" if data_dir is not None else None
        report = run_beir(path, split, tuple(m for m in methods.split(",") if m),
                          create_embedder(settings.embedder), cache_dir=cache_dir)
    out = err_console if json_out is not None and str(json_out) == "-" else console
    out.print(report.table(), markup=False, highlight=False)
    if report.fusion is not None:
        out.print(f"hybrid: {report.fusion.describe()}; train nDCG@10 {report.fusion.train_ndcg_at_10}",
                  markup=False, highlight=False)
    if json_out is not None:
        _write(json_out, json.dumps(report.as_dict(), indent=2, ensure_ascii=False, default=str))

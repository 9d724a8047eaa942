"""`meshrag index`'s summary table on an 80-column terminal: nothing is cut off with "…"."""

from __future__ import annotations

import io

from rich.console import Console

from api.cli.index import index_report_table
from indexing.pipeline import IndexReport, ProductReport
from knowledge.catalog import find_product_folders, product_id_of
from knowledge.settings import SAMPLE_MESH


def rendered(products: list[ProductReport], width: int) -> list[str]:
    report = IndexReport(run_id="run-1", release_id="rel-0123456789abcdef", previous_release=None, published=True,
                         store="faiss", elapsed_s=1.0, products=products)
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    console.print(index_report_table(report))
    return console.export_text().splitlines()


def row(product_id: str, gate: str = "passed", *, docs: tuple[int, int, int] = (57, 12, 3), chunks: int = 7720,
        pii: int = 835, seconds: float = 177.4) -> ProductReport:
    """A row with numbers a first run of a mesh like the sample (or ten times larger) produces."""
    added, changed, removed = docs
    return ProductReport(product_id, gate=gate, added=added, changed=changed, removed=removed, chunks=chunks,
                         embedded=chunks, reused=chunks, pii_findings={"PERSON": pii}, seconds=seconds)


def test_the_sample_mesh_fits_80_columns_one_line_per_product():
    ids = sorted(product_id_of(folder) for folder in find_product_folders(SAMPLE_MESH))
    assert len(ids) >= 6
    lines = rendered([row(pid) for pid in ids[:-1]] + [row(ids[-1], gate="blocked")], width=80)
    text = "\n".join(lines)
    assert "…" not in text
    assert max(len(line) for line in lines) <= 80
    for header in ("product", "docs", "chunks", "embedded", "reused", "PII", "gate"):
        assert header in lines[1], lines[1]
    for pid in ids:  # every id whole on one row, with all of its numbers
        line = next(line for line in lines if pid in line)
        assert "57/12/3" in line and line.count("7720") == 3 and "835" in line and "177.4" in line, line
    assert "blocked" in text


def test_long_ids_and_large_numbers_fold_instead_of_being_cut():
    long_id = "customer-experience.subscription-metrics-for-the-emea-region"
    big = {"docs": (1200, 340, 56), "chunks": 123_456, "pii": 99_999, "seconds": 12345.6}
    lines = rendered([row(long_id, **big), row("people.compensation-handbook", **big)], width=80)
    text = "\n".join(lines)
    assert "…" not in text and max(len(line) for line in lines) <= 80
    for pid in (long_id, "people.compensation-handbook"):
        assert pid in "".join(line.split(" ", 1)[0] for line in lines)  # folded pieces, in order
    assert "1200/340/56" in text and text.count("123456") == 6 and "99999" in text and "12345.6" in text


def test_a_wide_terminal_shows_the_same_table_on_one_line_per_product():
    lines = rendered([row("customer.subscription-metrics")], width=120)
    assert "…" not in "\n".join(lines) and max(len(line) for line in lines) <= 80
    assert any("customer.subscription-metrics" in line and "177.4" in line for line in lines)

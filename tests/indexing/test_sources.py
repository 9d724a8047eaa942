from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from indexing.sources import find_headings, load_document
from knowledge.errors import SourceError


def make_pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF, one text line per entry, Helvetica — enough for pypdf to extract."""

    def escape(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    n = len(pages)
    page_ids = [4 + 2 * i for i in range(n)]
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(f'{p} 0 R' for p in page_ids)}] /Count {n} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for index, lines in enumerate(pages):
        ops = " T* ".join(f"({escape(line)}) Tj" for line in lines)
        content = f"BT /F1 12 Tf 14 TL 72 720 Td {ops} ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {page_ids[index] + 1} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def test_markdown_keeps_the_file_text_apart_from_normalisation(make_doc):
    raw = "# Net revenue\r\n\r\nCafe\u0301 sales\x00 are   counted.\r\n\r\n## Scope\r\n\r\n  indented  text\n".encode()
    doc = make_doc("metrics/net.md", raw)
    assert doc.format == "md"
    assert doc.text == "# Net revenue\n\nCafé sales are   counted.\n\n## Scope\n\n  indented  text\n"
    assert doc.revision == hashlib.sha256(raw).hexdigest()
    assert doc.title == "Net revenue"
    assert doc.path == "metrics/net.md" and doc.product_id == "test.product"


def test_title_falls_back_to_the_file_stem(make_doc):
    assert make_doc("plain-notes.md", "no heading here\n").title == "plain-notes"


def test_same_bytes_give_the_same_document(tmp_path):
    path = tmp_path / "a.html"
    path.write_text("<h1>T</h1><p>x <b>y</b></p><ul><li>a</li><li>b</li></ul>", encoding="utf-8")
    assert load_document("p", path, "a.html") == load_document("p", path, "a.html")


def test_headings_ignore_fenced_code_and_read_setext(make_doc):
    doc = make_doc(
        "guide.md",
        "Guide\n=====\n\nIntro.\n\n```bash\n# not a heading\n```\n\nPart two\n--------\n\nBody.\n\n### Deep ###\n",
    )
    headings = find_headings(doc.text, doc.format)
    assert [(h.level, h.title) for h in headings] == [(1, "Guide"), (2, "Part two"), (3, "Deep")]
    assert doc.text[headings[1].start : headings[1].end] == "Part two\n--------"
    assert doc.title == "Guide"


def test_plain_text_caps_headings(make_doc):
    doc = make_doc(
        "procedure.txt",
        "MONTH-END PROCEDURE\nOwner: Finance\n\n1. PURPOSE\n\nWhy we do it.\n\n2. STEPS (owner: ops)\n\nStep 1. Do it.\n",
    )
    assert doc.text.startswith("MONTH-END PROCEDURE\n")  # plain text is kept as is
    assert doc.title == "MONTH-END PROCEDURE"
    assert [(h.level, h.title) for h in find_headings(doc.text, "txt")] == [
        (1, "MONTH-END PROCEDURE"),
        (2, "1. PURPOSE"),
        (2, "2. STEPS (owner: ops)"),
    ]


def test_html_becomes_readable_markdown_like_text(make_doc):
    html = """<!doctype html><html><head><title>Page title</title><style>p{color:red}</style>
    <script>var secret = 1;</script></head><body>
    <nav><a href="/">Home</a> | <a href="/x">Menu</a></nav>
    <h1>Escalation policy</h1>
    <p>Escalate <strong>P1</strong> tickets
       within 15 minutes.</p>
    <h2>Tiers</h2>
    <ul><li>Tier 1: agents</li><li>Tier 2: <em>leads</em><ul><li>night shift</li></ul></li></ul>
    <table><tr><th>priority</th><th>response</th></tr><tr><td>P1</td><td>15 min</td></tr></table>
    <div>Loose text<br>second line</div>
    </body></html>"""
    doc = make_doc("policy.html", html)
    assert doc.format == "html"
    assert doc.title == "Escalation policy"
    assert doc.text == (
        "# Escalation policy\n\n"
        "Escalate P1 tickets within 15 minutes.\n\n"
        "## Tiers\n\n"
        "- Tier 1: agents\n- Tier 2: leads\n  - night shift\n\n"
        "| priority | response |\n|---|---|\n| P1 | 15 min |\n\n"
        "Loose text\nsecond line\n"
    )
    assert "secret" not in doc.text and "Home" not in doc.text and "color" not in doc.text


def test_html_in_a_declared_legacy_charset(make_doc):
    raw = '<meta charset="windows-1252"><h1>Caf\xe9</h1><p>na\xefve</p>'.encode("cp1252")
    doc = make_doc("legacy.html", raw)
    assert doc.text == "# Café\n\nnaïve\n"


def test_jsonl_one_section_per_record(make_doc):
    records = [
        {"id": "faq-1", "question": "Can I pause?", "answer": "Yes, for up to 60 days.", "tags": ["pause", "billing"]},
        {"term": "Churn", "definition": "Subscribers who cancel.", "owner": "p.raman", "extra": None},
        {"title": "No prose", "updated": "2026-11-01", "version": 2},
    ]
    doc = make_doc("faq.jsonl", "\n".join(json.dumps(r) for r in records) + "\n\n")
    assert doc.format == "jsonl"
    assert doc.title == "faq"
    assert doc.text == (
        "## Can I pause?\n\nid: faq-1\ntags: pause, billing\n\nYes, for up to 60 days.\n\n"
        "## Churn\n\nowner: p.raman\n\nSubscribers who cancel.\n\n"
        "## No prose\n\nupdated: 2026-11-01\nversion: 2\n"
    )


def test_jsonl_bad_line_names_the_line(make_doc):
    with pytest.raises(SourceError, match=r"bad\.jsonl: line 2 is not valid JSON"):
        make_doc("bad.jsonl", '{"id": 1}\n{"id": \n')
    with pytest.raises(SourceError, match="line 1 is not a JSON object"):
        make_doc("list.jsonl", "[1, 2]\n")


def test_csv_one_section_per_row(make_doc):
    content = 'owner,term,definition\np.raman,Churn,"Subscribers who cancel, per month."\nh.lindqvist,Net revenue,Gross sales minus refunds.\n'
    doc = make_doc("glossary.csv", content)
    assert doc.format == "csv"
    assert doc.text == (
        "## Churn\n\nowner: p.raman\n\nSubscribers who cancel, per month.\n\n"
        "## Net revenue\n\nowner: h.lindqvist\n\nGross sales minus refunds.\n"
    )


def test_csv_first_column_is_the_heading_by_default(make_doc):
    doc = make_doc("codes.csv", "code,meaning\nREF-01,Refund approved\n")
    assert doc.text == "## REF-01\n\nmeaning: Refund approved\n"


def test_pdf_pages_are_joined(make_doc):
    doc = make_doc("report.pdf", make_pdf([["Quarterly report", "Net revenue grew."], ["Page two (appendix)."]]))
    assert doc.format == "pdf"
    assert "Quarterly report" in doc.text and "Net revenue grew." in doc.text
    assert doc.text.index("Net revenue grew.") < doc.text.index("Page two (appendix).")
    assert "\n\n" in doc.text  # pages are separate paragraphs
    assert doc.title == "report"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.pdf", b"%PDF-1.4\nthis is not a pdf", r"broken\.pdf: the PDF"),
        ("latin.md", "caf\xe9".encode("latin-1"), r"latin\.md: not valid UTF-8 .*re-save the file as UTF-8"),
        ("empty.pdf", make_pdf([[]]), r"no extractable text"),
        ("table.csv", 'a,b\n"unterminated,1\n', r"table\.csv: not valid CSV"),
        ("slides.pptx", b"PK", r"unsupported file type '.pptx'"),
    ],
)
def test_unreadable_files_raise_source_error(make_doc, name, content, message):
    with pytest.raises(SourceError, match=message):
        make_doc(name, content)


def test_missing_file_raises_source_error(tmp_path: Path):
    with pytest.raises(SourceError, match=r"gone\.md: cannot be read"):
        load_document("p", tmp_path / "gone.md", "gone.md")


def test_rendered_text_cannot_fake_a_heading(make_doc):
    html = "<h1>Runbook</h1><p># of orders per hour</p><pre># restart the worker\nsystemctl restart w</pre>"
    doc = make_doc("ops.html", html)
    assert doc.text == "# Runbook\n\n\\# of orders per hour\n\n```\n# restart the worker\nsystemctl restart w\n```\n"
    assert [h.title for h in find_headings(doc.text, doc.format)] == ["Runbook"]
    record = make_doc("faq.jsonl", json.dumps({"question": "Q?", "answer": "Intro.\n## Not a section"}) + "\n")
    assert [h.title for h in find_headings(record.text, record.format)] == ["Q?"]

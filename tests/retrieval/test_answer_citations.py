"""Sentence splitting and citation verification (fast: hash-embedder scorer, real chunks)."""

from __future__ import annotations

from typing import Any

import pytest

from indexing.types import Chunk
from knowledge.errors import ConfigError
from retrieval.answer.base import closest_products, number_context
from retrieval.answer.citations import cited_text, parse_markers, verify_citations
from retrieval.answer.sentences import collapse, segments, sentence_spans

NET_REVENUE = ("finance.revenue-reporting", "metrics/net-revenue.md")
NOTICE = ("operations.fulfilment-ops", "carriers/carrier-notice-2026-05.html")


def _sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


def _chunk(text: str, product_id: str = "test.product", document: str = "doc.md") -> Chunk:
    return Chunk(chunk_id=f"c-{abs(hash(text)) % 10**8}", product_id=product_id, document=document,
                 doc_revision="r" * 64, text=text, start=0, end=len(text), heading_path=("Doc",), n_tokens=10,
                 n_model_tokens=12, context="Doc")


# ------------------------------------------------------------------------------------------ splitting
def test_sentence_spans_keep_abbreviations_initials_and_numbers_together() -> None:
    text = ("Cobalt Kettle Coffee Co. ships to all 50 states, e.g. Alaska. Gross margin was 41.8% in FY2025. "
            "Ask J. Feld about it. No. The credit is not paid in cash!")
    assert _sentences(text) == ["Cobalt Kettle Coffee Co. ships to all 50 states, e.g. Alaska.",
                                "Gross margin was 41.8% in FY2025.", "Ask J. Feld about it.", "No.",
                                "The credit is not paid in cash!"]


def test_sentence_spans_keep_citation_markers_with_their_sentence() -> None:
    assert _sentences("Net revenue excludes tax.[2] It includes shipping [1][3]. Done [4, 5].") == [
        "Net revenue excludes tax.[2]", "It includes shipping [1][3].", "Done [4, 5]."]


def test_segments_skip_table_separators_and_header_rows_and_join_wrapped_lines() -> None:
    text = ("# Title\n\nThe first line wraps\nonto a second line. Then a second sentence.\n\n"
            "| field | value |\n|---|---|\n| Owner | Finance Analytics |\n\n"
            "- An item that\n  continues here.\n- Another item\n\nowner: j.feld\nupdated: 2026-11-17\n")
    found = segments(text)
    assert [(s.kind, s.text) for s in found] == [
        ("heading", "Title"),
        ("prose", "The first line wraps onto a second line."), ("prose", "Then a second sentence."),
        ("table", "| Owner | Finance Analytics |"),
        ("list", "An item that continues here."), ("list", "Another item"),
        ("field", "owner: j.feld"), ("field", "updated: 2026-11-17"),
    ]
    for seg in found:
        assert collapse(text[seg.start:seg.end]) == seg.text


def test_segments_spans_hold_on_real_chunks(sample_chunks: Any) -> None:
    for product_id, document in (NET_REVENUE, NOTICE):
        for chunk in sample_chunks(product_id, document):
            for seg in segments(chunk.text):
                assert collapse(chunk.text[seg.start:seg.end]) == seg.text


def test_parse_markers_reads_lists_and_short_ranges() -> None:
    assert parse_markers("3") == [3]
    assert parse_markers("1, 4") == [1, 4]
    assert parse_markers("2-4") == [2, 3, 4]
    assert parse_markers("1; 2") == [1, 2]
    assert parse_markers("1-900") == [1, 900]  # not expanded: its ends are checked like any marker


# ------------------------------------------------------------------------------------------ verification
@pytest.fixture
def three_hits(sample_chunks: Any, make_hits: Any) -> list[Any]:
    chunks = [c for c in sample_chunks(*NET_REVENUE) if c.heading_path[-1] in
              ("What is included", "What is excluded", "Recognition date")]
    assert len(chunks) == 3
    return make_hits(chunks)


def _first_sentence(chunk: Chunk) -> str:
    return next(s.text for s in segments(chunk.text) if s.kind in ("prose", "list") and len(s.text) > 40)


def test_verified_citations_are_renumbered_by_first_use_and_carry_provenance(
        three_hits: list[Any], hash_answer_scorer: Any) -> None:
    third, first = _first_sentence(three_hits[2].chunk), _first_sentence(three_hits[0].chunk)
    verified = verify_citations(f"{third} [3] {first} [1]", three_hits, hash_answer_scorer, 0.4)
    assert verified.dropped == 0
    assert [(c.marker, c.chunk_id) for c in verified.citations] == [(1, three_hits[2].chunk_id),
                                                                     (2, three_hits[0].chunk_id)]
    assert [s.markers for s in verified.sentences] == [(1,), (2,)]
    assert "[3]" not in verified.text and verified.text.count("[1]") == 1 and verified.text.count("[2]") == 1
    citation, hit = verified.citations[0], three_hits[2]
    assert (citation.product_id, citation.product_version, citation.release_id, citation.chunk_version,
            citation.document, citation.doc_revision, citation.start, citation.end, citation.heading_path,
            citation.text) == (hit.product_id, hit.product_version, hit.release_id, hit.chunk_version,
                               hit.chunk.document, hit.chunk.doc_revision, hit.chunk.start, hit.chunk.end,
                               hit.chunk.heading_path, hit.chunk.text)
    assert citation.scores["support"] == 1.0 and citation.scores["rank"] == 3
    assert citation.scores["dense"] == hit.dense_score


def test_marker_outside_the_context_is_dropped_and_counted(three_hits: list[Any],
                                                           hash_answer_scorer: Any) -> None:
    first = _first_sentence(three_hits[0].chunk)
    verified = verify_citations(f"{first} [1][7]", three_hits, hash_answer_scorer, 0.4)
    assert verified.dropped == 1
    assert [c.chunk_id for c in verified.citations] == [three_hits[0].chunk_id]
    assert "[7]" not in verified.text and verified.sentences[0].markers == (1,)


def test_unsupported_citation_is_dropped_and_its_sentence_kept_unsupported(
        three_hits: list[Any], hash_answer_scorer: Any) -> None:
    unrelated = "Quokkas sleep through most afternoons on Rottnest Island."
    first = _first_sentence(three_hits[0].chunk)
    verified = verify_citations(f"{first} [1] {unrelated} [2]", three_hits, hash_answer_scorer, 0.4)
    assert verified.dropped == 1
    assert len(verified.citations) == 1
    kept, orphan = verified.sentences
    assert kept.markers == (1,) and kept.support == 1.0
    assert orphan.text == unrelated and orphan.markers == () and orphan.support == 0.0
    assert unrelated in verified.text


def test_sentence_without_any_marker_is_kept_with_support_zero(three_hits: list[Any],
                                                               hash_answer_scorer: Any) -> None:
    verified = verify_citations("Here is what the sources say.", three_hits, hash_answer_scorer, 0.4)
    assert verified.citations == () and verified.dropped == 0
    assert verified.sentences[0].markers == () and verified.sentences[0].support == 0.0


def test_markers_on_their_own_line_belong_to_the_sentence_before(three_hits: list[Any],
                                                                 hash_answer_scorer: Any) -> None:
    first = _first_sentence(three_hits[1].chunk)
    verified = verify_citations(f"- {first}\n[2]", three_hits, hash_answer_scorer, 0.4)
    assert verified.sentences[0].markers == (1,)
    assert verified.text.startswith("- ") and verified.citations[0].chunk_id == three_hits[1].chunk_id


def test_grouped_and_repeated_markers(three_hits: list[Any], hash_answer_scorer: Any) -> None:
    first = _first_sentence(three_hits[0].chunk)
    verified = verify_citations(f"{first} [1, 1][1]", three_hits, hash_answer_scorer, 0.4)
    assert verified.dropped == 0 and verified.sentences[0].markers == (1,)


def test_min_support_out_of_range_is_refused(three_hits: list[Any], hash_answer_scorer: Any) -> None:
    with pytest.raises(ConfigError, match="min_support"):
        verify_citations("x", three_hits, hash_answer_scorer, 1.5)


def test_helpers_number_context_and_list_closest_products(make_hits: Any) -> None:
    hits = make_hits([_chunk("a b c", "p.one"), _chunk("d e f", "p.two"), _chunk("g h i", "p.one"),
                      _chunk("j k l", "p.three"), _chunk("m n o", "p.four")])
    assert list(number_context(hits)) == [1, 2, 3, 4, 5]
    assert closest_products(hits) == ("p.one", "p.two", "p.three")
    assert cited_text(hits[0]) == "Doc\n\na b c"

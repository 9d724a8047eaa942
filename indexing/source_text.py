"""Bytes to text as every source format reads them: UTF-8 (or an encoding the file declares), NFC, "\\n"
line endings, no NUL bytes."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from knowledge.errors import SourceError


def normalise_text(text: str) -> str:
    """NFC, "\\n" line endings, no NUL bytes. Nothing else changes."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return unicodedata.normalize("NFC", text)


def decode_text(raw: bytes, path: Path, fallback_encoding: str | None = None) -> str:
    """`raw` as UTF-8 (a BOM dropped), else as `fallback_encoding`; SourceError naming the bad byte."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if fallback_encoding:
            try:
                return raw.decode(fallback_encoding)
            except (UnicodeDecodeError, LookupError):
                pass
        raise SourceError(
            f"{path}: not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8"
        ) from exc

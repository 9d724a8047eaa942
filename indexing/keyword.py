"""A BM25 keyword index over chunk texts, built with `bm25s`.

Scoring: Lucene's BM25 variant (`method="lucene"`), k1 = 1.2, b = 0.75 — Lucene/Elasticsearch
defaults, so scores are comparable with what people know from those engines.

Tokenisation (one function for documents and queries): lower-case, Unicode `\\w+` runs (so
`fct_net_revenue` stays one token and `DR-014` becomes `dr`, `014`), minus Lucene's English stopword list
(33 words, shipped with bm25s), then each token's English Snowball stem (PyStemmer), so "refund",
"refunds" and "refunded" are one term. Stemming lifted SciFact BM25 nDCG@10 from 0.6664 to 0.6857
(benchmarks/scifact.py). Stems are memoised: tokenising a query is on the search hot path.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from functools import cache, lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.errors import ConfigError

logger = logging.getLogger(__name__)

NAME = "bm25s-lucene"
# Bump when tokenisation or scoring changes: saved indexes of another version are refused.
# 2: English Snowball stemming.
VERSION = "2"
STEMMER = "snowball-english"

_TOKEN = re.compile(r"\w+")
_META_FILE = "meshrag-keyword.json"
_BM25_DIR = "bm25"


def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


_stemmer: Any = None
_stemmer_lock = threading.Lock()  # a PyStemmer instance must not be called from two threads at once


@lru_cache(maxsize=1 << 16)
def _stem(token: str) -> str:
    global _stemmer
    with _stemmer_lock:
        if _stemmer is None:
            import Stemmer

            _stemmer = Stemmer.Stemmer("english", 0)  # its own cache off: `lru_cache` is ours
        return _stemmer.stemWord(token)


@cache
def _stemmer_version() -> str:
    return metadata.version("PyStemmer")


class KeywordIndex:
    """BM25 over a fixed set of (id, text) pairs: build or load, then search."""

    NAME = NAME
    VERSION = VERSION

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ConfigError(f"BM25 parameters out of range: k1={k1} (>= 0), b={b} (0..1)")
        self.k1 = k1
        self.b = b
        self.ids: list[str] = []
        self._bm25: Any = None
        self._stop: frozenset[str] | None = None

    def tokenize(self, text: str) -> list[str]:
        """The terms of `text` (documents and queries alike): stemmed `\\w+` runs, stopwords dropped."""
        if self._stop is None:
            self._stop = _stopwords()
        stop, stem = self._stop, _stem
        return [stem(t) for t in _TOKEN.findall(text.lower()) if t not in stop]

    def build(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        """Index `texts` under `ids` (replacing whatever was indexed before)."""
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
        if len(set(ids)) != len(ids):
            raise ValueError("ids must be unique")
        import bm25s

        tokenized = [self.tokenize(t) for t in texts]
        # Our own sorted vocabulary: bm25s would number tokens in set order, which varies between runs.
        vocab = {token: i for i, token in enumerate(sorted({t for doc in tokenized for t in doc}))}
        bm25 = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        if ids:
            bm25.index(([[vocab[t] for t in doc] for doc in tokenized], vocab), show_progress=False)
        self.ids = list(ids)
        self._bm25 = bm25

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """Up to `k` (id, score) pairs, best first (ties: index order); documents scoring 0 are left out."""
        if self._bm25 is None:
            raise RuntimeError("KeywordIndex is empty: call build() or load() first")
        if k <= 0 or not self.ids:
            return []
        vocab = self._bm25.vocab_dict
        token_ids = [vocab[t] for t in self.tokenize(query) if t in vocab and t != ""]
        if not token_ids:
            return []
        scores = np.asarray(self._bm25.get_scores(token_ids), dtype=np.float64)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.ids[i], float(scores[i])) for i in order if scores[i] > 0.0]

    def __len__(self) -> int:
        return len(self.ids)

    def save(self, directory: str | Path) -> None:
        """Write the index to `directory`, replacing it atomically (a reader sees old or new, never half)."""
        if self._bm25 is None:
            raise RuntimeError("KeywordIndex is empty: call build() first")
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        # ".tmp-" names: never listed, and swept by `atomic.remove_stale_staging` after a crash.
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
        try:
            meta = {"name": NAME, "version": VERSION, "k1": self.k1, "b": self.b,
                    "stemmer": {"algorithm": STEMMER, "PyStemmer": _stemmer_version()}, "ids": self.ids}
            if self.ids:
                self._bm25.save(str(staging / _BM25_DIR), show_progress=False)
            (staging / _META_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
            _replace_dir(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @classmethod
    def load(cls, directory: str | Path) -> KeywordIndex:
        """An index saved by `save`; ConfigError if it is missing or from another NAME/VERSION."""
        import bm25s

        directory = Path(directory)
        meta_path = directory / _META_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(
                f"no keyword index at {directory} ({exc}); rebuild it with `meshrag index`"
            ) from exc
        if meta.get("name") != NAME or meta.get("version") != VERSION:
            raise ConfigError(
                f"keyword index at {directory} is {meta.get('name')} v{meta.get('version')}, "
                "this meshrag reads "
                f"{NAME} v{VERSION}; rebuild it with `meshrag index`"
            )
        built_with = meta.get("stemmer", {}).get("PyStemmer")
        if built_with != _stemmer_version():
            # Snowball releases rarely change English stems, and a changed stem only loses that term's
            # keyword matches: worth a warning, not a refusal.
            logger.warning("keyword index at %s was built with PyStemmer %s, this is %s: query terms whose "
                           "stem changed will not match", directory, built_with, _stemmer_version())
        index = cls(k1=float(meta["k1"]), b=float(meta["b"]))
        index.ids = list(meta["ids"])
        if index.ids:
            index._bm25 = bm25s.BM25.load(str(directory / _BM25_DIR), show_progress=False, verbosity=0)
        else:
            index._bm25 = bm25s.BM25(k1=index.k1, b=index.b, method="lucene")
        return index


def _replace_dir(staging: Path, target: Path) -> None:
    """Move `staging` to `target`; an existing target is renamed away first and removed after."""
    if not target.exists():
        os.replace(staging, target)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-old-", dir=target.parent))
    os.rmdir(retired)
    os.replace(target, retired)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(retired, target)
        raise
    shutil.rmtree(retired, ignore_errors=True)

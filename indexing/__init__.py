"""Sources → clean → PII → chunk → embed → store: the embedder, the stores and keyword index, versions, releases, lineage."""

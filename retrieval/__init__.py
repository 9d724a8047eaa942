"""The query side: hybrid search, fusion, rerank, access filter, answerers, citation checks, provenance."""

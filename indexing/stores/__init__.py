"""Store implementations behind the VectorStore protocol."""

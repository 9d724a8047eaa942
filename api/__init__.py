"""FastAPI app, routes, auth, OpenAI-compatible chat, MCP, and the meshrag CLI."""

"""The `meshrag` command: one entry point, one sub-command group per area."""

from __future__ import annotations

import typer

from api.cli import ask, evaluate, index, keys, mcp, products, provenance, search, serve

app = typer.Typer(
    name="meshrag",
    help="Knowledge products for a data mesh: catalog, index, ask with citations, evaluate, serve.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(products.app, name="products")
app.command("index")(index.index)
app.add_typer(index.releases_app, name="releases")
app.add_typer(evaluate.app, name="eval")
app.add_typer(provenance.app, name="provenance")
app.command("search")(search.search)
app.command("serve")(serve.serve)
app.add_typer(keys.app, name="keys")
app.command("mcp")(mcp.mcp)
app.command("ask")(ask.ask)
provenance.app.command("replay")(ask.replay)


if __name__ == "__main__":  # pragma: no cover
    app()

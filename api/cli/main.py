"""The `meshrag` command: one entry point, one sub-command group per area."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from pydantic import ValidationError

from api.cli import ask, evaluate, index, keys, mcp, products, provenance, search, serve
from api.cli.common import err_console
from api.errors import InvalidApiKey, KeyStoreUnavailable
from knowledge.errors import MeshragError

# What a command may fail with on purpose, or from its input and environment: one line, exit 2.
ANTICIPATED = (MeshragError, InvalidApiKey, KeyStoreUnavailable, ValidationError, OSError)


class OneLineErrors(typer.Typer):
    """Every command's failure is one line on stderr, never a traceback (MESHRAG_DEBUG=1 shows it)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ANTICIPATED as exc:
            if os.environ.get("MESHRAG_DEBUG"):
                raise
            err_console.print(f"[bold red]error:[/] {one_line(exc)}", highlight=False, soft_wrap=True)
            sys.exit(2)
        except Exception as exc:
            if os.environ.get("MESHRAG_DEBUG"):
                raise
            err_console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {one_line(exc)} "
                              "(MESHRAG_DEBUG=1 shows the traceback)", highlight=False, soft_wrap=True)
            sys.exit(1)


def one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return f"invalid setting {where or exc.title}: {first.get('msg')}{more}"
    if isinstance(exc, InvalidApiKey):
        return f"{exc} (check MESHRAG_API_KEY against `meshrag keys list`)"
    return " ".join(str(exc).split()) or type(exc).__name__


app = OneLineErrors(
    name="meshrag",
    help="Knowledge products for a data mesh: catalog, index, ask with citations, evaluate, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
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

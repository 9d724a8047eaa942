"""Helpers shared by CLI commands: consoles, JSON output, turning domain errors into exit codes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from knowledge.errors import MeshragError
from knowledge.settings import KnowledgeSettings

# Piped output (CI logs, files) has no terminal width; Rich would assume 80 columns and crush tables.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 150
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)

RootsOption = typer.Option(None, "--root", help="Mesh root folder (repeatable). Default: MESHRAG_MESH_ROOTS, else the bundled sample mesh.")


def mesh_roots(roots: list[Path] | None) -> list[Path]:
    return list(roots) if roots else KnowledgeSettings().mesh_roots


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def domain_errors() -> Iterator[None]:
    """Print a domain error as one clear line and exit 2, instead of a traceback."""
    try:
        yield
    except MeshragError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None

"""``python -m flipbook.server [OPTIONS]``: the same as ``flipbook serve [OPTIONS]``."""

from __future__ import annotations

import sys

import typer

from flipbook.commands import serve
from flipbook.errors import FlipbookError


def main() -> None:
    """Run the serve command; input errors print one line and exit with 2, as the flipbook CLI does."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    serve.register(app)
    try:
        app()
    except FlipbookError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

"""``python -m flipbook.server [OPTIONS]``: the same as ``flipbook serve [OPTIONS]``."""

from __future__ import annotations

import typer

from flipbook.commands import serve


def main() -> None:
    """Run the serve command; input errors print one line and exit with 2, as the flipbook CLI does."""
    from flipbook.cli import run_app

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    serve.register(app)
    run_app(app)


if __name__ == "__main__":
    main()

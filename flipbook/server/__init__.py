"""``flipbook serve``: an HTTP server over flipbook's engine (jobs in SQLite, A1111 and Deforum APIs).

``create_app(settings)`` builds the FastAPI app (see :mod:`flipbook.server.app`); ``python -m flipbook.server``
runs it as ``flipbook serve`` does.
"""

from flipbook.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]


def create_app(settings: ServerSettings):
    """The FastAPI app for ``settings`` (imported on use: the CLI loads this package for ``--help`` too)."""
    from flipbook.server.app import create_app as build

    return build(settings)

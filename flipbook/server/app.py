"""``create_app(settings)``: the FastAPI app of ``flipbook serve``, and the one object that holds its state.

Everything a running server has (the SQLite store, the progress hub, the workers, the runs-folder lock)
lives in the :class:`ServerState` that ``create_app`` builds and the lifespan opens and closes; nothing is
global, so tests run several servers in one process. The endpoints only adapt HTTP to flipbook's spec
model, ``render()``/``resume()`` and the sampling core:

- ``/api/...``: flipbook's own job API (:mod:`flipbook.server.api`)
- ``/sdapi/v1/...``: the AUTOMATIC1111 API subset clients use most (:mod:`flipbook.server.a1111`)
- ``/deforum_api/...``: the Deforum extension's batch API (:mod:`flipbook.server.deforum_api`)
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from flipbook import __version__
from flipbook.errors import FlipbookError
from flipbook.server.jobs import Workers
from flipbook.server.processes import WorkerProcesses
from flipbook.server.progress import ProgressHub
from flipbook.server.security import RejectedUpload, SecurityMiddleware, public_text
from flipbook.server.settings import ServerSettings
from flipbook.server.stills import STILL_KINDS
from flipbook.server.store import IdempotencyKey, JobStore, NewJob

log = logging.getLogger("flipbook.server")
LOCK_FILE = "flipbook.lock"


class ServerState:
    """One server's state: settings, SQLite store, progress hub and workers (opened by the app's lifespan)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.hub = ProgressHub()
        self._store: JobStore | None = None
        self.workers: Workers | WorkerProcesses | None = None
        self._lock: IO[str] | None = None

    @property
    def store(self) -> JobStore:
        if self._store is None:
            raise RuntimeError("the server has not started (use the app's lifespan)")
        return self._store

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Lock the runs folder, open the database, mark jobs a dead server left running as interrupted,
        and start the workers (which pick up jobs still queued from before)."""
        self.settings.runs_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_runs_dir(self.settings)
        self._store = JobStore(self.settings.db_path)
        recovered = self._store.recover(STILL_KINDS)
        if recovered["interrupted"]:
            log.warning(
                "interrupted by the last shutdown (resume them): %s", ", ".join(recovered["interrupted"])
            )
        self.hub.bind(loop)
        s = self.settings
        if s.workers > 0:
            _import_engine()
        if s.worker_processes and s.workers > 0:
            self.workers = WorkerProcesses(self._store, self.hub, s)
        else:
            self.workers = Workers(self._store, self.hub, s.runs_dir, s.models_dir, s.workers)
        self.workers.start()

    def close(self) -> None:
        """Stop the workers (running jobs become interrupted), close the database, release the lock."""
        stopped = self.workers.stop(self.settings.graceful_shutdown_s) if self.workers is not None else True
        self.hub.bind(None)
        if self._store is not None and stopped:  # a worker still busy keeps its connection; the OS closes it
            self._store.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def queue(
        self,
        jobs: list[NewJob],
        batch: tuple[str, dict[str, Any]] | None = None,
        key: IdempotencyKey | None = None,
    ) -> None:
        """Queue validated jobs (all or none, with their idempotency key) and wake an idle worker."""
        self.store.insert(jobs, batch, key)
        if self.workers is not None:
            self.workers.wake()

    def current_model(self) -> str:
        """The checkpoint A1111 requests use when they name none (``/sdapi/v1/options``)."""
        return self.store.option("sd_model_checkpoint", self.settings.default_model)


def _import_engine() -> None:
    """Import the render engine (torch, diffusers: seconds) before serving, not inside the first job or
    request, where the import would hold up requests being answered meanwhile (the server prepares every
    render before queueing it, with worker processes too)."""
    import flipbook.runs.render  # noqa: F401
    import flipbook.sampling.core  # noqa: F401


def _lock_runs_dir(settings: ServerSettings) -> IO[str] | None:
    """An exclusive lock on the runs folder: a second server on the same folder would mark the first one's
    running jobs interrupted. Released by the OS when the process dies, however it dies."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one server per runs folder is up to the user
        return None
    handle = open(settings.runs_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 (held while serving)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise FlipbookError(
            "--runs-dir", str(settings.runs_dir), "a runs folder no other flipbook server is using"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def create_app(settings: ServerSettings) -> FastAPI:
    """The server for ``settings`` (checked here: a non-loopback host without credentials is refused)."""
    from flipbook.server import a1111, a1111_controlnet, a1111_extras, api, deforum_api

    settings = settings.checked()
    state = ServerState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.open(asyncio.get_running_loop())
        try:
            yield
        finally:
            await asyncio.to_thread(state.close)

    app = FastAPI(
        title="flipbook",
        version=__version__,
        summary="Stable Diffusion animations from spec files: jobs, progress, A1111 and Deforum APIs.",
        lifespan=lifespan,
    )
    app.state.flipbook = state
    app.include_router(api.router)
    app.include_router(a1111.router)
    app.include_router(a1111_extras.router)
    app.include_router(a1111_controlnet.router)
    app.include_router(deforum_api.router)
    app.add_exception_handler(RejectedUpload, _error_handler(415))
    app.add_exception_handler(FlipbookError, _error_handler(422))
    from flipbook.server.ui import mount_ui  # the web UI at /ui (Gradio), / redirects there

    mount_ui(app, state)
    app.add_middleware(SecurityMiddleware, settings=settings)
    if settings.allow_origins:  # outermost, so a browser's preflight gets its answer before credentials
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.allow_origins),
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    return app


def _error_handler(status: int):
    """Input errors as flipbook prints them (field, value, what is allowed), with the field on its own; the
    server's folders are left out of the text (paths relative to the runs or models folder)."""

    async def handle(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, FlipbookError)
        settings = server_state(request).settings
        body = {
            "detail": public_text(str(error), settings),
            "field": error.field,
            "allowed": public_text(error.allowed, settings),
        }
        return JSONResponse(body, status_code=status)

    return handle


def server_state(request: Request) -> ServerState:
    """The state of the app handling ``request`` (for endpoints)."""
    return request.app.state.flipbook

"""A real uvicorn server on a loopback port, in a background thread: for tests and benchmarks that need
HTTP over a socket (client libraries, concurrent connections) rather than the in-process test client."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time

from flipbook.server.settings import ServerSettings


class BackgroundServer:
    """``with BackgroundServer(settings) as server: server.url ...``: uvicorn serving ``create_app(settings)``
    on a free port of ``settings.host``; stopped (gracefully) on exit."""

    def __init__(self, settings: ServerSettings, startup_timeout: float = 60.0) -> None:
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without it every
        # response waits ~40 ms for the client's delayed ACK (Nagle)
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((settings.host, 0))
        self.port = self._socket.getsockname()[1]
        self.settings = dataclasses.replace(settings, port=self.port)
        self.startup_timeout = startup_timeout
        self._thread: threading.Thread | None = None
        self._server = None

    @property
    def url(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        import uvicorn

        from flipbook.server.app import create_app

        config = uvicorn.Config(
            create_app(self.settings),
            log_level="warning",
            timeout_graceful_shutdown=int(self.settings.graceful_shutdown_s),
            backlog=2048,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(self.settings.graceful_shutdown_s + 30)
        self._socket.close()

"""What one ``flipbook serve`` process is configured with, checked before anything starts.

The rule that matters most lives here: a server reachable from other machines must ask for credentials, so
binding anything but a loopback address without ``--auth`` or ``--token`` is refused with one clear error.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from flipbook.errors import FlipbookError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
DEFAULT_PORT = 7860


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``create_app`` needs; built from the ``flipbook serve`` options (or directly in tests)."""

    runs_dir: Path = Path("runs")
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    models_dir: Path | None = None
    workers: int = 1
    worker_processes: bool = True  # each worker in a process of its own (False: threads of the server)
    heartbeat_s: float = 2.0  # how often a worker process says it is alive
    heartbeat_timeout_s: float = 60.0  # silence after which its job is taken back (the process killed first)
    ray: str | None = None  # render on Ray actors (local, auto or an address): one farm-driver process
    ray_actors: int = 2  # CPU actors when the Ray cluster has no GPU
    auth: tuple[str, str] | None = None  # HTTP Basic user and password
    token: str | None = None  # Bearer token
    allow_origins: tuple[str, ...] = ()  # extra origins allowed to POST/DELETE (and CORS)
    allow_hosts: tuple[str, ...] = ()  # extra Host header names accepted on a loopback server
    max_upload_mb: float = 50.0
    default_model: str = "tiny"
    graceful_shutdown_s: float = 5.0

    @property
    def db_path(self) -> Path:
        return self.runs_dir / "flipbook.db"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def auth_required(self) -> bool:
        return self.auth is not None or self.token is not None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def checked(self) -> ServerSettings:
        """The settings with origins normalised; one FlipbookError naming the option when something is wrong
        (above all: a non-loopback address without credentials)."""
        if not self.loopback and not self.auth_required:
            raise FlipbookError(
                "--host",
                self.host,
                "a loopback address (127.0.0.1, ::1, localhost), or --auth USER:PASS or --token TOKEN",
                detail="the server would accept jobs from anyone who can reach it",
            )
        if not 0 <= self.port <= 65535:
            raise FlipbookError("--port", self.port, "a port number from 0 to 65535")
        if self.workers < 0:
            raise FlipbookError("--workers", self.workers, "0 (queue only) or more worker processes")
        if self.ray is not None and not self.worker_processes:
            raise FlipbookError("--ray", self.ray, "worker processes (the farm's driver runs in one)")
        if not 0 < self.heartbeat_s < self.heartbeat_timeout_s:
            raise FlipbookError(
                "--heartbeat-timeout",
                self.heartbeat_timeout_s,
                f"more seconds than the heartbeat interval ({self.heartbeat_s:g} s)",
            )
        if not self.max_upload_mb > 0:
            raise FlipbookError("--max-upload-mb", self.max_upload_mb, "a size in megabytes above 0")
        if self.token is not None and not self.token.strip():
            raise FlipbookError("--token", "", "a non-empty token")
        origins = tuple(normalise_origin(o, "--allow-origin") for o in self.allow_origins)
        hosts = tuple(h.strip().lower().strip("[]") for h in self.allow_hosts if h.strip())
        return replace(
            self, runs_dir=Path(self.runs_dir).expanduser(), allow_origins=origins, allow_hosts=hosts
        )


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """``user:pass`` -> ``("user", "pass")``; the password may contain ``:``, neither part may be empty."""
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise FlipbookError("--auth", "<hidden>", "USER:PASSWORD, both non-empty")
    return user, password


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (``0.0.0.0`` and ``::`` do not)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def normalise_origin(origin: str, option: str = "origin") -> str:
    """``HTTP://Example.com:80/`` -> ``http://example.com``: origins compare as scheme, host and port only."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise FlipbookError(option, origin, "an origin: http(s)://HOST[:PORT], no path")
    return origin_key(parts.scheme, parts.hostname, parts.port)


def origin_key(scheme: str, hostname: str, port: int | None) -> str:
    """One spelling per origin: default ports left out, IPv6 hosts in brackets, lower case."""
    scheme, hostname = scheme.lower(), hostname.lower().strip("[]")
    if ":" in hostname:
        hostname = f"[{hostname}]"
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{hostname}" + ("" if port in (None, default) else f":{port}")

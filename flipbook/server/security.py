"""Who may talk to the server, what they may send, and which files they may read.

- Host: a loopback server answers only requests addressed to a loopback name (or ``--allow-host``), so a web
  page cannot reach it through DNS rebinding.
- Credentials: with ``--auth`` (HTTP Basic) or ``--token`` (Bearer) every request must carry them; both are
  compared in constant time.
- Origin: a state-changing request (POST, PUT, PATCH, DELETE) whose ``Origin`` header is present and is
  neither the server's own origin nor an ``--allow-origin`` is refused (cross-site request forgery).
- Size: request bodies are limited to ``--max-upload-mb``, by Content-Length and while streaming.
- Files: only paths inside a job's run folder are served (see :func:`confined_file`); uploads are sniffed
  (:func:`sniff_upload`); model names may not be paths (:func:`check_model_reference`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import PIL.Image
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flipbook.errors import FlipbookError
from flipbook.server.settings import LOOPBACK_NAMES, ServerSettings, origin_key

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RejectedUpload(FlipbookError):
    """An uploaded file is not what its field needs (answered with 415)."""


class SecurityMiddleware:
    """Host, credentials, Origin and body size, checked in that order before any endpoint runs."""

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings
        own = settings.host.strip().strip("[]").lower()
        self.allowed_hosts = frozenset((*LOOPBACK_NAMES, own, *settings.allow_hosts))
        self.allowed_origins = frozenset(settings.allow_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, self._limited(receive), send)

    def _refusal(self, scope: Scope, headers: Headers) -> JSONResponse | None:
        """The response that refuses this request, or None to let it through."""
        if self.settings.loopback and _host_name(headers.get("host", "")) not in self.allowed_hosts:
            return _error(400, "the Host header names no address of this server (see --allow-host)")
        if self.settings.auth_required and not self._authorised(headers.get("authorization", "")):
            scheme = 'Basic realm="flipbook"' if self.settings.auth is not None else "Bearer"
            return _error(401, "authentication required", {"WWW-Authenticate": scheme})
        origin = headers.get("origin")
        if (
            scope["method"] in UNSAFE_METHODS
            and origin is not None
            and not self._same_or_allowed(scope, origin)
        ):
            return _error(403, f"origin not allowed: {origin[:100]} (see --allow-origin)")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.settings.max_upload_bytes):
            return _error(413, f"request body over the upload limit of {self.settings.max_upload_mb:g} MB")
        return None

    def _authorised(self, header: str) -> bool:
        """Basic or Bearer credentials; both comparisons always run, in constant time."""
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        ok = False
        if self.settings.token is not None and scheme == "bearer":
            ok |= hmac.compare_digest(value.strip().encode(), self.settings.token.encode())
        if self.settings.auth is not None and scheme == "basic":
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            expected_user, expected_password = self.settings.auth
            same_user = hmac.compare_digest(user.encode(), expected_user.encode())
            same_password = hmac.compare_digest(password.encode(), expected_password.encode())
            ok |= same_user & same_password
        return ok

    def _same_or_allowed(self, scope: Scope, origin: str) -> bool:
        """Same origin (scheme, host and port of this request) or one of ``--allow-origin``."""
        try:
            parts = urlsplit(origin.strip())
            key = origin_key(parts.scheme, parts.hostname or "", parts.port)
        except ValueError:
            return False
        if not parts.hostname:
            return False  # "null" and other opaque origins
        if key in self.allowed_origins:
            return True
        host = Headers(scope=scope).get("host", "")
        try:
            own = urlsplit(f"{scope.get('scheme', 'http')}://{host}")
            return key == origin_key(own.scheme, own.hostname or "", own.port)
        except ValueError:
            return False

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that counts body bytes and stops the request with 413 past the limit (a chunked body
        has no Content-Length to check up front)."""
        limit, megabytes = self.settings.max_upload_bytes, self.settings.max_upload_mb
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"request body over the upload limit of {megabytes:g} MB")
            return message

        return counted


def _host_name(host: str) -> str:
    """``127.0.0.1:7860`` -> ``127.0.0.1``; ``[::1]:80`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


# ---- files -------------------------------------------------------------------------------------------------


def confined_file(root: Path, relative: str) -> Path | None:
    """The file ``relative`` names inside ``root``, or None when it is not a regular file strictly inside
    ``root`` once every symlink is resolved (``..``, absolute paths, NUL bytes, links that lead out)."""
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts:
        return None
    real_root = os.path.realpath(root)
    target = os.path.realpath(os.path.join(real_root, relative))
    if os.path.commonpath([real_root, target]) != real_root or target == real_root:
        return None
    return Path(target) if os.path.isfile(target) else None


# ---- uploads -----------------------------------------------------------------------------------------------

_MAGIC = {  # kind -> (offset, bytes, suffix): the containers flipbook's readers open
    "video": (
        (4, b"ftyp", ".mp4"),  # MP4, MOV, M4V
        (0, b"\x1a\x45\xdf\xa3", ".mkv"),  # Matroska, WebM
        (0, b"RIFF", ".avi"),
        (0, b"GIF8", ".gif"),
    ),
    "audio": (
        (0, b"RIFF", ".wav"),
        (0, b"fLaC", ".flac"),
        (0, b"OggS", ".ogg"),
        (0, b"ID3", ".mp3"),  # MP3 with tags
        (0, b"\xff\xfb", ".mp3"),  # MP3 frames
        (0, b"\xff\xf3", ".mp3"),
        (0, b"\xff\xf2", ".mp3"),
        (4, b"ftyp", ".m4a"),
    ),
}
_ALLOWED = {
    "image": "an image (PNG, JPEG, WebP, GIF, BMP, TIFF)",
    "video": "a video (MP4, MOV, WebM, MKV, AVI) or a GIF",
    "audio": "audio (WAV, FLAC, OGG, MP3, M4A)",
}
IMAGE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}


def sniff_image(data: bytes, field: str) -> tuple[PIL.Image.Image, str]:
    """Decode ``data`` as an image by its content (never its name); the image and its file suffix."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            kind = image.format or ""
            image.load()
            loaded = image.copy()
    except (
        PIL.Image.UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        PIL.Image.DecompressionBombError,
    ):
        raise RejectedUpload(field, f"{len(data)} bytes", _ALLOWED["image"], detail="not an image") from None
    if kind not in IMAGE_FORMATS:
        raise RejectedUpload(field, kind or "unknown", _ALLOWED["image"])
    return loaded, IMAGE_FORMATS[kind]


def sniff_upload(data: bytes, field: str, kind: str) -> str:
    """Check an uploaded file's bytes fit ``kind`` (image, video or audio); returns the suffix to save it
    with. Images are recognised by decoding them, videos and audio by their container's magic bytes."""
    if kind == "image":
        return sniff_image(data, field)[1]
    for offset, magic, suffix in _MAGIC[kind]:
        if data[offset : offset + len(magic)] == magic:
            return suffix
    raise RejectedUpload(field, f"{len(data)} bytes", _ALLOWED[kind], detail=f"not {kind}")


# ---- model names -------------------------------------------------------------------------------------------

_PATHLIKE = re.compile(r"^(?:[/\\~.]|[A-Za-z]:)|(?:^|[/\\])\.\.(?:[/\\]|$)")


def check_model_reference(field: str, name: str) -> None:
    """Model names sent over HTTP are names (built-in, in the server's models folder, or a hub id), never
    file system paths: an absolute, home-relative, dot-relative or ``..`` path is refused."""
    if _PATHLIKE.search(name.strip()):
        raise FlipbookError(
            field,
            name,
            "a model name: built-in (tiny), a name in the server's --models-dir, or a hub id (org/name)",
            detail="paths are not accepted over HTTP",
        )

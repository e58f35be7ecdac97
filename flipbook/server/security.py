"""Who may talk to the server, what they may send, and which files they may read.

- Host: a loopback server answers only requests addressed to a loopback name (or ``--allow-host``), so a web
  page cannot reach it through DNS rebinding.
- Credentials: with ``--auth`` (HTTP Basic) or ``--token`` (Bearer) every request must carry them; both are
  compared in constant time.
- Origin: a state-changing request (POST, PUT, PATCH, DELETE) whose ``Origin`` header is present and is
  neither the server's own origin nor an ``--allow-origin`` is refused (cross-site request forgery).
- Size: request bodies are limited to ``--max-upload-mb``, by Content-Length and while streaming.
- Files: only paths inside a job's run folder are served (see :func:`confined_file`, :func:`run_file`); the
  web UI serves and accepts only files it stored itself or run-folder files (:class:`UIFileGuard`); uploads
  are sniffed (:func:`sniff_upload`); model names may not be paths (:func:`check_model_reference`).
- Paths shown to clients (errors, model lists) are relative to the runs or models folder (:func:`public_text`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import PIL.Image
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flipbook.errors import FlipbookError
from flipbook.server.settings import LOOPBACK_NAMES, ServerSettings, origin_key
from flipbook.spec.references import FILE_KINDS, ModelReference

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JOB_ID = re.compile(r"^[0-9a-f]{16}$")
"""A job id (16 hex digits) and so the name of its run folder, a direct child of the runs folder."""


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

_MAGIC = {  # what a file is read as -> (offset, bytes, suffix): the containers flipbook's readers open
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
        raise RejectedUpload(
            field, f"{len(data)} bytes", FILE_KINDS["image"].what, detail="not an image"
        ) from None
    if kind not in IMAGE_FORMATS:
        raise RejectedUpload(field, kind or "unknown", FILE_KINDS["image"].what)
    return loaded, IMAGE_FORMATS[kind]


def sniff_upload(data: bytes, field: str, kind: str) -> str:
    """Check an uploaded file's bytes fit ``kind`` (one of the input-file kinds,
    :data:`~flipbook.spec.references.FILE_KINDS`); returns the suffix to save it with. Images (and masks) are
    recognised by decoding them, videos and audio by their container's magic bytes."""
    file_kind = FILE_KINDS[kind]
    if file_kind.read_as == "image":
        return sniff_image(data, field)[1]
    for offset, magic, suffix in _MAGIC[file_kind.read_as]:
        if data[offset : offset + len(magic)] == magic:
            return suffix
    raise RejectedUpload(field, f"{len(data)} bytes", file_kind.what, detail=f"not {file_kind.read_as}")


# ---- model names -------------------------------------------------------------------------------------------

FILE_SUFFIXES = frozenset(
    {".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle", ".onnx", ".gguf", ".h5",
     ".msgpack", ".npz", ".zip", ".tar", ".json", ".yaml", ".yml", ".toml", ".txt", ".db"}
)  # fmt: skip
"""Suffixes of weights and other files: a name ending in one names a file, not a hub repository."""
_PATH_START = re.compile(r"^(?:[/\\~.]|[A-Za-z]:)")
_HUB_PART = re.compile(r"^[A-Za-z0-9][\w.-]*$")
PATH_REFUSED = "paths are not accepted over HTTP"


def check_model_reference(
    field: str, name: str, reference: ModelReference | None = None, models_dir: Path | None = None
) -> None:
    """A model named over HTTP must be a name, never a path on the server.

    Always refused: an absolute, home (``~``), dot (``./x``, ``.hidden``), drive (``C:``) or backslash path, a
    ``..`` part, and anything that exists relative to the server's working directory (the loaders would read
    it). With the field's ``reference`` (its marker in the spec schema) the name must also be what that field
    takes over HTTP: one of its built-ins, a name found in ``models_dir`` (the server's ``--models-dir``) among
    its folders, or, where hub ids are taken, ``org/name`` (one ``/``, no file suffix such as ``.ckpt``).
    """
    text = name if isinstance(name, str) else ""
    if reference is not None and text in reference.builtins:
        return
    if looks_like_path(text) or (text and os.path.lexists(text)):
        raise _refused(field, name, reference, PATH_REFUSED)
    if reference is None:
        return
    if models_dir is not None and reference.find(text, models_dir) is not None:
        return
    if reference.hub and is_hub_id(text):
        return
    if "/" in text or Path(text).suffix.lower() in FILE_SUFFIXES:
        detail = f"a file path or a name not found in the server's --models-dir; {PATH_REFUSED}"
    elif not reference.folders:
        detail = None
    else:
        detail = (
            "no such name in the server's --models-dir" if models_dir else "the server has no --models-dir"
        )
    raise _refused(field, name, reference, detail)


def looks_like_path(text: str) -> bool:
    """Absolute, home, dot, drive or backslash paths, ``..`` parts, empty parts (``a//b``), NUL bytes."""
    if _PATH_START.match(text) or "\\" in text or "\x00" in text:
        return True
    parts = text.split("/")
    return len(parts) > 1 and any(part in ("", ".", "..") for part in parts)


def is_hub_id(text: str) -> bool:
    """``org/name``: exactly one ``/`` between two names, and no weights or file suffix (``tmp/x.ckpt`` is a
    path)."""
    parts = text.split("/")
    return (
        len(parts) == 2
        and all(_HUB_PART.match(part) for part in parts)
        and Path(text).suffix.lower() not in FILE_SUFFIXES
    )


def _refused(field: str, name: str, reference: ModelReference | None, detail: str | None) -> FlipbookError:
    allowed = (
        reference.allowed()
        if reference is not None
        else "a model name: built-in (tiny), a name in the server's --models-dir, or a hub id (org/name)"
    )
    return FlipbookError(field, name, allowed, detail=detail)


# ---- files the web UI may read -------------------------------------------------------------------------------


def run_file(runs_dir: Path, path: str) -> Path | None:
    """The file an absolute ``path`` names when it is a regular file strictly inside a job's run folder
    (``RUNS/<job id>/...``, see :func:`confined_file`); None for anything else, the runs folder's own files
    (the job database, its lock) included."""
    if not path or "\x00" in path or not os.path.isabs(path):
        return None
    candidate = os.path.normpath(path)
    for root in dict.fromkeys((os.path.abspath(runs_dir), os.path.realpath(runs_dir))):
        if not candidate.startswith(root + os.sep):
            continue
        job, _, rest = candidate[len(root) + 1 :].partition(os.sep)
        if JOB_ID.match(job) and rest:
            return confined_file(Path(root) / job, rest.replace(os.sep, "/"))
    return None


class UIFileGuard:
    """Gradio reads the files a client names: ``GET .../gradio_api/file=PATH`` serves ``PATH``, and a
    ``{"path": ...}`` file object in a request's data is copied into Gradio's cache and handed to the event
    handler. Launched, Gradio would check such paths; mounted in another app it does not. This middleware
    checks them for the UI mounted at ``prefix``: a client may name a file Gradio stored for this server
    (``is_known``: an upload, or a file it put in its cache for a component) or a regular file inside a job's
    run folder (:func:`run_file`), nothing else (404 for ``file=``, 403 for a request naming one).
    """

    def __init__(self, app: ASGIApp, prefix: str, runs_dir: Path, is_known: Callable[[str], bool]) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")
        self.runs_dir = runs_dir
        self.is_known = is_known

    def allowed(self, path: str) -> bool:
        return self.is_known(path) or run_file(self.runs_dir, path) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(self.prefix + "/"):
            await self.app(scope, receive, send)
            return
        named = _file_route(path[len(self.prefix) :])
        if named is not None:
            if not self.allowed(named):
                await _error(404, "no such file")(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if scope["method"] not in UNSAFE_METHODS or _is_multipart(scope):  # uploads are files, not paths
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except HTTPException as error:  # over the upload limit (see SecurityMiddleware._limited)
            await _error(error.status_code, error.detail)(scope, receive, send)
            return
        refused = [p for p in named_files(body) if not self.allowed(p)]
        if refused:
            detail = "the web UI reads only files uploaded to it or in a job's run folder"
            await _error(403, detail)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


_FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/", "/file=", "/file/")


def _file_route(path: str) -> str | None:
    """The file a Gradio file route names (``/gradio_api/file=/tmp/x.png`` -> ``/tmp/x.png``), else None."""
    for route in _FILE_ROUTES:
        if path.startswith(route):
            return path[len(route) :]
    return None


def named_files(body: bytes) -> Iterator[str]:
    """Every ``path`` of a file object (a JSON object with a string ``path``) in a JSON body."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return
    stack: list[Any] = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("path"), str):
                yield item["path"]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _is_multipart(scope: Scope) -> bool:
    return Headers(scope=scope).get("content-type", "").lower().startswith("multipart/")


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that gives ``body`` once, then whatever the connection sends (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# ---- paths shown to clients ----------------------------------------------------------------------------------


def public_text(text: str, settings: ServerSettings) -> str:
    """``text`` with the server's folders taken out: a path inside the runs or models folder becomes its
    name relative to that folder (``<runs>/ab12.../inputs/init_image.png`` -> ``ab12.../inputs/init_image.png``)
    and the folder itself "the runs folder" / "the models folder"."""
    for base, label in _public_bases(settings):
        text = re.sub(re.escape(base) + r"(?:([/\\])|(?![\w.-]))", _hider(label), text)
    return text


def public_data(data: Any, settings: ServerSettings) -> Any:
    """JSON data (a job's spec or result) with every string passed through :func:`public_text`: the run folder
    the server set (``output.dir``), ``model.models_dir`` and the uploaded inputs' paths as a client sees
    them. Walked without recursion (the data came from a client)."""
    root: list[Any] = [data]
    stack: list[tuple[Any, Any, Any]] = [(root, 0, data)]
    while stack:
        parent, key, value = stack.pop()
        if isinstance(value, str):
            parent[key] = public_text(value, settings)
        elif isinstance(value, dict):
            copy = dict(value)
            parent[key] = copy
            stack.extend((copy, k, v) for k, v in copy.items())
        elif isinstance(value, list):
            copy = list(value)
            parent[key] = copy
            stack.extend((copy, i, v) for i, v in enumerate(copy))
    return root[0]


def _hider(label: str) -> Callable[[re.Match[str]], str]:
    """A folder followed by a separator goes (the rest is relative to it); the folder alone is ``label``."""
    return lambda match: "" if match.group(1) else label


def public_path(path: Path | str, settings: ServerSettings) -> str:
    """A server path as a client sees it: relative to the runs or models folder, else only its name."""
    text = str(path)
    for base, _ in _public_bases(settings):
        if text.startswith(base + os.sep):
            return text[len(base) + 1 :].replace(os.sep, "/")
    return Path(text).name


def _public_bases(settings: ServerSettings) -> list[tuple[str, str]]:
    """The folders to hide, as written and resolved, longest first (so the models folder inside an install
    is taken before the install)."""
    folders = [(settings.runs_dir, "the runs folder")]
    if settings.models_dir is not None:
        folders.append((settings.models_dir, "the models folder"))
        try:
            from flipbook.models.folders import ModelsDir

            folders.append((ModelsDir(settings.models_dir).install, "the models folder"))
        except FlipbookError:
            pass
    bases = {}
    for folder, label in folders:
        for form in (os.path.abspath(folder), os.path.realpath(folder), str(folder)):
            if form not in (".", "", os.sep):
                bases.setdefault(form.rstrip(os.sep), label)
    return sorted(bases.items(), key=lambda item: len(item[0]), reverse=True)

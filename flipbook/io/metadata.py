"""The spec and the A1111 parameters, embedded in every output format and read back from any of them.

One payload, :func:`embedded_payload`, is the JSON object ``{"flipbook_spec": {...}, "parameters": "..."}``
(keys with no value are left out). Where each format keeps it, chosen so that the files' usual tools show it
and it survives a round trip through PyAV and Pillow:

- PNG frames, APNG, contact sheets: two text chunks, ``parameters`` (the A1111 infotext, stored exactly as
  :func:`flipbook.io.pnginfo.save_png` stores it, so A1111, Civitai and PNG-info tabs read it) and
  ``flipbook_spec`` (the spec JSON, zlib-compressed: it repeats a lot and is in every frame).
- GIF: the payload in a comment extension (Pillow writes it, UTF-8).
- MP4 / MOV: the container tag ``comment`` (the ``©cmt`` atom) holding the payload.
- WebM / MKV: the same FFmpeg key ``comment``; the Matroska muxer stores it as the tag ``COMMENT``, which is
  also the name FFmpeg reads it back under, so the reader matches keys without regard to case.
- WebP: an XMP packet whose ``dc:description`` holds the payload (XML-escaped).

:func:`read_embedded` reads all of them. Files written before the payload existed are read too: a GIF or
video comment that is not a payload JSON object is taken as the parameters text, which is what earlier
flipbook versions stored there.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import av
import PIL.Image
from PIL.PngImagePlugin import PngInfo

from flipbook.errors import FlipbookError
from flipbook.io.pnginfo import PNG_TEXT_KEY

SPEC_KEY = "flipbook_spec"
PARAMETERS_KEY = PNG_TEXT_KEY
CONTAINER_KEY = "comment"
"""The FFmpeg metadata key written to MP4 and WebM; read back case-insensitively, then ``description``."""

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv")
IMAGE_SUFFIXES = (".png", ".apng", ".gif", ".webp")
_ALLOWED_FILE = "a png, apng, gif, webp, mp4, webm, mkv or mov file"

_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_DC = "http://purl.org/dc/elements/1.1/"
_XMP_TEMPLATE = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
    f' <rdf:RDF xmlns:rdf="{_RDF}">\n'
    f'  <rdf:Description rdf:about="" xmlns:dc="{_DC}">\n'
    "   <dc:description><rdf:Alt>"
    '<rdf:li xml:lang="x-default">{text}</rdf:li>'
    "</rdf:Alt></dc:description>\n"
    "  </rdf:Description>\n"
    " </rdf:RDF>\n"
    "</x:xmpmeta>\n"
    '<?xpacket end="w"?>'
)


@dataclass(frozen=True)
class Embedded:
    """What a file carries: the flipbook spec (as a JSON dict) and the A1111 parameters text; None if absent."""

    spec: dict | None = None
    parameters: str | None = None


# --- writing ------------------------------------------------------------------------------------------------


def embedded_payload(spec: dict | None, parameters: str | None) -> str:
    """The JSON text stored in GIF comments, video tags and WebP XMP: ``{"flipbook_spec", "parameters"}``.

    Non-ASCII text is kept as it is (not ``\\u`` escaped) so a prompt stays readable in exiftool or ffprobe.
    Raises FlipbookError for a spec that is not a JSON-serialisable dict or parameters that are not text.
    """
    _check(spec, parameters)
    payload: dict[str, object] = {}
    if spec is not None:
        payload[SPEC_KEY] = spec
    if parameters is not None:
        payload[PARAMETERS_KEY] = parameters
    try:
        return json.dumps(payload, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise FlipbookError(
            "spec", type(spec).__name__, "a JSON-serialisable dict", detail=str(error)
        ) from None


def png_info(spec: dict | None, parameters: str | None) -> PngInfo | None:
    """PNG text chunks ``parameters`` (plain, as A1111 writes it) and ``flipbook_spec`` (compressed JSON).

    Why two chunks: A1111-compatible readers look for ``parameters`` holding infotext only, so the spec cannot
    share it. None when there is nothing to store.
    """
    if spec is None and parameters is None:
        return None
    _check(spec, parameters)
    info = PngInfo()
    if parameters is not None:
        info.add_text(PARAMETERS_KEY, parameters)
    if spec is not None:
        info.add_text(SPEC_KEY, _spec_json(spec), zip=True)
    return info


def xmp_packet(payload: str) -> bytes:
    """An XMP packet (UTF-8) whose ``dc:description`` holds ``payload``, escaped for XML text and attributes."""
    text = escape(payload, {'"': "&quot;"})
    return _XMP_TEMPLATE.format(text=text).encode("utf-8")


def _check(spec: object, parameters: object) -> None:
    if spec is not None and not isinstance(spec, dict):
        raise FlipbookError("spec", type(spec).__name__, "a dict (the spec as JSON data) or None")
    if parameters is not None and not isinstance(parameters, str):
        raise FlipbookError("parameters", type(parameters).__name__, "A1111 infotext (a string) or None")


def _spec_json(spec: dict) -> str:
    try:
        return json.dumps(spec, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise FlipbookError(
            "spec", type(spec).__name__, "a JSON-serialisable dict", detail=str(error)
        ) from None


# --- reading ------------------------------------------------------------------------------------------------


def read_embedded(path: str | os.PathLike[str]) -> Embedded:
    """The spec and parameters embedded in a png, apng, gif, webp, mp4, webm, mkv or mov file.

    Returns ``Embedded(None, None)`` for a readable file that carries neither. A missing or unreadable file, an
    unsupported type, or an embedded spec that is not valid JSON is a FlipbookError naming ``path``.
    """
    location = Path(path)
    if not location.is_file():
        raise FlipbookError("path", str(location), _ALLOWED_FILE, detail="no such file")
    suffix = location.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return _read_container(location)
    if suffix in IMAGE_SUFFIXES:
        return _read_image(location)
    raise FlipbookError(
        "path", str(location), _ALLOWED_FILE, detail=f"unknown file type {suffix or '(none)'}"
    )


def parse_payload(text: str, *, source: str = "payload") -> Embedded:
    """Read a payload back; text that is not a payload JSON object is taken as the parameters text.

    Why the fallback: earlier flipbook versions stored the bare A1111 infotext as the GIF and MP4 comment.
    """
    try:
        data = json.loads(text)
    except ValueError:
        return Embedded(parameters=text)
    if not isinstance(data, dict) or not (SPEC_KEY in data or PARAMETERS_KEY in data):
        return Embedded(parameters=text)
    spec, parameters = data.get(SPEC_KEY), data.get(PARAMETERS_KEY)
    if spec is not None and not isinstance(spec, dict):
        raise FlipbookError("path", source, "a file whose embedded flipbook_spec is a JSON object")
    if parameters is not None and not isinstance(parameters, str):
        raise FlipbookError("path", source, "a file whose embedded parameters are text")
    return Embedded(spec, parameters)


def _read_image(path: Path) -> Embedded:
    """PNG/APNG text chunks, the GIF comment or the WebP XMP packet, by the format Pillow detects."""
    try:
        with PIL.Image.open(path) as image:
            image.load()
            kind, info = image.format, dict(image.info)
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as error:
        raise FlipbookError("path", str(path), _ALLOWED_FILE, detail=str(error)) from None
    if kind == "PNG":
        return _from_png_text(info, str(path))
    if kind == "GIF":
        comment = info.get("comment")
        return Embedded() if not comment else parse_payload(_text(comment), source=str(path))
    if kind == "WEBP":
        description = xmp_description(info.get("xmp"))
        return Embedded() if description is None else parse_payload(description, source=str(path))
    return Embedded()


def _from_png_text(info: dict, source: str) -> Embedded:
    parameters = info.get(PARAMETERS_KEY)
    raw_spec = info.get(SPEC_KEY)
    spec = None
    if raw_spec is not None:
        try:
            spec = json.loads(_text(raw_spec))
        except ValueError:
            spec = None
        if not isinstance(spec, dict):
            raise FlipbookError("path", source, "a file whose flipbook_spec chunk is a JSON object")
    return Embedded(spec, None if parameters is None else _text(parameters))


def xmp_description(xmp: bytes | str | None) -> str | None:
    """The ``dc:description`` text of an XMP packet (the default-language entry), or None.

    Why ElementTree: the description is XML-escaped, and hand-made string searches get entities and CDATA
    wrong. Python's expat refuses entity-expansion bombs, so untrusted files are safe to parse.
    """
    if not xmp:
        return None
    text = _text(xmp).strip().lstrip("\ufeff")
    start, end = text.find("<x:xmpmeta"), text.rfind("</x:xmpmeta>")
    if start < 0 or end < 0:
        return None
    try:
        root = ElementTree.fromstring(text[start : end + len("</x:xmpmeta>")])
    except ElementTree.ParseError:
        return None
    for description in root.iter(f"{{{_DC}}}description"):
        items = list(description.iter(f"{{{_RDF}}}li"))
        if items:
            return items[0].text or ""
        return description.text
    return None


def _read_container(path: Path) -> Embedded:
    """The ``comment`` tag (any case), else ``description``, of a video container."""
    try:
        with av.open(str(path), metadata_errors="replace") as container:
            metadata = dict(container.metadata)
    except (av.FFmpegError, OSError, ValueError) as error:
        raise FlipbookError("path", str(path), _ALLOWED_FILE, detail=str(error)) from None
    by_name = {key.lower(): value for key, value in metadata.items()}
    text = by_name.get(CONTAINER_KEY) or by_name.get("description")
    return Embedded() if not text else parse_payload(text, source=str(path))


def _text(value: bytes | str) -> str:
    """Chunk and comment bytes as text; why replace: a stray byte should not hide the rest of the payload."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)

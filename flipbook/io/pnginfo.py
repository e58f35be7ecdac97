"""Generation parameters in PNG files, in AUTOMATIC1111's "infotext" format.

A1111 stores how an image was made in a PNG text chunk named ``parameters``::

    a cat in a hat
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 123, Size: 512x768, Model hash: 6ce0161689, Model: v1-5

Civitai, image viewers and "PNG Info" tabs read that chunk, and people drop such files on tools to reuse the
settings. Writing the same format (same key order, quoting and number style) lets flipbook's frames be read by
all of them, and reading it lets users start from any A1111 image.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path

import PIL.Image
from PIL.PngImagePlugin import PngInfo

from flipbook.errors import FlipbookError
from flipbook.io.atomic import atomic_target

PNG_TEXT_KEY = "parameters"
"""The PNG text chunk A1111 writes its infotext to."""

NEGATIVE_PREFIX = "Negative prompt:"

PNG_COMPRESS_LEVEL = 1
"""The zlib level of every PNG flipbook writes as an image file (rendered frames, stills, PNG sequences,
contact sheets). PNG stays lossless at any level; the level trades encoding time for file size. Measured at
512x512 (five photographs, and the same with a frame's 0.02 noise added, best of 3, one thread): level 1 takes
0.22-0.29x of Pillow's default level 6's time on the photographs (0.34-0.55x on the noisy frames) for files
0-17% larger (8-13% on the noisy frames); level 3 takes 0.34-0.64x for -2% to +11%. A render writes a frame
while the next one is made: at 512x512, level 6 cost about as much CPU as making the frame itself."""

# The keys A1111's create_infotext writes, in its order. Fields of GenerationParameters and ``extra`` keys
# found here are written at these places; other ``extra`` keys follow "Tiling" in their own order (A1111
# writes its extensions' keys there), and "Version" and "User" come last.
A1111_KEY_ORDER = (
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Image CFG scale",
    "Seed",
    "Face restoration",
    "Size",
    "Model hash",
    "Model",
    "FP8 weight",
    "Cache FP16 weight for LoRA",
    "VAE hash",
    "VAE",
    "Variation seed",
    "Variation seed strength",
    "Seed resize from",
    "Denoising strength",
    "Conditional mask weight",
    "Clip skip",
    "ENSD",
    "Token merging ratio",
    "Token merging ratio hr",
    "Init image hash",
    "RNG",
    "Tiling",
)
A1111_LAST_KEYS = ("Version", "User")

# Infotext key -> GenerationParameters attribute, for the keys that have their own field.
_FIELD_KEYS = {
    "Steps": "steps",
    "Sampler": "sampler",
    "CFG scale": "cfg_scale",
    "Seed": "seed",
    "Size": "size",
    "Model hash": "model_hash",
    "Model": "model_name",
    "Denoising strength": "denoising_strength",
    "Clip skip": "clip_skip",
}
_REQUIRED_KEYS = ("Steps", "Sampler", "CFG scale", "Seed", "Size")

_INFOTEXT_ALLOWED = (
    "A1111 generation parameters: the prompt, an optional 'Negative prompt:' line, and a last line "
    "'Steps: N, Sampler: NAME, CFG scale: N, Seed: N, Size: WxH, ...'"
)
_KEY = re.compile(r"\w[\w \-/]*[\w\-/]")
# One "Key: value" entry of the last line; a value is a JSON string or anything up to the next comma.
_ENTRY = re.compile(r"\s*(?P<key>\w[\w \-/]+):\s*(?P<value>\"(?:\\.|[^\\\"])+\"|[^,]*)(?:,|$)")
# A bare "Key" entry: A1111 writes just the key when the value equals it.
_BARE = re.compile(r"\s*(?P<key>\w[\w \-/]*[\w\-/])\s*(?:,|$)")
_SIZE = re.compile(r"([0-9]+)x([0-9]+)")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass
class GenerationParameters:
    """What A1111 records about how an image was made.

    ``extra`` holds every other infotext key (``Schedule type``, ``Lora hashes``, ``Version``...) as text, in
    the order read or given, so nothing from a file is lost when it is read and written again.
    """

    prompt: str
    negative_prompt: str
    steps: int
    sampler: str
    cfg_scale: float
    seed: int
    width: int
    height: int
    denoising_strength: float | None = None
    clip_skip: int | None = None
    model_name: str | None = None
    model_hash: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


# --- writing ------------------------------------------------------------------------------------------------


def refiner_parameters(name: str, short_hash: str | None, switch_at: float) -> dict[str, str]:
    """The infotext keys A1111 writes for its refiner: ``Refiner: sd_xl_refiner_1.0 [7440042bbd], Refiner
    switch at: 0.8`` (a file named by its stem, with A1111's short hash when it is a single file)."""
    path = Path(name)
    stem = path.stem if path.suffix.lower() in (".safetensors", ".ckpt") else name
    return {
        "Refiner": stem if short_hash is None else f"{stem} [{short_hash}]",
        "Refiner switch at": f"{switch_at:g}",
    }


def format_parameters(p: GenerationParameters) -> str:
    """The infotext A1111 would write for ``p``: prompt, ``Negative prompt:`` line (only when there is one),
    then ``Key: value`` pairs joined by ``", "`` in A1111's key order.

    Values with ``,`` ``:`` or a newline are JSON-quoted as A1111 quotes them; values that A1111 would write
    in a way it cannot read back (leading or trailing white space, a leading ``"``) are quoted too. Numbers
    are written like A1111's (``7`` not ``7.0``, ``7.5`` stays). Optional fields that are None are left out;
    an ``extra`` key whose value equals the key is written bare, as A1111 does. Like A1111 the prompts are
    written as they are: white space at the start or end of their lines, or a line starting with ``Negative
    prompt:``, does not survive :func:`parse_parameters`.
    """
    if not isinstance(p, GenerationParameters):
        raise FlipbookError("parameters", p, "a GenerationParameters")
    for name in ("prompt", "negative_prompt"):
        if not isinstance(getattr(p, name), str):
            raise FlipbookError(f"parameters.{name}", getattr(p, name), "a string")
    entries = _entries(p)
    line = ", ".join(key if key == value else f"{key}: {_quote(value)}" for key, value in entries)
    negative = f"\n{NEGATIVE_PREFIX} {p.negative_prompt}" if p.negative_prompt else ""
    return f"{p.prompt}{negative}\n{line}".strip()


def _entries(p: GenerationParameters) -> list[tuple[str, str]]:
    """All ``(key, text)`` pairs of the last line, in A1111's order."""
    values: dict[str, str | None] = {
        "Steps": _int_text("steps", p.steps, minimum=1),
        "Sampler": _str_text("sampler", p.sampler),
        "CFG scale": _number_text("cfg_scale", p.cfg_scale),
        "Seed": _int_text("seed", p.seed),
        "Size": f"{_int_text('width', p.width, minimum=1)}x{_int_text('height', p.height, minimum=1)}",
        "Model hash": None if p.model_hash is None else _str_text("model_hash", p.model_hash),
        "Model": None if p.model_name is None else _str_text("model_name", p.model_name),
        "Denoising strength": None
        if p.denoising_strength is None
        else _number_text("denoising_strength", p.denoising_strength),
        "Clip skip": None if p.clip_skip is None else _int_text("clip_skip", p.clip_skip, minimum=1),
    }
    if not isinstance(p.extra, dict):
        raise FlipbookError("parameters.extra", p.extra, "a dict of str keys to str values")
    for key, value in p.extra.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise FlipbookError(
                "parameters.extra",
                key,
                "keys of letters, digits, _, space, - and / (2 or more, not starting with space, - or /, "
                "not ending in space)",
            )
        if key in _FIELD_KEYS:
            raise FlipbookError("parameters.extra", key, "a key other than those with their own field")
        values[key] = _str_text(f"extra[{key!r}]", value)

    order = [key for key in A1111_KEY_ORDER if key in values]
    order += [key for key in values if key not in A1111_KEY_ORDER and key not in A1111_LAST_KEYS]
    order += [key for key in A1111_LAST_KEYS if key in values]
    return [(key, text) for key in order if (text := values[key]) is not None]


def _quote(value: str) -> str:
    """A1111's quoting (JSON, non-ASCII kept) for values with ``,`` ``:`` or a newline.

    Why the extra cases: A1111 writes ``" x"``-like values bare, and then reads them back changed.
    """
    if any(char in value for char in ",:\n") or value != value.strip() or value.startswith('"'):
        return json.dumps(value, ensure_ascii=False)
    return value


def _str_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise FlipbookError(f"parameters.{name}", value, "a string")
    return value


def _int_text(name: str, value: object, *, minimum: int | None = None) -> str:
    """A whole number (NumPy's too, as pipelines hand them out); bools are not numbers here."""
    if (
        isinstance(value, bool)
        or not isinstance(value, Integral)
        or (minimum is not None and value < minimum)
    ):
        allowed = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise FlipbookError(f"parameters.{name}", value, allowed)
    return str(int(value))


def _number_text(name: str, value: object) -> str:
    """A number as A1111 writes it; why ``7`` for 7.0: A1111's sliders hand it whole numbers as ints."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise FlipbookError(f"parameters.{name}", value, "a finite number")
    if isinstance(value, Integral):
        return str(int(value))
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


# --- reading ------------------------------------------------------------------------------------------------


def parse_parameters(text: str) -> GenerationParameters:
    """Read an A1111 infotext back into :class:`GenerationParameters`.

    Follows A1111's reader: the last line holds the ``Key: value`` pairs (it needs at least three), lines
    before it are the prompt until a line starting ``Negative prompt:``, and the rest is the negative prompt;
    prompt lines are stripped of surrounding white space. Quoted values are unquoted, ``Size: WxH`` gives
    width and height, keys without a field go to ``extra`` in file order. Missing Steps, Sampler, CFG scale,
    Seed or Size, or values that are not numbers where numbers belong, are a :class:`FlipbookError`.
    """
    if not isinstance(text, str):
        raise FlipbookError("parameters", text, _INFOTEXT_ALLOWED)
    *lines, last_line = text.strip().split("\n")
    entries = _parse_entries(last_line)
    if sum(1 for _, _, bare in entries if not bare) < 3:
        lines.append(last_line)
        entries = []

    prompt, negative = _parse_prompts(lines)
    values: dict[str, str] = {}
    extra: dict[str, str] = {}
    for key, value, _ in entries:
        (values if key in _FIELD_KEYS else extra)[key] = value
    missing = [key for key in _REQUIRED_KEYS if key not in values]
    if missing:
        detail = f"no {', '.join(missing)}"
        raise FlipbookError("parameters", _preview(text), _INFOTEXT_ALLOWED, detail=detail)

    width, height = _parse_size(values["Size"])
    return GenerationParameters(
        prompt=prompt,
        negative_prompt=negative,
        steps=_parse_int("Steps", values["Steps"], minimum=1),
        sampler=values["Sampler"],
        cfg_scale=_parse_float("CFG scale", values["CFG scale"]),
        seed=_parse_int("Seed", values["Seed"]),
        width=width,
        height=height,
        denoising_strength=None
        if "Denoising strength" not in values
        else _parse_float("Denoising strength", values["Denoising strength"]),
        clip_skip=None
        if "Clip skip" not in values
        else _parse_int("Clip skip", values["Clip skip"], minimum=1),
        model_name=values.get("Model"),
        model_hash=values.get("Model hash"),
        extra=extra,
    )


def _parse_entries(line: str) -> list[tuple[str, str, bool]]:
    """``(key, value, was_bare)`` for each entry of a parameters line; text that is no entry is skipped.

    Keys are those :func:`format_parameters` accepts (``"Key : v"`` gives ``"Key"``), so whatever is read can
    be written again.
    """
    entries: list[tuple[str, str, bool]] = []
    position = 0
    while position < len(line):
        match = _ENTRY.match(line, position)
        if match is not None and _KEY.fullmatch(key := match["key"].rstrip()):
            entries.append((key, _unquote(match["value"]), False))
            position = match.end()
        elif (match := _BARE.match(line, position)) is not None:
            entries.append((match["key"], match["key"], True))
            position = match.end()
        else:  # not an entry: skip to the next comma, as A1111's reader passes over it
            comma = line.find(",", position)
            position = len(line) if comma < 0 else comma + 1
    return entries


def _unquote(value: str) -> str:
    """A1111's unquoting: a value in double quotes is JSON, unless it does not decode."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        if isinstance(decoded, str):
            return decoded
    return value


def _parse_prompts(lines: list[str]) -> tuple[str, str]:
    """The prompt and negative prompt from the lines before the parameters line, as A1111 splits them."""
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for raw in lines:
        line = raw.strip()
        if line.startswith(NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(NEGATIVE_PREFIX) :].strip()
        target = negative if in_negative else prompt
        if target or line:  # A1111 drops empty lines until the first text
            target.append(line)
    return "\n".join(prompt), "\n".join(negative)


def _parse_size(value: str) -> tuple[int, int]:
    match = _SIZE.fullmatch(value)
    if match is None or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise FlipbookError("parameters: Size", value, "WIDTHxHEIGHT with whole numbers >= 1, e.g. 512x768")
    return int(match.group(1)), int(match.group(2))


def _parse_int(key: str, value: str, *, minimum: int | None = None) -> int:
    """A whole number as A1111 writes it (ASCII digits only; ``int()`` would also take ``1_000``)."""
    if _INT.fullmatch(value.strip()) and (minimum is None or int(value) >= minimum):
        return int(value)
    allowed = "a whole number" if minimum is None else f"a whole number >= {minimum}"
    raise FlipbookError(f"parameters: {key}", value, allowed)


def _parse_float(key: str, value: str) -> float:
    """A finite decimal number (``float()`` alone would also take ``nan``, ``inf`` and ``1_0``)."""
    if _FLOAT.fullmatch(value.strip()) and math.isfinite(number := float(value)):
        return number
    raise FlipbookError(f"parameters: {key}", value, "a finite number")


def _preview(text: str, limit: int = 80) -> str:
    """The start of a long text, for error messages that have to stay one line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- PNG files ----------------------------------------------------------------------------------------------


def save_png(
    image: PIL.Image.Image, path: str | os.PathLike[str], params: GenerationParameters | str
) -> Path:
    """Write ``image`` as a PNG at ``path`` with the infotext in a ``parameters`` text chunk, as A1111 does.

    ``params`` is formatted with :func:`format_parameters` unless it already is infotext. Text that is not
    Latin-1 goes into an iTXt chunk (PNG tEXt is Latin-1 only; PIL switches, as it does for A1111). The file
    is written to a temporary name in the same folder and moved over ``path``, so a crash never leaves half a
    PNG. zlib level :data:`PNG_COMPRESS_LEVEL`.
    """
    if not isinstance(image, PIL.Image.Image):
        raise FlipbookError("image", type(image).__name__, "a PIL image")
    text = params if isinstance(params, str) else format_parameters(params)
    target = Path(path)
    if not target.parent.is_dir():
        raise FlipbookError("path", str(target), "a file path in an existing folder")
    info = PngInfo()
    info.add_text(PNG_TEXT_KEY, text)
    try:
        with atomic_target(target) as temporary:
            image.save(temporary, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    except PermissionError as error:
        allowed = "a file path flipbook may write"
        raise FlipbookError("path", str(target), allowed, detail=str(error)) from None
    return target


def read_png_parameters(path: str | os.PathLike[str]) -> str | None:
    """The ``parameters`` text of an image file, or None when it has none.

    Text chunks after the image data are read too (some tools put them there). A file that is missing or is
    not an image is a :class:`FlipbookError` naming the path.
    """
    location = str(path)
    try:
        with PIL.Image.open(path) as image:
            image.load()
            text = image.info.get(PNG_TEXT_KEY)
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as error:
        raise FlipbookError("path", location, "an image file (PNG)", detail=str(error)) from None
    return None if text is None else str(text)

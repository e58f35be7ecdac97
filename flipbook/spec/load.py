"""Read a spec from TOML or JSON (a flipbook spec, Deforum settings or a Parseq manifest, told apart by content),
apply ``--set`` overrides, and report problems as FlipbookError.

Input files a spec file names (``init.image``, ``audio.file``, ``controlnet[0].image``: every field the schema
marks :class:`~flipbook.spec.references.InputFile`) are relative to the spec file's folder, as in any tool with
config files; ``--set`` values stay relative to the working directory. Both are made absolute when the spec is
loaded, so the run folder's spec.json and the spec embedded in outputs name the same files from anywhere.
``output.dir`` and model paths are not input files: they stay relative to the working directory.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from flipbook.errors import SpecError
from flipbook.spec.model import Spec, error_path
from flipbook.spec.references import InputFile, Location, references, with_values
from flipbook.spec.safe_parse import check_data, parse_toml, size_errors


def load_spec(path: str | Path, overrides: list[str] | None = None) -> Spec:
    """Load and validate ``path`` with ``key.path=value`` overrides applied (see :func:`load_spec_and_warnings`)."""
    return load_spec_and_warnings(path, overrides)[0]


def load_spec_and_warnings(path: str | Path, overrides: list[str] | None = None) -> tuple[Spec, list[str]]:
    """Load a spec file, Deforum settings file or Parseq manifest (told apart by content, see
    :func:`read_spec_data`); also return what the caller should tell the user (for Deforum files: values read
    otherwise than written, and the settings flipbook has no counterpart for, never dropped silently)."""
    path = Path(path)
    data, warnings = read_spec_data(path)
    for override in overrides or []:
        apply_override(data, override)
    spec = resolve_input_files(spec_from_data(data), path.parent, [override_key(o) for o in overrides or []])
    if spec.output.name is None:
        spec = spec.model_copy(update={"output": spec.output.model_copy(update={"name": path.stem})})
    return spec, warnings


SPEC_FILES = (
    "a .toml spec; JSON (a flipbook spec, Deforum settings or a Parseq manifest); or a flipbook output"
)


def read_spec_data(path: Path) -> tuple[dict[str, Any], list[str]]:
    """Spec data from a file, decided by what it holds, not its name: ``.toml`` is TOML; a flipbook output
    carries its spec; anything else is JSON (with comments, trailing commas, a BOM, CRLF, or a Python dict
    literal, as hand-edited Deforum files have) holding a flipbook spec, Deforum settings or a Parseq manifest
    (see :func:`document_kind`), or else TOML."""
    if not path.is_file():
        raise SpecError("spec", str(path), SPEC_FILES)
    suffix = path.suffix.lower()
    if suffix in MEDIA_SUFFIXES:
        return _embedded_data(path), []
    text = _read_text(path)
    if suffix == ".toml":
        return _toml(text, str(path)), []
    from flipbook.spec.deforum import parse_lenient

    document = parse_lenient(text, str(path), "settings" if suffix == ".txt" else "spec")
    if isinstance(document, str):
        if suffix == ".json":
            raise SpecError("spec", str(path), "valid JSON", detail=document)
        try:
            return _toml(text, str(path)), []
        except SpecError:
            raise SpecError("spec", str(path), SPEC_FILES, detail=f"not JSON: {document}") from None
    if not isinstance(document, dict):
        raise SpecError("spec", str(path), SPEC_FILES, detail=f"the top level is a {type(document).__name__}")
    return document_data(document, base=path.parent)


def _toml(text: str, source: str) -> dict[str, Any]:
    try:
        return parse_toml(text, source=source)
    except tomllib.TOMLDecodeError as error:
        raise SpecError("spec", source, "valid TOML", detail=str(error)) from None


DocumentKind = Literal["spec", "deforum", "parseq"]


def document_kind(document: dict[str, Any]) -> DocumentKind:
    """What parsed JSON holds: a Parseq manifest (rendered frames, or Parseq's ``meta``); Deforum settings (a
    key some Deforum writes that is no flipbook section: ``W``, ``animation_mode``, ``cn_1_model``...); else a
    flipbook spec (whose validation then names any unknown key)."""
    from flipbook.spec.deforum_keys import lookup
    from flipbook.spec.parseq import is_parseq_manifest

    if is_parseq_manifest(document):
        return "parseq"
    sections = Spec.model_fields.keys()
    if any(isinstance(key, str) and key not in sections and lookup(key) is not None for key in document):
        return "deforum"
    return "spec"


def document_data(document: dict[str, Any], *, base: Path | None) -> tuple[dict[str, Any], list[str]]:
    """Spec data and warnings from parsed JSON, by :func:`document_kind`. ``base``: the folder files the
    document names are read from (a Parseq manifest path in Deforum settings); None reads none."""
    kind = document_kind(document)
    if kind == "parseq":
        from flipbook.spec.parseq import import_manifest

        check_data(document, field="parseq_manifest")
        return import_manifest(document)
    if kind == "deforum":
        from flipbook.spec.deforum import import_settings

        return import_settings(document, base=base)
    return document, []


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        detail = f"{error.reason} at byte {error.start}"
        raise SpecError("spec", str(path), "UTF-8 text", detail=detail) from None


MEDIA_SUFFIXES = (".png", ".apng", ".gif", ".webp", ".mp4", ".m4v", ".mov", ".webm", ".mkv")
"""Outputs that carry their spec (see flipbook.io.metadata): rendering one renders its spec again."""


def _embedded_data(path: Path) -> dict[str, Any]:
    from flipbook.io.metadata import read_embedded

    embedded = read_embedded(path)
    if embedded.spec is None:
        raise SpecError(
            "spec",
            str(path),
            "a file made by flipbook (it carries its spec)",
            detail="no flipbook spec in it",
        )
    return embedded.spec


def resolve_input_files(spec: Spec, folder: Path, from_command_line: Sequence[tuple[str, ...]] = ()) -> Spec:
    """``spec`` with every relative input file made absolute: against ``folder`` (the spec file's) when the
    spec file names it, against the working directory when a ``--set`` key in ``from_command_line`` (as
    :func:`override_key` gives it) set the field or a section holding it. ``~`` paths are left to the readers."""
    resolved: dict[Location, Path] = {}
    for reference in references(spec):
        value = reference.value
        if not isinstance(reference.marker, InputFile) or value.is_absolute() or str(value).startswith("~"):
            continue
        names = tuple(str(part) for part in reference.location)
        given = any(names[: len(key)] == key for key in from_command_line)
        resolved[reference.location] = Path(os.path.abspath(value if given else folder / value))
    return with_values(spec, resolved)


def override_key(override: str) -> tuple[str, ...]:
    """The field path a ``--set KEY.PATH=VALUE`` sets: ``("init", "image")``."""
    return tuple(part.strip() for part in override.partition("=")[0].split("."))


def apply_override(data: dict[str, Any], override: str) -> None:
    """``animation.max_frames=48``: the value is read as TOML (numbers, booleans, quoted or bare strings). A
    number picks an item of a list of tables: ``controlnet.0.model=tiny``."""
    key, sep, raw = override.partition("=")
    shown = _shorten(override)  # errors quote the override, cut: it may be a hostile megabyte
    if not sep or not key.strip():
        raise SpecError("--set", shown, "KEY.PATH=VALUE, e.g. animation.max_frames=48")
    try:
        value = parse_toml(f"v = {raw.strip()}", field="--set", source=shown)["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    *parents, leaf = (part.strip() for part in key.strip().split("."))
    node: Any = data
    for part in parents:
        node = _item(node, part, shown) if isinstance(node, list) else node.setdefault(part, {})
        if not isinstance(node, dict | list):
            raise SpecError("--set", shown, f"a path through sections; {_shorten(part)!r} is a value")
    if isinstance(node, list):
        node[_index(node, leaf, shown)] = value
    else:
        node[leaf] = value


def _item(items: list[Any], part: str, override: str) -> Any:
    return items[_index(items, part, override)]


def _index(items: list[Any], part: str, override: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise SpecError("--set", override, f"an item number from 0 to {len(items) - 1} where {part!r} is")
    return int(part)


def spec_from_data(data: dict[str, Any]) -> Spec:
    """Validate spec data, however it was read: nesting and text are checked first (see
    :func:`~flipbook.spec.safe_parse.check_data`), then the model."""
    check_data(data)
    try:
        with size_errors("spec", "data"):
            return Spec.model_validate(data)
    except ValidationError as error:
        raise spec_error(error) from None


def spec_error(error: ValidationError) -> SpecError:
    """All validation problems in one error; the first names the field, the rest follow on their own lines."""
    problems = []
    for item in error.errors():
        where = error_path(item["loc"]) or "spec"
        value = item.get("input")
        message = _message(item)
        shown = "" if isinstance(value, dict) or "\n" in message else f" (got {shorten_repr(value)})"
        problems.append(f"{where}: {message}{shown}")
    first = error.errors()[0]
    field = error_path(first["loc"]) or "spec"
    return SpecError(field, first.get("input"), _message(first), message="\n".join(problems))


def _message(item: dict) -> str:
    """pydantic prefixes messages from our validators with "Value error, "; users need only the rule."""
    return item["msg"].removeprefix("Value error, ")


SHOWN_CHARS = 200
"""How much of a rejected value an error message repeats (a 2 MB prompt is not echoed back whole)."""


def _shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters with the full length said."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def shorten_repr(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters with the full length said."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"

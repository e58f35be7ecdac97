"""Read a spec from TOML or JSON, apply ``--set`` overrides, and report problems as FlipbookError.

Input files a spec file names (``init.image``, ``audio.file``, ``controlnet[0].image``: every field the schema
marks :class:`~flipbook.spec.references.InputFile`) are relative to the spec file's folder, as in any tool with
config files; ``--set`` values stay relative to the working directory. Both are made absolute when the spec is
loaded, so the run folder's spec.json and the spec embedded in outputs name the same files from anywhere.
``output.dir`` and model paths are not input files: they stay relative to the working directory.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flipbook.errors import SpecError
from flipbook.spec.model import Spec, error_path
from flipbook.spec.references import InputFile, Location, references, with_values
from flipbook.spec.safe_parse import check_data, parse_json, parse_toml, size_errors


def load_spec(path: str | Path, overrides: list[str] | None = None) -> Spec:
    """Load and validate ``path`` with ``key.path=value`` overrides applied (see :func:`load_spec_and_warnings`)."""
    return load_spec_and_warnings(path, overrides)[0]


def load_spec_and_warnings(path: str | Path, overrides: list[str] | None = None) -> tuple[Spec, list[str]]:
    """Load a .toml/.json spec or a Deforum settings file (.txt); also return what the caller should tell the
    user (for Deforum files: the settings flipbook has no meaning for yet, listed, never dropped silently)."""
    path = Path(path)
    data, warnings = read_spec_data(path)
    for override in overrides or []:
        apply_override(data, override)
    spec = resolve_input_files(spec_from_data(data), path.parent, [override_key(o) for o in overrides or []])
    if spec.output.name is None:
        spec = spec.model_copy(update={"output": spec.output.model_copy(update={"name": path.stem})})
    return spec, warnings


def read_spec_data(path: Path) -> tuple[dict[str, Any], list[str]]:
    if not path.is_file():
        raise SpecError(
            "spec",
            str(path),
            "an existing .toml, .json or Deforum settings (.txt) file, or a flipbook output",
        )
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return _deforum_data(path)
    if suffix in MEDIA_SUFFIXES:
        return _embedded_data(path), []
    text = _read_text(path)
    try:
        if suffix == ".json":
            return parse_json(text, source=str(path)), []
        if suffix == ".toml":
            return parse_toml(text, source=str(path)), []
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise SpecError("spec", str(path), f"valid {suffix[1:].upper()}", detail=str(error)) from None
    raise SpecError("spec", str(path), "a .toml, .json or Deforum settings (.txt) file, or a flipbook output")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
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


def _deforum_data(path: Path) -> tuple[dict[str, Any], list[str]]:
    from flipbook.spec.deforum import import_settings, read_deforum_settings

    return import_settings(read_deforum_settings(path))


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
    """``animation.max_frames=48``: the value is read as TOML (numbers, booleans, quoted or bare strings)."""
    key, sep, raw = override.partition("=")
    shown = _shorten(override)  # errors quote the override, cut: it may be a hostile megabyte
    if not sep or not key.strip():
        raise SpecError("--set", shown, "KEY.PATH=VALUE, e.g. animation.max_frames=48")
    try:
        value = parse_toml(f"v = {raw.strip()}", field="--set", source=shown)["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError("--set", shown, f"a path through sections; {_shorten(part)!r} is a value")
    node[leaf] = value


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

"""Which web UI widget a spec field gets, from the field's JSON Schema alone (no Gradio here).

:func:`widget_for` reads what ``flipbook schema`` says of a field: an input file (``x-flipbook.input_file``)
is an upload box for its kind, a model (``x-flipbook.model``) a name box offering the built-ins (prompt text,
whose ``<lora:...>`` tags name models, a prompt box), a schedule (a number, per-frame list, schedule string or
table) a text box with the range and unit of its type, a choice a dropdown, a bounded number a slider, and
so on. The web UI builds each mode's form with it
(:mod:`flipbook.server.ui`), so a field added to a mode's section comes with its widget.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from flipbook.spec.references import FILE_KINDS, parse_field

WidgetKind = Literal[
    "upload", "model", "prompt", "schedule", "choice", "integer", "number", "slider", "checkbox", "text"
]


@dataclass(frozen=True)
class Widget:
    """A widget for one field: its ``kind`` and what that kind needs (choices, bounds, the upload's file kind
    and types, the model's built-in names, the number's unit)."""

    kind: WidgetKind
    label: str
    default: Any = None
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    file_kind: str | None = None
    file_types: tuple[str, ...] = ()
    unit: str | None = None


@functools.lru_cache(maxsize=1)
def spec_schema() -> dict[str, Any]:
    """The spec's JSON Schema (as ``flipbook schema`` writes it)."""
    from flipbook.spec.model import Spec

    return Spec.model_json_schema()


def field_schema(path: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The schema of the spec field ``path`` (``camera.zoom``, ``controlnet[0].image``), ``$ref`` followed."""
    schema = schema or spec_schema()
    node = schema
    for part in parse_field(path):
        node = _deref(schema, node)
        node = _deref(schema, node["items"]) if isinstance(part, int) else node["properties"][part]
    return node


def _deref(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` and the one non-null branch of ``anyOf`` (an optional section)."""
    while True:
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
            continue
        branches = [b for b in node.get("anyOf", ()) if b.get("type") != "null"]
        if len(branches) == 1 and "x-flipbook" not in node and "properties" in _deref(schema, branches[0]):
            node = branches[0]
            continue
        return node


def widget_for(schema: dict[str, Any], label: str | None = None, default: Any = None) -> Widget:
    """The widget for a field with JSON Schema ``schema`` (see the module docstring); ``label`` and ``default``
    override the schema's title and default."""
    meaning = schema.get("x-flipbook", {})
    label = label or schema.get("title", "")
    default = schema.get("default") if default is None else default
    if "input_file" in meaning:
        kind = FILE_KINDS[meaning["input_file"]]
        return Widget("upload", label, None, file_kind=meaning["input_file"], file_types=kind.file_types)
    if meaning.get("form") == "prompt_tags":  # prompt text whose <lora:...> tags name models
        return Widget("prompt", label, default)
    if "model" in meaning:
        return Widget("model", label, default, choices=tuple(meaning.get("builtins", ())))
    bounds = {**meaning.get("range", {})}
    if _is_schedule(schema):
        return Widget("schedule", label, default, minimum=bounds.get("min"), maximum=bounds.get("max"),
                      unit=meaning.get("unit"))  # fmt: skip
    node = _plain(schema)
    if "enum" in node:
        return Widget("choice", label, default, choices=tuple(node["enum"]))
    if node.get("type") == "boolean":
        return Widget("checkbox", label, bool(default))
    if node.get("type") in ("integer", "number"):
        return _number(node, label, default, meaning.get("unit"))
    return Widget("text", label, default)


def _number(node: dict[str, Any], label: str, default: Any, unit: str | None) -> Widget:
    """A whole number box, or for a number bounded on both sides a slider (an exclusive bound moved in by one
    step), else a number box."""
    whole = node.get("type") == "integer"
    step = 1 if whole else 0.01
    low = node.get("minimum", _inside(node.get("exclusiveMinimum"), step))
    high = node.get("maximum", _inside(node.get("exclusiveMaximum"), -step))
    if not whole and low is not None and high is not None:
        return Widget("slider", label, default, minimum=low, maximum=high, step=step, unit=unit)
    return Widget("integer" if whole else "number", label, default, minimum=low, maximum=high, unit=unit)


def _inside(bound: float | None, step: float) -> float | None:
    return None if bound is None else bound + step


def _is_schedule(schema: dict[str, Any]) -> bool:
    """A schedule field takes a table (``ScheduleTable``) among its branches."""
    branches = [*schema.get("oneOf", ()), *schema.get("anyOf", ())]
    return any(b.get("$ref", "").endswith("/ScheduleTable") or _is_schedule(b) for b in branches)


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field's non-null branch."""
    branches = [b for b in schema.get("anyOf", ()) if b.get("type") != "null"]
    return branches[0] if len(branches) == 1 else schema


def form_value(widget: Widget, value: Any) -> Any:
    """A form value as spec data for a field with ``widget``; None for an empty box (the field is left unset,
    so its default applies)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if widget.kind == "schedule":
        return schedule_value(value)
    if widget.kind == "integer":
        return int(value)
    if widget.kind in ("number", "slider"):
        return float(value)
    if widget.kind == "checkbox":
        return bool(value)
    return str(value).strip()


def schedule_value(text: Any) -> Any:
    """A schedule box's text as the spec takes it: a plain number becomes a number, anything else (a Deforum
    schedule string) stays text."""
    if isinstance(text, int | float):
        return text
    text = str(text or "").strip()
    try:
        return float(text)
    except ValueError:
        return text

"""Which web UI widget a spec field gets, from the field's JSON Schema alone (no Gradio here).

:func:`widget_for` reads what ``flipbook schema`` says of a field: an input file (``x-flipbook.input_file``)
is an upload box for its kind, a model (``x-flipbook.model``) a name box offering the built-ins and the
models-folder kinds its names are found in (prompt text, whose ``<lora:...>`` tags name models, a prompt box),
a schedule (a number, per-frame list, schedule string or table; or a number-or-schedule with a range, such as
the steps) a one-line text box with the range and unit of its type, a choice (``Literal``) a dropdown, a string
with ``examples`` a dropdown that also takes other text, a list of choices a group of checkboxes, a list of
sections (``animatediff.motion_loras``) or an optional section (``adapter_lora``) a table with a column per
field, a list of numbers a comma-separated text box, a number bounded on both sides a slider, a whole number a
number box, a boolean a checkbox; the description is the widget's info text. The web UI builds every form with
it (:mod:`flipbook.server.ui`), so a field added to a section comes with its widget, and :func:`form_value`
turns what the widget holds back into spec data. Defaults come from the spec model (:func:`field_default`),
``default_factory`` ones included.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from flipbook.errors import FlipbookError
from flipbook.spec.references import FILE_KINDS, parse_field

WidgetKind = Literal[
    "upload", "model", "prompt", "schedule", "choice", "multichoice", "integer", "number", "slider",
    "checkbox", "list", "table", "text",
]  # fmt: skip


@dataclass(frozen=True)
class Widget:
    """A widget for one field: its ``kind`` and what that kind needs: choices (``custom``: other values may be
    typed too), bounds, the upload's file kind and types, the model's built-in names and models-folder kinds,
    the number's unit, the description as ``info``; a table's columns (each a field of the listed section,
    with its widget; ``record``: one optional section rather than a list), a list's item widget, and for text
    whether a JSON array is taken too (``takes_list``)."""

    kind: WidgetKind
    label: str
    default: Any = None
    choices: tuple[Any, ...] = ()
    custom: bool = False
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    file_kind: str | None = None
    file_types: tuple[str, ...] = ()
    unit: str | None = None
    info: str | None = None
    folders: tuple[str, ...] = ()
    columns: tuple[tuple[str, Widget], ...] = ()
    record: bool = False
    item: Widget | None = None
    takes_list: bool = False


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


def field_default(path: str) -> Any:
    """The default of the spec field ``path`` as the spec model has it (``default_factory`` ones too, which the
    JSON Schema leaves out), as plain data; None for a field inside a list item or without a default."""
    from pydantic_core import PydanticUndefined, to_jsonable_python

    from flipbook.spec.model import Spec

    model: Any = Spec
    parts = parse_field(path)
    for part in parts[:-1]:
        model = None if isinstance(part, int) else _section_of(model.model_fields[part].annotation)
        if model is None:
            return None
    value = model.model_fields[str(parts[-1])].get_default(call_default_factory=True)
    return None if value is PydanticUndefined else to_jsonable_python(value)


def _section_of(annotation: Any) -> Any:
    """The section class of a field that holds one section (``X`` or ``X | None``), else None."""
    import typing

    from pydantic import BaseModel

    members = typing.get_args(annotation) or (annotation,)
    sections = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    return sections[0] if len(sections) == 1 and typing.get_origin(annotation) is not list else None


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


def widget_for(
    schema: dict[str, Any],
    label: str | None = None,
    default: Any = None,
    *,
    root: dict[str, Any] | None = None,
) -> Widget:
    """The widget for a field with JSON Schema ``schema`` (see the module docstring); ``label`` and ``default``
    override the schema's title and default; ``root`` is the schema ``$ref`` points into (the spec's)."""
    root = root or spec_schema()
    meaning = schema.get("x-flipbook", {})
    label = label or schema.get("title", "")
    default = schema.get("default") if default is None else default
    info = schema.get("description")
    if "input_file" in meaning:
        kind = FILE_KINDS[meaning["input_file"]]
        return Widget(
            "upload", label, None, file_kind=meaning["input_file"], file_types=kind.file_types, info=info
        )
    if meaning.get("form") == "prompt_tags":  # prompt text whose <lora:...> tags name models
        return Widget("prompt", label, default, info=info)
    if "model" in meaning:
        return Widget("model", label, default, choices=tuple(meaning.get("builtins", ())), info=info,
                      folders=tuple(meaning.get("models_dir", ())))  # fmt: skip
    bounds = {**meaning.get("range", {})}
    if _is_schedule(schema) or (bounds and _takes(schema, "string")):
        return Widget("schedule", label, default, minimum=bounds.get("min"), maximum=bounds.get("max"),
                      unit=meaning.get("unit"), info=info)  # fmt: skip
    node = _deref(root, _plain(schema))
    if "properties" in node:  # one optional section (adapter_lora)
        return _table(root, node, label, default, info, record=True)
    if node.get("type") == "array":
        items = _deref(root, node.get("items", {}))
        if "enum" in items:
            return Widget("multichoice", label, default, choices=tuple(items["enum"]), info=info)
        if "properties" in items:
            return _table(root, items, label, default, info, record=False)
        return Widget("list", label, default, item=widget_for(items, root=root), info=info)
    if "enum" in node:
        return Widget("choice", label, default, choices=tuple(node["enum"]), info=info)
    if node.get("type") == "string" and "examples" in node:
        return Widget("choice", label, default, choices=tuple(node["examples"]), custom=True, info=info)
    if node.get("type") == "boolean":
        return Widget("checkbox", label, bool(default), info=info)
    if node.get("type") in ("integer", "number"):
        return _number(node, label, default, meaning.get("unit"), info)
    return Widget("text", label, default, info=info, takes_list=_takes(schema, "array"))


def _table(
    root: dict[str, Any], item: dict[str, Any], label: str, default: Any, info: str | None, *, record: bool
) -> Widget:
    """A table with a column per field of the section ``item``."""
    columns = tuple((name, widget_for(field, root=root)) for name, field in item["properties"].items())
    return Widget("table", label, default, columns=columns, record=record, info=info)


def _number(node: dict[str, Any], label: str, default: Any, unit: str | None, info: str | None) -> Widget:
    """A whole number box, or for a number bounded on both sides (and with a default: a slider always holds a
    value) a slider (an exclusive bound moved in by one step), else a number box. A whole number that must be
    a multiple (``multipleOf``: a width or height, as A1111's size sliders) is a slider in those steps."""
    whole = node.get("type") == "integer"
    step = node.get("multipleOf", 1) if whole else 0.01
    low = node.get("minimum", _inside(node.get("exclusiveMinimum"), step))
    high = node.get("maximum", _inside(node.get("exclusiveMaximum"), -step))
    sliding = not whole or step > 1
    if sliding and low is not None and high is not None and default is not None:
        return Widget("slider", label, default, minimum=low, maximum=high, step=step, unit=unit, info=info)
    kind = "integer" if whole else "number"
    return Widget(kind, label, default, minimum=low, maximum=high, unit=unit, info=info)


def _inside(bound: float | None, step: float) -> float | None:
    return None if bound is None else bound + step


def _is_schedule(schema: dict[str, Any]) -> bool:
    """A schedule field takes a table (``ScheduleTable``) among its branches."""
    branches = [*schema.get("oneOf", ()), *schema.get("anyOf", ())]
    return any(b.get("$ref", "").endswith("/ScheduleTable") or _is_schedule(b) for b in branches)


def _takes(schema: dict[str, Any], kind: str) -> bool:
    """Whether one of the field's branches is of JSON type ``kind``."""
    branches = [*schema.get("oneOf", ()), *schema.get("anyOf", ())]
    return schema.get("type") == kind or any(_takes(branch, kind) for branch in branches)


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field's non-null branch."""
    branches = [b for b in schema.get("anyOf", ()) if b.get("type") != "null"]
    return branches[0] if len(branches) == 1 else schema


# ---- what a widget holds -> spec data ----------------------------------------------------------------------


def form_value(widget: Widget, value: Any, field: str = "form") -> Any:
    """A form value as spec data for a field with ``widget``; None for an empty box (the field is left unset,
    so its default applies). A value that doesn't convert to the field's type is passed on as it is, so the
    spec's validation names ``field`` and says what it takes (nothing is rounded or guessed here)."""
    if widget.kind == "table":
        return _table_value(widget, value, field)
    if widget.kind == "multichoice":
        return list(value or [])
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if widget.kind == "schedule":
        return schedule_value(value, field)
    if widget.kind == "integer" or (widget.kind == "slider" and isinstance(widget.step, int)):
        return _whole(value)
    if widget.kind in ("number", "slider"):
        return _float(value)
    if widget.kind == "checkbox":
        return bool(value)
    if widget.kind == "list":
        return _list_value(widget, value, field)
    text = str(value).strip()
    if widget.takes_list and text.startswith("["):
        from flipbook.spec.safe_parse import parse_json

        return parse_json(text, field=field, source="the form")
    return text


def shown_value(widget: Widget, value: Any) -> Any:
    """What a widget shows for the spec value ``value`` (its default, first of all): the inverse of
    :func:`form_value` (a table's rows, a list's comma-separated text, a schedule's text)."""
    if widget.kind == "table":
        items = [value] if widget.record and value is not None else list(value or [])
        rows = [[_cell_text(item.get(name)) for name, _ in widget.columns] for item in items]
        return rows or [[""] * len(widget.columns)]
    if widget.kind == "list":
        return ", ".join(str(item) for item in value or [])
    if widget.kind == "multichoice":
        return list(value or [])
    if widget.kind in ("schedule", "text", "prompt"):
        if value is None:
            return ""
        return (
            value
            if isinstance(value, str)
            else _json(value)
            if isinstance(value, list | dict)
            else str(value)
        )
    return value


def schedule_value(text: Any, field: str = "schedule") -> Any:
    """A schedule box's text as the spec takes it: a plain number becomes a number (whole numbers an int), a JSON
    object or array a table (``{"schedule": ..., "interpolation": "cubic"}``) or per-frame list (as the box
    shows them), anything else (a Deforum schedule string) stays text."""
    if isinstance(text, int | float):
        return text
    text = str(text or "").strip()
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            continue
    if text.startswith(("{", "[")):
        from flipbook.spec.safe_parse import parse_json

        return parse_json(text, field=field, source="the form")
    return text


def schedule_rows(value: Any) -> tuple[list[list[str]], str]:
    """A schedule (as the spec or its box holds it) as keyframe rows ``[frame, value]`` and its interpolation,
    for the keyframe table: a number is one row at frame 0, a string its ``KEY:(VALUE)`` entries as written, a
    table its schedule and interpolation. Raises FlipbookError naming ``schedule`` for text that is no
    schedule and for a per-frame list (it has no keyframes)."""
    from flipbook.spec.schedules import ScheduleError, parse_schedule

    value = schedule_value(value) if isinstance(value, str) else value
    interpolation = "linear"
    if isinstance(value, dict):
        value, interpolation = value.get("schedule"), str(value.get("interpolation", "linear"))
    if isinstance(value, bool) or value is None:
        raise FlipbookError("schedule", value, "a number, a schedule string or a table")
    if isinstance(value, int | float):
        return [["0", str(value)]], interpolation
    if isinstance(value, list):
        raise FlipbookError("schedule", "a per-frame list", "a schedule with keyframes to edit in the table")
    try:
        keyframes = parse_schedule(str(value))
    except ScheduleError as error:
        raise FlipbookError(
            "schedule", value, "KEY:(VALUE) pairs like 0:(1.0), 30:(2.5)", detail=str(error)
        ) from None
    return [[keyframe.key, keyframe.value] for keyframe in keyframes], interpolation


def rows_schedule(rows: Any, interpolation: str = "linear") -> Any:
    """Keyframe rows ``[frame, value]`` (empty ones skipped) as the schedule box's value: ``0:(1.0), 30:(2.5)``,
    or with another interpolation than linear the table ``{"schedule": ..., "interpolation": ...}`` (JSON, as
    :func:`shown_value` shows a table). The inverse of :func:`schedule_rows`."""
    if hasattr(rows, "values") and hasattr(rows, "columns"):  # a pandas DataFrame
        rows = rows.values.tolist()
    entries = []
    for row in rows or []:
        cells = [_cell_text(_blank_nan(cell)).strip() for cell in [*list(row), None, None][:2]]
        if cells[1]:
            entries.append(f"{cells[0] or '0'}:({cells[1]})")
    text = ", ".join(entries)
    if interpolation == "linear" or not text:
        return text
    return _json({"schedule": text, "interpolation": interpolation})


def _whole(value: Any) -> Any:
    number = _float(value)
    return int(number) if isinstance(number, float) and number.is_integer() else number


def _float(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _list_value(widget: Widget, value: Any, field: str) -> Any:
    """A list box: comma-separated values (or a JSON array), each converted as the item's widget says."""
    if isinstance(value, list):
        items = value
    else:
        from flipbook.spec.safe_parse import parse_json

        text = str(value).strip()
        items = parse_json(text if text.startswith("[") else f"[{text}]", field=field, source="the form")
    if not isinstance(items, list) or widget.item is None:
        return items
    return [form_value(widget.item, item, field) for item in items]


def _table_value(widget: Widget, rows: Any, field: str) -> Any:
    """A table's rows as a list of sections (a record: the one section, or None), empty rows left out."""
    if hasattr(rows, "values") and hasattr(rows, "columns"):  # a pandas DataFrame
        rows = rows.values.tolist()
    items = []
    for row in rows or []:
        cells = [*list(row), *[None] * len(widget.columns)][: len(widget.columns)]
        item = {
            name: converted
            for (name, column), cell in zip(widget.columns, cells, strict=True)
            if (converted := form_value(column, _blank_nan(cell), f"{field}.{name}")) is not None
        }
        if item:
            items.append(item)
    if widget.record:
        return items[0] if items else None
    return items


def _blank_nan(cell: Any) -> Any:
    return None if isinstance(cell, float) and cell != cell else cell


def _cell_text(value: Any) -> str:
    return "" if value is None else str(value)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)

"""Values that change over the animation (numbers, per-frame lists, schedule strings, tables), on every field
that takes one: true/false are refused, and a bad table reports its own problem first."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.errors import SpecError
from flipbook.spec.load import spec_from_data
from flipbook.spec.model import Spec

ALLOWED = "a number, a per-frame list, a schedule string or a table"


def _schedule_fields() -> list[str]:
    """Every field of the spec that takes a schedule value (its schema offers the schedule table), as a
    path: ``animation.strength``, ``controlnet[0].weight``."""
    schema = Spec.model_json_schema()
    definitions = schema["$defs"]

    def takes_table(node: Any) -> bool:
        if isinstance(node, dict):
            return node.get("$ref") == "#/$defs/ScheduleTable" or any(takes_table(v) for v in node.values())
        return isinstance(node, list) and any(takes_table(v) for v in node)

    paths = []
    for section, prop in schema["properties"].items():
        ref, index = prop.get("$ref") or prop.get("items", {}).get("$ref"), "[0]" if "items" in prop else ""
        if not ref:
            continue
        for name, field in definitions[ref.rsplit("/", 1)[1]]["properties"].items():
            if takes_table(field):
                paths.append(f"{section}{index}.{name}")
    return paths


SCHEDULE_FIELDS = _schedule_fields()


def _data(path: str, value: Any) -> dict[str, Any]:
    """A spec document with ``value`` at ``path`` (a ``[0]`` section is a one-unit list: ControlNet)."""
    section, name = path.split(".")
    data: dict[str, Any] = {"prompts": {"0": "a forest"}}
    if section.endswith("[0]"):
        data[section.removesuffix("[0]")] = [{"model": "tiny", name: value}]
    else:
        data[section] = {name: value}
    return data


def _error(path: str, value: Any) -> SpecError:
    with pytest.raises(SpecError) as info:
        spec_from_data(_data(path, value))
    return info.value


def test_the_schedule_fields_are_found() -> None:
    assert {"animation.strength", "sampling.cfg", "sampling.seed_schedule", "camera.zoom"} <= set(
        SCHEDULE_FIELDS
    )
    assert {"controlnet[0].weight", "video.feedback", "camera.noise_multiplier"} <= set(SCHEDULE_FIELDS)
    assert len(SCHEDULE_FIELDS) > 30


@pytest.mark.parametrize("path", SCHEDULE_FIELDS)
@pytest.mark.parametrize("value", [False, True])
def test_true_and_false_are_not_schedule_values(path: str, value: bool) -> None:
    error = _error(path, value)
    assert (error.field, error.value, error.allowed) == (path, value, ALLOWED)
    assert str(error) == f"{path}: {ALLOWED} (got {value})"


@pytest.mark.parametrize("path", SCHEDULE_FIELDS)
def test_true_and_false_are_refused_in_lists_and_tables(path: str) -> None:
    assert _error(path, [0.5, True]).field == f"{path}.1"
    assert _error(path, {"schedule": False}).field == f"{path}.schedule"
    assert (
        _error(path, {"schedule": [0.5, 0.5, False], "interpolation": "step"}).field == f"{path}.schedule.2"
    )


@pytest.mark.parametrize("path", SCHEDULE_FIELDS)
def test_a_table_reports_its_own_problem_first(path: str) -> None:
    error = _error(path, {"schedule": "0:(0.5), 10:(", "interpolation": "linear"})
    lines = str(error).splitlines()
    assert lines[0] == f"{path}.schedule: unclosed '('"
    assert lines[1].strip() == "0:(0.5), 10:(" and lines[2].strip() == "^"
    assert error.field == f"{path}.schedule" and "valid number" not in str(error)

    error = _error(path, {"schedule": "0:(0.5)", "interpolation": "lin"})
    assert str(error) == f"{path}.interpolation: Input should be 'linear', 'cubic' or 'step' (got 'lin')"


@pytest.mark.parametrize("value", [None, {1, 2}, b"0:(1)"])
def test_other_types_name_what_is_allowed(value: Any) -> None:
    error = _error("animation.strength", value)
    assert (error.field, error.allowed) == ("animation.strength", ALLOWED)
    assert "\n" not in str(error)  # one line, not one per kind of value


def test_schedule_strings_still_report_the_caret() -> None:
    error = _error("camera.zoom", "0:(1.0), 5:(")
    assert str(error).splitlines()[0] == "camera.zoom: unclosed '('"


def test_steps_refuse_true_and_false() -> None:
    for value in (True, False):
        error = _error("sampling.steps", value)
        assert (error.field, error.value) == ("sampling.steps", value)
        assert "an integer from 1 to 1000, or a schedule string" in str(error)
    assert spec_from_data(_data("sampling.steps", 20.0)).sampling.steps == 20
    assert spec_from_data(_data("sampling.steps", "0:(10), 5:(20)")).sampling.steps == "0:(10), 5:(20)"


numbers = st.one_of(st.integers(-100, 100), st.floats(-100, 100, allow_nan=False))


@settings(max_examples=60, deadline=None)
@given(values=st.lists(numbers, min_size=1, max_size=8), flag=st.booleans(), where=st.integers(0, 8))
def test_number_lists_load_as_floats_and_any_boolean_in_them_is_refused(values, flag, where) -> None:
    loaded = spec_from_data(_data("animation.strength", values)).animation.strength
    assert loaded == [float(v) for v in values] and all(type(v) is float for v in loaded)
    where = min(where, len(values))
    with_flag = [*values[:where], flag, *values[where:]]
    assert _error("animation.strength", with_flag).field == f"animation.strength.{where}"


@settings(max_examples=60, deadline=None)
@given(value=numbers)
def test_numbers_load_as_floats_on_every_schedule_field(value) -> None:
    for path in ("animation.strength", "camera.zoom", "controlnet[0].weight"):
        section, name = path.split(".")
        if path == "controlnet[0].weight" and not 0 <= value <= 10:
            continue
        spec = spec_from_data(_data(path, value))
        loaded = getattr(spec.controlnet[0] if section.endswith("]") else getattr(spec, section), name)
        assert loaded == float(value) and type(loaded) is float


def _number_fields() -> dict[str, bool]:
    """Every field of a section that takes numbers only (integer/number in its schema, maybe null, or a list of
    them), as a path (the ControlNet unit's as ``controlnet[0].name``) and whether it takes a list."""
    schema = Spec.model_json_schema()

    def numbers_only(node: dict[str, Any]) -> bool:
        kinds = [n for n in node.get("anyOf", [node]) if n.get("type") != "null"]
        kinds = [n.get("items", {}) if n.get("type") == "array" else n for n in kinds]
        return bool(kinds) and all(n.get("type") in ("integer", "number") and "oneOf" not in n for n in kinds)

    paths = {}
    for section, prop in schema["properties"].items():
        ref, index = prop.get("$ref") or prop.get("items", {}).get("$ref"), "[0]" if "items" in prop else ""
        if not ref:
            continue
        for name, field in schema["$defs"][ref.rsplit("/", 1)[1]]["properties"].items():
            if numbers_only(field):
                paths[f"{section}{index}.{name}"] = field.get("type") == "array"
    return paths


NUMBER_FIELDS = _number_fields()


def test_the_number_fields_are_found() -> None:
    assert {"animation.max_frames", "animation.fps", "video.fps", "controlnet[0].guidance_start"} <= set(
        NUMBER_FIELDS
    )
    assert NUMBER_FIELDS["interpolate.sine_frequencies"] and len(NUMBER_FIELDS) > 40
    assert not set(NUMBER_FIELDS) & set(SCHEDULE_FIELDS) and "camera.perspective_flip" not in NUMBER_FIELDS


@pytest.mark.parametrize("path", NUMBER_FIELDS)
def test_true_and_false_are_not_numbers(path: str) -> None:
    for value in [[1, True], [False]] if NUMBER_FIELDS[path] else [True, False]:
        error = _error(path, value)
        assert (error.field, error.value) == (path, value)
        assert str(error).endswith(f"not true or false (got {value})")


def test_booleans_stay_booleans_where_a_field_takes_them() -> None:
    spec = spec_from_data(_data("camera.perspective_flip", True))
    assert spec.camera.perspective_flip is True
    data = {**_data("camera.hybrid_composite", True), "animation": {"mode": "2d"}}
    data["camera"]["hybrid_video"] = "clip.mp4"
    assert spec_from_data(data).camera.hybrid_composite == "normal"  # the earlier on/off switch

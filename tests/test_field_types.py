"""What a field means is in its type (flipbook.spec.fields), and everything reads it from there. Walking the
schema (no list of fields): every model field is refused as a path by the server, found by name in a models
folder through its type, and has a web UI widget; every input file is taken only as an upload and has an
upload widget for its kind; a schedule's range bounds the plan and the UI's widget alike."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from flipbook.errors import FlipbookError, SpecError
from flipbook.models.folders import A1111_FOLDERS, EXTENSIONS, FOLDER_MARKERS, KINDS
from flipbook.modes import MODES
from flipbook.server.security import check_model_reference
from flipbook.server.settings import ServerSettings
from flipbook.server.submit import check_references
from flipbook.server.widgets import field_schema, widget_for
from flipbook.spec.fields import Range, range_of, schedule_fields
from flipbook.spec.load import spec_from_data
from flipbook.spec.model import Spec
from flipbook.spec.plan import build_plan
from flipbook.spec.references import (
    ANY_INDEX,
    FILE_KINDS,
    InputFile,
    ModelReference,
    field_name,
    marked_fields,
    set_in_data,
)

BASE = {"prompts": {"0": "a cat"}, "sampling": {"seed": 1}}


def _concrete(location) -> str:
    return field_name(tuple(0 if part == ANY_INDEX else part for part in location))


@pytest.fixture()
def webui(tmp_path):
    """An A1111 install with one model of every models-folder kind, ``x-<kind>``: a file, or for the kinds
    whose models are folders (depth, preprocessor models) a folder with its marker."""
    root = tmp_path / "webui"
    for kind in KINDS:
        folder = root / A1111_FOLDERS[kind][0]
        folder.mkdir(parents=True, exist_ok=True)
        if EXTENSIONS[kind]:
            (folder / f"x-{kind}{EXTENSIONS[kind][0]}").write_bytes(b"weights")
        else:
            (folder / f"x-{kind}").mkdir()
            (folder / f"x-{kind}" / FOLDER_MARKERS[kind][0]).write_text("{}")
    return root


def test_every_model_field_is_a_name_found_in_the_models_folder_through_its_type(webui):
    models = [(location, m) for location, m in marked_fields() if isinstance(m, ModelReference)]
    assert len(models) >= 14
    for location, marker in models:
        field = _concrete(location)
        assert marker.folders, f"{field}: a model kind with no models-folder kind"
        for kind in marker.folders:  # the folder kinds the type names, found as the loaders find them
            found = marker.find(f"x-{kind}", webui)
            assert found is not None and found.stem == f"x-{kind}", (field, kind)
            check_model_reference(field, f"x-{kind}", marker, webui)  # the server takes the name
            with pytest.raises(FlipbookError) as error:  # never the path to it
                check_model_reference(field, str(found), marker, webui)
            assert error.value.field == field
        for kind in set(KINDS) - set(marker.folders) - {"motion_lora", "lora", "embedding"}:
            assert marker.find(f"x-{kind}", webui) is None, (field, kind)  # another kind's file is not it
            if kind not in marker.builtins:
                with pytest.raises(FlipbookError):
                    check_model_reference(field, f"x-{kind}", marker, webui)
        assert "--models-dir" in marker.allowed(), field


def test_every_model_and_input_file_field_has_a_widget():
    for location, marker in marked_fields():
        widget = widget_for(field_schema(_concrete(location)))
        if isinstance(marker, InputFile):
            assert (widget.kind, widget.file_kind) == ("upload", marker.kind), location
            assert widget.file_types == FILE_KINDS[marker.kind].file_types
        elif isinstance(marker, ModelReference):
            expected = "prompt" if marker.form == "prompt_tags" else "model"
            assert widget.kind == expected, location
            assert expected == "prompt" or widget.choices == marker.builtins, location


def _data_with(location, value) -> dict | None:
    """A valid spec's data with ``value`` at ``location`` in the first mode that takes it; None if none."""
    for mode in MODES:
        data = {**copy.deepcopy(BASE), "animation": {"mode": mode, "max_frames": 2}}
        if ANY_INDEX in location:  # a list item, with what it needs (a top-level list's a model name)
            at = location.index(ANY_INDEX)
            parent = data
            for part in location[: at - 1]:
                parent = parent.setdefault(part, {})
            parent[location[at - 1]] = [{"model": "tiny"} if at == 1 else {}]
        set_in_data(data, tuple(0 if part == ANY_INDEX else part for part in location), value)
        try:
            spec_from_data(data)
        except FlipbookError:
            continue
        return data
    return None


def test_every_input_file_field_is_taken_only_as_an_upload(tmp_path):
    settings = ServerSettings(runs_dir=tmp_path / "runs", workers=0)
    inputs = [location for location, m in marked_fields() if isinstance(m, InputFile)]
    assert len(inputs) >= 9
    for location in inputs:
        data = _data_with(location, "/etc/hosts")
        assert data is not None, f"no mode takes {_concrete(location)}"
        spec = spec_from_data(data)
        with pytest.raises(FlipbookError) as error:
            check_references(spec, settings, set())
        assert error.value.field == _concrete(location)
        concrete = tuple(0 if part == ANY_INDEX else part for part in location)
        check_references(spec, settings, {concrete})  # uploaded: taken


def test_empty_text_for_an_input_file_is_an_error_not_the_current_folder():
    """``--set camera.hybrid_video=''`` once read as ``.`` (the working folder); every input-file field refuses
    empty text, naming the field."""
    for location, _ in [(loc, m) for loc, m in marked_fields() if isinstance(m, InputFile)]:
        data = _data_with(location, "/etc/hosts")
        for empty in ("", "  "):
            set_in_data(data, tuple(0 if part == ANY_INDEX else part for part in location), empty)
            with pytest.raises(SpecError) as error:
                spec_from_data(data)
            named = str(error.value).replace("[0]", ".0")  # controlnet[0].image or a.list.0.image
            assert _concrete(location).replace("[0]", ".0") in named and "not empty text" in named


def _bool_fields() -> list[tuple[str, str]]:
    found = []
    for section, info in Spec.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and hasattr(model, "model_fields"):
            found += [
                (section, n) for n, f in model.model_fields.items() if f.annotation in (bool, bool | None)
            ]
    return found


@pytest.mark.parametrize("value", [1, 0, "yes", "true", 1.0])
def test_a_true_false_field_takes_only_true_or_false(value):
    """``post.slowmo = 1`` was read as true by pydantic's lax mode: a number or text in a true/false field is
    an error naming the field, in every section."""
    fields = _bool_fields()
    assert len(fields) >= 10
    for section, name in fields:
        data = {**copy.deepcopy(BASE), section: {name: value}}
        with pytest.raises(SpecError) as error:
            spec_from_data(data)
        assert f"{section}.{name}" in str(error.value) and "true or false" in str(error.value)


def _ranged_schedules() -> list[tuple[str, str, Range]]:
    """Every (section, schedule, range) of the spec whose type has a Range."""
    found = []
    for section, info in Spec.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and hasattr(model, "model_fields"):
            for name in schedule_fields(model):
                allowed = range_of(model, name)
                if allowed is not None:
                    found.append((section, name, allowed))
    return found


def test_a_schedule_range_bounds_the_widget():
    ranged = _ranged_schedules()
    assert {("camera", "zoom"), ("video", "feedback"), ("sampling", "cfg")} <= {(s, n) for s, n, _ in ranged}
    for section, name, allowed in ranged:
        widget = widget_for(field_schema(f"{section}.{name}"))
        assert (widget.kind, widget.minimum, widget.maximum) == ("schedule", allowed.low, allowed.high)


def _mode_data(mode: str) -> dict:
    data = {**copy.deepcopy(BASE), "animation": {"mode": mode, "max_frames": 3}}
    if "init.video" in MODES[mode].inputs:
        data["init"] = {"video": "source.mp4"}  # the plan never opens it
    return data


@pytest.mark.parametrize("mode", list(MODES))
def test_every_range_a_mode_reads_is_checked_by_the_plan(mode):
    """Out of range at a frame is refused naming the field and the frame, for every ranged schedule the mode
    reads (found from the types and the mode's descriptor, not listed)."""
    descriptor = MODES[mode]
    reads = descriptor.read_schedules(spec_from_data(_mode_data(mode)))
    core = {("sampling", "cfg"), ("animation", "strength")}
    checked = 0
    for section, name, allowed in _ranged_schedules():
        if name not in reads.get(section, ()) and (section, name) not in core:
            continue
        outside = allowed.high if allowed.open_high else allowed.high * 1.5 + 1
        for value in (allowed.low - 1, outside):
            data = _mode_data(mode)
            data.setdefault(section, {})[name] = f"0:({allowed.low}), 1:({value!r})"
            with pytest.raises(SpecError) as error:
                build_plan(spec_from_data(data))
            assert error.value.field == f"{section}.{name}" and error.value.detail == "at frame 1", (
                error.value
            )
            assert error.value.allowed == allowed.allowed
        checked += 1
    assert checked >= 2  # cfg and strength in every mode, and the ranged schedules the mode reads


def test_the_range_is_checked_at_every_frame():
    allowed = Range(0.0, 1.0, "a share from 0 to 1", open_high=True)
    allowed.check("x", np.array([0.0, 0.5, np.nextafter(1.0, 0.0)]))
    with pytest.raises(SpecError) as error:
        allowed.check("x", np.array([0.0, 1.0]))
    assert (error.value.field, error.value.value, error.value.detail) == ("x", 1.0, "at frame 1")

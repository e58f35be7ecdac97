"""Modes declare themselves: every registered mode is a package with one descriptor, the spec and its schema
are assembled from the descriptors, and the summary, the Deforum import, the web UI and ``flipbook bench``
read them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from flipbook.modes import DEFAULT_MODE, MODES, REGISTERED, for_deforum, mode_only_inputs, sections
from flipbook.server.widgets import field_schema
from flipbook.spec.deforum import deforum_to_spec_data
from flipbook.spec.load import spec_from_data
from flipbook.spec.model import Spec
from flipbook.spec.references import InputFile, marked_fields, parse_field
from flipbook.spec.summary import summarize

NEEDS = {
    "video": {"init": {"video": "source.mp4"}},
    "variations": {"init": {"image": "init.png", "mask": "mask.png"}},
    "loop": {"prompts": {"0": "a lighthouse", "12": "a lighthouse at night"}},
    "restyle": {"init": {"video": str(Path(__file__).parents[1] / "examples/assets/bouncing-ball.mp4")}},
}
"""What a mode can't be validated without: init files (the summary never opens them, except restyle's source,
which its keyframes are chosen from), a second keyframe."""


def _data(mode: str) -> dict:
    data = {"prompts": {"0": "a lighthouse"}, "sampling": {"seed": 3}, "animation": {"mode": mode}}
    return data | NEEDS.get(mode, {})


def test_the_schema_enumerates_the_modes_and_their_sections(run_cli):
    code, out, _ = run_cli("schema")
    assert code == 0
    schema = json.loads(out)
    mode = schema["$defs"]["AnimationSection"]["properties"]["mode"]
    assert mode["enum"] == list(MODES) and mode["default"] == DEFAULT_MODE
    assert mode["enumDescriptions"] == [m.description for m in REGISTERED]
    for name, declared in mode["x-flipbook"]["modes"].items():
        section = MODES[name].section
        assert declared["section"] == section and declared["inputs"] == list(MODES[name].inputs)
        if section is not None:  # the mode's own fields, under its section, for editors to complete
            definition = schema["$defs"][MODES[name].settings.__name__]
            assert set(definition["properties"]) == set(MODES[name].settings.model_fields)
            assert schema["properties"][section]["$ref"].endswith(MODES[name].settings.__name__)
            assert name in schema["properties"][section]["description"]
    only = {n: p["x-flipbook"]["only_in"] for n, p in schema["$defs"]["CameraSection"]["properties"].items()
            if "only_in" in p.get("x-flipbook", {})}  # fmt: skip
    assert only["zoom"] == "2d" and only["fov"] == "3d" and "translation_x" not in only


def test_the_spec_is_the_core_sections_and_every_modes_section():
    fields = Spec.model_fields
    for key, model in sections().items():
        assert fields[key].annotation is model
    assert list(fields)[:9] == ["version", "model", "sampling", "animation", "prompts", "positive_prompt",
                                "negative_prompt", "controlnet", "init"]  # fmt: skip
    assert list(fields)[-4:] == ["performance", "audio", "post", "output"]
    with pytest.raises(Exception, match="one of: " + ", ".join(MODES)):
        spec_from_data({"prompts": {"0": "x"}, "animation": {"mode": "4d"}})


@pytest.mark.parametrize("mode", REGISTERED, ids=lambda m: m.name)
def test_every_descriptor_names_what_exists(mode):
    """The render module, the bench case and the form's fields are there; the inputs only some modes read are
    input-file fields of the spec."""
    assert importlib.util.find_spec(mode.render_module) is not None
    assert mode.bench is None or importlib.util.find_spec(mode.bench) is not None
    files = {".".join(map(str, location)) for location, m in marked_fields() if isinstance(m, InputFile)}
    assert set(mode.inputs) <= files
    for form_field in mode.form:
        assert field_schema(form_field.path), form_field
        parse_field(form_field.path)
    assert mode.section is None or Spec.model_fields[mode.section].annotation is mode.settings


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_describes_itself_in_the_summary(mode):
    spec = spec_from_data(_data(mode))
    text = summarize(spec)
    assert text.startswith(f"ok: {mode} animation, ")
    descriptor = MODES[mode]
    if descriptor.describe is not None:
        from flipbook.spec.plan import build_plan

        for line in descriptor.describe(spec, build_plan(spec)):
            assert f"\n{line}\n" in text
    assert spec.animation.text_interpolation() == descriptor.prompt_interpolation


def test_an_input_only_some_modes_read_is_refused_elsewhere_naming_those_modes():
    for field, readers in mode_only_inputs().items():
        others = [m for m in MODES if m not in readers]
        section, name = field.split(".")
        with pytest.raises(Exception) as error:
            spec_from_data(
                {"prompts": {"0": "x"}, "animation": {"mode": others[0]}, section: {name: "x.mp4"}}
            )
        assert f"only with animation.mode {' or '.join(readers)}" in str(error.value)


@pytest.mark.parametrize("mode", [m for m in REGISTERED if m.deforum_modes], ids=lambda m: m.name)
def test_each_mode_imports_the_deforum_modes_it_declares(mode):
    for deforum in mode.deforum_modes:
        for spelling in (deforum, deforum.upper(), f" {deforum.lower()} "):
            assert for_deforum(spelling) is mode
            data, _ = deforum_to_spec_data({"animation_mode": spelling, "prompts": {"0": "x"}})
            assert data["animation"]["mode"] == mode.name
    assert for_deforum("Interpolation") is None


def test_a_mode_s_benchmark_is_listed_under_its_name():
    from flipbook.bench import CASES

    assert {m.name for m in REGISTERED if m.bench} <= set(CASES)

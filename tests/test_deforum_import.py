"""Deforum settings import: reading every era's files, mapping onto the spec, and the TOML writer."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.errors import FlipbookError
from flipbook.spec.deforum import (
    deforum_sampler_name,
    deforum_to_spec_data,
    read_deforum_settings,
    spec_to_toml,
)
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan

TESTDATA = Path(__file__).parents[2] / "shared" / "testdata" / "deforum"
FILES = sorted(TESTDATA.glob("*.txt")) if TESTDATA.is_dir() else []

# Real files whose values flipbook genuinely can't take; each must fail with exactly this field named.
UNSUPPORTED_MODE = {"Encodex-Ai__stable-diffusion-webui__deforum_settings.txt"}  # "Video Input"
INVALID_SPEC: dict[str, str] = {}  # every file whose mode flipbook renders also validates
# The notebook-era file; its sampler dpmpp_2s_a is A1111's "DPM++ 2S a", which diffusers lacks and flipbook
# brings as its own scheduler (flipbook.models.dpmpp_2s_ancestral)
NOTEBOOK_ERA = (
    "deforum-art__deforum-stable-diffusion__outputs__2023-01__StableFun__20230101125957_settings.txt"
)
INVALID_PLAN: dict[
    str, str
] = {}  # every file that validates also plans (steps = 1 runs one step, as in A1111)
CAMERA_KEYS = {"angle", "zoom", "translation_x", "translation_y"}

MINIMAL = {
    "W": 512,
    "H": 768,
    "seed": -1,
    "sampler": "euler_ancestral",
    "steps": 30,
    "seed_behavior": "schedule",
    "seed_iter_N": 2,
    "seed_schedule": '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)',
    "animation_mode": "2D",
    "max_frames": 48,
    "fps": 24,
    "cfg_scale_schedule": "0: (7), 24: (5)",
    "strength_schedule": "0: (0.65)",
    "strength": 0.8,
    "clip_skip": 2,
    "angle": "0:(0)",
    "zoom": "0:(1.04)",
    "diffusion_cadence": 2,
    "batch_name": "Deforum_{timestring}",
    "prompts": {"0": "a forest --neg fog", "max_f-10": "a city"},
    "animation_prompts_positive": "oil painting,",
    "animation_prompts_negative": "",
}


def test_minimal_settings_map_to_expected_spec_data():
    data, unmapped = deforum_to_spec_data(MINIMAL)
    assert data == {
        "version": 1,
        "prompts": {"0": "a forest --neg fog", "max_f-10": "a city"},
        "positive_prompt": "oil painting,",
        "sampling": {
            "seed": -1,
            "seed_behavior": "schedule",
            "seed_iter_n": 2,
            "seed_schedule": '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)',
            "cfg": "0: (7), 24: (5)",
            "sampler": "Euler a",
            "steps": 30,
            "clip_skip": 2,
        },
        "animation": {
            "mode": "travel",
            "max_frames": 48,
            "width": 512,
            "height": 768,
            "fps": 24,
            "strength": 0.65,
        },
    }
    assert unmapped == ["angle", "diffusion_cadence", "strength", "zoom"]  # sorted; batch_name is bookkeeping
    plan = build_plan(spec_from_data(data).with_seed())
    assert len(plan) == 48 and plan[0].prompt.startswith("oil painting,")


def test_width_not_multiple_of_8_is_left_for_validation():
    data, _ = deforum_to_spec_data({**MINIMAL, "W": 500})
    assert data["animation"]["width"] == 500
    with pytest.raises(FlipbookError, match="animation.width"):
        spec_from_data(data)


def test_era_spellings():
    old = {"width": 640, "height": 384, "scale": 9, "previous_frame_strength": 0.5, "strength": 0.3,
           "sampler": "klms", "animation_prompts": '{"0": "a", "12": "b"}'}  # fmt: skip
    data, unmapped = deforum_to_spec_data(old)
    assert data["animation"] == {"mode": "travel", "width": 640, "height": 384, "strength": 0.5}
    assert data["sampling"] == {"cfg": 9, "sampler": "LMS"}
    assert data["prompts"] == {"0": "a", "12": "b"}
    assert unmapped == ["strength"]


def test_notebook_inverted_prompt_batch_and_lists():
    data, _ = deforum_to_spec_data(
        {"prompts": {"a lake, by Durand": "00000", "a portrait, by Artgerm": "00001"}}
    )
    assert data["prompts"] == {"0": "a lake, by Durand", "1": "a portrait, by Artgerm"}
    data, _ = deforum_to_spec_data({"prompts": ["one", "two"]})
    assert data["prompts"] == {"0": "one", "1": "two"}


def test_scheduled_settings_held_constant_or_reported():
    base = {"prompts": {"0": "x"}, "steps": 20, "sampler": "Euler"}
    data, unmapped = deforum_to_spec_data(
        {**base, "enable_steps_scheduling": True, "steps_schedule": "0: (30)",
         "enable_sampler_scheduling": True, "sampler_schedule": '0: ("DPM++ 2M")'}
    )  # fmt: skip
    assert data["sampling"]["steps"] == 30 and data["sampling"]["sampler"] == "DPM++ 2M"
    assert "steps_schedule" not in unmapped
    data, unmapped = deforum_to_spec_data(
        {**base, "enable_steps_scheduling": True, "steps_schedule": "0: (20), 9: (30)"}
    )
    assert data["sampling"]["steps"] == 20 and "steps_schedule" in unmapped
    data, unmapped = deforum_to_spec_data(
        {**base, "enable_steps_scheduling": False, "steps_schedule": "0: (30)"}
    )
    assert data["sampling"]["steps"] == 20 and "steps_schedule" not in unmapped


@pytest.mark.parametrize("mode", ["Video Input", "Interpolation"])
def test_modes_flipbook_lacks_are_errors(mode):
    with pytest.raises(FlipbookError, match=mode) as error:
        deforum_to_spec_data({**MINIMAL, "animation_mode": mode})
    assert "3D" in error.value.allowed


def test_sampler_names():
    assert deforum_sampler_name("dpmpp_2m") == "DPM++ 2M"
    assert deforum_sampler_name("Euler a") == "Euler a"
    assert deforum_sampler_name("dpmpp_2s_a") == "DPM++ 2S a"


@pytest.mark.parametrize(
    ("text", "detail"),
    [("", "Expecting value"), ("[1, 2]", "top level"), ('{"W": 512', "line 1"), ("{'W': }", "Expecting")],
)
def test_bad_files_are_flipbook_errors(tmp_path, text, detail):
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FlipbookError, match="settings") as error:
        read_deforum_settings(path)
    assert detail in error.value.detail and error.value.value == str(path)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(FlipbookError, match="settings"):
        read_deforum_settings(tmp_path / "nope.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00{")
    with pytest.raises(FlipbookError, match="UTF-8"):
        read_deforum_settings(tmp_path / "bin.txt")


def test_lenient_syntax(tmp_path):
    path = tmp_path / "hand.txt"
    text = '\ufeff{\r\n  // edited\r\n  "W": 512, /* c */ "url": "http://x//y", "p": {"0": "a, b",},\r\n}\r\n'
    path.write_text(text, encoding="utf-8")
    assert read_deforum_settings(path) == {"W": 512, "url": "http://x//y", "p": {"0": "a, b"}}
    path.write_text("{'W': 512, 'use_init': False, 'init_image': None}", encoding="utf-8")
    assert read_deforum_settings(path) == {"W": 512, "use_init": False, "init_image": None}


@pytest.mark.skipif(not FILES, reason="shared Deforum testdata not present")
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name[:60])
def test_real_files(path):
    settings_ = read_deforum_settings(path)
    if path.name in UNSUPPORTED_MODE:
        with pytest.raises(FlipbookError, match="animation_mode"):
            deforum_to_spec_data(settings_)
        return
    data, unmapped = deforum_to_spec_data(settings_)
    assert unmapped == sorted(unmapped) and set(unmapped) <= set(settings_)
    if settings_.get("animation_mode") in ("2D", "3D"):
        assert set(unmapped) >= CAMERA_KEYS
    assert tomllib.loads(spec_to_toml(data)) == data
    if path.name in INVALID_SPEC:
        with pytest.raises(FlipbookError) as error:
            spec_from_data(data)
        assert error.value.field == INVALID_SPEC[path.name]
        return
    spec = spec_from_data(data)
    if path.name == NOTEBOOK_ERA:
        assert spec.sampling.sampler == "DPM++ 2S a"
    if path.name in INVALID_PLAN:
        with pytest.raises(FlipbookError) as error:
            build_plan(spec.with_seed())
        assert error.value.field == INVALID_PLAN[path.name]
        return
    plan = build_plan(spec.with_seed())
    assert len(plan) == spec.animation.max_frames


@pytest.mark.skipif(not FILES, reason="shared Deforum testdata not present")
def test_real_files_quirks_covered():
    """The folder's README promises CRLF files and a notebook-era file; make sure the glob still sees them."""
    names = {p.name for p in FILES}
    assert any(b"\r\n" in p.read_bytes() for p in FILES)
    assert UNSUPPORTED_MODE | set(INVALID_SPEC) | set(INVALID_PLAN) | {NOTEBOOK_ERA} <= names


# ----------------------------------------------------------------------------------------------------- TOML

_scalars = (
    st.text()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.booleans()
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_tables = st.recursive(
    st.dictionaries(st.text(), _values, max_size=5),
    lambda inner: st.dictionaries(st.text(), inner | _values, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_tables)
def test_toml_round_trip(data):
    assert tomllib.loads(spec_to_toml(data)) == data


def test_toml_layout_and_quoting():
    text = spec_to_toml(
        {"animation": {"width": 64}, "version": 1, "prompts": {"0": 'a "b"\n', "max_f-2": "c"}, "k y": 1.5}
    )
    assert text.index("version = 1") < text.index("[animation]")
    assert '"k y" = 1.5' in text and 'max_f-2 = "c"' in text and '0 = "a \\"b\\"\\n"' in text
    assert tomllib.loads(text)["prompts"]["0"] == 'a "b"\n'


def test_varying_sampler_schedule_is_kept_as_a_schedule():
    data, unmapped = deforum_to_spec_data(
        {
            "prompts": {"0": "a"},
            "sampler": "euler",
            "enable_sampler_scheduling": True,
            "sampler_schedule": '0: ("Euler a"), 10: ("DPM++ 2M Karras")',
        }
    )
    assert data["sampling"]["sampler"] == '0: ("Euler a"), 10: ("DPM++ 2M Karras")'
    assert "sampler_schedule" not in unmapped
    assert build_plan(spec_from_data(data).with_seed())[10].sampler == "DPM++ 2M Karras"

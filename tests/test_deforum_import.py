"""Deforum settings import: reading every era's files, mapping onto the spec, and the TOML writer."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.errors import FlipbookError
from flipbook.spec.deforum import (
    _schedule,  # the importer's own whitespace/constant rule
    deforum_sampler_name,
    deforum_to_spec_data,
    read_deforum_settings,
    summarize_unmapped,
)
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan
from flipbook.spec.toml_writer import spec_to_toml

TESTDATA = Path(__file__).parents[2] / "shared" / "testdata" / "deforum"
FILES = sorted(TESTDATA.glob("*.txt")) if TESTDATA.is_dir() else []

# Real files whose values flipbook genuinely can't take; each must fail with exactly this field named.
UNSUPPORTED_MODE: set[str] = set()
VIDEO_INPUT = (
    "Encodex-Ai__stable-diffusion-webui__deforum_settings.txt"  # "Video Input", a local Windows path
)
INVALID_SPEC: dict[str, str] = {}
# 2D hybrid-video file: "Video Input" colour coherence, RAFT flow (read as DIS), "Before Motion" compositing, and
# zoom "0: (0)" (Deforum's degenerate 2D warp); its video is a local Windows path, so a render stops at it
HYBRID = "Encodex-Ai__stable-diffusion-webui__deforum_settings_hybrid.txt"
# The notebook-era file; its sampler dpmpp_2s_a is A1111's "DPM++ 2S a", which diffusers lacks and flipbook
# brings as its own scheduler (flipbook.samplers.dpmpp_2s_ancestral)
NOTEBOOK_ERA = (
    "deforum-art__deforum-stable-diffusion__outputs__2023-01__StableFun__20230101125957_settings.txt"
)
# Files that validate but don't plan (steps = 1 is fine: it runs one step, as in A1111). These 3D presets
# write zoom "0: (0)": inert in Deforum's 3D mode, but plan.py range-checks every [camera] schedule.
INVALID_PLAN: dict[str, str] = {}  # 3D files with zoom "0: (0)" are fine: 3D doesn't use zoom
A1111_DEFAULTS = "deforum-art__sd-webui-deforum__scripts__default_settings.txt"

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
            "mode": "2d",
            "max_frames": 48,
            "width": 512,
            "height": 768,
            "fps": 24,
            "strength": 0.65,
        },
        "camera": {"angle": 0, "zoom": 1.04, "cadence": 2},
    }
    assert unmapped == []  # batch_name is bookkeeping; strength is the (unused) init-image strength
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
    assert unmapped == []  # strength: the init-image strength, inert without use_init


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
    assert data["sampling"]["steps"] == "0: (20), 9: (30)" and "steps_schedule" not in unmapped
    assert build_plan(spec_from_data(data).with_seed())[9].steps == 30
    data, unmapped = deforum_to_spec_data(
        {**base, "enable_steps_scheduling": False, "steps_schedule": "0: (30)"}
    )
    assert data["sampling"]["steps"] == 20 and "steps_schedule" not in unmapped


@pytest.mark.parametrize("mode", ["Interpolation", "Prompt Travel"])
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
    mode = settings_.get("animation_mode", "None")
    assert (
        data["animation"]["mode"] == {"None": "travel", "2D": "2d", "3D": "3d", "Video Input": "video"}[mode]
    )
    if mode == "Video Input":
        assert data["init"]["video"] == settings_["video_init_path"]
        assert data["video"]["every_nth"] == settings_["extract_nth_frame"]
    if mode in ("2D", "3D"):
        for key, field in (("zoom", "zoom"), ("translation_z", "translation_z"), ("fov_schedule", "fov")):
            assert data["camera"][field] == _schedule(settings_[key])
        assert not {"zoom", "translation_x", "rotation_3d_y", "diffusion_cadence"} & set(unmapped)
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
    if mode in ("2D", "3D"):
        assert set(plan[0].camera) >= {"zoom", "translation_z", "fov", "noise_multiplier"}
    if path.name == HYBRID:
        c = spec.camera
        assert (c.color_coherence, c.color_coherence_video_every_n, c.hybrid_composite) == (
            "video",
            1,
            "before_motion",
        )
        assert (c.hybrid_motion, c.hybrid_flow_method, c.zoom) == ("optical_flow", "dis", 0)
        assert str(c.hybrid_video) == settings_["video_init_path"]
        assert not {"color_coherence_video_every_N_frames", "hybrid_flow_consistency"} & set(unmapped)
        assert "hybrid_use_first_frame_as_init_image" in unmapped  # flipbook has no such init: reported


@pytest.mark.skipif(not FILES, reason="shared Deforum testdata not present")
def test_real_files_quirks_covered():
    """The folder's README promises CRLF files and a notebook-era file; make sure the glob still sees them."""
    names = {p.name for p in FILES}
    assert any(b"\r\n" in p.read_bytes() for p in FILES)
    assert (
        UNSUPPORTED_MODE | set(INVALID_SPEC) | set(INVALID_PLAN) | {NOTEBOOK_ERA, VIDEO_INPUT, HYBRID}
        <= names
    )


# ---------------------------------------------------------------------------------------------- camera, init


def test_hybrid_video_maps_to_camera_hybrid_fields():
    settings = {
        **MINIMAL, "video_init_path": "clip.mp4", "hybrid_motion": "Optical Flow", "hybrid_flow_method": "DIS Medium",
        "hybrid_flow_factor_schedule": "0:(0.9)", "hybrid_composite": "Normal", "hybrid_comp_alpha_schedule": "0:(0.25)",
        "hybrid_comp_mask_type": "Difference", "hybrid_comp_mask_inverse": True,
    }  # fmt: skip
    data, unmapped = deforum_to_spec_data(settings)
    camera = spec_from_data(data).camera
    assert (camera.hybrid_video.name, camera.hybrid_motion, camera.hybrid_flow_method) == (
        "clip.mp4",
        "optical_flow",
        "dis",
    )
    assert camera.hybrid_composite == "normal" and camera.hybrid_comp_alpha == 0.25  # a constant: a number
    assert camera.hybrid_comp_mask_type == "difference" and camera.hybrid_comp_mask_inverse
    assert not {"hybrid_motion", "video_init_path", "hybrid_comp_alpha_schedule"} & set(unmapped)
    data, unmapped = deforum_to_spec_data({**settings, "hybrid_motion": "None", "hybrid_composite": "None"})
    assert "hybrid_video" not in data["camera"] and "video_init_path" in unmapped
    data, _ = deforum_to_spec_data({**settings, "hybrid_flow_method": "DenseRLOF"})
    with pytest.raises(FlipbookError) as error:  # opencv-contrib flow: copied for validation to report
        spec_from_data(data)
    assert error.value.field == "camera.hybrid_flow_method"


@pytest.mark.parametrize(
    ("deforum", "flipbook"),
    [("None", "none"), ("Normal", "normal"), ("Before Motion", "before_motion"),
     ("After Generation", "after_generation"), (True, "normal"), (False, "none")],
)  # fmt: skip
def test_hybrid_composite_timings(deforum, flipbook):
    settings = {
        **MINIMAL,
        "video_init_path": "clip.mp4",
        "hybrid_motion": "Affine",
        "hybrid_composite": deforum,
    }
    camera = spec_from_data(deforum_to_spec_data(settings)[0]).camera
    assert camera.hybrid_composite == flipbook


def test_raft_is_read_as_dis_and_the_substitution_is_reported(tmp_path):
    from flipbook.spec.deforum import deforum_quirks
    from flipbook.spec.load import load_spec_and_warnings

    settings = {
        **MINIMAL,
        "video_init_path": "clip.mp4",
        "hybrid_motion": "Optical Flow",
        "hybrid_flow_method": "RAFT",
    }
    data, unmapped = deforum_to_spec_data(settings)
    assert data["camera"]["hybrid_flow_method"] == "dis" and "hybrid_flow_method" not in unmapped
    assert len(deforum_quirks(settings)) == 1 and '"RAFT"' in deforum_quirks(settings)[0]
    path = tmp_path / "raft.txt"
    path.write_text(json.dumps(settings), encoding="utf-8")
    spec, warnings = load_spec_and_warnings(path)
    assert spec.camera.hybrid_flow_method == "dis"
    assert any("RAFT" in w and '"dis"' in w for w in warnings)
    # the HTTP API's Deforum import says the same as the CLI's
    from flipbook.server.submit import deforum_data

    assert deforum_data(settings)[1] == warnings
    # RAFT where no optical flow is used is inert: nothing substituted, nothing to report
    assert not deforum_quirks({**settings, "hybrid_motion": "Affine"})
    assert not deforum_quirks({**settings, "hybrid_motion": "None"})


def test_video_input_colour_coherence_maps_to_the_hybrid_video():
    from flipbook.spec.deforum import deforum_quirks

    settings = {**MINIMAL, "video_init_path": "clip.mp4", "hybrid_motion": "Optical Flow", "color_coherence": "Video Input",
                "color_coherence_video_every_N_frames": 4}  # fmt: skip
    data, unmapped = deforum_to_spec_data(settings)
    camera = spec_from_data(data).camera
    assert (camera.color_coherence, camera.color_coherence_video_every_n) == ("video", 4)
    assert "color_coherence_video_every_N_frames" not in unmapped and not deforum_quirks(settings)
    # no hybrid video in use: Deforum has no video sample and matches LAB against the first warped frame
    plain = {**settings, "hybrid_motion": "None"}
    data, unmapped = deforum_to_spec_data(plain)
    assert (
        data["camera"]["color_coherence"] == "lab" and "color_coherence_video_every_n" not in data["camera"]
    )
    assert "color_coherence_video_every_N_frames" not in unmapped  # inert without "Video Input" in force
    assert ["color_coherence" in note and '"lab"' in note for note in deforum_quirks(plain)] == [True]


def test_hybrid_settings_at_flipbooks_behaviour_are_read_the_others_reported():
    settings = {
        **MINIMAL, "video_init_path": "clip.mp4", "hybrid_motion": "Optical Flow", "hybrid_composite": "Normal",
        "hybrid_comp_mask_type": "None", "hybrid_motion_use_prev_img": False, "hybrid_flow_consistency": False,
        "hybrid_consistency_blur": 2, "hybrid_comp_mask_contrast_schedule": "0:(1.5)",
        "hybrid_comp_mask_blend_alpha_schedule": "0:(0.3)", "hybrid_comp_mask_auto_contrast": True,
        "hybrid_comp_mask_auto_contrast_cutoff_low_schedule": "0:(0)", "hybrid_use_init_image": False,
        "hybrid_use_first_frame_as_init_image": True, "hybrid_generate_inputframes": True,
        "hybrid_generate_human_masks": "None", "hybrid_comp_save_extra_frames": True, "extract_nth_frame": 1,
        "extract_from_frame": 0, "extract_to_frame": -1,
    }  # fmt: skip
    _, unmapped = deforum_to_spec_data(settings)
    assert unmapped == ["hybrid_use_first_frame_as_init_image"]  # the mask settings are inert without a mask
    changed = {**settings, "hybrid_comp_mask_type": "Blend", "hybrid_motion_use_prev_img": True,
               "hybrid_flow_consistency": True, "extract_nth_frame": 2, "hybrid_use_first_frame_as_init_image": False}  # fmt: skip
    _, unmapped = deforum_to_spec_data(changed)
    assert unmapped == [
        "extract_nth_frame", "hybrid_comp_mask_auto_contrast", "hybrid_comp_mask_auto_contrast_cutoff_low_schedule",
        "hybrid_comp_mask_blend_alpha_schedule", "hybrid_comp_mask_contrast_schedule", "hybrid_consistency_blur",
        "hybrid_flow_consistency", "hybrid_motion_use_prev_img",
    ]  # fmt: skip


def test_a_doubled_keyframe_is_read_as_deforum_reads_it_and_reported(tmp_path):
    from flipbook.spec.deforum import deforum_quirks
    from flipbook.spec.load import load_spec_and_warnings

    settings = {**MINIMAL, "animation_mode": "3D", "rotation_3d_x": "0: 0: (0.5*sin(t)), 10: 10: (1)"}
    data, _ = deforum_to_spec_data(settings)
    assert data["camera"]["rotation_3d_x"] == "0: (0.5*sin(t)), 10: (1)"
    assert deforum_quirks(settings) == [
        "rotation_3d_x: a keyframe with a doubled frame number ('0: 0: (...)') read as Deforum reads it"
    ]
    path = tmp_path / "settings.txt"
    path.write_text(json.dumps(settings), encoding="utf-8")
    spec, warnings = load_spec_and_warnings(path)
    assert spec.camera.rotation_3d_x == "0: (0.5*sin(t)), 10: (1)"
    assert any("rotation_3d_x" in w and "doubled" in w for w in warnings)


def test_video_input_maps_to_video_mode():
    settings = {
        **MINIMAL, "animation_mode": "Video Input", "video_init_path": "clip.mp4", "extract_nth_frame": 2,
        "extract_from_frame": 4, "extract_to_frame": 20, "use_mask_video": True, "video_mask_path": "m.mp4",
    }  # fmt: skip
    data, unmapped = deforum_to_spec_data(settings)
    assert data["animation"]["mode"] == "video" and data["init"]["video"] == "clip.mp4"
    assert data["video"] == {"every_nth": 2, "start_frame": 4, "end_frame": 21, "mask_video": "m.mp4"}
    assert not {"video_init_path", "extract_to_frame", "video_mask_path"} & set(unmapped)
    spec = spec_from_data(data)
    assert spec.video.end_frame == 21
    data, _ = deforum_to_spec_data({**settings, "extract_to_frame": -1, "use_mask_video": False})
    assert "end_frame" not in data["video"] and "mask_video" not in data["video"]


@pytest.mark.parametrize(
    ("raw", "mode"), [("None", "travel"), (None, "travel"), ("2D", "2d"), ("3D", "3d"), (" 3d ", "3d")]
)
def test_animation_modes(raw, mode):
    data, _ = deforum_to_spec_data({"prompts": {"0": "a"}, "animation_mode": raw})
    assert data["animation"]["mode"] == mode
    assert deforum_to_spec_data({"prompts": {"0": "a"}})[0]["animation"]["mode"] == "travel"


@pytest.mark.skipif(not (TESTDATA / A1111_DEFAULTS).is_file(), reason="shared Deforum testdata not present")
def test_a1111_default_settings_map_to_camera():
    data, unmapped = deforum_to_spec_data(read_deforum_settings(TESTDATA / A1111_DEFAULTS))
    assert data["animation"]["mode"] == "3d"
    camera = data["camera"]
    assert camera["zoom"] == "0: (1.0025+0.002*sin(1.25*3.14*t/30))"
    assert (camera["translation_z"], camera["rotation_3d_y"]) == (1.75, 0)
    assert (camera["fov"], camera["near"], camera["far"]) == (70, 200, 10000)
    assert camera["cadence"] == 2 and camera["optical_flow_cadence"] == "none"
    assert camera["color_coherence"] == "lab" and "color_coherence_image" not in camera
    assert (camera["antiblur_amount"], camera["antiblur_kernel"]) == (0.1, 5)
    assert (camera["antiblur_sigma"], camera["antiblur_threshold"]) == (1.0, 0.0)
    assert (camera["noise"], camera["noise_type"]) == (0.065, "perlin")
    assert (camera["perlin_octaves"], camera["perlin_persistence"]) == (4, 0.5)
    assert camera["noise_multiplier"] == 1.05 and camera["contrast"] == 1.0
    assert (camera["border"], camera["padding_mode"], camera["sampling_mode"]) == (
        "replicate",
        "border",
        "bicubic",
    )
    assert camera["depth_model"] == "Intel/dpt-hybrid-midas"
    assert camera["perspective_flip"] is False and camera["save_depth_maps"] is False
    assert "init" not in data and "model" not in data  # use_init, use_mask and checkpoint scheduling are off
    assert "midas_weight" in unmapped and "depth_algorithm" not in unmapped
    spec = spec_from_data(data)
    plan = build_plan(spec.with_seed())
    assert plan[0].camera["translation_z"] == 1.75 and plan[0].camera["fov"] == 70


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("None", "none"), ("Match Frame 0 RGB", "rgb"), ("RGB", "rgb"), ("Match Frame 0 HSV", "hsv"),
     ("HSV", "hsv"), ("Match Frame 0 LAB", "lab"), ("LAB", "lab"), ("Video Input", "lab")],  # without hybrid video, see below
)  # fmt: skip
def test_color_coherence_names(raw, expected):
    data, _ = deforum_to_spec_data({"prompts": {"0": "a"}, "color_coherence": raw})
    assert data["camera"] == {"color_coherence": expected}


def test_color_coherence_image():
    base = {"prompts": {"0": "a"}, "color_coherence": "Image"}
    data, unmapped = deforum_to_spec_data({**base, "color_coherence_image_path": "ref.png"})
    assert data["camera"] == {"color_coherence": "lab", "color_coherence_image": "ref.png"}
    assert spec_from_data(data).camera.color_coherence_image == Path("ref.png") and not unmapped
    data, _ = deforum_to_spec_data({**base, "color_coherence_image_path": ""})
    assert data["camera"] == {"color_coherence": "Image"}  # no reference: copied for validation to report
    with pytest.raises(FlipbookError, match="camera.color_coherence"):
        spec_from_data(data)
    data, unmapped = deforum_to_spec_data(
        {**MINIMAL, "color_coherence": "None", "color_coherence_image_path": "x"}
    )
    assert "color_coherence_image" not in data["camera"] and "color_coherence_image_path" not in unmapped


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("uniform", "gaussian"), ("perlin", "perlin"), ("Perlin", "perlin"), ("pink", "pink")],
)
def test_noise_types(raw, expected):
    assert (
        deforum_to_spec_data({"prompts": {"0": "a"}, "noise_type": raw})[0]["camera"]["noise_type"]
        == expected
    )


@pytest.mark.parametrize(("raw", "expected"), [(2, 2), ("2", 2), (" 3 ", 3), (4.0, 4), ("two", "two")])
def test_cadence_as_int_or_string(raw, expected):
    data, _ = deforum_to_spec_data({"prompts": {"0": "a"}, "diffusion_cadence": raw})
    assert data["camera"]["cadence"] == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("None", "none"), ("DIS Fine", "dis"), ("DIS Medium", "dis"), ("DIS UltraFine", "dis"), ("RAFT", "RAFT"),
     ("Farneback", "Farneback")],
)  # fmt: skip
def test_optical_flow_cadence(raw, expected):
    data, _ = deforum_to_spec_data({"prompts": {"0": "a"}, "optical_flow_cadence": raw})
    assert data["camera"]["optical_flow_cadence"] == expected
    if expected not in ("none", "dis"):
        with pytest.raises(FlipbookError, match="camera.optical_flow_cadence"):
            spec_from_data(data)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Depth-Anything-V2-Small", "depth-anything/Depth-Anything-V2-Small-hf"),
     ("Depth-Anything-V2-small", "depth-anything/Depth-Anything-V2-Small-hf"),
     ("Midas-3-Hybrid", "Intel/dpt-hybrid-midas"), ("Midas-3.1-BeitLarge", "Intel/dpt-beit-large-512"),
     ("Zoe", None), ("AdaBins", None), ("Leres", None), ("Zoe+AdaBins (old)", None)],
)  # fmt: skip
def test_depth_algorithms(raw, expected):
    data, unmapped = deforum_to_spec_data({"prompts": {"0": "a"}, "animation_mode": "3D", "depth_algorithm": raw,
                                           "use_depth_warping": True, "midas_weight": 0.2})  # fmt: skip
    assert data.get("camera", {}).get("depth_model") == expected
    assert ("depth_algorithm" in unmapped) == (expected is None) and "midas_weight" in unmapped


def test_no_depth_warping_is_flat():
    data, unmapped = deforum_to_spec_data(
        {"prompts": {"0": "a"}, "animation_mode": "3D", "depth_algorithm": "Zoe", "use_depth_warping": False}
    )
    assert data["camera"] == {"depth_model": "flat"} and "depth_algorithm" not in unmapped


def test_noise_multiplier_follows_its_switch():
    base = {"prompts": {"0": "a"}, "noise_multiplier_schedule": "0: (1.05)"}
    assert deforum_to_spec_data(base)[0]["camera"] == {"noise_multiplier": 1.05}
    on = deforum_to_spec_data({**base, "enable_noise_multiplier_scheduling": True})[0]
    assert on["camera"] == {"noise_multiplier": 1.05}
    off, unmapped = deforum_to_spec_data({**base, "enable_noise_multiplier_scheduling": False})
    assert "camera" not in off and not unmapped


def test_2d_camera_keys():
    data, unmapped = deforum_to_spec_data(
        {**MINIMAL, "angle": "0: (1), 10: (-1)", "translation_x": "0: (\n 2 )", "transform_center_x": "0: (0.4)",
         "enable_perspective_flip": True, "perspective_flip_theta": "0: (5)", "perspective_flip_fv": "0: (53)",
         "border": "Wrap", "save_depth_maps": True, "color_force_grayscale": True, "contrast_schedule": "0: (1.1)"}
    )  # fmt: skip
    camera = data["camera"]
    assert camera["angle"] == "0: (1), 10: (-1)" and camera["translation_x"] == 2
    assert (camera["transform_center_x"], camera["perspective_flip"], camera["perspective_flip_theta"]) == (
        0.4,
        True,
        5,
    )
    assert (camera["border"], camera["save_depth_maps"], camera["color_force_grayscale"]) == (
        "wrap",
        True,
        True,
    )
    assert camera["contrast"] == 1.1 and not unmapped
    plan = build_plan(spec_from_data(data).with_seed())
    assert plan[10].camera["angle"] == -1 and plan[0].camera["perspective_flip_theta"] == 5


def test_notebook_camera_spellings():
    data, _ = deforum_to_spec_data(
        {"prompts": {"0": "a"}, "animation_mode": "3D", "fov": 40, "near_plane": 200, "far_plane": 10000,
         "flip_2d_perspective": False, "diffusion_cadence": "1", "color_coherence": "Match Frame 0 LAB"}
    )  # fmt: skip
    assert data["camera"] == {"fov": 40, "near": 200, "far": 10000, "perspective_flip": False, "cadence": 1,
                              "color_coherence": "lab"}  # fmt: skip


def test_checkpoint_schedule():
    base = {"prompts": {"0": "a"}, "checkpoint_schedule": '0: ("a.safetensors"), 30: ("b.ckpt")'}
    data, unmapped = deforum_to_spec_data({**base, "enable_checkpoint_scheduling": True})
    assert data["model"] == {"name": '0: ("a.safetensors"), 30: ("b.ckpt")'} and not unmapped
    assert build_plan(spec_from_data(data).with_seed())[23].checkpoint == "a.safetensors"
    one, _ = deforum_to_spec_data(
        {**base, "enable_checkpoint_scheduling": True, "checkpoint_schedule": '0: ("a.ckpt")'}
    )
    assert one["model"] == {"name": "a.ckpt"}
    off, unmapped = deforum_to_spec_data({**base, "enable_checkpoint_scheduling": False})
    assert "model" not in off and not unmapped


INIT = {"prompts": {"0": "a"}, "strength_schedule": "0: (0.65)", "strength": 0.8, "strength_0_no_init": True,
        "use_init": True, "init_image": "https://example.com/i.png", "use_mask": True, "mask_file": "mask.png",
        "invert_mask": True, "mask_overlay_blur": 4, "use_alpha_as_mask": False}  # fmt: skip


def test_init_image_and_mask():
    data, unmapped = deforum_to_spec_data(INIT)
    assert data["init"] == {"image": "https://example.com/i.png", "strength": 0.8, "mask": "mask.png",
                            "mask_invert": True, "mask_feather": 4}  # fmt: skip
    assert data["animation"]["strength"] == 0.65 and not unmapped
    spec = spec_from_data(data)
    assert spec.init.strength == 0.8 and spec.init.mask_feather == 4


def test_init_switches_off():
    data, unmapped = deforum_to_spec_data({**INIT, "use_init": False, "use_mask": False})
    assert "init" not in data and not unmapped  # strength, init_image, mask_file are inert, as in Deforum
    data, _ = deforum_to_spec_data({**INIT, "init_image": "", "use_mask": False})
    assert "init" not in data
    data, _ = deforum_to_spec_data({**INIT, "init_image": None, "mask_file": ""})
    assert "init" not in data


def test_alpha_mask_comes_from_the_init_image():
    data, unmapped = deforum_to_spec_data({**INIT, "use_mask": False, "use_alpha_as_mask": True})
    assert data["init"] == {"image": "https://example.com/i.png", "strength": 0.8, "mask": "https://example.com/i.png",
                            "mask_use_alpha": True, "mask_invert": True, "mask_feather": 4}  # fmt: skip
    assert not unmapped
    data, unmapped = deforum_to_spec_data({**INIT, "use_alpha_as_mask": True})
    assert data["init"]["mask"] == "mask.png" and unmapped == ["use_alpha_as_mask"]


def test_init_strength_is_copied_for_validation():
    data, _ = deforum_to_spec_data({**INIT, "strength": 1.0})
    with pytest.raises(FlipbookError, match="init.strength"):
        spec_from_data(data)


def test_unmapped_summary_groups_families():
    keys = [f"cn_{u}_{k}" for u in range(1, 6) for k in ("enabled", "model", "weight")]
    keys += ["hybrid_motion", "hybrid_composite", "video_init_path", "parseq_manifest", "midas_weight",
             "controlnet_enabled", "controlnet_model"]  # fmt: skip
    text = summarize_unmapped(sorted(keys))
    assert text == (
        "cn_1..5_* (ControlNet, 15 keys), controlnet_* (ControlNet, single unit, 2 keys), "
        "hybrid_* (hybrid video, 2 keys), midas_weight, parseq_manifest, video_init_path"
    )
    assert summarize_unmapped(["cn_2_model", "cn_2_weight"]) == "cn_2_* (ControlNet, 2 keys)"
    assert summarize_unmapped([]) == ""


def test_warning_is_one_readable_line(tmp_path):
    from flipbook.spec.load import load_spec_and_warnings

    path = tmp_path / "s.txt"
    settings_ = {**MINIMAL, **{f"cn_{u}_weight": 1 for u in range(1, 6)}, "midas_weight": 0.2}
    path.write_text(json.dumps(settings_), encoding="utf-8")
    spec, warnings = load_spec_and_warnings(path)
    assert spec.animation.mode == "2d" and spec.camera.cadence == 2
    assert warnings == [
        "6 Deforum settings have no flipbook meaning yet and are not used: cn_1..5_* (ControlNet, 5 keys), "
        "midas_weight"
    ]


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

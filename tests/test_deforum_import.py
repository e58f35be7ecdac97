"""Deforum settings import: reading every era's files, mapping onto the spec, and the TOML writer.

Synthetic files here cover every case; the shared corpus of real files (``../shared/testdata/deforum``) is read
too when it is there (CI's clean clone doesn't have it)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.errors import FlipbookError
from flipbook.spec.deforum import (
    A1111_SAMPLERS_LATE_2022,
    deforum_sampler_name,
    deforum_to_spec_data,
    import_settings,
    read_deforum_settings,
    summarize_unmapped,
)
from flipbook.spec.load import load_spec_and_warnings, spec_from_data
from flipbook.spec.plan import build_plan
from flipbook.spec.toml_writer import spec_to_toml

TESTDATA = Path(__file__).parents[2] / "shared" / "testdata" / "deforum"
FILES = sorted(TESTDATA.glob("*.txt")) if TESTDATA.is_dir() else []
VIDEO_INPUT = "Encodex-Ai__stable-diffusion-webui__deforum_settings.txt"  # "Video Input", a Windows path
# 2D hybrid-video file: "Video Input" colour coherence, RAFT flow (read as DIS), "Before Motion" compositing, zoom
# "0: (0)" (Deforum's degenerate 2D warp), two ControlNet units fed from a video (skipped, said)
HYBRID = "Encodex-Ai__stable-diffusion-webui__deforum_settings_hybrid.txt"
NOTEBOOK_ERA = (
    "deforum-art__deforum-stable-diffusion__outputs__2023-01__StableFun__20230101125957_settings.txt"
)
A1111_DEFAULTS = "deforum-art__sd-webui-deforum__scripts__default_settings.txt"
DOUBLED_KEY = (
    "e-dream-ai__gpu-container-deforum__test-settings.txt"  # rotation_3d_x "0: 0: (...)", commit 86921f79
)

MINIMAL = {
    "W": 512,
    "H": 768,
    "seed": -1,
    "sampler": "Euler a",
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
# What Deforum's current defaults add to a 2D file that leaves them out (the file has angle, zoom, cadence).
DEFAULT_CAMERA = {"translation_z": 1.75, "fov": 70, "noise_type": "perlin", "noise_multiplier": 1.05,
                  "depth_model": "Intel/dpt-hybrid-midas"}  # fmt: skip


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
        "camera": {"angle": 0, "zoom": 1.04, "cadence": 2, **DEFAULT_CAMERA},
    }
    assert unmapped == []  # batch_name is bookkeeping; strength is the (unused) init-image strength
    plan = build_plan(spec_from_data(data).with_seed())
    assert len(plan) == 48 and plan[0].prompt.startswith("oil painting,")


# ------------------------------------------------------------------------------------ files by content


def test_a_json_settings_file_is_read_as_deforum_settings(tmp_path, run_cli):
    """The issue's example: Deforum settings named .json, imported and rendered by content."""
    path = tmp_path / "s.json"
    path.write_text('{"animation_mode":"2D","max_frames":10,"W":64,"H":64,"prompts":{"0":"a cat"}}')
    code, out, err = run_cli("import-deforum", path)
    assert code == 0, err
    data = tomllib.loads(out)
    assert data["animation"] == {"mode": "2d", "max_frames": 10, "width": 64, "height": 64, "fps": 15,
                                 "strength": 0.65}  # fmt: skip
    spec, _ = load_spec_and_warnings(path)  # what render, validate and plan read
    assert (spec.animation.mode, spec.animation.fps, spec.camera.cadence) == ("2d", 15, 2)


@pytest.mark.parametrize("name", ["settings.json", "settings.txt", "settings", "settings.deforum"])
def test_jsonc_bom_crlf_trailing_commas_and_python_dicts_keep_working_under_any_name(tmp_path, name):
    path = tmp_path / name
    text = '\ufeff{\r\n  // edited\r\n  "animation_mode": "None", /* c */ "W": 64, "H": 64, "prompts": {"0": "a, b",},\r\n}\r\n'
    path.write_text(text, encoding="utf-8")
    spec, _ = load_spec_and_warnings(path)
    assert (spec.animation.mode, spec.prompts) == ("travel", {"0": "a, b"})
    path.write_text("{'animation_mode': 'None', 'W': 64, 'H': 64, 'use_init': False, 'prompts': {'0': 'x'}}")
    assert load_spec_and_warnings(path)[0].animation.width == 64


def test_flipbook_specs_in_json_stay_flipbook_specs(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(
        json.dumps({"prompts": {"0": "a"}, "animation": {"max_frames": 3, "width": 64, "height": 64}})
    )
    spec, warnings = load_spec_and_warnings(path)
    assert (spec.animation.mode, spec.animation.max_frames, warnings) == ("travel", 3, [])
    path.write_text(json.dumps({"prompts": {"0": "a"}, "animaton": {}}))  # a typo: named by validation
    with pytest.raises(FlipbookError, match="animaton"):
        load_spec_and_warnings(path)


def test_broken_json_is_one_error_naming_the_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"W": 512')
    with pytest.raises(FlipbookError) as error:
        load_spec_and_warnings(path)
    assert error.value.field == "spec" and error.value.value == str(path) and "line 1" in error.value.detail


# ----------------------------------------------------------------------------------------------- eras


def test_era_spellings():
    old = {"width": 640, "height": 384, "scale": 9, "previous_frame_strength": 0.5, "strength": 0.3,
           "sampler": "klms", "animation_prompts": '{"0": "a", "12": "b"}', "animation_mode": "None"}  # fmt: skip
    data, unmapped = deforum_to_spec_data(old)
    assert data["animation"] == {"mode": "travel", "width": 640, "height": 384, "strength": 0.5, "fps": 12,
                                 "max_frames": 13}  # fmt: skip
    assert data["sampling"] == {"cfg": 9, "sampler": "LMS"}
    assert data["prompts"] == {"0": "a", "12": "b"}
    assert unmapped == []  # strength: the init-image strength, inert without use_init


def test_animation_prompts_win_over_prompts():
    """Notebook files hold both; Deforum renders animation_prompts (an empty prompts [""] used to win)."""
    notebook = {"prompts": [""], "animation_prompts": {"0": "a lake", "10": "a city"}, "animation_mode": "2D",
                "sampler": "euler", "max_frames": 20, "W": 64, "H": 64}  # fmt: skip
    data, warnings = import_settings(notebook)
    assert data["prompts"] == {"0": "a lake", "10": "a city"} and not any("prompts" in w for w in warnings)
    data, warnings = import_settings({**notebook, "prompts": ["a still"]})
    assert data["prompts"] == {"0": "a lake", "10": "a city"}
    assert any(w.startswith("prompts:") and "animation_prompts" in w for w in warnings)
    data, _ = import_settings({**notebook, "animation_prompts": {}})  # none: the stills' prompts
    assert data["prompts"] == {"0": ""}


def test_notebook_inverted_prompt_batch_and_lists():
    data, _ = deforum_to_spec_data(
        {"prompts": {"a lake, by Durand": "00000", "a portrait, by Artgerm": "00001"}, "sampler": "klms"}
    )
    assert data["prompts"] == {"0": "a lake, by Durand", "1": "a portrait, by Artgerm"}
    assert data["animation"]["max_frames"] == 2  # a notebook stills file: one frame per prompt
    data, _ = deforum_to_spec_data({"prompts": ["one", "two"]})
    assert data["prompts"] == {"0": "one", "1": "two"}


@pytest.mark.parametrize(("index", "name"), [(0, "Euler a"), (1, "Euler"), (5, "DPM2 a"), (7, "DPM++ 2M"),
                                             (17, "DDIM")])  # fmt: skip
def test_2022_sampler_index_is_a1111s_list_of_then(index, name):
    data, warnings = import_settings({"animation_mode": "2D", "prompts": {"0": "a"}, "sampler": index})
    assert data["sampling"]["sampler"] == name and A1111_SAMPLERS_LATE_2022[index] == name
    [note] = [w for w in warnings if w.startswith("sampler:")]
    assert f'"{name}"' in note and "2022" in note and (("DPM++" in note) == (index >= 6))
    spec_from_data(data)


def test_samplers_flipbook_lacks_and_a1111_schedulers():
    base = {"animation_mode": "2D", "prompts": {"0": "a"}}
    data, warnings = import_settings({**base, "sampler": "DPM++ 3M SDE Karras"})
    assert data["sampling"]["sampler"] == "DPM++ 2M SDE Karras"
    assert any('no "DPM++ 3M SDE Karras"' in w and "closest" in w for w in warnings)
    data, warnings = import_settings({**base, "sampler": "Some New Sampler"})
    assert data["sampling"]["sampler"] == "Euler a" and any("Some New Sampler" in w for w in warnings)
    data, warnings = import_settings({**base, "sampler": "DPM++ 2M", "scheduler": "Karras"})
    assert data["sampling"]["sampler"] == "DPM++ 2M Karras" and not warnings
    data, warnings = import_settings({**base, "sampler": "Euler", "scheduler": "Simple"})
    assert data["sampling"]["sampler"] == "Euler" and any(
        w.startswith('scheduler: "Simple"') for w in warnings
    )
    data, warnings = import_settings({**base, "sampler": "dpmpp_2m", "scheduler": "Automatic"})
    assert data["sampling"]["sampler"] == "DPM++ 2M" and not warnings


@pytest.mark.parametrize(
    ("settings_", "floored", "who"),
    [({"W": 900, "H": 386}, (896, 384), "multiple of 8"),
     ({"width": 900, "height": 512}, (896, 512), "multiple of 8"),
     ({"W": 900, "H": 520, "sampler": "euler"}, (896, 512), "notebook floors it to a multiple of 64")],
)  # fmt: skip
def test_sizes_are_floored_as_the_deforum_that_wrote_the_file_renders_them(settings_, floored, who):
    data, warnings = import_settings({"animation_mode": "2D", "prompts": {"0": "a"}, **settings_})
    assert (data["animation"]["width"], data["animation"]["height"]) == floored
    assert any("900 is read as 896" in w and who in w for w in warnings)
    spec_from_data(data)


def test_values_at_the_edge_of_deforums_ranges():
    data, _ = deforum_to_spec_data({**INIT, "strength": 1.0, "strength_schedule": "0: (1.0)"})
    spec = spec_from_data(data)
    assert spec.init.strength == 1.0
    plan = build_plan(spec.with_seed())
    assert plan[1].denoise == pytest.approx(1 / plan[1].steps)  # one step, as A1111 runs at denoise 0
    data, _ = deforum_to_spec_data(
        {**MINIMAL, "noise_type": "perlin", "perlin_persistence": 0.5, "perlin_octaves": 1}
    )
    spec_from_data(data)


def test_keys_that_dont_apply_to_the_mode_are_not_read():
    video = {**MINIMAL, "animation_mode": "Video Input", "video_init_path": "clip.mp4", "border": "warp",
             "perlin_persistence": 0, "zoom": "0: (-1)", "use_init": True, "init_image": "i.png"}  # fmt: skip
    data, _ = deforum_to_spec_data(video)
    assert "camera" not in data and "image" not in data.get("init", {})
    spec_from_data(data)
    data, warnings = import_settings({**video, "animation_mode": "2D"})
    assert data["camera"]["border"] == "replicate" and any(w.startswith("border: 'warp'") for w in warnings)
    data, _ = deforum_to_spec_data({**MINIMAL, "noise_type": "uniform", "perlin_persistence": 0})
    assert "perlin_persistence" not in data["camera"]  # Perlin settings only with Perlin noise
    spec_from_data(data)


def test_missing_keys_take_deforums_defaults():
    data, _ = deforum_to_spec_data({"animation_mode": "2D", "prompts": {"0": "a"}})
    assert data["animation"] == {"mode": "2d", "max_frames": 120, "fps": 15, "strength": 0.65}
    assert data["sampling"] == {"steps": 25}
    assert data["camera"] == {"zoom": "0: (1.0025+0.002*sin(1.25*3.14*t/30))", "cadence": 2, **DEFAULT_CAMERA}
    data, _ = deforum_to_spec_data({"prompts": {"0": "a"}})
    assert data["animation"]["mode"] == "2d"  # Deforum's default mode
    notebook, _ = deforum_to_spec_data({"prompts": ["a"], "sampler": "euler", "W": 64, "H": 64})
    assert notebook["animation"] == {"mode": "travel", "max_frames": 1, "width": 64, "height": 64, "fps": 12}


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
    data, unmapped = deforum_to_spec_data(
        {**base, "enable_clipskip_scheduling": True, "clipskip_schedule": "0: (1), 5: (2)"}
    )
    assert "clip_skip" not in data["sampling"] and unmapped == ["clipskip_schedule"]


@pytest.mark.parametrize("mode", ["Interpolation", "Prompt Travel"])
def test_modes_flipbook_lacks_are_errors(mode):
    with pytest.raises(FlipbookError, match=mode) as error:
        deforum_to_spec_data({**MINIMAL, "animation_mode": mode})
    assert "3D" in error.value.allowed and error.value.field == "animation_mode"


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


# ------------------------------------------------------------------------------- the shared real files


def _real_overrides(path: Path, tmp_path: Path) -> list[str]:
    """--set values that make a real file render here: 2 tiny frames, and local stand-ins for its inputs."""
    overrides = ["animation.max_frames=2", "animation.width=64", "animation.height=64", "sampling.steps=2",
                 "camera.depth_model=tiny", f"output.dir={tmp_path}", 'output.formats=["png"]']  # fmt: skip
    settings_ = read_deforum_settings(path)
    mode = settings_.get("animation_mode")
    if mode == "Video Input":
        overrides.append(f"init.video={_video(tmp_path)}")
    elif mode not in ("2D", "3D"):
        overrides.remove("camera.depth_model=tiny")
    data, _ = deforum_to_spec_data(settings_)
    if data.get("camera", {}).get("hybrid_video"):
        overrides.append(f"camera.hybrid_video={_video(tmp_path)}")
    for index, unit in enumerate(data.get("controlnet", [])):
        overrides += [f"controlnet.{index}.model=tiny", f"controlnet.{index}.preprocessor=none"]
        if "video" in unit:
            overrides.append(f"controlnet.{index}.video={_video(tmp_path)}")
    return overrides


def _video(tmp_path: Path) -> Path:
    import numpy as np

    from flipbook.io.writers import write_mp4

    path = tmp_path / "source.mp4"
    if not path.exists():
        frames = [np.full((64, 64, 3), 40 * i, dtype=np.uint8) for i in range(6)]
        write_mp4(frames, path, fps=12, crf=0)
    return path


@pytest.mark.skipif(not FILES, reason="shared Deforum testdata not present")
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name[:60])
def test_real_files_import_validate_plan_and_render(path, tmp_path, monkeypatch, tiny_model, run_cli):
    """Every real file: import (TOML that loads back), validate, plan, and 2 frames on tiny."""
    monkeypatch.setattr("flipbook.runs.cores.load_model", lambda name, **kwargs: tiny_model)
    settings_ = read_deforum_settings(path)
    data, warnings = import_settings(settings_, base=path.parent)
    assert tomllib.loads(spec_to_toml(data)) == data
    assert all(isinstance(w, str) and "\n" not in w for w in warnings)
    spec = spec_from_data(data)
    assert len(build_plan(spec.with_seed())) == spec.animation.max_frames
    code, out, err = run_cli("render", path, *(f"--set={o}" for o in _real_overrides(path, tmp_path)))
    assert code == 0, err
    assert "frames:" in out and "(2 PNG)" in out


@pytest.mark.skipif(not FILES, reason="shared Deforum testdata not present")
def test_real_files_read_as_their_deforum_reads_them():
    hybrid, warnings = import_settings(read_deforum_settings(TESTDATA / HYBRID))
    c = hybrid["camera"]
    assert (c["color_coherence"], c["hybrid_composite"], c["hybrid_flow_method"], c["zoom"]) == (
        "video", "before_motion", "dis", 0)  # fmt: skip
    assert [unit["video"] for unit in hybrid["controlnet"]] == [hybrid["camera"]["hybrid_video"]] * 2
    assert sum("--set controlnet." in w and ".video=PATH" in w for w in warnings) == 2
    assert any("RAFT" in w for w in warnings)
    doubled, warnings = import_settings(read_deforum_settings(TESTDATA / DOUBLED_KEY))
    assert doubled["camera"]["rotation_3d_x"] == 0 and any("86921f79" in w for w in warnings)
    notebook, _ = import_settings(read_deforum_settings(TESTDATA / NOTEBOOK_ERA))
    assert notebook["sampling"]["sampler"] == "DPM++ 2S a" and notebook["animation"]["max_frames"] == 2
    video, warnings = import_settings(read_deforum_settings(TESTDATA / VIDEO_INPUT))
    assert video["animation"]["mode"] == "video" and any(
        w.startswith("video_init_path:") and "Windows path" in w and "--set init.video=PATH" in w
        for w in warnings
    )
    assert any(b"\r\n" in p.read_bytes() for p in FILES)


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
    assert not unmapped
    data, unmapped = deforum_to_spec_data({**settings, "hybrid_motion": "None", "hybrid_composite": "None"})
    assert "hybrid_video" not in data["camera"] and not unmapped  # inert without hybrid video, as in Deforum
    for flow in ("DenseRLOF", "SF"):  # opencv-contrib flows Deforum renders: read as DIS, said
        data, warnings = import_settings({**settings, "hybrid_flow_method": flow})
        assert data["camera"]["hybrid_flow_method"] == "dis" and any(flow in w for w in warnings)
    data, warnings = import_settings({**settings, "hybrid_comp_mask_type": "Depth"})
    assert data["camera"]["hybrid_comp_mask_type"] == "depth" and any('"Depth"' in w for w in warnings)


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
    settings = {**MINIMAL, "video_init_path": "clip.mp4", "hybrid_motion": "Optical Flow",
                "hybrid_flow_method": "RAFT"}  # fmt: skip
    data, warnings = import_settings(settings)
    assert data["camera"]["hybrid_flow_method"] == "dis"
    assert [w for w in warnings if "RAFT" in w] == [
        'hybrid_flow_method: "RAFT" (RAFT, torchvision\'s RAFT-large) is read as "dis", OpenCV\'s DIS optical flow '
        '(Deforum\'s "DIS Medium")'
    ]
    path = tmp_path / "raft.txt"
    path.write_text(json.dumps(settings), encoding="utf-8")
    spec, file_warnings = load_spec_and_warnings(path)
    assert spec.camera.hybrid_flow_method == "dis" and file_warnings == warnings
    from flipbook.server.submit import deforum_data  # the HTTP API's import says the same as the CLI's

    assert deforum_data(settings)[1] == warnings
    # RAFT where no optical flow is used is inert: nothing substituted, nothing to report
    assert not any("RAFT" in w for w in import_settings({**settings, "hybrid_motion": "Affine"})[1])
    assert not any("RAFT" in w for w in import_settings({**settings, "hybrid_motion": "None"})[1])


@pytest.mark.parametrize(
    ("raw", "expected", "noted"),
    [("None", "none", False), (False, "none", False), (True, "dis", False), ("DIS Fine", "dis", False),
     ("DIS Medium", "dis", False), ("DIS UltraFine", "dis", False), ("RAFT", "dis", True),
     ("Farneback", "dis", True)],
)  # fmt: skip
def test_optical_flow_cadence(raw, expected, noted):
    data, warnings = import_settings({**MINIMAL, "optical_flow_cadence": raw})
    assert data["camera"]["optical_flow_cadence"] == expected
    assert any(w.startswith("optical_flow_cadence") for w in warnings) == noted
    spec_from_data(data)


def test_video_input_colour_coherence_maps_to_the_hybrid_video():
    settings = {**MINIMAL, "video_init_path": "clip.mp4", "hybrid_motion": "Optical Flow", "color_coherence": "Video Input",
                "color_coherence_video_every_N_frames": 4}  # fmt: skip
    data, warnings = import_settings(settings)
    camera = spec_from_data(data).camera
    assert (camera.color_coherence, camera.color_coherence_video_every_n) == ("video", 4) and not warnings
    plain = {**settings, "hybrid_motion": "None"}  # no video sample: LAB against the first warped frame
    data, warnings = import_settings(plain)
    assert (
        data["camera"]["color_coherence"] == "lab" and "color_coherence_video_every_n" not in data["camera"]
    )
    assert [w for w in warnings if "color_coherence" in w and '"lab"' in w] == warnings and len(warnings) == 1


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
               "hybrid_flow_consistency": True, "hybrid_use_first_frame_as_init_image": False}  # fmt: skip
    _, unmapped = deforum_to_spec_data(changed)
    assert unmapped == [
        "hybrid_comp_mask_auto_contrast", "hybrid_comp_mask_auto_contrast_cutoff_low_schedule",
        "hybrid_comp_mask_blend_alpha_schedule", "hybrid_comp_mask_contrast_schedule", "hybrid_consistency_blur",
        "hybrid_flow_consistency", "hybrid_motion_use_prev_img",
    ]  # fmt: skip


def test_video_input_maps_to_video_mode():
    settings = {
        **MINIMAL, "animation_mode": "Video Input", "video_init_path": "clip.mp4", "extract_nth_frame": 2,
        "extract_from_frame": 4, "extract_to_frame": 20, "use_mask_video": True, "video_mask_path": "m.mp4",
    }  # fmt: skip
    data, unmapped = deforum_to_spec_data(settings)
    assert data["animation"]["mode"] == "video" and data["init"]["video"] == "clip.mp4"
    assert data["video"] == {"every_nth": 2, "start_frame": 4, "end_frame": 21, "mask_video": "m.mp4"}
    assert not unmapped
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
    assert unmapped == ["legacy_colormatch"]  # its midas_weight 0.2 is Deforum's default: nothing lost
    plan = build_plan(spec_from_data(data).with_seed())
    assert plan[0].camera["translation_z"] == 1.75 and plan[0].camera["fov"] == 70


@pytest.mark.parametrize(
    ("raw", "expected", "noted"),
    [("None", "none", False), ("Match Frame 0 RGB", "rgb", False), ("RGB", "rgb", False),
     ("Match Frame 0 HSV", "hsv", False), ("HSV", "hsv", False), ("Match Frame 0 LAB", "lab", False),
     ("LAB", "lab", False), ("Video Input", "lab", True), ("none", "lab", True), ("Lab-ish", "lab", True)],
)  # fmt: skip
def test_color_coherence_names(raw, expected, noted):
    data, warnings = import_settings({**MINIMAL, "color_coherence": raw})
    assert data["camera"]["color_coherence"] == expected
    assert any(w.startswith("color_coherence") for w in warnings) == noted


def test_color_coherence_image():
    base = {**MINIMAL, "color_coherence": "Image"}
    data, unmapped = deforum_to_spec_data({**base, "color_coherence_image_path": "ref.png"})
    assert (data["camera"]["color_coherence"], data["camera"]["color_coherence_image"]) == ("lab", "ref.png")
    assert spec_from_data(data).camera.color_coherence_image == Path("ref.png") and not unmapped
    data, warnings = import_settings({**base, "color_coherence_image_path": ""})
    assert data["camera"]["color_coherence"] == "lab" and "color_coherence_image" not in data["camera"]
    assert any("without color_coherence_image_path" in w for w in warnings)
    data, unmapped = deforum_to_spec_data(
        {**MINIMAL, "color_coherence": "None", "color_coherence_image_path": "x"}
    )
    assert "color_coherence_image" not in data["camera"] and not unmapped


@pytest.mark.parametrize(
    ("raw", "expected", "noted"),
    [("uniform", "gaussian", False), ("perlin", "perlin", False), ("Perlin", "gaussian", True),
     ("pink", "gaussian", True)],
)  # fmt: skip
def test_noise_types(raw, expected, noted):
    data, warnings = import_settings({**MINIMAL, "noise_type": raw})
    assert data["camera"]["noise_type"] == expected and any("noise_type" in w for w in warnings) == noted


@pytest.mark.parametrize(("raw", "expected"), [(2, 2), ("2", 2), (" 3 ", 3), (4.0, 4), ("two", "two")])
def test_cadence_as_int_or_string(raw, expected):
    data, _ = deforum_to_spec_data({**MINIMAL, "diffusion_cadence": raw})
    assert data["camera"]["cadence"] == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Depth-Anything-V2-Small", "depth-anything/Depth-Anything-V2-Small-hf"),
     ("Depth-Anything-V2-small", "depth-anything/Depth-Anything-V2-Small-hf"),
     ("Midas-3-Hybrid", "Intel/dpt-hybrid-midas"), ("Midas-3.1-BeitLarge", "Intel/dpt-beit-large-512"),
     ("Zoe", None), ("AdaBins", None), ("Leres", None), ("Zoe+AdaBins (old)", None)],
)  # fmt: skip
def test_depth_algorithms(raw, expected):
    data, unmapped = deforum_to_spec_data({"prompts": {"0": "a"}, "animation_mode": "3D", "depth_algorithm": raw,
                                           "use_depth_warping": True, "midas_weight": 0.5})  # fmt: skip
    assert data["camera"].get("depth_model") == expected
    assert ("depth_algorithm" in unmapped) == (expected is None) and "midas_weight" in unmapped


def test_no_depth_warping_is_flat():
    data, unmapped = deforum_to_spec_data(
        {"prompts": {"0": "a"}, "animation_mode": "3D", "depth_algorithm": "Zoe", "use_depth_warping": False}
    )
    assert data["camera"]["depth_model"] == "flat" and "depth_algorithm" not in unmapped


def test_noise_multiplier_follows_its_switch():
    base = {**MINIMAL, "noise_multiplier_schedule": "0: (1.2)"}
    assert deforum_to_spec_data(base)[0]["camera"]["noise_multiplier"] == 1.2  # on by default
    on = deforum_to_spec_data({**base, "enable_noise_multiplier_scheduling": True})[0]
    assert on["camera"]["noise_multiplier"] == 1.2
    off, unmapped = deforum_to_spec_data({**base, "enable_noise_multiplier_scheduling": False})
    assert "noise_multiplier" not in off["camera"] and not unmapped


def test_2d_camera_keys():
    data, unmapped = deforum_to_spec_data(
        {**MINIMAL, "angle": "0: (1), 10: (-1)", "translation_x": "0: (\n 2 )", "transform_center_x": "0: (0.4)",
         "enable_perspective_flip": True, "perspective_flip_theta": "0: (5)", "perspective_flip_fv": "0: (53)",
         "border": "wrap", "save_depth_maps": True, "color_force_grayscale": True, "contrast_schedule": "0: (1.1)"}
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
    camera = data["camera"]
    assert (camera["fov"], camera["near"], camera["far"], camera["perspective_flip"]) == (
        40,
        200,
        10000,
        False,
    )
    assert (camera["cadence"], camera["color_coherence"]) == (1, "lab")


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
        "use_init": True, "init_image": "i.png", "use_mask": True, "mask_file": "mask.png",
        "invert_mask": True, "mask_overlay_blur": 4, "use_alpha_as_mask": False}  # fmt: skip


def test_init_image_and_mask():
    data, unmapped = deforum_to_spec_data(INIT)
    assert data["init"] == {"image": "i.png", "strength": 0.8, "mask": "mask.png", "mask_invert": True,
                            "mask_feather": 4}  # fmt: skip
    assert data["animation"]["strength"] == 0.65 and not unmapped
    spec = spec_from_data(data)
    assert spec.init.strength == 0.8 and spec.init.mask_feather == 4


@pytest.mark.parametrize(
    ("key", "value", "target", "kind"),
    [("init_image", "https://example.com/i.png", "init.image", "a URL"),
     ("init_image", "C:\\Users\\me\\i.png", "init.image", "a Windows path"),
     ("mask_file", "\\\\server\\share\\m.png", "init.mask", "a Windows path"),
     ("video_init_path", "D:/clips/v.mp4", "camera.hybrid_video", "a Windows path")],
)  # fmt: skip
def test_urls_and_windows_paths_are_named_with_how_to_pass_a_local_file(key, value, target, kind):
    settings = {**MINIMAL, **INIT, "animation_mode": "2D", "hybrid_motion": "Affine", "video_init_path": "v.mp4",
                key: value}  # fmt: skip
    data, warnings = import_settings(settings)
    [note] = [w for w in warnings if w.startswith(f"{key}:")]
    assert kind in note and f"--set {target}=PATH" in note
    assert (
        data["animation"]["mode"] == "2d" and data["prompts"] and spec_from_data(data)
    )  # the rest is imported


def test_init_switches_off():
    data, unmapped = deforum_to_spec_data({**INIT, "use_init": False, "use_mask": False})
    assert "init" not in data and not unmapped  # strength, init_image, mask_file are inert, as in Deforum
    data, _ = deforum_to_spec_data({**INIT, "init_image": "", "use_mask": False})
    assert "init" not in data
    data, _ = deforum_to_spec_data({**INIT, "init_image": None, "mask_file": ""})
    assert "init" not in data


def test_alpha_mask_comes_from_the_init_image():
    data, unmapped = deforum_to_spec_data({**INIT, "use_mask": False, "use_alpha_as_mask": True})
    assert data["init"] == {"image": "i.png", "strength": 0.8, "mask": "i.png", "mask_use_alpha": True,
                            "mask_invert": True, "mask_feather": 4}  # fmt: skip
    assert not unmapped
    data, unmapped = deforum_to_spec_data({**INIT, "use_alpha_as_mask": True})
    assert data["init"]["mask"] == "mask.png" and unmapped == ["use_alpha_as_mask"]


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


def test_warnings_are_one_readable_line_each(tmp_path):
    path = tmp_path / "s.txt"
    settings_ = {**MINIMAL, **{f"cn_{u}_guess_mode": True for u in range(1, 6)},
                 **{f"cn_{u}_enabled": True for u in range(1, 6)}, "midas_weight": 0.5, "my_fork_key": 1}  # fmt: skip
    path.write_text(json.dumps(settings_), encoding="utf-8")
    spec, warnings = load_spec_and_warnings(path)
    assert spec.animation.mode == "2d" and spec.camera.cadence == 2
    assert warnings[-2:] == [
        "6 Deforum settings have no flipbook counterpart and are not used: cn_1..5_* (ControlNet, 5 keys), "
        "midas_weight",
        "1 settings are no Deforum settings flipbook knows (a newer Deforum or a fork?) and are not used: "
        "my_fork_key",
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
            "sampler": "Euler",
            "enable_sampler_scheduling": True,
            "sampler_schedule": '0: ("Euler a"), 10: ("DPM++ 2M Karras")',
        }
    )
    assert data["sampling"]["sampler"] == '0: ("Euler a"), 10: ("DPM++ 2M Karras")'
    assert "sampler_schedule" not in unmapped
    assert build_plan(spec_from_data(data).with_seed())[10].sampler == "DPM++ 2M Karras"

"""Deforum's ControlNet units (``cn_N_*``, and the single ``controlnet_*`` unit of early 2023) as flipbook units."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from flipbook.errors import FlipbookError
from flipbook.models.controlnet import locate_controlnet
from flipbook.spec.deforum import deforum_to_spec_data, import_settings
from flipbook.spec.deforum_controlnet import off_at_frame_zero
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan, resolve_value

BASE = {"animation_mode": "2D", "max_frames": 12, "W": 64, "H": 64, "prompts": {"0": "a"}, "seed": 3,
        "use_init": True, "init_image": "init.png", "strength": 0.5}  # fmt: skip
CANNY = {"cn_1_enabled": True, "cn_1_model": "control_v11p_sd15_canny [d14c016b]", "cn_1_module": "canny",
         "cn_1_weight": "0:(1), 10:(0.5)", "cn_1_guidance_start": "0:(0.1)", "cn_1_guidance_end": "0:(0.9)",
         "cn_1_threshold_a": 80, "cn_1_threshold_b": 180, "cn_1_vid_path": "", "cn_1_loopback_mode": False,
         "cn_1_control_mode": "Balanced", "cn_1_resize_mode": "Inner Fit (Scale to Fit)", "cn_1_low_vram": False,
         "cn_1_pixel_perfect": True, "cn_1_processor_res": 512, "cn_1_overwrite_frames": True,
         "cn_1_mask_vid_path": ""}  # fmt: skip
OFF = {f"cn_{n}_{key}": value for n in (2, 3, 4, 5) for key, value in (
    ("enabled", False), ("model", "None"), ("module", "none"), ("weight", "0:(1)"), ("control_mode", "Balanced"),
    ("guess_mode", True))}  # fmt: skip


def test_an_enabled_unit_maps_with_its_schedules_and_the_model_by_name(tmp_path):
    data, warnings = import_settings({**BASE, **CANNY, **OFF})
    assert data["controlnet"] == [{
        "model": "control_v11p_sd15_canny", "preprocessor": "canny", "guidance_start": 0.1, "guidance_end": 0.9,
        "low_threshold": 80, "high_threshold": 180, "weight": "0:(1), 10:(0.5)"}]  # fmt: skip
    assert warnings == []  # disabled units, and the enabled one's UI settings, change nothing
    spec = spec_from_data(data).with_seed()
    weights = resolve_value(spec, "controlnet[0].weight", spec.controlnet[0].weight, None)
    assert weights[0] == 1 and weights[10] == 0.5 and weights[5] == pytest.approx(0.75)
    # the name Deforum stored with its hash is found in the models folder by name
    folder = tmp_path / "webui" / "models" / "ControlNet"
    folder.mkdir(parents=True)
    (folder / "control_v11p_sd15_canny.safetensors").write_bytes(b"")
    kind, where = locate_controlnet(spec.controlnet[0].model, models_dir=tmp_path / "webui")
    assert kind == "file" and where.endswith("control_v11p_sd15_canny.safetensors")


@pytest.mark.parametrize(
    ("module", "preprocessor", "depth_model", "noted"),
    [("depth_midas", "depth", "Intel/dpt-hybrid-midas", False),
     ("depth_anything_v2", "depth", "depth-anything/Depth-Anything-V2-Small-hf", False),
     ("depth_zoe", "depth", "Intel/dpt-hybrid-midas", True), ("openpose_full", "openpose", None, False),
     ("tile_resample", "tile", None, False), ("lineart_realistic", "lineart", None, False),
     ("lineart_anime", "lineart", None, True), ("shuffle", "shuffle", None, False), ("none", "none", None, False)],
)  # fmt: skip
def test_modules_become_flipbooks_preprocessors(module, preprocessor, depth_model, noted):
    data, warnings = import_settings({**BASE, **CANNY, "cn_1_module": module})
    unit = data["controlnet"][0]
    assert unit["preprocessor"] == preprocessor and unit.get("preprocessor_model") == depth_model
    assert ("low_threshold" in unit) == (preprocessor == "canny")
    assert any(w.startswith("cn_1_module") for w in warnings) == noted
    spec_from_data(data)


def test_a_module_flipbook_lacks_skips_the_unit_saying_so():
    data, warnings = import_settings({**BASE, **CANNY, "cn_1_module": "softedge_hed"})
    assert "controlnet" not in data
    assert any("'softedge_hed'" in w and "skipped" in w for w in warnings)


def test_control_images_from_vid_path():
    data, _ = import_settings({**BASE, **CANNY, "cn_1_vid_path": "pose.png"})
    assert data["controlnet"][0]["image"] == "pose.png"
    data, warnings = import_settings({**BASE, **CANNY, "cn_1_vid_path": "dance.mp4"})
    assert data["controlnet"][0]["video"] == "dance.mp4" and "image" not in data["controlnet"][0]
    assert not any("cn_1_vid_path" in w for w in warnings)
    # the video controls frame 0 too, so the unit is not switched off there
    assert data["controlnet"][0]["weight"] == "0:(1), 10:(0.5)"
    video_input = {**BASE, **CANNY, "cn_1_vid_path": "dance.mp4", "animation_mode": "Video Input",
                   "video_init_path": "source.mp4", "extract_nth_frame": 2}  # fmt: skip
    _, warnings = import_settings(video_input)
    assert any("cn_1_vid_path" in w and "extract_nth_frame 2" in w for w in warnings)
    data, warnings = import_settings({**BASE, **CANNY, "cn_1_vid_path": "https://example.com/pose.png"})
    assert any("a URL" in w and "--set controlnet.0.image=PATH" in w for w in warnings)
    data, _ = import_settings({**BASE, **CANNY, "cn_1_vid_path": "dance.mp4", "cn_1_loopback_mode": True})
    assert "image" not in data["controlnet"][0]  # loopback: each frame's own input


def test_guidance_windows_and_thresholds_as_controlnet_reads_them():
    data, warnings = import_settings({**BASE, **CANNY, "cn_1_guidance_end": "0:(0.8), 6:(0.4)"})
    assert data["controlnet"][0]["guidance_end"] == 0.8
    assert any(w.startswith("cn_1_guidance_end") and "frame-0 value 0.8" in w for w in warnings)
    data, warnings = import_settings(
        {**BASE, **CANNY, "cn_1_guidance_start": "0:(0.9)", "cn_1_guidance_end": "0:(0.5)"}
    )
    assert "controlnet" not in data and any("nothing to act on" in w for w in warnings)
    data, warnings = import_settings({**BASE, **CANNY, "cn_1_threshold_a": 300, "cn_1_threshold_b": 64})
    assert (data["controlnet"][0]["low_threshold"], data["controlnet"][0]["high_threshold"]) == (64, 255)
    assert any("threshold" in w for w in warnings)


def test_an_enabled_unit_without_a_model_is_skipped_saying_so():
    data, warnings = import_settings({**BASE, **CANNY, "cn_1_model": "None"})
    assert "controlnet" not in data and any(w.startswith("cn_1_model") for w in warnings)


def test_unit_settings_flipbook_lacks_are_reported_for_enabled_units_only():
    _, unused = deforum_to_spec_data({**BASE, **CANNY, "cn_1_control_mode": "ControlNet is more important",
                                      "cn_2_control_mode": "My prompt is more important"})  # fmt: skip
    assert unused == ["cn_1_control_mode"]


def test_the_single_unit_of_early_2023():
    single = {"controlnet_enabled": True, "controlnet_module": "openpose", "controlnet_model": "control_sd15_openpose [fef5e48e]",
              "controlnet_weight": 2, "controlnet_guidance_strength": 0.8, "controlnet_lowvram": True,
              "controlnet_processor_res": 512, "controlnet_threshold_a": 64, "controlnet_threshold_b": 64,
              "controlnet_resize_mode": "Scale to Fit (Inner Fit)", "controlnet_scribble_mode": False}  # fmt: skip
    data, warnings = import_settings({**BASE, **single})
    assert data["controlnet"] == [{"model": "control_sd15_openpose", "preprocessor": "openpose", "guidance_end": 0.8,
                                   "weight": 2}]  # fmt: skip
    assert warnings == []


@pytest.mark.parametrize(
    "weight", [1.5, "0:(1), 10:(0.5)", "0:(0.5*(1+sin(t)))", "0:(1), 1:(0.2), 4:(0.6)", "2:(0.7)"]
)
def test_off_at_frame_zero_changes_frame_zero_only(weight):
    spec = spec_from_data({"prompts": {"0": "a"}, "animation": {"max_frames": 12},
                           "controlnet": [{"model": "tiny", "weight": weight},
                                          {"model": "tiny", "weight": off_at_frame_zero(weight)}]})  # fmt: skip
    before, after = (resolve_value(spec, "w", unit.weight, None) for unit in spec.controlnet)
    assert after[0] == 0 and np.allclose(after[1:], before[1:])


def test_a_unit_with_no_image_at_frame_zero_is_off_there_and_renders(tmp_path, monkeypatch, tiny_model):
    """Deforum turns a loopback unit off at frame 0 when there is no init image; so does the import, and the
    render then controls frames 1.. with the frame before."""
    from flipbook.runs.render import render

    monkeypatch.setattr("flipbook.runs.cores.load_model", lambda name, **kwargs: tiny_model)
    settings = {**BASE, **CANNY, "use_init": False, "cn_1_loopback_mode": True, "max_frames": 2,
                "steps": 2, "diffusion_cadence": 1}  # fmt: skip
    data, warnings = import_settings(settings)
    assert data["controlnet"][0]["weight"].startswith("0: (0), 1: (")
    assert any(w.startswith("cn_1:") and "off for it (weight 0)" in w for w in warnings)
    data["controlnet"][0]["model"] = "tiny"
    data["output"] = {"dir": str(tmp_path), "name": "cn", "formats": ["png"]}
    result = render(spec_from_data(data))
    assert len(result.frames) == 2
    data["controlnet"][0]["weight"] = 1.0  # on at frame 0 with nothing to control with: refused, named
    with pytest.raises(FlipbookError) as error:
        render(spec_from_data({**data, "output": {**data["output"], "name": "refused"}}))
    assert error.value.field == "controlnet[0].image"


def test_units_keep_the_frames_own_image_in_video_and_init_files():
    data, warnings = import_settings({**BASE, **CANNY})  # an init image: frame 0 has an image
    assert data["controlnet"][0]["weight"] == "0:(1), 10:(0.5)"
    assert not any("off for it" in w for w in warnings)
    plan = build_plan(spec_from_data(data).with_seed())
    assert len(plan) == 12


def test_black_frame_is_never_shown_to_the_sampler_at_weight_zero():
    from flipbook.control import ControlUnits

    spec = spec_from_data({"prompts": {"0": "a"}, "animation": {"max_frames": 2, "width": 64, "height": 64},
                           "controlnet": [{"model": "tiny", "weight": "0: (0), 1: (1)"}]}).with_seed()  # fmt: skip
    units = ControlUnits(spec)
    plan = build_plan(spec)
    [off] = units.controls(plan[0], None)
    assert off.conditioning_scale == 0.0 and off.image.size == (64, 64)
    [on] = units.controls(plan[1], PIL.Image.new("RGB", (64, 64), "white"))
    assert on.conditioning_scale == 1.0

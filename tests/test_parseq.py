"""Parseq manifests: in Deforum settings (inline or a local file) and on their own, read as Deforum's adapter
reads them (``scripts/deforum_helpers/parseq_adapter.py``)."""

from __future__ import annotations

import json
import math
import tomllib

import numpy as np
import pytest

from flipbook.errors import FlipbookError
from flipbook.spec.deforum import import_settings
from flipbook.spec.load import load_spec_and_warnings, spec_from_data
from flipbook.spec.parseq import import_manifest, is_parseq_manifest
from flipbook.spec.plan import build_plan

FRAMES = 10


def manifest(frames: int = FRAMES, **extra_fields) -> dict:
    """A manifest as Parseq saves one: rendered values with _delta and _pc, keyframes, prompts, options."""
    rendered = []
    for i in range(frames):
        zoom = 1 + 0.01 * i * i
        angle = 3.0 * i
        frame = {"frame": i, "zoom": zoom, "angle": angle, "translation_x": math.sin(i), "strength": 0.5 + 0.02 * i,
                 "scale": 7 if i < 5 else 9, "noise": 0.04, "seed": 100 + i // 3,
                 "deforum_prompt": "a cat --neg blurry" if i < 6 else "a dog --neg blurry"}  # fmt: skip
        for name in ("zoom", "angle", "translation_x"):
            previous = rendered[-1][name] if rendered else None
            if previous is None:
                frame[f"{name}_delta"] = frame[name]
            elif name == "zoom":
                frame[f"{name}_delta"] = 1 + frame[name] - previous
            else:
                frame[f"{name}_delta"] = frame[name] - previous
            frame[f"{name}_pc"] = 50.0
        frame.update({k: (v(i) if callable(v) else v) for k, v in extra_fields.items()})
        rendered.append(frame)
    return {
        "meta": {"generated_by": "sd_parseq", "version": "0.1.94"},
        "options": {"input_fps": 20, "bpm": 140, "output_fps": 24, "cadence": 1, "cc_window_width": 0},
        "managedFields": ["zoom", "angle", "translation_x", "strength", "scale", "noise", "seed"],
        "keyframes": [
            {"frame": 0, "zoom": 1, "zoom_i": "L"},
            {"frame": frames - 1, "zoom": rendered[-1]["zoom"]},
        ],
        "prompts": {"format": "v2", "enabled": True},
        "rendered_frames": rendered,
        "rendered_frames_meta": {"zoom": {"max": 2, "min": 1, "isFlat": False}},
    }


SETTINGS = {"animation_mode": "2D", "max_frames": 120, "fps": 15, "W": 64, "H": 64, "prompts": {"0": "a tree"},
            "animation_prompts_positive": "oil painting,", "angle": "0: (90)", "seed": 1,
            "deforum_git_commit_id": "eb16c856"}  # fmt: skip


def plan_of(data: dict, frames: int | None = None):
    if frames is not None:
        data = {**data, "animation": {**data["animation"], "max_frames": frames}}
    return build_plan(spec_from_data(data).with_seed())


def test_an_inline_manifest_replaces_the_schedules_as_deforum_does():
    source = manifest()
    data, warnings = import_settings({**SETTINGS, "parseq_manifest": json.dumps(source)})
    assert (data["animation"]["max_frames"], data["animation"]["fps"]) == (FRAMES, 24)  # the manifest's
    plan = plan_of(data)
    frames = source["rendered_frames"]
    for i, frame in enumerate(plan.frames):
        assert frame.camera["zoom"] == pytest.approx(frames[i]["zoom_delta"])  # motion from the deltas
        assert frame.camera["angle"] == pytest.approx(frames[i]["angle_delta"])
        assert frame.camera["translation_x"] == pytest.approx(frames[i]["translation_x_delta"])
        assert frame.strength == pytest.approx(frames[i]["strength"]) and frame.cfg == frames[i]["scale"]
        assert frame.camera["noise"] == pytest.approx(0.04) and frame.seed == frames[i]["seed"]
    assert [f.prompt for f in plan.frames] == ["a cat"] * 6 + ["a dog"] * 4
    assert {f.negative_prompt for f in plan.frames} == {"blurry"}
    assert data["camera"]["perspective_flip"] is True and data["sampling"]["seed_behavior"] == "schedule"
    assert "positive_prompt" not in data and any(w.startswith("positive_prompt") for w in warnings)


def test_absolute_values_without_deltas_and_the_settings_frame_count_without_overrides():
    source = manifest()
    data, _ = import_settings({**SETTINGS, "parseq_manifest": json.dumps(source), "parseq_use_deltas": False,
                               "parseq_non_schedule_overrides": False})  # fmt: skip
    assert (data["animation"]["max_frames"], data["animation"]["fps"]) == (120, 15)
    plan = plan_of(data)
    assert plan[4].camera["angle"] == pytest.approx(12.0) and plan[4].camera["zoom"] == pytest.approx(1.16)
    last = source["rendered_frames"][-1]
    assert plan[119].camera["angle"] == pytest.approx(last["angle"])  # past the manifest: its last frame
    assert plan[119].prompt == "a dog"


def test_shorter_renders_keep_the_manifests_values():
    """Schedules are keyframe strings, so --set animation.max_frames=2 still takes the first two frames."""
    source = manifest()
    data, _ = import_settings({**SETTINGS, "parseq_manifest": json.dumps(source)})
    plan = plan_of(data, frames=2)
    assert [f.camera["zoom"] for f in plan.frames] == pytest.approx(
        [f["zoom_delta"] for f in source["rendered_frames"][:2]]
    )
    assert data["camera"]["noise"] == 0.04  # a constant is a number


def test_a_manifest_file_next_to_the_settings(tmp_path):
    (tmp_path / "doc.json").write_text(json.dumps(manifest()))
    settings = {**SETTINGS, "parseq_manifest": "doc.json"}
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    spec, _ = load_spec_and_warnings(path)
    assert spec.animation.max_frames == FRAMES and spec.sampling.seed_behavior == "schedule"
    with pytest.raises(FlipbookError) as error:  # the server reads no files a document names
        import_settings(settings)
    assert error.value.field == "parseq_manifest" and "JSON text" in error.value.allowed


@pytest.mark.parametrize(
    ("value", "field", "says"),
    [("https://sd-parseq.web.app/api/manifest?docId=x", "parseq_manifest", "never downloads"),
     ('{"options": {}}', "parseq_manifest", "no rendered_frames"),
     (json.dumps({"rendered_frames": [{"frame": 0}, {"frame": 2}]}), "parseq_manifest.rendered_frames",
      "frame 1 is missing"),
     ("missing.json", "parseq_manifest", "No such file")],
)  # fmt: skip
def test_manifests_deforum_cant_use_or_flipbook_cant_fetch_are_one_error(tmp_path, value, field, says):
    with pytest.raises(FlipbookError) as error:
        import_settings({**SETTINGS, "parseq_manifest": value}, base=tmp_path)
    assert error.value.field == field and says in str(error.value)


def test_empty_manifest_means_no_parseq():
    data, _ = import_settings({**SETTINGS, "parseq_manifest": "  "})
    assert data["camera"]["angle"] == 90 and "seed_schedule" not in data.get("sampling", {})


def test_controlnet_weights_fractional_seeds_and_fields_flipbook_lacks():
    cn = {"cn_1_enabled": True, "cn_1_model": "control_v11p_sd15_canny [d14c016b]", "cn_1_module": "canny",
          "cn_1_weight": "0:(1)", "use_init": True, "init_image": "i.png"}  # fmt: skip
    source = manifest(cn_1_weight=lambda i: 0.1 * i, ddim_eta=0.3, seed=lambda i: 100.5 + i)
    data, warnings = import_settings({**SETTINGS, **cn, "parseq_manifest": json.dumps(source)})
    spec = spec_from_data(data).with_seed()
    from flipbook.spec.plan import resolve_value

    weights = resolve_value(spec, "w", spec.controlnet[0].weight, None)
    assert np.allclose(weights, [0.1 * i for i in range(FRAMES)])
    assert [f.seed for f in build_plan(spec).frames] == [100 + i for i in range(FRAMES)]
    assert any("fractional seeds" in w for w in warnings)
    assert any("ddim_eta" in w and "not used" in w for w in warnings)


def test_a_manifest_on_its_own_renders_in_2d_or_3d(tmp_path, run_cli, monkeypatch, tiny_model):
    source = manifest()
    assert is_parseq_manifest(source) and not is_parseq_manifest(SETTINGS)
    data, warnings = import_manifest(source)
    assert data["animation"]["mode"] == "2d" and data["animation"]["max_frames"] == FRAMES
    assert any("2d mode" in w for w in warnings)
    three_d, _ = import_manifest(manifest(translation_z=lambda i: 0.5 * i))
    assert three_d["animation"]["mode"] == "3d"

    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(source))
    code, out, err = run_cli("import-parseq", path)
    assert code == 0, err
    assert tomllib.loads(out)["animation"]["fps"] == 24
    code, _, err = run_cli("import-parseq", tmp_path / "manifest.json.nope")
    assert code == 2
    (tmp_path / "settings.json").write_text(json.dumps(SETTINGS))
    code, _, err = run_cli("import-parseq", tmp_path / "settings.json")
    assert code == 2 and "import-deforum" in err and err.count("\n") == 1

    monkeypatch.setattr("flipbook.runs.cores.load_model", lambda name, **kwargs: tiny_model)
    code, out, err = run_cli("render", path, "--set", "animation.max_frames=2", "--set", "animation.width=64",
                             "--set", "animation.height=64", "--set", "sampling.steps=2", "--set", f"output.dir={tmp_path}",
                             "--set", 'output.formats=["png"]')  # fmt: skip
    assert code == 0, err
    assert "(2 PNG)" in out

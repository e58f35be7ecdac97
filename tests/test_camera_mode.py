"""The ``2d`` and ``3d`` modes end to end on the tiny model (64x64, 2-4 steps): run folder, schedules, cadence,
masks, init image, checkpoint schedules and resume."""

import numpy as np
import PIL.Image
import pytest

from flipbook.io.pnginfo import parse_parameters, read_png_parameters
from flipbook.modes.camera import diffused_frames
from flipbook.runs.events import Events, RenderCancelled
from flipbook.runs.render import render, resume
from flipbook.runs.run_dir import resume_point
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def shared_model(monkeypatch, tiny_model):
    """Every checkpoint name loads the session's tiny model (recorded), so tests don't rebuild it."""
    loads = []

    def load(name, **kwargs):
        loads.append(name)
        return tiny_model

    monkeypatch.setattr("flipbook.runs.cores.load_model", load)
    return loads


def make_spec(tmp_path, name="run", **sections):
    data = {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"steps": 3, "seed": 11},
        "animation": {"mode": "2d", "max_frames": 3, "width": 64, "height": 64, "strength": 0.5},
        "prompts": {"0": "a forest", "2": "a city"},
        "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return spec_from_data(data)


def params(path):
    return parse_parameters(read_png_parameters(path))


def frames(result):
    return [np.asarray(PIL.Image.open(p)) for p in result.frames]


def test_2d_run_folder_holds_spec_plan_log_and_frames(tmp_path):
    result = render(make_spec(tmp_path, animation={"max_frames": 4}, camera={"zoom": "0:(1.1)"}))
    run = result.run_dir
    assert [p.name for p in result.frames] == [f"frame_{i:05d}.png" for i in range(4)]
    rows = (run / "frames.csv").read_text().splitlines()
    assert rows[0].startswith("frame,seed,") and "zoom" in rows[0].split(",") and len(rows) == 5
    assert "1.1" in rows[2].split(",")
    log = (run / "render.log").read_text()
    assert "start: 4 frames, seed 11" in log and "frame 3" in log and "done" in log
    assert (run / "spec.json").is_file()


# (mode, camera settings of the baseline, the schedule changed, its new value)
EFFECTS = [
    ("2d", {}, "angle", 10.0),
    ("2d", {}, "zoom", 1.2),
    ("2d", {}, "translation_x", 6.0),
    ("2d", {}, "translation_y", 6.0),
    ("2d", {"zoom": 1.2}, "transform_center_x", 0.1),
    ("2d", {"zoom": 1.2}, "transform_center_y", 0.1),
    ("2d", {"perspective_flip": True}, "perspective_flip_theta", 10.0),
    ("2d", {"perspective_flip": True}, "perspective_flip_phi", 10.0),
    ("2d", {"perspective_flip": True}, "perspective_flip_gamma", 10.0),
    ("2d", {"perspective_flip": True, "perspective_flip_phi": 10.0}, "perspective_flip_fv", 90.0),
    ("2d", {}, "contrast", 0.8),
    ("2d", {}, "antiblur_amount", 1.0),
    ("2d", {"antiblur_amount": 1.0}, "antiblur_kernel", 11),
    ("2d", {"antiblur_amount": 1.0}, "antiblur_sigma", 3.0),
    ("2d", {"antiblur_amount": 1.0}, "antiblur_threshold", 20.0),
    ("2d", {}, "noise", 0.3),
    ("2d", {}, "noise_multiplier", 0.5),
    ("3d", {}, "translation_x", 10.0),
    ("3d", {}, "translation_y", 10.0),
    ("3d", {}, "translation_z", 20.0),
    ("3d", {}, "rotation_3d_x", 5.0),
    ("3d", {}, "rotation_3d_y", 5.0),
    ("3d", {}, "rotation_3d_z", 5.0),
    ("3d", {"translation_x": 10.0}, "fov", 80.0),
    ("3d", {"translation_z": 20.0}, "near", 100.0),
    ("3d", {"translation_z": 20.0}, "far", 300.0),
]


@pytest.mark.parametrize(
    ("mode", "base", "name", "value"), EFFECTS, ids=[f"{m}-{n}" for m, _, n, _ in EFFECTS]
)
def test_each_schedule_has_an_observable_effect(tmp_path, mode, base, name, value):
    camera = {"depth_model": "flat", "color_coherence": "none", **base}
    if name == "far":
        camera["depth_model"] = "tiny"  # far only matters where depth varies
    animation = {"mode": mode, "max_frames": 2}
    before = frames(render(make_spec(tmp_path, "a", animation=animation, camera=camera)))
    changed = {**camera, name: f"0:({value})"}
    after = frames(render(make_spec(tmp_path, "b", animation=animation, camera=changed)))
    assert np.array_equal(before[0], after[0])  # frame 0 is txt2img: no camera yet
    assert not np.array_equal(before[1], after[1]), f"{name} changed nothing"


def test_cadence_diffuses_every_nth_frame_and_cross_fades_between(tmp_path):
    spec = make_spec(tmp_path, animation={"max_frames": 7}, camera={"cadence": 3, "color_coherence": "none"})
    result = render(spec)
    assert diffused_frames(7, 3) == [0, 3, 6]
    diffused = [params(p).extra.get("Diffused") is None for p in result.frames]
    assert diffused == [True, False, False, True, False, False, True]
    # no camera motion: an in-between is exactly the cross-fade of its two diffused neighbours
    a, b = (x.astype(np.float32) for x in frames(result)[0:4:3])
    expected = np.clip(np.rint(a * 2 / 3 + b / 3), 0, 255)
    assert np.array_equal(frames(result)[1], expected.astype(np.uint8))


def test_cadence_in_betweens_follow_the_camera(tmp_path):
    """With a pure 2D translation, the in-between is both diffused frames moved onto it, not a plain fade."""
    camera = {"cadence": 2, "translation_x": 4.0, "color_coherence": "none", "border": "wrap"}
    result = frames(render(make_spec(tmp_path, animation={"max_frames": 3}, camera=camera)))
    a, b = result[0].astype(np.float32), result[2].astype(np.float32)
    expected = (np.roll(a, 4, axis=1) + np.roll(b, -4, axis=1)) / 2
    plain = (a + b) / 2
    error = np.abs(result[1] - expected).mean()
    assert error < 1.0 < np.abs(result[1] - plain).mean()


def test_optical_flow_cadence_renders(tmp_path):
    camera = {"cadence": 2, "optical_flow_cadence": "dis", "cadence_flow_factor": "0:(0.5)"}
    result = render(make_spec(tmp_path, animation={"max_frames": 3}, camera=camera))
    assert len(result.frames) == 3 and params(result.frames[1]).extra["Diffused"]


def test_3d_saves_depth_maps_for_diffused_frames(tmp_path):
    camera = {"depth_model": "tiny", "translation_z": 10.0, "save_depth_maps": True, "cadence": 2}
    result = render(make_spec(tmp_path, animation={"mode": "3d", "max_frames": 5}, camera=camera))
    depth = sorted(p.name for p in (result.run_dir / "depth").iterdir())
    # every diffused frame's depth: each is warped forward (to the next) or back (to the in-betweens)
    assert depth == ["depth_00000.png", "depth_00002.png", "depth_00004.png"]


def test_mask_keeps_pixels_outside_it_still(tmp_path, init_image, mask_image):
    init_image.save(tmp_path / "init.png")
    mask_image.save(tmp_path / "mask.png")
    init = {"image": str(tmp_path / "init.png"), "mask": str(tmp_path / "mask.png"), "strength": 0.3}
    camera = {"zoom": 1.1, "angle": 5.0, "noise": 0.2}
    result = frames(render(make_spec(tmp_path, animation={"max_frames": 4}, init=init, camera=camera)))
    outside = np.asarray(mask_image) == 0
    still = np.asarray(init_image)
    for frame in result:
        assert np.abs(frame[outside].astype(int) - still[outside]).max() <= 1
    assert np.abs(result[3][~outside].astype(int) - still[~outside]).mean() > 5  # the inside does move


def test_inverted_alpha_mask_animates_outside(tmp_path, init_image):
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 3][16:48, 16:48] = 255  # opaque subject in the middle, inverted: it stays
    PIL.Image.fromarray(rgba, "RGBA").save(tmp_path / "mask.png")
    init_image.save(tmp_path / "init.png")
    init = {
        "image": str(tmp_path / "init.png"),
        "mask": str(tmp_path / "mask.png"),
        "mask_use_alpha": True,
        "mask_invert": True,
    }
    result = frames(render(make_spec(tmp_path, init=init, camera={"zoom": 1.2})))
    subject = np.zeros((64, 64), bool)
    subject[16:48, 16:48] = True
    assert np.abs(result[2][subject].astype(int) - np.asarray(init_image)[subject]).max() <= 1


def test_init_image_starts_frame_0(tmp_path, init_image):
    """Frame 0 is the init image through img2img at init.strength (Deforum's: share kept; denoise 1 - it)."""
    init_image.save(tmp_path / "a.png")
    PIL.Image.fromarray(255 - np.asarray(init_image)).save(tmp_path / "b.png")
    init = {"image": str(tmp_path / "a.png"), "strength": 0.4}
    first = render(make_spec(tmp_path, "a", animation={"max_frames": 1}, init=init))
    other = render(
        make_spec(tmp_path, "b", animation={"max_frames": 1}, init={**init, "image": str(tmp_path / "b.png")})
    )
    assert not np.array_equal(frames(first)[0], frames(other)[0])
    assert params(first.frames[0]).denoising_strength == pytest.approx(0.6)


def test_missing_init_image_fails_before_any_model_loads(tmp_path, shared_model):
    from flipbook.errors import FlipbookError

    with pytest.raises(FlipbookError, match=r"init\.image"):
        render(make_spec(tmp_path, init={"image": str(tmp_path / "missing.png")}))
    assert shared_model == []


def test_checkpoint_schedule_switches_models(tmp_path, shared_model):
    spec = make_spec(tmp_path, model={"name": '0:("tiny"), 2:("other.safetensors")'})
    result = render(spec)
    assert shared_model == ["tiny", "other.safetensors"]
    assert [params(p).model_name for p in result.frames] == ["tiny", "tiny", "other.safetensors"]


def test_resume_point_respects_cadence():
    assert resume_point(0) == -1
    assert resume_point(5) == 4
    assert resume_point(5, every=3) == 3  # frames 4 (an in-between) is made again from 3 and 6
    assert resume_point(3, every=3) == 0


@pytest.mark.parametrize(("cadence", "stop_after"), [(1, 2), (3, 4), (3, 3)])
def test_resume_after_cancel_gives_identical_frames(tmp_path, cadence, stop_after):
    camera = {"cadence": cadence, "zoom": "0:(1.05)", "translation_x": "0:(2*sin(t))"}
    spec = make_spec(tmp_path, "whole", animation={"max_frames": 8}, camera=camera)
    whole = frames(render(spec))

    def on_frame(event):
        if event.index == stop_after:
            events.cancel()

    events = Events(on_frame=on_frame)
    stopped = spec.model_copy(update={"output": spec.output.model_copy(update={"name": "part"})})
    with pytest.raises(RenderCancelled):
        render(stopped, events)
    result = resume(tmp_path / "part")
    assert result.resumed_from == resume_point(stop_after + 1, cadence)
    assert all(np.array_equal(a, b) for a, b in zip(whole, frames(result), strict=True))

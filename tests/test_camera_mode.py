"""The ``2d`` and ``3d`` modes end to end on the tiny model (64x64, 2-4 steps): run folder, schedules, cadence,
masks, init image, checkpoint schedules and resume."""

import numpy as np
import PIL.Image
import pytest

from flipbook.events import Events, RenderCancelled
from flipbook.io.pnginfo import parse_parameters, read_png_parameters
from flipbook.modes.camera import diffused_frames
from flipbook.runs.render import render, resume
from flipbook.runs.run_dir import RunDir, resume_point
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
    # named as A1111 names a checkpoint: a file by its stem
    assert [params(p).model_name for p in result.frames] == ["tiny", "tiny", "other"]


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
    # the background writer leaves exactly the frames up to the one whose event cancelled
    assert RunDir(tmp_path / "part").completed(8) == stop_after + 1
    result = resume(tmp_path / "part")
    assert result.resumed_from == resume_point(stop_after + 1, cadence)
    assert all(np.array_equal(a, b) for a, b in zip(whole, frames(result), strict=True))


# ---- colour coherence against the hybrid video ("video", Deforum's "Video Input") ---------------------------

TINTS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]  # red, green, blue, yellow


def tinted_video(folder):
    """A frame folder: a texture tinted a different colour in each frame."""
    folder.mkdir()
    texture = np.random.default_rng(5).normal(0, 25, (64, 64, 1))
    frames = []
    for i, tint in enumerate(TINTS):
        frame = np.clip(np.array(tint, float) + texture, 0, 255).astype(np.uint8)
        PIL.Image.fromarray(frame).save(folder / f"frame_{i:03d}.png")
        frames.append(frame)
    return folder, frames


def img2img_inputs(monkeypatch):
    from flipbook.sampling.core import SamplingCore

    inputs = []
    original = SamplingCore.run_batch

    def spy(self, requests, **kwargs):
        inputs.extend(np.asarray(r.image) if r.image is not None else None for r in requests)
        return original(self, requests, **kwargs)

    monkeypatch.setattr(SamplingCore, "run_batch", spy)
    return inputs


def nearest_tint(image, video):
    means = [f.reshape(-1, 3).mean(0) for f in video]
    return int(np.argmin([np.abs(image.reshape(-1, 3).mean(0) - m).sum() for m in means]))


@pytest.mark.parametrize(("every_n", "expected"), [(1, [1, 2, 3]), (2, [0, 2, 2]), (3, [0, 0, 3])])
def test_video_colour_coherence_follows_the_video_frames(tmp_path, monkeypatch, every_n, expected):
    folder, video = tinted_video(tmp_path / "tints")
    inputs = img2img_inputs(monkeypatch)
    camera = {"hybrid_video": str(folder), "color_coherence": "video", "color_coherence_video_every_n": every_n,
              "noise": 0, "antiblur_amount": 0}  # fmt: skip
    out = frames(render(make_spec(tmp_path, animation={"max_frames": 4}, camera=camera)))
    # frame 0 is matched to video frame 0 after img2img, as Deforum does
    assert nearest_tint(out[0], video) == 0
    assert np.abs(out[0].reshape(-1, 3).mean(0) - video[0].reshape(-1, 3).mean(0)).max() < 8
    # each later frame starts img2img from the warped frame matched (LAB) to the sampled video frame
    assert [nearest_tint(inputs[k], video) for k in (1, 2, 3)] == expected
    # Deforum's 8-bit LAB matching: a tint's a and b channels span a dozen levels, which the matching maps
    # coarsely (red to green here: within about 25 levels of the video frame's mean, the other channels within 4)
    for k, sample in zip((1, 2, 3), expected, strict=True):
        assert np.abs(inputs[k].reshape(-1, 3).mean(0) - video[sample].reshape(-1, 3).mean(0)).max() < 30


def test_frame_0_colour_coherence_is_unchanged_without_video(tmp_path, monkeypatch):
    """The other modes match later frames to frame 0, which stays as generated."""
    folder, video = tinted_video(tmp_path / "tints")
    camera = {"hybrid_video": str(folder), "noise": 0, "antiblur_amount": 0}
    lab = frames(render(make_spec(tmp_path, name="lab", animation={"max_frames": 2}, camera=camera)))
    plain = frames(render(make_spec(tmp_path, name="none", animation={"max_frames": 2},
                                    camera={**camera, "color_coherence": "none"})))  # fmt: skip
    assert np.array_equal(lab[0], plain[0])


# ---- 2D zoom 0: Deforum's degenerate warp ---------------------------------------------------------------------


def test_2d_zoom_0_warps_as_deforums_cv2_call_does(tmp_path):
    import cv2

    from flipbook.modes.camera import camera_for
    from flipbook.spec.plan import build_plan

    spec = make_spec(
        tmp_path, animation={"max_frames": 3}, camera={"zoom": "0:(1), 1:(0), 2:(1)", "angle": 10}
    )
    camera = camera_for(spec, build_plan(spec))
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    # Deforum's anim_frame_warp_2d: getRotationMatrix2D(centre, angle, zoom) -> warpPerspective
    deforum = np.vstack([cv2.getRotationMatrix2D((32.0, 32.0), 10, 0), [0, 0, 1]])
    expected = cv2.warpPerspective(image, deforum, (64, 64), borderMode=cv2.BORDER_REPLICATE)
    assert np.array_equal(camera.warp(image, 0, range(1, 2)), expected)
    assert camera.warp_back(image, 1, range(1, 2)) is image  # a collapse can't be undone: left as it is
    assert not np.array_equal(camera.warp(image, 1, range(2, 3)), image)  # zoom 1 and angle 10 still turn it


@pytest.mark.parametrize("cadence", [1, 2])
def test_2d_zoom_0_renders(tmp_path, cadence):
    spec = make_spec(tmp_path, animation={"max_frames": 3}, camera={"zoom": 0, "cadence": cadence})
    out = frames(render(spec))
    assert len(out) == 3 and all(f.shape == (64, 64, 3) for f in out)

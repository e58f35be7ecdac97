"""Hybrid video, the pure part: motion borrowed from a source video and compositing masks."""

import cv2
import numpy as np
import PIL.Image
import pytest

from flipbook.motion.hybrid import apply_hybrid_motion, composite, composite_mask, hybrid_flow, hybrid_matrix


def textured(size=(128, 96), seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 1.5)


def shifted(image, dx, dy):
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_flow_finds_a_pan(method):
    a = textured()
    b = shifted(a, 5, -3)
    flow = hybrid_flow(a, b, method)
    middle = flow[30:66, 30:98].reshape(-1, 2)
    assert np.median(middle[:, 0]) == pytest.approx(5, abs=0.5)
    assert np.median(middle[:, 1]) == pytest.approx(-3, abs=0.5)


@pytest.mark.parametrize("kind", ["affine", "perspective"])
def test_feature_matching_recovers_the_camera_move(kind):
    a = textured(size=(192, 160), seed=1)
    rotation = cv2.getRotationMatrix2D((96, 80), 4.0, 1.05)
    b = cv2.warpAffine(a, rotation, (192, 160), borderMode=cv2.BORDER_REPLICATE)
    matrix = hybrid_matrix(a, b, kind)
    points = np.float32([[20, 20], [172, 20], [20, 140], [172, 140], [96, 80]]).reshape(-1, 1, 2)
    found = cv2.perspectiveTransform(points, matrix)
    truth = cv2.transform(points, rotation)
    assert np.abs(found - truth).max() < 1.5  # pixels


def test_no_features_hold_still():
    flat = np.full((64, 64, 3), 128, np.uint8)
    np.testing.assert_array_equal(hybrid_matrix(flat, flat, "affine"), np.eye(3))


@pytest.mark.parametrize("motion", ["optical_flow", "affine"])
def test_the_animation_moves_like_the_source(motion):
    a = textured(size=(160, 128), seed=2)
    b = shifted(a, 6, 0)
    image = textured(size=(160, 128), seed=3)  # the animation's own frame, moved the source's way
    moved = apply_hybrid_motion(image, a, b, motion)
    expected = shifted(image, 6, 0)
    inner = (slice(20, 108), slice(20, 140))
    assert np.abs(moved[inner].astype(int) - expected[inner]).mean() < 4
    assert np.abs(image[inner].astype(int) - expected[inner]).mean() > 10
    assert np.array_equal(apply_hybrid_motion(image, a, b, "none"), image)


def test_masks_and_composite():
    previous = np.zeros((8, 8, 3), np.uint8)
    source = np.zeros((8, 8, 3), np.uint8)
    source[:, 4:] = 200
    difference = composite_mask(previous, source, "difference")
    assert difference[:, :4].max() == 0 and difference[:, 4:].min() == 1
    assert composite_mask(previous, source, "none").min() == 1
    assert composite_mask(previous, source, "blend")[0, 7] == pytest.approx(100 / 255, abs=0.01)
    depth = np.tile(np.linspace(0, 1, 8, dtype=np.float32), (8, 1))
    assert composite_mask(previous, source, "depth", depth=depth)[0, 7] == 1
    mixed = composite(previous, source, 0.5, difference)
    assert mixed[0, 0, 0] == 0 and mixed[0, 7, 0] == 100
    assert composite(previous, source, 0.5, difference, invert=True)[0, 7, 0] == 0
    with pytest.raises(ValueError):
        composite_mask(previous, source, "depth")


# ---- in the camera modes, on the tiny model ----------------------------------------------------------------


@pytest.fixture()
def panning_video(tmp_path):
    from flipbook.io.writers import write_mp4

    base = textured(size=(96, 64), seed=4)
    frames = [shifted(base, 4 * i, 0)[:, 16:80] for i in range(4)]  # 64x64, panning right 4 px per frame
    return write_mp4(frames, tmp_path / "pan.mp4", fps=12, crf=0), frames


def hybrid_render(tmp_path, monkeypatch, tiny_model, camera, name="hyb"):
    from flipbook.runs.render import render
    from flipbook.sampling.core import SamplingCore
    from flipbook.spec.load import spec_from_data

    monkeypatch.setattr("flipbook.runs.cores.load_model", lambda name, **kwargs: tiny_model)
    inputs = []
    original = SamplingCore.run_batch

    def spy(self, requests, **kwargs):
        inputs.extend(np.asarray(r.image) if r.image is not None else None for r in requests)
        return original(self, requests, **kwargs)

    monkeypatch.setattr(SamplingCore, "run_batch", spy)
    base = {"noise": 0, "color_coherence": "none", "antiblur_amount": 0}
    spec = spec_from_data(
        {
            "model": {"name": "tiny", "device": "cpu"}, "sampling": {"steps": 2, "seed": 3},
            "animation": {"mode": "2d", "max_frames": 3, "width": 64, "height": 64, "strength": 0.5},
            "prompts": {"0": "a forest"}, "camera": {**base, **camera},
            "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
        }
    )  # fmt: skip
    result = render(spec)
    return [np.asarray(PIL.Image.open(p)) for p in result.frames], inputs


@pytest.mark.usefixtures("one_thread")
def test_hybrid_motion_moves_the_feedback_like_the_video(tmp_path, monkeypatch, tiny_model, panning_video):
    path, _ = panning_video
    frames, inputs = hybrid_render(
        tmp_path, monkeypatch, tiny_model, {"hybrid_video": str(path), "hybrid_motion": "optical_flow"}
    )
    expected = shifted(frames[0], 4, 0)
    inner = (slice(8, 56), slice(12, 56))
    assert np.abs(inputs[1][inner].astype(int) - expected[inner]).mean() < 6
    assert np.abs(frames[0][inner].astype(int) - expected[inner]).mean() > 10


@pytest.mark.usefixtures("one_thread")
def test_hybrid_composite_blends_the_video_frame_in(tmp_path, monkeypatch, tiny_model, panning_video):
    path, _ = panning_video
    from flipbook.io.readers import read_frames

    decoded = read_frames(path).frames
    frames, inputs = hybrid_render(
        tmp_path, monkeypatch, tiny_model,
        {"hybrid_video": str(path), "hybrid_composite": "normal", "hybrid_comp_alpha": 1.0},
    )  # fmt: skip
    assert np.abs(inputs[1].astype(int) - decoded[1]).max() <= 1  # alpha 1, mask none: the video frame
    frames, inputs = hybrid_render(  # true: the earlier on/off switch, read as "normal"
        tmp_path, monkeypatch, tiny_model,
        {"hybrid_video": str(path), "hybrid_composite": True, "hybrid_comp_alpha": 0.5}, name="half",
    )  # fmt: skip
    half = (frames[0].astype(float) + decoded[1]) / 2
    assert np.abs(inputs[1].astype(float) - half).max() <= 1


@pytest.mark.usefixtures("one_thread")
def test_composite_before_motion_lets_the_video_motion_move_the_blend(
    tmp_path, monkeypatch, tiny_model, panning_video
):
    path, _ = panning_video
    from flipbook.io.readers import read_frames

    decoded = read_frames(path).frames
    camera = {"hybrid_video": str(path), "hybrid_motion": "optical_flow", "hybrid_comp_alpha": 1.0}
    _, normal = hybrid_render(tmp_path, monkeypatch, tiny_model, {**camera, "hybrid_composite": "normal"})
    _, before = hybrid_render(
        tmp_path, monkeypatch, tiny_model, {**camera, "hybrid_composite": "before_motion"}, name="before"
    )
    inner = (slice(8, 56), slice(12, 56))
    # normal: blended after the motion, so the input is the video frame; before_motion: the video frame (blended
    # into the camera-warped frame) is then moved by the video's motion from frame 0 to 1, 4 px to the right
    assert np.abs(normal[1].astype(int) - decoded[1]).max() <= 1
    expected = shifted(decoded[1], 4, 0)
    assert np.abs(before[1][inner].astype(int) - expected[inner]).mean() < 6
    assert np.abs(before[1][inner].astype(int) - decoded[1][inner]).mean() > 10


@pytest.mark.usefixtures("one_thread")
def test_composite_after_generation_blends_the_video_into_the_generated_frame(
    tmp_path, monkeypatch, tiny_model, panning_video
):
    path, _ = panning_video
    from flipbook.io.readers import read_frames

    decoded = read_frames(path).frames
    camera = {"hybrid_video": str(path), "hybrid_composite": "after_generation", "hybrid_comp_alpha": 1.0}
    frames, inputs = hybrid_render(tmp_path, monkeypatch, tiny_model, camera)
    assert np.abs(frames[0].astype(int) - decoded[0]).mean() > 10  # frame 0 is not composited (Deforum)
    assert np.abs(inputs[1].astype(int) - frames[0]).max() <= 1  # img2img starts from the warped frame 0 ...
    for index in (1, 2):  # ... and its result is blended with the video frame: alpha 1, the video frame
        assert np.abs(frames[index].astype(int) - decoded[index]).max() <= 1
    assert np.abs(inputs[2].astype(int) - frames[1]).max() <= 1  # the blend is the next frame's start


def test_hybrid_settings_need_a_video_and_a_camera_mode():
    from flipbook.errors import FlipbookError
    from flipbook.spec.load import spec_from_data

    with pytest.raises(FlipbookError) as error:
        spec_from_data(
            {"prompts": {"0": "x"}, "animation": {"mode": "2d"}, "camera": {"hybrid_motion": "affine"}}
        )
    assert error.value.field == "camera.hybrid_video"
    with pytest.raises(FlipbookError) as error:
        spec_from_data({"prompts": {"0": "x"}, "camera": {"hybrid_video": "v.mp4"}})
    assert error.value.field == "camera.hybrid_video"
    for timing in ("before_motion", "after_generation"):
        with pytest.raises(FlipbookError) as error:
            spec_from_data(
                {
                    "prompts": {"0": "x"},
                    "animation": {"mode": "2d"},
                    "camera": {"hybrid_composite": timing},
                }
            )
        assert error.value.field == "camera.hybrid_video"
    with pytest.raises(FlipbookError) as error:  # video colour coherence needs the video
        spec_from_data(
            {"prompts": {"0": "x"}, "animation": {"mode": "2d"}, "camera": {"color_coherence": "video"}}
        )
    assert error.value.field == "camera.color_coherence"


def test_hybrid_composite_takes_the_earlier_switch():
    from flipbook.errors import FlipbookError
    from flipbook.spec.load import spec_from_data

    def timing(value):
        data = {"prompts": {"0": "x"}, "animation": {"mode": "2d"}, "camera": {"hybrid_video": "v.mp4"}}
        data["camera"]["hybrid_composite"] = value
        return spec_from_data(data).camera.hybrid_composite

    assert (timing(True), timing(False), timing("before_motion")) == (
        "normal",
        "none",
        "before_motion",
    )
    with pytest.raises(FlipbookError) as error:
        timing("Before Motion")  # Deforum's spelling is the importer's business
    assert error.value.field == "camera.hybrid_composite"

"""The ``video`` mode (mov2mov / Deforum Video Input) on the tiny model, the frame picking and resizing it
uses, and the temporal-consistency score every run records."""

import json

import av
import cv2
import numpy as np
import PIL.Image
import pytest

from flipbook.errors import FlipbookError
from flipbook.events import Events, RenderCancelled
from flipbook.io.readers import select_frames
from flipbook.io.writers import Soundtrack, write_mp4
from flipbook.modes.video.render import resize
from flipbook.motion.consistency import temporal_error
from flipbook.runs.render import render, resume
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def shared_model(monkeypatch, tiny_model):
    monkeypatch.setattr("flipbook.runs.cores.load_model", lambda name, **kwargs: tiny_model)


def moving_shapes(n=12, size=(80, 64)):
    """A textured background with a bright square moving right 3 px per frame."""
    rng = np.random.default_rng(1)
    background = cv2.GaussianBlur(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), (5, 5), 2)
    frames = []
    for i in range(n):
        frame = background.copy()
        frame[20:40, 5 + 3 * i : 25 + 3 * i] = (250, 220, 40)
        frames.append(frame)
    return frames


@pytest.fixture()
def source(tmp_path):
    """A 12-frame, 12 fps MP4 with a 440 Hz tone soundtrack, made here with PyAV."""
    import soundfile

    sr = 22050
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * sr) / sr)).astype(np.float32)
    soundfile.write(tmp_path / "tone.wav", tone, sr)
    return write_mp4(
        moving_shapes(), tmp_path / "source.mp4", fps=12, crf=0, audio=Soundtrack(tmp_path / "tone.wav")
    )


def make_spec(tmp_path, source, name="vid", **sections):
    data = {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"steps": 2, "seed": 5, "sampler": "Euler", "seed_behavior": "fixed"},
        "animation": {"mode": "video", "max_frames": 4, "width": 64, "height": 64, "strength": 0.5},
        "prompts": {"0": "an oil painting"},
        "init": {"video": str(source)},
        "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return spec_from_data(data)


def frames(result):
    return [np.asarray(PIL.Image.open(p)) for p in result.frames]


# ---- picking and resizing (pure) ---------------------------------------------------------------------------


def test_select_every_nth_and_a_range():
    times = [i / 12 for i in range(12)]
    assert select_frames(times) == list(range(12))
    assert select_frames(times, every_nth=3) == [0, 3, 6, 9]
    assert select_frames(times, start=2, end=8, every_nth=2) == [2, 4, 6]
    assert select_frames(times, start=20) == []


def test_resampling_picks_the_nearest_frame():
    times = [i / 12 for i in range(12)]  # 1 s at 12 fps
    assert select_frames(times, fps=6) == [0, 2, 4, 6, 8, 10]
    doubled = select_frames(times, fps=24)  # every source frame about twice (ties may go either way)
    assert len(doubled) == 24 and doubled[0] == 0 and doubled[-1] == 11
    assert np.all(np.diff(doubled) >= 0) and set(doubled) == set(range(12))


@pytest.mark.parametrize("mode", ["just_resize", "crop_and_resize", "resize_and_fill"])
def test_resize_modes_give_the_size(mode):
    frame = np.zeros((40, 80, 3), np.uint8)
    frame[:, 30:50] = 255  # a centred white bar
    out = resize(frame, (64, 64), mode)
    assert out.shape == (64, 64, 3)
    if mode == "crop_and_resize":  # cover: the bar fills the middle half of the width
        assert out[32, 32] == pytest.approx(255, abs=2) and out[32, 0].max() < 5
    if mode == "resize_and_fill":  # fit: 64x32 picture, edges replicated above and below
        assert np.array_equal(out[0], out[16])


def test_temporal_error_is_lower_for_steady_than_for_flickering_frames():
    steady = moving_shapes(6)
    rng = np.random.default_rng(0)
    flicker = [
        np.clip(f.astype(int) + rng.integers(-40, 40, f.shape), 0, 255).astype(np.uint8) for f in steady
    ]
    assert temporal_error(steady) < 2 < 10 < temporal_error(flicker)
    assert temporal_error(steady[:1]) is None


# ---- rendering ---------------------------------------------------------------------------------------------


def test_video_mode_restyles_each_source_frame_keeps_timing_and_audio(tmp_path, source):
    spec = make_spec(tmp_path, source, video={"every_nth": 2}, output={"formats": ["png", "mp4"]})
    result = render(spec)
    assert len(result.frames) == 4
    run_spec = json.loads((result.run_dir / "spec.json").read_text())
    assert run_spec["animation"]["fps"] == pytest.approx(6)  # 12 fps source, every 2nd frame
    with av.open(str(result.outputs["mp4"])) as container:
        assert float(container.streams.video[0].average_rate) == pytest.approx(6)
        assert container.streams.audio, "the source's audio is kept"
    metrics = json.loads((result.run_dir / "metrics.json").read_text())["temporal_error"]
    assert set(metrics) == {"output", "source"} and metrics["source"] >= 0
    assert result.metrics == metrics


def test_keep_audio_off_and_explicit_fps(tmp_path, source):
    spec = make_spec(
        tmp_path, source, video={"keep_audio": False}, animation={"fps": 8}, output={"formats": ["mp4"]}
    )
    with av.open(str(render(spec).outputs["mp4"])) as container:
        assert not container.streams.audio
        assert float(container.streams.video[0].average_rate) == pytest.approx(8)


def test_pixels_outside_the_mask_are_the_source(tmp_path, source):
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    PIL.Image.fromarray(mask).save(tmp_path / "mask.png")
    masked = frames(render(make_spec(tmp_path, source, "masked", init={"mask": str(tmp_path / "mask.png")})))
    plain = frames(render(make_spec(tmp_path, source, "plain")))
    from flipbook.modes.video.render import read_source

    src = read_source(make_spec(tmp_path, source)).frames
    for out, full, original in zip(masked, plain, src, strict=True):
        assert np.array_equal(out[:, :32], original[:, :32])
        assert np.array_equal(out[:, 32:], full[:, 32:])


def test_a_mask_video_follows_its_frames(tmp_path, source):
    masks = [np.zeros((64, 64, 3), np.uint8) for _ in range(4)]
    for i, m in enumerate(masks):
        m[:, : 16 * (i + 1)] = 255
    mask_video = write_mp4(masks, tmp_path / "mask.mp4", fps=12, crf=0)
    out = frames(render(make_spec(tmp_path, source, video={"mask_video": str(mask_video)})))
    from flipbook.modes.video.render import read_source

    src = read_source(make_spec(tmp_path, source)).frames
    for i in range(3):  # frame 3's mask covers everything
        untouched = 16 * (i + 1) + 2  # right of the white part, past the video codec's soft edge
        assert np.abs(out[i][:, untouched:].astype(int) - src[i][:, untouched:]).max() <= 3
        assert np.abs(out[i][:, : 16 * (i + 1) - 2].astype(int) - src[i][:, : 16 * (i + 1) - 2]).mean() > 5


def test_feedback_renders_and_resumes_identically(tmp_path, source):
    settings = {"feedback": "0:(0.5)", "color_coherence": "lab"}
    whole = frames(render(make_spec(tmp_path, source, "whole", video=settings, animation={"max_frames": 6})))
    plain = frames(render(make_spec(tmp_path, source, "plain", animation={"max_frames": 6})))
    assert not np.array_equal(whole[3], plain[3])

    def on_frame(event):
        if event.index == 2:
            events.cancel()

    events = Events(on_frame=on_frame)
    part = make_spec(tmp_path, source, "part", video=settings, animation={"max_frames": 6})
    with pytest.raises(RenderCancelled):
        render(part, events)
    resumed = frames(resume(tmp_path / "part"))
    assert all(np.array_equal(a, b) for a, b in zip(whole, resumed, strict=True))


def test_batched_frames_equal_one_by_one(tmp_path, source):
    a = np.stack(frames(render(make_spec(tmp_path, source, "b4", video={"batch_size": 4}))))
    b = np.stack(frames(render(make_spec(tmp_path, source, "b1", video={"batch_size": 1}))))
    assert np.abs(a.astype(int) - b).max() <= 1


@pytest.mark.parametrize(
    ("sections", "field"),
    [
        ({"animation": {"max_frames": 13}}, "animation.max_frames"),
        ({"video": {"feedback": 1.5}}, "video.feedback"),
        ({"init": {"video": "missing.mp4"}}, "init.video"),
    ],
)
def test_bad_video_settings_name_the_field_before_any_frame(tmp_path, source, sections, field):
    with pytest.raises(FlipbookError) as error:
        render(make_spec(tmp_path, source, **sections))
    assert error.value.field == field
    assert not list(tmp_path.glob("*/frames/*.png"))


@pytest.mark.parametrize(
    ("video", "field"),
    [({"fps": 6, "every_nth": 2}, "video"), ({"start_frame": 5, "end_frame": 3}, "video")],
)
def test_conflicting_frame_choices_are_spec_errors(tmp_path, source, video, field):
    with pytest.raises(FlipbookError) as error:
        make_spec(tmp_path, source, video=video)
    assert error.value.field == field


def test_video_mode_needs_a_source(tmp_path):
    with pytest.raises(FlipbookError) as error:
        spec_from_data({"prompts": {"0": "x"}, "animation": {"mode": "video"}})
    assert error.value.field == "init.video"


def test_controlnet_takes_its_control_from_each_source_frame(tmp_path, source, monkeypatch):
    """A unit without an image is controlled by the frame's own input: here each source frame, preprocessed."""
    from flipbook.sampling.core import SamplingCore

    seen = []
    original = SamplingCore.run_batch

    def spy(self, requests, **kwargs):
        seen.extend((np.asarray(r.image), np.asarray(r.controls[0].image)) for r in requests if r.controls)
        return original(self, requests, **kwargs)

    monkeypatch.setattr(SamplingCore, "run_batch", spy)
    unit = {"model": "tiny", "preprocessor": "none"}
    spec = spec_from_data({**make_spec(tmp_path, source).model_dump(mode="json"), "controlnet": [unit]})
    controlled = frames(render(spec))
    assert len(seen) == 4 and all(np.array_equal(image, control) for image, control in seen)
    assert not np.array_equal(seen[0][1], seen[3][1])  # the control follows the source frames
    plain = frames(render(make_spec(tmp_path, source, "plain")))
    assert any(not np.array_equal(a, b) for a, b in zip(controlled, plain, strict=True))

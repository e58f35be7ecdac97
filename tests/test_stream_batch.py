"""Stream batching (StreamDiffusion's stream batch): one UNet call advances frames at different steps; the frames
equal the unpipelined img2img, and residual guidance drops the negative prompt's rows."""

import numpy as np
import PIL.Image
import pytest

from flipbook.errors import FlipbookError
from flipbook.events import Events, RenderCancelled
from flipbook.io.writers import write_mp4
from flipbook.runs.render import render, resume
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest
from flipbook.sampling.stream import stream_generate
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def shared_model(monkeypatch, tiny_model):
    monkeypatch.setattr("flipbook.runs.cores.load_model", lambda name, **kwargs: tiny_model)


def clip(n=8):
    """A smooth gradient with a square moving 4 px per frame."""
    y, x = np.mgrid[0:64, 0:64]
    background = np.stack([x * 3, y * 3, (x + y) * 2], axis=-1).astype(np.uint8)
    frames = []
    for i in range(n):
        frame = background.copy()
        frame[20:36, 4 * i : 4 * i + 16] = (250, 220, 40)
        frames.append(frame)
    return frames


@pytest.fixture()
def source(tmp_path):
    return write_mp4(clip(), tmp_path / "source.mp4", fps=12, crf=0)


def make_spec(tmp_path, source, name="vid", **sections):
    data = {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"steps": 4, "seed": 5, "sampler": "Euler", "seed_behavior": "iter", "cfg": 5},
        "animation": {"mode": "video", "max_frames": 4, "width": 64, "height": 64, "strength": 0.25},
        "prompts": {"0": "an oil painting"},
        "init": {"video": str(source)},
        "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    return spec_from_data(data)


def requests(n=5, steps=4, strength=0.75, sampler="Euler", cfg=5.0):
    return [
        FrameRequest(
            prompt="an oil painting of a harbour" if i % 2 else "a watercolour of a harbour",
            negative_prompt="blurry",
            seed=100 + i,
            num_inference_steps=steps,
            guidance_scale=cfg,
            sampler=sampler,
            width=64,
            height=64,
            image=PIL.Image.fromarray(frame),
            strength=strength,
        )
        for i, frame in enumerate(clip(n))
    ]


def pixels(images):
    return np.stack([np.asarray(image, dtype=int) for image in images])


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ 2M Karras", "DDIM", "LCM"])
def test_stream_equals_one_frame_at_a_time(tiny_model, sampler):
    batch = requests(sampler=sampler)
    alone = SamplingCore(tiny_model).generate(batch, batch_size=1)
    core = SamplingCore(tiny_model)
    streamed = list(stream_generate(core, batch))
    assert [position for position, _ in streamed] == list(range(len(batch)))
    assert np.abs(pixels([image for _, image in streamed]) - pixels(alone)).max() <= 1
    # 5 frames of 3 steps (4 x 0.75): 5 + 3 - 1 UNet calls, up to 3 frames (6 rows with guidance) each
    assert core.stats["unet_calls"] == 7
    assert core.stats["unet_rows"] == 2 * 5 * 3


def test_depth_caps_the_frames_in_flight(tiny_model):
    core = SamplingCore(tiny_model)
    seen = []
    core.events = Events(on_step=lambda event: seen.append(len(event.frames)))
    list(stream_generate(core, requests(n=4, steps=4, strength=1.0), depth=2))
    assert max(seen) == 2
    assert core.stats["unet_calls"] == 4 * 4 // 2 + 1  # pairs overlap by one step at each hand-over


def test_residual_guidance_drops_the_negative_rows(tiny_model):
    full_core, residual_core = SamplingCore(tiny_model), SamplingCore(tiny_model)
    full = pixels(image for _, image in stream_generate(full_core, requests()))
    residual = pixels(image for _, image in stream_generate(residual_core, requests(), residual_cfg=True))
    again = pixels(
        image for _, image in stream_generate(SamplingCore(tiny_model), requests(), residual_cfg=True)
    )
    assert residual_core.stats["unet_rows"] * 2 == full_core.stats["unet_rows"]
    assert np.array_equal(residual, again)
    assert np.abs(residual - full).mean() > 0.5  # an approximation, not the full guidance


def test_residual_guidance_without_guidance_is_exact(tiny_model):
    plain = pixels(image for _, image in stream_generate(SamplingCore(tiny_model), requests(cfg=1.0)))
    residual = pixels(
        image for _, image in stream_generate(SamplingCore(tiny_model), requests(cfg=1.0), residual_cfg=True)
    )
    assert np.array_equal(plain, residual)


def test_frames_that_cannot_share_a_stream_are_refused(tiny_model):
    mixed = requests(n=2)
    mixed[1] = FrameRequest(**{**mixed[1].__dict__, "num_inference_steps": 6})
    with pytest.raises(FlipbookError) as error:
        list(stream_generate(SamplingCore(tiny_model), mixed))
    assert error.value.field == "video.stream_batch"


# ---- the video mode ---------------------------------------------------------------------------------------


def frames(result):
    return np.stack([np.asarray(PIL.Image.open(p), dtype=int) for p in result.frames])


def test_video_mode_stream_equals_batched_and_resumes_identically(tmp_path, source):
    six = {"max_frames": 6}
    stream = {"stream_batch": True, "batch_size": 3}
    whole = frames(render(make_spec(tmp_path, source, "whole", video=stream, animation=six)))
    batched = frames(render(make_spec(tmp_path, source, "batched", animation=six)))
    assert np.abs(whole - batched).max() <= 1

    def on_frame(event):
        if event.index == 3:
            events.cancel()

    events = Events(on_frame=on_frame)
    with pytest.raises(RenderCancelled):
        render(make_spec(tmp_path, source, "part", video=stream, animation=six), events)
    assert np.array_equal(frames(resume(tmp_path / "part")), whole)


@pytest.mark.parametrize(
    ("video", "extra"),
    [
        ({"stream_batch": True, "feedback": 0.3}, {}),
        ({"residual_cfg": True}, {}),
        ({"stream_batch": True}, {"controlnet": [{"model": "tiny-canny", "image": "x.png"}]}),
    ],
)
def test_stream_settings_that_cannot_work_name_the_field(tmp_path, source, video, extra):
    with pytest.raises(FlipbookError) as error:
        make_spec(tmp_path, source, video=video, **extra)
    assert error.value.field in ("video", "video.stream_batch")

"""The ``restyle`` mode on the tiny model: keyframes stylised by img2img (alone or as a grid), the frames
between them propagated, the scene cut respected, resume identical, the source's timing and audio kept."""

import json

import av
import numpy as np
import PIL.Image
import pytest
from test_restyle_keyframes import clip_with_cut  # tests/ is on sys.path (pytest prepend mode)

from flipbook.events import Events, RenderCancelled
from flipbook.io.writers import Soundtrack, write_mp4
from flipbook.runs.render import render, resume
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def shared_model(monkeypatch, tiny_model):
    monkeypatch.setattr("flipbook.runs.cores.load_model", lambda name, **kwargs: tiny_model)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """12 frames at 12 fps, a cut at frame 8, with a 440 Hz tone."""
    import soundfile

    folder = tmp_path_factory.mktemp("source")
    sr = 22050
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
    soundfile.write(folder / "tone.wav", tone, sr)
    return write_mp4(
        clip_with_cut(), folder / "cut.mp4", fps=12, crf=0, audio=Soundtrack(folder / "tone.wav")
    )


def make_spec(tmp_path, source, name="r", mode="restyle", **sections):
    data = {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"steps": 2, "seed": 5, "sampler": "Euler", "seed_behavior": "fixed"},
        "animation": {"mode": mode, "max_frames": 12, "width": 64, "height": 64, "strength": 0.5},
        "prompts": {"0": "an oil painting"},
        "init": {"video": str(source)},
        "restyle": {"keyframe_every": 5},
        "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    }
    if mode != "restyle":
        del data["restyle"]
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return spec_from_data(data)


def frames(result):
    return [np.asarray(PIL.Image.open(p).convert("RGB")) for p in result.frames]


def parameters(path):
    with PIL.Image.open(path) as image:
        return image.info.get("parameters", "")


@pytest.fixture(scope="module")
def whole(tmp_path_factory, source, tiny_model):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("flipbook.runs.cores.load_model", lambda name, **kwargs: tiny_model)
        out = tmp_path_factory.mktemp("whole")
        result = render(make_spec(out, source, output={"formats": ["png", "mp4"]}))
    return result


def test_keyframes_are_the_img2img_of_their_source_frames(whole, source, tmp_path):
    """Per-frame img2img (the video mode, one fixed seed) of the same source gives the same keyframes."""
    per_frame = frames(render(make_spec(tmp_path, source, "v", mode="video")))
    restyled = frames(whole)
    for k in (0, 5, 8, 10):
        assert np.abs(restyled[k].astype(int) - per_frame[k]).max() <= 1, k
    assert not np.array_equal(restyled[3], per_frame[3])  # in-betweens are propagated, not diffused


def test_in_betweens_say_where_they_come_from_and_respect_the_cut(whole):
    assert "Propagated from keyframes: 0 and 5" in parameters(whole.frames[2])
    assert "Propagated from keyframes: 5" in parameters(whole.frames[7])  # 8 is a cut: nothing carried back
    assert "Propagated from keyframes: 5 and" not in parameters(whole.frames[7])
    assert "Propagated" not in parameters(whole.frames[8])


def test_propagated_frames_flicker_less_than_per_frame_restyling(whole, source, tmp_path):
    per_frame = render(make_spec(tmp_path, source, "v", mode="video", video={"keep_audio": False}))
    assert whole.metrics["output"] < per_frame.metrics["output"]


def test_source_timing_and_audio_are_kept(whole):
    run_spec = json.loads((whole.run_dir / "spec.json").read_text())
    assert run_spec["animation"]["fps"] == pytest.approx(12)
    with av.open(str(whole.outputs["mp4"])) as container:
        assert container.streams.audio, "the source's audio is kept"
    csv = (whole.run_dir / "frames.csv").read_text().splitlines()
    assert "restyle.keyframe" in csv[0].split(",")


@pytest.mark.parametrize("stop_after", [2, 6])
def test_resume_gives_identical_frames(whole, source, tmp_path, stop_after):
    """Stopped inside a span (after frame 2: keyframe 5 not made yet; after 6: keyframe 5 on disk), resumed."""

    def on_frame(event):
        if event.index == stop_after:
            events.cancel()

    events = Events(on_frame=on_frame)
    with pytest.raises(RenderCancelled):
        render(make_spec(tmp_path, source, "part"), events)
    assert len(list((tmp_path / "part" / "frames").glob("*.png"))) == stop_after + 1
    resumed = frames(resume(tmp_path / "part"))
    assert all(np.array_equal(a, b) for a, b in zip(frames(whole), resumed, strict=True))


def test_a_grid_diffuses_keyframes_together(whole, source, tmp_path):
    result = render(make_spec(tmp_path, source, "grid", restyle={"grid": 2}))
    assert "Keyframe grid: 2x2 of keyframes 0 5 8 10" in parameters(result.frames[5])
    gridded, alone = frames(result), frames(whole)
    assert gridded[0].shape == (64, 64, 3)
    assert not np.array_equal(gridded[5], alone[5])  # diffused in one 128x128 image, not alone


@pytest.mark.parametrize("grid", [1, 2])
def test_keyframes_share_one_seed_and_take_their_control_from_their_source(
    source, tmp_path, monkeypatch, grid
):
    """Only keyframes are diffused, all with frame 0's seed; a unit without an image is controlled by each
    keyframe's source frame (by the grid of them, with a grid)."""
    from flipbook.sampling.core import SamplingCore

    seen = []
    original = SamplingCore.run_batch

    def spy(self, requests, **kwargs):
        seen.extend(requests)
        return original(self, requests, **kwargs)

    monkeypatch.setattr(SamplingCore, "run_batch", spy)
    unit = {"model": "tiny", "preprocessor": "none"}
    data = make_spec(tmp_path, source, sampling={"seed_behavior": "iter"}, restyle={"grid": grid})
    render(spec_from_data({**data.model_dump(mode="json"), "controlnet": [unit]}))
    assert len(seen) == (4 if grid == 1 else 1)
    assert {request.seed for request in seen} == {5}
    assert all(np.array_equal(np.asarray(r.image), np.asarray(r.controls[0].image)) for r in seen)
    assert {np.asarray(r.image).shape for r in seen} == {(64 * grid, 64 * grid, 3)}


def test_only_the_masked_part_is_restyled(whole, source, tmp_path):
    """A still mask (init.mask) or a mask video: outside the white part every frame, keyframe or propagated,
    is its source frame; inside, the unmasked render's keyframes."""
    from flipbook.modes.restyle.render import source_frames

    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    PIL.Image.fromarray(mask).save(tmp_path / "mask.png")
    masked = frames(render(make_spec(tmp_path, source, "still", init={"mask": str(tmp_path / "mask.png")})))
    src = source_frames(make_spec(tmp_path, source))
    for out, original in zip(masked, src, strict=True):
        assert np.array_equal(out[:, :32], original[:, :32])
    assert np.array_equal(masked[5][:, 32:], frames(whole)[5][:, 32:])
    moving = [np.zeros((64, 64, 3), np.uint8) for _ in range(12)]
    for i, m in enumerate(moving):
        m[:, : 4 * (i + 1)] = 255
    mask_video = write_mp4(moving, tmp_path / "mask.mp4", fps=12, crf=0)
    out = frames(render(make_spec(tmp_path, source, "moving", restyle={"mask_video": str(mask_video)})))
    for i in (2, 5, 7):  # a propagated frame, a keyframe, the frame before the cut
        untouched = 4 * (i + 1) + 2  # right of the white part, past the video codec's soft edge
        assert np.abs(out[i][:, untouched:].astype(int) - src[i][:, untouched:]).max() <= 3

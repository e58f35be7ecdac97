"""The ``interpolate`` mode (latent walk): easing, noise slerp, batching, init image/video and resume, on the
tiny model (64x64, 2-3 steps)."""

import math

import numpy as np
import PIL.Image
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.errors import FlipbookError
from flipbook.events import Events, RenderCancelled
from flipbook.io.readers import read_frames
from flipbook.io.writers import write_mp4
from flipbook.runs.render import render, resume
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.noise import KeyframeWalk, keyframe_noise, slerp
from flipbook.sampling.requests import FrameRequest
from flipbook.spec.easing import energy_easing, sine_easing, walk_weights
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def shared_model(monkeypatch, tiny_model):
    monkeypatch.setattr("flipbook.runs.cores.load_model", lambda name, **kwargs: tiny_model)


def make_spec(tmp_path, name="walk", **sections):
    data = {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"steps": 2, "seed": 5, "sampler": "Euler"},
        "animation": {"mode": "interpolate", "max_frames": 5, "width": 64, "height": 64},
        "prompts": {"0": "a forest", "4": "a city"},
        "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    }
    for section, values in sections.items():
        if section == "prompts":
            data["prompts"] = values
        else:
            data.setdefault(section, {}).update(values)
    return spec_from_data(data)


def frames(result):
    return [np.asarray(PIL.Image.open(p)) for p in result.frames]


# ---- easing (pure) ---------------------------------------------------------------------------------------


def test_linear_walk_weights_rise_to_each_keyframe_then_hold():
    w = walk_weights([2, 6, 8], 10, "linear")
    np.testing.assert_allclose(w, [0, 0, 0, 0.25, 0.5, 0.75, 0, 0.5, 0, 0])


def test_a_closed_walk_runs_from_the_last_keyframe_back_to_the_first():
    """The last keyframe's segment ends at frame n, the first frame of the next time round (the loop mode's
    walk); frames before the first keyframe hold it; one keyframe has nothing to walk to."""
    np.testing.assert_allclose(walk_weights([0, 4], 8, "linear", closed=True), [0, 0.25, 0.5, 0.75] * 2)
    np.testing.assert_allclose(
        walk_weights([2, 6], 8, "linear", closed=True), [0, 0, 0, 0.25, 0.5, 0.75, 0, 0.5]
    )
    np.testing.assert_allclose(walk_weights([3], 6, "linear", closed=True), np.zeros(6))
    eased = walk_weights([0, 4], 8, "sine", closed=True)
    np.testing.assert_allclose(eased[4:], eased[:4])  # the same easing on the way back
    with pytest.raises(FlipbookError) as error:  # a list needs an easing for the closing segment too
        walk_weights([0, 4], 8, ["linear"], closed=True, field="loop.easing")
    assert error.value.field == "loop.easing" and "a list of 2" in error.value.allowed


def test_a_keyframe_walk_slerps_toward_the_next_keyframe_and_closed_back_to_the_first():
    seeds = {0: 11, 4: 22, 6: 33}
    shape = (1, 4, 8, 8)
    for closed in (False, True):
        walk = KeyframeWalk([6, 0, 4, 0], seeds.__getitem__, closed=closed)
        assert [walk.next_key(i, k) for i, k in ((1, 0), (5, 4), (7, 6))] == [4, 6, 0 if closed else None]
        assert torch.equal(walk.noise(4, 4, 0.0, shape), keyframe_noise(22, shape))  # a keyframe is txt2img
        expected = slerp(keyframe_noise(33, shape), keyframe_noise(11, shape), 0.5)
        assert torch.equal(walk.noise(7, 6, 0.5, shape), expected if closed else keyframe_noise(33, shape))
    assert KeyframeWalk([3], seeds.__getitem__, closed=True).next_key(5, 3) is None  # nowhere to go


@pytest.mark.parametrize("frequency", [1, 2, 3])
def test_sine_easing_keeps_the_ends_and_never_runs_backwards(frequency):
    u = np.linspace(0, 1, 101)
    w = sine_easing(u, [frequency])
    assert w[0] == 0 and w[-1] == pytest.approx(1)
    assert np.all(np.diff(w) >= -1e-12)
    # f pulses: the speed is zero at every rest point k / f
    rests = [round(100 * k / frequency) for k in range(frequency + 1)]
    speed = np.gradient(w, u)
    assert all(speed[r] < 0.02 for r in rests)


def test_energy_easing_moves_where_the_energy_is():
    energy = np.array([0, 0, 0, 10, 0, 0, 10, 0.0])
    w = energy_easing(energy)
    np.testing.assert_allclose(w, [0, 0, 0, 0.5, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(energy_easing(np.zeros(5)), np.linspace(0, 1, 5))


def test_plan_eases_with_a_schedule_of_u_and_per_segment_lists(tmp_path):
    spec = make_spec(tmp_path, interpolate={"easing": "0:(u**2)"})
    np.testing.assert_allclose([f.blend for f in build_plan(spec).frames], [0, 1 / 16, 1 / 4, 9 / 16, 0])
    spec = make_spec(
        tmp_path,
        prompts={"0": "a", "2": "b", "4": "c"},
        interpolate={"easing": ["linear", "sine"]},
    )
    assert [f.blend for f in build_plan(spec).frames] == pytest.approx([0, 0.5, 0, 0.5, 0])


@pytest.mark.parametrize(
    ("interpolate", "field"),
    [
        ({"easing": ["linear", "linear"]}, "interpolate.easing"),  # one segment, two easings
        ({"easing": "0:(2*u)"}, "interpolate.easing"),  # leaves [0, 1]
        ({"easing": "audio"}, "interpolate.easing"),  # no audio.file
    ],
)
def test_bad_easing_names_the_field(tmp_path, interpolate, field):
    with pytest.raises(FlipbookError) as error:
        build_plan(make_spec(tmp_path, interpolate=interpolate))
    assert error.value.field == field


@pytest.mark.parametrize(
    ("sections", "field"),
    [
        ({"interpolate": {"easing": "lienar"}}, "interpolate.easing"),
        ({"interpolate": {"sine_frequencies": [0]}}, "interpolate.sine_frequencies"),
        ({"interpolate": {"batch_size": 0}}, "interpolate.batch_size"),
        ({"interpolate": {"motion": True}}, "interpolate.motion"),
        ({"animation": {"mode": "2d"}, "init": {"video": "clip.mp4"}}, "init.video"),
    ],
)
def test_bad_sections_name_the_field(tmp_path, sections, field):
    with pytest.raises(FlipbookError) as error:
        make_spec(tmp_path, **sections)
    assert error.value.field == field


def test_schedules_using_audio_variables_need_an_audio_file(tmp_path):
    spec = make_spec(tmp_path, sampling={"cfg": "0:(7 + beat)"})
    with pytest.raises(FlipbookError) as error:
        build_plan(spec)
    assert error.value.field == "sampling.cfg" and "audio.file" in str(error.value)


# ---- slerp (pure) ----------------------------------------------------------------------------------------


def test_slerp_endpoints_are_exact():
    a, b = keyframe_noise(1, (1, 4, 8, 8)), keyframe_noise(2, (1, 4, 8, 8))
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)


@given(st.floats(0, 1), st.integers(0, 2**31), st.integers(0, 2**31))
@settings(max_examples=40, deadline=None)
def test_slerp_of_unit_vectors_stays_on_the_unit_sphere(weight, seed_a, seed_b):
    a, b = keyframe_noise(seed_a, (64,)).double(), keyframe_noise(seed_b, (64,)).double()
    a, b = a / a.norm(), b / b.norm()
    assert float(slerp(a, b, weight).norm()) == pytest.approx(1.0, abs=1e-6)


def test_slerp_keeps_the_noise_norm_where_lerp_loses_it():
    a, b = keyframe_noise(1, (1, 4, 32, 32)), keyframe_noise(2, (1, 4, 32, 32))
    mid = slerp(a, b, 0.5)
    lerp = 0.5 * (a + b)
    assert float(mid.norm()) == pytest.approx(float(a.norm()), rel=0.03)
    assert float(lerp.norm()) == pytest.approx(float(a.norm()) / math.sqrt(2), rel=0.03)


def test_slerp_of_parallel_vectors_falls_back_to_lerp():
    a = torch.ones(16)
    np.testing.assert_allclose(slerp(a, 3 * a, 0.25).numpy(), 1.5 * np.ones(16), rtol=1e-6)
    with pytest.raises(ValueError):
        slerp(a, a, 1.5)


# ---- rendering on the tiny model -------------------------------------------------------------------------


def test_keyframes_are_plain_txt2img_and_in_betweens_differ(tmp_path, tiny_model):
    """Compared at the walk's batch size: a frame is made with as many others (test_batched_and_one_by_one_...
    allows a level of rounding between batch sizes)."""
    spec = make_spec(tmp_path)
    walk = frames(render(spec))
    plan = build_plan(spec.with_seed())
    core = SamplingCore(tiny_model)
    plain = [
        np.asarray(
            core.generate(
                [
                    FrameRequest(
                        text, seed=plan[i].seed, num_inference_steps=2, sampler="Euler", width=64, height=64
                    )
                ],
                batch_size=spec.interpolate.batch_size,
                fixed_batch=True,
            )[0]
        )
        for i, text in ((0, "a forest"), (4, "a city"))
    ]
    np.testing.assert_array_equal(walk[0], plain[0])
    np.testing.assert_array_equal(walk[4], plain[1])
    assert all(not np.array_equal(walk[i], walk[i + 1]) for i in range(4))


def test_batched_and_one_by_one_give_the_same_frames(tmp_path):
    """The same frames up to float rounding: a batched convolution may sum in another order (the float
    images agree within 1e-5, see test_equivalence), so a pixel may land one level apart after quantising."""
    batched = np.stack(frames(render(make_spec(tmp_path, "b4", interpolate={"batch_size": 4}))))
    single = np.stack(frames(render(make_spec(tmp_path, "b1", interpolate={"batch_size": 1}))))
    difference = np.abs(batched.astype(int) - single)
    print("max", difference.max(), "share", (difference > 0).mean())
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01


def test_batching_makes_one_unet_call_per_step_for_a_batch(tmp_path, monkeypatch):
    calls = []
    original = SamplingCore.run_batch

    def spy(self, requests, **kwargs):
        calls.append(len(requests))
        return original(self, requests, **kwargs)

    monkeypatch.setattr(SamplingCore, "run_batch", spy)
    """The last batch is filled up to the batch size (copies of its last frame, dropped): every frame is made
    with as many others, so where a render starts or ends never changes a frame's numbers."""
    result = render(make_spec(tmp_path, animation={"max_frames": 7}, interpolate={"batch_size": 3}))
    assert calls == [3, 3, 3] and len(result.frames) == 7


def test_fixed_noise_keeps_only_the_prompt_moving(tmp_path):
    spec = make_spec(
        tmp_path, "fixed", prompts={"0": "a forest", "4": "a forest"}, interpolate={"noise": "fixed"}
    )
    still = frames(render(spec))
    assert all(np.array_equal(still[0], f) for f in still[1:])
    moving = frames(render(make_spec(tmp_path, "moving", prompts={"0": "a forest", "4": "a forest"})))
    assert not np.array_equal(moving[0], moving[2])


def test_composable_keyframes_walk(tmp_path):
    spec = make_spec(tmp_path, prompts={"0": "a forest | a lake", "4": "a city"})
    assert len(render(spec).frames) == 5


def test_init_video_frames_with_motion(tmp_path, monkeypatch):
    """Frame i starts from video frame i moved by the camera motion of frames 1..i (6 px right per frame)."""
    rng = np.random.default_rng(0)
    clip = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(6)]
    video = write_mp4(clip, tmp_path / "clip.mp4", fps=12, crf=0)
    decoded = read_frames(video).frames
    seen = {}
    original = SamplingCore.run_batch

    def spy(self, requests, **kwargs):
        for request in requests:
            seen[request.seed] = np.asarray(request.image)
        return original(self, requests, **kwargs)

    monkeypatch.setattr(SamplingCore, "run_batch", spy)
    spec = make_spec(
        tmp_path, init={"video": str(video)}, animation={"strength": 0.9}, interpolate={"motion": True},
        camera={"translation_x": 6}, sampling={"seed_behavior": "iter"},
    )  # fmt: skip
    result = render(spec)
    seeds = [build_plan(spec.with_seed())[i].seed for i in range(5)]
    np.testing.assert_array_equal(seen[seeds[0]], decoded[0])
    for i in (1, 4):
        shift = 6 * i
        np.testing.assert_array_equal(seen[seeds[i]][:, shift:], decoded[i][:, :-shift])
        assert np.all(seen[seeds[i]][:, :shift] == decoded[i][:, :1])  # replicate border
    assert len(result.frames) == 5


def test_init_video_shorter_than_the_animation_is_an_error(tmp_path):
    video = write_mp4([np.zeros((64, 64, 3), np.uint8)] * 3, tmp_path / "short.mp4", fps=12)
    with pytest.raises(FlipbookError) as error:
        render(make_spec(tmp_path, init={"video": str(video)}))
    assert error.value.field == "init.video" and "5" in str(error.value)
    assert not (tmp_path / "walk").exists() or not list((tmp_path / "walk").glob("frames/*.png"))


def test_resume_after_cancel_gives_identical_frames(tmp_path, monkeypatch):
    """Bit for bit, also where the resume starts mid-batch: its first batch is filled up to the batch size
    (some CPUs' kernels round a frame differently in a call of another length)."""
    calls = []
    original = SamplingCore.run_batch
    monkeypatch.setattr(
        SamplingCore, "run_batch", lambda self, r, **kw: calls.append(len(r)) or original(self, r, **kw)
    )
    spec = make_spec(tmp_path, "whole", animation={"max_frames": 7}, interpolate={"batch_size": 2})
    whole = frames(render(spec))

    def on_frame(event):
        if event.index == 2:
            events.cancel()

    events = Events(on_frame=on_frame)
    part = spec.model_copy(update={"output": spec.output.model_copy(update={"name": "part"})})
    with pytest.raises(RenderCancelled):
        render(part, events)
    calls.clear()
    result = resume(tmp_path / "part")
    assert result.resumed_from == 2 and calls == [
        2,
        2,
        2,
    ]  # on disk 0-2; made: 3 (and a copy), 4-5, 6 (and a copy)
    assert all(np.array_equal(a, b) for a, b in zip(whole, frames(result), strict=True))


# ---- audio -----------------------------------------------------------------------------------------------


@pytest.fixture()
def clicks(tmp_path):
    """A 2 s click track: clicks at 0.5 s and 1.5 s (frames 6 and 18 at 12 fps)."""
    import soundfile

    sr = 22050
    y = np.zeros(2 * sr, dtype=np.float32)
    for at in (0.5, 1.5):
        start = int(at * sr)
        y[start : start + 200] = np.hanning(200) * np.sign(np.sin(np.arange(200)))
    path = tmp_path / "clicks.wav"
    soundfile.write(path, y, sr)
    return path


def test_audio_easing_moves_the_walk_on_the_clicks(tmp_path, clicks):
    spec = make_spec(
        tmp_path, animation={"max_frames": 24, "fps": 12}, prompts={"0": "a", "23": "b"},
        audio={"file": str(clicks)}, interpolate={"easing": "audio"},
    )  # fmt: skip
    w = np.array([f.blend for f in build_plan(spec).frames])
    steps = np.diff(w[:23])
    assert np.all(steps >= -1e-12)
    biggest = set(np.argsort(steps)[-2:] + 1)  # the frames the walk jumps into
    assert all(any(abs(b - c) <= 1 for b in biggest) for c in (6, 18))
    assert w[3] < 0.1 and 0.3 < w[12] < 0.7 and w[22] > 0.9


def test_beat_and_amp_drive_any_schedule(tmp_path, clicks):
    spec = make_spec(
        tmp_path, animation={"max_frames": 24, "fps": 12}, audio={"file": str(clicks)},
        sampling={"cfg": "0:(7 + 3*amp)"},
    )  # fmt: skip
    cfg = np.array([f.cfg for f in build_plan(spec).frames])
    assert cfg.max() == pytest.approx(10, abs=1e-6)
    assert abs(int(np.argmax(cfg)) - 6) <= 1 or abs(int(np.argmax(cfg)) - 18) <= 1
    assert cfg[12] < 7.5


def test_audio_offset_shifts_the_curves(tmp_path, clicks):
    def peak(offset):
        spec = make_spec(
            tmp_path, animation={"max_frames": 12, "fps": 12}, audio={"file": str(clicks), "offset": offset},
            sampling={"cfg": "0:(7 + 3*amp)"},
        )  # fmt: skip
        return int(np.argmax([f.cfg for f in build_plan(spec).frames]))

    assert abs(peak(0.0) - 6) <= 1 and abs(peak(0.25) - 3) <= 1

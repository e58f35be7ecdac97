"""Audio analysis on synthetic signals with known answers: clicks at known times, 440 Hz bursts in known windows,
a steady 120 BPM click; schedule strings read back through the real schedule parser; the ``flipbook audio`` CLI."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from flipbook.audio.analysis import (
    component,
    expression_variables,
    feature_curve,
    frame_count,
    load_audio,
    onset_keyframes,
    parse_feature,
    percussive_energy,
)
from flipbook.audio.schedule import keyframe_indices, schedule_string
from flipbook.commands import audio as audio_commands
from flipbook.errors import FlipbookError
from flipbook.spec.easing import energy_easing as cumulative_easing
from flipbook.spec.schedules import resolve_schedule

SR = 22050
CLICK_TIMES = (0.5, 1.25, 2.0, 2.6)
BURSTS = ((0.5, 1.0), (2.0, 2.5))  # seconds where the 440 Hz tone is on


def click_track(times: tuple[float, ...] | np.ndarray, seconds: float) -> np.ndarray:
    """Short decaying noise bursts (broadband, like a drum hit) starting at ``times``."""
    rng = np.random.default_rng(0)
    y = np.zeros(int(seconds * SR), np.float32)
    envelope = np.exp(-np.arange(256) / 40.0)
    for start in times:
        i = round(start * SR)
        y[i : i + 256] += envelope * rng.uniform(-1, 1, 256)
    return y


def tone_bursts(seconds: float = 3.0, *, background_hz: float | None = None) -> np.ndarray:
    """A 440 Hz tone (amplitude 0.5) inside :data:`BURSTS` with 5 ms fades, silence elsewhere; optionally a
    steady quiet tone at ``background_hz`` underneath."""
    t = np.arange(int(seconds * SR)) / SR
    gate = np.zeros_like(t)
    for start, end in BURSTS:
        gate = np.maximum(gate, np.clip(np.minimum(t - start, end - t) / 0.005, 0, 1))
    y = 0.5 * np.sin(2 * np.pi * 440 * t) * gate
    if background_hz is not None:
        y += 0.05 * np.sin(2 * np.pi * background_hz * t)
    return y.astype(np.float32)


def frames_inside(fps: float, n: int, margin: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices well inside the bursts and well inside the silence (``margin`` seconds from any edge)."""
    times = np.arange(n) / fps
    edges = np.array([0.0, 3.0, *(edge for burst in BURSTS for edge in burst)])  # the file's ends too
    clear = np.min(np.abs(times[:, None] - edges[None, :]), axis=1) >= margin
    inside = np.zeros(n, bool)
    for start, end in BURSTS:
        inside |= (times > start) & (times < end)
    return np.flatnonzero(clear & inside), np.flatnonzero(clear & ~inside)


def resolve(text: str, n: int, fps: float = 12) -> np.ndarray:
    return resolve_schedule(text, max_frames=n, fps=fps, seed=0)


def keyframes_of(text: str) -> list[int]:
    return [int(key) for key in re.findall(r"(\d+):\(", text)]


# ------------------------------------------------------------------------------------------------ onsets
@pytest.mark.parametrize("fps", [12, 24])
def test_onset_keyframes_find_every_click_within_a_frame_and_nothing_else(fps: int) -> None:
    found = onset_keyframes(click_track(CLICK_TIMES, 3.0), SR, fps)
    assert len(found) == len(CLICK_TIMES)
    for (frame, seconds), click in zip(found, CLICK_TIMES, strict=True):
        assert abs(frame - click * fps) <= 1
        assert abs(seconds - click) <= 1 / fps
        assert frame == np.floor(seconds * fps + 0.5)
    assert [frame for frame, _ in found] == sorted({frame for frame, _ in found})


def test_onsets_in_the_same_frame_merge_keeping_the_first_time() -> None:
    y = click_track((0.4, 0.5), 1.5)
    assert len(onset_keyframes(y, SR, fps=24, component="both")) == 2
    found = onset_keyframes(y, SR, fps=4, component="both")  # frame 2 spans 0.375..0.625 s
    assert len(found) == 1 and found[0][0] == 2
    assert found[0][1] == pytest.approx(0.4, abs=1 / 24)


def test_frame_count_covers_the_audio() -> None:
    assert frame_count(np.zeros(3 * SR), SR, 12) == 36
    assert frame_count(np.zeros(3 * SR + 1), SR, 12) == 37
    assert frame_count(np.zeros(0), SR, 12) == 0


def test_components_split_tone_from_click() -> None:
    y = tone_bursts() + click_track((1.5,), 3.0)
    assert np.array_equal(component(y, "both"), y)
    click = slice(round(1.5 * SR), round(1.5 * SR) + 256)
    tone = slice(round(0.6 * SR), round(0.9 * SR))
    percussive, harmonic = component(y, "percussive"), component(y, "harmonic")
    assert np.abs(percussive[click]).max() > np.abs(harmonic[click]).max()
    assert np.abs(harmonic[tone]).max() > 5 * np.abs(percussive[tone]).max()


# ------------------------------------------------------------------------------------------------ curves
def test_rms_is_high_in_bursts_and_zero_in_silence() -> None:
    curve = feature_curve(tone_bursts(), SR, 12, "rms")
    assert curve.shape == (36,) and curve.max() == pytest.approx(1.0)
    inside, outside = frames_inside(12, 36)
    assert inside.size >= 6 and outside.size >= 6
    assert curve[inside].min() > 0.5
    assert curve[outside].max() < 0.02


def test_band_follows_the_tone_only_in_its_frequency_range() -> None:
    y = tone_bursts(
        background_hz=3000.0
    )  # something in the high band, steady, so it can't be normalised away
    inside, outside = frames_inside(24, 72)
    low = feature_curve(y, SR, 24, "band:300-600")
    high = feature_curve(y, SR, 24, "band:2000-4000")
    assert low[inside].min() > 0.5 and low[outside].max() < 0.02
    assert high[inside].mean() == pytest.approx(high[outside].mean(), rel=0.1)
    assert high[np.concatenate([inside, outside])].min() > 0.8


def test_curves_pad_with_zeros_and_never_give_nan() -> None:
    curve = feature_curve(tone_bursts(), SR, 12, "rms", n_frames=50)
    assert curve.shape == (50,) and np.all(curve[36:] == 0)
    for feature in ("onsets", "rms", "beats", "band:20-200"):
        silent = feature_curve(np.zeros(SR, np.float32), SR, 12, feature)
        assert silent.shape == (12,) and np.all(silent == 0)


def test_curve_does_not_depend_on_the_frame_rate_sampling() -> None:
    """The same burst seen at 12 and 24 fps: frame k at 12 fps covers the time of frame 2k at 24 fps."""
    at_12 = feature_curve(tone_bursts(), SR, 12, "rms")
    at_24 = feature_curve(tone_bursts(), SR, 24, "rms")
    inside, outside = frames_inside(12, 36)
    assert np.allclose(at_12[inside], at_24[2 * inside], atol=0.05)
    assert np.allclose(at_12[outside], at_24[2 * outside], atol=0.02)


def test_rms_schedule_reads_back_as_zoom_in_bursts_and_rest_in_silence() -> None:
    curve = feature_curve(tone_bursts(), SR, 12, "rms")
    text = schedule_string(curve, "1 + 0.05*x")
    values = resolve(text, 36)
    inside, outside = frames_inside(12, 36)
    assert np.allclose(values[inside], 1.05, atol=0.003)
    assert np.allclose(values[outside], 1.0, atol=0.001)
    assert len(keyframes_of(text)) < 36


# ------------------------------------------------------------------------------------------------- beats
def test_steady_clicks_give_120_bpm_and_beats_on_the_clicks() -> None:
    clicks = np.arange(0.25, 6.0, 0.5)
    fps, n = 12, 80
    variables = expression_variables(click_track(clicks, 6.0), SR, fps, n)
    assert set(variables) == {"beat", "bpm", "amp"}
    assert all(values.shape == (n,) for values in variables.values())
    assert variables["bpm"][0] == pytest.approx(120, rel=0.05)
    assert np.all(variables["bpm"] == variables["bpm"][0])
    beat_frames = np.flatnonzero(variables["beat"])
    click_frames = clicks * fps
    assert beat_frames.size >= len(clicks) - 3  # the tracker may skip a click at either end
    assert all(np.min(np.abs(click_frames - frame)) <= 1 for frame in beat_frames)
    assert set(np.unique(variables["beat"])) <= {0.0, 1.0}
    assert np.all(variables["amp"][frame_count(np.zeros(6 * SR), SR, fps) :] == 0)
    assert variables["amp"].min() >= 0 and variables["amp"].max() == pytest.approx(1.0)
    assert np.array_equal(feature_curve(click_track(clicks, 6.0), SR, fps, "beats", n), variables["beat"])


# ----------------------------------------------------------------------------------------------- easing
def test_percussive_energy_peaks_on_the_clicks_and_easing_jumps_there() -> None:
    y = click_track(CLICK_TIMES, 3.0)
    energy = percussive_energy(y, SR, 12)
    assert energy.shape == (36,) and energy.min() == 0
    peaks = np.flatnonzero(energy > 0.2 * energy.max())
    assert all(np.min(np.abs(np.array(CLICK_TIMES) * 12 - frame)) <= 1 for frame in peaks)
    eased = cumulative_easing(energy)
    quiet = [frame for frame in range(1, 36) if all(abs(frame - c * 12) > 1 for c in CLICK_TIMES)]
    assert np.all(np.diff(eased)[np.array(quiet) - 1] < 0.02)


def test_cumulative_easing_examples() -> None:
    assert np.array_equal(cumulative_easing(np.array([0.0, 0, 2, 0, 0])), [0, 0, 1, 1, 1])
    assert np.array_equal(cumulative_easing(np.array([5.0, 1, 0, 3])), [0, 0.25, 0.25, 1])
    assert np.allclose(cumulative_easing(np.zeros(5)), np.linspace(0, 1, 5))
    assert np.array_equal(cumulative_easing(np.array([7.0])), [0.0])
    with pytest.raises(ValueError):
        cumulative_easing(np.array([1.0, -1.0, 2.0]))


@given(st.lists(st.floats(0, 1e6), min_size=2, max_size=60))
def test_cumulative_easing_is_a_monotone_ramp_from_0_to_1(energy: list[float]) -> None:
    eased = cumulative_easing(np.array(energy))
    assert eased.shape == (len(energy),)
    assert eased[0] == 0.0 and eased[-1] == 1.0
    assert np.all(np.diff(eased) >= 0)
    if sum(energy[1:]) > 0:  # frames with no energy don't move
        still = np.flatnonzero(np.array(energy[1:]) == 0)
        assert np.all(eased[still + 1] == eased[still])


# --------------------------------------------------------------------------------------------- schedules
def test_linear_ramp_needs_two_keyframes() -> None:
    text = schedule_string(np.linspace(0, 1, 50), "2*x - 0.2")
    assert text == "0:(-0.2), 49:(1.8)"


def test_step_keeps_the_frames_around_the_jump() -> None:
    step = np.r_[np.zeros(10), np.ones(10)]
    text = schedule_string(step)
    assert text == "0:(0), 9:(0), 10:(1), 19:(1)"
    assert np.array_equal(resolve(text, 20), step)


def test_map_may_use_the_frame_index_and_fps() -> None:
    values = resolve(schedule_string(np.zeros(24), "x + sec", fps=12), 24)
    assert np.allclose(values, np.arange(24) / 12, atol=1e-3)
    assert keyframe_indices(np.array([0.0, 1.0, 0.0]), 0.5) == [0, 1, 2]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(-5, 5), min_size=1, max_size=60),
    st.sampled_from(["x", "1 + 0.05*x", "x * t / 10", "where(x > 0, x, 0)"]),
    st.sampled_from([0.0, 1e-3, 0.05]),
    st.sampled_from([2, 4]),
)
def test_schedule_string_reads_back_within_tolerance(
    curve: list[float], map_expr: str, tolerance: float, decimals: int
) -> None:
    n = len(curve)
    text = schedule_string(np.array(curve), map_expr, tolerance=tolerance, decimals=decimals)
    keys = keyframes_of(text)
    assert keys[0] == 0 and keys[-1] == n - 1 and keys == sorted(set(keys))
    t = np.arange(n)
    x = np.array(curve)
    mapped = {
        "x": x,
        "1 + 0.05*x": 1 + 0.05 * x,
        "x * t / 10": x * t / 10,
        "where(x > 0, x, 0)": np.maximum(x, 0),
    }
    assert np.all(np.abs(resolve(text, n) - mapped[map_expr]) <= tolerance + 0.5 * 10.0**-decimals + 1e-9)


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("feature", "detail"),
    [("loudness", None), ("band:500-100", "below"), ("band:-20-200", ">= 0"), ("band:a-b", "numbers")],
)
def test_bad_feature_names_the_field(feature: str, detail: str | None) -> None:
    with pytest.raises(FlipbookError) as info:
        parse_feature(feature)
    assert info.value.field == "feature" and info.value.value == feature
    assert "band:LOW-HIGH" in info.value.allowed
    if detail:
        assert detail in str(info.value.detail)


def test_good_features_parse() -> None:
    assert parse_feature("rms") == ("rms", None)
    assert parse_feature(" band:20-200 ") == ("band", (20.0, 200.0))


def test_band_above_nyquist_and_bad_component_are_errors() -> None:
    y = tone_bursts(1.0)
    with pytest.raises(FlipbookError) as info:
        feature_curve(y, SR, 12, "band:2000-20000")
    assert info.value.field == "feature" and "Nyquist" in str(info.value)
    with pytest.raises(FlipbookError) as info:
        onset_keyframes(y, SR, 12, component="drums")
    assert info.value.field == "component"


def test_unreadable_file_is_an_error(tmp_path) -> None:
    bad = tmp_path / "song.wav"
    bad.write_bytes(b"not audio at all")
    for path in (bad, tmp_path / "missing.wav"):
        with pytest.raises(FlipbookError) as info:
            load_audio(path)
        assert info.value.field == "audio.file" and info.value.value == str(path)


@pytest.mark.parametrize("map_expr", ["__import__('os').system('echo hi')", "x + volume", "x +"])
def test_bad_map_expression_is_an_error(map_expr: str) -> None:
    with pytest.raises(FlipbookError) as info:
        schedule_string(np.zeros(5), map_expr)
    assert info.value.field == "map" and info.value.value == map_expr and info.value.detail


# --------------------------------------------------------------------------------------------------- CLI
@pytest.fixture()
def song(tmp_path):
    """Clicks, then a tone burst, as a 16-bit WAV."""
    path = tmp_path / "song.wav"
    soundfile.write(path, click_track(CLICK_TIMES, 3.0) * 0.8 + tone_bursts(), SR, subtype="PCM_16")
    return path


def test_load_audio_reads_a_window(song) -> None:
    y, sr = load_audio(song, offset=1.0, duration=1.5)
    assert sr == SR and y.dtype == np.float32 and y.ndim == 1
    assert len(y) == pytest.approx(1.5 * SR, abs=2)


def test_cli_keyframes(song) -> None:
    runner = CliRunner()
    result = runner.invoke(audio_commands.app, ["keyframes", str(song), "--fps", "12"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(re.fullmatch(r"\d+: \d+\.\d{3}s", line) for line in lines)
    frames = [int(line.split(":")[0]) for line in lines]
    assert all(any(abs(frame - c * 12) <= 1 for frame in frames) for c in CLICK_TIMES)

    result = runner.invoke(
        audio_commands.app, ["keyframes", str(song), "--format", "prompts", "--offset", "1"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "3: "  # the click at 1.25 s, 0.25 s into the window


def test_cli_schedule(song) -> None:
    args = ["schedule", str(song), "--fps", "12", "--feature", "band:300-600", "--map", "1 + 0.05*x"]
    result = CliRunner().invoke(audio_commands.app, [*args, "--frames", "40"])
    assert result.exit_code == 0, result.output
    text = result.output.strip()
    assert "\n" not in text and keyframes_of(text)[-1] == 39
    values = resolve(text, 40)
    inside, outside = frames_inside(12, 36)
    assert values[inside].min() > 1.025 and values[outside].max() < 1.01


def test_cli_bad_feature_exits_2_with_the_message(song, monkeypatch, run_cli) -> None:
    result = CliRunner().invoke(audio_commands.app, ["schedule", str(song), "--feature", "loudness"])
    assert result.exit_code != 0
    assert isinstance(result.exception, FlipbookError) and "loudness" in str(result.exception)

    import flipbook.cli

    parent = typer.Typer()
    parent.command()(lambda: None)  # a second command so "audio" stays a subcommand
    parent.add_typer(audio_commands.app, name="audio")
    monkeypatch.setattr(flipbook.cli, "app", parent)
    code, out, err = run_cli("audio", "schedule", song, "--feature", "band:500-100")
    assert code == 2 and out == ""
    assert err.startswith("error: feature: 'band:500-100'") and "LOW must be below HIGH" in err


def test_load_audio_decodes_a_bounded_span(song, monkeypatch, tmp_path) -> None:
    """A few kilobytes of compressed silence can hold hours of audio, and the span an animation asks for
    (max_frames / fps) has no bound of its own: more than MAX_AUDIO_SECONDS of actual audio is one error, and
    no more than that is ever decoded. (The bound is lowered here so the test decodes seconds, not an hour.)"""
    from flipbook.audio import analysis
    from flipbook.spec.load import spec_from_data
    from flipbook.spec.plan import build_plan

    monkeypatch.setattr(analysis, "MAX_AUDIO_SECONDS", 2)
    for duration in (None, 2.5, 1e9):
        with pytest.raises(FlipbookError) as info:
            load_audio(song, duration=duration)
        assert info.value.field == "audio.file" and "at most 2 s" in str(info.value)
    assert len(load_audio(song, duration=1.5)[0]) == pytest.approx(1.5 * SR, abs=2)
    assert len(load_audio(song, offset=2.0)[0]) == pytest.approx(1.0 * SR, abs=2)  # 1 s left after 2 s

    data = {"model": {"name": "tiny"}, "animation": {"max_frames": 4, "fps": 1}, "prompts": {"0": "a"},
            "audio": {"file": str(song)}, "sampling": {"cfg": "0:(7 + amp)", "seed": 1}}  # fmt: skip
    with pytest.raises(FlipbookError) as info:
        build_plan(spec_from_data(data))  # validate, the server and the render refuse it alike
    assert info.value.field == "audio.file"
    data["audio"]["offset"] = 1.5  # 1.5 s of the 3 s song are left: within the bound
    assert len(build_plan(spec_from_data(data)).frames) == 4

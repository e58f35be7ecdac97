"""Context windows (flipbook/clips/windows.py): coverage, lengths, loops and fuse weights, as properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.clips.windows import (
    CLOSED_LOOPS,
    SCHEDULES,
    ContextOptions,
    context_windows,
    fuse_weights,
    ordered_halving,
    prompts_loop,
    window_weights,
)


@st.composite
def setups(draw, min_frames: int = 1):
    """(frames, options) over every schedule, loop, fuse method, length, overlap and stride."""
    length = draw(st.integers(1, 20))
    options = ContextOptions(
        length=length,
        overlap=draw(st.integers(0, length - 1)),
        stride=draw(st.integers(1, 4)),
        schedule=draw(st.sampled_from(SCHEDULES)),
        closed_loop=draw(st.sampled_from(CLOSED_LOOPS)),
        fuse=draw(st.sampled_from(("flat", "pyramid"))),
    )
    return draw(st.integers(min_frames, 90)), options


@settings(max_examples=300, deadline=None)
@given(setups(), st.integers(0, 60))
def test_every_frame_is_in_a_window_of_the_context_length(setup, step):
    frames, options = setup
    windows = context_windows(frames, step, options)
    assert set().union(*windows) == set(range(frames))
    expected = frames if frames <= options.length else options.length
    for window in windows:
        assert len(window) == expected
        assert len(set(window)) == len(window)  # a frame appears once per window
        assert all(0 <= frame < frames for frame in window)
    assert len(set(windows)) == len(windows)


@settings(max_examples=300, deadline=None)
@given(setups(), st.integers(0, 60))
def test_fuse_weights_are_positive_and_average_every_frame(setup, step):
    frames, options = setup
    windows = context_windows(frames, step, options)
    weights = fuse_weights(windows, frames, options.fuse)
    totals = np.zeros(frames)
    for window, w in zip(windows, weights, strict=True):
        assert w.shape == (len(window),)
        assert np.all(w > 0)
        np.add.at(totals, list(window), w)
    np.testing.assert_allclose(totals, 1.0, rtol=1e-12)


@settings(max_examples=200, deadline=None)
@given(setups(), st.integers(0, 60), st.integers(0, 60))
def test_static_windows_do_not_depend_on_the_step(setup, step, other):
    frames, options = setup
    static = ContextOptions(**{**options.__dict__, "schedule": "static"})
    assert context_windows(frames, step, static) == context_windows(frames, other, static)


@settings(max_examples=200, deadline=None)
@given(setups(min_frames=2))
def test_uniform_window_offsets_move_from_step_to_step(setup):
    frames, options = setup
    uniform = ContextOptions(**{**options.__dict__, "schedule": "uniform"})
    if frames <= uniform.length:
        assert (
            context_windows(frames, 0, uniform)
            == context_windows(frames, 1, uniform)
            == [tuple(range(frames))]
        )
        return
    firsts = {context_windows(frames, step, uniform)[0] for step in range(4)}
    assert len(firsts) > 1
    assert context_windows(frames, 0, uniform)[0][0] == 0
    assert context_windows(frames, 1, uniform)[0] != context_windows(frames, 0, uniform)[0]


@settings(max_examples=300, deadline=None)
@given(setups(), st.integers(0, 60))
def test_closed_loop_n_never_wraps_and_the_others_join_the_ends(setup, step):
    frames, options = setup
    windows = {loop: context_windows(frames, step, ContextOptions(**{**options.__dict__, "closed_loop": loop}))
               for loop in CLOSED_LOOPS}  # fmt: skip
    for window in windows["N"]:
        assert list(window) == sorted(window)  # ascending: never from the last frames back to the first
    # R-P and R+P differ only in prompts; A goes the full turn, so it has every window R-P has and maybe more
    assert windows["R-P"] == windows["R+P"]
    assert set(windows["R-P"]) <= set(windows["A"])


def test_a_loop_has_windows_across_the_seam_at_every_step_and_n_has_none():
    options = ContextOptions(length=8, overlap=2, closed_loop="A")
    for step in range(8):
        crossing = [w for w in context_windows(26, step, options) if list(w) != sorted(w)]
        assert crossing, step
        assert all(0 in w or 25 in w for w in crossing)
    n_loop = ContextOptions(length=8, overlap=2, closed_loop="N")
    assert all(list(w) == sorted(w) for s in range(8) for w in context_windows(26, s, n_loop))


def test_windows_follow_the_uniform_schedule():
    """24 frames, windows of 8 overlapping by 2, at the first steps (offsets 0, 1/2, 1/4, 3/4 of the clip)."""
    options = ContextOptions(length=8, overlap=2)
    assert context_windows(24, 0, options) == [tuple(range(s, s + 8)) for s in (0, 6, 12)] + [
        (18, 19, 20, 21, 22, 23, 0, 1)
    ]
    assert context_windows(24, 1, options)[0] == tuple(range(12, 20))
    assert context_windows(24, 2, options)[0] == tuple(range(6, 14))
    strided = context_windows(24, 0, ContextOptions(length=8, overlap=2, stride=2))
    assert (0, 2, 4, 6, 8, 10, 12, 14) in strided
    # a third level would need 32 > 24 frames: never a window that repeats frames
    assert context_windows(24, 0, ContextOptions(length=8, overlap=2, stride=3)) == strided


def test_short_animations_are_one_window():
    for loop in CLOSED_LOOPS:
        options = ContextOptions(length=16, closed_loop=loop)
        assert context_windows(16, 3, options) == [tuple(range(16))]
        assert context_windows(5, 0, options) == [tuple(range(5))]
        assert not prompts_loop(16, options)
    assert prompts_loop(17, ContextOptions(length=16, closed_loop="R+P"))
    assert prompts_loop(17, ContextOptions(length=16, closed_loop="A"))
    assert not prompts_loop(17, ContextOptions(length=16, closed_loop="R-P"))
    assert not prompts_loop(17, ContextOptions(length=16, closed_loop="N"))


def test_overlaps_are_averaged_not_overwritten():
    windows = [(0, 1, 2, 3), (2, 3, 4, 5)]
    flat = fuse_weights(windows, 6, "flat")
    np.testing.assert_allclose(flat[0], [1, 1, 0.5, 0.5])
    np.testing.assert_allclose(flat[1], [0.5, 0.5, 1, 1])
    pyramid = fuse_weights(windows, 6, "pyramid")  # positions weigh 1 2 2 1: frame 2 is 2/3 from window 0
    np.testing.assert_allclose(pyramid[0], [1, 1, 2 / 3, 1 / 3])
    np.testing.assert_allclose(window_weights(5, "pyramid"), [1, 2, 3, 2, 1])
    np.testing.assert_allclose(window_weights(4, "flat"), [1, 1, 1, 1])


def test_ordered_halving_spreads_offsets():
    assert [ordered_halving(i) for i in range(8)] == [0, 0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]


@pytest.mark.parametrize(
    "kwargs",
    [{"length": 0}, {"length": 4, "overlap": 4}, {"overlap": -1}, {"stride": 0}, {"schedule": "spiral"},
     {"closed_loop": "B"}, {"fuse": "max"}],
)  # fmt: skip
def test_bad_options_are_refused(kwargs):
    with pytest.raises(ValueError):
        ContextOptions(**kwargs)


def test_describe_names_the_settings():
    assert ContextOptions().describe() == "16/4 uniform, loop R-P"
    assert (
        ContextOptions(length=8, overlap=2, stride=2, closed_loop="A").describe()
        == "8/2 uniform, stride 2, loop A"
    )

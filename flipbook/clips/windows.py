"""Context windows: which frames the motion module sees together at each denoising step, and how the
overlapping windows' noise predictions are averaged. Pure numpy, no torch: tests and plans can use it freely.

A motion module is trained on clips of ``length`` frames (16 for AnimateDiff). Longer animations are denoised
in windows of that length that overlap by ``overlap`` frames; every step each window's prediction is weighted
and the overlapping predictions are averaged (never overwritten: the A1111 extension assigns each window's
prediction over the previous one, so its overlaps are only as good as the last window).

Schedules
    ``uniform`` (AnimateDiff's, as in the A1111 extension and ComfyUI's uniform schedule): windows wrap around
    the frame sequence and their offset moves every step by ``round(frames * ordered_halving(step))`` (0, 1/2,
    1/4, 3/4, ... of the animation), so no frame stays at a window seam for two steps in a row.
    ``context_stride`` k adds windows over every 2nd, 4th ... 2^(k-1)th frame, which tie distant frames together
    (only as many levels as fit: a strided window never repeats a frame).
    ``static``: the same windows every step (the uniform schedule's step 0).

Closed loops (the A1111 extension's ``closed_loop``)
    ``N``: no window wraps from the last frames to the first; a window that would is replaced by the window at
    the end of the animation and the one at its start, so the ends of the animation never meet.
    ``R-P`` / ``R+P``: windows wrap, stopping ``overlap`` frames short of a full turn (a reduced number of
    wrapping windows); ``A``: they run the full turn, so more windows cross the seam (an aggressive loop).
    The ``+P`` / ``-P`` part is about prompts (see :func:`prompts_loop`), not windows.

With no more frames than ``length`` there is one window of every frame and nothing loops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SCHEDULES = ("uniform", "static")
CLOSED_LOOPS = ("N", "R-P", "R+P", "A")
FUSE_METHODS = ("flat", "pyramid")

Window = tuple[int, ...]


@dataclass(frozen=True)
class ContextOptions:
    """How an animation is split into windows (the ``[animatediff]`` context settings)."""

    length: int = 16
    overlap: int | None = None  # None: length // 4
    stride: int = 1
    schedule: str = "uniform"
    closed_loop: str = "R-P"
    fuse: str = "pyramid"

    def __post_init__(self) -> None:
        """Checked here so a bad value fails before any window is made (the spec checks its own fields)."""
        if self.length < 1:
            raise ValueError(f"context length must be >= 1, got {self.length}")
        if not 0 <= self.frames_shared < self.length:
            raise ValueError(f"context overlap must be in [0, {self.length}), got {self.overlap}")
        if self.stride < 1:
            raise ValueError(f"context stride must be >= 1, got {self.stride}")
        for value, allowed in (
            (self.schedule, SCHEDULES),
            (self.closed_loop, CLOSED_LOOPS),
            (self.fuse, FUSE_METHODS),
        ):
            if value not in allowed:
                raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")

    @property
    def frames_shared(self) -> int:
        """The overlap with its default filled in."""
        return self.length // 4 if self.overlap is None else self.overlap

    def describe(self) -> str:
        """``16/4 uniform`` style, as the frames' parameters show it (stride and loop added when used)."""
        text = f"{self.length}/{self.frames_shared} {self.schedule}"
        if self.stride > 1:
            text += f", stride {self.stride}"
        return f"{text}, loop {self.closed_loop}"


def ordered_halving(step: int) -> float:
    """The step's index with its 64 bits reversed, as a fraction of 2^64: 0, 1/2, 1/4, 3/4, 1/8, ...

    Consecutive steps land far apart, and over 2^k steps the fractions spread evenly, which is why AnimateDiff's
    uniform schedule uses it for window offsets."""
    reversed_bits = int(f"{step % (1 << 64):064b}"[::-1], 2)
    return reversed_bits / (1 << 64)


def context_windows(num_frames: int, step: int, options: ContextOptions) -> list[Window]:
    """The windows (frame indices, in order within each window) to denoise at ``step``.

    Every frame is in at least one window; each window has ``options.length`` distinct frames, or is the one
    window of all frames when there are no more frames than that. Duplicate windows are dropped.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_frames <= options.length:
        return [tuple(range(num_frames))]
    if options.schedule == "static":
        step = 0
    windows: list[Window] = []
    for level in range(_stride_levels(num_frames, options)):
        spacing = 1 << level
        for start in _window_starts(num_frames, step, spacing, options):
            raw = range(start, start + options.length * spacing, spacing)
            if options.closed_loop == "N" and _wraps(raw, num_frames):
                windows.extend(_unwrapped(raw, num_frames, options.length, spacing))
            else:
                windows.append(tuple(e % num_frames for e in raw))
    return list(dict.fromkeys(windows))


def _stride_levels(num_frames: int, options: ContextOptions) -> int:
    """Window spacings 1, 2, 4 ... used: ``stride`` of them, at most as many as leave ``length`` distinct
    frames in a window (``length * spacing <= frames``). The A1111 extension allows one level more, whose
    windows then repeat frames; here they would only double-count those frames."""
    fitting = int(math.floor(math.log2(num_frames / options.length))) + 1
    return max(1, min(options.stride, fitting))


def _window_starts(num_frames: int, step: int, spacing: int, options: ContextOptions) -> range:
    """Where the windows of one spacing start (unwrapped indices, taken modulo the frame count).

    The offset turns with the step (ordered halving); consecutive windows start ``length * spacing - overlap``
    apart; a loop of ``A`` goes the full turn, the others stop ``overlap`` frames short of it."""
    fraction = ordered_halving(step)
    offset = int(round(num_frames * fraction))
    end = num_frames + offset - (0 if options.closed_loop == "A" else options.frames_shared)
    return range(int(fraction * spacing) + offset, end, options.length * spacing - options.frames_shared)


def _wraps(raw: range, num_frames: int) -> bool:
    """Whether the window crosses from the last frame back to the first."""
    return raw[0] // num_frames != raw[-1] // num_frames


def _unwrapped(raw: range, num_frames: int, length: int, spacing: int) -> list[Window]:
    """Closed loop N: a window crossing the end becomes the window ending at its last frame before the end and
    the window starting at its first frame after it, so it covers the same frames without joining the ends."""
    seam = (raw[0] // num_frames + 1) * num_frames
    last_before = max(e for e in raw if e < seam) % num_frames
    first_after = min(e for e in raw if e >= seam) % num_frames
    before = range(last_before - (length - 1) * spacing, last_before + 1, spacing)
    after = range(first_after, first_after + length * spacing, spacing)
    return [tuple(before), tuple(after)]


def window_weights(length: int, method: str) -> np.ndarray:
    """Weights of the positions in a window: ``flat`` ones, or ``pyramid`` rising from 1 at the edges to
    about length / 2 in the middle (ComfyUI's pyramid; the FreeNoise paper's weighted average), so a frame's
    prediction leans on the windows where it sits far from an edge."""
    if method == "flat":
        return np.ones(length)
    if method == "pyramid":
        half = np.arange(1, (length + 1) // 2 + 1, dtype=float)
        return np.concatenate([half, half[: length // 2][::-1]])
    raise ValueError(f"{method!r} is not one of {', '.join(FUSE_METHODS)}")


def fuse_weights(windows: Sequence[Window], num_frames: int, method: str) -> list[np.ndarray]:
    """Each window's per-frame weights, normalised so that for every frame the weights of the windows that
    contain it add up to 1: the fused prediction is a weighted average of the windows' predictions."""
    raw = [window_weights(len(window), method) for window in windows]
    totals = np.zeros(num_frames)
    for window, weights in zip(windows, raw, strict=True):
        np.add.at(totals, list(window), weights)
    if np.any(totals <= 0):
        missing = int(np.flatnonzero(totals <= 0)[0])
        raise ValueError(f"frame {missing} is in no window")
    return [weights / totals[list(window)] for window, weights in zip(windows, raw, strict=True)]


def prompts_loop(num_frames: int, options: ContextOptions) -> bool:
    """Whether prompt travel wraps from the last keyframe back to the first (closed loop ``R+P`` or ``A``), as
    in the A1111 extension only when the animation is longer than one window."""
    return num_frames > options.length and options.closed_loop in ("R+P", "A")

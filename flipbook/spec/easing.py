"""Easing of the latent walk: how fast each segment between two prompt keyframes moves from one to the next.

Pure functions. For a segment from keyframe a to keyframe b, frame i (a <= i < b) sits at ``u = (i - a) / (b -
a)`` and gets the weight ``w`` toward b that the segment's easing gives; frame b itself starts the next segment
at w = 0 (it *is* keyframe b). Frames before the first keyframe and from the last keyframe on hold (w = 0); in a
closed walk (``closed``: a loop) the last keyframe's segment instead runs to frame ``n_frames``, which is frame 0
of the next time round, so the last frame leads back into the first keyframe.

- ``linear``: w = u.
- ``sine``: the morph moves in f smooth pulses and rests between them: ``w = u - sin(2 pi f u) / (2 pi f)``,
  averaged over the frequencies. Whole f keep w(0) = 0 and w(1) = 1, and dw/du = 1 - cos(2 pi f u) >= 0, so w
  never runs backwards.
- ``audio``: w is the cumulative (normalised) percussive energy over the segment's frames: the walk moves
  where the music hits and pauses where it is quiet (stable-diffusion-videos' audio-driven interpolation).
- a schedule string: any Deforum schedule over the animation's frames, evaluated with ``u`` (the linear
  position in the segment) and the audio variables; its values are the weights and must lie in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from flipbook.errors import SpecError

NAMED = ("linear", "sine", "audio")


def segments(starts: Sequence[int], n_frames: int, *, closed: bool = False) -> list[tuple[int, int]]:
    """``(a, b)`` for each pair of consecutive keyframes; frames a..b-1 belong to the segment. ``closed`` (with
    two keyframes or more) adds the segment from the last keyframe to ``n_frames``, the first frame of the next
    time round."""
    keys = sorted(k for k in set(starts) if 0 <= k < n_frames)
    spans = list(zip(keys, keys[1:], strict=False))
    return [*spans, (keys[-1], n_frames)] if closed and len(keys) > 1 else spans


def segment_position(starts: Sequence[int], n_frames: int, *, closed: bool = False) -> np.ndarray:
    """``u`` per frame: the linear position in its segment, 0 outside every segment."""
    u = np.zeros(n_frames)
    for a, b in segments(starts, n_frames, closed=closed):
        u[a:b] = (np.arange(a, b) - a) / (b - a)
    return u


def sine_easing(u: np.ndarray, frequencies: Sequence[int]) -> np.ndarray:
    """The mean over ``frequencies`` of ``u - sin(2 pi f u) / (2 pi f)``."""
    u = np.asarray(u, dtype=np.float64)
    curves = [u - np.sin(2 * np.pi * f * u) / (2 * np.pi * f) for f in frequencies]
    return np.clip(np.mean(curves, axis=0), 0.0, 1.0)


def energy_easing(energy: np.ndarray) -> np.ndarray:
    """Easing for one interpolation segment: 0.0 at the first frame, 1.0 at the last, each step proportional
    to the energy of the frame it arrives at, so the morph moves fast on hits and holds through quiet parts.

    ``out[k] = sum(energy[1..k]) / sum(energy[1..])``: the first frame is the start image whatever its energy.
    No energy after the first frame gives a linear ramp; a single frame gives ``[0.0]``.
    """
    energy = np.asarray(energy, dtype=np.float64)
    if energy.ndim != 1:
        raise ValueError(f"expected one energy value per frame (a 1-D array), got shape {energy.shape}")
    if not np.all(np.isfinite(energy)) or np.any(energy < 0):
        raise ValueError("energy values must be finite and >= 0")
    if energy.size <= 1:
        return np.zeros(energy.size)
    steps = np.concatenate(([0.0], np.cumsum(energy[1:])))
    if not steps[-1] > 0:
        return np.linspace(0.0, 1.0, energy.size)
    eased = np.clip(steps / steps[-1], 0.0, 1.0)
    eased[0], eased[-1] = 0.0, 1.0
    return eased


def walk_weights(
    starts: Sequence[int],
    n_frames: int,
    easing: str | Sequence[str],
    *,
    frequencies: Sequence[int] = (1,),
    energy: np.ndarray | None = None,
    schedule: Callable[[str, np.ndarray], np.ndarray] | None = None,
    closed: bool = False,
    field: str = "easing",
) -> np.ndarray:
    """The weight toward the next keyframe at every frame (0 outside segments); ``closed``: the last keyframe
    walks on to the first (see :func:`segments`).

    ``easing`` is one easing for every segment or one per segment. ``energy`` (one value per frame, and one
    after the last) is needed by ``audio``; ``schedule(text, u)`` resolves a schedule string over all frames
    with ``u`` available. Problems raise SpecError naming ``field``.
    """
    spans = segments(starts, n_frames, closed=closed)
    per_segment = _per_segment(easing, len(spans), field)
    u = segment_position(starts, n_frames, closed=closed)
    weights = np.zeros(n_frames)
    resolved: dict[str, np.ndarray] = {}
    for (a, b), name in zip(spans, per_segment, strict=True):
        if name == "linear":
            weights[a:b] = u[a:b]
        elif name == "sine":
            weights[a:b] = sine_easing(u[a:b], frequencies)
        elif name == "audio":
            weights[a:b] = _audio_segment(energy, a, b, n_frames, field)
        else:
            if name not in resolved:
                resolved[name] = _schedule_values(name, u, schedule, field)
            weights[a:b] = resolved[name][a:b]
    return weights


def _per_segment(easing: str | Sequence[str], count: int, field: str) -> list[str]:
    if isinstance(easing, str):
        return [easing] * count
    easing = list(easing)
    if len(easing) != count:
        raise SpecError(
            field, easing, f"one easing, or a list of {count} (one per segment between prompt keyframes)"
        )
    return easing


def _audio_segment(energy: np.ndarray | None, a: int, b: int, n_frames: int, field: str) -> np.ndarray:
    if energy is None:
        raise SpecError(field, "audio", "audio easing only with audio.file set")
    padded = np.zeros(n_frames + 1)
    values = np.asarray(energy, dtype=np.float64)[: n_frames + 1]
    padded[: values.size] = values
    return energy_easing(padded[a : b + 1])[:-1]


def _schedule_values(
    text: str, u: np.ndarray, schedule: Callable[[str, np.ndarray], np.ndarray] | None, field: str
) -> np.ndarray:
    if schedule is None:
        raise ValueError("a schedule easing needs a schedule resolver")
    values = schedule(text, u)
    outside = np.flatnonzero((values < 0.0) | (values > 1.0))
    if outside.size:
        frame = int(outside[0])
        raise SpecError(
            field,
            text,
            "a schedule whose values lie in [0, 1]",
            detail=f"{values[frame]:g} at frame {frame}",
        )
    return values

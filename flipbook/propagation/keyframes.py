"""Which source frames become keyframes: every nth, a list, or where the source has changed enough since the
last keyframe (EbSynth users' "automatic" choice, as the ebsynth_utility extension makes it), and, in every
case, each scene cut (a style can't be carried across a cut, so the first frame after one is always a
keyframe). Pure functions of frames and numbers; no torch.

How much two frames differ, :func:`change`, is a share from 0 to 1: the mean of a colour-histogram distance
(half the L1 distance of 16-bin histograms per channel: 0 for the same colours in any arrangement, 1 for no
colour in common) and a structure distance (one minus the correlation of the frames' 16 x 16 luminance
thumbnails, at least 0: a motion of a few pixels barely changes a thumbnail, another shot changes all of it).
Both shrug off small motions and jump at a cut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

HISTOGRAM_BINS = 16
THUMBNAIL = 16
FLAT = 1.0  # product of the thumbnails' spreads below which a frame counts as flat


@dataclass(frozen=True)
class Signature:
    """What :func:`change` compares of a frame: its colour histograms and its luminance thumbnail."""

    histograms: np.ndarray  # 3 x bins, each row summing to 1
    thumbnail: np.ndarray  # THUMBNAIL x THUMBNAIL float64 luminance


def signature(frame: np.ndarray) -> Signature:
    """The signature of an RGB uint8 frame."""
    rgb = np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
    pixels = rgb.reshape(-1, 3) // (256 // HISTOGRAM_BINS)
    histograms = np.stack([np.bincount(pixels[:, c], minlength=HISTOGRAM_BINS) for c in range(3)])
    histograms = histograms.astype(np.float64) / max(1, pixels.shape[0])
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    thumbnail = cv2.resize(gray, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA).astype(np.float64)
    return Signature(histograms, thumbnail)


def change(a: Signature, b: Signature) -> float:
    """How much frame b differs from frame a, from 0 (the same) to 1 (nothing in common): see the module."""
    colour = float(0.5 * np.abs(a.histograms - b.histograms).sum(axis=1).mean())
    return 0.5 * colour + 0.5 * _structure_change(a.thumbnail, b.thumbnail)


def _structure_change(a: np.ndarray, b: np.ndarray) -> float:
    """1 - the correlation of two thumbnails, clipped to [0, 1]; flat thumbnails compare by their levels."""
    da, db = a - a.mean(), b - b.mean()
    spread = float(np.sqrt((da**2).sum() * (db**2).sum()))
    if spread < FLAT:
        return min(1.0, abs(float(a.mean() - b.mean())) / 255.0 * 4)
    return float(np.clip(1.0 - (da * db).sum() / spread, 0.0, 1.0))


# ---- the choice ------------------------------------------------------------------------------------------


def scene_cuts(signatures: Sequence[Signature], threshold: float) -> list[int]:
    """Frames that differ from the frame before by more than ``threshold`` (1 or more: none)."""
    return [i for i in range(1, len(signatures)) if change(signatures[i - 1], signatures[i]) > threshold]


def every_nth(count: int, every: int) -> list[int]:
    """Frames 0, every, 2 every, ... below ``count``."""
    return list(range(0, count, every))


def automatic(
    count: int,
    changed: Callable[[int, int], float],
    *,
    threshold: float,
    min_gap: int,
    max_gap: int,
    cuts: Iterable[int] = (),
) -> list[int]:
    """Keyframes where the source has changed: walking from frame 0 (always a keyframe), frame i becomes the
    next keyframe when ``changed(last keyframe, i)`` exceeds ``threshold`` and it is at least ``min_gap``
    frames after the last one, or when it is ``max_gap`` frames after it; a frame in ``cuts`` always does."""
    cut = set(cuts)
    keys = [0] if count > 0 else []
    for i in range(1, count):
        gap = i - keys[-1]
        if i in cut or gap >= max_gap or (gap >= min_gap and changed(keys[-1], i) > threshold):
            keys.append(i)
    return keys


def with_cuts(keys: Iterable[int], cuts: Iterable[int], count: int) -> list[int]:
    """``keys`` with frame 0 and every cut added, sorted, within ``count`` frames."""
    return sorted({0, *keys, *cuts} & set(range(count)))

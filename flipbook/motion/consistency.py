"""Temporal consistency: flicker as a number.

For consecutive frames a and b, the optical flow a -> b (OpenCV DIS) moves a onto b; what is left between the
moved a and b is what motion does not explain: flicker, boiling texture, popping details. The score is the mean
absolute difference (0-255 levels) over all pairs, computed on frames scaled to at most ``size`` pixels on
their long side (flicker is visible at any scale; flow on big frames costs time and adds nothing). A still or
smoothly moving sequence scores near 0; frame-by-frame restyling without any steadiness scores high. The same
figure for a video mode's source says how much of the score the source's own motion accounts for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from flipbook.motion.flow import optical_flow, warp_by_flow

ANALYSIS_SIZE = 256


def temporal_error(
    frames: Sequence[np.ndarray], *, size: int = ANALYSIS_SIZE, known: Mapping[int, float] | None = None
) -> float | None:
    """Mean flow-compensated difference between consecutive frames (0-255); None for fewer than two.
    ``known`` holds pair errors already measured (i: frames i-1 and i, at ``size``, as the background writer
    scores them while it writes), which are not measured again."""
    if len(frames) < 2:
        return None
    known = known or {}
    errors = []
    for i in range(1, len(frames)):  # pair by pair: frames may be read from disk one at a time
        error = known.get(i)
        if error is None:
            error = pair_error(downscale(frames[i - 1], size), downscale(frames[i], size))
        errors.append(error)
    return float(np.mean(errors))


def pair_error(a: np.ndarray, b: np.ndarray) -> float:
    """What remains between ``a`` moved along its flow to ``b`` and ``b`` (mean absolute, 0-255)."""
    moved = warp_by_flow(a, optical_flow(a, b))
    return float(np.abs(moved.astype(np.float32) - b.astype(np.float32)).mean())


def downscale(frame: np.ndarray, size: int) -> np.ndarray:
    """``frame`` (RGB, extra channels dropped) scaled down so its long side is at most ``size`` pixels."""
    frame = np.asarray(frame)
    height, width = frame.shape[:2]
    scale = size / max(height, width)
    if scale >= 1:
        return np.ascontiguousarray(frame[..., :3])
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(np.ascontiguousarray(frame[..., :3]), shape, interpolation=cv2.INTER_AREA)

"""Hybrid video for the camera modes (Deforum's hybrid video): motion borrowed from a source video, and the
source's frames composited into the feedback. Pure functions on uint8 RGB arrays.

Motion between source frames a and b is one of:

- ``optical_flow``: dense flow a -> b (OpenCV DIS or Farneback), applied to the animation's frame with
  :func:`flipbook.motion.flow.warp_by_flow` (scaled by a flow factor);
- ``affine`` / ``perspective``: a 2x3 partial-affine or 3x3 homography fitted with RANSAC to ORB feature matches
  between a and b (camera pans, zooms and turns without the per-pixel wobble of flow), applied with
  :func:`flipbook.motion.camera2d.warp_2d`.

Compositing blends the source frame into an image, ``alpha`` times a mask: ``none`` (everywhere),
``difference`` (where the two differ: moving things come through), ``blend`` (the brightness of their average),
``depth`` (near parts of the source, from a depth map the caller gives). When it happens is Deforum's
``hybrid_composite`` (render.py), for every diffused frame after frame 0, with the video frame of that frame:

- ``normal``: into the camera-warped previous frame after the hybrid motion, before img2img;
- ``before_motion``: into the camera-warped previous frame before the hybrid motion (so the motion moves the
  blend), before img2img;
- ``after_generation``: into the image img2img made; the blend is the frame (and the next frame's start).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from flipbook.motion.camera2d import warp_2d
from flipbook.motion.flow import warp_by_flow

HybridMotion = Literal["none", "optical_flow", "affine", "perspective"]
FlowMethod = Literal["dis", "farneback"]
MaskType = Literal["none", "difference", "blend", "depth"]
CompositeTiming = Literal["none", "normal", "before_motion", "after_generation"]

ORB_FEATURES = 2000
RANSAC_THRESHOLD = 3.0  # pixels
MIN_MATCHES = 8


def hybrid_flow(a: np.ndarray, b: np.ndarray, method: FlowMethod = "dis") -> np.ndarray:
    """Dense flow from source frame ``a`` to ``b`` (H x W x 2 float32, (dx, dy) per pixel of ``a``)."""
    ga, gb = _gray(a), _gray(b)
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(ga, gb, None).astype(np.float32, copy=False)
    if method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 4, 21, 5, 7, 1.5, 0)
        return flow.astype(np.float32, copy=False)
    raise ValueError(f"unknown flow method {method!r}")


def hybrid_matrix(a: np.ndarray, b: np.ndarray, kind: Literal["affine", "perspective"]) -> np.ndarray:
    """The 3x3 matrix moving source frame ``a`` onto ``b`` (identity when too few features match, so a
    featureless frame holds still instead of jumping)."""
    points_a, points_b = _matches(a, b)
    if len(points_a) < MIN_MATCHES:
        return np.eye(3)
    if kind == "affine":
        matrix, _ = cv2.estimateAffinePartial2D(
            points_a, points_b, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_THRESHOLD
        )
        return np.eye(3) if matrix is None else np.vstack([matrix, [0.0, 0.0, 1.0]])
    matrix, _ = cv2.findHomography(points_a, points_b, cv2.RANSAC, RANSAC_THRESHOLD)
    return np.eye(3) if matrix is None else matrix / matrix[2, 2]


def apply_hybrid_motion(
    image: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    motion: HybridMotion,
    *,
    flow_method: FlowMethod = "dis",
    flow_factor: float = 1.0,
    border: str = "replicate",
) -> np.ndarray:
    """``image`` moved the way the source moved from frame ``a`` to frame ``b`` (the sources resized to the
    image's size by the caller)."""
    if motion == "none":
        return image
    if motion == "optical_flow":
        return warp_by_flow(image, hybrid_flow(a, b, flow_method), flow_factor)
    return warp_2d(image, hybrid_matrix(a, b, motion), border)


def composite_mask(
    previous: np.ndarray, source: np.ndarray, kind: MaskType, *, depth: np.ndarray | None = None
) -> np.ndarray:
    """Where the source shows through, 0..1 float32 (H x W)."""
    height, width = previous.shape[:2]
    if kind == "none":
        return np.ones((height, width), np.float32)
    if kind == "difference":
        difference = np.abs(previous.astype(np.float32) - source.astype(np.float32)).mean(axis=2)
        return _normalised(difference)
    if kind == "blend":
        mixed = (previous.astype(np.float32) + source.astype(np.float32)) / 2
        return _gray(np.clip(mixed, 0, 255).astype(np.uint8)).astype(np.float32) / 255.0
    if kind == "depth":
        if depth is None:
            raise ValueError("a depth mask needs the source frame's depth map")
        return _normalised(np.asarray(depth, dtype=np.float32))
    raise ValueError(f"unknown mask type {kind!r}")


def composite(
    previous: np.ndarray, source: np.ndarray, alpha: float, mask: np.ndarray, *, invert: bool = False
) -> np.ndarray:
    """``previous`` with ``source`` blended in by ``alpha * mask`` (``1 - mask`` with ``invert``), uint8."""
    weight = alpha * ((1.0 - mask) if invert else mask)
    weight = weight[..., None].astype(np.float32)
    mixed = previous.astype(np.float32) * (1.0 - weight) + source.astype(np.float32) * weight
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _matches(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    orb = cv2.ORB_create(ORB_FEATURES)
    keys_a, desc_a = orb.detectAndCompute(_gray(a), None)
    keys_b, desc_b = orb.detectAndCompute(_gray(b), None)
    if desc_a is None or desc_b is None:
        return np.empty((0, 2), np.float32), np.empty((0, 2), np.float32)
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(desc_a, desc_b)
    points_a = np.float32([keys_a[m.queryIdx].pt for m in matches]).reshape(-1, 2)
    points_b = np.float32([keys_b[m.trainIdx].pt for m in matches]).reshape(-1, 2)
    return points_a, points_b


def _normalised(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-6:
        return np.zeros(values.shape, np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def _gray(image: np.ndarray) -> np.ndarray:
    image = np.ascontiguousarray(image, dtype=np.uint8)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image

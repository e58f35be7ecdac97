"""Dense optical flow (OpenCV DIS) and flow warping, for Deforum's "optical flow cadence" in-betweens.

A flow is float32 H x W x 2 holding (dx, dy) per pixel: pixel (x, y) of the source image moved to
(x + dx, y + dy) in the target.
"""

from __future__ import annotations

import cv2
import numpy as np

DIS_MIN_SIDE = 12
"""OpenCV's DIS refuses images under 8 pixels on a side or under 12 on both; padded to this on each side, any
image is taken."""


def optical_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Flow from ``source`` to ``target`` (RGB or grayscale uint8, same size) with DIS, preset MEDIUM.

    Images smaller than DIS takes (the spec allows 8x8 frames) are padded with their edge pixels to
    :data:`DIS_MIN_SIDE` on each side for the estimate, and the flow of the image itself is returned."""
    if source.shape != target.shape:
        raise ValueError(f"optical flow needs images of one size, got {source.shape} and {target.shape}")
    height, width = source.shape[:2]
    below, right = max(0, DIS_MIN_SIDE - height), max(0, DIS_MIN_SIDE - width)
    a, b = _gray(source), _gray(target)
    if below or right:
        a, b = (cv2.copyMakeBorder(x, 0, below, 0, right, cv2.BORDER_REPLICATE) for x in (a, b))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(a, b, None).astype(np.float32, copy=False)
    return np.ascontiguousarray(flow[:height, :width])


def _gray(image: np.ndarray) -> np.ndarray:
    """Contiguous uint8 grayscale of an RGB (or already gray) image."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def warp_by_flow(image: np.ndarray, flow: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``image``'s content moved along ``scale * flow``, same shape and dtype.

    Backward sampling: output pixel p takes the (bilinear) image value at ``p - scale * flow[p]``, borders
    replicated. The flow is read at the destination instead of the source, the usual approximation that is
    exact for uniform motion and close for smooth flow.
    """
    height, width = image.shape[:2]
    if flow.shape != (height, width, 2):
        raise ValueError(f"flow shape {flow.shape} does not match the image's ({height}, {width}, 2)")
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x = grid_x - np.float32(scale) * flow[..., 0]
    map_y = grid_y - np.float32(scale) * flow[..., 1]
    return cv2.remap(
        np.ascontiguousarray(image), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def flow_tween(
    previous: np.ndarray, following: np.ndarray, weight: float, *, flow_factor: float = 1.0
) -> np.ndarray:
    """An in-between frame at ``weight`` (0 = ``previous``, 1 = ``following``), uint8.

    ``previous`` is moved forward by ``weight * flow_factor`` of its flow to ``following``, ``following`` is
    moved back by ``(1 - weight) * flow_factor`` of its flow to ``previous`` (a flow estimated in each
    direction), and the two are cross-faded with weights ``1 - weight`` and ``weight``.
    """
    if not 0 <= weight <= 1:
        raise ValueError(f"tween weight must be in [0, 1], got {weight!r}")
    if weight == 0:
        return previous.copy()
    if weight == 1:
        return following.copy()
    forward = warp_by_flow(previous, optical_flow(previous, following), weight * flow_factor)
    backward = warp_by_flow(following, optical_flow(following, previous), (1 - weight) * flow_factor)
    blended = forward.astype(np.float32) * (1 - weight) + backward.astype(np.float32) * weight
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)

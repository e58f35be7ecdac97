"""The motion preview: a test pattern (or the init image) moved by the camera schedules, with no diffusion.

Users see their camera path before spending GPU time. Each preview frame is the previous one moved by that
frame's motion, exactly as the render chains its frames (same warps, borders and 3D re-projection), so
borders fill in and detail blurs the way they will in the render; only the diffusion that would repaint
them is missing. 3D previews assume a flat scene at ``near`` (no depth model is loaded).
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from flipbook.motion.camera import Camera


def motion_pattern(width: int, height: int) -> np.ndarray:
    """An RGB pattern that shows every motion: a grid (zoom, perspective), coloured quadrants (direction),
    a centre circle and an arrow pointing up (rotation), and a label."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), np.uint8)
    right, bottom = x >= width / 2, y >= height / 2
    image[~right & ~bottom] = (200, 60, 60)  # top left: red
    image[right & ~bottom] = (60, 160, 60)  # top right: green
    image[~right & bottom] = (60, 90, 200)  # bottom left: blue
    image[right & bottom] = (210, 190, 60)  # bottom right: yellow
    step = max(8, min(width, height) // 8)
    grid = (x % step < 2) | (y % step < 2)
    image[grid] = (245, 245, 245)
    centre, radius = (width // 2, height // 2), max(4, min(width, height) // 6)
    cv2.circle(image, centre, radius, (20, 20, 20), max(2, radius // 8))
    tip = (width // 2, height // 2 - radius)
    cv2.arrowedLine(image, centre, tip, (20, 20, 20), max(2, radius // 8), tipLength=0.3)
    scale = max(0.3, min(width, height) / 400)
    cv2.putText(image, "flipbook", (step // 2 + 2, height - step // 2 - 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), max(1, int(scale * 2)), cv2.LINE_AA)  # fmt: skip
    return image


def motion_preview(camera: Camera, start: np.ndarray, frames: int) -> Iterator[np.ndarray]:
    """``start`` at frame 0, then each frame moved from the one before by that frame's motion."""
    image = start
    yield image
    for index in range(1, frames):
        image = camera.warp(image, index - 1, range(index, index + 1))
        yield image

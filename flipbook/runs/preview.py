"""The plan's motion preview as a GIF: the camera path of a spec whose mode has one (``Mode.camera_path``:
2d, 3d) shown on a test pattern or the init image, with no model loaded (see ``motion/preview.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image

from flipbook.io.writers import write_gif
from flipbook.modes import camera_path_of
from flipbook.modes.frame import init_image
from flipbook.motion.preview import motion_pattern, motion_preview
from flipbook.spec.model import Spec
from flipbook.spec.plan import Plan

PREVIEW_SIDE = 256  # the preview's longer side at most: the path reads the same, and it renders in seconds


def write_motion_preview(spec: Spec, plan: Plan, path: Path) -> Path:
    """The camera path as a GIF, at most PREVIEW_SIDE pixels on the longer side (2D pixel translations are
    scaled with it; 3D motion doesn't depend on the picture's size). FlipbookError naming ``animation.mode``
    when the mode has no camera."""
    a = spec.animation
    camera_path = camera_path_of(a.mode)
    scale = min(1.0, PREVIEW_SIDE / max(a.width, a.height))
    size = (max(8, round(a.width * scale)), max(8, round(a.height * scale)))
    if spec.init.image is not None:
        start = np.asarray(init_image(spec).resize(size, PIL.Image.LANCZOS))
    else:
        start = motion_pattern(*size)
    camera = camera_path(spec, plan, size)
    frames = [PIL.Image.fromarray(f) for f in motion_preview(camera, start, a.max_frames)]
    return write_gif(frames, path, fps=a.fps, loop=0)

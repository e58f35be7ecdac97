"""Reading input images with one clear error for anything that isn't one, at 8 bits per channel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image

from flipbook.errors import FlipbookError

# The value that means white in Pillow's high-bit-depth single-band modes: 16-bit grey PNGs and TIFFs open as
# I;16 (older Pillow, and 32-bit integer files: I), float TIFFs as F (0 to 1 by convention). Pillow's own
# convert() clips these to 255 instead of scaling, so a 16-bit grey read 99.6% white.
FULL_SCALE: dict[str, float] = {
    "I;16": 65535.0,
    "I;16L": 65535.0,
    "I;16B": 65535.0,
    "I;16N": 65535.0,
    "I": 65535.0,
    "F": 1.0,
}


def to_8bit(image: PIL.Image.Image) -> PIL.Image.Image:
    """``image`` at 8 bits per channel: a 16-bit, 32-bit integer or float grey scaled to an "L" image (its
    full scale, :data:`FULL_SCALE`, to 255, rounded); any other mode as it is (Pillow already reads 16-bit RGB
    and RGBA PNGs as 8-bit, keeping each sample's high byte)."""
    full_scale = FULL_SCALE.get(image.mode)
    if full_scale is None:
        return image
    values = np.asarray(image, dtype=np.float64) * (255.0 / full_scale)
    return PIL.Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def rgb_array(image: PIL.Image.Image) -> np.ndarray:
    """An image of any mode as an H x W x 3 uint8 RGB array (high bit depths scaled, see :func:`to_8bit`)."""
    return np.asarray(to_8bit(image).convert("RGB"))


def open_image(path: str | Path, field: str = "image") -> PIL.Image.Image:
    """Open ``path`` as an RGB (or, for greys such as masks, "L") image at 8 bits, fully loaded."""
    path = Path(path)
    if not path.is_file():
        raise FlipbookError(field, str(path), "an existing image file (PNG, JPEG, WebP, ...)")
    try:
        with PIL.Image.open(path) as image:
            image.load()
            image = to_8bit(image)
            return image.convert("RGB") if image.mode not in ("RGB", "L") else image.copy()
    except (PIL.Image.UnidentifiedImageError, OSError, SyntaxError) as error:
        raise FlipbookError(
            field, str(path), "an image file (PNG, JPEG, WebP, ...)", detail=str(error)[:120]
        ) from None

"""Reading input images with one clear error for anything that isn't one."""

from __future__ import annotations

from pathlib import Path

import PIL.Image

from flipbook.errors import FlipbookError


def open_image(path: str | Path, field: str = "image") -> PIL.Image.Image:
    """Open ``path`` as an RGB (or, for masks, any-mode) image, fully loaded."""
    path = Path(path)
    if not path.is_file():
        raise FlipbookError(field, str(path), "an existing image file (PNG, JPEG, WebP, ...)")
    try:
        with PIL.Image.open(path) as image:
            image.load()
            return image.convert("RGB") if image.mode not in ("RGB", "L") else image.copy()
    except (PIL.Image.UnidentifiedImageError, OSError, SyntaxError) as error:
        raise FlipbookError(
            field, str(path), "an image file (PNG, JPEG, WebP, ...)", detail=str(error)[:120]
        ) from None

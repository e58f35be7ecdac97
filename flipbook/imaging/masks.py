"""Animation masks: which pixels move (1) and which stay still (0), as float32 H x W arrays in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import PIL.Image

from flipbook.io.images import FULL_SCALE


def load_mask(
    source: PIL.Image.Image | str | Path,
    size: tuple[int, int],
    *,
    use_alpha: bool = False,
    invert: bool = False,
) -> np.ndarray:
    """A mask image as float32 height x width in [0, 1], resized (bilinear) to ``size`` = (width, height).

    The mask is the image's luminance, or its alpha channel when ``use_alpha`` (ValueError if it has none;
    palette images with a transparent colour count as having one). ``invert`` gives ``1 - mask``.
    Convention: 1 = this pixel is animated, 0 = it stays still.
    """
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"mask size must be two positive integers (width, height), got {size!r}")
    channel, full_scale = _mask_channel(_open(source), use_alpha)
    resized = channel.convert("F").resize((width, height), PIL.Image.Resampling.BILINEAR)
    mask = np.clip(np.asarray(resized, dtype=np.float32) / full_scale, 0, 1)
    return 1 - mask if invert else mask


def _mask_channel(image: PIL.Image.Image, use_alpha: bool) -> tuple[PIL.Image.Image, float]:
    """The single-band image a mask is read from, and the value that means 1 (65535 for 16-bit gray, 1 for
    float images: see :data:`flipbook.io.images.FULL_SCALE`)."""
    if use_alpha:
        if image.mode in ("P", "L", "RGB") and "transparency" in image.info:
            image = image.convert("RGBA")
        if "A" not in image.getbands():
            raise ValueError(f"mask image has no alpha channel (mode {image.mode!r}); use luminance instead")
        return image.getchannel("A"), 255.0
    if image.mode in FULL_SCALE:  # 16-bit greys (I;16, I) and floats (F): "L" would clip them
        return image, FULL_SCALE[image.mode]
    return image.convert("L"), 255.0


def _open(source: PIL.Image.Image | str | Path) -> PIL.Image.Image:
    """``source`` itself, or the image file it names, fully loaded."""
    if isinstance(source, PIL.Image.Image):
        return source
    with PIL.Image.open(source) as image:
        image.load()
        return image.copy()


def feather(mask: np.ndarray, radius: float) -> np.ndarray:
    """``mask`` softened by a Gaussian blur with sigma ``radius`` pixels (edges replicated), clipped to [0, 1].

    A ``radius`` of 0 returns a copy of the mask.
    """
    if radius < 0:
        raise ValueError(f"feather radius must be >= 0, got {radius!r}")
    if radius == 0:
        return mask.copy()
    blurred = cv2.GaussianBlur(
        mask.astype(np.float32), (0, 0), sigmaX=radius, sigmaY=radius, borderType=cv2.BORDER_REPLICATE
    )
    return np.clip(blurred, 0, 1)


def composite(animated: np.ndarray, still: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``animated * mask + still * (1 - mask)``, rounded to uint8; ``mask`` is H x W with 1 = animated."""
    if animated.shape != still.shape or mask.shape != animated.shape[:2]:
        raise ValueError(
            f"composite needs equal sizes: animated {animated.shape}, still {still.shape}, mask {mask.shape}"
        )
    weight = mask.astype(np.float32)
    if animated.ndim == 3:
        weight = weight[..., None]
    blended = animated.astype(np.float32) * weight + still.astype(np.float32) * (1 - weight)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)

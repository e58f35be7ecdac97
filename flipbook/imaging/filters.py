"""Per-frame filters of Deforum-style animation: contrast, anti-blur (unsharp mask) and noise.

Images are H x W x C uint8 (RGB); every function returns a new array and leaves its input alone.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import cv2
import numpy as np

NoiseType = Literal["gaussian", "perlin"]


def adjust_contrast(image: np.ndarray, contrast: float) -> np.ndarray:
    """Deforum's contrast schedule: every pixel value times ``contrast``, rounded and clipped (1.0 = unchanged).

    Deforum casts without clipping, so values past 255 wrap around; here they saturate.
    """
    return _to_uint8(image.astype(np.float32) * np.float32(contrast))


def unsharp_mask(
    image: np.ndarray, *, amount: float, kernel_size: int, sigma: float, threshold: float
) -> np.ndarray:
    """Deforum's anti-blur: ``image * (1 + amount) - blurred * amount``, clipped to uint8.

    ``blurred`` is a Gaussian blur (``kernel_size`` x ``kernel_size``, ``sigma``) computed in float32. A
    ``kernel_size`` of 0 lets OpenCV derive it from ``sigma`` (which must then be positive); otherwise it
    must be odd and positive, and a ``sigma`` of 0 lets OpenCV derive sigma from it. Pixel values (per
    channel) where ``|image - blurred| < threshold`` (0..255 units) are kept as they were, so flat areas and
    their noise are not sharpened. ``amount`` 0 returns a copy of ``image``.
    """
    if kernel_size != 0 and (kernel_size < 0 or kernel_size % 2 == 0):
        raise ValueError(f"unsharp mask kernel_size must be 0 or odd and positive, got {kernel_size!r}")
    if kernel_size == 0 and sigma <= 0:
        raise ValueError(f"unsharp mask sigma must be positive when kernel_size is 0, got {sigma!r}")
    if amount == 0:
        return image.copy()
    original = image.astype(np.float32)
    blurred = cv2.GaussianBlur(original, (kernel_size, kernel_size), sigma)
    sharpened = _to_uint8(original * (1 + amount) - blurred * amount)
    if threshold > 0:
        low_contrast = np.abs(original - blurred) < threshold
        np.copyto(sharpened, image, where=low_contrast)
    return sharpened


def perlin_noise(
    height: int,
    width: int,
    *,
    generator: np.random.Generator,
    octaves: int = 4,
    persistence: float = 0.5,
    cells: tuple[int, int] = (8, 8),
) -> np.ndarray:
    """Fractal Perlin noise, float32 ``height`` x ``width`` in [-1, 1].

    The first octave is gradient noise on a lattice of ``cells`` = (rows, columns) cells spanning the image;
    each further octave doubles the cell counts and multiplies the amplitude by ``persistence``. Each octave
    is scaled by sqrt(2) to span [-1, 1] (as in Deforum's ``rand_perlin_2d``) and the sum is divided by the
    total amplitude, so the result stays in [-1, 1]. The noise is evaluated at each pixel's lattice
    coordinate directly, so any size works (Deforum's version needs sizes divisible by the cell counts).
    Octaves whose cells are narrower than about two pixels add pixel-level detail, not smooth structure.
    """
    if octaves < 1 or cells[0] < 1 or cells[1] < 1:
        raise ValueError(f"perlin noise needs octaves >= 1 and cells >= 1, got {octaves!r} and {cells!r}")
    noise = np.zeros((height, width), dtype=np.float64)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        rows, columns = cells[0] * 2**octave, cells[1] * 2**octave
        noise += amplitude * _perlin_octave(height, width, rows, columns, generator)
        total += amplitude
        amplitude *= persistence
    return (noise * (math.sqrt(2) / total)).astype(np.float32)


def _perlin_octave(height: int, width: int, rows: int, columns: int, rng: np.random.Generator) -> np.ndarray:
    """One octave of 2-D gradient noise (range +-sqrt(2)/2) on a ``rows`` x ``columns`` cell lattice."""
    angles = rng.uniform(0, 2 * np.pi, size=(rows + 1, columns + 1))
    gradients = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    y = np.arange(height) * (rows / height)
    x = np.arange(width) * (columns / width)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        """Dot product of the corner's gradient with the offset from that corner."""
        g = gradients[(y0 + dy)[:, None], (x0 + dx)[None, :]]
        return g[..., 1] * (fy - dy) + g[..., 0] * (fx - dx)

    sy, sx = _fade(fy), _fade(fx)
    top = corner(0, 0) + sx * (corner(0, 1) - corner(0, 0))
    bottom = corner(1, 0) + sx * (corner(1, 1) - corner(1, 0))
    return top + sy * (bottom - top)


def _fade(t: np.ndarray) -> np.ndarray:
    """Perlin's quintic fade curve 6t^5 - 15t^4 + 10t^3."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def add_noise(
    image: np.ndarray,
    amount: float,
    *,
    seed: int,
    noise_type: NoiseType = "gaussian",
    octaves: int = 4,
    persistence: float = 0.5,
    cells: tuple[int, int] = (8, 8),
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """``image`` with noise added in Deforum's [-1, 1] sample space, back to uint8 (rounded, clipped).

    As in the original Deforum notebook (``sample + randn * noise_amt`` on samples in [-1, 1]): the noise is
    ``amount`` times standard normal noise per pixel and channel ("gaussian"), or one smooth
    :func:`perlin_noise` field per channel ("perlin"; ``octaves``, ``persistence`` and ``cells`` = (rows,
    columns) play the part of Deforum's perlin_octaves, perlin_persistence and perlin_w/perlin_h). All
    randomness comes from ``np.random.default_rng(seed)`` (``seed`` >= 0): the same seed gives the same noise.
    ``mask`` (float H x W in [0, 1], 1 = noise goes here) scales the noise per pixel. ``amount`` 0 returns a
    copy of ``image``.
    """
    if noise_type not in get_args(NoiseType):
        raise ValueError(f"noise type {noise_type!r} is not one of {get_args(NoiseType)}")
    if mask is not None and mask.shape != image.shape[:2]:
        raise ValueError(f"noise mask shape {mask.shape} does not match the image's {image.shape[:2]}")
    if amount == 0:
        return image.copy()
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    channels = image.shape[2] if image.ndim == 3 else 1
    if noise_type == "gaussian":
        noise = rng.standard_normal((height, width, channels), dtype=np.float32)
    else:
        fields = [
            perlin_noise(height, width, generator=rng, octaves=octaves, persistence=persistence, cells=cells)
            for _ in range(channels)
        ]
        noise = np.stack(fields, axis=-1)
    if mask is not None:
        noise *= mask.astype(np.float32)[..., None]
    noise = noise.reshape(image.shape)
    # (image / 127.5 - 1 + noise * amount + 1) * 127.5, without the round trip's float error
    return _to_uint8(image.astype(np.float32) + noise * np.float32(amount * 127.5))


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Round and clip to uint8."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)

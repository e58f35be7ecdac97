"""The per-frame filters of :mod:`flipbook.imaging.filters` (contrast, anti-blur, noise) and the grayscale of
:mod:`flipbook.imaging.color` as torch ops on the render's device.

Images are uint8 tensors H x W x 3 (RGB) in and out. The arithmetic is the numpy versions' (float32, rounded
half to even, clipped), so contrast, grayscale and noise give the same bytes; the unsharp mask's blur sums in
another order than OpenCV's, so it may differ by one level (:data:`UNSHARP_TOLERANCE`). Noise fields are the
numpy versions' draws (``np.random.default_rng(seed)``), so a frame's noise does not depend on the device;
:func:`noise_field` makes one, and it can be made ahead of time (it needs only the seed and the size).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from flipbook.imaging.filters import NoiseType, perlin_noise

UNSHARP_TOLERANCE = 1  # max difference (0-255 levels) from the numpy reference


def to_uint8(values: torch.Tensor) -> torch.Tensor:
    """Round (half to even, as ``np.rint``) and clip to uint8."""
    return values.round().clamp_(0, 255).to(torch.uint8)


def adjust_contrast(image: torch.Tensor, contrast: float) -> torch.Tensor:
    """Every pixel value times ``contrast``, rounded and clipped (1.0 returns the image itself)."""
    if contrast == 1.0:
        return image
    return to_uint8(image.to(torch.float32) * float(np.float32(contrast)))


def to_grayscale(image: torch.Tensor) -> torch.Tensor:
    """Luma (OpenCV's 8-bit ``RGB2GRAY``: 15-bit fixed point 0.299 R + 0.587 G + 0.114 B) in three channels."""
    r, g, b = image.to(torch.int32).unbind(-1)
    gray = ((r * 9798 + g * 19235 + b * 3735 + (1 << 14)) >> 15).to(torch.uint8)
    return gray[..., None].expand(*gray.shape, 3).contiguous()


def unsharp_mask(
    image: torch.Tensor, *, amount: float, kernel_size: int, sigma: float, threshold: float
) -> torch.Tensor:
    """Deforum's anti-blur: ``image * (1 + amount) - blurred * amount``, clipped; see
    :func:`flipbook.imaging.filters.unsharp_mask` (same arguments, same checks). ``amount`` 0 returns the
    image itself."""
    if kernel_size != 0 and (kernel_size < 0 or kernel_size % 2 == 0):
        raise ValueError(f"unsharp mask kernel_size must be 0 or odd and positive, got {kernel_size!r}")
    if kernel_size == 0 and sigma <= 0:
        raise ValueError(f"unsharp mask sigma must be positive when kernel_size is 0, got {sigma!r}")
    if amount == 0:
        return image
    original = image.to(torch.float32)
    blurred = gaussian_blur(original, kernel_size, sigma)
    if threshold == 0 and image.device.type == "cpu":
        # one OpenCV pass: original * (1 + amount) - blurred * amount, rounded half to even and saturated
        sharpened = cv2.addWeighted(
            original.numpy(), 1 + amount, blurred.numpy(), -amount, 0, dtype=cv2.CV_8U
        )
        return torch.from_numpy(sharpened.reshape(image.shape))
    low_contrast = (original - blurred).abs_() < threshold if threshold > 0 else None
    values = original.mul_(float(np.float32(1 + amount))).sub_(blurred.mul_(float(np.float32(amount))))
    sharpened = values.round_().clamp_(0, 255).to(torch.uint8)
    return sharpened if low_contrast is None else torch.where(low_contrast, image, sharpened)


def gaussian_blur(
    image: torch.Tensor, kernel_size: int, sigma: float, *, on_cpu_use_opencv: bool = True
) -> torch.Tensor:
    """``cv2.GaussianBlur(image, (kernel_size, kernel_size), sigma)`` of a float32 H x W x C tensor: OpenCV's
    kernel (its size from sigma when 0, its sigma from the size when 0), separable, edges reflected without
    repeating the edge pixel (``BORDER_REFLECT_101``). On the CPU OpenCV itself runs (faster there), unless
    ``on_cpu_use_opencv`` is False (the tests hold the torch kernel, what GPUs run, to OpenCV's)."""
    if kernel_size == 0:
        kernel_size = int(round(sigma * 4 * 2 + 1)) | 1  # OpenCV's rule for float images
    kernel = torch.from_numpy(cv2.getGaussianKernel(kernel_size, sigma, cv2.CV_32F).ravel()).to(image.device)
    height, width, channels = image.shape
    radius = kernel_size // 2
    planes = image.permute(2, 0, 1)[:, None]  # C x 1 x H x W
    # on the CPU OpenCV's kernel is the faster one (on the tensor's memory); reflect padding needs an image
    # bigger than the kernel's radius, else OpenCV does it too
    if (on_cpu_use_opencv and image.device.type == "cpu") or radius >= min(height, width):
        blurred = cv2.GaussianBlur(image.cpu().numpy(), (kernel_size, kernel_size), sigma)
        return torch.from_numpy(blurred.reshape(image.shape)).to(image.device)
    padded = F.pad(planes, (radius, radius, radius, radius), mode="reflect")[:, 0]  # C x H+2r x W+2r
    weights = kernel.tolist()
    rows = sum(w * padded[:, :, k : k + width] for k, w in enumerate(weights))  # shifted adds: no im2col
    both = sum(w * rows[:, k : k + height] for k, w in enumerate(weights))
    return both.permute(1, 2, 0)


def noise_field(
    height: int,
    width: int,
    channels: int,
    *,
    seed: int,
    noise_type: NoiseType = "gaussian",
    octaves: int = 4,
    persistence: float = 0.5,
    cells: tuple[int, int] = (8, 8),
) -> np.ndarray:
    """The unit noise :func:`flipbook.imaging.filters.add_noise` draws for ``seed`` (float32 H x W x C)."""
    rng = np.random.default_rng(seed)
    if noise_type == "gaussian":
        return rng.standard_normal((height, width, channels), dtype=np.float32)
    fields = [
        perlin_noise(height, width, generator=rng, octaves=octaves, persistence=persistence, cells=cells)
        for _ in range(channels)
    ]
    return np.stack(fields, axis=-1)


def add_noise(
    image: torch.Tensor, amount: float, noise: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``image`` plus ``amount`` times the unit ``noise`` (from :func:`noise_field`) in Deforum's [-1, 1]
    sample space, scaled per pixel by ``mask`` (float H x W, 1 = noise goes here); ``amount`` 0 returns the
    image itself. :func:`scaled_noise` then :func:`add_scaled_noise` (the first can be made ahead)."""
    if amount == 0:
        return image
    return add_scaled_noise(image, scaled_noise(noise.clone(), amount, mask))


def scaled_noise(unit: torch.Tensor, amount: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The levels :func:`add_noise` adds: the unit field (float32 H x W x C, scaled in place) times ``mask``
    (float H x W) times ``amount * 127.5``, with the numpy version's float32 arithmetic. It needs nothing of
    the frame it goes into, so it can be made ahead of it."""
    if mask is not None:
        unit.mul_(mask.to(torch.float32)[..., None])
    return unit.mul_(float(np.float32(amount * 127.5)))


def add_scaled_noise(image: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``image`` (uint8) plus :func:`scaled_noise`'s levels, rounded half to even and clipped: on the CPU one
    OpenCV pass (``cv2.add`` into uint8 rounds and saturates so), elsewhere torch ops."""
    if image.device.type == "cpu" and noise.device.type == "cpu":
        return torch.from_numpy(cv2.add(image.numpy(), noise.numpy(), dtype=cv2.CV_8U).reshape(image.shape))
    return noise.add(image).round_().clamp_(0, 255).to(torch.uint8)


def composite(animated: torch.Tensor, still: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``animated * mask + still * (1 - mask)`` rounded to uint8 (:func:`flipbook.imaging.masks.composite`)."""
    if animated.shape != still.shape or mask.shape != animated.shape[:2]:
        raise ValueError(
            f"composite needs equal sizes: animated {tuple(animated.shape)}, still {tuple(still.shape)}, "
            f"mask {tuple(mask.shape)}"
        )
    weight = mask.to(torch.float32)[..., None]
    return to_uint8(animated.to(torch.float32) * weight + still.to(torch.float32) * (1 - weight))

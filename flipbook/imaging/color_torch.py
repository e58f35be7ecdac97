"""Colour coherence as torch ops on the render's device: :func:`flipbook.imaging.color.match_colors` without
leaving the device and without sorting every frame.

A :class:`ColorReference` is made once per reference image: the image in the colour space, and per channel
its distinct values with their cumulative share (its CDF), kept on the device. Matching a frame then costs
one pass over its pixels per channel: a histogram of the frame's values in ``BINS`` equal bins over the colour
space's fixed range (one bin per integer level for RGB, so RGB matching is exact), its cumulative share per
bin, each bin's share looked up in the reference's CDF (linear interpolation between its distinct values, as
scikit-image's ``match_histograms`` does), and every pixel given its bin's value. The numpy version (exact:
one quantile per distinct value) stays as the reference in the tests: frames agree within
:data:`TOLERANCE` levels for nearly every value (LAB, HSV; RGB exactly).

Colour conversions follow OpenCV's float ``RGB2Lab``/``Lab2RGB`` (sRGB, D65) and ``RGB2HSV``/``HSV2RGB``
(hue in degrees), on images scaled to [0, 1]. Images are uint8 tensors H x W x 3 (RGB) in and out.

On the CPU the same algorithm runs on the tensor's memory with OpenCV's own conversions (the numpy reference's,
so LAB frames differ from it by the bins alone: within a level) and numpy's histogram passes: several times
faster there than torch's elementwise kernels, which GPUs run (and the tests hold to the reference with
``on_cpu_use_opencv=False``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from flipbook.imaging.color import ColorCoherence

BINS = 65536
# Difference (0-255 levels) from the numpy reference, "lab" and "hsv": 99.5% of values (99% for "hsv") within
# TOLERANCE, the mean under MEAN_TOLERANCE. The exact algorithm is discontinuous where the reference's CDF
# steps (a gap in its histogram; hue is matched as a plain channel, as Deforum does): a value OpenCV's
# conversion rounds a little differently can land on the other side of a step, in either version, so single
# values can differ by more (tens of levels seen on 3000-pixel test images).
TOLERANCE = 2
MEAN_TOLERANCE = 0.5

# fixed value range per colour space and channel: the histogram bins span it
_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "rgb": ((0.0, 256.0),) * 3,
    "lab": ((0.0, 100.0), (-128.0, 128.0), (-128.0, 128.0)),
    "hsv": ((0.0, 360.0), (0.0, 1.0), (0.0, 1.0)),
}
_BIN_COUNTS = {"rgb": 256, "lab": BINS, "hsv": BINS}

_RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_XYZ_TO_RGB = (
    (3.240479, -1.53715, -0.498535),
    (-0.969256, 1.875991, 0.041556),
    (0.055648, -0.204043, 1.057311),
)
_WHITE = (0.950456, 1.0, 1.088754)


@dataclass(frozen=True)
class ColorReference:
    """A reference image's per-channel CDF in one colour space, made once and matched against many frames."""

    space: ColorCoherence
    values: tuple[torch.Tensor, ...]  # per channel: its distinct values, ascending (float32)
    quantiles: tuple[torch.Tensor, ...]  # per channel: the share of pixels at or below each value (float64)

    @classmethod
    def of(
        cls, reference: torch.Tensor, space: ColorCoherence, *, on_cpu_use_opencv: bool = True
    ) -> ColorReference:
        """``reference`` (uint8 H x W x 3 tensor) in ``space`` ("rgb", "hsv" or "lab"); on the CPU converted
        by OpenCV unless ``on_cpu_use_opencv`` is False (as :meth:`match` converts frames)."""
        if space not in _RANGES:
            raise ValueError(f"color coherence mode {space!r} is not one of {tuple(_RANGES)}")
        values, quantiles = [], []
        if on_cpu_use_opencv and reference.device.type == "cpu":
            planes = list(torch.from_numpy(_cv_to_space(reference.numpy(), space)).unbind(-1))
        else:
            planes = to_space(reference, space)
        for plane in planes:
            distinct, counts = torch.unique(plane, sorted=True, return_counts=True)
            values.append(distinct)
            quantiles.append(torch.cumsum(counts, 0).to(torch.float64).div(plane.numel()))
        return cls(space, tuple(values), tuple(quantiles))

    def match(self, image: torch.Tensor, *, on_cpu_use_opencv: bool = True) -> torch.Tensor:
        """``image`` (uint8 H x W x 3 tensor) with each channel's histogram matched to the reference's.

        On the CPU (unless ``on_cpu_use_opencv`` is False: the tests hold the torch kernel, what GPUs run, to
        the reference) the colour conversions are OpenCV's own, the numpy reference's, and the histogram
        passes numpy's, on the tensor's memory: several times faster there than torch's elementwise ops."""
        if on_cpu_use_opencv and image.device.type == "cpu":
            return torch.from_numpy(self._match_on_cpu(image.numpy()))
        planes = [
            _match_channel(plane, self.values[c], self.quantiles[c], _RANGES[self.space][c],
                           _BIN_COUNTS[self.space], exact_levels=self.space == "rgb")
            for c, plane in enumerate(to_space(image, self.space))
        ]  # fmt: skip
        return from_space(planes, self.space)

    def _match_on_cpu(self, image: np.ndarray) -> np.ndarray:
        """:meth:`match` on the CPU: one OpenCV conversion each way, the bins of all three channels in one
        pass, then per channel a histogram (``bincount``), its CDF looked up in the reference's
        (``np.interp`` over the bins, not the pixels) and the bins' values gathered."""
        space, bins = self.space, _BIN_COUNTS[self.space]
        planes = _cv_to_space(image, space)
        low = tuple(span[0] for span in _RANGES[space])
        scale = tuple(bins / (high - low) for low, high in _RANGES[space])
        index = cv2.multiply(cv2.subtract(planes, (*low, 0.0)), (*scale, 0.0)).astype(np.int32)
        np.clip(index, 0, bins - 1, out=index)
        matched = []
        for c, channel in enumerate(cv2.split(index)):
            counts = np.bincount(channel.ravel(), minlength=bins)
            share = np.cumsum(counts) / channel.size
            table = np.interp(share, self.quantiles[c].numpy(), self.values[c].numpy().astype(np.float64))
            # RGB levels are rounded from the float64 values, as numpy does (a float32 step could cross a .5)
            table = (np.rint(table) if space == "rgb" else table).astype(np.float32)
            matched.append(np.take(table, channel))
        return _cv_from_space(cv2.merge(matched), space)


def _cv_to_space(image: np.ndarray, space: str) -> np.ndarray:
    """uint8 RGB H x W x 3 -> float32 H x W x 3 in ``space`` with OpenCV's float conversions of the image /
    255, exactly as :func:`flipbook.imaging.color.match_colors` makes them (RGB: the levels as floats)."""
    rgb = np.ascontiguousarray(image, dtype=np.uint8).astype(np.float32)
    if space == "rgb":
        return rgb
    code = cv2.COLOR_RGB2Lab if space == "lab" else cv2.COLOR_RGB2HSV
    return cv2.cvtColor(np.divide(rgb, np.float32(255), out=rgb), code)


def _cv_from_space(planes: np.ndarray, space: str) -> np.ndarray:
    """float32 H x W x 3 in ``space`` -> uint8 RGB, rounded half to even and clipped (OpenCV's float
    conversion back times 255, as :func:`flipbook.imaging.color.match_colors`)."""
    if space != "rgb":
        code = cv2.COLOR_Lab2RGB if space == "lab" else cv2.COLOR_HSV2RGB
        planes = np.multiply(cv2.cvtColor(planes, code), np.float32(255))
    np.rint(planes, out=planes)
    return np.clip(planes, 0, 255, out=planes).astype(np.uint8)


def _match_channel(
    channel: torch.Tensor,
    values: torch.Tensor,
    quantiles: torch.Tensor,
    span: tuple[float, float],
    bins: int,
    exact_levels: bool = False,
) -> torch.Tensor:
    """One channel mapped so its CDF (over ``bins`` bins of ``span``) follows the reference's."""
    low, high = span
    index = ((channel - low) * (bins / (high - low))).long().clamp_(0, bins - 1)
    counts = torch.bincount(index.reshape(-1), minlength=bins)
    share = torch.cumsum(counts, 0).to(torch.float64).div(channel.numel())
    matched = _interp(share, quantiles, values.to(torch.float64))
    # RGB levels are rounded from the float64 values, as numpy does (a float32 step could cross a .5)
    return torch.take(matched.round() if exact_levels else matched.to(torch.float32), index)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``np.interp(x, xp, fp)`` with numpy's arithmetic: ``slope * (x - xp[j]) + fp[j]`` for
    ``xp[j] <= x < xp[j + 1]``, the end values outside."""
    if xp.numel() == 1:
        return fp.expand_as(x).clone()
    j = (torch.searchsorted(xp, x, right=True) - 1).clamp_(0, xp.numel() - 2)
    x0, x1, y0, y1 = xp[j], xp[j + 1], fp[j], fp[j + 1]
    inside = ((y1 - y0) / (x1 - x0)) * (x - x0) + y0
    return torch.where(x < xp[0], fp[0], torch.where(x >= xp[-1], fp[-1], inside))


# ---- colour spaces (float, as OpenCV's float conversions) --------------------------------------------------


Planes = list[torch.Tensor]  # an image's three channels, each H x W float32


def to_space(image: torch.Tensor, space: str) -> Planes:
    """uint8 RGB H x W x 3 -> float32 planes in ``space``: RGB 0-255, LAB (L 0-100), HSV (hue in degrees, S,
    V 0-1)."""
    if space == "lab":
        return rgb_to_lab(image)
    rgb = image.to(torch.float32)
    return list(rgb.unbind(-1)) if space == "rgb" else list(rgb_to_hsv(rgb / 255).unbind(-1))


def from_space(planes: Planes, space: str) -> torch.Tensor:
    """float32 planes in ``space`` -> uint8 RGB H x W x 3, rounded and clipped."""
    if space == "lab":
        return lab_to_rgb(planes)
    rgb = torch.stack(planes, dim=-1)
    rgb = rgb if space == "rgb" else hsv_to_rgb(rgb) * 255
    return rgb.round_().clamp_(0, 255).to(torch.uint8)


def _linear(levels: torch.Tensor) -> torch.Tensor:
    """sRGB levels 0-255 -> linear light in [0, 1]."""
    encoded = levels / 255
    return torch.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)


def _mix(channels: tuple[torch.Tensor, ...], rows) -> list[torch.Tensor]:
    """A 3x3 matrix applied to three channel planes (cheaper than a matmul over H*W x 3)."""
    return [sum(weight * channel for weight, channel in zip(row, channels, strict=True)) for row in rows]


def rgb_to_lab(image: torch.Tensor) -> Planes:
    """uint8 sRGB (H x W x 3) -> CIE L*a*b* planes (D65), as OpenCV's float ``RGB2Lab`` of the image / 255 (the
    sRGB decoding is a 256-entry table)."""
    table = _linear(torch.arange(256, dtype=torch.float32, device=image.device))
    linear = torch.take(table, image.long()).unbind(-1)
    rows = [[w / white for w in row] for row, white in zip(_RGB_TO_XYZ, _WHITE, strict=True)]
    x, y, z = _mix(linear, rows)

    def f(t: torch.Tensor) -> torch.Tensor:
        return torch.where(t > 0.008856, t.clamp(min=0) ** (1 / 3), 7.787 * t + 16 / 116)

    fx, fy, fz = f(x), f(y), f(z)
    lightness = torch.where(y > 0.008856, 116 * fy - 16, 903.3 * y)
    return [lightness, 500 * (fx - fy), 200 * (fy - fz)]


_ENCODE_STEPS = 65535  # linear light is quantised to this many steps for the sRGB encoding table


def lab_to_rgb(lab: Planes) -> torch.Tensor:
    """CIE L*a*b* planes (D65) -> uint8 sRGB H x W x 3 (clipped, rounded), as OpenCV's float ``Lab2RGB`` times 255 (the sRGB
    encoding is a table over linear light in 1/65535 steps)."""
    lightness, a, b = lab
    low = lightness <= 8
    fy = (lightness + 16) / 116
    y = torch.where(low, lightness / 903.3, fy**3)
    fy = torch.where(low, 7.787 * y + 16 / 116, fy)
    fx, fz = a / 500 + fy, fy - b / 200

    def inverse(t: torch.Tensor) -> torch.Tensor:
        return torch.where(t > 0.206893, t**3, (t - 16 / 116) / 7.787)

    xyz = (inverse(fx) * _WHITE[0], y, inverse(fz) * _WHITE[2])
    steps = torch.linspace(0, 1, _ENCODE_STEPS + 1, device=lightness.device)
    encoded = torch.where(steps <= 0.0031308, 12.92 * steps, 1.055 * steps ** (1 / 2.4) - 0.055)
    table = (encoded * 255).round_().clamp_(0, 255).to(torch.uint8)
    rgb = [torch.take(table, (c.clamp(0, 1) * _ENCODE_STEPS).round_().long()) for c in _mix(xyz, _XYZ_TO_RGB)]
    return torch.stack(rgb, dim=-1)


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> HSV: hue in degrees [0, 360), saturation and value in [0, 1] (OpenCV's float ``RGB2HSV``)."""
    r, g, b = rgb.unbind(-1)
    value, _ = rgb.max(-1)
    diff = value - rgb.min(-1).values
    saturation = torch.where(value > 0, diff / value.clamp(min=1e-12), torch.zeros_like(value))
    safe = diff.clamp(min=1e-12)
    hue = torch.where(
        value == r,
        60 * (g - b) / safe,
        torch.where(value == g, 120 + 60 * (b - r) / safe, 240 + 60 * (r - g) / safe),
    )
    hue = torch.where(diff > 0, hue, torch.zeros_like(hue))
    hue = torch.where(hue < 0, hue + 360, hue)
    return torch.stack([hue, saturation, value], dim=-1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV (hue in degrees) -> RGB in [0, 1] (OpenCV's float ``HSV2RGB``)."""
    hue, saturation, value = hsv.unbind(-1)
    h = hue / 60
    h = h - torch.floor(h / 6) * 6
    sector = torch.floor(h)
    f = h - sector
    p, q, t = value * (1 - saturation), value * (1 - saturation * f), value * (1 - saturation * (1 - f))
    sector = sector.long().clamp_(0, 5)
    table = torch.stack(
        [
            torch.stack([value, t, p], -1),
            torch.stack([q, value, p], -1),
            torch.stack([p, value, t], -1),
            torch.stack([p, q, value], -1),
            torch.stack([t, p, value], -1),
            torch.stack([value, p, q], -1),
        ],
        dim=-2,
    )
    return torch.gather(table, -2, sector[..., None, None].expand(*sector.shape, 1, 3)).squeeze(-2)

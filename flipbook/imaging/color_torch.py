"""Colour coherence as torch ops on the render's device: :func:`flipbook.imaging.color.match_colors` without
leaving the device and without sorting every frame.

A :class:`ColorReference` is made once per reference image: per channel of the image in the colour space
(8-bit, as Deforum's ``maintain_colors`` converts it) its levels and their cumulative share (its CDF), kept on
the device. Matching a frame then costs a histogram of its 256 levels per channel, a 256-entry table per
channel (each level's share looked up in the reference's CDF, as scikit-image's ``match_histograms`` does on
uint8, truncated to uint8) and one table lookup per pixel.

On the CPU this is :func:`flipbook.imaging.color.match_colors` itself on the tensor's memory (OpenCV's 8-bit
conversions, ``calcHist``, ``LUT``): the same bytes. Other devices run torch ops: OpenCV's 8-bit conversions looked up
per pixel in tables of every RGB triple (:func:`to_space`, made once per device), the histograms and tables
as on the CPU: the same bytes (HSV within :data:`HSV_TOLERANCE`). Images are uint8 tensors H x W x 3 (RGB) in and out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from flipbook.imaging import color
from flipbook.imaging.color import ColorCoherence

LEVELS = 256
# Difference (0-255 levels) of the torch kernel from the reference in "hsv" (RGB and LAB: none): OpenCV's own
# 8-bit HSV2RGB rounds the pixels at a row's tail (past its last full vector) differently from the rest, so
# no table matches it everywhere.
HSV_TOLERANCE = 1

_SPACES = ("rgb", "hsv", "lab")


@dataclass(frozen=True)
class ColorReference:
    """A reference image's per-channel CDF in one colour space, made once and matched against many frames."""

    space: ColorCoherence
    values: tuple[torch.Tensor, ...]  # per channel: its levels present, ascending (float64)
    quantiles: tuple[torch.Tensor, ...]  # per channel: the share of pixels at or below each level (float64)

    @classmethod
    def of(
        cls, reference: torch.Tensor, space: ColorCoherence, *, on_cpu_use_opencv: bool = True
    ) -> ColorReference:
        """``reference`` (uint8 H x W x 3 tensor) in ``space`` ("rgb", "hsv" or "lab"); on the CPU converted
        by OpenCV unless ``on_cpu_use_opencv`` is False (as :meth:`match` converts frames)."""
        if space not in _SPACES:
            raise ValueError(f"color coherence mode {space!r} is not one of {_SPACES}")
        if on_cpu_use_opencv and reference.device.type == "cpu":
            cdfs = color.channel_cdfs(color.to_space(reference.numpy(), space))
            values = tuple(torch.from_numpy(levels) for levels, _ in cdfs)
            return cls(space, values, tuple(torch.from_numpy(quantiles) for _, quantiles in cdfs))
        values, quantiles = [], []
        for counts in _level_counts(to_space(reference, space)):
            levels = torch.nonzero(counts).ravel()
            values.append(levels.to(torch.float64))
            quantiles.append(torch.cumsum(counts[levels], 0).to(torch.float64) / counts.sum())
        return cls(space, tuple(values), tuple(quantiles))

    def match(self, image: torch.Tensor, *, on_cpu_use_opencv: bool = True) -> torch.Tensor:
        """``image`` (uint8 H x W x 3 tensor) with each channel's histogram matched to the reference's.

        On the CPU (unless ``on_cpu_use_opencv`` is False: the tests hold the torch kernel, what GPUs run, to
        the reference) this is :func:`flipbook.imaging.color.match_to_cdfs` on the tensor's memory."""
        if on_cpu_use_opencv and image.device.type == "cpu":
            cdfs = tuple((v.numpy(), q.numpy()) for v, q in zip(self.values, self.quantiles, strict=True))
            return torch.from_numpy(color.match_to_cdfs(image.numpy(), cdfs, self.space))
        converted = to_space(image, self.space)
        tables = [
            # float64 to uint8 truncates, as scikit-image stores a uint8 image's matched channels
            _interp(torch.cumsum(counts, 0).to(torch.float64) / counts.sum(), quantiles, values).to(
                torch.uint8
            )
            for counts, values, quantiles in zip(
                _level_counts(converted), self.values, self.quantiles, strict=True
            )
        ]
        matched = torch.stack(
            [
                torch.take(table, plane.long())
                for table, plane in zip(tables, converted.unbind(-1), strict=True)
            ],
            dim=-1,
        )
        return from_space(matched, self.space)


def _level_counts(converted: torch.Tensor) -> list[torch.Tensor]:
    """Per channel of a uint8 H x W x C tensor, how many pixels have each level 0-255."""
    return [torch.bincount(plane.reshape(-1), minlength=LEVELS) for plane in converted.unbind(-1)]


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``np.interp(x, xp, fp)`` with numpy's arithmetic: ``slope * (x - xp[j]) + fp[j]`` for
    ``xp[j] <= x < xp[j + 1]``, the end values outside."""
    if xp.numel() == 1:
        return fp.expand_as(x).clone()
    j = (torch.searchsorted(xp, x, right=True) - 1).clamp_(0, xp.numel() - 2)
    x0, x1, y0, y1 = xp[j], xp[j + 1], fp[j], fp[j + 1]
    inside = ((y1 - y0) / (x1 - x0)) * (x - x0) + y0
    return torch.where(x < xp[0], fp[0], torch.where(x >= xp[-1], fp[-1], inside))


# ---- colour spaces: OpenCV's 8-bit conversions as tables ---------------------------------------------------


def to_space(image: torch.Tensor, space: str) -> torch.Tensor:
    """uint8 RGB H x W x 3 -> uint8 H x W x 3 in ``space``: OpenCV's 8-bit conversion (LAB: L * 255 / 100,
    a + 128, b + 128; HSV: hue / 2, S, V; "rgb": the image), looked up per pixel on the tensor's device."""
    return image if space == "rgb" else _lookup(image, _conversion_tables(space, image.device)[0])


def from_space(image: torch.Tensor, space: str) -> torch.Tensor:
    """uint8 H x W x 3 in ``space`` -> uint8 RGB: OpenCV's 8-bit conversion back, looked up per pixel."""
    return image if space == "rgb" else _lookup(image, _conversion_tables(space, image.device)[1])


def _lookup(image: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Each pixel's three levels (uint8 H x W x 3) replaced by ``table``'s row for them (2^24 x 3)."""
    first, second, third = image.to(torch.int64).unbind(-1)
    index = (first << 16) | (second << 8) | third
    return table.index_select(0, index.reshape(-1)).reshape(image.shape)


@functools.lru_cache(maxsize=4)
def _conversion_tables(space: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's 8-bit conversion of every triple of levels to ``space`` and back (2^24 x 3 uint8 each, 48 MiB),
    made once per colour space and device: the device's kernel then gives OpenCV's bytes exactly."""
    every = np.arange(1 << 24, dtype=np.uint32)
    triples = np.stack([every >> 16, (every >> 8) & 255, every & 255], axis=-1).astype(np.uint8)
    triples = triples.reshape(4096, 4096, 3)
    to, back = color.to_space(triples, space), color.from_space(triples, space)
    return torch.from_numpy(to.reshape(-1, 3)).to(device), torch.from_numpy(back.reshape(-1, 3)).to(device)

"""Colour coherence: keep every frame's colours close to a reference frame's (Deforum's ``color_coherence``).

Images are H x W x 3 uint8 in RGB order. Deforum converts with ``COLOR_RGB2HSV``/``COLOR_RGB2LAB`` while its frames
are BGR, so its "HSV"/"LAB" matching works on swapped channels; here everything stays RGB.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

import cv2
import numpy as np

ColorCoherence = Literal["none", "rgb", "hsv", "lab"]

# Deforum's "Video Input" (and "Image") colour coherence: maintain_colors matches in LAB for every mode other than
# RGB and HSV.
VIDEO_COLOR_SPACE: ColorCoherence = "lab"

# OpenCV's 8-bit conversion codes (to, back) per colour space, Deforum's; "rgb" needs none.
_CONVERSIONS: dict[str, tuple[int, int]] = {
    "hsv": (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB),
    "lab": (cv2.COLOR_RGB2LAB, cv2.COLOR_LAB2RGB),
}


def _match_channel(source: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Map ``source``'s values so that their CDF matches ``template``'s (scikit-image's ``_match_cumulative_cdf``)."""
    src_values, src_index, src_counts = np.unique(source.ravel(), return_inverse=True, return_counts=True)
    tmpl_values, tmpl_counts = np.unique(template.ravel(), return_counts=True)
    src_quantiles = np.cumsum(src_counts) / source.size
    tmpl_quantiles = np.cumsum(tmpl_counts) / template.size
    matched = np.interp(src_quantiles, tmpl_quantiles, tmpl_values)
    return matched[src_index.ravel()].reshape(source.shape)


def match_histograms(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Exact histogram matching per channel (last axis) of ``image`` to ``reference``, as float64.

    The same algorithm as ``skimage.exposure.match_histograms(image, reference, channel_axis=-1)``: each
    distinct value of the image is mapped to the reference value at the same quantile (linear interpolation
    between the reference's distinct values). 2-D arrays are treated as one channel. Sizes may differ; the
    channel counts must agree.
    """
    image = np.asarray(image, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if image.ndim == 2 and reference.ndim == 2:
        return _match_channel(image, reference)
    if image.ndim != 3 or reference.ndim != 3 or image.shape[-1] != reference.shape[-1]:
        raise ValueError(
            f"match_histograms: image {image.shape} and reference {reference.shape} need the same channel count"
        )
    channels = [_match_channel(image[..., c], reference[..., c]) for c in range(image.shape[-1])]
    return np.stack(channels, axis=-1)


def match_colors(image: np.ndarray, reference: np.ndarray, mode: ColorCoherence) -> np.ndarray:
    """``image``'s colours histogram-matched to ``reference`` in RGB, HSV or LAB (uint8 RGB in and out).

    What Deforum's ``maintain_colors`` computes on its uint8 frames, in RGB channel order: OpenCV's 8-bit
    conversions (``RGB2HSV``: hue in 0-179; ``RGB2LAB``: L scaled to 0-255, a and b offset by 128), each
    channel's levels matched to the reference's with scikit-image's ``match_histograms`` on uint8 (each level
    mapped to the reference level at the same quantile, linearly interpolated, then cast to uint8: truncated,
    as scikit-image stores it), and OpenCV's 8-bit conversion back. Hue is matched as a plain channel, as
    Deforum does, ignoring that it is circular. ``"none"`` returns a copy of ``image``. ``reference`` may have
    another size. The reference's side (:func:`channel_cdfs`) can be made once and matched against many
    frames (:func:`match_to_cdfs`).
    """
    if mode not in get_args(ColorCoherence):
        raise ValueError(f"color coherence mode {mode!r} is not one of {get_args(ColorCoherence)}")
    _check_rgb(image, "image")
    _check_rgb(reference, "reference")
    if mode == "none":
        return image.copy()
    return match_to_cdfs(image, channel_cdfs(to_space(reference, mode)), mode)


# per channel: the levels present (ascending), the share of pixels at or below each
ChannelCDFs = tuple[tuple[np.ndarray, np.ndarray], ...]


def to_space(image: np.ndarray, space: str) -> np.ndarray:
    """uint8 RGB H x W x 3 -> uint8 H x W x 3 in ``space`` (OpenCV's 8-bit conversion; "rgb": the image)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    return image if space == "rgb" else cv2.cvtColor(image, _CONVERSIONS[space][0])


def from_space(image: np.ndarray, space: str) -> np.ndarray:
    """uint8 H x W x 3 in ``space`` -> uint8 RGB (OpenCV's 8-bit conversion back)."""
    return image if space == "rgb" else cv2.cvtColor(image, _CONVERSIONS[space][1])


def channel_cdfs(converted: np.ndarray) -> ChannelCDFs:
    """Per channel of a uint8 H x W x C image: the levels it has (ascending) and the share of its pixels at
    or below each (scikit-image's template quantiles)."""
    cdfs = []
    for counts in _level_counts(converted):
        levels = np.flatnonzero(counts)
        cdfs.append((levels.astype(np.float64), np.cumsum(counts[levels]) / counts.sum()))
    return tuple(cdfs)


def match_to_cdfs(image: np.ndarray, cdfs: ChannelCDFs, space: str) -> np.ndarray:
    """uint8 RGB ``image`` matched to a reference's :func:`channel_cdfs` in ``space``: per channel a
    256-entry table (each level's quantile looked up in the reference's CDF, truncated to uint8) applied
    with one ``cv2.LUT`` over the frame."""
    converted = to_space(image, space)
    return from_space(cv2.LUT(converted, level_tables(converted, cdfs)), space)


def level_tables(converted: np.ndarray, cdfs: ChannelCDFs) -> np.ndarray:
    """256 x 1 x C uint8: the level each level of ``converted`` (uint8 H x W x C) becomes, per channel."""
    tables = np.empty((256, 1, len(cdfs)), dtype=np.uint8)
    for c, (counts, (levels, quantiles)) in enumerate(zip(_level_counts(converted), cdfs, strict=True)):
        # float64 into uint8: truncated, as scikit-image's match_histograms stores a uint8 image's channels
        tables[:, 0, c] = np.interp(np.cumsum(counts) / counts.sum(), quantiles, levels)
    return tables


def _level_counts(converted: np.ndarray) -> list[np.ndarray]:
    """Per channel of a uint8 H x W x C image, how many pixels have each level 0-255 (int64)."""
    image = np.ascontiguousarray(converted, dtype=np.uint8)
    return [
        cv2.calcHist([image], [c], None, [256], [0, 256]).ravel().astype(np.int64)
        for c in range(image.shape[-1])
    ]


def video_color_frame(index: int, every_n: int, diffused: Iterable[int] = ()) -> int:
    """The hybrid video frame whose colours diffused frame ``index`` is matched to (Deforum's "Video Input"
    colour coherence with ``color_coherence_video_every_N_frames = every_n``).

    Deforum takes a new sample at each diffused frame whose index is a multiple of ``every_n`` (the video frame
    of that index) and keeps it until the next one. Every frame diffused (cadence 1): frame k uses video frame
    ``(k // every_n) * every_n``. With ``diffused`` (the diffused frames, in any order; empty: every frame)
    only those frames can take a sample: the latest diffused multiple of ``every_n`` at or before ``index``
    (frame 0 always is one).
    """
    if every_n < 1:
        raise ValueError(f"every_n must be at least 1, got {every_n}")
    if index < 0:
        raise ValueError(f"index must not be negative, got {index}")
    latest = (index // every_n) * every_n
    frames = set(diffused)
    if not frames:
        return latest
    return max((j for j in frames if j <= index and j % every_n == 0), default=0)


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """Luma of an RGB uint8 image (cv2 ``RGB2GRAY``: 0.299 R + 0.587 G + 0.114 B), repeated in three channels."""
    _check_rgb(image, "image")
    gray = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    return np.repeat(gray[..., None], 3, axis=-1)


def _check_rgb(image: np.ndarray, name: str) -> None:
    """Raise ValueError unless ``image`` is H x W x 3."""
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{name} must be an H x W x 3 RGB array, got shape {image.shape}")

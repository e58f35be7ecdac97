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

# cv2 conversion codes (to, back) per colour space; "rgb" needs none.
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

    HSV and LAB work on float32 conversions of the images scaled to [0, 1] (no 8-bit rounding of the
    intermediate colour space; in float, cv2's hue is in degrees [0, 360), L in [0, 100]). Hue is matched as a
    plain channel, as Deforum does, ignoring that it is circular. Colours that LAB matching pushes out of the
    RGB gamut are clipped. ``"none"`` returns a copy of ``image``. ``reference`` may have another size.
    """
    if mode not in get_args(ColorCoherence):
        raise ValueError(f"color coherence mode {mode!r} is not one of {get_args(ColorCoherence)}")
    _check_rgb(image, "image")
    _check_rgb(reference, "reference")
    if mode == "none":
        return image.copy()
    if mode == "rgb":
        return _to_uint8(match_histograms(image, reference))
    to_space, to_rgb = _CONVERSIONS[mode]
    converted = cv2.cvtColor(image.astype(np.float32) / 255, to_space)
    converted_reference = cv2.cvtColor(reference.astype(np.float32) / 255, to_space)
    matched = match_histograms(converted, converted_reference).astype(np.float32)
    return _to_uint8(cv2.cvtColor(matched, to_rgb) * 255)


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


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Round and clip to uint8."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)

"""SDXL's training sizes ("buckets"): about a megapixel at aspect ratios from 1:4 to 4:1.

SDXL was trained on images binned by aspect ratio to sizes of about 1024x1024 pixels (the SDXL report's
appendix lists them; A1111's and ComfyUI's resolution pickers offer these). Far from them (512x512, say)
SDXL models compose badly, so a render at such a size gets a warning naming the bucket nearest its aspect
ratio; the size itself is never changed.
"""

from __future__ import annotations

import math

BUCKETS: tuple[tuple[int, int], ...] = (
    (1024, 1024),
    (1152, 896), (896, 1152),
    (1216, 832), (832, 1216),
    (1344, 768), (768, 1344),
    (1536, 640), (640, 1536),
)  # fmt: skip
"""(width, height) of the common SDXL buckets, the sizes A1111 and ComfyUI users pick."""
PIXEL_TOLERANCE = 0.25
"""How far (as a share) a size's pixel count may be from a megapixel before it is "far"."""
ASPECT_TOLERANCE = 0.2
"""How far (log aspect ratio) a size may be from its nearest bucket before it is "far"."""


def nearest_bucket(width: int, height: int) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to ``width / height``."""
    aspect = math.log(width / height)
    return min(BUCKETS, key=lambda bucket: abs(math.log(bucket[0] / bucket[1]) - aspect))


def size_note(width: int, height: int) -> str | None:
    """A warning for a size far from every bucket (too few or too many pixels, or an aspect ratio between
    them), naming the nearest bucket; None for a size at or near one."""
    bucket = nearest_bucket(width, height)
    pixels = width * height / (bucket[0] * bucket[1])
    aspect = abs(math.log(width / height) - math.log(bucket[0] / bucket[1]))
    if abs(pixels - 1.0) <= PIXEL_TOLERANCE and aspect <= ASPECT_TOLERANCE:
        return None
    return (
        f"{width}x{height} is far from the sizes SDXL models were trained at; the nearest for this aspect "
        f"ratio is {bucket[0]}x{bucket[1]} (set animation.width/height)"
    )

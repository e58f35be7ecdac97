"""What a mode yields."""

from __future__ import annotations

from dataclasses import dataclass

import PIL.Image

from flipbook.sampling.requests import FrameRequest


@dataclass(frozen=True)
class Frame:
    index: int
    image: PIL.Image.Image
    request: FrameRequest

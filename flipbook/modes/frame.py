"""What a mode yields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import PIL.Image

from flipbook.sampling.requests import FrameRequest


@dataclass(frozen=True)
class Frame:
    index: int
    image: PIL.Image.Image
    request: FrameRequest


ResolvedPrompts = dict[int, tuple[str, tuple[tuple[Path, float, float | None], ...]]]
"""prompt text as planned -> (the prompt without LoRA tags, the LoRAs its tags name)"""

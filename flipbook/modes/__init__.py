"""Animation modes, registered in one place.

A mode is a module with ``render(spec, plan, core, events, prompts) -> Iterator[Frame]`` (``prompts``: keyframe ->
(prompt without LoRA tags, its LoRAs)). Adding a mode means writing that
module and adding one line to ``MODES``; nothing else changes.
"""

from __future__ import annotations

from types import ModuleType

from flipbook.errors import FlipbookError
from flipbook.modes import travel

MODES: dict[str, ModuleType] = {
    "travel": travel,
}


def get_mode(name: str) -> ModuleType:
    if name not in MODES:
        raise FlipbookError("animation.mode", name, f"one of: {', '.join(MODES)}")
    return MODES[name]

"""Animation modes, registered in one place.

A mode is a module with ``render(ctx: ModeContext) -> Iterator[Frame]`` (see ``modes/frame.py``),
``SECTION`` (the spec section it reads, None when it has none), ``resume_every(spec)`` (a resumed render
restarts at a multiple of this) and ``check_inputs(spec)`` (opens the mode's own input files before any model
loads). Optional hooks: ``resolve_spec(spec) -> Spec`` (fill in values that come from the mode's inputs, such
as a source video's frame rate, before the plan is built and recorded), ``soundtrack(spec) -> (path, offset)
| None`` (audio to mux when ``audio.file`` is not set) and ``source_frames(spec)`` (frames the output is
compared with in the run's temporal-consistency score). Adding a mode means writing that
module and adding one line to ``MODES``; nothing else changes. One module may serve several names
(``2d``/``3d``). Modules are imported when a render needs them, so validating a spec never imports torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from flipbook.errors import FlipbookError

MODES: dict[str, str] = {
    "travel": "flipbook.modes.travel",
    "2d": "flipbook.modes.camera",
    "3d": "flipbook.modes.camera",
    "interpolate": "flipbook.modes.interpolate",
    "video": "flipbook.modes.video",
    "variations": "flipbook.modes.variations",
    "svd": "flipbook.modes.svd",
    "animatediff": "flipbook.modes.animatediff",
}
VIDEO_INIT_MODES: tuple[str, ...] = ("interpolate", "video", "animatediff")
"""Modes that read ``init.video``; the spec rejects it for the others."""


def get_mode(name: str) -> ModuleType:
    if name not in MODES:
        raise FlipbookError("animation.mode", name, f"one of: {', '.join(MODES)}")
    return importlib.import_module(MODES[name])

"""The animation modes, registered in one place: :data:`REGISTERED`.

A mode is a package ``flipbook/modes/<name>/`` exporting one :class:`~flipbook.modes.base.Mode` descriptor
(its settings section, defaults, rules, summary, web UI form, render module and hooks: see ``base.py``). Adding a
mode means writing that package and adding its descriptor to :data:`REGISTERED`; the spec, the plan, the
summary, the server, the web UI and the Deforum import then know it, and nothing else changes. One package
may register several modes (``camera``: ``2d`` and ``3d``). Importing this never imports torch: a mode's
render module is imported when a render needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from pydantic import BaseModel

from flipbook.errors import FlipbookError
from flipbook.modes.animatediff import ANIMATEDIFF
from flipbook.modes.base import FormField, Mode
from flipbook.modes.camera import CAMERA_2D, CAMERA_3D
from flipbook.modes.interpolate import INTERPOLATE
from flipbook.modes.loop import LOOP
from flipbook.modes.restyle import RESTYLE
from flipbook.modes.svd import SVD
from flipbook.modes.travel import TRAVEL
from flipbook.modes.variations import VARIATIONS
from flipbook.modes.video import VIDEO
from flipbook.modes.videomodel import VIDEOMODEL

if TYPE_CHECKING:
    from flipbook.motion.camera import Camera
    from flipbook.spec.model import Spec
    from flipbook.spec.plan import Plan

REGISTERED: tuple[Mode, ...] = (
    TRAVEL,
    CAMERA_2D,
    CAMERA_3D,
    INTERPOLATE,
    VIDEO,
    VARIATIONS,
    SVD,
    ANIMATEDIFF,
    LOOP,
    RESTYLE,
    VIDEOMODEL,
)
"""Every mode, in the order the schema, errors and the web UI list them."""
DEFAULT_MODE = TRAVEL.name
"""``animation.mode`` when a spec leaves it out."""

MODES: Mapping[str, Mode] = MappingProxyType({mode.name: mode for mode in REGISTERED})


def get_mode(name: str) -> Mode:
    if name not in MODES:
        raise FlipbookError("animation.mode", name, f"one of: {', '.join(MODES)}")
    return MODES[name]


def sections() -> dict[str, type[BaseModel]]:
    """Every mode section by its spec key, once each (modes that share a section name the same model), in the
    order of :data:`REGISTERED`."""
    found: dict[str, type[BaseModel]] = {}
    for mode in REGISTERED:
        if mode.section is None or mode.settings is None:
            continue
        if found.setdefault(mode.section, mode.settings) is not mode.settings:
            raise TypeError(f"[{mode.section}] is registered with two models ({mode.name})")
    return found


def section_owners(section: str) -> tuple[str, ...]:
    """The modes whose settings are ``[section]``."""
    return tuple(mode.name for mode in REGISTERED if mode.section == section)


def mode_only_inputs() -> dict[str, tuple[str, ...]]:
    """Spec fields only some modes read (``init.video``), each with the modes that read it."""
    readers: dict[str, list[str]] = {}
    for mode in REGISTERED:
        for field in mode.inputs:
            readers.setdefault(field, []).append(mode.name)
    return {field: tuple(names) for field, names in readers.items()}


def camera_path_of(name: str) -> Callable[[Spec, Plan, tuple[int, int]], Camera]:
    """The mode's camera path for the motion preview (``Mode.camera_path``); FlipbookError naming
    ``animation.mode`` when the mode has none."""
    camera_path = get_mode(name).camera_path
    if camera_path is None:
        previewed = " or ".join(mode.name for mode in REGISTERED if mode.camera_path is not None)
        raise FlipbookError("animation.mode", name, f"{previewed} for a motion preview")
    return camera_path


def for_deforum(animation_mode: object) -> Mode | None:
    """The mode that imports Deforum's ``animation_mode`` (matched case-insensitively; a missing value is
    Deforum's "None"), or None when no mode does."""
    name = "None" if animation_mode is None else animation_mode
    if not isinstance(name, str):
        return None
    wanted = name.strip().casefold()
    return next((m for m in REGISTERED if wanted in (n.casefold() for n in m.deforum_modes)), None)


__all__ = [
    "DEFAULT_MODE",
    "MODES",
    "REGISTERED",
    "FormField",
    "Mode",
    "camera_path_of",
    "for_deforum",
    "get_mode",
    "mode_only_inputs",
    "section_owners",
    "sections",
]

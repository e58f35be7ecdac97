"""``2d`` and ``3d``: Deforum's keyframed camera animation, two modes in one package.

Both read ``[camera]`` (``settings.py``, owned here; ``interpolate`` reads its 2D schedules too) and render with
``render.py``; ``rules.py`` holds what needs only the spec and plan (the summary, the preview camera)."""

from __future__ import annotations

from flipbook.modes.base import FormField, Mode
from flipbook.modes.camera.rules import (
    camera_for,
    camera_path,
    describe_2d,
    describe_3d,
    diffused_frames,
    reads_2d,
    reads_3d,
)
from flipbook.modes.camera.settings import THREE_D, TWO_D, CameraSection

_RENDER = "flipbook.modes.camera.render"
_HYBRID = ("camera.hybrid_video",)


def _schedule_boxes(names: tuple[str, ...]) -> tuple[FormField, ...]:
    """The camera schedules the web UI's tab shows first (the others are under "More camera settings")."""
    return tuple(FormField(name, f"camera.{name}") for name in names)


CAMERA_2D = Mode(
    name=TWO_D,
    description="Deforum 2D: the previous frame zoomed, turned and slid (and perspective-flipped) by the camera, "
    "then partly re-diffused; with cadence N only every Nth frame is diffused.",
    render_module=_RENDER,
    section="camera",
    settings=CameraSection,
    inputs=_HYBRID,
    deforum_modes=("2D",),
    schedules=reads_2d,
    describe=describe_2d,
    camera_path=camera_path,
    form=_schedule_boxes(("zoom", "angle", "translation_x", "translation_y")),
)

CAMERA_3D = Mode(
    name=THREE_D,
    description="Deforum 3D: the previous frame lifted into 3D with a depth model, seen from the moved camera, "
    "then partly re-diffused; with cadence N only every Nth frame is diffused.",
    render_module=_RENDER,
    section="camera",
    settings=CameraSection,
    inputs=_HYBRID,
    deforum_modes=("3D",),
    schedules=reads_3d,
    describe=describe_3d,
    camera_path=camera_path,
    form=(
        *_schedule_boxes(
            (
                "translation_x",
                "translation_y",
                "translation_z",
                "rotation_3d_x",
                "rotation_3d_y",
                "rotation_3d_z",
            )
        ),
        FormField("depth_model", "camera.depth_model", label="Depth model (flat, tiny, folder or hub id)"),
    ),
)

__all__ = ["CAMERA_2D", "CAMERA_3D", "CameraSection", "camera_for", "diffused_frames"]

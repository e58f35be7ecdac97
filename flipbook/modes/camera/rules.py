"""What the ``2d`` and ``3d`` modes check and say with only the spec and its plan (no torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flipbook.modes.camera.settings import DEFAULTS, THREE_D, TWO_D, camera_schedules

if TYPE_CHECKING:
    from flipbook.motion.camera import Camera
    from flipbook.spec.model import Spec
    from flipbook.spec.plan import Plan


def reads_2d(spec: Spec) -> dict[str, frozenset[str]]:
    return {"camera": camera_schedules(TWO_D)}


def reads_3d(spec: Spec) -> dict[str, frozenset[str]]:
    return {"camera": camera_schedules(THREE_D)}


def describe_2d(spec: Spec, plan: Plan) -> list[str]:
    from flipbook.spec.summary import feedback_lines

    return [camera_line(spec, plan), *feedback_lines(plan)]


def describe_3d(spec: Spec, plan: Plan) -> list[str]:
    from flipbook.spec.summary import feedback_lines

    return [camera_line(spec, plan, depth=True), *feedback_lines(plan)]


def camera_line(spec: Spec, plan: Plan, depth: bool = False) -> str:
    """The camera schedules that move (the rest keep their defaults), and how frames are made."""
    c = spec.camera
    moving = [
        name
        for name in plan.frames[0].camera
        if len({f.camera[name] for f in plan.frames}) > 1 or plan.frames[0].camera[name] != DEFAULTS[name]
    ]
    shown = ", ".join(f"{name} {_camera_span(plan, name)}" for name in moving) or "no camera motion"
    depth_model = f"; depth {c.depth_model}" if depth else ""
    return f"camera: {shown}; cadence {c.cadence}; colour coherence {c.color_coherence}{depth_model}"


def _camera_span(plan: Plan, name: str) -> str:
    values = [f.camera[name] for f in plan.frames]
    low, high = min(values), max(values)
    return f"{low:.4g}" if low == high else f"{low:.4g} to {high:.4g}"


def camera_for(
    spec: Spec, plan: Plan, *, disparity=None, on_depth=None, size: tuple[int, int] | None = None
) -> Camera:
    """The spec's camera over the plan's per-frame ``[camera]`` values (see
    :func:`flipbook.motion.camera.camera_for`): 3D in the ``3d`` mode, else 2D (``2d``, and the interpolate
    mode's motion on its init frames); 3D without ``disparity`` sees a flat scene at ``near``. ``size``
    (width, height) other than the spec's scales 2D pixel translations to match."""
    from flipbook.motion import camera

    c, a = spec.camera, spec.animation
    return camera.camera_for(
        [frame.camera for frame in plan.frames], depth=a.mode == THREE_D, width=a.width, height=a.height,
        border=c.border, flip=c.perspective_flip, padding_mode=c.padding_mode, sampling_mode=c.sampling_mode,
        disparity=disparity, on_depth=on_depth, size=size,
    )  # fmt: skip


def camera_path(spec: Spec, plan: Plan, size: tuple[int, int]) -> Camera:
    """The motion preview's camera: no depth model (3D sees a flat scene at ``near``)."""
    return camera_for(spec, plan, size=size)


def diffused_frames(max_frames: int, cadence: int) -> list[int]:
    """Frames 0, N, 2N, ... and the last frame, so the animation always ends on a diffused frame."""
    frames = list(range(0, max_frames, cadence))
    if frames[-1] != max_frames - 1:
        frames.append(max_frames - 1)
    return frames

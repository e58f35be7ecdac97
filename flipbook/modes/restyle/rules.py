"""What the ``restyle`` mode checks, plans and says with the spec and its source video (no torch): the
keyframe choice is made here, when the plan is built, so ``flipbook plan``, frames.csv, ``validate``, the
server and the render all see the same keyframes (the plan columns ``restyle.keyframe`` and
``restyle.scene_cut``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from flipbook.errors import SpecError
from flipbook.propagation import keyframes as choice

if TYPE_CHECKING:
    from flipbook.spec.model import Spec
    from flipbook.spec.plan import Plan

KEYFRAME = "restyle.keyframe"
SCENE_CUT = "restyle.scene_cut"


def check_spec(spec: Spec) -> None:
    """A source video, and listed keyframes within the animation."""
    if spec.init.video is None:
        raise SpecError(
            "init.video", None, "the source video for restyle mode (a video, GIF or frame folder)"
        )
    r, n = spec.restyle, spec.animation.max_frames
    outside = [frame for frame in r.keyframe_list if frame >= n]
    if r.keyframes == "list" and outside:
        raise SpecError(
            "restyle.keyframe_list",
            r.keyframe_list,
            f"frame numbers from 0 to {n - 1} (animation.max_frames)",
        )


def read_source(spec: Spec) -> tuple[list[np.ndarray], list[float]]:
    """The chosen source frames at their own size (``start_frame``, every ``every_nth``, the first
    ``animation.max_frames`` of them) and their times in seconds; errors name the field."""
    from flipbook.io.readers import select_frames, video_frames_with_times

    r, n = spec.restyle, spec.animation.max_frames
    decoded, times = video_frames_with_times(spec.init.video, field="init.video")
    chosen = select_frames(times, every_nth=r.every_nth, start=r.start_frame)[:n]
    if len(chosen) < n:
        raise SpecError(
            "animation.max_frames",
            n,
            f"at most the {len(chosen)} frames chosen from init.video (restyle.start_frame, every_nth)",
            detail=f"the source has {len(decoded)} frames",
        )
    return [decoded[i] for i in chosen], [times[i] for i in chosen]


def columns(spec: Spec) -> dict[str, np.ndarray]:
    """The plan's keyframe columns: 1 at each keyframe (``restyle.keyframe``) and at each scene cut
    (``restyle.scene_cut``), else 0. The source is read when the choice depends on it (auto, or scene cuts
    searched for)."""
    r, n = spec.restyle, spec.animation.max_frames
    signatures = None
    if r.keyframes == "auto" or r.scene_cut < 1.0:
        signatures = [choice.signature(frame) for frame in read_source(spec)[0]]
    cuts = [] if signatures is None else choice.scene_cuts(signatures, r.scene_cut)
    if r.keyframes == "auto":
        keys = choice.automatic(
            n,
            lambda a, b: choice.change(signatures[a], signatures[b]),
            threshold=r.threshold,
            min_gap=r.min_gap,
            max_gap=r.max_gap,
            cuts=cuts,
        )
    else:
        listed = r.keyframe_list if r.keyframes == "list" else choice.every_nth(n, r.keyframe_every)
        keys = choice.with_cuts(listed, cuts, n)
    return {KEYFRAME: _marks(keys, n), SCENE_CUT: _marks(cuts, n)}


def _marks(frames: list[int], n: int) -> np.ndarray:
    marks = np.zeros(n)
    marks[frames] = 1.0
    return marks


def keyframes_of(plan: Plan) -> tuple[list[int], set[int]]:
    """The keyframes and the scene cuts the plan holds."""
    keys = [f.index for f in plan.frames if f.schedules[KEYFRAME]]
    cuts = {f.index for f in plan.frames if f.schedules[SCENE_CUT]}
    return keys, cuts


def frame_count(spec: Spec) -> str | None:
    """Without ``animation.fps`` the output keeps the source's timing, read at render."""
    a = spec.animation
    return None if "fps" in a.model_fields_set else f"{a.max_frames} frames at the source's frame rate"


def describe(spec: Spec, plan: Plan) -> list[str]:
    """The source, the keyframes as planned and how the frames between them are made."""
    r = spec.restyle
    keys, cuts = keyframes_of(plan)
    how = {
        "every": f"every {r.keyframe_every} frames",
        "auto": f"auto (change over {r.threshold:g}, {r.min_gap} to {r.max_gap} frames apart)",
        "list": "listed",
    }[r.keyframes]
    shown = ", ".join(map(str, keys[:12])) + (", ..." if len(keys) > 12 else "")
    cut_text = f"; scene cuts at {', '.join(map(str, sorted(cuts)))}" if cuts else ""
    pick = f"every {r.every_nth}" if r.every_nth > 1 else "every frame"
    grid = f", diffused {r.grid}x{r.grid} to a grid" if r.grid > 1 else ""
    return [
        f"restyle: {spec.init.video}, {pick} from frame {r.start_frame}"
        + ("; source audio kept" if r.keep_audio else ""),
        f"keyframes ({how}): {len(keys)} of {len(plan)}: {shown}{cut_text}; img2img with frame 0's seed{grid}",
        f"other frames: keyframes carried along the source's optical flow, {r.blend} blend",
    ]

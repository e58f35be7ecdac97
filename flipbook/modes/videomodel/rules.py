"""What the ``videomodel`` mode fills in, checks and says with only the spec and its plan (no torch).

Segments: with ``F = segment_frames`` and ``O = overlap`` each segment adds ``S = F - O`` frames. Segment 0
makes frames ``0 .. S``; segment ``k >= 1`` covers frames ``k*S - O + 1 .. k*S + S``, the first ``O`` of them
known (the video so far) and the rest new, so a resume restarts at a multiple of ``S``. The frame rules of the
model's family (Wan: ``4k + 1`` frames, sides multiples of 16) are checked here for built-in models and when
the model loads for others.

Video to video (``init.video``): frame ``i`` restyles source frame ``i``, so every segment's frames come from
the source, the last segment's too, whose length is rounded up to the model's rule: a clip of ``n`` frames
takes :func:`source_frames_needed` source frames, which the source must have (checked when its file is opened,
the error giving the nearest frame counts that fit).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from flipbook.errors import SpecError

if TYPE_CHECKING:
    from flipbook.models.families.family import Family
    from flipbook.spec.model import Spec
    from flipbook.spec.plan import FramePlan, Plan

CAPABILITY = "video diffusion"


def segment_step(spec: Spec) -> int:
    """Frames each segment adds: ``segment_frames - overlap``."""
    v = spec.videomodel
    return v.segment_frames - v.overlap


def segment_starts(spec: Spec) -> range:
    """The border frame of every segment (``k * S``): segment k makes the frames after it (segment 0 also
    frame 0). With ``loop`` the segments also reach frame ``max_frames`` (frame 0 again, never written)."""
    n, step = spec.animation.max_frames, segment_step(spec)
    reach = n if spec.videomodel.loop else n - 1
    return range(0, max(1, math.ceil(reach / step)) * step, step)


def segment_begin(spec: Spec, border: int) -> int:
    """The first frame a segment covers: 0 for the first, else ``border - overlap + 1``."""
    return 0 if border == 0 else border - spec.videomodel.overlap + 1


OVERLAP = "videomodel.overlap"
LOOP_END = "animation.max_frames"


def known_positions(spec: Spec, border: int) -> dict[int, str]:
    """The positions in the segment at ``border`` that it is conditioned on (see ``render.py``), each with the
    field that put an image there: a keyframe's (``init.image`` for frame 0), ``OVERLAP`` for the frames of
    the video so far, ``LOOP_END`` for a loop's frame after the last (frame 0 again)."""
    v, n = spec.videomodel, spec.animation.max_frames
    begin, step = segment_begin(spec, border), segment_step(spec)
    known = dict.fromkeys(range(border + 1 - begin), OVERLAP) if border > 0 else {}
    if border == 0 and spec.init.image is not None:
        known[0] = "init.image"
    for index, keyframe in enumerate(v.keyframes):
        if keyframe.frame < n and (keyframe.frame == border == 0 or border < keyframe.frame <= border + step):
            known[keyframe.frame - begin] = f"videomodel.keyframes[{index}].frame"
    if v.loop and border < n <= border + step:
        known[n - begin] = LOOP_END
    return known


def check_placement(spec: Spec, family: Family) -> None:
    """Every image a segment is conditioned on sits where the family's models can take it (its
    ``known_problem``, LTX-2's latent frames), checked before any model loads: one error naming the keyframe,
    overlap or frame count that put it elsewhere."""
    if family.known_problem is not None:
        check_positions(
            spec, lambda positions: family.known_problem(positions, family.frame_step), family.title
        )


def check_positions(
    spec: Spec, known_problem: Callable[[list[int]], tuple[list[int], str] | None], title: str
) -> None:
    """Every segment's known positions (:func:`known_positions`) through ``known_problem`` (the misplaced
    positions and what is allowed, naming the model, or None): the first misplaced one is an error naming its
    field (for a keyframe, with the nearest frames the same segment could take it at)."""
    for index, border in enumerate(segment_starts(spec)):
        known = known_positions(spec, border)
        problem = known_problem(sorted(known))
        if problem is None:
            continue
        misplaced, allowed = problem
        position, begin = misplaced[0], segment_begin(spec, border)
        field = known[position]
        values = {OVERLAP: spec.videomodel.overlap, LOOP_END: spec.animation.max_frames, "init.image": 0}
        detail = f"segment {index} starts at frame {begin}, so this image would be its frame {position}"
        if field not in values:
            others = sorted(set(known) - {position})
            reach = min(spec.videomodel.segment_frames, spec.animation.max_frames - begin)
            fits = [p for p in range(1, reach) if known_problem([*others, p]) is None]
            nearest = sorted(fits, key=lambda p: (abs(p - position), p))[:2]
            if nearest:
                frames = " or ".join(str(begin + p) for p in sorted(nearest))
                detail += f"; in this segment it could go at frame {frames}"
        raise SpecError(field, values.get(field, begin + position), allowed, detail=f"{title}: {detail}")


def family_of(spec: Spec) -> Family | None:
    """The family of a built-in model (its frame rules are known before loading), else None."""
    from flipbook.models.families import builtin_family

    return builtin_family(spec.videomodel.model, CAPABILITY)


def defaults(spec: Spec) -> dict[str, Any]:
    """Wan's 16 fps (with ``init.video``: the source's, filled in at render) and one segment (with ``loop``,
    one segment less its last frame, which is frame 0)."""
    v = spec.videomodel
    fps = {} if spec.init.video is not None else {"fps": 16.0}
    return fps | {"max_frames": v.segment_frames - 1 if v.loop else v.segment_frames}


def check_spec(spec: Spec) -> None:
    """Frame and size rules of the model's family, the overlap, keyframes and the loop's length; no refiner."""
    if spec.model.refiner is not None:
        raise SpecError(
            "model.refiner",
            spec.model.refiner,
            "none in videomodel mode (a refiner refines image checkpoints)",
        )
    family = family_of(spec)
    if family is not None:
        check_frame_rules(spec, family.frame_step, family.side_multiple, family.title)
    v, n = spec.videomodel, spec.animation.max_frames
    if v.overlap >= v.segment_frames:
        raise SpecError(
            "videomodel.overlap", v.overlap, f"fewer than videomodel.segment_frames ({v.segment_frames})"
        )
    frames = [k.frame for k in v.keyframes]
    if len(set(frames)) != len(frames):
        raise SpecError("videomodel.keyframes", frames, "one image per frame")
    if 0 in frames and spec.init.image is not None:
        raise SpecError("videomodel.keyframes", 0, "no keyframe at frame 0 together with init.image")
    step = segment_step(spec)
    if v.loop and spec.init.video is not None:
        raise SpecError(
            "videomodel.loop", True, "false with init.video (a restyled source keeps its own ending)"
        )
    if v.loop and len(segment_starts(spec)) == 1 and spec.init.image is None and 0 not in frames:
        raise SpecError(
            "videomodel.loop", True, "a start image (init.image, or a keyframe image at frame 0) for a loop of "
            "one segment (its end is conditioned on frame 0, which the same segment would make)",
        )  # fmt: skip
    if v.loop and n > 1 and (n - 1) % step == 0:
        raise SpecError(
            "animation.max_frames", n, f"a frame count that is not 1 more than a multiple of {step} with "
            f"videomodel.loop (e.g. {n - 1} or {n + 1})",
            detail="the loop's last frame would start a segment of its own, away from the one conditioned "
            "on frame 0",
        )  # fmt: skip
    if family is not None:
        check_placement(spec, family)


def check_frame_rules(spec: Spec, frame_step: int | None, side_multiple: int | None, title: str) -> None:
    """``segment_frames`` is ``k * frame_step + 1`` and the sides are multiples of ``side_multiple``; the
    error gives the nearest valid values."""
    v, a = spec.videomodel, spec.animation
    if frame_step and (v.segment_frames - 1) % frame_step:
        low = (v.segment_frames - 1) // frame_step * frame_step + 1
        raise SpecError(
            "videomodel.segment_frames", v.segment_frames,
            f"{frame_step}k+1 frames for {title}: the nearest are {low} and {low + frame_step}",
        )  # fmt: skip
    for name in ("width", "height"):
        value = getattr(a, name)
        if side_multiple and value % side_multiple:
            low = value // side_multiple * side_multiple
            nearest = f"{low} and {low + side_multiple}" if low else str(side_multiple)
            raise SpecError(
                f"animation.{name}",
                value,
                f"a multiple of {side_multiple} for {title}: the nearest are {nearest}",
            )


def source_frames_needed(frames: int, segment_frames: int, overlap: int, frame_step: int) -> int:
    """Source frames a video-to-video clip of ``frames`` frames reads: up to the end of its last segment,
    whose length is the model's ``frame_step * k + 1`` frames (at most ``segment_frames``)."""
    step = segment_frames - overlap
    border = (max(1, math.ceil((frames - 1) / step)) - 1) * step
    begin = 0 if border == 0 else border - overlap + 1
    length = (frames - begin - 1 + frame_step - 1) // frame_step * frame_step + 1
    return begin + min(segment_frames, length)


def check_source_length(spec: Spec, available: int, frame_step: int, title: str) -> None:
    """The source has every frame the segments read; else one error naming ``animation.max_frames`` with the
    nearest frame counts the source allows."""
    v, n = spec.videomodel, spec.animation.max_frames
    needed = source_frames_needed(n, v.segment_frames, v.overlap, frame_step)
    if needed <= available:
        return

    def fits(count: int) -> bool:
        return source_frames_needed(count, v.segment_frames, v.overlap, frame_step) <= available

    below = next((c for c in range(min(n, available), 0, -1) if fits(c)), None)
    above = next((c for c in range(n + 1, available + 1) if fits(c)), None)
    nearest = " and ".join(str(c) for c in (below, above) if c is not None) or "none"
    raise SpecError(
        "animation.max_frames", n, f"a frame count whose segments ({frame_step}k+1 frames each for {title}) "
        f"stay within the {available} frames of init.video: the nearest are {nearest}",
        detail=f"{n} frames read {needed} source frames",
    )  # fmt: skip


def check_steps(spec: Spec, frames: Sequence[FramePlan], family: Family) -> None:
    """Every segment's steps (the plan's at its first new frame) are at least the family's ``min_steps``."""
    for index, plan in enumerate(segment_plans(spec, frames)):
        if plan.steps < family.min_steps:
            raise SpecError(
                "sampling.steps", plan.steps, f"at least {family.min_steps} for {family.title}",
                detail=f"segment {index}",
            )  # fmt: skip


def segment_plans(spec: Spec, frames: Sequence[FramePlan]) -> list[FramePlan]:
    """Each segment's plan: the plan's at its first new frame (segment 0: at frame 0)."""
    return [frames[0 if border == 0 else min(border + 1, len(frames) - 1)] for border in segment_starts(spec)]


def check_strength(spec: Spec, frames: Sequence[FramePlan]) -> None:
    """Video to video runs ``int(steps * strength)`` steps per segment (diffusers' rule): at least one."""
    for index, plan in enumerate(segment_plans(spec, frames)):
        strength = plan.schedules["videomodel.strength"]
        if int(plan.steps * strength) < 1:
            raise SpecError(
                "videomodel.strength", strength, f"at least 1/steps = {1 / plan.steps:.3g} (one step of "
                f"sampling.steps = {plan.steps} from the noised source)", detail=f"segment {index}",
            )  # fmt: skip


def check_plan(spec: Spec, frames: Sequence[FramePlan]) -> None:
    """Prompts are plain text (the model's own tokenizer: no composable parts); no ControlNet; the steps the
    family's scheduler needs. (The model samples with its own scheduler, whose shift is
    ``videomodel.shift``: ``sampling.sampler`` is not read.)"""
    from flipbook.prompting.grammar import split_composable

    family = family_of(spec)
    if family is not None:
        check_steps(spec, frames, family)
    if spec.init.video is not None:
        check_strength(spec, frames)

    if spec.controlnet:
        raise SpecError(
            "controlnet", f"{len(spec.controlnet)} unit(s)", "no ControlNet units in videomodel mode"
        )
    for frame in frames:
        for text in (frame.prompt, frame.negative_prompt):
            if len(split_composable(text)) > 1:
                raise SpecError(
                    "prompts", text, "prompts without composable parts (AND, |) in videomodel mode",
                    detail=f"at frame {frame.index}",
                )  # fmt: skip


def describe(spec: Spec, plan: Plan) -> list[str]:
    """The model, the segments and what conditions them."""
    v = spec.videomodel
    starts = segment_starts(spec)
    start = f"from the init image {spec.init.image}" if spec.init.image else "from the prompt"
    extras = []
    if spec.init.video is not None:
        extras.append(
            f"restyling {spec.init.video} frame for frame (video to video, strength {v.strength}"
            + ("; its audio kept)" if v.keep_audio else ")")
        )
    used = [k.frame for k in v.keyframes if k.frame < spec.animation.max_frames]
    if used:
        extras.append("keyframe images at frames " + ", ".join(map(str, used)))
    if len(used) < len(v.keyframes):
        late = [str(k.frame) for k in v.keyframes if k.frame >= spec.animation.max_frames]
        extras.append(f"keyframe images at frames {', '.join(late)} are past the last frame (not used)")
    if v.loop:
        extras.append("looped: the frame after the last is conditioned on frame 0")
    family = family_of(spec)
    if family is not None and family.sample_with_audio is not None and spec.init.video is None:
        extras.append("the audio the model makes with each segment joined into the soundtrack (NAME.wav)")
    chained = f"conditioned on the last {v.overlap} frame(s) before it"
    if spec.init.video is not None:  # a text-to-video model restyles each segment on its own
        chained += " (image-to-video models)"
    return [
        f"videomodel: {v.model}, {len(starts)} segment(s) of {v.segment_frames} frames, each after the first "
        f"{chained}, with the model's own scheduler; segment 0 {start}"
        + ("; " + "; ".join(extras) if extras else "")
    ]

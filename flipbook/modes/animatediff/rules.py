"""What the ``animatediff`` mode fills in, checks and says with only the spec and its plan (no torch): every
frame is denoised in one sampling run, so what a sampling run takes once is one value for the animation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flipbook.errors import SpecError
from flipbook.spec.fields import is_string_schedule

if TYPE_CHECKING:
    from flipbook.spec.model import Spec
    from flipbook.spec.plan import FramePlan, Plan


def defaults(spec: Spec) -> dict[str, Any]:
    """AnimateDiff's 8 fps and as many frames as one context window."""
    return {"fps": 8.0, "max_frames": spec.animatediff.context_length}


def check_plan(spec: Spec, frames: Sequence[FramePlan]) -> None:
    """One checkpoint, step count and sampler (and strength, from an init video); no composable prompts; the
    preset's sampler; a clip starts from an image or a video."""
    if spec.init.image is not None and spec.init.video is not None:
        raise SpecError(
            "init.image", str(spec.init.image), "no init image together with init.video in animatediff mode"
        )
    if spec.model.refiner is not None:
        raise SpecError(
            "model.refiner", spec.model.refiner, "none in animatediff mode",
            detail="every frame is denoised together by the motion UNet; a refiner has no motion module",
        )  # fmt: skip
    values = {
        "model.name": [f.checkpoint for f in frames],
        "sampling.steps": [f.steps for f in frames],
        "sampling.sampler": [f.sampler for f in frames],
    }
    if spec.init.video is not None:
        values["animation.strength"] = [f.strength for f in frames]
    for field_name, per_frame in values.items():
        distinct = list(dict.fromkeys(per_frame))
        if len(distinct) > 1:
            raise SpecError(
                field_name, f"{distinct[0]} then {distinct[1]}", "one value for the whole animation in "
                "animatediff mode", detail="every frame is denoised in the same sampling run",
            )  # fmt: skip
    from flipbook.prompting.grammar import split_composable

    for frame in frames:
        for text in (frame.prompt, frame.next_prompt):
            if len(split_composable(text)) > 1:
                raise SpecError(
                    "prompts", text, "prompts without composable parts (AND, |) in animatediff mode",
                    detail=f"at frame {frame.index}",
                )  # fmt: skip
    _preset_sampler(spec)


def _preset_sampler(spec: Spec) -> None:
    """A preset brings its sampler (LCM, Euler); a different sampler written in the spec is an error rather
    than silently replaced. A spec that leaves the sampler unset gets the preset's."""
    written = spec.sampling.sampler
    if spec.animatediff.preset == "none" or "sampler" not in spec.sampling.model_fields_set:
        return
    from flipbook.models.families.animatediff.presets import PRESETS
    from flipbook.samplers.names import resolve_sampler

    preset = PRESETS[spec.animatediff.preset]
    if preset.sampler is None:
        return
    if is_string_schedule(written) or resolve_sampler(written) != resolve_sampler(preset.sampler):
        raise SpecError(
            "sampling.sampler", written,
            f'"{preset.sampler}" with animatediff.preset = "{preset.name}" (or leave the sampler unset)',
        )  # fmt: skip


def prompts_loop(spec: Spec) -> bool:
    """``closed_loop`` R+P or A (and more frames than one context window): prompts travel from the last keyframe
    back to the first, which they reach at frame ``max_frames`` (the A1111 extension's loop)."""
    from flipbook.clips.windows import ContextOptions, prompts_loop

    a = spec.animatediff
    options = ContextOptions(length=a.context_length, overlap=a.overlap(), closed_loop=a.closed_loop)
    return prompts_loop(spec.animation.max_frames, options)


def describe(spec: Spec, plan: Plan) -> list[str]:
    """The motion module, the context windows and the loop, and what the clip starts from."""
    d = spec.animatediff
    frames = spec.animation.max_frames
    windows = (
        "one window"
        if frames <= d.context_length
        else f"windows of {d.context_length} overlapping {d.overlap()}, stride {d.context_stride}, "
        f"{d.context_schedule}, {d.fuse_method} fusing"
    )
    extras = [name for name, on in (("FreeInit", d.free_init), ("FreeNoise", d.free_noise)) if on]
    start = "txt2img"
    if spec.init.video is not None:
        start = f"the init video {spec.init.video}"
    elif spec.init.image is not None:
        start = f"init image {spec.init.image}" + (f" to end image {d.end_image}" if d.end_image else "")
    preset = f", preset {d.preset}" if d.preset != "none" else ""
    return [
        f"animatediff: motion module {d.motion_module}{preset}; {windows}; closed loop {d.closed_loop}; "
        f"text {spec.animation.text_interpolation()}"
        + (f"; {', '.join(extras)}" if extras else "")
        + f"; frames are {start}"
    ]

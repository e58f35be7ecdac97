"""What the ``svd`` mode fills in, checks and says with only the spec and its plan (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flipbook.errors import SpecError

if TYPE_CHECKING:
    from flipbook.spec.model import Spec
    from flipbook.spec.plan import FramePlan, Plan


def defaults(spec: Spec) -> dict[str, Any]:
    """SVD's training size and rate, 1024x576 at 7 fps, and one clip (``svd.num_frames``; when that is unset
    too, the model's count, filled in at render: see ``render.resolve_spec``)."""
    values: dict[str, Any] = {"fps": 7.0, "width": 1024, "height": 576}
    if spec.svd.num_frames is not None:
        values["max_frames"] = spec.svd.num_frames
    return values


def sizes_of_64(spec: Spec) -> None:
    for name in ("width", "height"):
        if getattr(spec.animation, name) % 64:
            raise SpecError(
                f"animation.{name}", getattr(spec.animation, name), "a multiple of 64 for svd mode"
            )


def check_plan(spec: Spec, frames: Sequence[FramePlan]) -> None:
    """Guidance rises from the first frame to the last; no ControlNet; one prompt (SVD is conditioned on the
    start image only: a prompt that changes after frame 0 would never be used)."""
    svd = spec.svd
    if svd.min_guidance_scale > svd.max_guidance_scale:
        raise SpecError(
            "svd.min_guidance_scale",
            svd.min_guidance_scale,
            f"at most svd.max_guidance_scale ({svd.max_guidance_scale:g}): guidance rises from the first frame "
            "to the last",
        )
    if spec.controlnet:
        raise SpecError(
            "controlnet",
            f"{len(spec.controlnet)} unit(s)",
            "no ControlNet units in svd mode (SVD takes none)",
        )
    first = (frames[0].prompt, frames[0].negative_prompt)
    changed = next((f for f in frames if (f.prompt, f.negative_prompt) != first), None)
    if changed is not None:
        raise SpecError(
            "prompts",
            changed.prompt,
            "one prompt for the whole video in svd mode (SVD has no text conditioning: the prompt only makes "
            "frame 0 when init.image is not set)",
            detail=f"the prompt changes at frame {changed.index}",
        )


def frame_count(spec: Spec) -> str | None:
    """Without ``animation.max_frames`` (and ``svd.num_frames``) the animation is one clip of the model's."""
    a = spec.animation
    if "max_frames" in a.model_fields_set:
        return None
    return f"one clip of the model's frame count (read at render) at {a.fps:g} fps"


def describe(spec: Spec, plan: Plan) -> list[str]:
    """The video model, clip length and conditioning; frame 0 is the init image or txt2img."""
    v = spec.svd
    clip = f"{v.num_frames} frames per clip" if v.num_frames else "the model's frames per clip"
    start = f"the init image {spec.init.image}" if spec.init.image else "made by txt2img from the prompt"
    brush = "; motion brush init.mask" if spec.init.mask else ""
    return [
        f"svd: {v.model}, {clip} (chained until max_frames), {v.num_inference_steps} steps, motion bucket "
        f"{v.motion_bucket_id}, noise aug {v.noise_aug_strength:g}, guidance {v.min_guidance_scale:g} to "
        f"{v.max_guidance_scale:g}; frame 0 is {start}{brush}"
    ]

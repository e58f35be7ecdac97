"""What the ``loop`` mode plans, checks and says with only the spec and its plan (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from flipbook.errors import SpecError

if TYPE_CHECKING:
    import numpy as np

    from flipbook.spec.model import Spec
    from flipbook.spec.plan import AudioFeatures, FramePlan, Plan


def closes_the_loop(spec: Spec) -> bool:
    """The prompts travel from the last keyframe back to the first."""
    return True


def walk(spec: Spec, starts: Sequence[int], audio: AudioFeatures) -> np.ndarray:
    """The eased weight toward the next keyframe at every frame, the last keyframe's toward the first."""
    from flipbook.spec.easing import walk_weights

    return walk_weights(
        list(starts), spec.animation.max_frames, spec.loop.easing, closed=True, field="loop.easing"
    )


def no_init_image(spec: Spec) -> None:
    """Every frame is txt2img from the walk: an init image or mask would be ignored, so it is refused."""
    for name in ("image", "mask"):
        value = getattr(spec.init, name)
        if value is not None:
            raise SpecError(
                f"init.{name}", str(value),
                "no init image or mask in loop mode: every frame is txt2img from the walk (interpolate takes one)",
            )  # fmt: skip


def two_keyframes(spec: Spec, frames: Sequence[FramePlan]) -> None:
    """A loop walks from keyframe to keyframe and back: it needs two keyframes within the animation."""
    keys = sorted({frame.prompt_key for frame in frames})
    if len(keys) < 2:
        raise SpecError(
            "prompts", f"{len(keys)} keyframe within the animation",
            "at least two prompt keyframes within animation.max_frames: the loop walks from each to the next "
            "and from the last back to the first",
        )  # fmt: skip


def describe(spec: Spec, plan: Plan) -> list[str]:
    """The walk round the loop: noise, easing, text blending, batching, where it closes."""
    w = spec.loop
    first = min(frame.prompt_key for frame in plan.frames)
    return [
        f"loop walk: {w.noise} noise, easing {w.easing}, text {spec.animation.text_interpolation()}, "
        f"{w.batch_size} frames per batch; frames are txt2img, and the last frame walks back into keyframe "
        f"{first}"
    ]

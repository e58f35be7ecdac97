"""``travel``: prompt travel through img2img feedback, the simplest Deforum-style animation.

Frame 0 is txt2img from the first keyframe's prompt (or the init image through img2img); every later frame
is the previous frame through img2img with the prompt in force at that frame (prompts hold until the next
keyframe, as in Deforum 2D/3D, unless ``animation.prompt_interpolation`` is ``lerp`` or ``slerp``, which blend
the text embeddings toward the next keyframe's prompt; LoRAs follow the keyframe in force). Per-frame
cfg, steps, sampler, checkpoint, strength and seed come from the plan: strength follows Deforum (the share of
the previous frame kept, so denoise = 1 - strength) and seeds follow Deforum's seed behaviours.
"""

from __future__ import annotations

from collections.abc import Iterator

from flipbook.modes.frame import (
    Frame,
    ModeContext,
    animation_mask,
    first_frame_request,
    frame_request,
    keep_still,
    still_image,
)
from flipbook.spec.model import Spec


def resume_every(spec: Spec) -> int:
    """Every frame is made from the one before, so a resume can continue from any frame."""
    return 1


def check_inputs(spec: Spec) -> None:
    """No input files beyond the init image and mask every mode reads."""


def render(ctx: ModeContext) -> Iterator[Frame]:
    mask = animation_mask(ctx.spec)
    previous = ctx.run.load(ctx.start) if ctx.start >= 0 else None
    still = still_image(ctx) if ctx.start >= 0 else None
    for frame in ctx.plan.frames[ctx.start + 1 :]:
        first = frame.index == 0
        request = first_frame_request(ctx) if first else frame_request(ctx, frame, previous)
        image = ctx.cores[frame.checkpoint].generate([request])[0]
        if first:
            still = still_image(ctx, image)
        image = keep_still(image, still, mask)
        yield Frame(frame.index, image, request)
        previous = image

"""``loop``: the latent walk around a closed path (see ``settings.py``).

Keyframe k's noise is the seed's at frame k (or frame 0's for every keyframe with ``loop.noise = "fixed"``);
frame i starts from its keyframe's noise slerped toward the next keyframe's at the plan's walk weight, the last
keyframe's toward the first (:class:`~flipbook.sampling.noise.KeyframeWalk`, closed), with the prompt
embeddings mixed at the same weight (the plan's ``next_prompt``: the first keyframe's after the last). A
keyframe frame is exactly a plain txt2img with its seed. No frame depends on another, so frames render
``loop.batch_size`` at a time (:func:`~flipbook.modes.frame.independent_frames`) and a resume continues at the
next frame.
"""

from __future__ import annotations

from collections.abc import Iterator

from flipbook.modes.base import Split
from flipbook.modes.frame import Frame, ModeContext, frame_request, independent_frames, latent_shape
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.noise import KeyframeWalk
from flipbook.sampling.requests import FrameRequest
from flipbook.spec.model import Spec
from flipbook.spec.plan import FramePlan, Plan


def resume_every(spec: Spec) -> int:
    """Frames are independent: a resume continues right after the last frame on disk."""
    return 1


def split(spec: Spec, plan: Plan) -> Split | None:
    """Frames are independent: a job splits at multiples of the batch size, so every frame is made in the
    same batch as in one uninterrupted render (batching can move a pixel by one level)."""
    return Split(spec.loop.batch_size)


def check_inputs(spec: Spec) -> None:
    """The walk reads no input file."""


def render(ctx: ModeContext) -> Iterator[Frame]:
    spec, plan = ctx.spec, ctx.plan
    fixed = spec.loop.noise == "fixed"
    keys = (frame.prompt_key for frame in plan.frames)
    walk = KeyframeWalk(keys, lambda key: plan[0 if fixed else key].seed, closed=True)

    def request(core: SamplingCore, frame: FramePlan) -> FrameRequest:
        noise = walk.noise(frame.index, frame.prompt_key, frame.blend, latent_shape(core, spec))
        return frame_request(ctx, frame, latents=noise)

    frames = range(ctx.start + 1, len(plan))
    for frame, made, image in independent_frames(ctx, frames, spec.loop.batch_size, request):
        yield Frame(frame.index, image, made)

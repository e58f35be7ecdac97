"""``travel``: prompt travel through img2img feedback, the simplest Deforum-style animation.

Frame 0 is txt2img from the first keyframe's prompt; every later frame is the previous frame through img2img
with the prompt in force at that frame (prompts hold until the next keyframe, as in Deforum 2D/3D, and so do
the LoRAs named in that prompt's ``<lora:...>`` tags). Per-frame cfg, strength and seed come from the plan:
strength follows Deforum (the share of the previous frame kept, so denoise = 1 - strength) and seeds follow
Deforum's seed behaviours (``iter`` by default: seed, seed + 1, ...).
"""

from __future__ import annotations

from collections.abc import Iterator

import PIL.Image

from flipbook.modes.frame import Frame, ResolvedPrompts
from flipbook.runs.events import Events
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest
from flipbook.spec.model import Spec
from flipbook.spec.plan import FramePlan, Plan


def frame_request(
    spec: Spec, frame: FramePlan, previous: PIL.Image.Image | None, prompts: ResolvedPrompts
) -> FrameRequest:
    """The request for one frame given the previous image (None for the first frame)."""
    s, a = spec.sampling, spec.animation
    prompt, loras = prompts[frame.prompt]
    common = dict(
        prompt=prompt,
        negative_prompt=prompts[frame.negative_prompt][0],
        seed=frame.seed,
        num_inference_steps=s.steps,
        guidance_scale=frame.cfg,
        sampler=frame.sampler,
        width=a.width,
        height=a.height,
        clip_skip=s.clip_skip,
        loras=loras,
    )
    if previous is None:
        return FrameRequest(**common)
    return FrameRequest(**common, image=previous, strength=frame.denoise)


def render(
    spec: Spec, plan: Plan, core: SamplingCore, events: Events, prompts: ResolvedPrompts
) -> Iterator[Frame]:
    previous = None
    for frame in plan.frames:
        request = frame_request(spec, frame, previous, prompts)
        image = core.generate([request])[0]
        yield Frame(frame.index, image, request)
        previous = image

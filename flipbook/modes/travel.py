"""``travel``: prompt travel through img2img feedback, the simplest Deforum-style animation.

Frame 0 is txt2img from the first keyframe's prompt; every later frame is the previous frame through img2img
with the prompt in force at that frame (prompts hold until the next keyframe, as in Deforum 2D/3D, and so do
the LoRAs named in that prompt's ``<lora:...>`` tags). Strength
follows Deforum: the share of the previous frame kept, so denoise = 1 - strength. Seeds iterate per frame
(seed + frame), Deforum's default.
"""

from __future__ import annotations

from collections.abc import Iterator

import PIL.Image

from flipbook.modes.frame import Frame, ResolvedPrompts
from flipbook.runs.events import Events
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest
from flipbook.spec.model import Spec


def frame_request(
    spec: Spec, index: int, previous: PIL.Image.Image | None, prompts: ResolvedPrompts
) -> FrameRequest:
    """The request for frame ``index`` given the previous frame (None for the first)."""
    s, a = spec.sampling, spec.animation
    prompt, loras = prompts[spec.prompt_key_at(index)]
    common = dict(
        prompt=prompt,
        negative_prompt=spec.negative_prompt,
        seed=(s.seed + index) % 2**32,
        num_inference_steps=s.steps,
        guidance_scale=s.cfg,
        sampler=s.sampler,
        width=a.width,
        height=a.height,
        clip_skip=s.clip_skip,
        loras=loras,
    )
    if previous is None:
        return FrameRequest(**common)
    return FrameRequest(**common, image=previous, strength=round(1.0 - a.strength, 6))


def render(spec: Spec, core: SamplingCore, events: Events, prompts: ResolvedPrompts) -> Iterator[Frame]:
    previous = None
    for index in range(spec.animation.max_frames):
        request = frame_request(spec, index, previous, prompts)
        image = core.generate([request])[0]
        yield Frame(index, image, request)
        previous = image

"""LTX-2 sampling: one segment from prompt states and any frames already known.

As for LTX-Video 0.9 (``sampling/ltx.py``), diffusers' own pipelines already condition on images at any frames
(``LTX2ConditionPipeline``: conditions at latent frames, strength 1), so a segment is diffusers' pipeline
called with the segment's values: ``LTX2Pipeline`` with no known frames, ``LTX2ImageToVideoPipeline`` with a
start image alone (segment 0 from an init image; a later segment on the previous one's last frame, the
default ``overlap`` of 1), ``LTX2ConditionPipeline`` with other known frames (:func:`latent_conditions`).
Guidance is plain classifier-free guidance for video and audio (``GUIDANCE`` in the family's loading module).
What flipbook adds is around it: prompt states encoded once per prompt and reused (the Gemma states; each
pipeline runs its own connectors on them), progress and cancel per step through :class:`~flipbook.events.Events`,
the flow shift overridden per segment, the segments themselves.

LTX-2 makes audio with the video. :func:`sample_with_audio` gives both; the ``videomodel`` mode's ``sample`` hook
(:func:`sample_segment`) returns only the frames and logs a warning that the segment's audio is dropped: the
mode's soundtrack hook sees the spec alone (not the run folder a resumed render would keep each segment's audio
in), and every segment's audio is made afresh (the conditions are images only), so segments joined would jump
at each border.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import PIL.Image
import torch

from flipbook.errors import FlipbookError
from flipbook.events import Events, StepEvent
from flipbook.models.families.ltx2.loading import GUIDANCE, Ltx2Bundle
from flipbook.sampling.segments import SegmentSettings

logger = logging.getLogger(__name__)


class Ltx2Prompt:
    """A prompt's Gemma states and attention mask, encoded when first needed and then kept."""

    def __init__(self, bundle: Ltx2Bundle, prompt: str, max_sequence_length: int) -> None:
        self._bundle, self._prompt, self._length = bundle, prompt, max_sequence_length
        self._states: tuple[torch.Tensor, torch.Tensor] | None = None

    def states(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._states is None:
            with torch.inference_mode():
                states, mask, _, _ = self._bundle.pipelines["text"].encode_prompt(
                    self._prompt, do_classifier_free_guidance=False, max_sequence_length=self._length,
                    device=self._bundle.device,
                )  # fmt: skip
            self._states = (states, mask)
        return self._states


def encode_prompt(bundle: Ltx2Bundle, prompt: str, max_sequence_length: int = 128) -> Ltx2Prompt:
    """One prompt's states (reused by every segment with that prompt)."""
    return Ltx2Prompt(bundle, prompt, max_sequence_length)


def sample_segment(
    bundle: Ltx2Bundle,
    prompt_embeds: Ltx2Prompt,
    negative_embeds: Ltx2Prompt | None,
    settings: SegmentSettings,
    *,
    generator: torch.Generator,
    known: Mapping[int, PIL.Image.Image] | None = None,
    events: Events | None = None,
    frames: Sequence[int] = (),
    video: Sequence[PIL.Image.Image] | None = None,
) -> torch.Tensor:
    """``settings.num_frames`` frames (frames x H x W x 3, float32 in [0, 1], on the CPU), conditioned on the
    images ``known`` at their positions in the segment; the audio LTX-2 makes with them is dropped (a warning
    says so: see the module docstring)."""
    pictures, audio = sample_with_audio(
        bundle, prompt_embeds, negative_embeds, settings, generator=generator, known=known, events=events,
        frames=frames, video=video,
    )  # fmt: skip
    span = f"frames {frames[0]}-{frames[-1]}" if frames else f"{settings.num_frames} frames"
    logger.warning(
        "LTX-2 made %.2f s of audio with %s; the videomodel mode writes video only: the audio is dropped",
        audio.shape[-1] / bundle.audio_rate, span,
    )  # fmt: skip
    return pictures


def sample_with_audio(
    bundle: Ltx2Bundle,
    prompt_embeds: Ltx2Prompt,
    negative_embeds: Ltx2Prompt | None,
    settings: SegmentSettings,
    *,
    generator: torch.Generator,
    known: Mapping[int, PIL.Image.Image] | None = None,
    events: Events | None = None,
    frames: Sequence[int] = (),
    video: Sequence[PIL.Image.Image] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A segment's frames (as :func:`sample_segment`) and its audio (channels x samples, float32 on the CPU,
    at ``bundle.audio_rate``)."""
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

    if video is not None:
        raise FlipbookError(
            "init.video", "a source video", "unset for an LTX-2 model (no video to video yet)"
        )
    events = events or Events()
    kind = pipeline_kind(known)
    pipe = bundle.pipelines[kind]
    config = dict(pipe.scheduler.config)
    if settings.shift is not None:
        config |= {"shift": settings.shift, "use_dynamic_shifting": False}
    pipe.scheduler = type(pipe.scheduler).from_config(config)  # a fresh one per segment

    def report(pipeline, step, timestep, tensors):
        events.step(StepEvent(step=step + 1, total_steps=settings.num_inference_steps, frames=tuple(frames)))
        return {}

    positive = prompt_embeds.states()
    negative = negative_embeds.states() if settings.guided and negative_embeds else (None, None)
    extra = {}
    if kind == "image":
        extra["image"] = known[0]
    elif kind == "conditions":
        extra["conditions"] = [
            LTX2VideoCondition(frames=images, index=index, strength=1.0)
            for index, images in latent_conditions(known, bundle.scale_temporal).items()
        ]
    out = pipe(
        prompt_embeds=positive[0], prompt_attention_mask=positive[1],
        negative_prompt_embeds=negative[0], negative_prompt_attention_mask=negative[1],
        height=settings.height, width=settings.width, num_frames=settings.num_frames, frame_rate=settings.fps,
        num_inference_steps=settings.num_inference_steps, guidance_scale=settings.guidance_scale,
        generator=generator, output_type="pt", callback_on_step_end=report,
        max_sequence_length=settings.max_sequence_length, **GUIDANCE, **extra,
    )  # fmt: skip
    pictures = out.frames[0].permute(0, 2, 3, 1).float().cpu()
    return pictures, out.audio[0].float().cpu()


def pipeline_kind(known: Mapping[int, PIL.Image.Image] | None) -> str:
    """Which pipeline makes a segment (``KINDS``): text alone, LTX-2's image to video for a start image alone
    (segment 0 from ``init.image``, a later one on the previous segment's last frame), else conditions."""
    if not known:
        return "text"
    return "image" if set(known) == {0} else "conditions"


def latent_conditions(
    known: Mapping[int, PIL.Image.Image], scale_temporal: int
) -> dict[int, list[PIL.Image.Image]]:
    """Known frames (segment positions -> images) as ``LTX2ConditionPipeline`` takes them: latent frame index ->
    the images from its first pixel frame on. LTX-2 places conditions at latent frames, whose first pixel frames
    are 0 and ``k * t + 1`` (``t``: the VAE's temporal factor): the frames known from position 0 on (a segment's
    overlap with the previous one) become one condition at latent frame 0 (``k * t + 1`` of them, as the
    pipeline keeps), every other known frame one at its latent frame. A known frame anywhere else is refused
    (moving it would put the image where the spec did not)."""
    positions = sorted(known)
    run = next((n for n in range(len(positions)) if positions[n] != n), len(positions))
    start = (run - 1) // scale_temporal * scale_temporal + 1 if run else 0
    conditions = {0: [known[p] for p in positions[:start]]} if start else {}
    misplaced = [p for p in positions[start:] if (p - 1) % scale_temporal]
    if misplaced:
        raise FlipbookError(
            "videomodel", f"images at segment frames {misplaced}", f"LTX-2 conditioning frames: a segment's "
            f"first {scale_temporal}k+1 frames (videomodel.overlap), or a frame {scale_temporal}k+1 after a "
            "segment's start (keyframes, a loop's last frame)",
        )  # fmt: skip
    conditions |= {(p - 1) // scale_temporal + 1: [known[p]] for p in positions[start:]}
    return conditions

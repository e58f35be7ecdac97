"""LTX-Video sampling: one segment from prompt states and any frames already known.

LTX-Video's own conditioning already takes images at any frames (``LTXConditionPipeline``: an image at frame 0
replaces the first latent frame, others join the sequence as extra tokens at their time position), which is
exactly what a flipbook segment needs (the previous segment's last frames, keyframe images, a loop's first
frame), so a segment is diffusers' pipeline called with the segment's values: ``LTXPipeline`` with no known
frames, ``LTXConditionPipeline`` with one image condition (strength 1) per known frame. What flipbook adds is
around it: video to video (a segment's source frames encoded, and ``LTXConditionPipeline`` given their latents
with ``denoise_strength``: the last ``int(steps * strength)`` steps run from them noised to that point, the
same rule as Wan's), prompt states encoded once per prompt and reused, progress and cancel per step through
:class:`~flipbook.events.Events`, the flow shift overridden per segment, the segments themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import PIL.Image
import torch

from flipbook.events import Events, StepEvent
from flipbook.models.families.ltx.loading import LtxBundle
from flipbook.sampling.segments import SegmentSettings


class LtxPrompt:
    """A prompt's states as each pipeline computes them, each encoded when first needed and then kept:
    ``LTXPipeline`` runs T5 without the attention mask, ``LTXConditionPipeline`` with it; both pass the tokens'
    mask on to the transformer."""

    def __init__(self, bundle: LtxBundle, prompt: str, max_sequence_length: int) -> None:
        self._bundle, self._prompt, self._length = bundle, prompt, max_sequence_length
        self._states: dict[bool, tuple[torch.Tensor, torch.Tensor]] = {}

    def for_pipeline(self, conditioned: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if conditioned not in self._states:
            pipe = self._bundle.pipelines[conditioned]
            with torch.inference_mode():
                states, mask, _, _ = pipe.encode_prompt(
                    self._prompt, do_classifier_free_guidance=False, max_sequence_length=self._length,
                    device=self._bundle.device,
                )  # fmt: skip
            self._states[conditioned] = (states, mask)
        return self._states[conditioned]


def encode_prompt(bundle: LtxBundle, prompt: str, max_sequence_length: int = 128) -> LtxPrompt:
    """One prompt's states for either pipeline (reused by every segment with that prompt)."""
    return LtxPrompt(bundle, prompt, max_sequence_length)


def sample_segment(
    bundle: LtxBundle,
    prompt_embeds: LtxPrompt,
    negative_embeds: LtxPrompt | None,
    settings: SegmentSettings,
    *,
    generator: torch.Generator,
    known: Mapping[int, PIL.Image.Image] | None = None,
    events: Events | None = None,
    frames: Sequence[int] = (),
    video: Sequence[PIL.Image.Image] | None = None,
) -> torch.Tensor:
    """``settings.num_frames`` frames (frames x H x W x 3, float32 in [0, 1], on the CPU), conditioned on the
    images ``known`` at their positions in the segment; restyled from ``video`` (its source frames) when
    given."""
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    events = events or Events()
    conditioned = bool(known) or video is not None
    pipe = bundle.pipelines[conditioned]
    config = dict(pipe.scheduler.config)
    if settings.shift is not None:
        config |= {"shift": settings.shift, "use_dynamic_shifting": False}
    pipe.scheduler = type(pipe.scheduler).from_config(config)  # a fresh one per segment

    total = settings.num_inference_steps - (settings.skipped_steps if video is not None else 0)

    def report(pipeline, step, timestep, tensors):
        events.step(StepEvent(step=step + 1, total_steps=total, frames=tuple(frames)))
        return {}

    positive = prompt_embeds.for_pipeline(conditioned)
    negative = (
        negative_embeds.for_pipeline(conditioned) if settings.guided and negative_embeds else (None, None)
    )
    extra = {}
    if known:
        extra["conditions"] = [
            LTXVideoCondition(image=image, frame_index=position, strength=1.0)
            for position, image in sorted(known.items())
        ]
    if video is not None:
        extra["latents"] = source_latents(bundle, video, settings)
        extra["denoise_strength"] = settings.strength
    video = pipe(
        prompt_embeds=positive[0], prompt_attention_mask=positive[1],
        negative_prompt_embeds=negative[0], negative_prompt_attention_mask=negative[1],
        height=settings.height, width=settings.width, num_frames=settings.num_frames, frame_rate=settings.fps,
        num_inference_steps=settings.num_inference_steps, guidance_scale=settings.guidance_scale,
        generator=generator, output_type="pt", callback_on_step_end=report,
        max_sequence_length=settings.max_sequence_length, **extra,
    ).frames  # fmt: skip
    return video[0].permute(0, 2, 3, 1).float().cpu()


def source_latents(
    bundle: LtxBundle, video: Sequence[PIL.Image.Image], settings: SegmentSettings
) -> torch.Tensor:
    """A segment's source frames as normalised latents (the VAE's mode: 1 x C x latent frames x h x w, float32),
    what ``LTXConditionPipeline`` noises to its ``denoise_strength``."""
    if len(video) != settings.num_frames:
        raise ValueError(f"a source of {settings.num_frames} frames for the segment, not {len(video)}")
    pipe = bundle.pipelines[True]
    pixels = pipe.video_processor.preprocess_video(list(video), settings.height, settings.width)
    vae = bundle.vae
    with torch.inference_mode():
        latent = vae.encode(pixels.to(bundle.device, vae.dtype)).latent_dist.mode()
    return pipe._normalize_latents(latent, vae.latents_mean, vae.latents_std).to(torch.float32)

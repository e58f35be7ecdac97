"""LTX-2 sampling: one segment from prompt states and any frames already known.

As for LTX-Video 0.9 (``sampling/ltx.py``), diffusers' own pipelines already condition on images at any frames
(``LTX2ConditionPipeline``: conditions at latent frames, strength 1), so a segment is diffusers' pipeline
called with the segment's values: ``LTX2Pipeline`` with no known frames, ``LTX2ImageToVideoPipeline`` with a
start image alone (segment 0 from an init image; a later segment on the previous one's last frame, the
default ``overlap`` of 1), ``LTX2ConditionPipeline`` with other known frames (:func:`latent_conditions`), and
for video to video with the source frames' latents and the schedule's last sigmas too (:func:`restyle_inputs`:
diffusers has no LTX-2 video-to-video pipeline; this is its condition pipeline's path for given latents).
Guidance is plain classifier-free guidance for video and audio (``GUIDANCE`` in the family's loading module).
What flipbook adds is around it: prompt states encoded once per prompt and reused (the Gemma states; each
pipeline runs its own connectors on them), progress and cancel per step through :class:`~flipbook.events.Events`,
the flow shift overridden per segment, the segments themselves.

LTX-2 makes audio with the video: :func:`sample_with_audio` (the family's ``sample_with_audio`` hook, what the
``videomodel`` mode calls) gives both, the audio decoded by the pipeline (its audio VAE, then the vocoder);
the mode keeps each segment's in the run folder and joins them into the video's soundtrack
(``modes/videomodel/audio.py``). :func:`sample_segment` gives the frames alone (benchmarks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import PIL.Image
import torch

from flipbook.errors import FlipbookError
from flipbook.events import Events, StepEvent
from flipbook.models.families.ltx2.loading import GUIDANCE, Ltx2Bundle
from flipbook.models.families.ltx2.placement import latent_frames
from flipbook.sampling.segments import SegmentSettings


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
    images ``known`` at their positions in the segment (the audio made with them is not returned: see
    :func:`sample_with_audio`)."""
    return sample_with_audio(
        bundle, prompt_embeds, negative_embeds, settings, generator=generator, known=known, events=events,
        frames=frames, video=video,
    )[0]  # fmt: skip


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

    events = events or Events()
    kind = "conditions" if video is not None else pipeline_kind(known)
    pipe = bundle.pipelines[kind]
    config = dict(pipe.scheduler.config)
    if settings.shift is not None:
        config |= {"shift": settings.shift, "use_dynamic_shifting": False}
    pipe.scheduler = type(pipe.scheduler).from_config(config)  # a fresh one per segment
    extra = {} if video is None else restyle_inputs(bundle, pipe, video, settings)
    total = len(extra.get("sigmas", ())) or settings.num_inference_steps

    def report(pipeline, step, timestep, tensors):
        events.step(StepEvent(step=step + 1, total_steps=total, frames=tuple(frames)))
        return {}

    positive = prompt_embeds.states()
    negative = negative_embeds.states() if settings.guided and negative_embeds else (None, None)
    if kind == "image":
        extra["image"] = known[0]
    elif kind == "conditions" and known:
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


def restyle_inputs(
    bundle: Ltx2Bundle, pipe, video: Sequence[PIL.Image.Image], settings: SegmentSettings
) -> dict[str, object]:
    """What ``LTX2ConditionPipeline`` takes to restyle a segment's source frames (video to video, SDEdit as
    diffusers' ``strength`` counts it): the frames' latents (the video VAE's mode, unnormalised: the pipeline
    normalises them), the last ``int(steps * strength)`` sigmas of the segment's schedule (as the pipeline
    spaces them, before the scheduler's shift) and, as ``noise_scale``, the first of them as the scheduler
    shifts it: the source is noised to the level the first kept step starts at. A dynamically shifting scheduler
    shifts by the sequence length, counted here from the segment's own latent tokens (conditions the pipeline
    appends after frame 0 lengthen its sequence, so its shift may differ slightly there)."""
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import calculate_shift, retrieve_timesteps

    if len(video) != settings.num_frames:
        raise ValueError(f"a source of {settings.num_frames} frames for the segment, not {len(video)}")
    pixels = pipe.video_processor.preprocess_video(list(video), settings.height, settings.width)
    vae = bundle.vae
    with torch.inference_mode():
        latents = vae.encode(pixels.to(bundle.device, vae.dtype)).latent_dist.mode().to(torch.float32)
    steps = settings.num_inference_steps
    kept = max(1, min(int(steps * settings.strength), steps))
    sigmas = np.linspace(1.0, 1 / steps, steps)[steps - kept :]
    tokens = latents.shape[2] * latents.shape[3] * latents.shape[4]  # LTX-2's patches are one latent pixel
    config = pipe.scheduler.config
    mu = calculate_shift(
        tokens, config.get("base_image_seq_len", 1024), config.get("max_image_seq_len", 4096),
        config.get("base_shift", 0.95), config.get("max_shift", 2.05),
    )  # fmt: skip
    scheduler = type(pipe.scheduler).from_config(config)
    retrieve_timesteps(scheduler, kept, bundle.device, None, sigmas=sigmas, mu=mu)
    return {"latents": latents, "sigmas": sigmas, "noise_scale": float(scheduler.sigmas[0])}


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
    the images from its first pixel frame on (the family's ``placement.latent_frames``). A known frame no
    latent frame starts with is refused (the mode checks the spec's with the same rule before loading)."""
    placed, misplaced = latent_frames(known, scale_temporal)
    if misplaced:
        raise FlipbookError(
            "videomodel", f"images at segment frames {misplaced}", f"LTX-2 conditioning frames: a segment's "
            f"first {scale_temporal}k+1 frames (videomodel.overlap), or a frame {scale_temporal}k+1 after a "
            "segment's start (keyframes, a loop's last frame)",
        )  # fmt: skip
    return {index: [known[p] for p in positions] for index, positions in placed.items()}

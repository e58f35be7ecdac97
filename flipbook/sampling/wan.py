"""Wan 2.x sampling: one segment of frames from prompt embeddings and any frames already known.

The maths are diffusers' ``WanPipeline`` (text to video) and ``WanImageToVideoPipeline`` (image, and first
and last image, to video); tests/test_wan_equivalence.py holds flipbook to <= 1e-4 of them for the same seed.
What flipbook generalises: an image-to-video model is conditioned on frames known at *any* positions of the
segment (the previous segment's last frames, keyframe images, the loop's first frame), not only the first and
last: the condition video holds those frames (zeros elsewhere) and the mask marks them, laid out per latent
frame exactly as the pipeline lays out its first and last frame, so {0} and {0, F - 1} are the pipeline's
own cases. The CLIP image embedding is the first known frame's (and for first-last-frame models, which
cross-attend to two images, the last known frame's: the first again when only the start is known).

Video to video (a ``video`` of the segment's source frames): the source's latents noised to the first of the
last ``int(steps * strength)`` timesteps start the loop, as diffusers' ``WanVideoToVideoPipeline`` does it
(<= 1e-4 of it for a text-to-video model); an image-to-video model is conditioned on its known frames too.

Random draws: one CPU generator per segment draws the initial latents in float32, as the pipelines do, so a
segment's frames depend only on its seed and inputs.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence

import PIL.Image
import torch
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

from flipbook.errors import FlipbookError
from flipbook.events import Events, StepEvent
from flipbook.models.families.wan.loading import WanBundle
from flipbook.sampling.segments import SegmentSettings

WanSettings = SegmentSettings
"""One Wan segment's sampling parameters (the shared :class:`SegmentSettings`)."""


def clean_prompt(text: str) -> str:
    """The pipelines' ``prompt_clean`` (HTML entities undone twice, whitespace collapsed), without ftfy."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text)).strip()).strip()


def encode_prompt(bundle: WanBundle, prompt: str, max_sequence_length: int = 512) -> torch.Tensor:
    """The text encoder's states for one prompt (1 x max_sequence_length x dim), zero past its tokens, as the
    pipelines compute them."""
    inputs = bundle.tokenizer(
        [clean_prompt(prompt)],
        padding="max_length",
        max_length=max_sequence_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    ids, mask = inputs.input_ids, inputs.attention_mask
    length = int(mask.gt(0).sum())
    with torch.inference_mode():
        states = bundle.text_encoder(ids.to(bundle.device), mask.to(bundle.device)).last_hidden_state
    states = states.to(bundle.dtype)[0, :length]
    padded = torch.cat([states, states.new_zeros(max_sequence_length - length, states.shape[1])])
    return padded.unsqueeze(0)


def sample_segment(
    bundle: WanBundle,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor | None,
    settings: WanSettings,
    *,
    generator: torch.Generator,
    known: Mapping[int, PIL.Image.Image] | None = None,
    events: Events | None = None,
    frames: Sequence[int] = (),
    video: Sequence[PIL.Image.Image] | None = None,
) -> torch.Tensor:
    """``settings.num_frames`` frames (frames x H x W x 3, float32 in [0, 1], on the CPU).

    ``known`` maps positions in the segment to images (at the segment's size) an image-to-video model is
    conditioned on; a text-to-video model takes none. ``frames`` names the segment's frames in the animation
    for progress events. ``video``: the segment's source frames to restyle (``settings.strength``).
    """
    latents = denoise_segment(
        bundle, prompt_embeds, negative_embeds, settings, generator=generator, known=known or {},
        events=events, frames=frames, video=video,
    )  # fmt: skip
    return decode(bundle, latents)


def denoise_segment(
    bundle: WanBundle,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor | None,
    settings: WanSettings,
    *,
    generator: torch.Generator,
    known: Mapping[int, PIL.Image.Image],
    events: Events | None = None,
    frames: Sequence[int] = (),
    video: Sequence[PIL.Image.Image] | None = None,
) -> torch.Tensor:
    """The denoised latents of one segment (1 x C x latent frames x h x w, normalised as the model sees them)."""
    events = events or Events()
    if known and not (bundle.takes_images or bundle.replaces_first_frames):
        raise ValueError("a text-to-video model takes no known frames")
    if bundle.takes_images and 0 not in known:
        raise ValueError("an image-to-video model needs the segment's first frame")
    problem = bundle.known_problem(known)
    if problem is not None:
        raise FlipbookError("videomodel", f"images at segment frames {problem[0]}", problem[1])
    with torch.inference_mode():
        scheduler = _scheduler(bundle, settings.shift)
        scheduler.set_timesteps(settings.num_inference_steps, device=bundle.device)
        begin = settings.skipped_steps * scheduler.order if video is not None else 0
        timesteps = scheduler.timesteps[begin:]
        scheduler.set_begin_index(begin)

        shape = _latent_shape(bundle, settings)
        latents = randn_tensor(shape, generator=generator, device=bundle.device, dtype=torch.float32)
        if video is not None:
            latents = scheduler.add_noise(_source_latents(bundle, video, settings), latents, timesteps[:1])
        condition = _condition(bundle, known, settings) if bundle.takes_images else None
        first = _first_frames(bundle, known, latents) if bundle.replaces_first_frames else None
        image_embeds = _image_embeds(bundle, known) if bundle.image_embeddings else None

        boundary = (
            bundle.boundary_ratio * scheduler.config.num_train_timesteps
            if bundle.boundary_ratio is not None
            else None
        )
        guidance_2 = (
            settings.guidance_scale_2 if settings.guidance_scale_2 is not None else settings.guidance_scale
        )
        for i, t in enumerate(timesteps):
            high_noise = boundary is None or t >= boundary
            model = bundle.transformer if high_noise else bundle.transformer_2
            scale = settings.guidance_scale if high_noise else guidance_2
            noise_pred = _predict(
                model, _replaced(latents, first), condition, t, prompt_embeds,
                negative_embeds if settings.guided else None, image_embeds, scale, bundle,
                None if first is None else first[1],
            )  # fmt: skip
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            events.step(StepEvent(step=i + 1, total_steps=len(timesteps), frames=tuple(frames)))
    return _replaced(latents, first)


def decode(bundle: WanBundle, latents: torch.Tensor) -> torch.Tensor:
    """Frames (frames x H x W x 3 in [0, 1], CPU float32) from normalised latents."""
    vae = bundle.vae
    with torch.inference_mode():
        latents = latents.to(bundle.device, vae.dtype)
        mean, inverse_std = _latent_stats(bundle, latents)
        video = vae.decode(latents / inverse_std + mean, return_dict=False)[0]
        out = _video_processor(bundle).postprocess_video(video, output_type="pt")
    return out[0].permute(0, 2, 3, 1).float().cpu()


# ---- pieces ---------------------------------------------------------------------------------------------


def _scheduler(bundle: WanBundle, shift: float | None):
    """A fresh copy of the model's scheduler, with the flow shift overridden when asked."""
    config = dict(bundle.scheduler.config)
    if shift is not None:
        key = "flow_shift" if "flow_shift" in config else "shift"
        config[key] = shift
    return type(bundle.scheduler).from_config(config)


def _latent_shape(bundle: WanBundle, settings: WanSettings) -> tuple[int, ...]:
    frames = (settings.num_frames - 1) // bundle.scale_temporal + 1
    s = bundle.scale_spatial
    return (1, int(bundle.vae.config.z_dim), frames, settings.height // s, settings.width // s)


def _video_processor(bundle: WanBundle) -> VideoProcessor:
    return VideoProcessor(vae_scale_factor=bundle.scale_spatial)


def _latent_stats(bundle: WanBundle, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = int(bundle.vae.config.z_dim)
    mean = torch.tensor(bundle.vae.config.latents_mean).view(1, z, 1, 1, 1).to(like.device, like.dtype)
    inverse_std = 1.0 / torch.tensor(bundle.vae.config.latents_std).view(1, z, 1, 1, 1)
    return mean, inverse_std.to(like.device, like.dtype)


def _source_latents(
    bundle: WanBundle, video: Sequence[PIL.Image.Image], settings: WanSettings
) -> torch.Tensor:
    """The source frames' normalised latents (the VAE's mode), as WanVideoToVideoPipeline.prepare_latents."""
    if len(video) != settings.num_frames:
        raise ValueError(f"a source of {settings.num_frames} frames for the segment, not {len(video)}")
    pixels = _video_processor(bundle).preprocess_video(
        list(video), height=settings.height, width=settings.width
    )
    vae = bundle.vae
    latent = vae.encode(pixels.to(bundle.device, vae.dtype)).latent_dist.mode().to(torch.float32)
    mean, inverse_std = _latent_stats(bundle, latent)
    return (latent - mean) * inverse_std


def _condition(
    bundle: WanBundle, known: Mapping[int, PIL.Image.Image], settings: WanSettings
) -> torch.Tensor:
    """The mask (temporal-factor channels per latent frame) and the known frames' latents, concatenated on
    channels: WanImageToVideoPipeline.prepare_latents for any set of known positions."""
    f, h, w = settings.num_frames, settings.height, settings.width
    processor = _video_processor(bundle)
    video = torch.zeros(1, 3, f, h, w, device=bundle.device)
    for position, image in known.items():
        video[:, :, position] = processor.preprocess(image, height=h, width=w).to(bundle.device)[0]
    vae = bundle.vae
    latent = vae.encode(video.to(vae.dtype)).latent_dist.mode().to(torch.float32)
    mean, inverse_std = _latent_stats(bundle, latent)
    latent = (latent - mean) * inverse_std

    temporal, s = bundle.scale_temporal, bundle.scale_spatial
    mask = torch.zeros(1, 1, f, h // s, w // s)
    mask[:, :, sorted(known)] = 1
    first = torch.repeat_interleave(mask[:, :, 0:1], dim=2, repeats=temporal)
    mask = torch.cat([first, mask[:, :, 1:]], dim=2)
    mask = mask.view(1, -1, temporal, h // s, w // s).transpose(1, 2).to(latent.device)
    return torch.cat([mask, latent], dim=1)


def _first_frames(
    bundle: WanBundle, known: Mapping[int, PIL.Image.Image], like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Wan 2.2 TI2V: the known first frames' normalised latents and the mask that is 0 on the latent frames
    they fill (1 elsewhere), as ``WanImageToVideoPipeline.prepare_latents`` makes them for ``expand_timesteps``
    models (its one start image; here also a segment's first ``4k+1`` frames, whole latent frames); None
    without known frames."""
    if not known:
        return None
    _, _, frames, h, w = like.shape
    processor = _video_processor(bundle)
    height, width = h * bundle.scale_spatial, w * bundle.scale_spatial
    pixels = torch.stack(
        [processor.preprocess(known[p], height=height, width=width)[0] for p in sorted(known)], dim=1
    )[None]
    vae = bundle.vae
    latent = vae.encode(pixels.to(bundle.device, vae.dtype)).latent_dist.mode().to(torch.float32)
    mean, inverse_std = _latent_stats(bundle, latent)
    latent = (latent - mean) * inverse_std
    mask = torch.ones(1, 1, frames, h, w, device=like.device)
    mask[:, :, : latent.shape[2]] = 0
    filled = torch.zeros_like(like)
    filled[:, :, : latent.shape[2]] = latent
    return filled, mask


def _replaced(latents: torch.Tensor, first: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """The latents with the known first latent frames put back (TI2V), as the pipeline blends them."""
    if first is None:
        return latents
    condition, mask = first
    return (1 - mask) * condition + mask * latents


def _image_embeds(bundle: WanBundle, known: Mapping[int, PIL.Image.Image]) -> torch.Tensor:
    """CLIP's penultimate hidden states of the first known frame (and the last one, for two-image models)."""
    first, last = known[min(known)], known[max(known)]
    images = [first] if bundle.image_embeddings == 1 else [first, last]
    inputs = bundle.image_processor(images=images, return_tensors="pt").to(bundle.device)
    states = bundle.image_encoder(**inputs, output_hidden_states=True).hidden_states[-2]
    return states.to(bundle.dtype)


def _predict(model, latents, condition, t, embeds, negative, image_embeds, scale, bundle, mask=None):
    """One step's noise prediction: conditional, and with guidance the unconditional mixed in."""
    dtype = bundle.dtype
    x = latents if condition is None else torch.cat([latents, condition], dim=1)
    x = x.to(dtype)
    timestep = _timestep(bundle, latents, t, mask)
    extra = {} if image_embeds is None else {"encoder_hidden_states_image": image_embeds}
    prediction = model(
        hidden_states=x, timestep=timestep, encoder_hidden_states=embeds, return_dict=False, **extra
    )
    prediction = prediction[0]
    if negative is None:
        return prediction
    unconditional = model(
        hidden_states=x, timestep=timestep, encoder_hidden_states=negative, return_dict=False, **extra
    )[0]
    return unconditional + scale * (prediction - unconditional)


def _timestep(
    bundle: WanBundle, latents: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The timestep per sample, or per token for models that take one per token (Wan 2.2 TI2V): 0 on the
    tokens of known first frames (``mask`` 0 there), as the pipelines compute it."""
    if not bundle.expand_timesteps:
        return t.expand(latents.shape[0])
    _, _, frames, h, w = latents.shape
    patch = bundle.transformer.config.patch_size
    if mask is None:
        tokens = frames * (h // patch[1]) * (w // patch[2])
        return t.expand(latents.shape[0], tokens)
    per_token = (mask[0][0][:, :: patch[1], :: patch[2]] * t).flatten()
    return per_token.unsqueeze(0).expand(latents.shape[0], -1)

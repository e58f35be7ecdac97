"""Stable Video Diffusion sampling: one clip of frames from one start image.

The maths are diffusers' ``StableVideoDiffusionPipeline``'s (tests/test_svd_mode.py checks the frames are the
same for the same image, seed and settings): the start image conditions twice, as a CLIP image embedding
(cross-attention) and as VAE latents of the image with ``noise_aug_strength`` of noise added, concatenated to
every frame's latents; the UNet also sees (fps - 1, motion_bucket_id, noise_aug_strength) as added time ids.
Classifier-free guidance (zero embedding and zero image latents as the unconditional input) rises linearly
from ``min_guidance_scale`` at the first frame to ``max_guidance_scale`` at the last, and is skipped entirely
when ``max_guidance_scale`` <= 1, as diffusers does. The scheduler is the model's own (Euler on Karras/EDM
sigmas for every SVD release); frames are decoded ``decode_chunk_size`` at a time by the temporal decoder.

What flipbook adds: progress, previews and cancel through :class:`~flipbook.events.Events`, and the motion
brush: with a mask (1 = animated), after every step the latents outside it are replaced by the start image's
latents noised to the step's sigma, so those parts follow the start image all the way down (the way
inpainting keeps its unmasked part) and end exactly on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch

# SVD's own CLIP preprocessing (blur, then bicubic resize to 224), used so embeddings match diffusers exactly.
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import (
    _resize_with_antialiasing,
)
from diffusers.schedulers import EulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor

from flipbook.events import Events, StepEvent
from flipbook.models.families.svd.loading import SvdBundle
from flipbook.sampling.steps import check_finite, latents_preview


@dataclass(frozen=True)
class SvdSettings:
    """The sampling parameters of one clip (``[svd]`` plus ``animation.fps``), with diffusers' defaults."""

    num_frames: int
    num_inference_steps: int = 25
    fps: float = 7.0
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.02
    min_guidance_scale: float = 1.0
    max_guidance_scale: float = 3.0
    decode_chunk_size: int | None = None

    @property
    def guided(self) -> bool:
        """Classifier-free guidance runs (two UNet rows per frame) only when some frame's scale is above 1."""
        return max(self.min_guidance_scale, self.max_guidance_scale) > 1


@dataclass(frozen=True)
class _Conditioning:
    """What every step feeds the UNet besides the latents; rows are (unconditional, conditional) when guided."""

    embeddings: torch.Tensor  # rows x 1 x dim
    image_latents: torch.Tensor  # rows x frames x C x h x w (unscaled VAE latents, as SVD was trained)
    time_ids: torch.Tensor  # rows x 3
    guidance: torch.Tensor  # 1 x frames x 1 x 1 x 1


class _MotionBrush:
    """Holds the latents outside the mask to the start image: ``x = m * x + (1 - m) * (x0 + sigma * noise)``,
    with ``noise`` each frame's own initial noise, so the held part is the trajectory the start image would
    have followed and lands exactly on its latents at sigma 0."""

    def __init__(self, mask: torch.Tensor, start_latents: torch.Tensor, noise: torch.Tensor) -> None:
        self.mask = mask  # 1 x 1 x 1 x h x w, 1 = free to move
        self.start = start_latents  # 1 x 1 x C x h x w, scaled like the denoised latents
        self.noise = noise  # 1 x frames x C x h x w

    def hold(self, latents: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        held = self.start + sigma.to(latents.dtype) * self.noise
        return self.mask * latents + (1 - self.mask) * held


def sample_clip(
    bundle: SvdBundle,
    image: PIL.Image.Image,
    settings: SvdSettings,
    *,
    generator: torch.Generator,
    events: Events | None = None,
    frames: Sequence[int] = (),
    mask: np.ndarray | None = None,
) -> torch.Tensor:
    """``settings.num_frames`` frames (frames x 3 x H x W, float32 in [0, 1], on the CPU) at the image's size.

    ``frames`` names the clip's frames in the animation for progress events; ``mask`` (H x W floats, 1 =
    animated) turns on the motion brush. The generator draws the noise-augmentation noise, then the initial
    latents, as diffusers does.
    """
    latents = denoise_clip(
        bundle, image, settings, generator=generator, events=events, frames=frames, mask=mask
    )
    return decode_frames(bundle, latents, settings.decode_chunk_size)


def denoise_clip(
    bundle: SvdBundle,
    image: PIL.Image.Image,
    settings: SvdSettings,
    *,
    generator: torch.Generator,
    events: Events | None = None,
    frames: Sequence[int] = (),
    mask: np.ndarray | None = None,
) -> torch.Tensor:
    """The denoised latents of one clip (1 x frames x C x h x w, scaled by the VAE's scaling factor)."""
    events = events or Events()
    with torch.inference_mode():
        # 1. The start image in [-1, 1] on the device (the pipeline's VideoProcessor does the same)
        pixels = _pixels(image, bundle.device)

        # 2. Conditioning: CLIP embedding, noise-augmented image latents, time ids, per-frame guidance
        conditioning = _conditioning(bundle, pixels, settings, generator)

        # 3. The schedule: a fresh copy of the model's scheduler (set_timesteps mutates it)
        scheduler = EulerDiscreteScheduler.from_config(bundle.scheduler.config)
        scheduler.set_timesteps(settings.num_inference_steps, device=bundle.device)

        # 4. Initial latents: unit noise scaled to the first sigma
        h, w = pixels.shape[-2] // bundle.vae_scale_factor, pixels.shape[-1] // bundle.vae_scale_factor
        channels = bundle.unet.config.in_channels // 2
        shape = (1, settings.num_frames, channels, h, w)
        noise = randn_tensor(
            shape, generator=generator, device=bundle.device, dtype=conditioning.embeddings.dtype
        )
        latents = noise * scheduler.init_noise_sigma
        brush = _motion_brush(bundle, pixels, mask, noise) if mask is not None else None

        # 5. Denoise, reporting every step (progress, preview, cancel)
        timesteps = scheduler.timesteps
        for i, t in enumerate(timesteps):
            latents = _step(bundle, scheduler, latents, t, conditioning, settings.guided)
            if brush is not None:
                latents = brush.hold(latents, scheduler.sigmas[i + 1])
            events.step(
                StepEvent(step=i + 1, total_steps=len(timesteps), frames=tuple(frames)),
                preview=lambda lat=latents: latents_preview(lat[0, lat.shape[1] // 2 :]),
            )
    return latents


def decode_frames(bundle: SvdBundle, latents: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Decode 1 x frames x C x h x w latents ``chunk`` frames at a time (all at once by default): the
    temporal decoder smooths across the frames of one call, so smaller chunks use less memory but may
    flicker at chunk borders. Returns frames x 3 x H x W float32 in [0, 1] on the CPU."""
    vae = bundle.vae
    dtype = next(vae.decoder.parameters()).dtype
    flat = check_finite(latents.flatten(0, 1), "denoising (the video UNet)")
    flat = (flat / vae.config.scaling_factor).to(dtype)
    chunk = chunk or flat.shape[0]
    with torch.inference_mode():
        parts = [
            vae.decode(flat[i : i + chunk], num_frames=flat[i : i + chunk].shape[0]).sample
            for i in range(0, flat.shape[0], chunk)
        ]
    return (check_finite(torch.cat(parts), "the VAE's decode").float() / 2 + 0.5).clamp(0, 1).cpu()


def to_images(frames: torch.Tensor) -> list[PIL.Image.Image]:
    """Frames from :func:`decode_frames` as 8-bit RGB images (diffusers' rounding)."""
    array = (frames.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return [PIL.Image.fromarray(frame) for frame in array]


def guidance_scales(settings: SvdSettings) -> torch.Tensor:
    """The guidance scale of every frame of a clip: linear from min (first frame) to max (last frame)."""
    return torch.linspace(settings.min_guidance_scale, settings.max_guidance_scale, settings.num_frames)


# ---- the pieces -----------------------------------------------------------------------------------------


def _pixels(image: PIL.Image.Image, device: torch.device) -> torch.Tensor:
    array = np.asarray(image.convert("RGB")).astype(np.float32) / 255.0
    return (torch.from_numpy(array).permute(2, 0, 1)[None] * 2.0 - 1.0).to(device)


def _conditioning(
    bundle: SvdBundle, pixels: torch.Tensor, settings: SvdSettings, generator: torch.Generator
) -> _Conditioning:
    embeddings = _image_embeddings(bundle, pixels)
    dtype = embeddings.dtype
    augmented = pixels + settings.noise_aug_strength * randn_tensor(
        pixels.shape, generator=generator, device=pixels.device, dtype=pixels.dtype
    )
    image_latents = _encode(bundle, augmented).to(dtype)
    time_ids = torch.tensor(
        [[settings.fps - 1, settings.motion_bucket_id, settings.noise_aug_strength]], dtype=dtype
    ).to(bundle.device)
    if settings.guided:  # zero image embedding and zero image latents as the unconditional rows
        embeddings = torch.cat([torch.zeros_like(embeddings), embeddings])
        image_latents = torch.cat([torch.zeros_like(image_latents), image_latents])
        time_ids = torch.cat([time_ids, time_ids])
    image_latents = image_latents.unsqueeze(1).repeat(1, settings.num_frames, 1, 1, 1)
    guidance = guidance_scales(settings).to(bundle.device, dtype).view(1, -1, 1, 1, 1)
    return _Conditioning(embeddings, image_latents, time_ids, guidance)


def _image_embeddings(bundle: SvdBundle, pixels: torch.Tensor) -> torch.Tensor:
    """CLIP image embedding (1 x 1 x dim): resized to 224 with SVD's antialiasing in [-1, 1], then normalised
    with the feature extractor's mean and std (what its CLIPImageProcessor call does, without the CPU trip)."""
    encoder = bundle.image_encoder
    extractor = bundle.feature_extractor
    small = (_resize_with_antialiasing(pixels.float(), (224, 224)) + 1.0) / 2.0
    mean = torch.tensor(extractor.image_mean, device=small.device).view(1, 3, 1, 1)
    std = torch.tensor(extractor.image_std, device=small.device).view(1, 3, 1, 1)
    dtype = next(encoder.parameters()).dtype
    return encoder(((small - mean) / std).to(dtype)).image_embeds.unsqueeze(1)


def _encode(bundle: SvdBundle, pixels: torch.Tensor) -> torch.Tensor:
    """The VAE's latent mode of ``pixels`` (unscaled), in the encoder's dtype (fp32 when upcast)."""
    dtype = next(bundle.vae.encoder.parameters()).dtype
    return bundle.vae.encode(pixels.to(dtype)).latent_dist.mode()


def _motion_brush(
    bundle: SvdBundle, pixels: torch.Tensor, mask: np.ndarray, noise: torch.Tensor
) -> _MotionBrush:
    """The mask at latent size (a latent cell is free when any of its pixels is: max-pooled, so held latents
    never reach into the animated part; the pixel composite after decoding draws the exact edge) and the
    clean start image's latents, scaled like the denoised latents."""
    scale = bundle.vae_scale_factor
    pixel_mask = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None].to(pixels.device)
    latent_mask = torch.nn.functional.max_pool2d(pixel_mask, scale)[:, None].to(noise.dtype)
    start = (_encode(bundle, pixels) * bundle.vae.config.scaling_factor).to(noise.dtype)
    return _MotionBrush(latent_mask, start[:, None], noise)


def _step(
    bundle: SvdBundle,
    scheduler: EulerDiscreteScheduler,
    latents: torch.Tensor,
    t: torch.Tensor,
    conditioning: _Conditioning,
    guided: bool,
) -> torch.Tensor:
    """One Euler step: the UNet on the (doubled when guided) latents with the image latents concatenated on
    the channels, per-frame guidance, then the scheduler."""
    model_input = torch.cat([latents] * 2) if guided else latents
    model_input = scheduler.scale_model_input(model_input, t)
    model_input = torch.cat([model_input, conditioning.image_latents], dim=2)
    prediction = bundle.unet(
        model_input,
        t,
        encoder_hidden_states=conditioning.embeddings,
        added_time_ids=conditioning.time_ids,
        return_dict=False,
    )[0]
    if guided:
        uncond, cond = prediction.chunk(2)
        prediction = uncond + conditioning.guidance * (cond - uncond)
    return scheduler.step(prediction, t, latents).prev_sample

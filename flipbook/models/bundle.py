"""A loaded model: the diffusers parts plus what flipbook needs to know about them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers import StableDiffusionPipeline


@dataclass
class ModelBundle:
    """A Stable Diffusion model ready to sample.

    The parts live in a diffusers ``StableDiffusionPipeline`` (``pipe``), which also gives LoRA and
    textual-inversion loading; flipbook's sampling core runs its own loop over ``pipe.unet``,
    ``pipe.text_encoder``, ``pipe.vae`` and schedulers made from ``scheduler_config``. ``family`` is the name
    of the model's family in :mod:`flipbook.models.families`, whose hooks (its prompt encoder) the sampling
    loops call instead of assuming one architecture.
    """

    pipe: StableDiffusionPipeline
    name: str
    family: str
    source: str  # builtin | folder | hub | single_file
    device: torch.device
    dtype: torch.dtype
    hash: str | None = None
    """A1111's short hash of a single-file checkpoint (the first 10 hex digits of the file's SHA-256, what its
    PNG parameters call "Model hash"); None for built-ins, folders and hub ids."""
    tiny_vae: Any = None
    """A tiny autoencoder (:mod:`flipbook.models.tiny_vae`) for live previews, or None (a linear map of the
    latents to RGB)."""
    decode_with_tiny_vae: bool = False
    """Decode the frames with ``tiny_vae`` instead of the VAE (fast; the VAE still encodes init images)."""
    refiner: ModelBundle | None = None
    """A second denoiser for the end of the schedule (SDXL's refiner), a bundle of its own family whose
    ``pipe.vae`` is this bundle's VAE; None without one. Requests with ``refiner_switch_at`` use it."""

    @property
    def unet(self):
        return self.pipe.unet

    @property
    def vae(self):
        return self.pipe.vae

    @property
    def text_encoder(self):
        return self.pipe.text_encoder

    @property
    def tokenizer(self):
        return self.pipe.tokenizer

    @property
    def scheduler_config(self) -> dict[str, Any]:
        return dict(self.pipe.scheduler.config)

    @property
    def prediction_type(self) -> str:
        return self.pipe.scheduler.config.get("prediction_type", "epsilon")

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

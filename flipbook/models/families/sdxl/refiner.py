"""SDXL's refiner (the ``sdxl-refiner`` family's hooks): loading it and encoding prompts for it.

The refiner is a second SDXL denoiser trained on the low-noise end of the schedule: the base model denoises the
first ``model.refiner_switch_at`` of the schedule and the refiner the rest, from the base's latents (diffusers'
"ensemble of expert denoisers"; the sampling core's second denoiser). It differs from the base in what it is
conditioned on: one text encoder (OpenCLIP ViT-bigG, the base's second), whose penultimate states and pooled
output it reads, and five size numbers (``time_ids``): original size, crop top-left and an aesthetic score
where the base has the target size; 6.0 for prompts and 2.5 for negative prompts (diffusers' and A1111's
defaults).

- :func:`load`: a built-in (``tiny-xl-refiner``), a single file (``conditioner.embedders.0`` = OpenCLIP, read
  offline by :func:`~flipbook.models.families.sdxl.single_file.refiner_from_checkpoint`), a diffusers folder or
  hub id (``stabilityai/stable-diffusion-xl-refiner-1.0``); a ``StableDiffusionXLImg2ImgPipeline`` without
  the first text encoder and without a VAE of its own: the base's decodes (``load_model`` puts it in);
- :func:`is_refiner_folder`: a refiner's ``model_index.json`` (no first text encoder, a ``text_time`` UNet);
- :func:`prompt_encoder`: :class:`SdxlRefinerEncoder`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from flipbook.errors import FlipbookError
from flipbook.models.bundle import ModelBundle
from flipbook.models.families.sdxl.encoder import POOLED, TIME_IDS, PooledBlend
from flipbook.models.source import ModelSource
from flipbook.sampling.conditioning import Conditioning
from flipbook.sampling.encode import PromptEncoder

AESTHETIC_SCORE = 6.0
NEGATIVE_AESTHETIC_SCORE = 2.5
"""The aesthetic scores the refiner is conditioned on (diffusers' ``aesthetic_score`` /
``negative_aesthetic_score`` defaults, A1111's ``sdxl_refiner_high/low_aesthetic_score``)."""
SCORE = "aesthetic_score"
"""The per-row score a :class:`Conditioning` carries until :meth:`SdxlRefinerEncoder.at_size` makes it part of
the time ids."""
ALLOWED_REFINER = (
    "an SDXL refiner: built-in tiny-xl-refiner, a refiner's diffusers folder or single file, a name in "
    "--models-dir, or a hub id (stabilityai/stable-diffusion-xl-refiner-1.0) in the local Hugging Face cache"
)


def is_refiner_folder(model_index: Mapping[str, Any], unet_config: Mapping[str, Any]) -> bool:
    """A refiner's folder: SDXL's second text encoder without the first, and a ``text_time`` UNet."""
    first = model_index.get("text_encoder")
    has_first = isinstance(first, list) and bool(first) and first[0] is not None
    return (
        not has_first
        and "text_encoder_2" in model_index
        and unet_config.get("addition_embed_type") == "text_time"
    )


def load(source: ModelSource, *, prediction_type: str | None = None, seed: int = 0):
    """The refiner pipeline ``source`` holds (no VAE: see the module docstring)."""
    if source.kind == "builtin":
        return builtin_refiner(source.ref, seed, prediction_type)
    if source.kind == "single_file":
        from flipbook.models.families.sdxl.single_file import refiner_from_checkpoint

        state, embedded = source.checkpoint
        return refiner_from_checkpoint(state, embedded, source.path, prediction_type=prediction_type)
    return from_pretrained(source.ref, prediction_type, local_files_only=source.local_files_only)


def builtin_refiner(name: str, seed: int = 0, prediction_type: str | None = None):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline

    from flipbook.models.families.sdxl.builtin import REFINER_MODELS
    from flipbook.models.families.sdxl.pipeline import scheduler_config

    components = REFINER_MODELS[name](seed)
    return StableDiffusionXLImg2ImgPipeline(
        **components, text_encoder=None, tokenizer=None,
        scheduler=EulerDiscreteScheduler.from_config(scheduler_config(prediction_type)),
        requires_aesthetics_score=True, force_zeros_for_empty_prompt=True, add_watermarker=False,
    )  # fmt: skip


def from_pretrained(ref: str, prediction_type: str | None, *, local_files_only: bool):
    """A refiner's diffusers folder or hub id (its VAE not loaded); one :class:`FlipbookError` on
    ``model.refiner`` when it can't be read or isn't cached while the hub can't be reached."""
    from diffusers import StableDiffusionXLImg2ImgPipeline

    from flipbook.models.pickles import refused_pickle
    from flipbook.models.weights import check_no_missing_weights

    try:
        pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(
            ref, vae=None, text_encoder=None, tokenizer=None, local_files_only=local_files_only,
            add_watermarker=False,
        )  # fmt: skip
    except (OSError, ValueError, TypeError) as error:
        detail = "not in the local Hugging Face cache and the hub can't be reached"
        if Path(ref).exists():
            text = str(error).strip().splitlines()
            detail = (
                refused_pickle(error) or f"the folder could not be loaded: {text[0][:200] if text else error}"
            )
        raise FlipbookError("model.refiner", ref, ALLOWED_REFINER, detail=detail) from None
    for name in ("unet", "text_encoder_2"):
        check_no_missing_weights(getattr(pipe, name), "model.refiner", ref, ALLOWED_REFINER)
    if prediction_type:
        pipe.scheduler = pipe.scheduler.from_config(pipe.scheduler.config, prediction_type=prediction_type)
    return pipe


class SdxlRefinerEncoder(PooledBlend):
    """A :class:`~flipbook.sampling.conditioning.PromptConditioner` over the refiner's one text encoder, read as
    SDXL's second encoder is (A1111 weights and chunks, penultimate layer, pooled output of the first chunk; an
    empty negative prompt gives zeros), with the aesthetic score per row."""

    def __init__(self, encoder: PromptEncoder) -> None:
        self.encoder = encoder

    @property
    def calls(self) -> int:
        return self.encoder.calls

    def clear(self) -> None:
        self.encoder.clear()

    def encode(self, prompt: str, *, negative: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, pooled = self.encoder.encode(prompt), self.encoder.pooled(prompt)
        if negative and prompt == "":
            return torch.zeros_like(embeds), torch.zeros_like(pooled)
        return embeds, pooled

    def condition(
        self,
        prompt: str,
        other: str | None = None,
        weight: float = 0.0,
        mode: str = "lerp",
        *,
        negative: bool = False,
    ) -> Conditioning:
        score = torch.tensor([[NEGATIVE_AESTHETIC_SCORE if negative else AESTHETIC_SCORE]])
        embeds, pooled = self.blended(prompt, other, weight, mode, negative=negative)
        return Conditioning(embeds, {POOLED: pooled, SCORE: score.to(embeds.dtype)})

    def pad(self, conditioning: Conditioning, length: int) -> Conditioning:
        return Conditioning(self._pad_to(conditioning.embeds, length), conditioning.added)

    def at_size(self, conditioning: Conditioning, width: int, height: int) -> Conditioning:
        """The time ids (height, width), crop (0, 0) and each row's aesthetic score, as diffusers'
        ``_get_add_time_ids`` with ``requires_aesthetics_score``."""
        added = dict(conditioning.added)
        score = added.pop(SCORE)
        size = torch.tensor([[height, width, 0, 0]], dtype=score.dtype).repeat(conditioning.rows, 1)
        return Conditioning(conditioning.embeds, {**added, TIME_IDS: torch.cat([size, score], dim=1)})

    def _pad_to(self, embeds: torch.Tensor, length: int) -> torch.Tensor:
        chunk = self.encoder.empty_chunk()
        missing = (length - embeds.shape[1]) // chunk.shape[1]
        if missing <= 0:
            return embeds
        return torch.cat([embeds, chunk.repeat(1, missing, 1)], dim=1)


def prompt_encoder(bundle: ModelBundle, clip_skip: int) -> SdxlRefinerEncoder:
    """A new encoder (with its own cache) over the refiner's tokenizer and text encoder."""
    pipe = bundle.pipe
    return SdxlRefinerEncoder(
        PromptEncoder(
            pipe.tokenizer_2,
            pipe.text_encoder_2,
            clip_skip=clip_skip,
            convert_prompt=lambda text: pipe.maybe_convert_prompt(text, pipe.tokenizer_2),
            layer_offset=1,
            final_norm=False,
            pooled=True,
        )  # fmt: skip
    )

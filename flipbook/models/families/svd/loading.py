"""Stable Video Diffusion models: load the parts of an image-to-video model from whatever the user has.

``ref`` (``svd.model``) may be a built-in (``tiny``: random, fast at 64x64 on a CPU, for demos and tests;
``random-svd``: SVD-XT's exact architecture with random weights, for speed measurements), a diffusers folder
(with ``model_index.json``, e.g. a saved ``stabilityai/stable-video-diffusion-img2vid-xt``), a folder name in
``models_dir``, or a hub id in the local Hugging Face cache (``HF_HUB_OFFLINE`` is honoured, as for image
models). Single-file SVD checkpoints (``svd_xt.safetensors``) are refused with a clear error: diffusers has no
single-file loader for SVD's UNet, VAE and image encoder.

:func:`svd_num_frames` reads only the model's config (no weights), so a spec's frame count is known before any
model loads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    StableVideoDiffusionPipeline,
    UNetSpatioTemporalConditionModel,
)
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from flipbook.errors import FlipbookError
from flipbook.models.device import pick_device, pick_dtype
from flipbook.models.families.svd import FAMILY
from flipbook.models.folders import ModelsDir
from flipbook.models.pickles import refused_pickle
from flipbook.models.weights import check_no_missing_weights, seeded

FIELD = "svd.model"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
ALLOWED_SVD_MODELS = (
    f"a built-in ({', '.join(FAMILY.builtins)}), a diffusers folder with model_index.json, a folder name in "
    "model.models_dir, or a hub id (e.g. stabilityai/stable-video-diffusion-img2vid-xt) in the local "
    "Hugging Face cache"
)

SVD_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "interpolation_type": "linear",
    "prediction_type": "v_prediction",
    "sigma_max": 700.0,
    "sigma_min": 0.002,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "timestep_type": "continuous",
    "use_karras_sigmas": True,
}
"""The scheduler every SVD release ships: Euler on EDM/Karras sigmas (700 -> 0.002), v-prediction."""

TINY_UNET_CONFIG: dict[str, Any] = {
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "sample_size": 8,
    "in_channels": 8,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
    "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
    "cross_attention_dim": 32,
    "num_attention_heads": 4,
    "projection_class_embeddings_input_dim": 96,
    "addition_time_embed_dim": 32,
    "num_frames": 8,
}
RANDOM_SVD_UNET_CONFIG: dict[str, Any] = {"sample_size": 96, "num_frames": 25}
"""SVD-XT's UNet is diffusers' default UNetSpatioTemporalConditionModel with 25 frames."""


@dataclass(frozen=True)
class SvdBundle:
    """The parts of StableVideoDiffusionPipeline, placed on a device, plus where they came from.

    ``scheduler`` is the loaded scheduler; samplers make their own copy from its config (set_timesteps
    mutates a scheduler), so one bundle serves any number of clips. With fp16 and a VAE that asks for it
    (``force_upcast``) the VAE encoder runs in fp32 while the decoder stays in the model dtype, as diffusers'
    pipeline does it.
    """

    image_encoder: CLIPVisionModelWithProjection
    feature_extractor: CLIPImageProcessor
    unet: UNetSpatioTemporalConditionModel
    vae: AutoencoderKLTemporalDecoder
    scheduler: EulerDiscreteScheduler
    name: str
    source: str  # builtin | folder | hub
    device: torch.device
    dtype: torch.dtype

    @property
    def num_frames(self) -> int:
        """Frames per clip the model was trained on (14 for svd, 25 for svd-xt)."""
        return int(self.unet.config.num_frames)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def load_svd(
    ref: str,
    *,
    models_dir: str | Path | None = None,
    device: str = "auto",
    dtype: str | None = None,
    seed: int = 0,
) -> SvdBundle:
    """Load the SVD model ``ref`` (see the module docstring) on the chosen device and dtype (fp16 on CUDA)."""
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    if ref in BUILTIN_SVD_MODELS:
        parts, source = BUILTIN_SVD_MODELS[ref](seed), "builtin"
    else:
        location, source = _locate(ref, models_dir)
        parts = _from_pretrained(
            location, ref, torch_dtype, local_files_only=source == "folder" or _offline()
        )
    return _place(parts, ref, source, torch_device, torch_dtype)


def svd_num_frames(ref: str, *, models_dir: str | Path | None = None) -> int:
    """The model's frames per clip from its UNet config alone (no weights are read or downloaded)."""
    if ref in BUILTIN_SVD_MODELS:
        return int(BUILTIN_UNET_CONFIGS[ref]["num_frames"])
    location, source = _locate(ref, models_dir)
    if source == "folder":
        config = Path(location) / "unet" / "config.json"
        if not config.is_file():
            raise FlipbookError(FIELD, ref, ALLOWED_SVD_MODELS, detail="the folder has no unet/config.json")
    else:
        config = _hub_unet_config(location, ref)
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FlipbookError(FIELD, ref, ALLOWED_SVD_MODELS, detail=f"unet/config.json: {error}") from None
    return int(data.get("num_frames", 25))  # 25: UNetSpatioTemporalConditionModel's default


def is_svd_folder(model_index: Mapping[str, Any], unet_config: Mapping[str, Any]) -> bool:
    """The family's folder detector: a pipeline whose UNet is spatio-temporal (every SVD release's)."""
    unet = model_index.get("unet")
    return isinstance(unet, list | tuple) and list(unet)[-1:] == ["UNetSpatioTemporalConditionModel"]


def diffusers_pipeline(bundle: SvdBundle) -> StableVideoDiffusionPipeline:
    """The bundle's parts as diffusers' own pipeline (a fresh scheduler), to compare outputs with."""
    pipe = StableVideoDiffusionPipeline(
        vae=bundle.vae,
        image_encoder=bundle.image_encoder,
        unet=bundle.unet,
        scheduler=EulerDiscreteScheduler.from_config(bundle.scheduler.config),
        feature_extractor=bundle.feature_extractor,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---- built-in models ------------------------------------------------------------------------------------


def tiny_svd_components(seed: int = 0) -> dict[str, Any]:
    """A tiny random SVD (2-level UNet, 4-level VAE so latents are 1/8 of the image, a 2-layer CLIP vision
    tower at 224 px): image to video at 64x64 on a CPU in well under a second per step."""
    unet = seeded(seed, lambda: UNetSpatioTemporalConditionModel(**TINY_UNET_CONFIG))
    vae = seeded(
        seed + 1,
        lambda: AutoencoderKLTemporalDecoder(
            block_out_channels=(32, 32, 32, 32),
            down_block_types=("DownEncoderBlock2D",) * 4,
            layers_per_block=1,
            latent_channels=4,
            sample_size=64,
        ),
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=224,
        patch_size=32,
    )
    image_encoder = seeded(seed + 2, lambda: CLIPVisionModelWithProjection(vision))
    return _components(unet, vae, image_encoder)


def random_svd_components(seed: int = 0) -> dict[str, Any]:
    """SVD-XT's exact architecture (UNet 1.5B, temporal-decoder VAE, CLIP ViT-H/14 image encoder) with random
    weights: for speed and memory measurements on a GPU, never for pictures."""
    unet = seeded(seed, lambda: UNetSpatioTemporalConditionModel(**RANDOM_SVD_UNET_CONFIG))
    vae = seeded(
        seed + 1,
        lambda: AutoencoderKLTemporalDecoder(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
            sample_size=768,
        ),
    )
    vision = CLIPVisionConfig(
        hidden_size=1280,
        intermediate_size=5120,
        num_attention_heads=16,
        num_hidden_layers=32,
        patch_size=14,
        image_size=224,
        projection_dim=1024,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    )
    image_encoder = seeded(seed + 2, lambda: CLIPVisionModelWithProjection(vision))
    return _components(unet, vae, image_encoder)


def _components(unet, vae, image_encoder) -> dict[str, Any]:
    return {
        "unet": unet,
        "vae": vae,
        "image_encoder": image_encoder,
        "feature_extractor": CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}),
        "scheduler": EulerDiscreteScheduler.from_config(SVD_SCHEDULER_CONFIG),
    }


BUILTIN_SVD_MODELS = {"tiny": tiny_svd_components, "random-svd": random_svd_components}
BUILTIN_UNET_CONFIGS = {"tiny": TINY_UNET_CONFIG, "random-svd": RANDOM_SVD_UNET_CONFIG}


# ---- folders and the hub --------------------------------------------------------------------------------


def _locate(ref: str, models_dir: str | Path | None) -> tuple[str, str]:
    """Where ``ref`` lives: (a diffusers folder, "folder") or (a hub id, "hub"); anything else is an error
    that says what is accepted."""
    path = Path(ref).expanduser()
    if path.is_file() or path.suffix.lower() in CHECKPOINT_SUFFIXES:
        raise _single_file_error(ref)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise FlipbookError(FIELD, ref, ALLOWED_SVD_MODELS, detail="the folder has no model_index.json")
        return str(path), "folder"
    if models_dir:
        found = ModelsDir(Path(models_dir)).list("checkpoint")
        if ref in found:
            if found[ref].is_file():
                raise _single_file_error(ref)
            return str(found[ref]), "folder"
    if _HUB_ID.match(ref):
        return ref, "hub"
    raise FlipbookError(FIELD, ref, ALLOWED_SVD_MODELS, detail="no such folder")


def _single_file_error(ref: str) -> FlipbookError:
    return FlipbookError(
        FIELD,
        ref,
        ALLOWED_SVD_MODELS,
        detail="single-file SVD checkpoints can't be loaded (diffusers has no single-file loader for SVD); "
        "use the diffusers version of the model, e.g. stabilityai/stable-video-diffusion-img2vid-xt",
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _hub_unet_config(repo: str, ref: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, "unet/config.json", local_files_only=_offline()))
    except Exception as error:  # huggingface_hub raises several unrelated types for "not there"
        raise FlipbookError(
            FIELD, ref, ALLOWED_SVD_MODELS, detail=_missing_detail(error, offline=_offline())
        ) from None


def _missing_detail(error: BaseException, *, offline: bool) -> str:
    if offline or "offline" in str(error).lower() or "connect" in str(error).lower():
        return "not in the local Hugging Face cache and the hub can't be reached"
    return _first_line(error)


def _from_pretrained(
    location: str, ref: str, dtype: torch.dtype, *, local_files_only: bool
) -> dict[str, Any]:
    """The pipeline's parts from a folder or the hub. The fp16 weight variant is tried too (most people
    download only ``variant="fp16"``), first when loading in fp16."""
    variants = ("fp16", None) if dtype == torch.float16 else (None, "fp16")
    errors: list[BaseException] = []
    for variant in variants:
        try:
            pipe = StableVideoDiffusionPipeline.from_pretrained(
                location, variant=variant, torch_dtype=dtype, local_files_only=local_files_only
            )
            break
        except (OSError, ValueError) as error:
            errors.append(error)
    else:
        detail = (
            refused_pickle(errors[0]) or f"the folder could not be loaded: {_first_line(errors[0])}"
            if Path(location).exists()
            else _missing_detail(errors[0], offline=local_files_only)
        )
        raise FlipbookError(FIELD, ref, ALLOWED_SVD_MODELS, detail=detail) from None
    for name in ("unet", "vae", "image_encoder"):
        check_no_missing_weights(getattr(pipe, name), FIELD, ref, ALLOWED_SVD_MODELS)
    return {
        name: getattr(pipe, name)
        for name in ("unet", "vae", "image_encoder", "feature_extractor", "scheduler")
    }


def _place(
    parts: dict[str, Any], ref: str, source: str, device: torch.device, dtype: torch.dtype
) -> SvdBundle:
    """Move the parts to ``device``/``dtype``; in fp16 the VAE encoder stays fp32 when the VAE asks for it
    (``force_upcast``: the start image's latents overflow in fp16), the decoder runs in fp16 as in diffusers."""
    for name in ("unet", "vae", "image_encoder"):
        module = parts[name].eval().requires_grad_(False).to(device)
        if module.dtype != dtype:  # diffusers warns on every dtype cast, even a no-op one
            module.to(dtype)
    vae = parts["vae"]
    if dtype == torch.float16 and vae.config.get("force_upcast", False):
        vae.encoder.to(torch.float32)
        vae.quant_conv.to(torch.float32)
    return SvdBundle(**parts, name=ref, source=source, device=device, dtype=dtype)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__

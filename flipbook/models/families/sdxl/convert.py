"""Diffusers <-> original (A1111 / ComfyUI, Stability's ``sgm``) SDXL key layout.

An SDXL single file stores its networks under fixed prefixes:

* UNet: ``model.diffusion_model.*`` in LDM's ``input_blocks`` / ``middle_block`` / ``output_blocks`` numbering
  (as SD 1.x, with three levels), its added embedding as ``label_emb.0.0`` / ``label_emb.0.2``;
* VAE: ``first_stage_model.*``, SD's VAE layout;
* first text encoder (OpenAI CLIP ViT-L): ``conditioner.embedders.0.transformer.text_model.*``;
* second text encoder (OpenCLIP ViT-bigG): ``conditioner.embedders.1.model.*``, fused q/k/v ``in_proj``
  weights and a ``text_projection`` matrix (the transpose of diffusers' projection layer).

The refiner's file has no OpenAI CLIP: its one text encoder, OpenCLIP ViT-bigG, is ``conditioner.embedders.0
.model.*`` (:data:`REFINER_LOCATORS`); its UNet and VAE are stored as the base's are.

The map is one function per component from a diffusers parameter name to where it lives in the file
(:class:`Place`: the original name, which third of a fused tensor, whether transposed); the writer
(:func:`save_original_checkpoint`) and the reader (:mod:`~flipbook.models.families.sdxl.single_file`) both use
it, so a round trip is exact by construction. Numbering comes from the model's config (the SD family's key
functions), so toy models in SDXL's block layout (``tiny-xl``) convert as SDXL base does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flipbook.errors import FlipbookError
from flipbook.models.families.sd.convert import (
    clip_original_key,
    is_vae_conv_attention,
    openclip_original_key,
    unet_original_key,
    vae_original_key,
)
from flipbook.models.weights import CONFIG_METADATA_KEY

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_L_PREFIX = "conditioner.embedders.0.transformer.text_model."
CLIP_G_PREFIX = "conditioner.embedders.1.model."
REFINER_CLIP_G_PREFIX = "conditioner.embedders.0.model."
FAMILY_NAME = "sdxl"
REFINER_FAMILY_NAME = "sdxl-refiner"
_ADD_EMBEDDING = {"add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


@dataclass(frozen=True)
class Place:
    """Where a diffusers parameter lives in the single file: ``key``; ``part`` 0/1/2 for the q/k/v third of a
    fused tensor; ``transposed`` for OpenCLIP's text projection; ``conv`` for a linear weight stored as a 1x1
    convolution (the VAE's mid-block attention)."""

    key: str
    part: int | None = None
    transposed: bool = False
    conv: bool = False


Locator = Callable[[str], Place]


def unet_locator(config: Any) -> Locator:
    layers, up = int(config["layers_per_block"]), list(config["up_block_types"])

    def locate(key: str) -> Place:
        module, _, leaf = key.rpartition(".")
        if module in _ADD_EMBEDDING:
            return Place(f"{UNET_PREFIX}{_ADD_EMBEDDING[module]}.{leaf}")
        return Place(UNET_PREFIX + unet_original_key(key, layers_per_block=layers, up_block_types=up))

    return locate


def vae_locator(config: Any) -> Locator:
    levels = len(config["block_out_channels"])

    def locate(key: str) -> Place:
        original = vae_original_key(key, num_levels=levels)
        return Place(VAE_PREFIX + original, conv=is_vae_conv_attention(original))

    return locate


def clip_l_locator(_config: Any = None) -> Locator:
    return lambda key: Place(CLIP_L_PREFIX + clip_original_key(key))


def clip_g_locator(_config: Any = None, prefix: str = CLIP_G_PREFIX) -> Locator:
    def locate(key: str) -> Place:
        if key == "text_projection.weight":
            return Place(prefix + "text_projection", transposed=True)
        original, part = openclip_original_key(key)
        return Place(prefix + original, part=part)

    return locate


def refiner_clip_g_locator(config: Any = None) -> Locator:
    return clip_g_locator(config, REFINER_CLIP_G_PREFIX)


LOCATORS: dict[str, Callable[[Any], Locator]] = {
    "unet": unet_locator,
    "vae": vae_locator,
    "text_encoder": clip_l_locator,
    "text_encoder_2": clip_g_locator,
}
"""Each component of the pipeline and how its parameters are found in the file."""

REFINER_LOCATORS: dict[str, Callable[[Any], Locator]] = {
    "unet": unet_locator,
    "vae": vae_locator,
    "text_encoder_2": refiner_clip_g_locator,
}
"""The same for a refiner (no first text encoder; OpenCLIP is embedder 0)."""


def is_refiner_pipeline(pipe: Any) -> bool:
    """A refiner pipeline: SDXL's second text encoder without the first."""
    return getattr(pipe, "text_encoder", None) is None and getattr(pipe, "text_encoder_2", None) is not None


def locators_of(pipe: Any) -> dict[str, Callable[[Any], Locator]]:
    return REFINER_LOCATORS if is_refiner_pipeline(pipe) else LOCATORS


def _to_file(value: torch.Tensor, place: Place, dtype: torch.dtype | None) -> torch.Tensor:
    value = value.detach()
    if not value.is_meta:  # a model built without memory still tells its layout
        value = value.to("cpu")
    if dtype is not None and value.is_floating_point():
        value = value.to(dtype)
    if place.transposed:
        value = value.T
    if place.conv and value.ndim == 2:
        value = value.reshape(*value.shape, 1, 1)
    return value.contiguous()


def pipeline_to_original_state_dict(
    pipe: Any, *, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """An SDXL pipeline's UNet, VAE and both text encoders (a refiner's one) as one state dict in the original
    layout."""
    state: dict[str, torch.Tensor] = {}
    for name, locator in locators_of(pipe).items():
        module = getattr(pipe, name)
        locate = locator(module.config)
        fused: dict[str, list[torch.Tensor | None]] = {}
        for key, value in module.state_dict().items():
            place = locate(key)
            tensor = _to_file(value, place, dtype)
            if place.part is None:
                state[place.key] = tensor
            else:
                fused.setdefault(place.key, [None, None, None])[place.part] = tensor
        for key, parts in fused.items():
            state[key] = torch.cat(parts, dim=0)  # type: ignore[arg-type]
    return state


def _plain(config: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(config).items() if not k.startswith("_") or k == "_class_name"}


def _text_config(text_encoder: Any) -> dict[str, Any]:
    skip = {"transformers_version", "dtype", "torch_dtype", "architectures", "id2label", "label2id"}
    return {
        k: v for k, v in text_encoder.config.to_diff_dict().items() if not k.startswith("_") and k not in skip
    }


def pipeline_configs(pipe: Any) -> dict[str, Any]:
    """The components' configs, as flipbook embeds them in the SDXL files it writes."""
    refiner = is_refiner_pipeline(pipe)
    texts = {name: _text_config(getattr(pipe, name)) for name in locators_of(pipe) if name.startswith("text")}
    return {
        "version": 1,
        "family": REFINER_FAMILY_NAME if refiner else FAMILY_NAME,
        "unet": _plain(pipe.unet.config),
        "vae": _plain(pipe.vae.config),
        **texts,
        "scheduler": {**_plain(pipe.scheduler.config), "_class_name": type(pipe.scheduler).__name__},
    }


def save_original_checkpoint(
    pipe: Any, path: str | Path, *, dtype: torch.dtype | None = None, embed_config: bool = True
) -> Path:
    """Write an SDXL pipeline as a single ``.safetensors`` file in the original layout (the file A1111 and
    ComfyUI read); with ``embed_config`` its exact configs go along in the header metadata, so toy models
    whose sizes differ from SDXL base's read back exactly (other tools ignore it)."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise FlipbookError("output", str(path), "a path ending in .safetensors")
    from safetensors.torch import save_file

    metadata = {"format": "pt"}
    if embed_config:
        metadata[CONFIG_METADATA_KEY] = json.dumps(pipeline_configs(pipe), sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(pipeline_to_original_state_dict(pipe, dtype=dtype), str(path), metadata=metadata)
    return path

"""SDXL single files as A1111 and ComfyUI users keep them (Pony, Illustrious, NoobAI ...), read offline.

1. **Detection** (:func:`is_sdxl`): both SDXL text encoders' keys (``conditioner.embedders.0`` OpenAI CLIP,
   ``.1`` OpenCLIP bigG) next to a UNet with the added (``label_emb``) embedding; so ``--model
   my_pony.safetensors`` needs no flag. A refiner (only the OpenCLIP encoder, as ``conditioner.embedders.0``)
   is the ``sdxl-refiner`` family's (:func:`is_sdxl_refiner`, :func:`refiner_from_checkpoint`).
2. **Configs, shipped**: every SDXL fine-tune has SDXL base's architecture, so its configs are the package's
   (:data:`~flipbook.models.families.sdxl.builtin.SDXL_UNET_CONFIG` ...), with ``in_channels`` from the first
   convolution (9 for inpainting models); a file flipbook wrote carries its own exact configs instead.
3. **Prediction type**: the explicit setting (``model.prediction_type``), else the keys NoobAI's
   v-prediction releases carry as ComfyUI reads them (``v_pred``: v-prediction; ``ztsnr``: the schedule
   rescaled to zero terminal SNR), else what a flipbook-written file records, else epsilon.
4. **Weights**: models are built on the meta device and every parameter is taken from the file through the
   key map of :mod:`~flipbook.models.families.sdxl.convert`, strictly: a missing weight or a shape that does
   not fit is one :class:`FlipbookError` on ``model``, never a silently random layer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from flipbook.errors import FlipbookError
from flipbook.models.families.sdxl.builtin import (
    CLIP_G_SIZES,
    CLIP_L_SIZES,
    SDXL_REFINER_UNET_CONFIG,
    SDXL_UNET_CONFIG,
    SDXL_VAE_CONFIG,
    sdxl_tokenizers,
    text_config,
)
from flipbook.models.families.sdxl.convert import (
    CLIP_G_PREFIX,
    CLIP_L_PREFIX,
    FAMILY_NAME,
    LOCATORS,
    REFINER_CLIP_G_PREFIX,
    REFINER_FAMILY_NAME,
    REFINER_LOCATORS,
    UNET_PREFIX,
    Locator,
)
from flipbook.models.weights import empty_weights

logger = logging.getLogger(__name__)

ALLOWED_MODEL = "an SDXL single-file checkpoint (.safetensors, or a .ckpt holding only tensors)"
ALLOWED_REFINER = "an SDXL refiner single file (.safetensors, or a .ckpt holding only tensors)"
_EMBEDDERS = "conditioner.embedders."
V_PRED_KEY, ZTSNR_KEY = "v_pred", "ztsnr"


def is_sdxl(keys_or_shapes: Mapping[str, Any] | Iterable[str]) -> bool:
    """The ``sdxl`` family's detector (see the module docstring)."""
    keys = list(keys_or_shapes)
    return (
        any(key.startswith(CLIP_L_PREFIX) for key in keys)
        and any(key.startswith(CLIP_G_PREFIX) for key in keys)
        and any(key.startswith(UNET_PREFIX + "label_emb.") for key in keys)
    )


def is_sdxl_refiner(keys_or_shapes: Mapping[str, Any] | Iterable[str]) -> bool:
    """The ``sdxl-refiner`` family's detector: OpenCLIP as the first (and only) embedder next to a UNet with the
    added embedding, and no second embedder."""
    keys = list(keys_or_shapes)
    return (
        any(key.startswith(REFINER_CLIP_G_PREFIX) for key in keys)
        and not any(key.startswith(_EMBEDDERS + "1.") for key in keys)
        and any(key.startswith(UNET_PREFIX + "label_emb.") for key in keys)
    )


def checkpoint_problem(keys_or_shapes: Mapping[str, Any] | Iterable[str]) -> str | None:
    """An SDXL-layout file that is no SDXL model (base or refiner), in words."""
    keys = list(keys_or_shapes)
    if not any(key.startswith(_EMBEDDERS) for key in keys):
        return None
    return "an SDXL-layout file without both of SDXL's text encoders (nor a refiner's OpenCLIP encoder)"


def prediction_settings(
    state: Mapping[str, Any], embedded: Mapping[str, Any] | None, prediction_type: str | None
) -> dict[str, Any]:
    """The scheduler settings a file implies: ``prediction_type`` and ``rescale_betas_zero_snr``."""
    recorded = (embedded or {}).get("scheduler", {})
    settings: dict[str, Any] = {
        "prediction_type": prediction_type
        or ("v_prediction" if V_PRED_KEY in state else recorded.get("prediction_type", "epsilon"))
    }
    if ZTSNR_KEY in state or recorded.get("rescale_betas_zero_snr"):
        settings["rescale_betas_zero_snr"] = True
    return settings


def _configs(
    state: Mapping[str, torch.Tensor], embedded: Mapping[str, Any] | None, refiner: bool = False
) -> dict[str, dict]:
    family, locators = (REFINER_FAMILY_NAME, REFINER_LOCATORS) if refiner else (FAMILY_NAME, LOCATORS)
    if embedded is not None and embedded.get("family") == family:
        return {name: dict(embedded[name]) for name in (*locators, "scheduler")}
    if refiner:
        if embedded is not None:
            logger.warning("ignoring embedded configs written for %s", embedded.get("family"))
        return {
            "unet": dict(SDXL_REFINER_UNET_CONFIG),
            "text_encoder_2": text_config(*CLIP_G_SIZES).to_dict(),
            "scheduler": {},
        }
    if embedded is not None:
        logger.warning("ignoring embedded configs written for %s", embedded.get("family"))
    first_conv = state.get(UNET_PREFIX + "input_blocks.0.0.weight")
    unet = dict(SDXL_UNET_CONFIG)
    if first_conv is not None and first_conv.ndim == 4:
        unet["in_channels"] = int(first_conv.shape[1])
    return {
        "unet": unet,
        "vae": dict(SDXL_VAE_CONFIG),
        "text_encoder": text_config(*CLIP_L_SIZES).to_dict(),
        "text_encoder_2": text_config(*CLIP_G_SIZES).to_dict(),
        "scheduler": {},
    }


def _build(name: str, config: dict) -> torch.nn.Module:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if name == "unet":
        return empty_weights(lambda: UNet2DConditionModel.from_config(config))
    if name == "vae":
        return empty_weights(lambda: AutoencoderKL.from_config(config))
    text = CLIPTextConfig.from_dict({k: v for k, v in config.items() if not k.startswith("_")})
    cls = CLIPTextModel if name == "text_encoder" else CLIPTextModelWithProjection
    return empty_weights(lambda: cls(text))


def _fill(
    module: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    locate: Locator,
    dtype: torch.dtype,
    path: Path,
    allowed: str = ALLOWED_MODEL,
) -> None:
    """Every parameter of ``module`` (on the meta device) from the file, strictly."""
    weights: dict[str, torch.Tensor] = {}
    for key, target in module.state_dict().items():
        place = locate(key)
        tensor = state.get(place.key)
        if tensor is None:
            raise _error(path, f"not a complete SDXL checkpoint: weight {place.key!r} missing", allowed)
        if place.part is not None:
            tensor = tensor.chunk(3, dim=0)[place.part]
        if place.transposed:
            tensor = tensor.T
        if place.conv and tensor.ndim == 4 and target.ndim == 2:
            tensor = tensor.reshape(target.shape)
        if tensor.shape != target.shape:
            raise _error(
                path,
                f"weight {place.key!r} has shape {tuple(tensor.shape)}, the model needs {tuple(target.shape)}",
                allowed,
            )
        weights[key] = (tensor.to(dtype) if tensor.is_floating_point() else tensor).contiguous()
    module.load_state_dict(weights, strict=True, assign=True)
    module.eval()


def _error(path: object, detail: str, allowed: str = ALLOWED_MODEL) -> FlipbookError:
    field = "model.refiner" if allowed == ALLOWED_REFINER else "model"
    return FlipbookError(field, str(path), allowed, detail=detail)


def _parts(
    state: Mapping[str, torch.Tensor],
    configs: dict[str, dict],
    names: Mapping[str, Any],
    torch_dtype: torch.dtype,
    path: Path,
    allowed: str,
) -> dict[str, torch.nn.Module]:
    """The networks ``names`` (component -> locator) built from ``configs`` and filled from the file."""
    parts: dict[str, torch.nn.Module] = {}
    try:
        for name, locator in names.items():
            module = _build(name, configs[name])
            _fill(module, state, locator(configs[name]), torch_dtype, path, allowed)
            parts[name] = module
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        what = "an SDXL refiner" if allowed == ALLOWED_REFINER else "an SDXL model"
        raise _error(
            path, f"the weights do not form {what} ({str(exc).splitlines()[0][:200]})", allowed
        ) from exc
    return parts


def pipeline_from_checkpoint(
    state: Mapping[str, torch.Tensor],
    embedded: Mapping[str, Any] | None,
    path: Path,
    *,
    prediction_type: str | None = None,
    torch_dtype: torch.dtype = torch.float32,
):
    """An SDXL pipeline from a single file's tensors (already read from ``path``, which names it in errors)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    from flipbook.models.families.sdxl.pipeline import scheduler_config

    configs = _configs(state, embedded)
    parts = _parts(state, configs, LOCATORS, torch_dtype, path, ALLOWED_MODEL)
    settings = prediction_settings(state, embedded, prediction_type)
    scheduler = EulerDiscreteScheduler.from_config(scheduler_config(**settings))
    tokenizer, tokenizer_2 = sdxl_tokenizers()
    return StableDiffusionXLPipeline(
        **parts, tokenizer=tokenizer, tokenizer_2=tokenizer_2, scheduler=scheduler
    )


def refiner_from_checkpoint(
    state: Mapping[str, torch.Tensor],
    embedded: Mapping[str, Any] | None,
    path: Path,
    *,
    prediction_type: str | None = None,
    torch_dtype: torch.dtype = torch.float32,
):
    """An SDXL refiner pipeline from a single file's tensors: its UNet and OpenCLIP encoder. The file's VAE, if
    it has one, is not read: the refiner continues the base model's latents, which the base's VAE decodes."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline

    from flipbook.models.families.sdxl.pipeline import scheduler_config

    configs = _configs(state, embedded, refiner=True)
    names = {name: locator for name, locator in REFINER_LOCATORS.items() if name != "vae"}
    parts = _parts(state, configs, names, torch_dtype, path, ALLOWED_REFINER)
    settings = prediction_settings(state, embedded, prediction_type)
    return StableDiffusionXLImg2ImgPipeline(
        vae=None, text_encoder=None, tokenizer=None, tokenizer_2=sdxl_tokenizers()[1],
        scheduler=EulerDiscreteScheduler.from_config(scheduler_config(**settings)),
        requires_aesthetics_score=True, force_zeros_for_empty_prompt=True, add_watermarker=False, **parts,
    )  # fmt: skip

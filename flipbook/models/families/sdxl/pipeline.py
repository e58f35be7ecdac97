"""SDXL pipelines from wherever the weights are (the ``sdxl`` family's hooks).

:func:`load` takes the :class:`~flipbook.models.source.ModelSource` that
:func:`flipbook.models.loading.load_model` located: a built-in (made in code, SDXL's Euler scheduler), a single
file (already read; :mod:`flipbook.models.families.sdxl.single_file` builds it offline), or a diffusers folder
or hub id (diffusers' ``from_pretrained``). :func:`is_sdxl_folder` claims an SDXL pipeline's folder;
:func:`load_vae` loads a separate VAE.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline

from flipbook.errors import FlipbookError, first_line
from flipbook.models.families.sd.pipeline import load_vae as load_sd_vae
from flipbook.models.families.sdxl.builtin import BUILTIN_MODELS, SDXL_SCHEDULER_CONFIG, SDXL_VAE_SCALING
from flipbook.models.folders import ModelsDir
from flipbook.models.loading import ALLOWED_MODELS
from flipbook.models.pickles import refused_pickle
from flipbook.models.source import ModelSource
from flipbook.models.weights import check_no_missing_weights

SDXL_PIPELINES = (
    "StableDiffusionXLPipeline",
    "StableDiffusionXLImg2ImgPipeline",
    "StableDiffusionXLInpaintPipeline",
)


def is_sdxl_folder(model_index: Mapping[str, Any], unet_config: Mapping[str, Any]) -> bool:
    """An SDXL base model's folder: an SDXL pipeline class with both text encoders (a refiner, which has only
    the second, is not a base model), or any folder with two text encoders and a ``text_time`` UNet."""
    if "text_encoder" not in model_index or "text_encoder_2" not in model_index:
        return False
    if not isinstance(model_index.get("text_encoder"), list) or model_index["text_encoder"][0] is None:
        return False
    return (
        model_index.get("_class_name") in SDXL_PIPELINES
        or unet_config.get("addition_embed_type") == "text_time"
    )


def load(
    source: ModelSource, *, prediction_type: str | None = None, seed: int = 0
) -> StableDiffusionXLPipeline:
    """The pipeline ``source`` holds; ``prediction_type`` overrides the scheduler's, ``seed`` seeds built-ins."""
    if source.kind == "builtin":
        return builtin_pipeline(source.ref, seed, prediction_type)
    if source.kind == "single_file":
        from flipbook.models.families.sdxl.single_file import pipeline_from_checkpoint

        state, embedded = source.checkpoint
        return pipeline_from_checkpoint(state, embedded, source.path, prediction_type=prediction_type)
    return from_pretrained(source.ref, prediction_type, local_files_only=source.local_files_only)


def scheduler_config(prediction_type: str | None = None, **overrides: Any) -> dict[str, Any]:
    """SDXL's scheduler config with another prediction type (and e.g. zero-terminal-SNR) where asked."""
    config = {**SDXL_SCHEDULER_CONFIG, **overrides}
    if prediction_type:
        config["prediction_type"] = prediction_type
    return config


def builtin_pipeline(
    name: str, seed: int = 0, prediction_type: str | None = None
) -> StableDiffusionXLPipeline:
    """A built-in model as a diffusers pipeline (SDXL base's Euler scheduler config)."""
    components = BUILTIN_MODELS[name](seed)
    return StableDiffusionXLPipeline(
        **components, scheduler=EulerDiscreteScheduler.from_config(scheduler_config(prediction_type))
    )


def from_pretrained(
    ref: str, prediction_type: str | None, *, local_files_only: bool
) -> StableDiffusionXLPipeline:
    """A diffusers folder or hub id; a folder that can't be read, or a hub id that is not in the local cache
    while the hub can't be reached, is one :class:`FlipbookError` on ``model``."""
    try:
        pipe = StableDiffusionXLPipeline.from_pretrained(ref, local_files_only=local_files_only)
    except (OSError, ValueError, TypeError) as error:
        detail = "not in the local Hugging Face cache and the hub can't be reached"
        if Path(ref).exists():
            detail = refused_pickle(error) or f"the folder could not be loaded: {first_line(error)}"
        raise FlipbookError("model", ref, ALLOWED_MODELS, detail=detail) from None
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        check_no_missing_weights(getattr(pipe, name), "model", ref, ALLOWED_MODELS)
    if prediction_type:
        pipe.scheduler = pipe.scheduler.from_config(pipe.scheduler.config, prediction_type=prediction_type)
    return pipe


def load_vae(vae: str, folders: ModelsDir | None) -> AutoencoderKL:
    """A separate SDXL VAE: a diffusers folder keeps its own config (the fp16-fix VAE's says it needs no
    upcast), a single file (no config) gets SDXL's: its scaling factor, and fp32 under fp16 (``force_upcast``)."""
    loaded = load_sd_vae(vae, folders)
    path = Path(vae).expanduser()
    if not path.exists() and folders is not None:
        path = folders.find("vae", vae)  # as load_sd_vae found it
    if not path.is_dir():
        loaded.register_to_config(scaling_factor=SDXL_VAE_SCALING, force_upcast=True)
    return loaded

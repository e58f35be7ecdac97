"""Stable Diffusion 1.x/2.x pipelines from wherever the weights are (the ``sd1`` and ``sd2`` families' hooks).

:func:`load` takes the :class:`~flipbook.models.source.ModelSource` that
:func:`flipbook.models.loading.load_model` located: a built-in (made in code, SD 1.5's PNDM scheduler), a
single file (already read; :mod:`flipbook.models.families.sd.single_file` builds it offline), or a diffusers
folder or hub id (diffusers' ``from_pretrained``). :func:`is_sd1_folder` / :func:`is_sd2_folder` tell the
families' folders apart by their configs; :func:`load_vae` loads a separate VAE.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diffusers import AutoencoderKL, StableDiffusionPipeline

from flipbook.errors import FlipbookError, first_line
from flipbook.models.families.sd.builtin import BUILTIN_MODELS, SD15_SCHEDULER_CONFIG
from flipbook.models.families.sd.single_file import ALLOWED_VAE, load_vae_file, pipeline_from_checkpoint
from flipbook.models.folders import ModelsDir
from flipbook.models.loading import ALLOWED_MODELS
from flipbook.models.pickles import refused_pickle
from flipbook.models.source import ModelSource
from flipbook.models.weights import check_no_missing_weights


def is_sd1_folder(model_index: Mapping[str, Any], unet_config: Mapping[str, Any]) -> bool:
    """The ``sd1`` family's folder detector: an SD pipeline whose UNet attends to 768-wide text (or any width
    but SD 2.x's, as small test models do)."""
    return _folder_variant(model_index, unet_config) == "sd1"


def is_sd2_folder(model_index: Mapping[str, Any], unet_config: Mapping[str, Any]) -> bool:
    """The ``sd2`` family's folder detector: an SD pipeline whose UNet attends to OpenCLIP's 1024-wide text."""
    return _folder_variant(model_index, unet_config) == "sd2"


def _folder_variant(model_index: Mapping[str, Any], unet_config: Mapping[str, Any]) -> str | None:
    """An SD pipeline folder has a 2D conditional UNet and one text encoder (SDXL has two)."""
    if _component(model_index, "unet") != "UNet2DConditionModel" or "text_encoder_2" in model_index:
        return None
    if _component(model_index, "text_encoder") is None:
        return None
    return "sd2" if unet_config.get("cross_attention_dim") == 1024 else "sd1"


def _component(model_index: Mapping[str, Any], name: str) -> str | None:
    """The class name ``model_index.json`` gives a component (``["diffusers", "UNet2DConditionModel"]``)."""
    entry = model_index.get(name)
    if isinstance(entry, list | tuple) and len(entry) == 2 and isinstance(entry[1], str):
        return entry[1]
    return None


def load(
    source: ModelSource, *, prediction_type: str | None = None, seed: int = 0
) -> StableDiffusionPipeline:
    """The pipeline ``source`` holds; ``prediction_type`` overrides the scheduler's, ``seed`` seeds built-ins."""
    if source.kind == "builtin":
        return builtin_pipeline(source.ref, seed, prediction_type)
    if source.kind == "single_file":
        state, embedded = source.checkpoint
        return pipeline_from_checkpoint(state, embedded, source.path, prediction_type=prediction_type)
    return from_pretrained(source.ref, prediction_type, local_files_only=source.local_files_only)


def builtin_pipeline(name: str, seed: int = 0, prediction_type: str | None = None) -> StableDiffusionPipeline:
    """A built-in model as a diffusers pipeline (default scheduler: SD 1.5's PNDM config)."""
    from diffusers import PNDMScheduler

    config = dict(SD15_SCHEDULER_CONFIG)
    if prediction_type:
        config["prediction_type"] = prediction_type
    components = BUILTIN_MODELS[name](seed)
    return StableDiffusionPipeline(
        **components,
        scheduler=PNDMScheduler.from_config(config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def from_pretrained(
    ref: str, prediction_type: str | None, *, local_files_only: bool
) -> StableDiffusionPipeline:
    """A diffusers folder or hub id; a folder that can't be read, or a hub id that is not in the local cache
    while the hub can't be reached, is one :class:`FlipbookError` on ``model``."""
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            ref, safety_checker=None, requires_safety_checker=False, local_files_only=local_files_only
        )
    except (OSError, ValueError) as error:
        detail = "not in the local Hugging Face cache and the hub can't be reached"
        if Path(ref).exists():
            detail = refused_pickle(error) or f"the folder could not be loaded: {first_line(error)}"
        raise FlipbookError("model", ref, ALLOWED_MODELS, detail=detail) from None
    for name in ("unet", "vae", "text_encoder"):
        check_no_missing_weights(getattr(pipe, name), "model", ref, ALLOWED_MODELS)
    if prediction_type:
        pipe.scheduler = pipe.scheduler.from_config(pipe.scheduler.config, prediction_type=prediction_type)
    return pipe


def load_vae(vae: str, folders: ModelsDir | None) -> AutoencoderKL:
    """A separate VAE: a diffusers folder, a single file, or a name in the models folder's VAE directory.

    Single files go through :func:`load_vae_file` (offline, sizes from the tensors, strict), so any SD VAE
    that fits its shapes loads, not only full-size ones; a misfit is a ``FlipbookError`` on ``"vae"``.
    """
    path = Path(vae).expanduser()
    if not path.exists():
        if folders is None:
            raise FlipbookError("vae", vae, "a VAE file or folder, or a VAE name with --models-dir")
        path = folders.find("vae", vae)
    if not path.is_dir():
        return load_vae_file(path)
    # A VAE folder (config.json + weights), or a whole diffusers model whose VAE is wanted.
    subfolder = "vae" if (path / "vae" / "config.json").is_file() else None
    try:
        loaded = AutoencoderKL.from_pretrained(path, subfolder=subfolder, local_files_only=True)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise FlipbookError(
            "vae", vae, ALLOWED_VAE, detail=refused_pickle(error) or first_line(error)
        ) from None
    check_no_missing_weights(loaded, "vae", vae, ALLOWED_VAE)
    return loaded

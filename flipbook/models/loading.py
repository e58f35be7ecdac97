"""Load a Stable Diffusion model from whatever the user has.

``model`` may be a built-in name (``tiny``, ``random-sd15``), a diffusers folder, a single ``.safetensors`` /
``.ckpt`` checkpoint, a checkpoint name inside ``models_dir`` (A1111 or ComfyUI layout), or a hub id. Hub ids
honour ``HF_HUB_OFFLINE`` and the local cache; when the hub can't be reached and the model isn't cached the
user gets one line saying so and what to pass instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor2_0

from flipbook.errors import FlipbookError
from flipbook.models.builtin import BUILTIN_MODELS, SD15_SCHEDULER_CONFIG
from flipbook.models.bundle import ModelBundle
from flipbook.models.device import pick_device, pick_dtype
from flipbook.models.folders import ModelsDir
from flipbook.models.pickles import refused_pickle
from flipbook.models.single_file import ALLOWED_VAE, load_single_file, load_vae_file

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
ALLOWED_MODELS = (
    "a built-in model (tiny, random-sd15), a diffusers folder, a .safetensors/.ckpt checkpoint, "
    "a checkpoint name in --models-dir, or a hub id (org/name) in the local Hugging Face cache"
)


def load_model(
    model: str,
    *,
    models_dir: str | Path | None = None,
    device: str = "auto",
    dtype: str | None = None,
    vae: str | None = None,
    prediction_type: str | None = None,
    vae_slicing: bool = False,
    vae_tiling: bool = False,
    seed: int = 0,
) -> ModelBundle:
    """Load ``model`` and place it on the chosen device and dtype (see module docstring for what's accepted)."""
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    folders = ModelsDir(Path(models_dir)) if models_dir else None

    pipe, source = _load_pipeline(model, folders, prediction_type, seed)
    if vae:
        pipe.vae = load_vae(vae, folders)
        _check_vae_fits(pipe, vae)
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    pipe.set_progress_bar_config(disable=True)
    pipe.to(torch_device, torch_dtype)
    if torch_dtype == torch.float16 and pipe.vae.config.get("force_upcast", False):
        pipe.vae.to(torch.float32)  # SD VAEs overflow in fp16; the UNet stays in fp16
    if vae_slicing:
        pipe.vae.enable_slicing()
    if vae_tiling:
        pipe.vae.enable_tiling()
    family = _family(pipe)
    return ModelBundle(
        pipe=pipe, name=model, family=family, source=source, device=torch_device, dtype=torch_dtype
    )


def _load_pipeline(model: str, folders: ModelsDir | None, prediction_type: str | None, seed: int):
    if model in BUILTIN_MODELS:
        return builtin_pipeline(model, seed, prediction_type), "builtin"
    path = Path(model).expanduser()
    if path.exists():
        return _load_path(path, prediction_type)
    if path.suffix.lower() in CHECKPOINT_SUFFIXES or os.sep in model and not _HUB_ID.match(model):
        raise FlipbookError("model", model, ALLOWED_MODELS, detail="no such file or folder")
    if folders is not None:
        found = folders.list("checkpoint")
        if model in found or Path(model).stem in {Path(n).stem for n in found}:
            return _load_path(folders.find("checkpoint", model), prediction_type)
    if _HUB_ID.match(model):
        return _load_hub(model, prediction_type), "hub"
    raise FlipbookError("model", model, ALLOWED_MODELS)


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


def _load_path(path: Path, prediction_type: str | None):
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise FlipbookError(
                "model", str(path), ALLOWED_MODELS, detail="the folder has no model_index.json"
            )
        return _from_pretrained(str(path), prediction_type, local_files_only=True), "folder"
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise FlipbookError("model", str(path), ALLOWED_MODELS, detail=f"unknown file type {path.suffix!r}")
    return load_single_file(path, prediction_type=prediction_type), "single_file"


def _load_hub(model_id: str, prediction_type: str | None) -> StableDiffusionPipeline:
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    return _from_pretrained(model_id, prediction_type, local_files_only=offline)


def _from_pretrained(
    ref: str, prediction_type: str | None, *, local_files_only: bool
) -> StableDiffusionPipeline:
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            ref, safety_checker=None, requires_safety_checker=False, local_files_only=local_files_only
        )
    except (OSError, ValueError) as error:
        detail = "not in the local Hugging Face cache and the hub can't be reached"
        if Path(ref).exists():
            detail = refused_pickle(error) or f"the folder could not be loaded: {_first_line(error)}"
        raise FlipbookError("model", ref, ALLOWED_MODELS, detail=detail) from None
    for name in ("unet", "vae", "text_encoder"):
        _check_no_missing_weights(getattr(pipe, name), "model", ref, ALLOWED_MODELS)
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
            "vae", vae, ALLOWED_VAE, detail=refused_pickle(error) or _first_line(error)
        ) from None
    _check_no_missing_weights(loaded, "vae", vae, ALLOWED_VAE)
    return loaded


def _check_no_missing_weights(module: torch.nn.Module, field: str, value: str, allowed: str) -> None:
    """diffusers leaves weights missing from a folder on the meta device without a word; fail here, clearly."""
    missing = [name for name, tensor in module.state_dict().items() if tensor.is_meta]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FlipbookError(field, value, allowed, detail=f"weight {missing[0]!r} missing{more}")


def _check_vae_fits(pipe: StableDiffusionPipeline, vae: str) -> None:
    latent, unet_in = pipe.vae.config.latent_channels, pipe.unet.config.out_channels
    if latent != unet_in:
        raise FlipbookError(
            "vae", vae, f"a VAE with {unet_in} latent channels for this model", detail=f"it has {latent}"
        )


def _family(pipe: StableDiffusionPipeline) -> str:
    return "sd2" if pipe.unet.config.cross_attention_dim == 1024 else "sd1"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__

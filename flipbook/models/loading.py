"""Load an image model (a checkpoint) from whatever the user has, through its model family.

``model`` may be a built-in name (``tiny``, ``random-sd15``, ``tiny-xl`` ...), a diffusers folder, a single
``.safetensors`` / ``.ckpt`` checkpoint, a checkpoint name inside ``models_dir`` (A1111 or ComfyUI layout),
or a hub id. Hub ids honour ``HF_HUB_OFFLINE`` and the local cache; when the hub can't be reached and the
model isn't cached the user gets one line saying so and what to pass instead.

Three steps, none of which names a family: :func:`locate` finds where the weights are (a
:class:`~flipbook.models.source.ModelSource`; a single file is read here, once), :func:`identify` asks the
family registry (:mod:`flipbook.models.families`) whose they are (a built-in's name, a single file's keys, a
folder's configs), and that family's ``load`` hook builds the pipeline. What follows (a separate VAE through
the family's ``load_vae``, attention, device and dtype) is the same for every image family. A refiner
(``refiner=``: a second denoiser for the end of the schedule, SDXL's) is located and identified the same way,
among the ``refiner`` families, and checked to fit the model's family before either loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from diffusers import StableDiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor2_0

from flipbook.errors import FlipbookError, first_line
from flipbook.models.bundle import ModelBundle
from flipbook.models.device import pick_device, pick_dtype
from flipbook.models.families import (
    FAMILIES,
    REFERENCE_KINDS,
    Capability,
    Family,
    builtin_family,
    builtin_names,
    checkpoint_problem,
    detect_checkpoint,
    detect_folder,
    get_family,
    with_capability,
)
from flipbook.models.folders import ModelsDir
from flipbook.models.performance import Performance, prepare
from flipbook.models.source import ModelSource
from flipbook.models.tiny_vae import load_tiny_vae
from flipbook.models.weights import read_checkpoint

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
ALLOWED_MODELS = (
    f"a built-in model ({', '.join(builtin_names('checkpoint') or ())}), a diffusers folder, a .safetensors/.ckpt "
    "checkpoint, a checkpoint name in --models-dir, or a hub id (org/name) in the local Hugging Face cache"
)
_NOT_CACHED = "not in the local Hugging Face cache and the hub can't be reached"
REFINER_FIELD = "model.refiner"


def load_model(
    model: str,
    *,
    models_dir: str | Path | None = None,
    device: str = "auto",
    dtype: str | None = None,
    vae: str | None = None,
    prediction_type: str | None = None,
    zero_terminal_snr: bool = False,
    vae_slicing: bool = False,
    vae_tiling: bool = False,
    seed: int = 0,
    performance: Performance | None = None,
    refiner: str | None = None,
) -> ModelBundle:
    """Load ``model`` and place it on the chosen device and dtype (see module docstring for what's accepted).

    ``prediction_type`` overrides what the model says; ``zero_terminal_snr`` rescales its noise schedule to zero
    terminal SNR (a file that asks for it, as SDXL's ``ztsnr`` key does, needs no flag); ``performance``: the
    speed switches (:mod:`flipbook.models.performance`), set once the model is on its device. ``refiner``: a
    refiner's name (built-in, folder, file, models-dir name, hub id), loaded as ``bundle.refiner`` (a bundle of
    its own that shares the model's VAE)."""
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    folders = ModelsDir(Path(models_dir)) if models_dir else None

    source = locate(model, folders)
    family = identify(source)
    second = _refiner_source(refiner, folders, family) if refiner else None
    pipe = family.load(source, prediction_type=prediction_type, seed=seed)
    if zero_terminal_snr:
        pipe.scheduler = pipe.scheduler.from_config(pipe.scheduler.config, rescale_betas_zero_snr=True)
    if vae:
        pipe.vae = family.load_vae(vae, folders)
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
    bundle = ModelBundle(
        pipe=pipe, name=model, family=family.name, source=source.kind, device=torch_device, dtype=torch_dtype,
        hash=short_hash(source.path) if source.kind == "single_file" else None,
    )  # fmt: skip
    if second is not None:
        bundle.refiner = _load_refiner(second, bundle, prediction_type, zero_terminal_snr, seed)
    if performance is None:
        return bundle
    if performance.tiny_vae is not None:
        bundle.tiny_vae = load_tiny_vae(
            performance.tiny_vae, folders=folders, device=torch_device, dtype=pipe.vae.dtype,
            latent_channels=pipe.vae.config.latent_channels,
        )  # fmt: skip
        bundle.decode_with_tiny_vae = performance.tiny_vae_decode
    if bundle.refiner is not None:
        prepare(
            SimpleNamespace(unet=bundle.refiner.unet), performance
        )  # the VAE is the model's, prepared once
    return prepare(bundle, performance)


def _refiner_source(refiner: str, folders: ModelsDir | None, family: Family) -> tuple[ModelSource, Family]:
    """Where the refiner's weights are and its family, checked to attach to the model's ``family``."""
    source = locate(refiner, folders, capability="refiner", field=REFINER_FIELD)
    refiner_family = identify(source, capability="refiner", field=REFINER_FIELD)
    if family.name not in refiner_family.attaches_to:
        fitting = ", ".join(get_family(name).title for name in refiner_family.attaches_to)
        fits = [f.title for f in with_capability("refiner") if family.name in f.attaches_to]
        allowed = f"a {' or '.join(fits)}" if fits else f"none: no refiner refines {family.title} models"
        raise FlipbookError(
            REFINER_FIELD,
            refiner,
            allowed,
            detail=f"it is a {refiner_family.title}, which refines {fitting} models",
        )
    return source, refiner_family


def _load_refiner(
    second: tuple[ModelSource, Family], base: ModelBundle, prediction_type: str | None, ztsnr: bool, seed: int
) -> ModelBundle:
    """The refiner as a bundle on the model's device and dtype, decoding with the model's VAE."""
    source, family = second
    pipe = family.load(source, prediction_type=prediction_type, seed=seed)
    if ztsnr:
        pipe.scheduler = pipe.scheduler.from_config(pipe.scheduler.config, rescale_betas_zero_snr=True)
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    pipe.set_progress_bar_config(disable=True)
    pipe.to(base.device, base.dtype)
    pipe.vae = base.vae
    return ModelBundle(
        pipe=pipe, name=source.ref, family=family.name, source=source.kind, device=base.device,
        dtype=base.dtype, hash=short_hash(source.path) if source.kind == "single_file" else None,
    )  # fmt: skip


def file_hash(
    model: str, models_dir: str | Path | None, *, capability: Capability = "image", field: str = "model"
) -> str | None:
    """A1111's "Model hash" of ``model`` without loading it, as the loaded bundle's ``hash``: its file's
    :func:`short_hash` where it is a single file (a path or a models-folder name), else None (built-ins,
    folders and hub ids have none; nor has a name that is no model of ``capability``: the render that asks
    has validated its models, and a hash is only the infotext's)."""
    folders = ModelsDir(Path(models_dir)) if models_dir else None
    try:
        source = locate(model, folders, capability=capability, field=field)
    except FlipbookError:
        return None
    return short_hash(source.path) if source.kind == "single_file" else None


def short_hash(path: Path) -> str:
    """A1111's "Model hash" of a checkpoint file: the first 10 hex digits of its SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:10]


# ---- 1. where the weights are -----------------------------------------------------------------------------


def locate(
    model: str, folders: ModelsDir | None, *, capability: Capability = "image", field: str = "model"
) -> ModelSource:
    """Where ``model`` is: a built-in (of a family with ``capability``), a path, a checkpoint name in the models
    folder, or a hub id. Errors name ``field``."""
    if builtin_family(model, capability) is not None:
        return ModelSource("builtin", model)
    allowed = _allowed(capability)
    path = Path(model).expanduser()
    if path.exists():
        return _path_source(path, field, allowed)
    other = next((family for family in FAMILIES.values() if model in family.builtins), None)
    if other is not None:
        raise FlipbookError(field, model, allowed, detail=_not_a(other, capability))
    if path.suffix.lower() in CHECKPOINT_SUFFIXES or os.sep in model and not _HUB_ID.match(model):
        raise FlipbookError(field, model, allowed, detail="no such file or folder")
    if folders is not None:
        found = folders.list("checkpoint")
        if model in found or Path(model).stem in {Path(n).stem for n in found}:
            return _path_source(folders.find("checkpoint", model), field, allowed)
    if _HUB_ID.match(model):
        return ModelSource("hub", model, local_files_only=_offline())
    raise FlipbookError(field, model, allowed)


def _allowed(capability: Capability) -> str:
    """What a model of ``capability`` may be named by, for errors (checkpoints: :data:`ALLOWED_MODELS`)."""
    if capability == "image":
        return ALLOWED_MODELS
    kind = REFERENCE_KINDS[capability]
    return (
        f"a built-in {kind} ({', '.join(builtin_names(kind) or ())}), a diffusers folder, a .safetensors/.ckpt "
        f"file, a {kind} name in --models-dir, or a hub id (org/name) in the local Hugging Face cache"
    )


def _path_source(path: Path, field: str = "model", allowed: str = ALLOWED_MODELS) -> ModelSource:
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise FlipbookError(field, str(path), allowed, detail="the folder has no model_index.json")
        return ModelSource("folder", str(path))
    if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise FlipbookError(field, str(path), allowed, detail=f"unknown file type {path.suffix!r}")
    return ModelSource("single_file", str(path), checkpoint=read_checkpoint(path))


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


# ---- 2. whose they are ------------------------------------------------------------------------------------


def identify(source: ModelSource, *, capability: Capability = "image", field: str = "model") -> Family:
    """The family (of ``capability``: image families for a checkpoint) ``source`` belongs to, from the registry;
    a model of another kind (a motion module, a video model, a refiner) or of no family flipbook knows is one
    :class:`FlipbookError` on ``field`` saying which."""
    allowed = _allowed(capability)
    if source.kind == "builtin":
        family = builtin_family(source.ref, capability)
    elif source.kind == "single_file":
        state = source.checkpoint[0]
        family = detect_checkpoint(state)
        if family is None:
            detail = checkpoint_problem(state) or (
                "its weights are no model flipbook knows (" + ", ".join(_titles(capability)) + ")"
            )
            raise FlipbookError(field, source.ref, allowed, detail=detail)
    else:
        model_index, unet_config = _folder_configs(source, field, allowed)
        family = detect_folder(model_index, unet_config)
        if family is None:
            kind = model_index.get("_class_name", "diffusers")
            raise FlipbookError(
                field, source.ref, allowed,
                detail=f"a {kind} folder, which no model family flipbook knows loads ("
                + ", ".join(_titles(capability)) + ")",
            )  # fmt: skip
    if family.capability != capability:
        raise FlipbookError(
            field, source.ref, allowed,
            detail=_not_a(family, capability),
        )  # fmt: skip
    return family


def _not_a(family: Family, capability: Capability) -> str:
    return f"this is a {family.reference_kind} ({family.title}), not a {REFERENCE_KINDS[capability]}"


def _titles(capability: Capability) -> list[str]:
    return [family.title for family in with_capability(capability)]


def _folder_configs(
    source: ModelSource, field: str = "model", allowed: str = ALLOWED_MODELS
) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """A folder's or hub id's ``model_index.json`` and ``unet/config.json`` (empty when it has none): what
    families tell their folders apart by. Only these small files are read (from the cache for a hub id)."""
    model_index = _read_config(source, "model_index.json", required=True, field=field, allowed=allowed)
    return model_index, _read_config(source, "unet/config.json", required=False, field=field, allowed=allowed)


def _read_config(
    source: ModelSource, name: str, *, required: bool, field: str = "model", allowed: str = ALLOWED_MODELS
) -> dict[str, Any]:
    if source.kind == "folder":
        path = source.path / name
        if not path.is_file():
            return {}
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(source.ref, name, local_files_only=source.local_files_only))
        except Exception:  # huggingface_hub raises several unrelated types for "not there"
            if not required:
                return {}
            raise FlipbookError(field, source.ref, allowed, detail=_NOT_CACHED) from None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FlipbookError(field, source.ref, allowed, detail=f"{name}: {first_line(error)}") from None
    if not isinstance(data, dict):
        raise FlipbookError(field, source.ref, allowed, detail=f"{name} is not a JSON object")
    return data


# ---- 3. after the family's loader ------------------------------------------------------------------------


def _check_vae_fits(pipe: StableDiffusionPipeline, vae: str) -> None:
    latent, unet_in = pipe.vae.config.latent_channels, pipe.unet.config.out_channels
    if latent != unet_in:
        raise FlipbookError(
            "vae", vae, f"a VAE with {unet_in} latent channels for this model", detail=f"it has {latent}"
        )

"""Loading a motion module from a built-in name, a single file, a MotionAdapter folder or a hub id."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from diffusers import MotionAdapter

from flipbook.errors import FlipbookError
from flipbook.models.families.animatediff.architecture import (
    NO_ENCODING_MAX_LENGTH,
    _build,
    _computed_encodings,
    infer_motion_config,
    shipped_motion_config,
)
from flipbook.models.families.animatediff.builtin import BUILTIN_NAMES, builtin_motion_adapter
from flipbook.models.families.animatediff.detect import (
    ALLOWED_MOTION_MODULES,
    MotionModuleInfo,
    detect_motion_module,
)
from flipbook.models.families.animatediff.files import read_weights
from flipbook.models.families.animatediff.keys import (
    _MOTION_KEY,
    hotshot_original_key,
    motion_diffusers_key,
    motion_original_keys,
)
from flipbook.models.folders import ModelsDir, models_dir_from_env
from flipbook.models.pickles import refused_pickle

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MOTION_MODULE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")


def _to_diffusers(
    state: Mapping[str, torch.Tensor], info: MotionModuleInfo, fail: Callable[[str], FlipbookError]
) -> dict[str, torch.Tensor]:
    """Original-layout keys (and Hotshot-XL's, renamed to the original ones first) renamed to diffusers'; the
    two encodings of a block must agree (diffusers keeps one)."""
    if info.layout == "diffusers":
        return dict(state)
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        original = hotshot_original_key(key) if info.layout == "hotshot" else key
        new = motion_diffusers_key(original) if original is not None else None
        if new is None:
            raise fail(f"weight {key!r} has no place in a motion module")
        if new in converted:
            if not torch.equal(converted[new], tensor):
                raise fail(
                    f"the two positional encodings of {key.rsplit('.attention_blocks.', 1)[0]!r} differ"
                )
            continue
        converted[new] = tensor
    return converted


def load_motion_module_file(
    path: str | Path, *, field: str = "animatediff.motion_module", value: object = None
) -> MotionAdapter:
    """A MotionAdapter from a single original- or diffusers-layout motion-module file, offline and strictly."""
    path = Path(path)
    value = str(path) if value is None else value

    def fail(detail: str) -> FlipbookError:
        return FlipbookError(field, value, ALLOWED_MOTION_MODULES, detail=detail)

    weights = read_weights(
        path, field=field, value=value, allowed=ALLOWED_MOTION_MODULES, suffixes=MOTION_MODULE_SUFFIXES
    )
    raw = weights.state
    if raw and all(key.startswith("module.") for key in raw):
        raw = {key.removeprefix("module."): tensor for key, tensor in raw.items()}
    embedded = weights.embedded if isinstance(weights.embedded, dict) else None
    info = detect_motion_module(
        raw, field=field, value=value, wrapper=weights.wrapper, embedded=embedded is not None
    )
    state = _to_diffusers(raw, info, fail)
    template = embedded or shipped_motion_config(info.version)
    no_encoding = (
        template.get("motion_max_seq_length", NO_ENCODING_MAX_LENGTH)
        if info.layout == "hotshot"
        else NO_ENCODING_MAX_LENGTH
    )
    adapter = _build(infer_motion_config(state, template, fail, no_encoding_length=no_encoding), fail)
    expected = adapter.state_dict()
    encodings = [key for key in expected if key.endswith("pos_embed.pe")]
    if not any(key in state for key in encodings):  # AnimateLCM: no stored encodings at all
        state.update(_computed_encodings(adapter))

    def shown(key: str) -> str:
        return (
            motion_original_keys(key)[0] if info.layout == "original" and _MOTION_KEY.fullmatch(key) else key
        )

    missing = [key for key in expected if key not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise fail(f"not a complete {info.version} motion module: weight {shown(missing[0])!r} missing{more}")
    unexpected = [key for key in state if key not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise fail(f"weight {shown(unexpected[0])!r} has no place in a {info.version} motion module{more}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise fail(
                f"weight {shown(key)!r} has shape {tuple(state[key].shape)}, the module needs {tuple(tensor.shape)}"
            )
    state = {key: tensor.to(torch.float32) for key, tensor in state.items()}
    adapter.load_state_dict(state, strict=True, assign=True)
    return adapter.eval()


def _as_models_dir(models_dir: ModelsDir | str | Path | None) -> ModelsDir | None:
    if models_dir is None:
        return models_dir_from_env()
    return models_dir if isinstance(models_dir, ModelsDir) else ModelsDir(models_dir)


def load_motion_adapter(
    ref: str,
    *,
    models_dir: ModelsDir | str | Path | None = None,
    field: str = "animatediff.motion_module",
    seed: int = 0,
    image_family: str | None = None,
) -> MotionAdapter:
    """The motion module ``ref`` names, on the CPU in float32 (the caller moves the assembled UNet).

    ``ref``: a built-in (``tiny``: the one for ``image_family``, the family of the checkpoint it will attach
    to; ``random-sd15``, ``random-sdxl``), a motion-module file or diffusers MotionAdapter folder,
    a motion-module name in ``models_dir`` (default ``FLIPBOOK_MODELS_DIR``; with or without extension), or a
    hub id in the local Hugging Face cache. See the module docstring for the files that load.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise FlipbookError(field, ref, ALLOWED_MOTION_MODULES)
    if ref in BUILTIN_NAMES:
        return builtin_motion_adapter(ref, seed, image_family, field=field)
    path = Path(ref).expanduser()
    if path.is_dir():
        return _from_pretrained(str(path), ref, field, local_files_only=True)
    if path.is_file():
        return load_motion_module_file(path, field=field, value=ref)
    hub_like = bool(_HUB_ID.match(ref))
    if path.is_absolute() or ref.startswith(("./", "../", "~", ".\\", "..\\")):
        raise FlipbookError(field, ref, ALLOWED_MOTION_MODULES, detail="no such file or folder")
    folders = _as_models_dir(models_dir)
    if folders is not None:
        try:
            found = folders.find("motion_module", ref)
        except FlipbookError as error:
            if not hub_like or "ambiguous" in (error.detail or ""):
                raise FlipbookError(field, ref, error.allowed, detail=error.detail) from None
        else:
            if found.is_dir():
                return _from_pretrained(str(found), ref, field, local_files_only=True)
            return load_motion_module_file(found, field=field, value=ref)
    if hub_like and path.suffix.lower() not in MOTION_MODULE_SUFFIXES:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        return _from_pretrained(ref, ref, field, local_files_only=offline)
    detail = "no such file or folder" + (
        "" if folders else "; set model.models_dir to find motion modules by name"
    )
    raise FlipbookError(field, ref, ALLOWED_MOTION_MODULES, detail=detail)


def _from_pretrained(source: str, ref: str, field: str, *, local_files_only: bool) -> MotionAdapter:
    try:
        adapter = MotionAdapter.from_pretrained(source, local_files_only=local_files_only)
    except (OSError, ValueError) as error:
        detail = "not in the local Hugging Face cache and the hub can't be reached"
        if Path(source).exists():
            detail = (
                refused_pickle(error)
                or f"the folder could not be loaded: {str(error).strip().splitlines()[0][:200]}"
            )
        raise FlipbookError(field, ref, ALLOWED_MOTION_MODULES, detail=detail) from None
    missing = [name for name, tensor in adapter.state_dict().items() if tensor.is_meta]
    if missing:
        raise FlipbookError(field, ref, ALLOWED_MOTION_MODULES, detail=f"weight {missing[0]!r} missing")
    return adapter.to(torch.float32)

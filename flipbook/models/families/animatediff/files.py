"""Motion-module and LoRA weights files: read safely (no pickled code runs), and written in the original layout."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import MotionAdapter

from flipbook.errors import FlipbookError
from flipbook.models.families.animatediff.keys import motion_adapter_to_original_state_dict, plain_config
from flipbook.models.pickles import load_torch_file
from flipbook.models.weights import CONFIG_METADATA_KEY, check_weights_file, read_safetensors

LORA_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
_CONFIG_ENTRY = "motion_adapter"  # key of the MotionAdapter config in the embedded flipbook_config JSON


@dataclass
class _Weights:
    """A weights file's tensors, the flipbook config it embeds, and the container they were found under."""

    state: dict[str, torch.Tensor]
    embedded: dict[str, Any] | None = None
    wrapper: str | None = None


def _parse_embedded(blob: object) -> dict[str, Any] | None:
    try:
        parsed = json.loads(blob) if isinstance(blob, str) else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def read_weights(
    path: str | Path, *, field: str, value: object, allowed: str, suffixes: tuple[str, ...] = LORA_SUFFIXES
) -> _Weights:
    """A weights file's tensors, read without running pickled code; every problem a FlipbookError on ``field``.

    ``.safetensors`` with safetensors; anything else with :func:`flipbook.models.pickles.load_torch_file`
    (``torch.load(weights_only=True)``: a pickle with objects is refused, never run), unwrapping the
    containers these files use (``state_dict``, ``module``, SparseCtrl's ``controlnet``) and ignoring
    non-tensor entries (``animatediff_config``, ``epoch``...).
    """
    path = Path(path)

    def fail(detail: str) -> FlipbookError:
        return FlipbookError(field, value, allowed, detail=detail)

    if check_weights_file(path, suffixes, fail) == ".safetensors":
        state, metadata = read_safetensors(path, fail)
        embedded = _parse_embedded(metadata.get(CONFIG_METADATA_KEY))
        return _Weights(state, embedded.get(_CONFIG_ENTRY) if embedded else None)
    loaded = load_torch_file(path, fail)
    embedded, wrapper = None, None
    while isinstance(loaded, dict):
        if isinstance(loaded.get(CONFIG_METADATA_KEY), str):
            embedded = _parse_embedded(loaded[CONFIG_METADATA_KEY])
        inner = next(
            (name for name in ("state_dict", "module", "controlnet") if isinstance(loaded.get(name), dict)),
            None,
        )
        if inner is None:
            break
        wrapper = inner if wrapper is None or inner == "controlnet" else wrapper
        loaded = loaded[inner]
    if not isinstance(loaded, dict):
        raise fail(f"the file holds a {type(loaded).__name__}, not a state dict")
    state = {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    return _Weights(state, embedded.get(_CONFIG_ENTRY) if embedded else None, wrapper)


def save_original_motion_module(
    adapter: MotionAdapter,
    path: str | Path,
    *,
    embed_config: bool = True,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``adapter`` as an original-layout single file: ``.safetensors``, else a pickle of tensors.

    With ``embed_config`` the adapter's config goes along (the safetensors header metadata, or an entry next
    to ``state_dict``), so the few values no shape reveals (attention heads, GroupNorm groups) load back
    exactly; without it, a ``.ckpt`` is a plain dict of tensors, like the files AnimateDiff publishes.
    """
    path = Path(path)
    state = motion_adapter_to_original_state_dict(adapter, dtype=dtype)
    blob = json.dumps({_CONFIG_ENTRY: plain_config(adapter)})
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={CONFIG_METADATA_KEY: blob} if embed_config else None)
    else:
        torch.save({"state_dict": state, CONFIG_METADATA_KEY: blob} if embed_config else state, path)
    return path

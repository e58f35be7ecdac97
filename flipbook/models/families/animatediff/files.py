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
from flipbook.models.weights import CONFIG_METADATA_KEY

LORA_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
_CONFIG_ENTRY = "motion_adapter"  # key of the MotionAdapter config in the embedded flipbook_config JSON


def _sniff(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
    except OSError as error:
        return f"the file could not be read ({error.strerror or error})"
    if not head:
        return "the file is empty"
    if head.startswith(b"version https://git-lfs"):
        return "this is a Git LFS pointer file, not the weights (run `git lfs pull`)"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


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

    if not path.is_file():
        raise fail(f"no such file: {path}" if not path.exists() else f"not a file: {path}")
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise fail(f"unsupported file type {suffix or '(none)'!r}; use {', '.join(suffixes)}")
    if (problem := _sniff(path)) is not None:
        raise fail(problem)
    if suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                metadata = handle.metadata() or {}
                state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except Exception as error:  # safetensors raises its own error type for every kind of damage
            raise fail(f"truncated or corrupt safetensors file ({_first_line(error)})") from error
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

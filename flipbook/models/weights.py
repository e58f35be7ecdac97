"""Weights files and weight-building helpers that every model family uses.

- :func:`read_checkpoint`: the tensors of a single weights file (``.safetensors``, or a pickle read with
  ``torch.load(weights_only=True)`` through :mod:`flipbook.models.pickles`) and the configs flipbook embeds in
  the files it writes (:data:`CONFIG_METADATA_KEY`); every problem is one :class:`FlipbookError`.
- :func:`seeded` builds a module with deterministic random weights, leaving the global RNG alone (built-ins);
  :func:`empty_weights` builds one on the meta device (no memory, no random init) for weights loaded next.
- :func:`norm_groups` and :func:`head_counts`: hyperparameters no tensor shape reveals, fitted to the widths.
- :func:`check_no_missing_weights`: diffusers leaves weights a folder lacks on the meta device, silently.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from flipbook.errors import FlipbookError, first_line
from flipbook.models.pickles import load_torch_file

logger = logging.getLogger(__name__)

CONFIG_METADATA_KEY = "flipbook_config"
"""Key of the JSON blob (the components' configs) flipbook writes into its own weights files: the safetensors
header metadata, or a top-level entry next to "state_dict" in a .ckpt."""
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
ALLOWED_CHECKPOINT = "a single-file checkpoint (.safetensors, or a .ckpt holding only tensors)"


def read_checkpoint(
    path: str | Path,
    *,
    suffixes: tuple[str, ...] = CHECKPOINT_SUFFIXES,
    allowed: str = ALLOWED_CHECKPOINT,
    field: str = "model",
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The tensors of a single weights file and the flipbook configs it embeds (or None), read safely.

    ``suffixes`` are the accepted extensions; anything but ``.safetensors`` goes through
    :func:`flipbook.models.pickles.load_torch_file`. Problems are a :class:`FlipbookError` on ``field`` that
    says ``allowed``.
    """
    path = Path(path)

    def fail(detail: str) -> FlipbookError:
        return FlipbookError(field, str(path), allowed, detail=detail)

    if check_weights_file(path, suffixes, fail) == ".safetensors":
        state, metadata = read_safetensors(path, fail)
        return state, _parse_embedded(metadata.get(CONFIG_METADATA_KEY), path)

    loaded = load_torch_file(path, fail)
    embedded = None
    while isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        embedded = loaded.get(CONFIG_METADATA_KEY, embedded)
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise fail(f"the file holds a {type(loaded).__name__}, not a state dict")
    state = {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    return state, _parse_embedded(embedded, path)


def check_weights_file(path: Path, suffixes: tuple[str, ...], fail: Callable[[str], FlipbookError]) -> str:
    """``path``'s lower-case suffix, once it is an existing, readable, non-empty file (not a Git LFS pointer)
    with one of ``suffixes``; else ``fail(detail)`` is raised."""
    if not path.exists():
        raise fail(f"no such file: {path}")
    if not path.is_file():
        raise fail(f"not a file: {path}")
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise fail(f"unsupported file type {suffix or '(none)'!r}; use {', '.join(suffixes)}")
    if (problem := _sniff(path)) is not None:
        raise fail(problem)
    return suffix


def read_safetensors(
    path: Path, fail: Callable[[str], FlipbookError]
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors (on the CPU) and header metadata; damage is ``fail(detail)``."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error type for every kind of damage
        raise fail(f"truncated or corrupt safetensors file ({first_line(exc, with_type=True)})") from exc
    return state, metadata


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


def _parse_embedded(blob: object, path: Path) -> dict[str, Any] | None:
    if blob is None:
        return None
    try:
        parsed = json.loads(blob) if isinstance(blob, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        logger.warning("%s: ignoring unreadable %s metadata", path, CONFIG_METADATA_KEY)
        return None
    return parsed


# ---- building modules ----------------------------------------------------------------------------------


def seeded(seed: int, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``build()`` with torch's global RNG seeded with ``seed`` (and restored afterwards), in eval mode: the
    same seed always builds the same random weights, and nothing else's random draws change."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


def empty_weights(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """Build a model with parameters on the meta device (no memory, no random init); buffers stay real."""
    try:
        from accelerate import init_empty_weights
    except ImportError:  # pragma: no cover - accelerate is a dependency; this only costs time
        return build()
    with init_empty_weights():
        return build()


def norm_groups(widths: list[int], template: int) -> int:
    """GroupNorm groups: the template's when it divides every width, else the largest that does."""
    if all(width % template == 0 for width in widths):
        return template
    return math.gcd(template, *widths)


def head_counts(widths: list[int], template: int | list[int] | None) -> int | list[int] | None:
    """Attention head counts: the template's when they divide the widths, else 64-channel heads."""
    if template is None:
        return None
    per_level = list(template) if isinstance(template, (list, tuple)) else [template] * len(widths)
    if len(per_level) == len(widths) and all(w % h == 0 for w, h in zip(widths, per_level, strict=True)):
        return template
    return [w // 64 if w % 64 == 0 else 1 for w in widths]


def check_no_missing_weights(module: torch.nn.Module, field: str, value: str, allowed: str) -> None:
    """diffusers leaves weights missing from a folder on the meta device without a word; fail here, clearly."""
    missing = [name for name, tensor in module.state_dict().items() if tensor.is_meta]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FlipbookError(field, value, allowed, detail=f"weight {missing[0]!r} missing{more}")

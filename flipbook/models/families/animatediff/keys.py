"""Motion-module key layouts: AnimateDiff's original names <-> diffusers' MotionAdapter names."""

from __future__ import annotations

import json
import re
from typing import Any

import torch
from diffusers import MotionAdapter

_MOTION_KEY = re.compile(r"((?:down_blocks|up_blocks)\.\d+|mid_block)\.motion_modules\.(\d+)\.(.+)")
_ORIGINAL_MOTION_KEY = re.compile(
    r"((?:down_blocks|up_blocks)\.\d+|mid_block)\.motion_modules\.(\d+)\.temporal_transformer\.(.+)"
)
_BLOCK_PART = re.compile(r"transformer_blocks\.(\d+)\.(attn1|attn2|norm1|norm2|norm3|pos_embed)\.(.+)")
_ORIGINAL_BLOCK_PART = re.compile(
    r"transformer_blocks\.(\d+)\.(attention_blocks\.\d+|norms\.\d+|ff_norm)\.(.+)"
)
_HOTSHOT_KEY = re.compile(r"((?:down_blocks|up_blocks)\.\d+|mid_block)\.temporal_attentions\.(\d+)\.(.+)")
_HOTSHOT_ENCODING = ".pos_encoder.positional_encoding"
_TO_ORIGINAL = {
    "attn1": "attention_blocks.0",
    "attn2": "attention_blocks.1",
    "norm1": "norms.0",
    "norm2": "norms.1",
    "norm3": "ff_norm",
}
_FROM_ORIGINAL = {value: key for key, value in _TO_ORIGINAL.items()}


def motion_original_keys(key: str) -> tuple[str, ...]:
    """The original (AnimateDiff) names of MotionAdapter state-dict entry ``key``.

    One name, except for a transformer block's positional encoding: diffusers keeps one per block, the
    original layout one per attention block (two, always equal).
    """
    m = _MOTION_KEY.fullmatch(key)
    if m is None:
        raise KeyError(f"MotionAdapter entry {key!r} has no place in the original AnimateDiff layout")
    prefix, rest = f"{m[1]}.motion_modules.{m[2]}.temporal_transformer.", m[3]
    part = _BLOCK_PART.fullmatch(rest)
    if part is None:
        return (prefix + rest,)
    block, module, leaf = part.groups()
    if module == "pos_embed":
        return tuple(
            f"{prefix}transformer_blocks.{block}.attention_blocks.{i}.pos_encoder.{leaf}" for i in (0, 1)
        )
    return (f"{prefix}transformer_blocks.{block}.{_TO_ORIGINAL[module]}.{leaf}",)


def motion_diffusers_key(original: str) -> str | None:
    """The diffusers MotionAdapter name of an original-layout key, or None when it has no counterpart."""
    m = _ORIGINAL_MOTION_KEY.fullmatch(original)
    if m is None:
        return None
    prefix, rest = f"{m[1]}.motion_modules.{m[2]}.", m[3]
    part = _ORIGINAL_BLOCK_PART.fullmatch(rest)
    if part is None:
        return None if "attention_blocks." in rest or "norms." in rest else prefix + rest
    block, module, leaf = part.groups()
    if module.startswith("attention_blocks.") and leaf.startswith("pos_encoder."):
        if module not in ("attention_blocks.0", "attention_blocks.1"):
            return None
        return f"{prefix}transformer_blocks.{block}.pos_embed.{leaf.removeprefix('pos_encoder.')}"
    if module not in _FROM_ORIGINAL:
        return None
    return f"{prefix}transformer_blocks.{block}.{_FROM_ORIGINAL[module]}.{leaf}"


def hotshot_original_key(key: str) -> str | None:
    """The original AnimateDiff name of a Hotshot-XL temporal-layer key, or None when it is not one.

    Hotshot-XL's ``TransformerTemporal`` is AnimateDiff's ``TemporalTransformer3DModel`` under other names: the
    layers sit in ``temporal_attentions.N`` of each block (AnimateDiff: ``motion_modules.N.temporal_transformer``)
    and each attention's sinusoidal encoding is ``pos_encoder.positional_encoding`` (AnimateDiff:
    ``pos_encoder.pe``); the modules inside (``norm``, ``proj_in``, ``transformer_blocks.K.attention_blocks.{0,1}``,
    ``norms``, ``ff``, ``ff_norm``, ``proj_out``) have the same names and shapes.
    """
    m = _HOTSHOT_KEY.fullmatch(key)
    if m is None:
        return None
    rest = m[3]
    if rest.endswith(_HOTSHOT_ENCODING):
        rest = rest.removesuffix(_HOTSHOT_ENCODING) + ".pos_encoder.pe"
    return f"{m[1]}.motion_modules.{m[2]}.temporal_transformer.{rest}"


def plain_config(adapter: MotionAdapter) -> dict[str, Any]:
    """The adapter's config as plain JSON-able values, without diffusers' ``_`` bookkeeping keys."""
    config = {key: value for key, value in dict(adapter.config).items() if not key.startswith("_")}
    return json.loads(json.dumps(config))


def motion_adapter_to_original_state_dict(
    adapter: MotionAdapter, *, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """The adapter's weights in the original AnimateDiff key layout (as in ``mm_sd15_v2.ckpt``)."""
    state: dict[str, torch.Tensor] = {}
    for key, tensor in adapter.state_dict().items():
        value = tensor.detach().to("cpu", dtype or tensor.dtype)
        for original in motion_original_keys(key):
            state[original] = value.clone().contiguous()  # safetensors refuses tensors sharing memory
    return state

"""The MotionAdapter to build: the shipped configs, configs inferred from tensor shapes, fresh encodings."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from typing import Any

import torch
from diffusers import MotionAdapter

from flipbook.errors import FlipbookError, first_line

# AnimateDiff-Evolved's length for AnimateLCM files, which store no positional encoding.
NO_ENCODING_MAX_LENGTH = 64


def shipped_motion_config(version: str) -> dict[str, Any]:
    """The shipped MotionAdapter config of ``version`` (SD 1.5's v1, v2, v3; SDXL's sdxl-beta, hotshot-xl), without
    ``_`` keys."""
    source = resources.files("flipbook.models.families.animatediff").joinpath(
        "configs", version, "config.json"
    )
    data = json.loads(source.read_text(encoding="utf-8"))
    return {key: value for key, value in data.items() if not key.startswith("_")}


def _indices(state: Iterable[str], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m[1]) for key in state if (m := regex.match(key))})


def _largest_divisor(template: int, widths: list[int]) -> int:
    """``template`` when it divides every width, else the largest smaller value that does."""
    for candidate in range(template, 0, -1):
        if all(width % candidate == 0 for width in widths):
            return candidate
    return 1


def infer_motion_config(
    state: Mapping[str, torch.Tensor],
    template: Mapping[str, Any],
    fail: Callable[[str], FlipbookError],
    *,
    no_encoding_length: int = NO_ENCODING_MAX_LENGTH,
) -> dict[str, Any]:
    """``template`` with every size the (diffusers-layout) tensors reveal replaced by the real one;
    ``no_encoding_length`` is the encoding length of a module whose file stores none."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise fail(f"weight {key!r} missing")
        return tuple(state[key].shape)

    levels = _indices(state, r"down_blocks\.(\d+)\.motion_modules\.")
    widths = [shape(f"down_blocks.{level}.motion_modules.0.proj_in.weight")[1] for level in levels]
    layers = [len(_indices(state, rf"down_blocks\.{level}\.motion_modules\.(\d+)\.")) for level in levels]
    transformer_layers = [
        len(_indices(state, rf"down_blocks\.{level}\.motion_modules\.0\.transformer_blocks\.(\d+)\."))
        for level in levels
    ]
    accepted = inspect.signature(MotionAdapter.__init__).parameters
    config = {key: value for key, value in template.items() if key in accepted}  # older configs: extra keys
    config.update(
        block_out_channels=widths,
        motion_layers_per_block=layers[0] if len(set(layers)) == 1 else layers,
        motion_transformer_layers_per_block=(
            transformer_layers[0] if len(set(transformer_layers)) == 1 else transformer_layers
        ),
        use_motion_mid_block=any(key.startswith("mid_block.") for key in state),
        conv_in_channels=None,
    )
    if config["use_motion_mid_block"]:
        mid_layers = _indices(state, r"mid_block\.motion_modules\.(\d+)\.")
        config["motion_mid_block_layers_per_block"] = len(mid_layers)
        mid_transformer_layers = [
            len(_indices(state, rf"mid_block\.motion_modules\.{i}\.transformer_blocks\.(\d+)\."))
            for i in mid_layers
        ]
        config["motion_transformer_layers_per_mid_block"] = (
            mid_transformer_layers[0] if len(set(mid_transformer_layers)) == 1 else mid_transformer_layers
        )
    pe = next((state[key] for key in state if key.endswith("pos_embed.pe")), None)
    config["motion_max_seq_length"] = int(pe.shape[1]) if pe is not None else no_encoding_length
    heads = template.get("motion_num_attention_heads", 8)
    per_level = list(heads) if isinstance(heads, (list, tuple)) else [heads] * len(widths)
    if len(per_level) != len(widths) or any(w % h for w, h in zip(widths, per_level, strict=False)):
        config["motion_num_attention_heads"] = _largest_divisor(max(per_level), widths)
    config["motion_norm_num_groups"] = _largest_divisor(
        int(template.get("motion_norm_num_groups", 32)), widths
    )
    return config


def _build(config: Mapping[str, Any], fail: Callable[[str], FlipbookError]) -> MotionAdapter:
    try:
        with torch.device("meta"):
            return MotionAdapter(**config)
    except (TypeError, ValueError) as error:
        raise fail(f"its shapes make no motion module ({first_line(error, with_type=True)})") from error


def _computed_encodings(adapter: MotionAdapter) -> dict[str, torch.Tensor]:
    """Fresh sinusoidal encodings for every block (files without stored ones, as AnimateLCM's)."""
    from diffusers.models.embeddings import SinusoidalPositionalEmbedding

    encodings = {}
    for key, tensor in adapter.state_dict().items():
        if key.endswith("pos_embed.pe"):
            encodings[key] = SinusoidalPositionalEmbedding(tensor.shape[2], tensor.shape[1]).pe
    return encodings

"""fp8 weight files (``*_fp8_e4m3fn.safetensors``, ComfyUI's ``*_fp8_scaled.safetensors``) upcast at load.

A plain fp8 file holds its weights cast to ``float8_e4m3fn`` or ``float8_e5m2``; ComfyUI's scaled fp8 files
also hold, per weight, ``<layer>.scale_weight`` (the weight is ``fp8 * scale_weight``: one number, or one per
output row), ``<layer>.scale_input`` (a hint for fp8 matrix products, not a weight) and an empty ``scaled_fp8``
marker tensor. :func:`upcast_fp8` gives the state dict the model expects: every fp8 tensor times its scale, in
the compute dtype, the scales and markers dropped. The model then holds the weights in that dtype (twice
the fp8 file's size in bf16).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)
MARKER = "scaled_fp8"
_EXTRA = (".scale_weight", ".scale_input")


def is_fp8(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict holds fp8 tensors (or ComfyUI's scaled-fp8 marker)."""
    return MARKER in state or any(getattr(t, "dtype", None) in FP8 for t in state.values())


def upcast_fp8(state: Mapping[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """``state`` with each fp8 tensor dequantised (times its ``scale_weight`` where the file has one) into
    ``dtype``, and the scaled-fp8 bookkeeping keys left out; other tensors unchanged."""
    upcast: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key == MARKER or key.endswith(_EXTRA):
            continue
        if tensor.dtype in FP8:
            value = tensor.to(torch.float32)
            scale = (
                state.get(f"{key.removesuffix('.weight')}.scale_weight") if key.endswith(".weight") else None
            )
            if scale is not None:
                scale = scale.to(torch.float32)
                value = value * (scale.reshape(-1, *[1] * (value.ndim - 1)) if scale.numel() > 1 else scale)
            tensor = value.to(dtype)
        upcast[key] = tensor
    return upcast

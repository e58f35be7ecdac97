"""fp8 weight files (``*_fp8_e4m3fn.safetensors``, ComfyUI's ``*_fp8_scaled.safetensors``): upcast at load, or
kept in fp8 in memory.

A plain fp8 file holds its weights cast to ``float8_e4m3fn`` or ``float8_e5m2``; ComfyUI's scaled fp8 files
also hold, per weight, ``<layer>.scale_weight`` (the weight is ``fp8 * scale_weight``: one number, or one per
output row), ``<layer>.scale_input`` (a hint for fp8 matrix products, not a weight) and an empty ``scaled_fp8``
marker tensor. Every weight is dequantised by one function, :func:`dequantise` (fp8 to float32, times the
scale, into the compute dtype), at one of two moments:

- **at load** (:func:`upcast_fp8`): the state dict the model expects, every fp8 tensor dequantised, the scales
  and markers dropped. The model holds its weights in the compute dtype (twice the file's size in bf16).
- **per layer, as it computes** (:func:`keep_fp8`, for the transformer when fp8 storage is on): the file's
  fp8 weights of the layers diffusers' layerwise casting would store in fp8 (linear, convolution, embedding
  layers, not those its skip patterns name: norms, embedders whose dtype the model reads) are assigned as they
  are (no upcast copy: those weights take the file's size in memory), each such layer given an
  :class:`Fp8Layer` hook that dequantises its weight with its scale before each call and puts the fp8 tensor
  back after it. The hook is diffusers' layerwise-casting hook (registered under its name, so the model's
  ``dtype`` is the compute dtype, as with ``enable_layerwise_casting``), changed in two ways: it casts the
  weight only (biases and the layers the file keeps in higher precision stay in the compute dtype, as the
  upcast model has them), and it applies the scale. A layer computes with exactly the weight
  :func:`upcast_fp8` would have given it, so a model kept in fp8 makes the same outputs as the upcast one.
  Any other fp8 tensor (a parameter used outside a layer's own call, such as Wan's ``scale_shift_table``) is
  dequantised at load.

A weight keeps its scale through a key converter (original layout to diffusers') by identity: converters
rename keys and keep the tensor objects (:func:`scaled_weights`); a scaled weight a converter rebuilt cannot be
kept, and the caller upcasts the file instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from diffusers.hooks import HookRegistry
from diffusers.hooks._common import _GO_LC_SUPPORTED_PYTORCH_LAYERS
from diffusers.hooks.layerwise_casting import (
    _LAYERWISE_CASTING_HOOK,
    DEFAULT_SKIP_MODULES_PATTERN,
    LayerwiseCastingHook,
)

FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)
MARKER = "scaled_fp8"
_EXTRA = (".scale_weight", ".scale_input")


def is_fp8(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict holds fp8 tensors (or ComfyUI's scaled-fp8 marker)."""
    return MARKER in state or any(getattr(t, "dtype", None) in FP8 for t in state.values())


def dequantise(tensor: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """An fp8 tensor's values in ``dtype``: in float32 times ``scale`` (one number, or one per output row), then
    cast; without a scale the fp8 values themselves (exact in bf16, fp16 and float32)."""
    value = tensor.to(torch.float32)
    if scale is not None:
        scale = scale.to(device=value.device, dtype=torch.float32)
        value = value * (scale.reshape(-1, *[1] * (value.ndim - 1)) if scale.numel() > 1 else scale)
    return value.to(dtype)


def _scale_of(state: Mapping[str, torch.Tensor], key: str) -> torch.Tensor | None:
    return state.get(f"{key.removesuffix('.weight')}.scale_weight") if key.endswith(".weight") else None


def _bookkeeping(key: str) -> bool:
    return key == MARKER or key.endswith(_EXTRA)


def upcast_fp8(state: Mapping[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """``state`` with each fp8 tensor dequantised (times its ``scale_weight`` where the file has one) into
    ``dtype``, and the scaled-fp8 bookkeeping keys left out; other tensors unchanged."""
    return {
        key: dequantise(tensor, _scale_of(state, key), dtype) if tensor.dtype in FP8 else tensor
        for key, tensor in state.items()
        if not _bookkeeping(key)
    }


def scaled_weights(
    state: Mapping[str, torch.Tensor], convert: Callable[[dict[str, torch.Tensor]], Mapping[str, Any]]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None:
    """``state`` without the scaled-fp8 bookkeeping keys, through ``convert`` (a key converter), with the scale
    of each fp8 weight under its converted key; None when ``convert`` rebuilt a scaled weight (its scale can no
    longer be told), so the file must be upcast at load."""
    by_tensor = {id(t): scale for key, t in state.items() if (scale := _scale_of(state, key)) is not None}
    converted = dict(convert({key: t for key, t in state.items() if not _bookkeeping(key)}))
    scales = {key: by_tensor[id(t)] for key, t in converted.items() if id(t) in by_tensor}
    return (converted, scales) if len(scales) == len(by_tensor) else None


class Fp8Layer(LayerwiseCastingHook):
    """A layer whose weight stays as its file stores it (fp8) and is dequantised (times ``scale``) into
    ``compute_dtype`` for each call, exactly as :func:`upcast_fp8` dequantises it at load; the fp8 tensor is
    put back after the call. Registered as diffusers' layerwise-casting hook."""

    def __init__(self, scale: torch.Tensor | None, storage_dtype: torch.dtype, compute_dtype: torch.dtype):
        super().__init__(storage_dtype, compute_dtype, non_blocking=False)
        self.scale = scale
        self.stored: torch.Tensor | None = None

    def initialize_hook(self, module: torch.nn.Module) -> torch.nn.Module:
        return module  # the weight is fp8 already; the rest stays in the compute dtype

    def pre_forward(self, module: torch.nn.Module, *args, **kwargs):
        weight = module.weight
        if self.scale is not None and self.scale.device != weight.device:  # offloading moved the layer
            self.scale = self.scale.to(weight.device)
        self.stored = weight.data
        weight.data = dequantise(weight.data, self.scale, self.compute_dtype)
        return args, kwargs

    def post_forward(self, module: torch.nn.Module, output):
        module.weight.data, self.stored = self.stored, None
        return output


def cast_layers(module: torch.nn.Module) -> Iterator[str]:
    """The names of the layers ``enable_layerwise_casting`` would store in fp8: diffusers' supported layers
    (linear, convolution, embedding), except under a name its patterns skip (the default ones, the model's
    ``_keep_in_fp32_modules`` and ``_skip_layerwise_casting_patterns``: norms, embedders whose dtype the
    model reads to cast its inputs, ``proj_in``/``proj_out``), found as diffusers walks the model."""
    patterns = (
        *DEFAULT_SKIP_MODULES_PATTERN,
        *(getattr(module, "_keep_in_fp32_modules", None) or ()),
        *(getattr(module, "_skip_layerwise_casting_patterns", None) or ()),
    )

    def walk(layer: torch.nn.Module, prefix: str) -> Iterator[str]:
        if prefix and any(re.search(pattern, prefix) for pattern in patterns):
            return
        if isinstance(layer, _GO_LC_SUPPORTED_PYTORCH_LAYERS):
            yield prefix
            return
        for name, child in layer.named_children():
            yield from walk(child, f"{prefix}.{name}" if prefix else name)

    return walk(module, "")


def keep_fp8(
    module: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    scales: Mapping[str, torch.Tensor],
    dtype: torch.dtype,
) -> tuple[dict[str, torch.Tensor], Callable[[torch.nn.Module], torch.nn.Module]]:
    """What to assign to ``module`` (built on the meta device) so that the fp8 weights of the layers
    layerwise casting stores in fp8 (:func:`cast_layers`) stay fp8: those tensors as they are, every other fp8
    tensor dequantised (with its scale) into ``dtype``, the rest as they are; and the function that gives the
    loaded module its :class:`Fp8Layer` hooks."""
    layers = set(cast_layers(module))
    kept: dict[str, torch.Tensor | None] = {}
    assigned: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        layer = key.removesuffix(".weight")
        if tensor.dtype in FP8 and key.endswith(".weight") and layer in layers:
            kept[layer] = scales.get(key)
        elif tensor.dtype in FP8:
            tensor = dequantise(tensor, scales.get(key), dtype)
        assigned[key] = tensor

    def hook(loaded: torch.nn.Module) -> torch.nn.Module:
        named = dict(loaded.named_modules())
        for name, scale in kept.items():
            layer = named[name]
            layer.compute_dtype = dtype  # what PEFT makes a LoRA on this layer in (as for quantised layers)
            registry = HookRegistry.check_if_exists_or_initialize(layer)
            registry.register_hook(Fp8Layer(scale, layer.weight.dtype, dtype), _LAYERWISE_CASTING_HOOK)
        return loaded

    return assigned, hook


def holds_fp8(module: torch.nn.Module) -> bool:
    """Whether ``module`` has layers kept in fp8 (:func:`keep_fp8`)."""
    for layer in module.modules():
        registry = getattr(layer, "_diffusers_hook", None)
        if registry is not None and isinstance(registry.get_hook(_LAYERWISE_CASTING_HOOK), Fp8Layer):
            return True
    return False

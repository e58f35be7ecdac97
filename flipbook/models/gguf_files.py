"""GGUF-quantised weight files (city96's ComfyUI-GGUF conversions: ``wan2.1-t2v-14b-Q4_K_M.gguf`` in
``models/diffusion_models`` or ``models/unet``), read through diffusers' GGUF support.

:func:`read_gguf` is diffusers' ``load_gguf_checkpoint`` (quantised tensors stay quantised as its
``GGUFParameter``; F16/F32 ones are plain tensors) plus the one thing ComfyUI-GGUF's files add: tensors of more
than four dimensions (Wan's 5-D ``patch_embedding``) may be stored flattened, with their shape in the metadata
key ``comfy.gguf.orig_shape.<name>``, and are put back in that shape. :func:`logical_shapes` gives every
tensor's shape as the model sees it (a quantised tensor is stored as bytes per row), so a family can read its
configuration from the shapes as it does for safetensors files. A model is then built by the family's
diffusers class with ``from_single_file(state, quantization_config=GGUFQuantizationConfig(...))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from flipbook.errors import FlipbookError

ORIG_SHAPE = "comfy.gguf.orig_shape."


def tensor_names(path: Path) -> list[str]:
    """The names of a GGUF file's tensors (without reading them), for a family's detector."""
    from gguf import GGUFReader

    try:
        return [tensor.name for tensor in GGUFReader(str(path)).tensors]
    except (OSError, ValueError, IndexError, KeyError):
        return []


def read_gguf(path: Path, field: str, allowed: str) -> dict[str, torch.Tensor]:
    """Every tensor of a GGUF file (see the module docstring); a damaged file or a quantisation type
    diffusers cannot compute with is one FlipbookError naming ``field``."""
    from diffusers.models.model_loading_utils import load_gguf_checkpoint
    from gguf import GGUFReader

    try:
        state = load_gguf_checkpoint(str(path))
        fields = GGUFReader(str(path)).fields
    except ValueError as error:  # an unsupported type, or not a GGUF file
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise FlipbookError(field, str(path), allowed, detail=first) from None
    except (OSError, IndexError, KeyError) as error:
        raise FlipbookError(
            field, str(path), allowed, detail=f"truncated or corrupt GGUF file ({error})"
        ) from None
    for key, value in fields.items():
        if key.startswith(ORIG_SHAPE) and key[len(ORIG_SHAPE) :] in state:
            name = key[len(ORIG_SHAPE) :]
            shape = tuple(int(size) for size in value.contents())
            if not _quantised(state[name]):
                state[name] = state[name].reshape(shape)
    return state


def logical_shapes(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Each tensor as an empty meta tensor of the shape the model sees (a quantised one's from its bytes)."""
    from gguf import quant_shape_from_byte_shape

    shapes = {}
    for name, tensor in state.items():
        shape = tuple(tensor.shape)
        if _quantised(tensor):
            shape = quant_shape_from_byte_shape(shape, tensor.quant_type)
        shapes[name] = torch.empty(shape, device="meta")
    return shapes


def quantization_config(compute_dtype: torch.dtype):
    """diffusers' GGUF quantisation config: weights stay quantised and are dequantised per layer into
    ``compute_dtype`` when they are used."""
    from diffusers import GGUFQuantizationConfig

    return GGUFQuantizationConfig(compute_dtype=compute_dtype)


def gguf_model(model_class: type, state: dict[str, Any], config: dict[str, Any], dtype: torch.dtype):
    """``model_class`` (a diffusers model) from a GGUF file's ``state``, its weights kept quantised: diffusers'
    ``from_single_file`` with its GGUF quantiser, computing in ``dtype``, handed ``config`` (read from the
    tensors' :func:`logical_shapes`) in a temporary folder, offline; in eval mode."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "config.json").write_text(
            json.dumps({"_class_name": model_class.__name__, **config}), encoding="utf-8"
        )
        model = model_class.from_single_file(
            state, config=folder, quantization_config=quantization_config(dtype), torch_dtype=dtype,
            local_files_only=True,
        )  # fmt: skip
    return model.eval()


def _quantised(tensor: Any) -> bool:
    return getattr(tensor, "quant_type", None) is not None

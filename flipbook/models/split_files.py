"""Pieces every family's split single files share (ComfyUI's ``models/text_encoders``, ``models/vae`` files
named beside a transformer file): finding a part by path or by name in the models folder, a T5-family text
encoder from a transformers-layout file with its configuration read from the shapes, the tokenizer a single
text-encoder file lacks, fp8 weights upcast (or kept in fp8: :func:`transformer_tensors`), and a module built on the meta device with the file's tensors
assigned (every one needed)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from flipbook.errors import FlipbookError
from flipbook.models.folders import ModelsDir
from flipbook.models.weights import read_checkpoint

ALLOWED_PART = "a .safetensors file (a path, or a name in model.models_dir's {folder})"


def t5_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """A T5/UMT5 encoder's config from a transformers-layout state dict's shapes."""
    vocab, d_model = state["shared.weight"].shape
    buckets, heads = state["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape
    layers = 1 + max(int(m.group(1)) for key in state if (m := re.match(r"encoder\.block\.(\d+)\.", key)))
    return {
        "vocab_size": vocab,
        "d_model": d_model,
        "d_kv": state["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0] // heads,
        "d_ff": state["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape[0],
        "num_layers": layers,
        "num_heads": heads,
        "relative_attention_num_buckets": buckets,
        "feed_forward_proj": "gated-gelu",
        "pad_token_id": 0,
        "eos_token_id": 1,
    }


def find_part(ref: str, kind: str, field_name: str, models_dir: str | Path | None) -> Path:
    """A part's file: a path, or a name in the models folder's ``kind`` folders."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    if models_dir:
        return ModelsDir(Path(models_dir)).find(kind, ref)
    folder = "text_encoders" if kind == "text_encoder" else "vae"
    raise FlipbookError(
        field_name, ref, ALLOWED_PART.format(folder=f"models/{folder}"), detail="no such file"
    )


def upcast(state: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    """An fp8 file's weights (plain, or ComfyUI's scaled fp8) dequantised into the compute dtype at load."""
    from flipbook.models.fp8_files import is_fp8, upcast_fp8

    return upcast_fp8(state, dtype) if is_fp8(state) else state


def transformer_tensors(
    state: dict[str, torch.Tensor],
    dtype: torch.dtype,
    keep_fp8: bool,
    convert: Callable[[dict[str, torch.Tensor]], Mapping[str, torch.Tensor]] = dict,
) -> tuple[dict[str, torch.Tensor], Mapping[str, torch.Tensor] | None]:
    """A transformer file's tensors through its key converter, for :func:`build_module`, and the scales of its
    fp8 weights where they stay fp8 in memory: with ``keep_fp8`` an fp8 file's weights as stored (None: upcast
    at load; also where the converter rebuilt a scaled weight, see :func:`fp8_files.scaled_weights`)."""
    from flipbook.models.fp8_files import is_fp8, scaled_weights

    if keep_fp8 and is_fp8(state) and (kept := scaled_weights(state, convert)) is not None:
        return kept
    return dict(convert(upcast(state, dtype))), None


def t5_encoder(
    path: Path, dtype: torch.dtype, field_name: str, title: str, classes: Callable[[], tuple[Any, Any]]
) -> torch.nn.Module:
    """A T5-family encoder (``classes()``: its transformers model and config classes) from a
    transformers-layout file, fp8 included; ``title`` names it in the errors ("UMT5", "T5")."""
    state, _ = read_checkpoint(
        path, suffixes=(".safetensors",), field=field_name,
        allowed=ALLOWED_PART.format(folder="models/text_encoders"),
    )  # fmt: skip
    state = upcast(state, dtype)
    if "shared.weight" not in state or "encoder.block.0.layer.0.SelfAttention.q.weight" not in state:
        raise FlipbookError(field_name, str(path), f"a {title} encoder file (transformers layout)", detail="its "
                            f"keys are not a {title} encoder's")  # fmt: skip
    model_class, config_class = classes()
    config = config_class(**t5_config(state))
    state.setdefault("encoder.embed_tokens.weight", state["shared.weight"])
    return build_module(lambda: model_class(config), state, dtype, field_name, str(path))


def tokenizer_for(ref: str | None, field_name: str, models_dir: str | Path | None, example: str):
    """The tokenizer a single text-encoder file lacks: a folder (a path, or a name in the models folder's
    text-encoder folders) or a hub id in the local cache (``example``: the one the family uses)."""
    from transformers import AutoTokenizer

    allowed = f"a tokenizer folder or hub id (e.g. {example}) for the single-file text encoder"
    if ref is None:
        raise FlipbookError(field_name, None, allowed, detail="a single text-encoder file has no tokenizer")
    path = Path(ref).expanduser()
    if not path.is_dir() and models_dir:
        try:
            path = ModelsDir(Path(models_dir)).find("text_encoder", ref)
        except FlipbookError:
            path = Path(ref)
    try:
        return AutoTokenizer.from_pretrained(str(path) if path.is_dir() else ref)
    except (OSError, ValueError) as error:
        raise FlipbookError(field_name, ref, allowed, detail=str(error).splitlines()[0][:200]) from None


def build_module(
    make,
    state,
    dtype,
    field_name: str | None = None,
    ref: str | None = None,
    *,
    fp8_scales: Mapping[str, torch.Tensor] | None = None,
) -> torch.nn.Module:
    """The module with parameters on the meta device, then the file's tensors assigned (every one needed), in
    ``dtype``. With ``fp8_scales`` (the scales of a scaled-fp8 file's weights, empty for a plain one) the fp8
    weights of its layers stay fp8, each dequantised as its layer computes (:func:`fp8_files.keep_fp8`)."""
    from flipbook.models.fp8_files import FP8, keep_fp8
    from flipbook.models.weights import empty_weights

    module = empty_weights(make)
    hook = None
    if fp8_scales is not None:
        state, hook = keep_fp8(module, state, fp8_scales, dtype)
    try:
        result = module.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as error:  # tensors of other shapes than the configuration's
        differ = str(error).count("size mismatch")
        raise FlipbookError(
            field_name or "model", ref or "(file)", "a complete model part",
            detail=f"{differ or 'some'} of its tensor shapes do not fit the model's configuration",
        ) from None  # fmt: skip
    missing = [key for key in result.missing_keys if key]
    if missing or result.unexpected_keys:
        detail = f"missing {missing[0]!r}" if missing else f"unexpected {result.unexpected_keys[0]!r}"
        raise FlipbookError(field_name or "model", ref or "(file)", "a complete model part", detail=detail)
    mixed = any(p.dtype != dtype and p.dtype not in FP8 for p in module.parameters())  # fp8 files: bf16 norms
    for tensor in (*module.parameters(), *module.buffers()) if mixed else ():  # as module.to(dtype), fp8 kept
        if tensor.is_floating_point() and tensor.dtype != dtype and tensor.dtype not in FP8:
            tensor.data = tensor.data.to(dtype)
    return (module if hook is None else hook(module)).eval()

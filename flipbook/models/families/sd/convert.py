"""Diffusers <-> original (CompVis / A1111) Stable Diffusion key layout.

A single-file SD checkpoint stores the three networks under fixed prefixes:

* UNet: ``model.diffusion_model.*`` in LDM's ``input_blocks`` / ``middle_block`` / ``output_blocks`` numbering;
* VAE: ``first_stage_model.*`` with the mid-block attention as 1x1 convolutions;
* text encoder: ``cond_stage_model.transformer.text_model.*`` (SD 1.x: OpenAI CLIP in the transformers layout)
  or ``cond_stage_model.model.*`` (SD 2.x: OpenCLIP, with fused q/k/v ``in_proj`` weights).

The map is written once, as functions from a diffusers parameter name to its original name (plus, for
OpenCLIP's fused attention, which third of the fused tensor it is). :func:`pipeline_to_original_state_dict`
uses it to write checkpoints and :mod:`flipbook.models.families.sd.single_file` uses the very same functions to read
them, so a round trip is exact by construction. The numbering is derived from the model's config
(``layers_per_block``, number of levels, which up blocks have attention), not hard-coded for SD 1.5's sizes,
so small models in SD block layout convert too.

The layout follows diffusers' ``scripts/convert_diffusers_to_original_stable_diffusion.py`` (Apache-2.0).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from flipbook.errors import FlipbookError
from flipbook.models.weights import CONFIG_METADATA_KEY

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."
OPENCLIP_PREFIX = "cond_stage_model.model."
CONFIG_METADATA_VERSION = 1

_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_TOP = {
    "encoder.conv_norm_out": "encoder.norm_out",
    "decoder.conv_norm_out": "decoder.norm_out",
}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_OPENCLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}
_QKV = {"q_proj": 0, "k_proj": 1, "v_proj": 2}


def _split_module(rest: str) -> tuple[str, str]:
    """``"norm1.weight"`` -> ``("norm1", "weight")``."""
    module, _, leaf = rest.rpartition(".")
    return module, leaf


def _unet_resnet(rest: str) -> str:
    module, leaf = _split_module(rest)
    return f"{_UNET_RESNET.get(module, module)}.{leaf}"


def unet_original_key(key: str, *, layers_per_block: int, up_block_types: Sequence[str]) -> str:
    """The original (LDM) name, without ``model.diffusion_model.``, of diffusers UNet parameter ``key``."""
    module, leaf = _split_module(key)
    if module in _UNET_TOP:
        return f"{_UNET_TOP[module]}.{leaf}"
    per_level = layers_per_block + 1
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        index = 1 + int(m[1]) * per_level + int(m[3])
        if m[2] == "resnets":
            return f"input_blocks.{index}.0.{_unet_resnet(m[4])}"
        return f"input_blocks.{index}.1.{m[4]}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(m[1]) + 1) * per_level}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_unet_resnet(m[2])}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        index = int(m[1]) * per_level + int(m[3])
        if m[2] == "resnets":
            return f"output_blocks.{index}.0.{_unet_resnet(m[4])}"
        return f"output_blocks.{index}.1.{m[4]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
        level = int(m[1])
        slot = 2 if "CrossAttn" in up_block_types[level] else 1
        return f"output_blocks.{level * per_level + layers_per_block}.{slot}.{m[2]}"
    raise KeyError(f"UNet parameter {key!r} has no place in the original SD layout")


def _vae_resnet(rest: str) -> str:
    return rest.replace("conv_shortcut.", "nin_shortcut.")


def vae_original_key(key: str, *, num_levels: int) -> str:
    """The original name, without ``first_stage_model.``, of diffusers VAE parameter ``key``."""
    module, leaf = _split_module(key)
    if module in _VAE_TOP:
        return f"{_VAE_TOP[module]}.{leaf}"
    if module in {"encoder.conv_in", "encoder.conv_out", "decoder.conv_in", "decoder.conv_out"}:
        return key
    if module in {"quant_conv", "post_quant_conv"}:
        return key
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{_vae_resnet(m[3])}"
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key)
    if m and m[2] in _VAE_ATTENTION:
        return f"{m[1]}.mid.attn_1.{_VAE_ATTENTION[m[2]]}.{m[3]}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{_vae_resnet(m[3])}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"decoder.up.{num_levels - 1 - int(m[1])}.block.{m[2]}.{_vae_resnet(m[3])}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        return f"decoder.up.{num_levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
    raise KeyError(f"VAE parameter {key!r} has no place in the original SD layout")


def is_vae_conv_attention(original_key: str) -> bool:
    """Whether an original VAE key is a mid-block attention projection stored as a 1x1 convolution."""
    return bool(re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", original_key))


def clip_original_key(key: str) -> str:
    """The original SD 1.x name, without ``cond_stage_model.transformer.text_model.``, of a CLIP parameter.

    transformers >= 5 names ``CLIPTextModel`` parameters without the ``text_model.`` level; older versions
    include it. Both map to the same original name.
    """
    return key.removeprefix("text_model.")


def openclip_original_key(key: str) -> tuple[str, int | None]:
    """The original SD 2.x (OpenCLIP) name, without ``cond_stage_model.model.``, of a CLIP parameter.

    Returns ``(name, part)``: ``part`` is 0/1/2 when the parameter is the q/k/v third of OpenCLIP's fused
    ``in_proj`` tensor, otherwise None.
    """
    key = key.removeprefix("text_model.")
    simple = {
        "embeddings.token_embedding.weight": "token_embedding.weight",
        "embeddings.position_embedding.weight": "positional_embedding",
        "final_layer_norm.weight": "ln_final.weight",
        "final_layer_norm.bias": "ln_final.bias",
    }
    if key in simple:
        return simple[key], None
    if m := re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj)\.(weight|bias)", key):
        return f"transformer.resblocks.{m[1]}.attn.in_proj_{m[3]}", _QKV[m[2]]
    m = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key)
    if m and m[2] in _OPENCLIP_LAYER:
        return f"transformer.resblocks.{m[1]}.{_OPENCLIP_LAYER[m[2]]}.{m[3]}", None
    raise KeyError(f"text encoder parameter {key!r} has no place in the OpenCLIP layout")


def text_encoder_family(text_encoder: torch.nn.Module) -> str:
    """``"sd2"`` for an OpenCLIP-style text encoder (GELU), ``"sd1"`` for OpenAI CLIP (quick GELU)."""
    return "sd2" if getattr(text_encoder.config, "hidden_act", "quick_gelu") == "gelu" else "sd1"


def _tensor(value: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    value = value.detach().to("cpu")
    if dtype is not None and value.is_floating_point():
        value = value.to(dtype)
    return value.contiguous()


def _unet_state_dict(unet: torch.nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    layers = int(unet.config.layers_per_block)
    up_types = list(unet.config.up_block_types)
    return {
        UNET_PREFIX + unet_original_key(k, layers_per_block=layers, up_block_types=up_types): _tensor(
            v, dtype
        )
        for k, v in unet.state_dict().items()
    }


def _vae_state_dict(vae: torch.nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    levels = len(vae.config.block_out_channels)
    out = {}
    for key, value in vae.state_dict().items():
        original = vae_original_key(key, num_levels=levels)
        tensor = _tensor(value, dtype)
        if is_vae_conv_attention(original) and tensor.ndim == 2:
            tensor = tensor.reshape(*tensor.shape, 1, 1)
        out[VAE_PREFIX + original] = tensor
    return out


def _clip_state_dict(text_encoder: torch.nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    out = {
        CLIP_PREFIX + clip_original_key(k): _tensor(v, dtype) for k, v in text_encoder.state_dict().items()
    }
    # Original SD 1.x checkpoints carry the position ids too; some tools expect them.
    positions = text_encoder.config.max_position_embeddings
    out[CLIP_PREFIX + "embeddings.position_ids"] = torch.arange(positions, dtype=torch.int64)[None]
    return out


def _openclip_state_dict(text_encoder: torch.nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, list[torch.Tensor | None]] = {}
    for key, value in text_encoder.state_dict().items():
        original, part = openclip_original_key(key)
        if part is None:
            out[OPENCLIP_PREFIX + original] = _tensor(value, dtype)
        else:
            fused.setdefault(original, [None, None, None])[part] = _tensor(value, dtype)
    for original, parts in fused.items():
        if any(p is None for p in parts):
            raise KeyError(f"text encoder is missing part of the q/k/v projection {original!r}")
        out[OPENCLIP_PREFIX + original] = torch.cat(parts, dim=0)  # type: ignore[arg-type]
    # SD 2.x takes OpenCLIP's penultimate layer, so diffusers keeps one layer fewer than the original model.
    # Write that unused last block (zeros) and the unused text projection so the file has the full layout.
    config = text_encoder.config
    hidden, last = config.hidden_size, config.num_hidden_layers
    like = out[OPENCLIP_PREFIX + "ln_final.weight"]
    block = f"{OPENCLIP_PREFIX}transformer.resblocks.{last}."
    zeros = {
        "ln_1.weight": (hidden,),
        "ln_1.bias": (hidden,),
        "attn.in_proj_weight": (3 * hidden, hidden),
        "attn.in_proj_bias": (3 * hidden,),
        "attn.out_proj.weight": (hidden, hidden),
        "attn.out_proj.bias": (hidden,),
        "ln_2.weight": (hidden,),
        "ln_2.bias": (hidden,),
        "mlp.c_fc.weight": (config.intermediate_size, hidden),
        "mlp.c_fc.bias": (config.intermediate_size,),
        "mlp.c_proj.weight": (hidden, config.intermediate_size),
        "mlp.c_proj.bias": (hidden,),
    }
    for name, shape in zeros.items():
        out[block + name] = torch.zeros(shape, dtype=like.dtype)
    out[OPENCLIP_PREFIX + "text_projection"] = torch.eye(hidden, dtype=like.dtype)
    return out


def pipeline_to_original_state_dict(
    pipe: Any, *, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """UNet, VAE and text encoder of a diffusers SD pipeline as one state dict in the original layout.

    The text encoder's layout follows its architecture: OpenAI CLIP (SD 1.x) or OpenCLIP (SD 2.x, GELU).
    ``dtype`` optionally casts floating-point weights (e.g. ``torch.float16`` for a smaller file).
    """
    state = _unet_state_dict(pipe.unet, dtype)
    state.update(_vae_state_dict(pipe.vae, dtype))
    if text_encoder_family(pipe.text_encoder) == "sd2":
        state.update(_openclip_state_dict(pipe.text_encoder, dtype))
    else:
        state.update(_clip_state_dict(pipe.text_encoder, dtype))
    return state


def _plain_config(config: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(config).items() if not k.startswith("_") or k == "_class_name"}


def pipeline_configs(pipe: Any) -> dict[str, Any]:
    """The diffusers/transformers configs of a pipeline's components, as stored in flipbook checkpoints."""
    text_config = pipe.text_encoder.config.to_diff_dict()
    skip = {"transformers_version", "dtype", "torch_dtype", "architectures", "id2label", "label2id"}
    return {
        "version": CONFIG_METADATA_VERSION,
        "family": text_encoder_family(pipe.text_encoder),
        "unet": _plain_config(pipe.unet.config),
        "vae": _plain_config(pipe.vae.config),
        "text_encoder": {k: v for k, v in text_config.items() if not k.startswith("_") and k not in skip},
        "scheduler": {**_plain_config(pipe.scheduler.config), "_class_name": type(pipe.scheduler).__name__},
    }


def save_original_checkpoint(
    pipe: Any, path: str | Path, *, dtype: torch.dtype | None = None, embed_config: bool = True
) -> Path:
    """Write ``pipe`` as a single-file SD checkpoint in the original layout; returns the path.

    ``.safetensors`` is written with safetensors; ``.ckpt`` with ``torch.save({"state_dict": ...})`` (the
    layout A1111 and others read; it holds only tensors and strings, so it loads with
    ``torch.load(weights_only=True)``). With ``embed_config`` the components' exact configs go along as JSON
    (safetensors metadata / a ``flipbook_config`` entry), so the hyperparameters that tensor shapes cannot
    reveal (GroupNorm groups, attention heads) survive the round trip; other tools ignore it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in {".safetensors", ".ckpt"}:
        raise FlipbookError("output", str(path), "a path ending in .safetensors or .ckpt")
    state = pipeline_to_original_state_dict(pipe, dtype=dtype)
    blob = json.dumps(pipeline_configs(pipe), sort_keys=True) if embed_config else None
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        metadata = {"format": "pt"}
        if blob is not None:
            metadata[CONFIG_METADATA_KEY] = blob
        save_file(state, str(path), metadata=metadata)
    else:
        payload: dict[str, Any] = {"state_dict": state}
        if blob is not None:
            payload[CONFIG_METADATA_KEY] = blob
        torch.save(payload, path)
    return path

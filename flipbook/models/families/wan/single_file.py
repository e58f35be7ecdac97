"""Wan from the split single files ComfyUI users keep: a transformer (``models/diffusion_models``), a text
encoder (``models/text_encoders``) and a VAE (``models/vae``), each a path or a name in the models folder.

The transformer may be in Wan's original layout (ComfyUI's repackaged files: converted with diffusers' own
converter) or in diffusers' layout; its configuration is read from the tensor shapes (Wan's attention heads
are 128 wide) unless flipbook embedded one. The text encoder is a transformers-layout UMT5 encoder, its
configuration read from its shapes too. A single text-encoder file has no tokenizer: ``tokenizer`` names a
folder or hub id (``google/umt5-xxl``), and without one the error says so. The VAE is the Wan 2.1 VAE (original
or diffusers layout). An image-to-video transformer takes its CLIP vision encoder from ``models/clip_vision``
(transformers' layout or open_clip's, config from shapes: :func:`clip_vision_parts`). A GGUF-quantised transformer
(``.gguf``, ComfyUI-GGUF's) stays quantised through diffusers' GGUF support (:func:`gguf_transformer`). fp8
transformer and text-encoder files (plain ``*_fp8_e4m3fn`` and ComfyUI's scaled fp8 with ``scale_weight``
keys) are upcast into the compute dtype at load, or (the transformer, with ``keep_fp8``: fp8 storage on) kept
in fp8 in memory (:mod:`flipbook.models.fp8_files`). Pickled files are refused
with one clear error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from flipbook.errors import FlipbookError
from flipbook.models.split_files import (
    ALLOWED_PART,
    build_module,
    find_part,
    t5_encoder,
    tokenizer_for,
    transformer_tensors,
    upcast,
)
from flipbook.models.weights import read_checkpoint

HEAD_DIM = 128
ALLOWED_TRANSFORMER = (
    "a Wan transformer file: .safetensors, or GGUF-quantised (.gguf) as ComfyUI-GGUF writes it"
)
_PREFIX = "model.diffusion_model."


def is_wan_transformer(state: Mapping[str, Any]) -> bool:
    """The family's checkpoint detector: Wan's transformer keys, original or diffusers layout."""
    keys = {key.removeprefix(_PREFIX) for key in state}
    original = "patch_embedding.weight" in keys and "blocks.0.self_attn.q.weight" in keys
    return original or ("patch_embedding.weight" in keys and "blocks.0.attn1.to_q.weight" in keys)


def single_file_parts(
    path: Path,
    *,
    field_name: str,
    section: str,
    models_dir: str | Path | None,
    text_encoder: str | None,
    vae: str | None,
    tokenizer: str | None,
    dtype: torch.dtype,
    image_encoder: str | None = None,
    keep_fp8: bool = False,
) -> dict[str, Any]:
    """The pipeline's parts from a transformer file and the text encoder, VAE and tokenizer named beside it
    (and, for an image-to-video transformer, its CLIP vision encoder); ``keep_fp8``: an fp8 transformer file's
    weights stay fp8 in memory (:mod:`flipbook.models.fp8_files`)."""
    from diffusers import UniPCMultistepScheduler

    from flipbook.models.families.wan.loading import SCHEDULER_CONFIG

    quantised = path.suffix.lower() == ".gguf"
    if quantised:
        from flipbook.models.gguf_files import read_gguf

        state, embedded = read_gguf(path, field_name, ALLOWED_TRANSFORMER), None
    else:
        state, embedded = read_checkpoint(
            path, suffixes=(".safetensors",), field=field_name, allowed=ALLOWED_PART
        )
    if not is_wan_transformer(state):
        raise FlipbookError(field_name, str(path), "a Wan transformer file", detail="its keys are not Wan's")
    images = any(".k_img." in key or "img_emb." in key or "image_embedder." in key for key in state)
    if images and image_encoder is None:
        raise FlipbookError(
            f"{section}.image_encoder", None, f"the CLIP vision encoder that goes with the image-to-video "
            f"transformer file {path.name} (a file, or a name in model.models_dir: ComfyUI's models/clip_vision, "
            "e.g. clip_vision_h)",
        )  # fmt: skip
    if image_encoder is not None and not images:
        raise FlipbookError(
            f"{section}.image_encoder", image_encoder, f"unset for {path.name} (a text-to-video transformer: it "
            "reads no image tokens)",
        )  # fmt: skip
    for name, value in (("text_encoder", text_encoder), ("vae", vae)):
        if value is None:
            raise FlipbookError(
                f"{section}.{name}", None, f"the {name.replace('_', ' ')} that goes with the single transformer "
                f"file {path.name} (a file, or a name in model.models_dir)",
            )  # fmt: skip
    config = (embedded or {}).get("transformer")
    vision = {}
    if images:
        encoder_field = f"{section}.image_encoder"
        vision = clip_vision_parts(
            find_part(image_encoder, "clip_vision", encoder_field, models_dir), encoder_field
        )
    return {
        **vision,
        "transformer": gguf_transformer(state, dtype)
        if quantised
        else transformer_from_state(state, config, dtype, keep_fp8=keep_fp8),
        "text_encoder": _text_encoder(
            find_part(text_encoder, "text_encoder", f"{section}.text_encoder", models_dir),
            dtype,
            f"{section}.text_encoder",
        ),  # fmt: skip
        "tokenizer": tokenizer_for(tokenizer, f"{section}.tokenizer", models_dir, "google/umt5-xxl"),
        "vae": _vae(find_part(vae, "vae", f"{section}.vae", models_dir), f"{section}.vae"),
        "scheduler": UniPCMultistepScheduler.from_config(SCHEDULER_CONFIG),
    }


def clip_vision_parts(path: Path, field_name: str) -> dict[str, Any]:
    """An image-to-video transformer's image encoder and processor from a CLIP vision file in transformers'
    layout (ComfyUI's ``clip_vision_h.safetensors``) or open_clip's (``visual.*``: its keys renamed by
    :func:`open_clip_to_transformers`), its config read from the shapes (or embedded by flipbook)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    allowed = (
        "a CLIP vision encoder file in transformers' layout (ComfyUI's models/clip_vision, clip_vision_h) or "
        "open_clip's (visual.* keys)"
    )
    state, embedded = read_checkpoint(path, suffixes=(".safetensors",), field=field_name, allowed=allowed)
    if OPEN_CLIP_PATCH in state:
        state = open_clip_to_transformers(state)
    if "vision_model.embeddings.patch_embedding.weight" not in state:
        raise FlipbookError(field_name, str(path), allowed, detail="its keys are not a CLIP vision encoder's")
    state = upcast(state, torch.float32)
    config = CLIPVisionConfig(**dict((embedded or {}).get("image_encoder") or clip_vision_config(state)))
    encoder = build_module(
        lambda: CLIPVisionModelWithProjection(config), state, torch.float32, field_name, str(path)
    )
    side = int(config.image_size)
    return {
        "image_encoder": encoder,
        "image_processor": CLIPImageProcessor(crop_size=side, size={"shortest_edge": side}),
    }


OPEN_CLIP_PATCH = "visual.conv1.weight"
_OPEN_CLIP_NAMES = {
    "class_embedding": "vision_model.embeddings.class_embedding",
    "conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "ln_post.weight": "vision_model.post_layernorm.weight",
    "ln_post.bias": "vision_model.post_layernorm.bias",
}
_OPEN_CLIP_LAYER_NAMES = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
"""open_clip's ViT tower names (``visual.*``) -> transformers' CLIPVisionModelWithProjection's: per model, and
per residual block (``visual.transformer.resblocks.N.*`` -> ``vision_model.encoder.layers.N.*``)."""


def open_clip_to_transformers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An open_clip ViT's vision tower (the ``visual.*`` tensors of an open_clip checkpoint; any text tower is
    left out) in transformers' CLIPVisionModelWithProjection layout: the fused ``in_proj`` split into q, k
    and v, the position embedding a table, and the ``proj`` matrix transposed into ``visual_projection``. A
    tensor it does not know keeps its name, so the strict load names it."""
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if not key.startswith("visual."):
            continue
        name = key.removeprefix("visual.")
        block = re.match(r"transformer\.resblocks\.(\d+)\.(.+)$", name)
        if name in _OPEN_CLIP_NAMES:
            converted[_OPEN_CLIP_NAMES[name]] = tensor
        elif name == "positional_embedding":
            converted["vision_model.embeddings.position_embedding.weight"] = tensor
        elif name == "proj":
            converted["visual_projection.weight"] = tensor.t().contiguous()
        elif block is None:
            converted[key] = tensor
        else:
            layer, rest = f"vision_model.encoder.layers.{block.group(1)}", block.group(2)
            if rest.startswith("attn.in_proj_"):
                kind = rest.removeprefix("attn.in_proj_")
                for part, chunk in zip("qkv", tensor.chunk(3, dim=0), strict=True):
                    converted[f"{layer}.self_attn.{part}_proj.{kind}"] = chunk.contiguous()
                continue
            module, _, leaf = rest.rpartition(".")
            converted[f"{layer}.{_OPEN_CLIP_LAYER_NAMES.get(module, module)}.{leaf}"] = tensor
    return converted


def clip_vision_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """CLIPVisionConfig from a transformers-layout state dict's shapes. Heads are 64 wide except ViT-H/14's
    (1280 wide, 16 heads of 80: Wan's open-clip XLM-RoBERTa ViT-H), and the activation is GELU as in
    open-clip's ViTs."""
    patch = state["vision_model.embeddings.patch_embedding.weight"]
    hidden, _, size, _ = patch.shape
    positions = state["vision_model.embeddings.position_embedding.weight"].shape[0]
    layers = 1 + max(
        int(m.group(1)) for key in state if (m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.", key))
    )
    return {
        "hidden_size": hidden,
        "intermediate_size": state["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        "projection_dim": state["visual_projection.weight"].shape[0],
        "num_hidden_layers": layers,
        "num_attention_heads": 16 if hidden == 1280 else hidden // 64,
        "patch_size": size,
        "image_size": round((positions - 1) ** 0.5) * size,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
    }


def transformer_from_state(
    state: dict[str, torch.Tensor],
    config: Mapping[str, Any] | None,
    dtype: torch.dtype,
    *,
    keep_fp8: bool = False,
) -> torch.nn.Module:
    """A WanTransformer3DModel from a state dict in either layout, its config embedded or read from shapes; an
    fp8 file's weights upcast at load, or with ``keep_fp8`` kept in fp8."""
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    state = {key.removeprefix(_PREFIX): value for key, value in state.items()}
    original = "blocks.0.self_attn.q.weight" in state
    state, scales = transformer_tensors(
        state, dtype, keep_fp8, convert_wan_transformer_to_diffusers if original else dict
    )
    config = dict(config) if config else transformer_config(state)
    return build_module(
        lambda: WanTransformer3DModel(**config), state, dtype, "transformer", fp8_scales=scales
    )


def gguf_transformer(state: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.nn.Module:
    """A WanTransformer3DModel whose weights stay GGUF-quantised (dequantised per layer into ``dtype`` as they
    are used), built by diffusers' ``from_single_file`` with its GGUF quantiser and its Wan converter; the
    config is read from the tensors' logical shapes and handed over as a local config folder (offline)."""
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    from flipbook.models.gguf_files import gguf_model, logical_shapes

    state = {key.removeprefix(_PREFIX): value for key, value in state.items()}
    shapes = logical_shapes(state)
    if "blocks.0.self_attn.q.weight" in shapes:
        shapes = convert_wan_transformer_to_diffusers(dict(shapes))
    return gguf_model(WanTransformer3DModel, state, transformer_config(shapes), dtype)


def transformer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """WanTransformer3DModel's config from a diffusers-layout state dict's shapes."""
    patch = state["patch_embedding.weight"]
    inner, in_channels = patch.shape[:2]
    layers = 1 + max(int(m.group(1)) for key in state if (m := re.match(r"blocks\.(\d+)\.", key)))
    config: dict[str, Any] = {
        "patch_size": tuple(patch.shape[2:]),
        "num_attention_heads": inner // HEAD_DIM,
        "attention_head_dim": HEAD_DIM,
        "in_channels": in_channels,
        "out_channels": state["proj_out.weight"].shape[0] // int(torch.tensor(patch.shape[2:]).prod()),
        "text_dim": state["condition_embedder.text_embedder.linear_1.weight"].shape[1],
        "freq_dim": state["condition_embedder.time_embedder.linear_1.weight"].shape[1],
        "ffn_dim": state["blocks.0.ffn.net.0.proj.weight"].shape[0],
        "num_layers": layers,
        "cross_attn_norm": "blocks.0.norm2.weight" in state,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
    }
    if "condition_embedder.image_embedder.norm1.weight" in state:
        config["image_dim"] = state["condition_embedder.image_embedder.norm1.weight"].shape[0]
    if "blocks.0.attn2.add_k_proj.weight" in state:
        config["added_kv_proj_dim"] = state["blocks.0.attn2.add_k_proj.weight"].shape[1]
    if "condition_embedder.image_embedder.pos_embed" in state:
        config["pos_embed_seq_len"] = state["condition_embedder.image_embedder.pos_embed"].shape[1]
    return config


# ---- pieces ---------------------------------------------------------------------------------------------


def _text_encoder(path: Path, dtype: torch.dtype, field_name: str) -> torch.nn.Module:
    def classes():
        from transformers import UMT5Config, UMT5EncoderModel

        return UMT5EncoderModel, UMT5Config

    return t5_encoder(path, dtype, field_name, "UMT5", classes)


def _vae(path: Path, field_name: str) -> torch.nn.Module:
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    state, embedded = read_checkpoint(
        path, suffixes=(".safetensors",), field=field_name, allowed=ALLOWED_PART.format(folder="models/vae")
    )
    if "encoder.conv1.weight" in state and "encoder.conv_in.weight" not in state:
        state = convert_wan_vae_to_diffusers(dict(state))
    config = dict((embedded or {}).get("vae") or {})
    return build_module(lambda: AutoencoderKLWan(**config), state, torch.float32, field_name, str(path))

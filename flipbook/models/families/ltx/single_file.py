"""LTX-Video from the single files ComfyUI users keep: ``ltx-video-2b-v0.9.x.safetensors`` (the transformer and
the VAE in one file, LTX's original layout, ``models/checkpoints`` or ``models/diffusion_models``), with the T5
text encoder (``models/text_encoders``, transformers layout, fp8 too) and the tokenizer named beside it; or a
GGUF-quantised transformer (ComfyUI-GGUF's ``ltx-video-2b-v0.9.1-Q8_0.gguf``, in ``models/diffusion_models`` or
``models/unet``), which holds no VAE, with the VAE named too (an LTX single file or a VAE file: ``vae``); its
weights stay quantised through diffusers' GGUF support (:func:`gguf_transformer`).

The file is told from its keys (:func:`is_ltx_checkpoint`); both parts are converted to diffusers' layout by
diffusers' own converters. The transformer's configuration is read from its shapes (LTX-Video's 32 attention
heads); the VAE's is the one its version needs, which diffusers would download: the configs of 0.9.0, 0.9.1
and 0.9.5 and later ship here (``VAE_CONFIGS``, the version told as diffusers' single-file loader tells it), a
file flipbook wrote carries its own, and a VAE of another version is one error saying to use the diffusers
folder. Every tensor must fit the
configuration (a strict load), so a wrong one is an error, never a silently half-loaded model.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from flipbook.errors import FlipbookError
from flipbook.models.folders import ModelsDir
from flipbook.models.split_files import (
    build_module,
    find_part,
    t5_encoder,
    tokenizer_for,
    transformer_tensors,
    upcast,
)
from flipbook.models.weights import read_checkpoint

HEADS = 32  # every LTX-Video 0.9 transformer (2B: 32 x 64, 13B: 32 x 128)
_PREFIX = "model.diffusion_model."
ALLOWED = "an LTX-Video single file (transformer and VAE, e.g. ltx-video-2b-v0.9.1.safetensors)"
ALLOWED_GGUF = (
    "a GGUF-quantised LTX-Video transformer file (ComfyUI-GGUF's, e.g. ltx-video-2b-v0.9.1-Q8_0.gguf)"
)
ALLOWED_VAE = (
    "an LTX-Video VAE: an LTX-Video single file (it holds one) or a VAE file in LTX's original layout "
    "(.safetensors)"
)
_VAE_COMMON: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 128,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": (4, 3, 3, 3, 4),
    "spatio_temporal_scaling": (True, True, True, False),
    "patch_size": 4,
    "patch_size_t": 1,
    "resnet_norm_eps": 1e-6,
    "scaling_factor": 1.0,
    "encoder_causal": True,
    "decoder_causal": False,
}
VAE_CONFIGS: dict[str, dict[str, Any]] = {
    "ltx-video": {
        **_VAE_COMMON,
        "decoder_block_out_channels": (128, 256, 512, 512),
        "decoder_layers_per_block": (4, 3, 3, 3, 4),
        "decoder_spatio_temporal_scaling": (True, True, True, False),
        "decoder_inject_noise": (False, False, False, False, False),
        "upsample_residual": (False, False, False, False),
        "upsample_factor": (1, 1, 1, 1),
        "timestep_conditioning": False,
    },
    "ltx-video-0.9.1": {
        **_VAE_COMMON,
        "decoder_block_out_channels": (256, 512, 1024),
        "decoder_layers_per_block": (5, 6, 7, 8),
        "decoder_spatio_temporal_scaling": (True, True, True),
        "decoder_inject_noise": (True, True, True, False),
        "upsample_residual": (True, True, True),
        "upsample_factor": (2, 2, 2),
        "timestep_conditioning": True,
    },
}
VAE_095: dict[str, Any] = {
    **_VAE_COMMON,
    "block_out_channels": (128, 256, 512, 1024, 2048),
    "down_block_types": ("LTXVideo095DownBlock3D",) * 4,
    "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    "layers_per_block": (4, 6, 6, 2, 2),
    "spatio_temporal_scaling": (True, True, True, True),
    "decoder_block_out_channels": (256, 512, 1024),
    "decoder_layers_per_block": (5, 5, 5, 5),
    "decoder_spatio_temporal_scaling": (True, True, True),
    "decoder_inject_noise": (False, False, False, False),
    "upsample_residual": (True, True, True),
    "upsample_factor": (2, 2, 2),
    "spatial_compression_ratio": 32,
    "temporal_compression_ratio": 8,
    "timestep_conditioning": True,
}
VAE_CONFIGS["ltx-video-0.9.5"] = VAE_095
VAE_CONFIGS["ltx-video-0.9.7"] = VAE_095
"""The VAE configurations by diffusers' name for the version (``infer_diffusers_model_type``, which tells them
apart by keys and shapes: 0.9.7 by its 48 transformer blocks, 0.9.5 by its encoder's 2048 channels, 0.9.1 by
the decoder's timestep embedder): 0.9.0's and 0.9.1's as diffusers' conversion script has them, 0.9.5's as its
diffusers release ships it (0.9.6 and 0.9.8 files are detected as 0.9.5, 0.9.7 13B as 0.9.7: the same VAE
layout). From 0.9.5 on, whether the decoder is conditioned on the timestep is read from the file's keys (its
timestep embedder), not assumed."""
TIME_EMBEDDER = "vae.decoder.last_time_embedder.timestep_embedder.linear_1.weight"


def is_ltx_checkpoint(state: Mapping[str, Any]) -> bool:
    """The family's checkpoint detector: LTX-Video's transformer keys (original or diffusers layout), and no
    audio stream (LTX-2's transformer has the same video keys and an audio patchify projection)."""
    keys = {key.removeprefix(_PREFIX) for key in state}
    block = (
        "transformer_blocks.0.attn1.to_q.weight" in keys and "transformer_blocks.0.scale_shift_table" in keys
    )
    audio = "audio_patchify_proj.weight" in keys or "audio_proj_in.weight" in keys
    return block and not audio and ("patchify_proj.weight" in keys or "proj_in.weight" in keys)


def single_file_parts(
    path: Path,
    *,
    field_name: str,
    section: str,
    models_dir: str | Path | None,
    text_encoder: str | None,
    tokenizer: str | None,
    dtype: torch.dtype,
    vae: str | None = None,
    keep_fp8: bool = False,
) -> dict[str, Any]:
    """LTXPipeline's parts from the single file and the text encoder and tokenizer named beside it; for a
    GGUF-quantised transformer file (``.gguf``: no VAE in it) the VAE file named too (``vae``). An fp8 file's
    transformer weights are upcast at load, or with ``keep_fp8`` kept in fp8 (its VAE is upcast)."""
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler

    from flipbook.models.families.ltx.loading import SCHEDULER_CONFIG

    quantised = path.suffix.lower() == ".gguf"
    if quantised:
        from flipbook.models.gguf_files import read_gguf

        state, embedded = read_gguf(path, field_name, ALLOWED_GGUF), None
    else:
        state, embedded = read_checkpoint(path, suffixes=(".safetensors",), field=field_name, allowed=ALLOWED)
    if not is_ltx_checkpoint(state):
        raise FlipbookError(field_name, str(path), ALLOWED, detail="its keys are not LTX-Video's")
    embedded = embedded or {}
    if quantised:
        vae_state, embedded = _vae_file(vae, path, f"{section}.vae", models_dir)
        state |= vae_state
    if not any(key.startswith("vae.") for key in state):
        raise FlipbookError(field_name, str(path), ALLOWED, detail="it holds no VAE (vae.* keys)")
    if text_encoder is None:
        raise FlipbookError(
            f"{section}.text_encoder", None, f"the T5 text encoder that goes with the single file {path.name} "
            "(a file, or a name in model.models_dir: ComfyUI's models/text_encoders, e.g. t5xxl_fp16)",
        )  # fmt: skip
    vae_field = f"{section}.vae" if quantised else field_name
    vae_config = dict(embedded.get("vae") or _vae_config(state, vae_field, Path(vae or path)))
    (transformer, scales), vae_tensors = _split(state, dtype, keep_fp8 and not quantised)

    def t5_classes():
        from transformers import T5Config, T5EncoderModel

        return T5EncoderModel, T5Config

    encoder_field = f"{section}.text_encoder"
    return {
        "transformer": gguf_transformer(transformer, dtype)
        if quantised
        else transformer_from_state(
            transformer, embedded.get("transformer"), dtype, field_name, path, scales
        ),
        "vae": build_module(
            lambda: AutoencoderKLLTXVideo(**vae_config), vae_tensors, dtype, vae_field, str(vae or path)
        ),
        "text_encoder": t5_encoder(
            find_part(text_encoder, "text_encoder", encoder_field, models_dir),
            dtype,
            encoder_field,
            "T5",
            t5_classes,
        ),  # fmt: skip
        "tokenizer": tokenizer_for(tokenizer, f"{section}.tokenizer", models_dir, "google/t5-v1_1-xxl"),
        "scheduler": FlowMatchEulerDiscreteScheduler.from_config(SCHEDULER_CONFIG),
    }


def transformer_from_state(
    state: dict[str, torch.Tensor],
    config: Mapping[str, Any] | None,
    dtype: torch.dtype,
    field_name,
    path,
    fp8_scales: Mapping[str, torch.Tensor] | None = None,
) -> torch.nn.Module:
    """An LTXVideoTransformer3DModel from diffusers-layout tensors, its config embedded or read from shapes
    (``fp8_scales``: its fp8 weights stay fp8, see ``split_files.build_module``)."""
    from diffusers import LTXVideoTransformer3DModel

    config = dict(config) if config else transformer_config(state)
    return build_module(
        lambda: LTXVideoTransformer3DModel(**config),
        state,
        dtype,
        field_name,
        str(path),
        fp8_scales=fp8_scales,
    )


def gguf_transformer(state: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.nn.Module:
    """An LTXVideoTransformer3DModel whose weights stay GGUF-quantised (dequantised per layer into ``dtype`` as
    they are used), built by diffusers' ``from_single_file`` with its GGUF quantiser from diffusers-layout
    tensors (:func:`_split` renamed them); the config is read from the tensors' logical shapes and handed over
    as a local config folder (offline), as for Wan's GGUF files."""
    from diffusers import LTXVideoTransformer3DModel

    from flipbook.models.gguf_files import gguf_model, logical_shapes

    return gguf_model(LTXVideoTransformer3DModel, state, transformer_config(logical_shapes(state)), dtype)


def _vae_file(
    vae: str | None, transformer: Path, field_name: str, models_dir: str | Path | None
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The VAE a GGUF transformer file goes with: LTX-Video's VAE in its original layout, from an LTX single
    file (its ``vae.*`` keys) or a VAE file (the same keys with or without the ``vae.`` prefix), as ``vae.*``
    tensors, with the configs a file flipbook wrote carries."""
    if vae is None:
        raise FlipbookError(
            field_name, None, f"the LTX-Video VAE that goes with the GGUF transformer file {transformer.name} (a "
            "file, or a name in model.models_dir: an LTX-Video single file, which holds one, or a VAE file in "
            "models/vae)",
        )  # fmt: skip
    path = _vae_path(vae, field_name, models_dir)
    state, embedded = read_checkpoint(path, suffixes=(".safetensors",), field=field_name, allowed=ALLOWED_VAE)
    if not any(key.startswith("vae.") for key in state):
        state = {f"vae.{key}": value for key, value in state.items()}
    state = {key: value for key, value in state.items() if key.startswith("vae.")}
    if not any(key.startswith("vae.decoder.") for key in state):
        raise FlipbookError(field_name, str(path), ALLOWED_VAE, detail="its keys are not an LTX-Video VAE's")
    return state, embedded


def _vae_path(vae: str, field_name: str, models_dir: str | Path | None) -> Path:
    """The VAE's file: a path, or a name in the models folder's VAEs or checkpoints (an LTX single file)."""
    try:
        return find_part(vae, "vae", field_name, models_dir)
    except FlipbookError as error:
        if models_dir:
            with contextlib.suppress(FlipbookError):
                return ModelsDir(Path(models_dir)).find("checkpoint", vae)
        raise FlipbookError(field_name, vae, ALLOWED_VAE, detail=error.detail or str(error)) from None


def transformer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """LTXVideoTransformer3DModel's config from a diffusers-layout state dict's shapes."""
    inner, in_channels = state["proj_in.weight"].shape
    layers = 1 + max(int(m.group(1)) for key in state if (m := re.match(r"transformer_blocks\.(\d+)\.", key)))
    return {
        "in_channels": in_channels,
        "out_channels": state["proj_out.weight"].shape[0],
        "patch_size": 1,
        "patch_size_t": 1,
        "num_attention_heads": HEADS,
        "attention_head_dim": inner // HEADS,
        "cross_attention_dim": state["transformer_blocks.0.attn2.to_k.weight"].shape[1],
        "num_layers": layers,
        "caption_channels": state["caption_projection.linear_1.weight"].shape[1],
    }


def _split(
    state: dict[str, torch.Tensor], dtype: torch.dtype, keep_fp8: bool = False
) -> tuple[tuple[dict[str, torch.Tensor], Mapping[str, torch.Tensor] | None], dict[str, torch.Tensor]]:
    """((transformer, its fp8 scales where its weights stay fp8), VAE) tensors in diffusers' layout, through
    diffusers' converters (they take the keys they convert out of the dict they are given); fp8 VAE tensors
    upcast at load, the transformer's too unless ``keep_fp8`` (``split_files.transformer_tensors``)."""
    from diffusers.loaders.single_file_utils import (
        convert_ltx_transformer_checkpoint_to_diffusers,
        convert_ltx_vae_checkpoint_to_diffusers,
    )

    original = {
        key if key.startswith("vae.") else _PREFIX + key.removeprefix(_PREFIX): v for key, v in state.items()
    }
    vae = convert_ltx_vae_checkpoint_to_diffusers(
        upcast({key: value for key, value in original.items() if key.startswith("vae.")}, dtype)
    )
    transformer = transformer_tensors(
        {key: value for key, value in original.items() if not key.startswith("vae.")},
        dtype,
        keep_fp8,
        convert_ltx_transformer_checkpoint_to_diffusers,
    )
    return transformer, vae


def _vae_config(state: Mapping[str, torch.Tensor], field_name: str, path: Path) -> dict[str, Any]:
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    version = infer_diffusers_model_type(state)
    if version not in VAE_CONFIGS:
        raise FlipbookError(
            field_name, str(path), "an LTX-Video 0.9.x single file, or the model's diffusers folder",
            detail=f"its VAE is {version}'s, whose configuration does not ship with flipbook",
        )  # fmt: skip
    config = VAE_CONFIGS[version]
    if config is VAE_095:
        config = {**config, "timestep_conditioning": TIME_EMBEDDER in state}
    return config

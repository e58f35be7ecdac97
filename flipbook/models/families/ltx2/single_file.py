"""LTX-2 from its single file in Lightricks' original layout (``ltx-2-19b-dev.safetensors``,
``ltx-2-19b-distilled-fp8.safetensors``: what ComfyUI keeps in ``models/checkpoints``), with its Gemma 3 text
encoder named beside it.

The file holds five of the pipeline's parts, told apart by key prefix:

- ``model.diffusion_model.*``: the audio-video transformer, renamed by diffusers' own converter
  (``convert_ltx2_transformer_to_diffusers``);
- ``model.diffusion_model.{video,audio}_embeddings_connector.*`` and
  ``text_embedding_projection.aggregate_embed.*`` (with or without the transformer's prefix): the text
  connectors (``LTX2TextConnectors``), stored with the transformer: ``{video,audio}_embeddings_connector`` ->
  ``{video,audio}_connector``, ``transformer_1d_blocks`` -> ``transformer_blocks``, ``q_norm``/``k_norm`` -> ``norm_q``/``norm_k``, the aggregate projection ->
  ``text_proj_in``;
- ``vae.*``: the video VAE, diffusers' ``convert_ltx2_vae_to_diffusers`` (a decoder conditioned on the
  timestep keeps ``last_time_embedder``/``last_scale_shift_table``: renamed as diffusers' conversion script
  does, and the configuration's ``timestep_conditioning`` read from them);
- ``audio_vae.*``: the audio VAE, diffusers' ``convert_ltx2_audio_vae_to_diffusers``;
- ``vocoder.*``: LTX-2.0's vocoder (``LTX2Vocoder``): ``conv_pre`` -> ``conv_in``, ``conv_post`` ->
  ``conv_out``, ``ups`` -> ``upsamplers``, ``resblocks`` -> ``resnets``.

diffusers ships converters for the transformer and the VAEs only; the connectors' and the vocoder's names are
those of diffusers' LTX-2 conversion script (``scripts/convert_ltx2_to_diffusers.py``, LTX-2.0's tables), read
here as :data:`CONNECTOR_NAMES` and :data:`VOCODER_NAMES`. Every key goes to exactly one part and each part is
built strictly (a key no part takes, or a missing one, is one error naming it). Configurations: the ones
flipbook embeds when it writes a file (``flipbook_config`` metadata, per part and for the scheduler), else
LTX-2.0's (the 19B model, :data:`CONFIGS`, as diffusers' conversion script states them), whose shapes the
strict build checks; the scheduler is LTX-2's (the distilled one, without dynamic shifting, for a file whose
name says ``distilled``, as that script decides). LTX-2.3 files (per-modality text projections, a vocoder with
bandwidth extension) are refused by name: diffusers' folder of that release is the way to load them.

The file has no text encoder: ``text_encoder`` names a Gemma 3 folder in transformers' layout
(``Gemma3ForConditionalGeneration``, e.g. a download of ``google/gemma-3-12b-it``: a folder, a name in the
models folder's text encoders, or a hub id in the local cache), and the tokenizer comes from that folder
unless ``tokenizer`` names another. ComfyUI's single Gemma files (``gemma_3_12B_it.safetensors``) are refused with
that advice: their layout is not read. An fp8 file's transformer stays fp8 in memory with ``keep_fp8``
(:mod:`flipbook.models.fp8_files`); its other parts are upcast at load.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from flipbook.errors import FlipbookError
from flipbook.models.split_files import build_module, transformer_tensors, upcast
from flipbook.models.weights import read_checkpoint

PREFIX = "model.diffusion_model."
ALLOWED = (
    "an LTX-2 single file (.safetensors in Lightricks' layout: model.diffusion_model.*, vae.*, audio_vae.*, "
    "vocoder.*)"
)
CONNECTOR_PREFIXES = (
    "video_embeddings_connector.",
    "audio_embeddings_connector.",
    "text_embedding_projection.",
)
PART_PREFIXES = {"vae": "vae.", "audio_vae": "audio_vae.", "vocoder": "vocoder."}
CONNECTOR_NAMES = {
    "video_embeddings_connector.": "video_connector.",
    "audio_embeddings_connector.": "audio_connector.",
    "text_embedding_projection.aggregate_embed.": "text_proj_in.",
    ".transformer_1d_blocks.": ".transformer_blocks.",
    ".q_norm.": ".norm_q.",
    ".k_norm.": ".norm_k.",
}
"""The connectors' original names -> diffusers' (LTX-2.0)."""
VOCODER_NAMES = {"conv_pre": "conv_in", "conv_post": "conv_out", "ups": "upsamplers", "resblocks": "resnets"}
"""The vocoder's original top-level module names -> diffusers' (LTX-2.0)."""
LTX23_KEYS = ("text_embedding_projection.video_aggregate_embed.weight", "prompt_adaln_single.linear.weight")
"""Keys only LTX-2.3's files have (per-modality text projections, prompt modulation)."""
DECODER_TIME_NAMES = {"decoder.last_time_embedder.": "decoder.time_embedder.",
                      "decoder.last_scale_shift_table": "decoder.scale_shift_table"}  # fmt: skip
"""A timestep-conditioned video decoder's own names -> diffusers' (as diffusers' conversion script renames
them; its converter in the installed release does not)."""
CONFIGS: dict[str, dict[str, Any]] = {
    "transformer": {
        "in_channels": 128, "out_channels": 128, "patch_size": 1, "patch_size_t": 1, "num_attention_heads": 32,
        "attention_head_dim": 128, "cross_attention_dim": 4096, "vae_scale_factors": (8, 32, 32),
        "pos_embed_max_pos": 20, "base_height": 2048, "base_width": 2048, "audio_in_channels": 128,
        "audio_out_channels": 128, "audio_patch_size": 1, "audio_patch_size_t": 1, "audio_num_attention_heads": 32,
        "audio_attention_head_dim": 64, "audio_cross_attention_dim": 2048, "audio_scale_factor": 4,
        "audio_pos_embed_max_pos": 20, "audio_sampling_rate": 16000, "audio_hop_length": 160, "num_layers": 48,
        "activation_fn": "gelu-approximate", "qk_norm": "rms_norm_across_heads", "norm_elementwise_affine": False,
        "norm_eps": 1e-6, "caption_channels": 3840, "attention_bias": True, "attention_out_bias": True,
        "rope_theta": 10000.0, "rope_double_precision": True, "causal_offset": 1, "rope_type": "split",
    },
    "vae": {
        "in_channels": 3, "out_channels": 3, "latent_channels": 128, "block_out_channels": (256, 512, 1024, 2048),
        "down_block_types": ("LTX2VideoDownBlock3D",) * 4, "decoder_block_out_channels": (256, 512, 1024),
        "layers_per_block": (4, 6, 6, 2, 2), "decoder_layers_per_block": (5, 5, 5, 5),
        "spatio_temporal_scaling": (True, True, True, True), "decoder_spatio_temporal_scaling": (True, True, True),
        "decoder_inject_noise": (False, False, False, False),
        "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        "upsample_type": ("spatiotemporal", "spatiotemporal", "spatiotemporal"),
        "upsample_residual": (True, True, True), "upsample_factor": (2, 2, 2), "timestep_conditioning": False,
        "patch_size": 4, "patch_size_t": 1, "resnet_norm_eps": 1e-6, "encoder_causal": True,
        "decoder_causal": False, "encoder_spatial_padding_mode": "zeros", "decoder_spatial_padding_mode": "reflect",
        "spatial_compression_ratio": 32, "temporal_compression_ratio": 8,
    },
    "audio_vae": {
        "base_channels": 128, "output_channels": 2, "ch_mult": (1, 2, 4), "num_res_blocks": 2,
        "attn_resolutions": None, "in_channels": 2, "resolution": 256, "latent_channels": 8, "norm_type": "pixel",
        "causality_axis": "height", "dropout": 0.0, "mid_block_add_attention": False, "sample_rate": 16000,
        "mel_hop_length": 160, "is_causal": True, "mel_bins": 64, "double_z": True,
    },
    "vocoder": {
        "in_channels": 128, "hidden_channels": 1024, "out_channels": 2, "upsample_kernel_sizes": [16, 15, 8, 4, 4],
        "upsample_factors": [6, 5, 2, 2, 2], "resnet_kernel_sizes": [3, 7, 11],
        "resnet_dilations": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "act_fn": "leaky_relu",
        "leaky_relu_negative_slope": 0.1, "antialias": False, "final_act_fn": "tanh", "final_bias": True,
        "output_sampling_rate": 24000,
    },
    "connectors": {
        "caption_channels": 3840, "text_proj_in_factor": 49, "video_connector_num_attention_heads": 30,
        "video_connector_attention_head_dim": 128, "video_connector_num_layers": 2,
        "video_connector_num_learnable_registers": 128, "audio_connector_num_attention_heads": 30,
        "audio_connector_attention_head_dim": 128, "audio_connector_num_layers": 2,
        "audio_connector_num_learnable_registers": 128, "connector_rope_base_seq_len": 4096,
        "rope_theta": 10000.0, "rope_double_precision": True, "causal_temporal_positioning": False,
        "rope_type": "split", "per_modality_projections": False, "proj_bias": False,
    },
    "scheduler": {
        "use_dynamic_shifting": True, "base_shift": 0.95, "max_shift": 2.05, "base_image_seq_len": 1024,
        "max_image_seq_len": 4096, "shift_terminal": 0.1,
    },
}  # fmt: skip
"""LTX-2.0's configurations (the 19B model), as diffusers' LTX-2 conversion script states them."""
DISTILLED_SCHEDULER = {**CONFIGS["scheduler"], "use_dynamic_shifting": False, "shift_terminal": None}
"""The distilled model's scheduler: its sigmas used as they are (no dynamic or terminal shift)."""


def is_ltx2_checkpoint(state: Mapping[str, Any]) -> bool:
    """The family's checkpoint detector: LTX-2's audio-video transformer keys (its audio patchify projection
    and audio-to-video cross-attention modulation), with or without the transformer's prefix."""
    keys = {key.removeprefix(PREFIX) for key in state}
    return "audio_patchify_proj.weight" in keys and any(
        key.startswith("av_ca_a2v_gate_adaln_single.") for key in keys
    )


def split_parts(
    state: Mapping[str, torch.Tensor], field_name: str, ref: str
) -> dict[str, dict[str, torch.Tensor]]:
    """The file's tensors by part (each under its own names, the part's prefix removed; the connectors'
    without the transformer's prefix); a key no part takes is one error naming it."""
    parts: dict[str, dict[str, torch.Tensor]] = {
        name: {} for name in ("transformer", "connectors", *PART_PREFIXES)
    }
    for key, tensor in state.items():
        bare = key.removeprefix(PREFIX)
        if bare.startswith(CONNECTOR_PREFIXES):
            parts["connectors"][bare] = tensor
        elif key.startswith(PREFIX):
            parts["transformer"][bare] = tensor
        elif (
            part := next((p for p, prefix in PART_PREFIXES.items() if key.startswith(prefix)), None)
        ) is not None:
            parts[part][key.removeprefix(PART_PREFIXES[part])] = tensor
        else:
            raise FlipbookError(field_name, ref, ALLOWED, detail=f"a tensor of no LTX-2 part: {key!r}")
    for name, tensors in parts.items():
        if not tensors:
            raise FlipbookError(field_name, ref, ALLOWED, detail=f"it holds no {name.replace('_', ' ')}")
    return parts


def connectors_to_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The connectors' tensors under diffusers' names (:data:`CONNECTOR_NAMES`)."""
    return {_renamed(key, CONNECTOR_NAMES): tensor for key, tensor in state.items()}


def vocoder_to_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The vocoder's tensors under diffusers' names: its top-level module renamed (:data:`VOCODER_NAMES`)."""
    converted = {}
    for key, tensor in state.items():
        module, dot, rest = key.partition(".")
        converted[VOCODER_NAMES.get(module, module) + dot + rest] = tensor
    return converted


def _renamed(key: str, names: Mapping[str, str]) -> str:
    for old, new in names.items():
        key = key.replace(old, new)
    return key


def single_file_parts(
    path: Path,
    *,
    field_name: str,
    section: str,
    models_dir: str | Path | None,
    text_encoder: str | None,
    tokenizer: str | None,
    dtype: torch.dtype,
    keep_fp8: bool = False,
) -> dict[str, Any]:
    """The pipeline's parts from the single file and the Gemma 3 folder named beside it."""
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.loaders.single_file_utils import (
        convert_ltx2_audio_vae_to_diffusers,
        convert_ltx2_transformer_to_diffusers,
        convert_ltx2_vae_to_diffusers,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    ref = str(path)
    state, embedded = read_checkpoint(path, suffixes=(".safetensors",), field=field_name, allowed=ALLOWED)
    if not is_ltx2_checkpoint(state):
        raise FlipbookError(field_name, ref, ALLOWED, detail="its keys are not LTX-2's")
    if any(key.removeprefix(PREFIX) in LTX23_KEYS for key in state):
        raise FlipbookError(
            field_name, ref, "an LTX-2.0 single file, or the model's diffusers folder (LTX2Pipeline)",
            detail="an LTX-2.3 file (per-modality text projections): its single-file layout is not read",
        )  # fmt: skip
    if text_encoder is None:
        raise FlipbookError(
            f"{section}.text_encoder", None, f"the Gemma 3 text encoder that goes with the single file {path.name}: "
            "a transformers folder (e.g. google/gemma-3-12b-it's), a name in model.models_dir, or a hub id",
        )  # fmt: skip
    configs = _configs(embedded, path, timed=any("decoder.last_time_embedder." in key for key in state))
    parts = split_parts(state, field_name, ref)
    transformer, scales = transformer_tensors(
        parts["transformer"], dtype, keep_fp8, lambda s: convert_ltx2_transformer_to_diffusers(dict(s))
    )
    converted = {
        "vae": convert_ltx2_vae_to_diffusers(
            {f"vae.{_renamed(k, DECODER_TIME_NAMES)}": v for k, v in upcast(parts["vae"], dtype).items()}
        ),
        "audio_vae": convert_ltx2_audio_vae_to_diffusers(
            {f"audio_vae.{k}": v for k, v in upcast(parts["audio_vae"], dtype).items()}
        ),
        "vocoder": vocoder_to_diffusers(upcast(parts["vocoder"], dtype)),
        "connectors": connectors_to_diffusers(upcast(parts["connectors"], dtype)),
    }
    classes = {
        "vae": AutoencoderKLLTX2Video,
        "audio_vae": AutoencoderKLLTX2Audio,
        "vocoder": LTX2Vocoder,
        "connectors": LTX2TextConnectors,
    }
    built = {
        name: build_module(lambda c=classes[name], n=name: c.from_config(configs[n]), tensors, dtype, field_name,
                           f"{ref} ({name.replace('_', ' ')})")
        for name, tensors in converted.items()
    }  # fmt: skip
    built["transformer"] = build_module(
        lambda: LTX2VideoTransformer3DModel.from_config(configs["transformer"]), transformer, dtype, field_name,
        f"{ref} (transformer)", fp8_scales=scales,
    )  # fmt: skip
    encoder_field = f"{section}.text_encoder"
    return {
        **built,
        "text_encoder": gemma_encoder(text_encoder, encoder_field, models_dir, dtype),
        "tokenizer": gemma_tokenizer(tokenizer or text_encoder, f"{section}.tokenizer", models_dir),
        "scheduler": FlowMatchEulerDiscreteScheduler.from_config(configs["scheduler"]),
    }


def _configs(embedded: Mapping[str, Any] | None, path: Path, *, timed: bool) -> dict[str, dict[str, Any]]:
    """Each part's configuration: the one flipbook embedded, else LTX-2.0's (the decoder conditioned on the
    timestep when the file has its embedder, ``timed``; the distilled scheduler for a file named so)."""
    distilled = "distilled" in path.name.lower()
    shipped = {
        **CONFIGS,
        "vae": {**CONFIGS["vae"], "timestep_conditioning": timed},
        "scheduler": DISTILLED_SCHEDULER if distilled else CONFIGS["scheduler"],
    }
    return {name: dict((embedded or {}).get(name) or config) for name, config in shipped.items()}


def _find_folder(ref: str, models_dir: str | Path | None) -> Path | str:
    """A folder (a path, or a name in the models folder's text encoders), else ``ref`` as a hub id."""
    path = Path(ref).expanduser()
    if path.exists() or not models_dir:
        return path if path.exists() else ref
    from flipbook.models.folders import ModelsDir

    try:
        return ModelsDir(Path(models_dir)).find("text_encoder", ref)
    except FlipbookError:
        return ref


def gemma_encoder(
    ref: str, field_name: str, models_dir: str | Path | None, dtype: torch.dtype
) -> torch.nn.Module:
    """Gemma 3 (``Gemma3ForConditionalGeneration``) from a transformers folder or a hub id in the local cache."""
    from transformers import Gemma3ForConditionalGeneration

    allowed = ("a Gemma 3 text encoder in transformers' layout: a folder with config.json and its weights "
               "(e.g. google/gemma-3-12b-it's), a name in model.models_dir, or a hub id in the local cache")  # fmt: skip
    where = _find_folder(ref, models_dir)
    if isinstance(where, Path) and where.is_file():
        raise FlipbookError(
            field_name, ref, allowed, detail="a single Gemma file (ComfyUI's layout) is not read"
        )
    try:
        model = Gemma3ForConditionalGeneration.from_pretrained(
            str(where), torch_dtype=dtype, local_files_only=True, use_safetensors=True
        )
    except (OSError, ValueError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise FlipbookError(field_name, ref, allowed, detail=first) from None
    return model.eval()


def gemma_tokenizer(ref: str, field_name: str, models_dir: str | Path | None):
    """The Gemma tokenizer of a folder (the text encoder's, unless ``tokenizer`` names another) or hub id."""
    from transformers import AutoTokenizer

    allowed = "a folder or hub id with Gemma 3's tokenizer (the text encoder's folder has it)"
    try:
        return AutoTokenizer.from_pretrained(str(_find_folder(ref, models_dir)), local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise FlipbookError(field_name, ref, allowed, detail=first) from None

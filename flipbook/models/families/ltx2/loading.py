"""LTX-2 models: the built-in ``tiny-ltx2`` (random weights, the real structures at toy size: a 1-layer
audio-video transformer, a video VAE with LTX-2's 32x spatial and 8x temporal compression, an audio VAE and
vocoder, the text connectors, a 2-layer Gemma 3 and a toy Gemma tokenizer built here), or a diffusers folder /
hub id of ``LTX2Pipeline``, ``LTX2ImageToVideoPipeline`` or ``LTX2ConditionPipeline`` (one model serves text
to video and conditioning on images), or LTX-2's single file in Lightricks' layout with its Gemma 3 text encoder
named beside it (``single_file.py``)."""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2VideoTransformer3DModel,
)
from diffusers.pipelines.ltx2 import LTX2TextConnectors
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
from transformers import Gemma3Config, Gemma3ForConditionalGeneration, GemmaTokenizer

from flipbook.errors import FlipbookError
from flipbook.models.device import pick_device, pick_dtype
from flipbook.models.families.ltx2 import FAMILY
from flipbook.models.folders import MODEL_KINDS, ModelsDir
from flipbook.models.pickles import refused_pickle
from flipbook.models.weights import check_no_missing_weights, seeded

KINDS = {
    "text": "LTX2Pipeline",
    "image": "LTX2ImageToVideoPipeline",
    "conditions": "LTX2ConditionPipeline",
}
"""The pipeline a segment is made by: text alone, a start image alone (LTX-2's image to video), or known frames
anywhere (images at latent frames)."""
PARTS = ("transformer", "vae", "audio_vae", "text_encoder", "connectors", "vocoder")
"""The modules of an LTX-2 model (besides its tokenizer and scheduler)."""
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
ALLOWED = (
    f"a built-in ({', '.join(FAMILY.builtins)}), a diffusers LTX-2 folder with model_index.json, LTX-2's single "
    ".safetensors file (with videomodel.text_encoder), a folder or file name in model.models_dir, or a hub id "
    "(e.g. Lightricks/LTX-2) in the local Hugging Face cache"
)
GUIDANCE: dict[str, Any] = {
    "stg_scale": 0.0,
    "audio_stg_scale": 0.0,
    "spatio_temporal_guidance_blocks": None,
    "modality_scale": 1.0,
    "audio_modality_scale": 1.0,
    "guidance_rescale": 0.0,
    "audio_guidance_rescale": 0.0,
    "audio_guidance_scale": None,
}
"""Plain classifier-free guidance for video and audio (``sampling.cfg`` for both): no
spatio-temporal guidance (its blocks depend on the model), no modality guidance, no rescale. Every segment and
the reference call pass these to the pipelines, whose defaults are tuned for later LTX-2.x releases."""
TOKEN_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")
TINY_TEXT_CONFIG: dict[str, Any] = {
    "text_config": {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 8,
        "sliding_window": 16,
        "max_position_embeddings": 256,
    },
    "vision_config": {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 28,
        "patch_size": 14,
    },
    "mm_tokens_per_image": 4,
}
TINY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "in_channels": 8,
    "out_channels": 8,
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 16,
    "audio_in_channels": 4,
    "audio_out_channels": 4,
    "audio_num_attention_heads": 2,
    "audio_attention_head_dim": 4,
    "audio_cross_attention_dim": 8,
    "num_layers": 1,
    "caption_channels": 16,
    "rope_double_precision": False,
    "rope_type": "split",
}
TINY_CONNECTORS_CONFIG: dict[str, Any] = {
    "caption_channels": 16,
    "text_proj_in_factor": 3,  # the text encoder's hidden states: its 2 layers' and the embeddings'
    "video_connector_num_attention_heads": 4,
    "video_connector_attention_head_dim": 4,
    "video_connector_num_layers": 1,
    "video_connector_num_learnable_registers": None,
    "audio_connector_num_attention_heads": 4,
    "audio_connector_attention_head_dim": 4,
    "audio_connector_num_layers": 1,
    "audio_connector_num_learnable_registers": None,
    "connector_rope_base_seq_len": 32,
    "rope_double_precision": False,
    "rope_type": "split",
}
TINY_VAE_CONFIG: dict[str, Any] = {
    "latent_channels": 8,
    "block_out_channels": (8, 8, 8, 8),
    "decoder_block_out_channels": (8, 8, 8),
    "layers_per_block": (1, 1, 1, 1, 1),
    "decoder_layers_per_block": (1, 1, 1, 1),
    "decoder_inject_noise": (False, False, False, False),
    "upsample_residual": (False, False, False),
    "upsample_factor": (1, 1, 1),
    "patch_size": 4,
    "spatial_compression_ratio": 32,  # as LTX-2's own config states them (one down block is spatial only,
    "temporal_compression_ratio": 8,  # one temporal only)
}
TINY_AUDIO_VAE_CONFIG: dict[str, Any] = {
    "base_channels": 4,
    "output_channels": 2,
    "ch_mult": (1,),
    "num_res_blocks": 1,
    "in_channels": 2,
    "resolution": 32,
    "latent_channels": 2,
    "mel_bins": 8,
    "sample_rate": 16000,
    "mel_hop_length": 160,
}
TINY_VOCODER_CONFIG: dict[str, Any] = {
    "in_channels": 16,  # the audio VAE's 2 channels x 8 mel bins
    "hidden_channels": 16,
    "out_channels": 2,
    "upsample_kernel_sizes": [20, 32],
    "upsample_factors": [
        10,
        16,
    ],  # 160 samples per mel frame: the hop, so the audio lasts as long as the video
    "resnet_kernel_sizes": [3],
    "resnet_dilations": [[1, 3, 5]],
    "output_sampling_rate": 16000,
}


@dataclass(frozen=True)
class Ltx2Bundle:
    """LTX-2's parts on a device (the pipelines' names), plus where they came from."""

    transformer: LTX2VideoTransformer3DModel
    vae: AutoencoderKLLTX2Video
    audio_vae: AutoencoderKLLTX2Audio
    text_encoder: torch.nn.Module
    connectors: LTX2TextConnectors
    vocoder: torch.nn.Module
    tokenizer: Any
    scheduler: Any
    name: str
    source: str
    device: torch.device
    dtype: torch.dtype

    conditioning = "optional"  # text to video, or images at chosen frames: one model does both
    text_length = None

    @property
    def scale_spatial(self) -> int:
        return int(self.vae.spatial_compression_ratio)

    @property
    def scale_temporal(self) -> int:
        return int(self.vae.temporal_compression_ratio)

    @property
    def side_multiple(self) -> int:
        return self.scale_spatial * int(self.transformer.config.patch_size)

    @property
    def audio_rate(self) -> int:
        """The sample rate of the audio the vocoder makes."""
        return int(self.vocoder.config.output_sampling_rate)

    @cached_property
    def loras(self):
        """The LoRA switcher on LTX2Pipeline (the parts are shared by every kind's pipeline). The family has no
        LoRA check yet, so the mode refuses every LoRA before loading and this set stays empty."""
        from flipbook.models.video_loras import lora_set

        return lora_set(self.pipelines["text"], FAMILY.title)

    @cached_property
    def pipelines(self) -> dict[str, Any]:
        """The parts as diffusers' pipelines, built once, by what a segment is conditioned on (``KINDS``; each
        segment gives the one it calls a fresh scheduler)."""
        return {kind: diffusers_pipeline(self, kind) for kind in KINDS}


def load_ltx2(
    ref: str,
    *,
    field_name: str,
    models_dir: str | Path | None = None,
    device: str = "auto",
    dtype: str | None = None,
    seed: int = 0,
    text_encoder: str | None = None,
    vae: str | None = None,
    tokenizer: str | None = None,
    image_encoder: str | None = None,
    on_cpu: bool = False,
    keep_fp8: bool = False,
) -> Ltx2Bundle:
    """Load the LTX-2 model ``ref`` (bf16 on a GPU, as LTX-2's own code runs it); ``on_cpu``: the modules stay
    on the CPU for offload hooks to move, ``keep_fp8``: an fp8 single file's transformer weights stay fp8 in
    memory (both as ``load_wan``'s). A single file takes its Gemma 3 ``text_encoder`` (and ``tokenizer``) named
    beside it; a folder or hub id brings every part."""
    torch_device = pick_device(device)
    torch_dtype = torch.bfloat16 if dtype in (None, "auto") and torch_device.type != "cpu" else None
    torch_dtype = torch_dtype or pick_dtype(dtype, torch_device)
    section = field_name.rpartition(".")[0] or field_name
    location, source = (None, "builtin") if ref == "tiny-ltx2" else _locate(ref, models_dir, field_name)
    named = {"text_encoder": text_encoder, "vae": vae, "tokenizer": tokenizer, "image_encoder": image_encoder}
    for name, value in named.items():
        if value is not None and (source != "single_file" or name in ("vae", "image_encoder")):
            brings = "its folder brings" if source != "single_file" else "the single file holds its VAEs and"
            raise FlipbookError(
                f"{section}.{name}", value, f"unset for this LTX-2 model ({brings} every part it needs)"
            )
    if source == "builtin":
        parts = tiny_ltx2_components(seed)
    elif source == "single_file":
        from flipbook.models.families.ltx2.single_file import single_file_parts

        parts = single_file_parts(
            Path(location), field_name=field_name, section=section, models_dir=models_dir,
            text_encoder=text_encoder, tokenizer=tokenizer, dtype=torch_dtype, keep_fp8=keep_fp8,
        )  # fmt: skip
    else:
        parts = _from_pretrained(location, ref, field_name, torch_dtype, local_files_only=source == "folder")
    for name in PARTS:
        module = parts[name].eval().requires_grad_(False).to("cpu" if on_cpu else torch_device)
        if module.dtype != torch_dtype:
            module.to(torch_dtype)
    return Ltx2Bundle(**parts, name=ref, source=source, device=torch_device, dtype=torch_dtype)


def is_ltx2_folder(model_index: Mapping[str, Any], unet_config: Mapping[str, Any]) -> bool:
    """The family's folder detector: an LTX-2 pipeline folder."""
    return model_index.get("_class_name") in KINDS.values()


def conditioning(ref: str, models_dir: str | Path | None, field_name: str) -> str:
    """Every LTX-2 model makes video from text alone or conditioned on images (``LTX2ImageToVideoPipeline``, ``LTX2ConditionPipeline``)."""
    return "optional"


def diffusers_pipeline(bundle: Ltx2Bundle, kind: str = "text"):
    """The bundle's parts as the diffusers pipeline of ``kind`` (``KINDS``), with a fresh scheduler."""
    import diffusers

    pipe = getattr(diffusers, KINDS[kind])(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(bundle.scheduler.config),
        **{name: getattr(bundle, name) for name in (*PARTS, "tokenizer")},
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_frames(bundle: Ltx2Bundle, prompt: str, negative: str, settings, seed: int):
    """A text-to-video segment by diffusers' LTX2Pipeline (frames x H x W x 3 in [0, 1])."""
    return diffusers_pipeline(bundle)(
        prompt=prompt, negative_prompt=negative, height=settings.height, width=settings.width,
        num_frames=settings.num_frames, frame_rate=settings.fps, num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale, generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np", max_sequence_length=settings.max_sequence_length, **GUIDANCE,
    ).frames[0]  # fmt: skip


def tiny_tokenizer(max_length: int = 128) -> GemmaTokenizer:
    """A toy Gemma tokenizer built in code: the special tokens, then the word-start mark ``▁`` and every
    letter, digit and punctuation mark (a prompt is spelled out; no merges); it pads with ``<pad>`` (id 0)."""
    pieces = [*TOKEN_SPECIALS, "▁", *string.ascii_lowercase, *string.digits, *string.punctuation]
    tokenizer = GemmaTokenizer(vocab={piece: i for i, piece in enumerate(pieces)}, merges=[])
    tokenizer.model_max_length = max_length
    return tokenizer


def tiny_ltx2_components(seed: int = 0) -> dict[str, Any]:
    tokenizer = tiny_tokenizer()
    text = Gemma3Config(**TINY_TEXT_CONFIG)
    text.text_config.vocab_size = len(tokenizer)
    vae = seeded(seed + 1, lambda: AutoencoderKLLTX2Video(**TINY_VAE_CONFIG))
    vae.use_framewise_encoding = vae.use_framewise_decoding = False
    return {
        "transformer": seeded(seed, lambda: LTX2VideoTransformer3DModel(**TINY_TRANSFORMER_CONFIG)),
        "vae": vae,
        "audio_vae": seeded(seed + 3, lambda: AutoencoderKLLTX2Audio(**TINY_AUDIO_VAE_CONFIG)),
        "text_encoder": seeded(seed + 2, lambda: Gemma3ForConditionalGeneration(text)),
        "connectors": seeded(seed + 4, lambda: LTX2TextConnectors(**TINY_CONNECTORS_CONFIG)),
        "vocoder": seeded(seed + 5, lambda: LTX2Vocoder(**TINY_VOCODER_CONFIG)),
        "tokenizer": tokenizer,
        "scheduler": FlowMatchEulerDiscreteScheduler(),
    }


def _locate(ref: str, models_dir: str | Path | None, field_name: str) -> tuple[str, str]:
    """(path, "folder"), (path, "single_file") or (hub id, "hub"): a path, a name in the models folder's
    checkpoints or diffusion models, else a hub id; anything else is an error."""
    path = Path(ref).expanduser()
    if path.is_file():
        return _single_file(path, ref, field_name), "single_file"
    if path.is_dir():
        return str(path), "folder"
    if models_dir and (hit := ModelsDir(Path(models_dir)).find_listed(MODEL_KINDS, ref)) is not None:
        return (str(hit), "folder") if hit.is_dir() else (_single_file(hit, ref, field_name), "single_file")
    if _HUB_ID.match(ref):
        return ref, "hub"
    raise FlipbookError(field_name, ref, ALLOWED, detail="no such folder")


def _single_file(path: Path, ref: str, field_name: str) -> str:
    if path.suffix.lower() != ".safetensors":
        raise FlipbookError(
            field_name, ref, ALLOWED, detail=f"a {path.suffix or 'suffix-less'} file: LTX-2 single files are "
            ".safetensors",
        )  # fmt: skip
    return str(path)


def _from_pretrained(
    location: str, ref: str, field_name: str, dtype: torch.dtype, *, local_files_only: bool
) -> dict[str, Any]:
    from diffusers import DiffusionPipeline

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        pipe = DiffusionPipeline.from_pretrained(
            location, torch_dtype=dtype, local_files_only=local_files_only or offline
        )
    except (OSError, ValueError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        detail = refused_pickle(error) or first
        raise FlipbookError(field_name, ref, ALLOWED, detail=detail) from None
    if type(pipe).__name__ not in KINDS.values():
        raise FlipbookError(field_name, ref, ALLOWED, detail=f"a {type(pipe).__name__} folder")
    for name in PARTS:
        check_no_missing_weights(getattr(pipe, name), field_name, ref, ALLOWED)
    return {name: getattr(pipe, name) for name in (*PARTS, "tokenizer", "scheduler")}

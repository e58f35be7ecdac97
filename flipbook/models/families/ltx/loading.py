"""LTX-Video models: the built-in ``tiny-ltx`` (random weights, the real structures at toy size: a 1-block
transformer, a VAE with LTX's 32x spatial and 8x temporal compression, a 2-layer T5 and the toy tokenizer), or
a diffusers folder / hub id of ``LTXPipeline``, ``LTXImageToVideoPipeline`` or ``LTXConditionPipeline`` (one
model serves text to video and conditioning on images), or ComfyUI's single file with its T5 text encoder and
tokenizer named beside it, or a GGUF-quantised transformer file with its VAE named too (``single_file.py``)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
from transformers import T5Config, T5EncoderModel

from flipbook.errors import FlipbookError
from flipbook.models.device import pick_device, pick_dtype
from flipbook.models.families.ltx import FAMILY
from flipbook.models.folders import MODEL_KINDS, ModelsDir
from flipbook.models.pickles import refused_pickle
from flipbook.models.toy_tokenizer import tiny_tokenizer
from flipbook.models.weights import check_no_missing_weights, seeded

PIPELINES = ("LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
ALLOWED = (
    f"a built-in ({', '.join(FAMILY.builtins)}), a diffusers LTX-Video folder with model_index.json, a "
    "single file (transformer and VAE, ComfyUI's ltx-video-2b-v0.9.x.safetensors) with its text encoder and "
    "tokenizer named, a GGUF-quantised transformer (.gguf) with its VAE, text encoder and tokenizer named, "
    "a name in model.models_dir, or a hub id (e.g. Lightricks/LTX-Video) in the local Hugging "
    "Face cache"
)
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.95,
    "max_shift": 2.05,
    "base_image_seq_len": 1024,
    "max_image_seq_len": 4096,
    "shift_terminal": 0.1,
}
"""LTX-Video 0.9's scheduler: flow-matching Euler, shifted by the token count."""
TINY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "in_channels": 8,
    "out_channels": 8,
    "patch_size": 1,
    "patch_size_t": 1,
    "num_attention_heads": 4,
    "attention_head_dim": 8,
    "cross_attention_dim": 32,
    "num_layers": 1,
    "caption_channels": 32,
}
TINY_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 8,
    "block_out_channels": (8, 8, 8, 8),
    "decoder_block_out_channels": (8, 8, 8, 8),
    "layers_per_block": (1, 1, 1, 1, 1),
    "decoder_layers_per_block": (1, 1, 1, 1, 1),
    "spatio_temporal_scaling": (True, True, True, False),
    "decoder_spatio_temporal_scaling": (True, True, True, False),
    "decoder_inject_noise": (False, False, False, False, False),
    "upsample_residual": (False, False, False, False),
    "upsample_factor": (1, 1, 1, 1),
    "timestep_conditioning": False,
    "patch_size": 4,
    "patch_size_t": 1,
}
TINY_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 160,
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 37,
    "num_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "feed_forward_proj": "gated-gelu",
    "pad_token_id": 0,
    "eos_token_id": 1,
}


@dataclass(frozen=True)
class LtxBundle:
    """LTX-Video's parts on a device (the pipelines' names), plus where they came from."""

    transformer: LTXVideoTransformer3DModel
    vae: AutoencoderKLLTXVideo
    text_encoder: torch.nn.Module
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

    @cached_property
    def loras(self):
        """The LoRAs loaded into the transformer and the active ones (:class:`~flipbook.models.lora.LoraSet`
        on LTXPipeline: its loader converts ComfyUI's ``diffusion_model.*`` layout; both pipelines share the
        transformer)."""
        from flipbook.models.video_loras import lora_set

        return lora_set(self.pipelines[False], FAMILY.title)

    @cached_property
    def pipelines(self) -> dict[bool, Any]:
        """The parts as diffusers' pipelines, built once: ``False`` LTXPipeline, ``True`` LTXConditionPipeline
        (each segment gives the one it calls a fresh scheduler)."""
        return {
            conditioned: diffusers_pipeline(self, conditioned=conditioned) for conditioned in (False, True)
        }


def load_ltx(
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
) -> LtxBundle:
    """Load the LTX-Video model ``ref`` (bf16 on a GPU, the VAE too, as LTX's own code runs it); ``on_cpu``:
    the modules stay on the CPU for offload hooks to move, ``keep_fp8``: an fp8 file's transformer weights stay
    fp8 in memory (both as ``load_wan``'s)."""
    torch_device = pick_device(device)
    torch_dtype = torch.bfloat16 if dtype in (None, "auto") and torch_device.type != "cpu" else None
    torch_dtype = torch_dtype or pick_dtype(dtype, torch_device)
    section = field_name.rpartition(".")[0] or field_name
    if ref == "tiny-ltx":
        parts, source = tiny_ltx_components(seed), "builtin"
    else:
        location, source = _locate(ref, models_dir, field_name)
    quantised = source == "single_file" and Path(location).suffix.lower() == ".gguf"
    named = {"text_encoder": text_encoder, "vae": vae, "tokenizer": tokenizer, "image_encoder": image_encoder}
    for name, value in named.items():
        if value is not None and (
            source != "single_file" or name == "image_encoder" or (name == "vae" and not quantised)
        ):
            brings = "its folder brings" if source != "single_file" else "the single file holds its VAE and"
            raise FlipbookError(
                f"{section}.{name}", value, f"unset for this LTX-Video model ({brings} every part it needs)"
            )
    if source == "single_file":
        from flipbook.models.families.ltx.single_file import single_file_parts

        parts = single_file_parts(
            Path(location), field_name=field_name, section=section, models_dir=models_dir,
            text_encoder=text_encoder, tokenizer=tokenizer, dtype=torch_dtype, vae=vae, keep_fp8=keep_fp8,
        )  # fmt: skip
    elif source != "builtin":
        parts = _from_pretrained(location, ref, field_name, torch_dtype, local_files_only=source == "folder")
    for name in ("transformer", "vae", "text_encoder"):
        module = parts[name].eval().requires_grad_(False).to("cpu" if on_cpu else torch_device)
        if getattr(module, "is_quantized", False):  # GGUF: its weights stay quantised, computing in dtype
            continue
        if module.dtype != torch_dtype:
            module.to(torch_dtype)
    return LtxBundle(**parts, name=ref, source=source, device=torch_device, dtype=torch_dtype)


def is_ltx_folder(model_index: Mapping[str, Any], unet_config: Mapping[str, Any]) -> bool:
    """The family's folder detector: an LTX-Video pipeline folder."""
    return model_index.get("_class_name") in PIPELINES


def conditioning(ref: str, models_dir: str | Path | None, field_name: str) -> str:
    """Every LTX-Video model makes video from text alone or conditioned on images (``LTXConditionPipeline``)."""
    return "optional"


def lora_problem(path: Path) -> str | None:
    """The family's ``lora_problem`` hook: why a LoRA file is not an LTX-Video transformer's (see
    :mod:`flipbook.models.video_loras`), compared with the tiny transformer's layers on the meta device."""
    from diffusers import LTXPipeline

    from flipbook.models.video_loras import lora_problem as problem
    from flipbook.models.weights import empty_weights

    def layers():
        reference = empty_weights(lambda: LTXVideoTransformer3DModel(**TINY_TRANSFORMER_CONFIG))
        return [name for name, _ in reference.named_modules()]

    return problem(path, LTXPipeline, layers)


def diffusers_pipeline(bundle: LtxBundle, *, conditioned: bool):
    """The bundle's parts as ``LTXConditionPipeline`` (``conditioned``) or ``LTXPipeline``, with a fresh
    scheduler (the condition pipeline's without dynamic shifting, which its schedule doesn't use)."""
    from diffusers import LTXConditionPipeline, LTXPipeline

    kind = LTXConditionPipeline if conditioned else LTXPipeline
    config = dict(bundle.scheduler.config)
    if conditioned:  # its timesteps are LTX's linear-quadratic schedule, never shifted by the token count
        config["use_dynamic_shifting"] = False
    pipe = kind(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(config),
        vae=bundle.vae,
        text_encoder=bundle.text_encoder,
        tokenizer=bundle.tokenizer,
        transformer=bundle.transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_frames(bundle: LtxBundle, prompt: str, negative: str, settings, seed: int):
    """A text-to-video segment by diffusers' LTXPipeline (frames x H x W x 3 in [0, 1])."""
    return diffusers_pipeline(bundle, conditioned=False)(
        prompt=prompt, negative_prompt=negative, height=settings.height, width=settings.width,
        num_frames=settings.num_frames, frame_rate=settings.fps, num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale, generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np", max_sequence_length=settings.max_sequence_length,
    ).frames[0]  # fmt: skip


def tiny_ltx_components(seed: int = 0) -> dict[str, Any]:
    vae = seeded(seed + 1, lambda: AutoencoderKLLTXVideo(**TINY_VAE_CONFIG))
    vae.use_framewise_encoding = vae.use_framewise_decoding = False
    return {
        "transformer": seeded(seed, lambda: LTXVideoTransformer3DModel(**TINY_TRANSFORMER_CONFIG)),
        "vae": vae,
        "text_encoder": seeded(seed + 2, lambda: T5EncoderModel(T5Config(**TINY_TEXT_CONFIG))),
        "tokenizer": tiny_tokenizer(max_length=128),
        "scheduler": FlowMatchEulerDiscreteScheduler.from_config(SCHEDULER_CONFIG),
    }


def _locate(ref: str, models_dir: str | Path | None, field_name: str) -> tuple[str, str]:
    """(path, "folder"), (path, "single_file") or (hub id, "hub"); anything else is an error."""
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
    if path.suffix.lower() not in (".safetensors", ".gguf"):
        raise FlipbookError(
            field_name, ref, ALLOWED, detail=f"a {path.suffix or 'suffix-less'} file: LTX-Video single files are "
            ".safetensors (transformer and VAE), or a GGUF-quantised transformer (.gguf)",
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
    if type(pipe).__name__ not in PIPELINES:
        raise FlipbookError(field_name, ref, ALLOWED, detail=f"a {type(pipe).__name__} folder")
    for name in ("transformer", "vae", "text_encoder"):
        check_no_missing_weights(getattr(pipe, name), field_name, ref, ALLOWED)
    return {
        name: getattr(pipe, name) for name in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
    }

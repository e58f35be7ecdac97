"""Wan 2.x models: load the parts of a text- or image-to-video model from whatever the user has.

``ref`` may be a built-in (``tiny-wan``: text to video, random weights, the real structures at toy size, fast
at 64x64 on a CPU; ``tiny-wan-i2v``: the same as an image-to-video model with a CLIP image encoder, as Wan 2.1 I2V;
``tiny-wan-flf2v``: one that cross-attends to a first and a last image, as Wan 2.1 FLF2V; ``random-wan-1.3b``: Wan 2.1 T2V 1.3B's exact architecture
with random weights, for speed and memory measurements), a diffusers folder (``model_index.json`` of a
``WanPipeline`` or ``WanImageToVideoPipeline``), a name in the models folder (a diffusers folder, or a transformer file
in ``models/diffusion_models`` with its text encoder and VAE files: ``single_file.py``), or a hub id in the
local Hugging Face cache. Wan 2.2 A14B's second expert (``transformer_2``, switched in below ``boundary_ratio``) comes with
its folder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    UMT5Config,
    UMT5EncoderModel,
)

from flipbook.errors import FlipbookError
from flipbook.models.device import pick_device, pick_dtype
from flipbook.models.families.wan import FAMILY
from flipbook.models.folders import MODEL_KINDS, ModelsDir
from flipbook.models.pickles import refused_pickle
from flipbook.models.toy_tokenizer import tiny_tokenizer
from flipbook.models.weights import check_no_missing_weights, seeded

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SINGLE_FILE_SUFFIXES = (".safetensors", ".gguf")  # GGUF: quantised, through diffusers' GGUF support
ALLOWED = (
    f"a built-in ({', '.join(FAMILY.builtins)}), a diffusers Wan folder with model_index.json, a name in "
    "model.models_dir (a diffusers folder, or a transformer file in models/diffusion_models with its text "
    "encoder and VAE files named beside it), or a hub id "
    "(e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers) in the local Hugging Face cache"
)
PIPELINES = ("WanPipeline", "WanImageToVideoPipeline")
"""The diffusers pipelines whose folders this family loads (``model_index.json``'s ``_class_name``)."""

SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "prediction_type": "flow_prediction",
    "use_flow_sigmas": True,
    "flow_shift": 3.0,
    "solver_order": 2,
    "solver_type": "bh2",
    "predict_x0": True,
    "lower_order_final": True,
    "final_sigmas_type": "zero",
    "timestep_spacing": "linspace",
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "beta_end": 0.02,
}
"""The scheduler Wan 2.1's diffusers releases ship: UniPC on flow sigmas, shift 3 (480p; 5 for 720p)."""

TINY_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 160,
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 37,
    "num_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 16,
    "feed_forward_proj": "gated-gelu",
    "pad_token_id": 0,
    "eos_token_id": 1,
}
TINY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 32,
    "freq_dim": 256,
    "ffn_dim": 32,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 32,
}
TINY_IMAGE_SIZE, TINY_IMAGE_PATCH = 16, 4
TINY_IMAGE_TOKENS = (TINY_IMAGE_SIZE // TINY_IMAGE_PATCH) ** 2 + 1
TINY_I2V_TRANSFORMER_CONFIG: dict[str, Any] = {
    **TINY_TRANSFORMER_CONFIG,
    "in_channels": 36,
    "image_dim": 8,
    "added_kv_proj_dim": 24,  # the image tokens' own keys and values, as Wan 2.1 I2V has them
}
TINY_FLF2V_TRANSFORMER_CONFIG: dict[str, Any] = {
    **TINY_I2V_TRANSFORMER_CONFIG,
    "pos_embed_seq_len": 2 * TINY_IMAGE_TOKENS,
}
TINY_VAE_CONFIG: dict[str, Any] = {
    "base_dim": 3,
    "z_dim": 16,
    "dim_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
    "temperal_downsample": [False, True, True],
}
WAN_1_3B_TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}
UMT5_XXL_CONFIG: dict[str, Any] = {
    "vocab_size": 256384,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "pad_token_id": 0,
    "eos_token_id": 1,
}
"""UMT5-XXL's encoder: Wan 2.1's text encoder."""


@dataclass(frozen=True)
class WanBundle:
    """The parts of WanPipeline / WanImageToVideoPipeline on a device, plus where they came from.

    ``scheduler`` is the loaded one; samplers make their own copy (``set_timesteps`` mutates it). The VAE
    stays in float32 (as Wan's own code and diffusers' examples run it); the transformer(s) and text encoder
    take ``dtype``. ``transformer_2`` and ``boundary_ratio``: Wan 2.2 A14B's low-noise expert, used for
    timesteps below ``boundary_ratio * 1000``.
    """

    transformer: WanTransformer3DModel
    vae: AutoencoderKLWan
    text_encoder: torch.nn.Module
    tokenizer: Any
    scheduler: Any
    name: str
    source: str  # builtin | folder | hub | single_file
    device: torch.device
    dtype: torch.dtype
    image_encoder: CLIPVisionModelWithProjection | None = None
    image_processor: CLIPImageProcessor | None = None
    transformer_2: WanTransformer3DModel | None = None
    boundary_ratio: float | None = None
    expand_timesteps: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def takes_images(self) -> bool:
        """Image-to-video: the transformer reads a mask and the image latents beside the noisy latents."""
        return int(self.transformer.config.in_channels) > int(self.vae.config.z_dim)

    @property
    def replaces_first_frames(self) -> bool:
        """Wan 2.2 TI2V-5B: no image channels, but a timestep per token, so the latents of the segment's first
        frames replace its first latent frames (their timestep 0), as ``WanImageToVideoPipeline`` does for
        ``expand_timesteps`` models: text to video, or image to video from a start image."""
        return self.expand_timesteps and not self.takes_images

    @property
    def conditioning(self) -> str:
        """ "required": image to video (a start image); "optional": text or a start image (TI2V); "none":
        text to video."""
        return "required" if self.takes_images else "optional" if self.replaces_first_frames else "none"

    def known_problem(self, positions: Collection[int]) -> tuple[list[int], str] | None:
        """The segment positions this model cannot condition on (with what it can), or None: a TI2V model
        takes a segment's first ``4k+1`` frames only (whole latent frames from the first)."""
        if not self.replaces_first_frames:
            return None
        misplaced = sorted(positions)[first_frames_taken(positions, self.scale_temporal) :]
        if not misplaced:
            return None
        t = self.scale_temporal
        return misplaced, (
            f"a frame a Wan 2.2 TI2V model can condition on: a segment's first {t}k+1 frames (init.image or a "
            f"keyframe at frame 0, the videomodel.overlap frames: 1, {t + 1}, {2 * t + 1}, ...), no keyframes "
            "later in a segment and no loop"
        )

    @property
    def image_embeddings(self) -> int:
        """CLIP images the transformer cross-attends to: 0 (T2V, Wan 2.2), 1 (I2V) or 2 (FLF2V: first, last)."""
        if self.transformer.config.image_dim is None:
            return 0
        return 2 if self.transformer.config.pos_embed_seq_len else 1

    @property
    def text_length(self) -> int | None:
        """The prompt length the model requires: Wan 2.1 I2V/FLF2V split the image tokens off their context
        by assuming 512 text tokens after them (diffusers' attention does too); None: any length."""
        return 512 if self.transformer.config.added_kv_proj_dim else None

    @property
    def scale_spatial(self) -> int:
        return int(self.vae.config.get("scale_factor_spatial") or 8)

    @property
    def scale_temporal(self) -> int:
        return int(self.vae.config.get("scale_factor_temporal") or 4)

    @property
    def side_multiple(self) -> int:
        """Width and height must be multiples of this (VAE factor x patch size: 16 for Wan 2.1)."""
        return self.scale_spatial * int(self.transformer.config.patch_size[1])

    @cached_property
    def loras(self):
        """The LoRAs loaded into the transformer and the active ones (:class:`~flipbook.models.lora.LoraSet`
        on diffusers' Wan pipeline of these parts: its loader converts every layout it reads; a text-to-video
        LoRA on an image-to-video model gets zero image layers, as diffusers does). Wan 2.2 A14B's second
        expert takes none (its LoRAs come as a pair, one per expert)."""
        from flipbook.models.video_loras import lora_set

        return lora_set(diffusers_pipeline(self), FAMILY.title)


def first_frames_taken(positions: Collection[int], scale_temporal: int) -> int:
    """How many of the known positions (from 0 on without a gap, ``k * scale_temporal + 1`` of them: whole
    latent frames) a TI2V model's first latent frames take."""
    run = next((n for n in range(len(positions) + 1) if n not in positions), len(positions))
    return (run - 1) // scale_temporal * scale_temporal + 1 if run else 0


def load_wan(
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
) -> WanBundle:
    """Load the Wan model ``ref`` (see the module docstring) on the chosen device and dtype (bf16 on CUDA).
    ``text_encoder``, ``vae`` and ``tokenizer`` name the parts a single transformer file comes without
    (``single_file.py``; ``image_encoder``: an image-to-video file's CLIP vision encoder); the field errors name
    ``<section>.text_encoder`` etc. beside ``field_name``. ``on_cpu``: the modules stay on the CPU (the
    bundle's device is still the one they run on) for offload hooks to move, or
    :func:`flipbook.sampling.video_memory.apply` to place them: weights larger than the GPU load. ``keep_fp8``
    (fp8 storage on): an fp8 transformer file's weights stay fp8 in memory, each dequantised as its layer
    computes (:mod:`flipbook.models.fp8_files`); otherwise they are upcast at load."""
    torch_device = pick_device(device)
    torch_dtype = torch.bfloat16 if dtype in (None, "auto") and torch_device.type != "cpu" else None
    torch_dtype = torch_dtype or pick_dtype(dtype, torch_device)
    section = field_name.rpartition(".")[0] or field_name
    location, source = (None, "builtin") if ref in BUILTINS else locate(ref, models_dir, field_name)
    if image_encoder is not None and source != "single_file":
        raise FlipbookError(
            f"{section}.image_encoder", image_encoder, "unset for this Wan model (only a single image-to-video "
            "transformer file comes without its image encoder)",
        )  # fmt: skip
    if source == "builtin":
        parts = BUILTINS[ref](seed, torch.device("cpu") if on_cpu else torch_device)
    elif source == "single_file":
        from flipbook.models.families.wan.single_file import single_file_parts

        parts = single_file_parts(
            Path(location), field_name=field_name, section=section, models_dir=models_dir,
            text_encoder=text_encoder, vae=vae, tokenizer=tokenizer, image_encoder=image_encoder,
            dtype=torch_dtype, keep_fp8=keep_fp8,
        )  # fmt: skip
    else:
        parts = _from_pretrained(location, ref, field_name, torch_dtype, local_files_only=source == "folder")
    return _place(parts, ref, source, torch_device, torch_dtype, on_cpu)


def is_wan_folder(model_index: Mapping[str, Any], unet_config: Mapping[str, Any]) -> bool:
    """The family's folder detector: a WanPipeline or WanImageToVideoPipeline folder."""
    return model_index.get("_class_name") in PIPELINES


def conditioning(ref: str, models_dir: str | Path | None, field_name: str) -> str | None:
    """The family's ``conditioning`` hook: "required" for image-to-video models, "optional" for Wan 2.2 TI2V
    (``expand_timesteps`` in a folder's ``model_index.json``), "none" for text-to-video ones, None where only
    a load can tell (see :func:`takes_images`)."""
    images = takes_images(ref, models_dir, field_name)
    if images is None:
        return None
    if images:
        return "required"
    if ref in BUILTINS:
        return "none"
    return "optional" if _expands_timesteps(locate(ref, models_dir, field_name)[0]) else "none"


def _expands_timesteps(folder: str) -> bool:
    """Whether a diffusers folder's pipeline takes a timestep per token (Wan 2.2 TI2V)."""
    try:
        index = json.loads((Path(folder) / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(index.get("expand_timesteps", False))


def takes_images(ref: str, models_dir: str | Path | None, field_name: str) -> bool | None:
    """Whether ``ref`` is an image-to-video model, from configs alone (no weights): a built-in's, a folder's
    ``transformer/config.json``; None where that needs a download or a load (hub ids, single files)."""
    if ref in BUILTINS:
        return ref in ("tiny-wan-i2v", "tiny-wan-flf2v")
    location, source = locate(ref, models_dir, field_name)
    if source != "folder":
        return None
    try:
        transformer = json.loads((Path(location) / "transformer" / "config.json").read_text(encoding="utf-8"))
        vae = json.loads((Path(location) / "vae" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the load says what is wrong with the folder
    return int(transformer.get("in_channels", 16)) > int(vae.get("z_dim", 16))


def lora_problem(path: Path) -> str | None:
    """The family's ``lora_problem`` hook: why a LoRA file is not a Wan transformer's (see
    :mod:`flipbook.models.video_loras`); the layers compared with are those of a Wan transformer with every
    optional part (image tokens and their position embedding), built on the meta device."""
    from diffusers import WanPipeline

    from flipbook.models.video_loras import lora_problem as problem
    from flipbook.models.weights import empty_weights

    def layers():
        reference = empty_weights(lambda: WanTransformer3DModel(**TINY_FLF2V_TRANSFORMER_CONFIG))
        return [name for name, _ in reference.named_modules()]

    return problem(path, WanPipeline, layers)


def diffusers_pipeline(bundle: WanBundle, with_images: bool | None = None):
    """The bundle's parts as diffusers' own pipeline (a fresh scheduler), to compare outputs with:
    ``WanImageToVideoPipeline`` for image-to-video models, or with ``with_images`` (Wan 2.2 TI2V from a start
    image), else ``WanPipeline``."""
    from diffusers import WanImageToVideoPipeline, WanPipeline

    common = {
        "tokenizer": bundle.tokenizer,
        "text_encoder": bundle.text_encoder,
        "transformer": bundle.transformer,
        "vae": bundle.vae,
        "scheduler": type(bundle.scheduler).from_config(bundle.scheduler.config),
    }
    common |= {"transformer_2": bundle.transformer_2, "expand_timesteps": bundle.expand_timesteps}
    if bundle.takes_images if with_images is None else with_images:
        pipe = WanImageToVideoPipeline(
            **common, image_encoder=bundle.image_encoder, image_processor=bundle.image_processor,
            boundary_ratio=bundle.boundary_ratio,
        )  # fmt: skip
    else:
        pipe = WanPipeline(**common, boundary_ratio=bundle.boundary_ratio)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_frames(bundle: WanBundle, prompt: str, negative: str, settings, seed: int):
    """A text-to-video segment by diffusers' WanPipeline (frames x H x W x 3 in [0, 1])."""
    return diffusers_pipeline(bundle)(
        prompt=prompt, negative_prompt=negative, height=settings.height, width=settings.width,
        num_frames=settings.num_frames, num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale, generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np", max_sequence_length=settings.max_sequence_length,
    ).frames[0]  # fmt: skip


# ---- built-in models ------------------------------------------------------------------------------------


def tiny_wan_components(seed: int = 0, device: torch.device | None = None) -> dict[str, Any]:
    """Text to video at toy size: a 2-block transformer, a 4-level VAE (latents 1/8 of the image, 1/4 of
    the frames), a 2-layer UMT5 and the toy tokenizer."""
    return _tiny(seed, TINY_TRANSFORMER_CONFIG)


def tiny_wan_i2v_components(seed: int = 0, device: torch.device | None = None) -> dict[str, Any]:
    """Image to video at toy size (Wan 2.1 I2V's layout): the tiny parts with a 36-channel transformer input
    (latents, mask, image latents) and a 2-layer CLIP vision tower whose tokens of the first image it
    cross-attends to."""
    return _tiny_with_images(seed, TINY_I2V_TRANSFORMER_CONFIG)


def tiny_wan_flf2v_components(seed: int = 0, device: torch.device | None = None) -> dict[str, Any]:
    """First and last frame to video at toy size (Wan 2.1 FLF2V's layout): as ``tiny-wan-i2v``, cross-attending
    to the tokens of both images, told apart by a learnt position embedding."""
    return _tiny_with_images(seed, TINY_FLF2V_TRANSFORMER_CONFIG)


def _tiny_with_images(seed: int, transformer_config: Mapping[str, Any]) -> dict[str, Any]:
    parts = _tiny(seed, transformer_config)
    vision = CLIPVisionConfig(
        hidden_size=8,
        projection_dim=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        image_size=TINY_IMAGE_SIZE,
        patch_size=TINY_IMAGE_PATCH,
    )
    parts["image_encoder"] = seeded(seed + 3, lambda: CLIPVisionModelWithProjection(vision))
    parts["image_processor"] = CLIPImageProcessor(
        crop_size=TINY_IMAGE_SIZE, size={"shortest_edge": TINY_IMAGE_SIZE}
    )
    return parts


def random_wan_13b_components(seed: int = 0, device: torch.device | None = None) -> dict[str, Any]:
    """Wan 2.1 T2V 1.3B's exact architecture (transformer 1.3B, Wan VAE, UMT5-XXL encoder) with random
    weights, built directly on ``device`` (a GPU builds it in seconds): for speed and memory, never pictures."""
    with torch.device(device or "cpu"):
        transformer = seeded(seed, lambda: WanTransformer3DModel(**WAN_1_3B_TRANSFORMER_CONFIG))
        vae = seeded(seed + 1, lambda: AutoencoderKLWan())
        text_encoder = seeded(seed + 2, lambda: UMT5EncoderModel(UMT5Config(**UMT5_XXL_CONFIG)))
    return {
        "transformer": transformer,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tiny_tokenizer(max_length=512),
        "scheduler": UniPCMultistepScheduler.from_config(SCHEDULER_CONFIG),
    }


def _tiny(seed: int, transformer_config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "transformer": seeded(seed, lambda: WanTransformer3DModel(**transformer_config)),
        "vae": seeded(seed + 1, lambda: AutoencoderKLWan(**TINY_VAE_CONFIG)),
        "text_encoder": seeded(seed + 2, lambda: UMT5EncoderModel(UMT5Config(**TINY_TEXT_CONFIG))),
        "tokenizer": tiny_tokenizer(),
        "scheduler": UniPCMultistepScheduler.from_config(SCHEDULER_CONFIG),
    }


BUILTINS: dict[str, Callable[[int, torch.device | None], dict[str, Any]]] = {
    "tiny-wan": tiny_wan_components,
    "tiny-wan-i2v": tiny_wan_i2v_components,
    "tiny-wan-flf2v": tiny_wan_flf2v_components,
    "random-wan-1.3b": random_wan_13b_components,
}
if tuple(BUILTINS) != FAMILY.builtins:  # pragma: no cover - a registration mistake, caught on import
    raise RuntimeError("the Wan family's built-in names and builders disagree")


# ---- folders, single files and the hub ------------------------------------------------------------------


def locate(ref: str, models_dir: str | Path | None, field_name: str) -> tuple[str, str]:
    """Where ``ref`` lives: (path, "folder"), (path, "single_file") or (hub id, "hub"); anything else is an
    error that says what is accepted."""
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise FlipbookError(field_name, ref, ALLOWED, detail="the folder has no model_index.json")
        return str(path), "folder"
    if path.is_file():
        return _single_file(path, ref, field_name), "single_file"
    if models_dir and (hit := ModelsDir(Path(models_dir)).find_listed(MODEL_KINDS, ref)) is not None:
        return (str(hit), "folder") if hit.is_dir() else (_single_file(hit, ref, field_name), "single_file")
    if _HUB_ID.match(ref):
        return ref, "hub"
    raise FlipbookError(field_name, ref, ALLOWED, detail="no such file, folder or model name")


def _single_file(path: Path, ref: str, field_name: str) -> str:
    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise FlipbookError(
            field_name, ref, ALLOWED, detail=f"a {path.suffix or 'suffix-less'} file: Wan transformer files are "
            f"{' or '.join(SINGLE_FILE_SUFFIXES)}",
        )  # fmt: skip
    return str(path)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _from_pretrained(
    location: str, ref: str, field_name: str, dtype: torch.dtype, *, local_files_only: bool
) -> dict[str, Any]:
    """The pipeline's parts from a folder or the hub (the VAE in float32)."""
    from diffusers import AutoencoderKLWan, DiffusionPipeline

    try:
        vae = AutoencoderKLWan.from_pretrained(
            location, subfolder="vae", torch_dtype=torch.float32,
            local_files_only=local_files_only or _offline(),
        )  # fmt: skip
        pipe = DiffusionPipeline.from_pretrained(
            location, vae=vae, torch_dtype=dtype, local_files_only=local_files_only or _offline()
        )
    except (OSError, ValueError) as error:
        detail = (
            refused_pickle(error) or f"the folder could not be loaded: {_first_line(error)}"
            if Path(location).exists()
            else "not in the local Hugging Face cache and the hub can't be reached"
            if _offline()
            else _first_line(error)
        )
        raise FlipbookError(field_name, ref, ALLOWED, detail=detail) from None
    if type(pipe).__name__ not in PIPELINES:
        raise FlipbookError(
            field_name,
            ref,
            ALLOWED,
            detail=f"a {type(pipe).__name__} folder, not a Wan text/image-to-video one",
        )
    parts = {name: getattr(pipe, name, None) for name in _PART_NAMES}
    for name in ("transformer", "transformer_2", "vae", "text_encoder", "image_encoder"):
        if parts.get(name) is not None:
            check_no_missing_weights(parts[name], field_name, ref, ALLOWED)
    parts["boundary_ratio"] = pipe.config.get("boundary_ratio")
    parts["expand_timesteps"] = bool(pipe.config.get("expand_timesteps", False))
    return parts


_PART_NAMES = (
    "transformer",
    "transformer_2",
    "vae",
    "text_encoder",
    "tokenizer",
    "scheduler",
    "image_encoder",
    "image_processor",
)


def _place(
    parts: dict[str, Any], ref: str, source: str, device: torch.device, dtype: torch.dtype, on_cpu: bool
) -> WanBundle:
    """Move the parts to ``device`` (the CPU with ``on_cpu``): the VAE in float32, the rest in ``dtype``."""
    for name in ("transformer", "transformer_2", "text_encoder", "image_encoder", "vae"):
        module = parts.get(name)
        if module is None:
            continue
        module.eval().requires_grad_(False).to("cpu" if on_cpu else device)
        wanted = torch.float32 if name == "vae" else dtype
        if getattr(module, "is_quantized", False):  # GGUF: its weights stay quantised, computing in dtype
            continue
        if module.dtype != wanted:  # diffusers warns on every dtype cast, even a no-op one
            module.to(wanted)
    return WanBundle(**parts, name=ref, source=source, device=device, dtype=dtype)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__

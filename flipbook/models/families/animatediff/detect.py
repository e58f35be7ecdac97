"""What a motion-module state dict is: its version (v1, v2, v3) and key layout, or what it is instead."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flipbook.errors import FlipbookError
from flipbook.models.families.animatediff import FAMILIES
from flipbook.models.families.sd.convert import UNET_PREFIX

ALLOWED_MOTION_MODULES = (
    f"the built-in {' or '.join(dict.fromkeys(n for f in FAMILIES for n in f.builtins))}, an AnimateDiff motion "
    "module file (SD 1.5: v1 mm_sd_v14/v15, v2 mm_sd15_v2, v3 mm_sd15_v3 / v3_sd15_mm, AnimateLCM, "
    "AnimateDiff-Lightning; SDXL: mm_sdxl_v10_beta, Hotshot-XL hsxl_temporal_layers; .safetensors or .ckpt) as a "
    "path or a name in model.models_dir, a diffusers MotionAdapter folder, or a hub id (org/name) in the local "
    "Hugging Face cache"
)
SD15_LEVELS = 4
SDXL_LEVELS = 3
"""UNet levels with motion modules: SD 1.5's four, SDXL's three."""


@dataclass(frozen=True)
class MotionModuleInfo:
    """What a motion-module file is.

    ``version``: for SD 1.5 "v1" (no mid block, 24 frames: mm_sd_v14 / mm_sd_v15), "v2" (mid block:
    mm_sd15_v2, Lightning), "v3" (no mid block, 32 frames: v3_sd15_mm); for SDXL "sdxl-beta" (mm_sdxl_v10_beta) or
    "hotshot-xl" (Hotshot-XL's temporal layers); "custom" for a file with another number of levels that embeds
    its flipbook config (the tiny test modules). ``layout``: "original" (AnimateDiff's key names), "hotshot"
    (Hotshot-XL's: ``temporal_attentions``) or "diffusers" (MotionAdapter's). ``max_seq_length``: the frames
    its positional encoding covers (None when the file stores no encoding, as AnimateLCM's). ``levels``: UNet
    levels (4 for SD 1.5, 3 for SDXL).
    """

    version: str
    layout: str
    max_seq_length: int | None
    has_mid_block: bool
    levels: int

    @property
    def positional_encoding(self) -> bool:
        return self.max_seq_length is not None


_LORA_KEY_MARKERS = ("_lora.", ".lora_A.", ".lora_B.", ".lora_down.", ".lora_up.", ".lora.down.", ".lora.up.")
_DIFFUSERS_MOTION = re.compile(r"(?:^|\.)motion_modules\.\d+\.transformer_blocks\.")
_HOTSHOT_MOTION = re.compile(r"(?:^|\.)temporal_attentions\.\d+\.")
_LEVEL = re.compile(r"^down_blocks\.(\d+)\.(?:motion_modules|temporal_attentions)\.")


def _what_else(keys: Iterable[str], wrapper: str | None) -> str | None:
    """Why a state dict is not an SD 1.5 motion module, when it is recognisably something else."""
    keys = list(keys)
    if any(marker in key for key in keys for marker in _LORA_KEY_MARKERS) or any(
        key.startswith(("lora_unet_", "lora_te")) for key in keys
    ):
        return (
            "this is a LoRA, not a motion module: motion LoRAs go in animatediff.motion_loras, the v3 adapter "
            "(v3_sd15_adapter) in animatediff.adapter_lora"
        )
    if wrapper == "controlnet" or any(
        key.startswith(("controlnet_cond_embedding.", "controlnet_down_blocks.", "controlnet_mid_block."))
        for key in keys
    ):
        return (
            "this is a SparseCtrl / ControlNet model, not a motion module (SparseCtrl is not supported yet)"
        )
    if any(key.startswith(UNET_PREFIX) or key.startswith("cond_stage_model.") for key in keys):
        return "this is a Stable Diffusion checkpoint, not a motion module: give it as model.name"
    if any(key.startswith("conv_in.") for key in keys):
        return "this motion module has its own conv_in (PIA / FancyVideo), which is not supported"
    if any(key.startswith(("img_encoder.", "fps_embedding.", "motion_embedding.")) for key in keys):
        return "this motion module has extra encoders (AnimateLCM-I2V / FancyVideo), which are not supported"
    return None


def is_motion_module(state: Mapping[str, Any]) -> bool:
    """The family's checkpoint detector: AnimateDiff motion-module keys (either layout), and nothing that makes
    the file something else (a LoRA, a SparseCtrl model, a checkpoint)."""
    keys = list(state)
    motion = any(
        ".temporal_transformer." in key or _DIFFUSERS_MOTION.search(key) or _HOTSHOT_MOTION.search(key)
        for key in keys
    )
    return motion and _what_else(keys, None) is None


def detect_motion_module(
    state: Mapping[str, Any],
    *,
    field: str = "animatediff.motion_module",
    value: object = "<state dict>",
    wrapper: str | None = None,
    embedded: bool = False,
) -> MotionModuleInfo:
    """The version and layout of a motion-module state dict, or a FlipbookError saying what it is instead.
    ``embedded``: the file carries its own flipbook config, so any number of UNet levels is accepted."""

    def fail(detail: str) -> FlipbookError:
        return FlipbookError(field, value, ALLOWED_MOTION_MODULES, detail=detail)

    if not state:
        raise fail("the file holds no tensors")
    if (other := _what_else(state, wrapper)) is not None:
        raise fail(other)
    original = any(".temporal_transformer." in key for key in state)
    diffusers = any(_DIFFUSERS_MOTION.search(key) for key in state)
    hotshot = any(_HOTSHOT_MOTION.search(key) for key in state)
    if not original and not diffusers and not hotshot:
        raise fail("no AnimateDiff motion-module weights (motion_modules.N.temporal_transformer...) found")
    if original + diffusers + hotshot > 1:
        raise fail("it mixes the original, the Hotshot-XL and the diffusers key layout")
    levels = sorted({int(m[1]) for key in state if (m := _LEVEL.match(key))})
    if not levels:
        raise fail("it has no down-block motion modules (a SparseCtrl or partial file?)")
    if not any(key.startswith("up_blocks.") for key in state):
        raise fail("it has no up-block motion modules (SparseCtrl's motion modules are not supported)")
    if len(levels) not in (SD15_LEVELS, SDXL_LEVELS) and not embedded:
        raise fail(f"it has motion modules for {len(levels)} UNet levels; SD 1.5 has 4, SDXL 3")
    pe = next(
        (
            tensor
            for key, tensor in state.items()
            if key.endswith(("pos_encoder.pe", "pos_embed.pe", "pos_encoder.positional_encoding"))
        ),
        None,
    )
    max_len = int(pe.shape[1]) if pe is not None and getattr(pe, "ndim", 0) == 3 else None
    mid = any(key.startswith("mid_block.") for key in state)
    layout = "hotshot" if hotshot else ("original" if original else "diffusers")
    return MotionModuleInfo(_version(len(levels), mid, max_len, layout), layout, max_len, mid, len(levels))


def _version(levels: int, mid: bool, max_len: int | None, layout: str) -> str:
    """As the A1111 extension tells them apart: SD 1.5's v2 has a mid block, v1 a 24-frame encoding, v3 one of
    32; SDXL's three levels are AnimateDiff's beta unless the keys are Hotshot-XL's."""
    if levels == SD15_LEVELS:
        return "v2" if mid else ("v1" if max_len is not None and max_len < 32 else "v3")
    if levels == SDXL_LEVELS:
        return "hotshot-xl" if layout == "hotshot" else "sdxl-beta"
    return "custom"

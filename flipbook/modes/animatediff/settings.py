"""``[animatediff]``: the settings of the ``animatediff`` mode (a motion module, context windows, loops,
FreeInit/FreeNoise, image to video). Pure pydantic: no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from flipbook.spec.fields import ImageFile, LoraRef, MotionModule, Section


class AnimateDiffSection(Section):
    """``[animatediff]``: a motion module (AnimateDiff) attached to the SD 1.5 checkpoint of ``model.name``;
    all frames are denoised together, in overlapping context windows when there are more frames than
    ``context_length``. Prompts travel per frame (``animation.prompt_interpolation``, lerp by default);
    ``init.image`` (and ``end_image``) start from images, ``init.video`` restyles a video."""

    motion_module: MotionModule = Field(
        "tiny",
        description="built-in tiny, a diffusers MotionAdapter folder or hub id, or an original motion module "
        "checkpoint (mm_sd15_v2.safetensors, mm_sd15_v3.ckpt, ...) as a path or a name in the models folder",
    )
    motion_loras: list[LoraRef] = Field(
        default_factory=list, description="motion LoRAs (v2: zoom, pan, tilt, roll) with weights"
    )
    adapter_lora: LoraRef | None = Field(
        None, description="the v3 domain adapter LoRA (v3_sd15_adapter.ckpt) on the image model, with weight"
    )
    preset: Literal["none", "lcm", "animatelcm", "lightning"] = Field(
        "none",
        description="scheduler settings for distilled checkpoints: lcm/animatelcm (LCM sampler, linear "
        "betas), lightning (Euler, trailing spacing, linear betas); see README for steps and cfg",
    )
    context_length: int = Field(16, ge=1, le=64, description="frames the motion module sees at once")
    context_overlap: int | None = Field(
        None, ge=0, description="frames shared by neighbouring windows; default context_length // 4"
    )
    context_stride: int = Field(1, ge=1, le=8, description="1 = contiguous windows; 2+ adds strided windows")
    context_schedule: Literal["uniform", "static"] = Field(
        "uniform",
        description="uniform: windows wrap around the animation and their offsets rotate every step; "
        "static: the same windows every step",
    )
    fuse_method: Literal["flat", "pyramid"] = Field(
        "pyramid",
        description="how overlapping windows are averaged: flat (equal weights) or pyramid (window centre "
        "weighs more)",
    )
    closed_loop: Literal["N", "R-P", "R+P", "A"] = Field(
        "R-P",
        description="N: no loop; R-P: some windows wrap from the last frames to the first, prompts don't; "
        "R+P: the same and prompts travel back to the first keyframe; A: every window wraps (strongest loop). "
        "Not ping-pong: for that set output.ping_pong",
    )
    free_init: bool = Field(False, description="FreeInit: re-noise the low frequencies and sample again")
    free_init_iterations: int = Field(3, ge=1, le=10, description="FreeInit sampling passes")
    free_init_method: Literal["butterworth", "gaussian", "ideal", "box"] = "butterworth"
    free_noise: bool = Field(
        False, description="FreeNoise: later windows reuse the first window's noise, shuffled (steadier)"
    )
    end_image: ImageFile = Field(None, description="image to video: the last frame leans to this image")
    latent_power: float = Field(1.0, ge=0, le=10, description="how fast the start image's hold decays")
    latent_scale: float = Field(32.0, gt=0, le=1000, description="how far the start image's hold reaches")
    latent_power_last: float = Field(1.0, ge=0, le=10, description="as latent_power, for end_image")
    latent_scale_last: float = Field(32.0, gt=0, le=1000, description="as latent_scale, for end_image")

    @model_validator(mode="after")
    def _overlap_below_length(self) -> AnimateDiffSection:
        if self.context_overlap is not None and self.context_overlap >= self.context_length:
            raise ValueError(f"context_overlap must be less than context_length ({self.context_length})")
        return self

    def overlap(self) -> int:
        """``context_overlap`` with its default (a quarter of the window) filled in."""
        return self.context_length // 4 if self.context_overlap is None else self.context_overlap

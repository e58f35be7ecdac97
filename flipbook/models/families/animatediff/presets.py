"""Scheduler presets for distilled AnimateDiff setups (``animatediff.preset``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from flipbook.errors import FlipbookError


@dataclass(frozen=True)
class MotionPreset:
    """Scheduler settings for a distilled AnimateDiff setup (``animatediff.preset``).

    ``scheduler`` overrides the model's scheduler config; ``sampler`` is the sampler the preset needs (None:
    keep the spec's). ``steps`` and ``cfg`` are the recommended ranges (documented, not enforced).
    """

    name: str
    sampler: str | None
    scheduler: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    steps: tuple[int, ...] = ()
    cfg: tuple[float, float] | None = None
    checkpoints: str = ""


PRESETS: Mapping[str, MotionPreset] = MappingProxyType(
    {
        "none": MotionPreset("none", None, checkpoints="any motion module; the spec's sampler and config"),
        # LCM-LoRA (latent-consistency/lcm-lora-sdv1-5) on the image model with a regular motion module.
        # LCM sampler: the LCM-LoRA card and diffusers' "Inference with LCM" guide (LCMScheduler, 4-8 steps,
        # guidance 1-2). Linear betas: AnimateDiff's motion modules were trained with them (AnimateDiff's
        # inference configs; the A1111 extension's set_ddim_alpha switches every SD 1.5 run to linear betas).
        # clip_sample False: SD's own value; LCMScheduler's default (True) would clip the x0 estimate.
        "lcm": MotionPreset(
            "lcm",
            "LCM",
            MappingProxyType({"beta_schedule": "linear", "clip_sample": False}),
            steps=(4, 5, 6, 7, 8),
            cfg=(1.0, 2.0),
            checkpoints="LCM-LoRA (lcm-lora-sdv1-5) or an LCM-distilled SD 1.5 model, with any motion module",
        ),
        # AnimateLCM (wangfuyun/AnimateLCM: AnimateLCM_sd15_t2v motion module + AnimateLCM_sd15_t2v_lora at
        # ~0.8). Model card / diffusers docs: LCMScheduler.from_config(config, beta_schedule="linear"),
        # guidance 2.0, 6 steps. AnimateLCM README tips: 4 steps work, 6-8 are better, CFG 1-2 (1.5 preferred),
        # 16 frames.
        "animatelcm": MotionPreset(
            "animatelcm",
            "LCM",
            MappingProxyType({"beta_schedule": "linear", "clip_sample": False}),
            steps=(4, 5, 6, 7, 8),
            cfg=(1.0, 2.0),
            checkpoints="AnimateLCM_sd15_t2v motion module with the AnimateLCM_sd15_t2v_lora LoRA",
        ),
        # AnimateDiff-Lightning (ByteDance/AnimateDiff-Lightning, animatediff_lightning_{1,2,4,8}step_*):
        # model card: EulerDiscreteScheduler.from_config(config, timestep_spacing="trailing",
        # beta_schedule="linear"), guidance_scale=1.0, num_inference_steps = the checkpoint's step count
        # (the 1-step model is for research only). The card's ComfyUI workflow: Euler, sgm_uniform, CFG 1.
        "lightning": MotionPreset(
            "lightning",
            "Euler",
            MappingProxyType({"beta_schedule": "linear", "timestep_spacing": "trailing"}),
            steps=(1, 2, 4, 8),
            cfg=(1.0, 1.0),
            checkpoints="AnimateDiff-Lightning 1/2/4/8-step motion modules (steps = the checkpoint's)",
        ),
    }
)


def preset_scheduler_config(preset: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The model's scheduler ``config`` with ``preset``'s overrides applied (a new dict; ``config`` unchanged)."""
    if preset not in PRESETS:
        raise FlipbookError("animatediff.preset", preset, f"one of: {', '.join(PRESETS)}")
    result = dict(config)
    result.update(PRESETS[preset].scheduler)
    return result

"""Sampling presets for distilled models (``sampling.preset``): pure data, no torch.

Distilled models and LoRAs are sampled with a few steps, no classifier-free guidance and a particular
sampler, as their model cards say; a preset sets those where the spec leaves them unset (values the spec
writes are kept), and ``flipbook validate`` says what it set. CFG 1 is flipbook's (and A1111's) "no
guidance": only the prompt's UNet pass runs, which is diffusers' ``guidance_scale=0``/``1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class DistilledPreset:
    """What a preset sets (``steps``, ``cfg``, ``sampler``), what it is for and where the values come from."""

    name: str
    steps: int
    cfg: float
    sampler: str
    models: str
    note: str = ""

    def settings(self) -> dict[str, object]:
        """The ``sampling`` fields it sets where the spec leaves them unset."""
        return {"steps": self.steps, "cfg": self.cfg, "sampler": self.sampler}


PRESETS: Mapping[str, DistilledPreset] = MappingProxyType(
    {
        # stabilityai/sdxl-turbo and sd-turbo model cards: 1 step (up to 4), guidance_scale 0.0; their
        # scheduler config is EulerAncestralDiscreteScheduler with timestep_spacing "trailing"; img2img needs
        # num_inference_steps * strength >= 1 (at least one step is denoised).
        "turbo": DistilledPreset(
            "turbo",
            1,
            1.0,
            "Euler a SGM Uniform",
            "SDXL-Turbo, SD-Turbo (trained at 512x512)",
            note="img2img frames need steps x denoise >= 1 (e.g. 2 steps at denoise 0.5)",
        ),
        # ByteDance/SDXL-Lightning model card: EulerDiscreteScheduler with timestep_spacing "trailing",
        # guidance_scale 0, num_inference_steps = the checkpoint's (2, 4 or 8 step; ComfyUI: Euler,
        # sgm_uniform, CFG 1). Checkpoints and LoRAs alike.
        "lightning": DistilledPreset(
            "lightning",
            4,
            1.0,
            "Euler SGM Uniform",
            "SDXL-Lightning 2/4/8-step checkpoints or LoRAs",
            note="steps = the checkpoint's step count (set sampling.steps for the 2- or 8-step ones)",
        ),
        # ByteDance/Hyper-SD model card (Hyper-SDXL-8steps-lora and the other N-step LoRAs): DDIMScheduler
        # with timestep_spacing "trailing", guidance_scale 0, num_inference_steps = the LoRA's.
        "hyper": DistilledPreset(
            "hyper",
            8,
            1.0,
            "DDIM SGM Uniform",
            "Hyper-SD / Hyper-SDXL N-step LoRAs",
            note="steps = the LoRA's step count (Hyper-SDXL-8steps-lora: 8)",
        ),
        # latent-consistency/lcm-lora-sdxl (and -sdv1-5) model card: LCMScheduler, 4 steps (2-8), guidance
        # scale between 1 and 2 (1 = none).
        "lcm": DistilledPreset(
            "lcm", 4, 1.0, "LCM", "LCM-LoRA for SDXL or SD 1.5, or an LCM-distilled model"
        ),
    }
)
PRESET_NAMES: tuple[str, ...] = ("none", *PRESETS)
"""``sampling.preset`` values: none (the spec's own settings) or a preset."""

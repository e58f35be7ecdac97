"""What one image to sample looks like: flat, typed fields with diffusers' names."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from flipbook.errors import FlipbookError
from flipbook.prompting.grammar import split_composable

MaskedContent = Literal["original", "fill", "latent_noise", "latent_nothing"]
MASKED_CONTENT = ("original", "fill", "latent_noise", "latent_nothing")
BlendMode = Literal["lerp", "slerp"]
BLEND_MODES = ("lerp", "slerp")


@dataclass(frozen=True)
class Control:
    """One ControlNet unit applied to one request (diffusers' StableDiffusionControlNetPipeline arguments).

    ``model`` names the ControlNet: the sampling core asks its :class:`~flipbook.models.controlnet.ControlNets`
    for it, so a run loads each ControlNet once; ``controlnet`` may hold a loaded ``ControlNetModel`` instead
    (tests, API callers), which is then used as is. ``image`` is the control image, already preprocessed (a
    canny map, a depth map...); the core resizes it to the request's size as diffusers does.
    ``conditioning_scale`` is the unit's weight, ``guidance_start`` / ``guidance_end`` the share of the
    denoising steps it acts on (diffusers' ``control_guidance_start`` / ``control_guidance_end``).
    ``control_type`` is, for a union ControlNet (``ControlNetUnionModel``), the index of the control the image
    is (diffusers' ``control_mode``); None for any other ControlNet.
    """

    model: str
    image: Any
    conditioning_scale: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    controlnet: Any = field(default=None, compare=False, repr=False)
    control_type: int | None = None

    def batch_key(self) -> tuple:
        """Which network this unit runs (and as which control): requests batch only when every unit runs the
        same one."""
        return (self.model, None if self.controlnet is None else id(self.controlnet), self.control_type)

    def validate(self, index: int) -> None:
        """Raise one FlipbookError naming ``controls[index].<field>``."""
        name = f"controls[{index}]"
        if not isinstance(self.model, str) or not self.model:
            raise FlipbookError(f"{name}.model", self.model, "a ControlNet name")
        if self.image is None:
            raise FlipbookError(f"{name}.image", None, "a control image")
        scale = self.conditioning_scale
        if not isinstance(scale, numbers.Real) or not math.isfinite(scale) or not 0.0 <= scale <= 10.0:
            raise FlipbookError(f"{name}.conditioning_scale", scale, "a number from 0 to 10")
        start, end = self.guidance_start, self.guidance_end
        if not isinstance(start, numbers.Real) or not 0.0 <= start < 1.0:
            raise FlipbookError(f"{name}.guidance_start", start, "a share of the steps in [0, 1)")
        if not isinstance(end, numbers.Real) or not start < end <= 1.0:
            raise FlipbookError(f"{name}.guidance_end", end, f"a share of the steps in ({start:g}, 1]")


@dataclass(frozen=True)
class FrameRequest:
    """One image: txt2img when ``image`` is None, img2img with ``image``, inpainting with ``mask_image`` too.

    ``strength`` is diffusers' (the share of the schedule that is re-run: 1.0 ignores the init image).
    ``prompt`` may be composable (``a AND b :0.7`` or ``a | b``); ``clip_skip`` follows A1111 (1 = none).
    ``loras`` are resolved files with weights; prompt ``<lora:...>`` tags are resolved before this point.

    Prompt interpolation: with ``blend_weight`` w > 0 the prompt's embedding is mixed with ``blend_prompt``'s
    (and the negative's with ``blend_negative_prompt``'s, which is empty unless given) by ``blend_mode``:
    ``lerp`` is (1 - w) a + w b, ``slerp`` interpolates each token's vector on the sphere (see
    :func:`flipbook.sampling.encode.slerp_embeddings`). w = 0 or equal texts give the plain embedding exactly.
    When either side is composable (several parts), the two blend in the noise prediction instead: every
    part of the prompt keeps its weight times (1 - w) and every part of ``blend_prompt`` gets its weight
    times w. The embeddings are per UNet row, so blends never split a batch (they are not in
    :meth:`batch_key`).

    ``latents``: the initial noise (diffusers' ``latents``), a standard-normal tensor of the latent shape
    (``1 x C x height/8 x width/8``) used instead of a draw from ``seed``; img2img adds it to the image
    latents at the strength's noise level. The latent walk passes slerped keyframe noise here.

    ``controls``: ControlNet units (:class:`Control`), their residuals summed as diffusers' MultiControlNet
    sums them. Requests batch together when they run the same ControlNets; images, weights and guidance
    ranges may differ per request.

    ``refiner_switch_at``: the share of the schedule after which the model's refiner (``ModelBundle.refiner``)
    takes over from the model, as diffusers' ``denoising_end`` / ``denoising_start`` split it; None: the model
    alone. Requests batch together only with the same switch.
    """

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    num_inference_steps: int = 20
    guidance_scale: float = 7.0
    sampler: str = "Euler a"
    width: int = 512
    height: int = 512
    image: Any = None
    strength: float = 1.0
    mask_image: Any = None
    mask_blur: float = 0.0
    masked_content: MaskedContent = "original"
    inpaint_overlay: bool = False
    clip_skip: int = 1
    eta: float = 0.0
    noise_multiplier: float = 1.0  # img2img: scales the initial noise (A1111's initial noise multiplier)
    loras: tuple[tuple[Path, float, float | None], ...] = field(default=())  # (file, unet, te weight)
    blend_prompt: str = ""
    blend_negative_prompt: str = ""
    blend_weight: float = 0.0  # the share of blend_prompt / blend_negative_prompt, 0 to 1
    blend_mode: BlendMode = "lerp"
    latents: Any = None
    controls: tuple[Control, ...] = ()
    init_latents: Any = None
    refiner_switch_at: float | None = None

    @property
    def img2img(self) -> bool:
        """Whether the request starts from a picture: ``image``, or ``init_latents`` (its VAE latents)."""
        return self.image is not None or self.init_latents is not None

    def batch_key(self) -> tuple:
        """Requests with equal keys share timesteps and weights, so they can be denoised in one batch."""
        return (
            self.sampler,
            self.num_inference_steps,
            self.strength if self.img2img else 1.0,
            self.width,
            self.height,
            self.image is not None,
            self.init_latents is not None,
            self.mask_image is not None,
            self.masked_content,
            self.clip_skip,
            self.eta,
            self.loras,
            tuple(control.batch_key() for control in self.controls),
            self.refiner_switch_at,
        )

    def validate(self, vae_scale_factor: int = 8) -> None:
        """Raise one FlipbookError naming the first bad field."""
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < vae_scale_factor or value % vae_scale_factor:
                raise FlipbookError(name, value, f"a positive multiple of {vae_scale_factor}")
        if not isinstance(self.num_inference_steps, int) or not 1 <= self.num_inference_steps <= 1000:
            raise FlipbookError("steps", self.num_inference_steps, "an integer from 1 to 1000")
        if not 0.0 <= self.guidance_scale <= 100.0:
            raise FlipbookError("cfg", self.guidance_scale, "a number from 0 to 100")
        if not 0.0 < self.strength <= 1.0:
            raise FlipbookError("strength", self.strength, "a number in (0, 1]")
        if self.img2img and int(self.num_inference_steps * self.strength) < 1:
            raise FlipbookError(
                "strength",
                self.strength,
                f"at least {1 / self.num_inference_steps:.3g} with {self.num_inference_steps} steps",
                detail="steps x strength must leave at least one denoising step",
            )
        if self.mask_image is not None and self.image is None:
            raise FlipbookError("mask", "given", "a mask together with an init image")
        if self.masked_content not in MASKED_CONTENT:
            raise FlipbookError("masked_content", self.masked_content, f"one of: {', '.join(MASKED_CONTENT)}")
        if not 0.0 <= self.noise_multiplier <= 10.0:
            raise FlipbookError("noise_multiplier", self.noise_multiplier, "a number from 0 to 10")
        if self.mask_blur < 0:
            raise FlipbookError("mask_blur", self.mask_blur, "a number >= 0")
        if not 1 <= self.clip_skip <= 12:
            raise FlipbookError("clip_skip", self.clip_skip, "an integer from 1 to 12")
        if self.blend_mode not in BLEND_MODES:
            raise FlipbookError("blend_mode", self.blend_mode, f"one of: {', '.join(BLEND_MODES)}")
        if not isinstance(self.blend_weight, numbers.Real) or not 0.0 <= self.blend_weight <= 1.0:
            raise FlipbookError("blend_weight", self.blend_weight, "a number from 0 to 1")
        switch = self.refiner_switch_at
        if switch is not None and (
            isinstance(switch, bool) or not isinstance(switch, numbers.Real) or not 0.0 < switch < 1.0
        ):
            raise FlipbookError("refiner_switch_at", switch, "a share of the steps in (0, 1), or none")
        self.prompt_parts()
        self._check_latents(vae_scale_factor)
        self._check_init_latents(vae_scale_factor)
        for index, control in enumerate(self.controls):
            control.validate(index)
        if not -(2**63) <= self.seed < 2**64:
            raise FlipbookError(
                "seed", self.seed, "an integer seed (use -1 for random before building requests)"
            )

    def prompt_parts(self) -> tuple[list[tuple[str, float]], list[tuple[str, float]] | None]:
        """The prompt's composable parts ``(text, weight)`` and, when the positive prompt is blended in the
        embedding (weight > 0, a different ``blend_prompt``, one part on each side), ``blend_prompt``'s; None
        otherwise. A blend with a composable side comes back as one list of parts with scaled weights (parts
        whose weight becomes 0 are left out, so w = 1 is exactly ``blend_prompt``)."""
        parts = split_composable(self.prompt)
        if self.blend_weight <= 0.0 or self.blend_prompt == self.prompt:
            return parts, None
        others = split_composable(self.blend_prompt)
        if len(parts) == 1 and len(others) == 1:
            return parts, others
        w = float(self.blend_weight)
        mixed = [(text, weight * (1.0 - w)) for text, weight in parts]
        mixed += [(text, weight * w) for text, weight in others]
        return [(text, weight) for text, weight in mixed if weight != 0.0], None

    def _check_init_latents(self, vae_scale_factor: int) -> None:
        """``init_latents`` replace ``image``: one latent image of this request's size, never with a mask."""
        if self.init_latents is None:
            return
        if self.image is not None or self.mask_image is not None:
            raise FlipbookError(
                "init_latents", "given", "init latents instead of an init image, without a mask"
            )
        shape = tuple(getattr(self.init_latents, "shape", ()))
        size = (self.height // vae_scale_factor, self.width // vae_scale_factor)
        if len(shape) not in (3, 4) or (len(shape) == 4 and shape[0] != 1) or shape[-2:] != size:
            allowed = f"a 1 x C x {size[0]} x {size[1]} latent tensor for {self.width}x{self.height}"
            raise FlipbookError("init_latents", f"shape {shape}", allowed)

    def _check_latents(self, vae_scale_factor: int) -> None:
        """``latents`` must be one latent image of this request's size (any channel count: the model checks)."""
        if self.latents is None:
            return
        shape = tuple(getattr(self.latents, "shape", ()))
        size = (self.height // vae_scale_factor, self.width // vae_scale_factor)
        if len(shape) not in (3, 4) or (len(shape) == 4 and shape[0] != 1) or shape[-2:] != size:
            allowed = f"a 1 x C x {size[0]} x {size[1]} noise tensor for {self.width}x{self.height}"
            raise FlipbookError("latents", f"shape {shape}", allowed)

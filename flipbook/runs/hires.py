"""Hires fix as A1111 does it: a first pass at the still's size, an upscale, and an img2img second pass.

The order is A1111's (``StableDiffusionProcessingTxt2Img.sample`` / ``sample_hr_pass``):

1. sample the first pass at ``width x height`` and keep its latents;
2. upscale to the target size (``scale``, or ``resize_x`` / ``resize_y``): a *latent* upscaler interpolates
   the latents (``torch.nn.functional.interpolate``, the mode and antialiasing its name says); any other
   upscaler decodes the picture, upscales the pixels (Lanczos, nearest, or an ESRGAN-family model from the
   models folder) and encodes it again with the VAE;
3. with both ``resize_x`` and ``resize_y`` the aspect ratio is kept by upscaling to cover the box and cutting
   the overhang off the middle, in latents (8-pixel steps);
4. sample the second pass from those latents with each image's own seed, ``denoising_strength`` and
   ``steps`` (0: the first pass's) real denoising steps, as A1111 runs them: a schedule of
   ``int(steps / min(denoising_strength, 0.999))`` steps entered at the point that leaves ``steps``.

:class:`HiresSettings` is the typed section shared by ``flipbook txt2img --hires-*`` and the A1111 API's
``enable_hr`` fields; the pure parts (target size, steps, infotext) are here, the sampling in
:func:`second_pass`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import PIL.Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flipbook.errors import FlipbookError
from flipbook.spec.references import ModelReference

if TYPE_CHECKING:
    from flipbook.models.bundle import ModelBundle
    from flipbook.models.folders import ModelsDir
    from flipbook.sampling.core import SamplingCore
    from flipbook.sampling.requests import FrameRequest

LATENT_UPSCALERS: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
"""A1111's latent upscalers: name -> (``interpolate`` mode, antialias)."""
PIXEL_UPSCALERS = ("None", "Lanczos", "Nearest")
"""Upscalers without a model (:data:`flipbook.post.upscale.RESIZERS`, kept out of imports that load torch)."""
HIRES_UPSCALER = ModelReference(
    "upscaler", builtins=(*LATENT_UPSCALERS, *PIXEL_UPSCALERS), folders=("upscaler",)
)
"""``hires.upscaler``: a built-in name, or an upscaling model's name in the models folder (never a path)."""
MAX_SIDE = 8192
"""The upscaled picture's longest side: the bound of ``animation.width`` / ``height``."""
MAX_STEPS = 1000
VAE_SCALE = 8


class HiresSettings(BaseModel):
    """``hires``: A1111's hires fix for still images (its request field names in brackets)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scale: float = Field(2.0, gt=0, le=16, description="upscale by this factor (hr_scale)")
    resize_x: int = Field(0, ge=0, le=MAX_SIDE, description="upscale to this width instead; 0: from scale "
                          "or resize_y (hr_resize_x)")  # fmt: skip
    resize_y: int = Field(0, ge=0, le=MAX_SIDE, description="upscale to this height instead; 0: from scale "
                          "or resize_x (hr_resize_y)")  # fmt: skip
    upscaler: Annotated[str, HIRES_UPSCALER] = Field(
        "Latent",
        description="Latent, Latent (antialiased), Latent (bicubic), Latent (bicubic antialiased), Latent "
        "(nearest), Latent (nearest-exact), None, Lanczos, Nearest, or an upscaling model in the models folder "
        "(hr_upscaler)",
    )
    steps: int = Field(0, ge=0, le=MAX_STEPS, description="second-pass steps; 0: the first pass's "
                       "(hr_second_pass_steps)")  # fmt: skip
    denoising_strength: float = Field(0.7, gt=0, le=1, description="share of the second pass that is "
                                      "re-drawn (denoising_strength)")  # fmt: skip
    sampler: str | None = Field(
        None, description="second-pass sampler; None: the first pass's (hr_sampler_name)"
    )
    prompt: str = Field("", description="second-pass prompt; empty: the first pass's (hr_prompt)")
    negative_prompt: str = Field("", description="second-pass negative prompt; empty: the first pass's "
                                 "(hr_negative_prompt)")  # fmt: skip

    @property
    def latent(self) -> bool:
        return self.upscaler in LATENT_UPSCALERS


def hires_settings(values: dict[str, Any], field_names: dict[str, str] | None = None) -> HiresSettings:
    """``values`` checked as :class:`HiresSettings`; a bad value is one FlipbookError naming its field as the
    caller calls it (``field_names``: setting -> name, e.g. ``scale`` -> ``hr_scale``; else ``hires.scale``)."""
    names = field_names or {}
    try:
        return HiresSettings.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else ""
        field = names.get(key, f"hires.{key}")
        rule = first["msg"].removeprefix("Value error, ")
        raise FlipbookError(field, first.get("input"), rule) from None


def target_size(hires: HiresSettings, width: int, height: int, field: str = "hires.scale") -> tuple[int, int]:
    """A1111's ``calculate_target_resolution``: the size the first pass is upscaled to (before the overhang
    of a ``resize_x x resize_y`` box is cut off), each side at most :data:`MAX_SIDE`."""
    x, y = hires.resize_x, hires.resize_y
    if x == 0 and y == 0:
        size = int(width * hires.scale), int(height * hires.scale)
    elif y == 0:
        size = x, x * height // width
    elif x == 0:
        size = y * width // height, y
    elif width / height < x / y:
        size = x, x * height // width
    else:
        size = y * width // height, y
    if max(size) > MAX_SIDE or min(size) < VAE_SCALE:
        shown = hires.scale if hires.resize_x == hires.resize_y == 0 else f"{x}x{y}"
        raise FlipbookError(
            field, shown, f"an upscaled size from {VAE_SCALE} to {MAX_SIDE} pixels on a side",
            detail=f"{width}x{height} upscaled is {size[0]}x{size[1]}",
        )  # fmt: skip
    return size


def final_size(hires: HiresSettings, width: int, height: int) -> tuple[int, int]:
    """The finished picture's size: the target in whole latents (8 pixels), the overhang cut off."""
    tw, th = target_size(hires, width, height)
    cut_x, cut_y = _overhang(hires, tw, th)
    return (tw // VAE_SCALE - cut_x) * VAE_SCALE, (th // VAE_SCALE - cut_y) * VAE_SCALE


def _overhang(hires: HiresSettings, tw: int, th: int) -> tuple[int, int]:
    """Latent columns and rows cut off when both ``resize_x`` and ``resize_y`` are given (A1111's
    ``truncate_x`` / ``truncate_y``)."""
    if hires.resize_x == 0 or hires.resize_y == 0:
        return 0, 0
    return (tw - hires.resize_x) // VAE_SCALE, (th - hires.resize_y) // VAE_SCALE


def second_pass_schedule(hires: HiresSettings, first_steps: int) -> tuple[int, float]:
    """``(schedule steps, strength)`` that run ``hires.steps or first_steps`` real steps at A1111's noise
    level: its img2img with fixed steps makes a schedule of ``int(steps / min(denoise, 0.999))`` and enters it
    ``steps`` before the end (the strength here is chosen so ``int(schedule * strength) == steps``)."""
    steps = hires.steps or first_steps
    schedule = int(steps / min(hires.denoising_strength, 0.999))
    if schedule > MAX_STEPS:
        raise FlipbookError(
            "hires.denoising_strength", hires.denoising_strength,
            f"a strength that keeps the second pass's schedule at most {MAX_STEPS} steps",
            detail=f"{steps} steps / {hires.denoising_strength:g} = {schedule} steps",
        )  # fmt: skip
    return schedule, min(1.0, (steps + 0.5) / schedule)


def infotext_extras(hires: HiresSettings, sampler: str, prompt: str, negative_prompt: str) -> dict[str, str]:
    """The hires keys of A1111's infotext, in its order (the sampler and prompts when they differ, then
    ``Hires upscale`` or ``Hires resize``, ``Hires steps`` when set, ``Hires upscaler``)."""
    extra: dict[str, str] = {}
    if hires.sampler is not None and hires.sampler != sampler:
        extra["Hires sampler"] = hires.sampler
    if hires.prompt and hires.prompt != prompt:
        extra["Hires prompt"] = hires.prompt
    if hires.negative_prompt and hires.negative_prompt != negative_prompt:
        extra["Hires negative prompt"] = hires.negative_prompt
    if hires.resize_x == hires.resize_y == 0:
        extra["Hires upscale"] = f"{hires.scale:g}"
    else:
        extra["Hires resize"] = f"{hires.resize_x}x{hires.resize_y}"
    if hires.steps:
        extra["Hires steps"] = str(hires.steps)
    extra["Hires upscaler"] = hires.upscaler
    return extra


# ---- sampling ---------------------------------------------------------------------------------------------


def upscale_latents(hires: HiresSettings, latents: Any, width: int, height: int) -> Any:
    """First-pass latents (``C x h x w``) interpolated to the target size as the latent upscaler says, the
    overhang cut off the middle (``1 x C x H x W``)."""
    import torch

    mode, antialias = LATENT_UPSCALERS[hires.upscaler]
    tw, th = target_size(hires, width, height)
    batch = torch.as_tensor(latents)[None].float()
    size = (th // VAE_SCALE, tw // VAE_SCALE)
    up = torch.nn.functional.interpolate(batch, size=size, mode=mode, antialias=antialias)
    return _cut(up, *_overhang(hires, tw, th))


def _cut(latents: Any, cut_x: int, cut_y: int) -> Any:
    """A1111's ``samples[:, :, ty//2 : H - (ty+1)//2, tx//2 : W - (tx+1)//2]``."""
    height, width = latents.shape[-2:]
    return latents[..., cut_y // 2 : height - (cut_y + 1) // 2, cut_x // 2 : width - (cut_x + 1) // 2]


def load_pixel_upscaler(hires: HiresSettings, models: ModelsDir | None, device: Any = None) -> Any:
    """The pixel upscaler to run: a resizer's name as it is, or the upscaling model, loaded (once per run)."""
    from flipbook.post.upscale import load_upscaler

    if hires.upscaler in PIXEL_UPSCALERS:
        return hires.upscaler
    try:
        return load_upscaler(hires.upscaler, models_dir=models, device=device)
    except FlipbookError as error:  # the upscaler's loader names its own field
        raise FlipbookError("hires.upscaler", error.value, error.allowed, detail=error.detail) from None


def upscale_picture(hires: HiresSettings, image: PIL.Image.Image, upscaler: Any) -> PIL.Image.Image:
    """A decoded first-pass picture upscaled to the target size as A1111's ``resize_image`` does
    (:func:`flipbook.post.upscale.upscale_to` with ``upscaler`` from :func:`load_pixel_upscaler`), the
    overhang cut off the middle in whole latents."""
    from flipbook.post.upscale import upscale_to

    tw, th = target_size(hires, *image.size)
    big = upscale_to(image, (tw, th), upscaler)
    big = big.crop((0, 0, tw // VAE_SCALE * VAE_SCALE, th // VAE_SCALE * VAE_SCALE))
    cut_x, cut_y = _overhang(hires, tw, th)
    left, top = cut_x // 2 * VAE_SCALE, cut_y // 2 * VAE_SCALE
    right = big.width - (cut_x + 1) // 2 * VAE_SCALE
    bottom = big.height - (cut_y + 1) // 2 * VAE_SCALE
    return big.crop((left, top, right, bottom))


def second_pass(
    hires: HiresSettings,
    core: SamplingCore,
    bundle: ModelBundle,
    templates: tuple[FrameRequest, ...],
    firsts: list,
    batch_size: int,
    models: ModelsDir | None,
) -> list[PIL.Image.Image]:
    """The second pass of every image: ``templates`` are its requests without a start (size, steps,
    strength, prompts, sampler set), ``firsts`` the first pass's latents (a latent upscaler) or pictures."""
    from dataclasses import replace

    if core.finish_on_cancel and core.events.cancelled:  # A1111's interrupt skips the second pass
        return core.decode(firsts) if hires.latent else list(firsts)
    upscaler = None if hires.latent else load_pixel_upscaler(hires, models, bundle.device)
    requests = []
    for template, first in zip(templates, firsts, strict=True):
        if hires.latent:
            height, width = (side * VAE_SCALE for side in first.shape[-2:])
            latents = upscale_latents(hires, first, width, height)
            requests.append(replace(template, init_latents=latents))
        else:
            requests.append(replace(template, image=upscale_picture(hires, first, upscaler)))
    return core.generate(requests, batch_size=batch_size)

"""Helpers every denoising loop shares (the sampling core, AnimateDiff's and SVD's loops).

What they do is diffusers' pipelines' own step arithmetic, written once: where img2img starts in the schedule,
which arguments a scheduler's ``step`` takes, how ControlNet residuals add up and reach the UNet, and a cheap
latent preview.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import PIL.Image
import torch

SD_LATENT_RGB = torch.tensor(
    [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
)
"""A linear map from the SD VAE's 4 latent channels (SD 1.x/2.x, SVD) to RGB, good enough for live previews."""


def skip_to_strength(scheduler, steps: int, strength: float) -> torch.Tensor:
    """img2img: run only the last ``steps * strength`` steps, as diffusers' get_timesteps does."""
    init_timestep = min(int(steps * strength), steps)
    t_start = max(steps - init_timestep, 0)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)
    return scheduler.timesteps[t_start * scheduler.order :]


def switch_timestep(scheduler, share: float) -> int:
    """The timestep where a second denoiser takes over after ``share`` of the schedule: diffusers'
    ``discrete_timestep_cutoff`` of ``denoising_end`` / ``denoising_start`` (the first expert runs the
    timesteps at or above it, the second those below)."""
    train = scheduler.config.num_train_timesteps
    return int(round(train - share * train))


def first_expert_steps(timesteps: torch.Tensor, cutoff: int) -> int:
    """How many of ``timesteps`` (descending) the first expert runs: those at or above ``cutoff`` (diffusers'
    ``denoising_end`` filter; Wan 2.2's high-noise expert takes ``t >= boundary`` the same way)."""
    return int((timesteps >= cutoff).sum().item())


def second_expert_timesteps(scheduler, cutoff: int, earliest: int = 0) -> torch.Tensor:
    """The timesteps a second expert runs with its own ``scheduler`` (timesteps set): those below ``cutoff``, as
    diffusers' ``get_timesteps`` with ``denoising_start`` counts them (a second-order scheduler never stops
    between its two evaluations), from index ``earliest`` at the soonest (img2img: where the first expert
    began); the scheduler's begin index is set there."""
    timesteps = scheduler.timesteps
    count = int((timesteps < cutoff).sum().item())
    if scheduler.order == 2 and count % 2 == 0:
        count += 1
    start = max(len(timesteps) - count, earliest)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    return timesteps[start:]


def step_kwargs(scheduler, generators: Sequence[torch.Generator], eta: float) -> dict:
    """The keyword arguments ``scheduler.step`` takes of ``eta`` and ``generator`` (one generator per row)."""
    params = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in params:
        kwargs["eta"] = eta
    if "generator" in params:
        kwargs["generator"] = generators if len(generators) > 1 else generators[0]
    return kwargs


def add_residuals(total: tuple, unit: tuple) -> tuple[list[torch.Tensor], torch.Tensor]:
    """MultiControlNet's sum: one more unit's ``(down, mid)`` residuals added to ``total`` (``(None, None)``
    before the first unit)."""
    down, mid = total
    unit_down, unit_mid = unit
    if down is None:
        return list(unit_down), unit_mid
    return [previous + current for previous, current in zip(down, unit_down, strict=True)], mid + unit_mid


def residual_kwargs(residuals: tuple[list[torch.Tensor], torch.Tensor] | None) -> dict:
    """The UNet arguments that add ControlNet residuals to its skip connections (none without units)."""
    if residuals is None:
        return {}
    down, mid = residuals
    return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}


def latents_preview(latents: torch.Tensor, tiny_vae=None) -> PIL.Image.Image:
    """A cheap RGB preview of the first latent in a batch: decoded by ``tiny_vae`` (TAESD) when there is one,
    else a linear map of the latent channels to RGB (no VAE call)."""
    if tiny_vae is not None:
        from flipbook.models.tiny_vae import decode

        image = decode(tiny_vae, latents[:1])[0].float().cpu()
        array = ((image.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        return PIL.Image.fromarray(array)
    rgb = torch.einsum("chw,cr->hwr", latents[0].float().cpu(), SD_LATENT_RGB)
    array = ((rgb + 1) * 127.5).clamp(0, 255).byte().numpy()
    return PIL.Image.fromarray(array)


def check_finite(images: torch.Tensor, stage: str) -> torch.Tensor:
    """``images`` (a batch, first axis) unchanged when every value is finite, else :class:`NumericError`
    naming ``stage`` (the denoising loop's latents, the VAE's decode) and how many images are affected.

    One sum per image decides it: NaN and infinities carry through a sum, so a finite sum means every value
    is finite; only a sum that is not (a bad value, or finite values summing past the float range) is
    looked at value by value (one pass over the images instead of two, no mask of their size)."""
    rows = images.reshape(images.shape[0], -1)
    if bool(torch.isfinite(rows.sum(dim=1)).all()):
        return images
    bad = ~torch.isfinite(rows).all(dim=1)
    if bool(bad.any()):
        from flipbook.errors import NumericError

        raise NumericError(stage, int(bad.sum()), images.shape[0])
    return images

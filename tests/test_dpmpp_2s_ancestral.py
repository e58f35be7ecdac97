"""A1111's "DPM++ 2S a": flipbook's diffusers scheduler against k-diffusion's sample_dpmpp_2s_ancestral."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import (
    EulerDiscreteScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
)

from flipbook.models.families.sd.builtin import SD15_SCHEDULER_CONFIG
from flipbook.samplers.dpmpp_2s_ancestral import DPMSolverPlusPlus2SAncestralScheduler
from flipbook.samplers.schedulers import (
    SAMPLER_NAMES,
    is_ancestral,
    is_stochastic,
    make_scheduler,
    scheduler_class,
)
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (2, 4, 8, 8)
MU = torch.linspace(-0.8, 0.8, 4).reshape(1, 4, 1, 1)  # the toy data: N(MU, C) per channel
C = 0.3


def toy_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The exact denoiser (posterior mean) for Gaussian data N(MU, C) at noise level ``sigma``."""
    return MU + (x - MU) * (C / (sigma**2 + C))


# ---------------------------------------------------------------------------- k-diffusion, transcribed


def get_ancestral_step(sigma_from, sigma_to, eta=1.0):
    sigma_up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def sample_dpmpp_2s_ancestral(model, x, sigmas, generator):
    """k-diffusion's loop (eta = s_noise = 1), noise drawn from ``generator`` instead of randn_like."""
    sigma_fn = lambda t: t.neg().exp()  # noqa: E731
    t_fn = lambda sigma: sigma.log().neg()  # noqa: E731
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1])
        if sigma_down == 0:
            d = (x - denoised) / sigmas[i]
            dt = sigma_down - sigmas[i]
            x = x + d * dt
        else:
            t, t_next = t_fn(sigmas[i]), t_fn(sigma_down)
            r = 1 / 2
            h = t_next - t
            s = t + r * h
            x_2 = (sigma_fn(s) / sigma_fn(t)) * x - (-h * r).expm1() * denoised
            denoised_2 = model(x_2, sigma_fn(s))
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + torch.randn(x.shape, generator=generator) * sigma_up
    return x


# ---------------------------------------------------------------------------- the diffusers side


def unet_like(scheduler, prediction_type: str):
    """A "UNet" for the toy denoiser: it sees the scaled input and the timestep, as a real one does."""
    log_sigmas = scheduler.log_sigmas.double().numpy()

    def model(model_input: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # k-diffusion's t_to_sigma: log-linear interpolation of the training sigmas at a fractional t
        sigma = torch.tensor(np.exp(np.interp(float(t), np.arange(len(log_sigmas)), log_sigmas)))
        sigma = sigma.float()
        x = model_input * (sigma**2 + 1) ** 0.5
        denoised = toy_denoiser(x, sigma)
        if prediction_type == "v_prediction":  # denoised = x / (sigma^2 + 1) - v * sigma / sqrt(sigma^2 + 1)
            return (x / (sigma**2 + 1) - denoised) * (sigma**2 + 1) ** 0.5 / sigma
        return (x - denoised) / sigma

    return model


def run_diffusers_loop(scheduler, model, x, generator, timesteps=None):
    for t in scheduler.timesteps if timesteps is None else timesteps:
        output = model(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(output, t, x, generator=generator).prev_sample
    return x


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("name", ["DPM++ 2S a", "DPM++ 2S a Karras"])
def test_matches_k_diffusion_reference(name: str, prediction_type: str) -> None:
    config = {**SD15_SCHEDULER_CONFIG, "prediction_type": prediction_type}
    steps = 7
    scheduler = make_scheduler(name, config)
    scheduler.set_timesteps(steps)
    karras = name.endswith("Karras")

    # k-diffusion's sigmas: the step sigmas diffusers' Euler uses for the same config, then 0
    euler = EulerDiscreteScheduler.from_config(config, use_karras_sigmas=karras)
    euler.set_timesteps(steps)
    sigmas = euler.sigmas
    assert len(scheduler.timesteps) == 2 * steps - 1
    assert torch.allclose(scheduler.sigmas[0::2], sigmas[:-1]) and scheduler.sigmas[-1] == 0
    assert torch.allclose(scheduler.timesteps[0::2], euler.timesteps)

    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)) * scheduler.init_noise_sigma
    expected = sample_dpmpp_2s_ancestral(toy_denoiser, x_T, sigmas, torch.Generator().manual_seed(1))
    got = run_diffusers_loop(
        scheduler, unet_like(scheduler, prediction_type), x_T, torch.Generator().manual_seed(1)
    )
    assert torch.isfinite(got).all()
    assert (got - expected).abs().max() < 1e-5
    # and it samples the toy distribution, roughly: per-channel means near MU
    assert (got.mean(dim=(0, 2, 3)) - MU.flatten()).abs().max() < 0.35


def test_midpoint_of_each_step_is_the_next_sigma() -> None:
    """With eta = 1, sigma_down = sigma_next^2 / sigma, so the log-midpoint sqrt(sigma * sigma_down) is
    sigma_next: the second evaluation of a step runs at the next step's noise level (and timestep)."""
    scheduler = make_scheduler("DPM++ 2S a", SD15_SCHEDULER_CONFIG)
    scheduler.set_timesteps(6)
    assert torch.allclose(scheduler.sigmas[1:-1:2], scheduler.sigmas[2::2], rtol=1e-5)
    assert torch.allclose(scheduler.timesteps[1::2], scheduler.timesteps[2::2], atol=1e-2)


def test_img2img_start_and_add_noise_follow_the_step_boundaries() -> None:
    scheduler = make_scheduler("DPM++ 2S a Karras", SD15_SCHEDULER_CONFIG)
    scheduler.set_timesteps(5)
    t_start = 2
    scheduler.set_begin_index(t_start * scheduler.order)
    timesteps = scheduler.timesteps[t_start * scheduler.order :]
    original, noise = torch.zeros(1, 4, 8, 8), torch.ones(1, 4, 8, 8)
    noisy = scheduler.add_noise(original, noise, timesteps[:1])
    euler = EulerDiscreteScheduler.from_config(SD15_SCHEDULER_CONFIG, use_karras_sigmas=True)
    euler.set_timesteps(5)
    assert torch.allclose(noisy, noise * euler.sigmas[t_start])
    model = unet_like(scheduler, "epsilon")
    result = run_diffusers_loop(scheduler, model, noisy, torch.Generator().manual_seed(0), timesteps)
    assert torch.isfinite(result).all()
    assert scheduler.step_index == len(scheduler.timesteps)


def test_half_precision_step_keeps_the_dtype() -> None:
    scheduler = make_scheduler("DPM++ 2S a", SD15_SCHEDULER_CONFIG)
    scheduler.set_timesteps(3)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)) * scheduler.init_noise_sigma
    model = unet_like(scheduler, "epsilon")
    for t in scheduler.timesteps:
        output = model(scheduler.scale_model_input(x, t).float(), t).to(torch.bfloat16)
        x = scheduler.step(
            output, t, x.to(torch.bfloat16), generator=torch.Generator().manual_seed(0)
        ).prev_sample
        assert x.dtype == torch.bfloat16
    assert torch.isfinite(x.float()).all()


# ---------------------------------------------------------------------------- registration


def test_make_scheduler_builds_both_variants() -> None:
    plain = make_scheduler("DPM++ 2S a", SD15_SCHEDULER_CONFIG)
    karras = make_scheduler("dpm++ 2s a karras", SD15_SCHEDULER_CONFIG)
    assert isinstance(plain, DPMSolverPlusPlus2SAncestralScheduler) and not plain.config.use_karras_sigmas
    assert isinstance(karras, DPMSolverPlusPlus2SAncestralScheduler) and karras.config.use_karras_sigmas
    assert plain.config.timestep_spacing == "leading" and plain.config.steps_offset == 1
    assert plain.config.beta_schedule == "scaled_linear"
    for name in ("DPM++ 2S a", "DPM++ 2S a Karras", "DPMSolverPlusPlus2SAncestralScheduler"):
        assert is_ancestral(name) and is_stochastic(name), name
    assert scheduler_class("DPMSolverPlusPlus2SAncestralScheduler") is DPMSolverPlusPlus2SAncestralScheduler
    index = SAMPLER_NAMES.index("DPM2 a Karras")
    assert SAMPLER_NAMES[index + 1 : index + 3] == ("DPM++ 2S a", "DPM++ 2S a Karras")


def test_v_prediction_config_is_kept() -> None:
    config = {**SD15_SCHEDULER_CONFIG, "prediction_type": "v_prediction", "timestep_spacing": "trailing"}
    scheduler = make_scheduler("DPM++ 2S a Karras", config)
    assert scheduler.config.prediction_type == "v_prediction"
    scheduler.set_timesteps(4)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2)) * scheduler.init_noise_sigma
    result = run_diffusers_loop(scheduler, unet_like(scheduler, "v_prediction"), x, torch.Generator())
    assert torch.isfinite(result).all()


# ---------------------------------------------------------------------------- pipelines (tiny model)


def _pipe(cls, model, sampler="DPM++ 2S a"):
    pipe = cls(**model.pipe.components)
    pipe.scheduler = make_scheduler(sampler, model.scheduler_config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generator(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


@pytest.mark.parametrize("sampler", ["DPM++ 2S a", "DPM++ 2S a Karras"])
def test_diffusers_txt2img_pipeline(tiny_model, sampler):
    pipe = _pipe(StableDiffusionPipeline, tiny_model, sampler)
    kwargs = dict(num_inference_steps=3, height=64, width=64, output_type="np")

    def run(seed):
        return pipe("a red fox", generator=_generator(seed), **kwargs).images

    first, again, other = run(1), run(1), run(2)
    assert first.shape == (1, 64, 64, 3) and np.isfinite(first).all()
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    # flipbook's sampling core drives the scheduler the same way
    request = FrameRequest("a red fox", seed=1, num_inference_steps=3, guidance_scale=7.5, sampler=sampler,
                           width=64, height=64)  # fmt: skip
    got = np.stack(SamplingCore(tiny_model).generate([request], output_type="np"))
    assert np.abs(got - first).max() <= 1e-4


@pytest.mark.parametrize("strength", [0.7, 1.0])
def test_diffusers_img2img_pipeline(tiny_model, init_image, strength):
    pipe = _pipe(StableDiffusionImg2ImgPipeline, tiny_model)

    def run(seed):
        return pipe(
            "an oil painting", image=init_image, strength=strength, num_inference_steps=3,
            generator=_generator(seed), output_type="np",
        ).images  # fmt: skip

    first, again = run(7), run(7)
    assert first.shape == (1, 64, 64, 3) and np.isfinite(first).all()
    assert np.array_equal(first, again)
    request = FrameRequest("an oil painting", seed=7, num_inference_steps=3, guidance_scale=7.5,
                           sampler="DPM++ 2S a", width=64, height=64, image=init_image, strength=strength)  # fmt: skip
    got = np.stack(SamplingCore(tiny_model).generate([request], output_type="np"))
    assert np.abs(got - first).max() <= 1e-4


def test_diffusers_inpaint_pipeline(tiny_model, init_image, mask_image):
    pipe = _pipe(StableDiffusionInpaintPipeline, tiny_model)
    expected = pipe(
        "a blue ball", image=init_image, mask_image=mask_image, strength=0.7, num_inference_steps=3,
        height=64, width=64, generator=_generator(11), output_type="np",
    ).images  # fmt: skip
    assert np.isfinite(expected).all()
    request = FrameRequest("a blue ball", seed=11, num_inference_steps=3, guidance_scale=7.5, sampler="DPM++ 2S a",
                           width=64, height=64, image=init_image, mask_image=mask_image, strength=0.7)  # fmt: skip
    got = np.stack(SamplingCore(tiny_model).generate([request], output_type="np"))
    assert np.abs(got - expected).max() <= 1e-4

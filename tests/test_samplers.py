"""A1111 sampler names build working diffusers schedulers that keep the model's own config."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, DPMSolverSDEScheduler, EulerDiscreteScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from flipbook.errors import FlipbookError
from flipbook.models.families.sd.builtin import SD15_SCHEDULER_CONFIG
from flipbook.samplers.schedulers import (
    SAMPLER_NAMES,
    SCHEDULER_CLASS_NAMES,
    is_ancestral,
    is_stochastic,
    make_scheduler,
    resolve_sampler,
    scheduler_class,
)

ALL_NAMES = SAMPLER_NAMES + SCHEDULER_CLASS_NAMES


def _alpha_bar(scheduler, alphas_cumprod: np.ndarray, t: torch.Tensor) -> float:
    """alpha-bar at a (possibly fractional, as k-diffusion schedulers use) timestep, via log-sigma."""
    log_sigmas = np.log(((1 - alphas_cumprod) / alphas_cumprod) ** 0.5)
    sigma = float(np.exp(np.interp(float(t), np.arange(len(log_sigmas)), log_sigmas)))
    return 1.0 / (1.0 + sigma**2)


def _oracle(x0: torch.Tensor, model_input: torch.Tensor, ab: float, prediction_type: str) -> torch.Tensor:
    """What a perfect denoiser that knows the clean sample is ``x0`` would predict for ``model_input``."""
    eps = (model_input - ab**0.5 * x0) / (1 - ab) ** 0.5
    if prediction_type == "v_prediction":
        return ab**0.5 * eps - (1 - ab) ** 0.5 * x0
    return eps


def _sample(name: str, config: dict, steps: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the scheduler's loop with the oracle denoiser, as the SD pipeline calls it; returns (x0, result)."""
    scheduler = make_scheduler(name, config, noise_seed=0)
    scheduler.set_timesteps(steps)
    alphas_cumprod = make_scheduler("DDPM", config).alphas_cumprod.double().numpy()
    generator = torch.Generator().manual_seed(0)
    x0 = torch.full((1, 4, 8, 8), 0.5) + 0.1 * torch.randn(1, 4, 8, 8, generator=generator)
    sample = torch.randn(1, 4, 8, 8, generator=generator) * scheduler.init_noise_sigma
    accepts_generator = "generator" in inspect.signature(scheduler.step).parameters
    extra = {"generator": generator} if accepts_generator else {}
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(sample, t)
        ab = _alpha_bar(scheduler, alphas_cumprod, t)
        output = _oracle(x0, model_input, ab, config.get("prediction_type", "epsilon"))
        sample = scheduler.step(output, t, sample, **extra).prev_sample
    return x0, sample


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_sampler_denoises_with_a_perfect_model(name: str) -> None:
    x0, result = _sample(name, dict(SD15_SCHEDULER_CONFIG))
    assert result.shape == x0.shape
    assert torch.isfinite(result).all()
    assert (result - x0).abs().mean() < 0.1, name


@pytest.mark.parametrize("name", ["Euler", "DPM++ 2M Karras", "DPM++ SDE", "UniPC", "DDIM", "PLMS", "LCM"])
def test_v_prediction_from_base_config_is_kept_and_used(name: str) -> None:
    config = {**SD15_SCHEDULER_CONFIG, "prediction_type": "v_prediction"}
    assert make_scheduler(name, config).config.prediction_type == "v_prediction"
    x0, result = _sample(name, config)
    assert (result - x0).abs().mean() < 0.1


def test_base_config_betas_carry_over() -> None:
    config = {**SD15_SCHEDULER_CONFIG, "beta_end": 0.02, "beta_schedule": "linear"}
    for name in SAMPLER_NAMES:
        scheduler = make_scheduler(name, config)
        assert scheduler.config.beta_end == 0.02 and scheduler.config.beta_schedule == "linear", name


def test_make_scheduler_returns_a_new_instance_each_call() -> None:
    first = make_scheduler("Euler a", SD15_SCHEDULER_CONFIG)
    second = make_scheduler("Euler a", SD15_SCHEDULER_CONFIG)
    assert first is not second
    first.set_timesteps(4)
    assert second.num_inference_steps is None


@pytest.mark.parametrize("name", ALL_NAMES)
def test_a_scheduler_is_built_from_its_config_once_then_copied(name: str, monkeypatch) -> None:
    """A render makes a scheduler per frame: ``from_config`` (milliseconds of signature reading) runs once per
    sampler and config, each later one is a copy of an unused one, equal in every attribute."""
    cls = scheduler_class(name)
    config = {**SD15_SCHEDULER_CONFIG, "steps_offset": 1 + len(name)}  # a config no other test built
    fresh = make_scheduler(name, config)
    built = []
    original = cls.from_config.__func__
    monkeypatch.setattr(
        cls, "from_config", classmethod(lambda c, *a, **k: built.append(c) or original(c, *a, **k))
    )
    again = make_scheduler(name, config)
    assert not built and again is not fresh
    for key, value in vars(fresh).items():
        other = vars(again)[key]
        if torch.is_tensor(value):
            assert torch.allclose(value, other, rtol=0, atol=0, equal_nan=True), key
        elif isinstance(value, np.ndarray):
            assert np.array_equal(value, other), key
        else:
            assert repr(value) == repr(other), key


@pytest.mark.parametrize("name", [n for n in SAMPLER_NAMES if "Karras" in n])
def test_karras_variants_use_karras_sigmas(name: str) -> None:
    assert make_scheduler(name, SD15_SCHEDULER_CONFIG).config.use_karras_sigmas is True
    plain = name.replace(" Karras", "")
    assert make_scheduler(plain, SD15_SCHEDULER_CONFIG).config.use_karras_sigmas is False


def test_karras_from_base_config_does_not_leak_into_plain_names() -> None:
    config = dict(
        DPMSolverMultistepScheduler(use_karras_sigmas=True, algorithm_type="sde-dpmsolver++").config
    )
    euler = make_scheduler("Euler", config)
    assert isinstance(euler, EulerDiscreteScheduler) and euler.config.use_karras_sigmas is False
    assert make_scheduler("DPM++ 2M", config).config.algorithm_type == "dpmsolver++"


def test_other_sigma_schedules_in_the_base_config_do_not_clash_with_karras() -> None:
    config = {**SD15_SCHEDULER_CONFIG, "use_beta_sigmas": True}
    for name in SAMPLER_NAMES:
        scheduler = make_scheduler(name, config)
        assert not getattr(scheduler.config, "use_beta_sigmas", False), name


def test_sde_variants_pick_the_sde_algorithms() -> None:
    assert make_scheduler("DPM++ 2M SDE", SD15_SCHEDULER_CONFIG).config.algorithm_type == "sde-dpmsolver++"
    assert isinstance(make_scheduler("DPM++ SDE Karras", SD15_SCHEDULER_CONFIG), DPMSolverSDEScheduler)


def test_dpmpp_sde_noise_seed_makes_it_reproducible() -> None:
    _, first = _sample("DPM++ SDE", dict(SD15_SCHEDULER_CONFIG))
    _, second = _sample("DPM++ SDE", dict(SD15_SCHEDULER_CONFIG))
    assert torch.equal(first, second)


def test_names_match_case_insensitively_and_class_names_work() -> None:
    assert resolve_sampler("euler A").name == "Euler a"
    assert resolve_sampler("dpm++ 2m  karras").name == "DPM++ 2M Karras"
    assert scheduler_class("EulerDiscreteScheduler") is EulerDiscreteScheduler
    assert scheduler_class("eulerdiscretescheduler") is EulerDiscreteScheduler


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_class_name_in_the_table_is_a_scheduler_of_that_name(name: str) -> None:
    """The torch-free table names classes as text; each must be the scheduler class of that name."""
    cls = scheduler_class(name)
    assert issubclass(cls, SchedulerMixin) and cls.__name__ == resolve_sampler(name).class_name


def test_unknown_sampler_error_lists_every_valid_name() -> None:
    with pytest.raises(FlipbookError) as info:
        resolve_sampler("DPM fast")
    error = info.value
    assert error.field == "sampler" and error.value == "DPM fast"
    for name in ALL_NAMES:
        assert name in error.allowed
    assert "'DPM fast'" in str(error)


def test_ancestral_and_stochastic_flags() -> None:
    assert is_ancestral("Euler a") and is_ancestral("DPM2 a Karras") and is_ancestral("euler a")
    assert is_ancestral("EulerAncestralDiscreteScheduler")
    assert not is_ancestral("Euler") and not is_ancestral("DPM++ 2M SDE")
    assert is_stochastic("DPM++ 2M SDE") and is_stochastic("Euler a") and is_stochastic("DDPM")
    assert not is_stochastic("DDIM") and not is_stochastic("DPM++ 2M Karras")
    # a class named directly is ancestral/stochastic when every A1111 sampler on it is
    assert is_ancestral("KDPM2AncestralDiscreteScheduler") and not is_ancestral("DPMSolverSDEScheduler")
    assert is_stochastic("DPMSolverSDEScheduler") and is_stochastic("LCMScheduler")
    assert not is_stochastic("DPMSolverMultistepScheduler") and not is_stochastic("EulerDiscreteScheduler")
    with pytest.raises(FlipbookError):
        is_ancestral("nope")


def test_sampler_names_cover_the_a1111_list() -> None:
    expected = {
        "Euler", "Euler a", "Heun", "LMS", "LMS Karras", "DDIM", "PLMS", "DPM2", "DPM2 a", "DPM2 Karras",
        "DPM2 a Karras", "DPM++ 2S a", "DPM++ 2S a Karras", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ 2M SDE",
        "DPM++ 2M SDE Karras", "DPM++ SDE", "DPM++ SDE Karras", "UniPC", "DEIS", "LCM", "DDPM",
        "Euler SGM Uniform", "Euler a SGM Uniform", "DDIM SGM Uniform",  # the distilled presets' samplers
    }  # fmt: skip
    assert set(SAMPLER_NAMES) == expected

"""A diffusers scheduler for k-diffusion's ``sample_dpmpp_2s_ancestral`` (A1111's "DPM++ 2S a").

diffusers has no counterpart of this sampler, so flipbook brings its own. The algorithm, per step from
``sigma = sigmas[i]`` to ``sigma_next = sigmas[i + 1]`` (with ``t = -log(sigma)``, the log-SNR time):

1. ``denoised = D(x, sigma)``; ``sigma_down, sigma_up = get_ancestral_step(sigma, sigma_next, eta=1)``.
2. If ``sigma_down == 0`` (only on the last step, ``sigma_next == 0``): one Euler step to ``sigma_down``.
3. Otherwise one DPM-Solver++(2S) step from ``sigma`` to ``sigma_down`` through the log-time midpoint
   ``s = t + h / 2`` (``h = t_next - t``, ``t_next = -log(sigma_down)``)::

       x_2 = (sigma(s) / sigma(t)) * x - expm1(-h / 2) * denoised
       denoised_2 = D(x_2, sigma(s))
       x = (sigma(t_next) / sigma(t)) * x - expm1(-h) * denoised_2

4. If ``sigma_next > 0``: ``x = x + noise * sigma_up`` (fresh noise from the step's generator).

With ``eta = 1``, ``sigma_down = sigma_next**2 / sigma``, so the midpoint ``sigma(s) = sqrt(sigma * sigma_down)``
is ``sigma_next`` itself: a step's second evaluation runs at the next step's noise level (and timestep), on
a different sample. The first half-step is the same as DPM2 a's (an Euler step to that midpoint); the two
samplers differ in the second half, where DPM++ moves x along the exponential integrator with
``denoised_2`` rather than along ``d_2 = (x_2 - denoised_2) / sigma_mid``.

Like diffusers' :class:`~diffusers.KDPM2AncestralDiscreteScheduler` (two model evaluations per step as
well), the two evaluations are separate entries of ``timesteps``:
``[t_0, t_mid_0, t_1, t_mid_1, ..., t_mid_{n-2}, t_{n-1}]`` (the last step is a single Euler evaluation),
so ``order = 2`` and img2img's ``timesteps[t_start * order:]`` with ``set_begin_index(t_start * order)`` start
at a step boundary. ``sigmas`` lists the noise level of each evaluation in the same layout, then 0, so
``add_noise`` and ``scale_model_input`` read the right level for whichever evaluation comes next.

Differences from diffusers' k-diffusion ports, in favour of k-diffusion: timesteps of Karras sigmas are not
rounded (k-diffusion's ``CompVisDenoiser`` hands the UNet fractional timesteps, as diffusers' Euler does),
and ``step`` works in float32 and draws its noise in float32 so a half-precision run draws the same noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import KDPM2AncestralDiscreteScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_k_dpm_2_ancestral_discrete import betas_for_alpha_bar
from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils import BaseOutput, is_scipy_available
from diffusers.utils.torch_utils import randn_tensor

_KDPM2A = KDPM2AncestralDiscreteScheduler


@dataclass
class DPMSolverPlusPlus2SAncestralSchedulerOutput(BaseOutput):
    """``prev_sample``: the next model input; ``pred_original_sample``: this evaluation's denoised x0."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class DPMSolverPlusPlus2SAncestralScheduler(SchedulerMixin, ConfigMixin):
    """Ancestral sampling with DPM-Solver++(2S) second-order steps (k-diffusion ``sample_dpmpp_2s_ancestral``).

    The config keys are those of :class:`~diffusers.KDPM2AncestralDiscreteScheduler`, so ``from_config`` on
    a Stable Diffusion scheduler config works: betas (``beta_start``, ``beta_end``, ``beta_schedule``,
    ``trained_betas``), ``prediction_type`` (``epsilon``, ``v_prediction`` or ``sample``),
    ``timestep_spacing`` (``linspace``, ``leading``, ``trailing``) with ``steps_offset``, and the sigma
    schedule (``use_karras_sigmas``, ``use_exponential_sigmas``, ``use_beta_sigmas``; at most one).
    ``eta`` is k-diffusion's default 1 (A1111's default "Eta for ancestral samplers").
    """

    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    order = 2

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "linear",
        trained_betas: np.ndarray | list[float] | None = None,
        use_karras_sigmas: bool = False,
        use_exponential_sigmas: bool = False,
        use_beta_sigmas: bool = False,
        prediction_type: str = "epsilon",
        timestep_spacing: str = "linspace",
        steps_offset: int = 0,
    ) -> None:
        if use_beta_sigmas and not is_scipy_available():
            raise ImportError("Make sure to install scipy if you want to use beta sigmas.")
        if sum([use_beta_sigmas, use_exponential_sigmas, use_karras_sigmas]) > 1:
            raise ValueError(
                "Only one of `use_beta_sigmas`, `use_exponential_sigmas`, `use_karras_sigmas` can be used."
            )
        if trained_betas is not None:
            self.betas = torch.tensor(trained_betas, dtype=torch.float32)
        elif beta_schedule == "linear":
            self.betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
        elif beta_schedule == "scaled_linear":
            self.betas = (
                torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
            )
        elif beta_schedule == "squaredcos_cap_v2":
            self.betas = betas_for_alpha_bar(num_train_timesteps)
        else:
            raise NotImplementedError(f"{beta_schedule} is not implemented for {self.__class__}")

        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)

        self.num_inference_steps: int | None = None
        self.set_timesteps(num_train_timesteps, None, num_train_timesteps)
        self.num_inference_steps = None

    # ------------------------------------------------------------------------------------------ bookkeeping

    @property
    def init_noise_sigma(self) -> torch.Tensor:
        """The standard deviation of the initial noise (as diffusers' k-diffusion ports define it)."""
        if self.config.timestep_spacing in ["linspace", "trailing"]:
            return self.sigmas.max()
        return (self.sigmas.max() ** 2 + 1) ** 0.5

    @property
    def step_index(self) -> int | None:
        """Index into ``timesteps`` / ``sigmas`` of the next evaluation; +1 after each ``step``."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """The first index, set by pipelines through :meth:`set_begin_index` (img2img)."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at ``timesteps[begin_index]``; must be a step boundary (an even index)."""
        self._begin_index = begin_index

    @property
    def state_in_first_order(self) -> bool:
        """Whether the next ``step`` is a step's first evaluation (at ``sigmas[i]``), not its midpoint."""
        return self.sample is None

    index_for_timestep = _KDPM2A.index_for_timestep
    _init_step_index = _KDPM2A._init_step_index
    _sigma_to_t = _KDPM2A._sigma_to_t
    _convert_to_karras = _KDPM2A._convert_to_karras
    _convert_to_exponential = _KDPM2A._convert_to_exponential
    _convert_to_beta = _KDPM2A._convert_to_beta
    add_noise = _KDPM2A.add_noise

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    # ------------------------------------------------------------------------------------------ schedule

    def set_timesteps(
        self,
        num_inference_steps: int,
        device: str | torch.device | None = None,
        num_train_timesteps: int | None = None,
    ) -> None:
        """Set the ``num_inference_steps`` steps (``2 * num_inference_steps - 1`` model evaluations)."""
        self.num_inference_steps = num_inference_steps
        num_train_timesteps = num_train_timesteps or self.config.num_train_timesteps

        spacing = self.config.timestep_spacing
        if spacing == "linspace":
            timesteps = np.linspace(0, num_train_timesteps - 1, num_inference_steps, dtype=np.float32)[
                ::-1
            ].copy()
        elif spacing == "leading":
            step_ratio = num_train_timesteps // num_inference_steps
            timesteps = (
                (np.arange(0, num_inference_steps) * step_ratio).round()[::-1].copy().astype(np.float32)
            )
            timesteps += self.config.steps_offset
        elif spacing == "trailing":
            step_ratio = num_train_timesteps / num_inference_steps
            timesteps = np.arange(num_train_timesteps, 0, -step_ratio).round().copy().astype(np.float32)
            timesteps -= 1
        else:
            raise ValueError(
                f"{spacing} is not supported. Please make sure to choose one of 'linspace', 'leading' or 'trailing'."
            )

        train_sigmas = np.array(((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5)
        log_sigmas = np.log(train_sigmas)
        sigmas = np.interp(timesteps, np.arange(0, len(train_sigmas)), train_sigmas)

        convert = None
        if self.config.use_karras_sigmas:
            convert = self._convert_to_karras
        elif self.config.use_exponential_sigmas:
            convert = self._convert_to_exponential
        elif self.config.use_beta_sigmas:
            convert = self._convert_to_beta
        if convert is not None:
            sigmas = convert(in_sigmas=sigmas, num_inference_steps=num_inference_steps)
            timesteps = self._sigma_to_t(np.asarray(sigmas), log_sigmas)
        self.log_sigmas = torch.from_numpy(log_sigmas).to(device)

        # One entry per step i: sigma_i -> sigma_{i+1}, then k-diffusion's get_ancestral_step(eta=1).
        step_sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
        sigma_from, sigma_to = step_sigmas[:-1], step_sigmas[1:]
        sigmas_up = torch.minimum(
            sigma_to, (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
        )
        sigmas_down = (sigma_to**2 - sigmas_up**2).clamp_min(0) ** 0.5
        # In float32 the difference above can round to 0 for a huge step; use the exact closed form there so
        # only the last step (sigma_to == 0) is an Euler step, as the timestep layout assumes.
        sigmas_down = torch.where(sigmas_down > 0, sigmas_down, sigma_to**2 / sigma_from)

        # The DPM-Solver++(2S) midpoint of each two-evaluation step (all but the last), as step() computes it.
        t, t_next = -sigma_from[:-1].log(), -sigmas_down[:-1].log()
        mid_sigmas = (-(t + 0.5 * (t_next - t))).exp()
        mid_timesteps = self._sigma_to_t(mid_sigmas.numpy().astype(np.float64), log_sigmas)

        timesteps = torch.from_numpy(np.asarray(timesteps, dtype=np.float32))
        mid_timesteps = torch.from_numpy(np.asarray(mid_timesteps, dtype=np.float32)).reshape(-1)
        interleaved = torch.stack([timesteps[:-1], mid_timesteps], dim=1).flatten()
        self.timesteps = torch.cat([interleaved, timesteps[-1:]]).to(device)
        interleaved = torch.stack([step_sigmas[:-2], mid_sigmas], dim=1).flatten()
        self.sigmas = torch.cat([interleaved, step_sigmas[-2:]])  # kept on the CPU, as diffusers does

        self._step_sigmas = step_sigmas
        self._sigmas_down = sigmas_down
        self._sigmas_up = sigmas_up
        self.sample: torch.Tensor | None = None
        self._step_index: int | None = None
        self._begin_index: int | None = None

    # ------------------------------------------------------------------------------------------ sampling

    def scale_model_input(self, sample: torch.Tensor, timestep: float | torch.Tensor) -> torch.Tensor:
        """Divide by ``sqrt(sigma^2 + 1)`` for this evaluation's sigma (k-diffusion's ``c_in``)."""
        if self.step_index is None:
            self._init_step_index(timestep)
        sigma = self.sigmas[self.step_index]
        return sample / ((sigma**2 + 1) ** 0.5)

    def _denoised(
        self, model_output: torch.Tensor, sample: torch.Tensor, sigma: torch.Tensor
    ) -> torch.Tensor:
        """The model's x0 estimate at ``sigma`` (k-diffusion's CompVis(V)Denoiser output)."""
        prediction_type = self.config.prediction_type
        if prediction_type == "epsilon":
            return sample - sigma * model_output
        if prediction_type == "v_prediction":
            return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + sample / (sigma**2 + 1)
        if prediction_type == "sample":
            return model_output
        raise ValueError(
            f"prediction_type given as {prediction_type} must be one of `epsilon`, `v_prediction` or `sample`"
        )

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        return_dict: bool = True,
    ) -> DPMSolverPlusPlus2SAncestralSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One model evaluation's update: a step's first half (to the midpoint, or the final Euler step), or
        its second half (the DPM-Solver++(2S) update plus the ancestral noise, drawn from ``generator``)."""
        if self.step_index is None:
            self._init_step_index(timestep)
        index = self.step_index
        step = index // 2
        sigma = self.sigmas[index]
        dtype = model_output.dtype
        model_output = model_output.to(torch.float32)
        sample = sample.to(torch.float32)
        denoised = self._denoised(model_output, sample, sigma)

        if self.state_in_first_order:
            if index % 2:
                raise ValueError(
                    f"step index {index} is a step's midpoint; begin at an even index (set_begin_index)"
                )
            sigma_down = self._sigmas_down[step]
            if self._step_sigmas[step + 1] == 0:
                # Euler method (k-diffusion: sigma_down == 0); the last step, so no noise follows.
                derivative = (sample - denoised) / sigma
                prev_sample = sample + derivative * (sigma_down - sigma)
            else:
                t, t_next = -sigma.log(), -sigma_down.log()
                h = t_next - t
                s = t + 0.5 * h
                prev_sample = ((-s).exp() / (-t).exp()) * sample - (-h * 0.5).expm1() * denoised
                self.sample = sample
        else:
            x = self.sample
            self.sample = None
            sigma_from = self._step_sigmas[step]
            t, t_next = -sigma_from.log(), -self._sigmas_down[step].log()
            h = t_next - t
            prev_sample = ((-t_next).exp() / (-t).exp()) * x - (-h).expm1() * denoised
            noise = randn_tensor(
                model_output.shape, dtype=torch.float32, device=model_output.device, generator=generator
            )
            prev_sample = prev_sample + noise * self._sigmas_up[step]

        self._step_index += 1
        prev_sample = prev_sample.to(dtype)
        denoised = denoised.to(dtype)
        if not return_dict:
            return prev_sample, denoised
        return DPMSolverPlusPlus2SAncestralSchedulerOutput(
            prev_sample=prev_sample, pred_original_sample=denoised
        )

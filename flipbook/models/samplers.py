"""AUTOMATIC1111 sampler names mapped onto diffusers schedulers.

Users know samplers by their A1111 names ("DPM++ 2M Karras"); diffusers knows scheduler classes plus init
options. The mapping follows the table in the diffusers scheduler overview ("A1111/k-diffusion" column),
with one deliberate difference: "DPM++ SDE" uses :class:`DPMSolverSDEScheduler`, which is a port of
k-diffusion's ``sample_dpmpp_sde`` (the sampler A1111 runs), rather than the deterministic single-step solver
the table suggests. "DPM++ 2S a" (k-diffusion's ``sample_dpmpp_2s_ancestral``) has no diffusers counterpart,
so flipbook brings its own scheduler for it (:mod:`flipbook.models.dpmpp_2s_ancestral`). "DPM fast" and
"DPM adaptive" have none and are absent.

Every scheduler is built ``from_config`` on the model's own scheduler config, so the betas, the
``prediction_type`` (epsilon / v_prediction) and the timestep spacing of the checkpoint carry over. Options
that pick the sampler variant (Karras sigmas, the DPM-Solver algorithm) are always set explicitly, so a base
config that happens to come from, say, a Karras scheduler does not leak Karras sigmas into plain "Euler".
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSDEScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LCMScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from flipbook.errors import FlipbookError
from flipbook.models.dpmpp_2s_ancestral import DPMSolverPlusPlus2SAncestralScheduler


@dataclass(frozen=True)
class SamplerSpec:
    """How to build one sampler: the diffusers class and the init options that select the variant.

    ``ancestral`` marks A1111's "a" samplers (fresh noise each step, so results never converge with more
    steps); ``stochastic`` is wider: any sampler whose steps draw noise (ancestral, SDE, DDPM, LCM), which is
    what decides whether per-step noise must be seeded for frames to be reproducible.
    """

    name: str
    cls: type[SchedulerMixin]
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    ancestral: bool = False
    stochastic: bool = False


# The sigma-schedule options exclude each other (diffusers raises if two are on), so all are set explicitly.
_KARRAS = {"use_karras_sigmas": True, "use_exponential_sigmas": False, "use_beta_sigmas": False}
_NO_KARRAS = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}
_DPMPP = {"algorithm_type": "dpmsolver++", "solver_order": 2}
_DPMPP_SDE = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}


def _spec(
    name: str,
    cls: type[SchedulerMixin],
    *extra: Mapping[str, Any],
    ancestral: bool = False,
    stochastic: bool = False,
) -> SamplerSpec:
    kwargs: dict[str, Any] = {}
    for part in extra:
        kwargs.update(part)
    return SamplerSpec(name, cls, MappingProxyType(kwargs), ancestral, stochastic or ancestral)


_A1111: tuple[SamplerSpec, ...] = (
    _spec("Euler", EulerDiscreteScheduler, _NO_KARRAS),
    _spec("Euler a", EulerAncestralDiscreteScheduler, ancestral=True),
    _spec("Heun", HeunDiscreteScheduler, _NO_KARRAS),
    _spec("LMS", LMSDiscreteScheduler, _NO_KARRAS),
    _spec("LMS Karras", LMSDiscreteScheduler, _KARRAS),
    _spec("DDIM", DDIMScheduler),
    _spec("PLMS", PNDMScheduler, {"skip_prk_steps": True}),
    _spec("DPM2", KDPM2DiscreteScheduler, _NO_KARRAS),
    _spec("DPM2 a", KDPM2AncestralDiscreteScheduler, _NO_KARRAS, ancestral=True),
    _spec("DPM2 Karras", KDPM2DiscreteScheduler, _KARRAS),
    _spec("DPM2 a Karras", KDPM2AncestralDiscreteScheduler, _KARRAS, ancestral=True),
    _spec("DPM++ 2S a", DPMSolverPlusPlus2SAncestralScheduler, _NO_KARRAS, ancestral=True),
    _spec("DPM++ 2S a Karras", DPMSolverPlusPlus2SAncestralScheduler, _KARRAS, ancestral=True),
    _spec("DPM++ 2M", DPMSolverMultistepScheduler, _DPMPP, _NO_KARRAS),
    _spec("DPM++ 2M Karras", DPMSolverMultistepScheduler, _DPMPP, _KARRAS),
    _spec("DPM++ 2M SDE", DPMSolverMultistepScheduler, _DPMPP_SDE, _NO_KARRAS, stochastic=True),
    _spec("DPM++ 2M SDE Karras", DPMSolverMultistepScheduler, _DPMPP_SDE, _KARRAS, stochastic=True),
    _spec("DPM++ SDE", DPMSolverSDEScheduler, _NO_KARRAS, stochastic=True),
    _spec("DPM++ SDE Karras", DPMSolverSDEScheduler, _KARRAS, stochastic=True),
    _spec("UniPC", UniPCMultistepScheduler, _NO_KARRAS),
    _spec("DEIS", DEISMultistepScheduler, _NO_KARRAS),
    _spec("LCM", LCMScheduler, stochastic=True),
    _spec("DDPM", DDPMScheduler, stochastic=True),
)

SAMPLER_NAMES: tuple[str, ...] = tuple(spec.name for spec in _A1111)
"""The A1111 sampler names, in A1111's menu order as far as it has them."""

_ANCESTRAL_CLASSES = (
    EulerAncestralDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    DPMSolverPlusPlus2SAncestralScheduler,
)
_CLASS_SPECS: tuple[SamplerSpec, ...] = tuple(
    _spec(
        cls.__name__,
        cls,
        ancestral=cls in _ANCESTRAL_CLASSES,
        stochastic=cls in (DPMSolverSDEScheduler, LCMScheduler, DDPMScheduler),
    )
    for cls in dict.fromkeys(spec.cls for spec in _A1111)
)
SCHEDULER_CLASS_NAMES: tuple[str, ...] = tuple(spec.name for spec in _CLASS_SPECS)
"""diffusers class names also accepted as sampler names; built with the base config unchanged."""

_BY_NAME: dict[str, SamplerSpec] = {spec.name: spec for spec in (*_A1111, *_CLASS_SPECS)}
_BY_FOLDED: dict[str, SamplerSpec] = {name.casefold(): spec for name, spec in _BY_NAME.items()}


def _allowed() -> str:
    return f"one of: {', '.join(SAMPLER_NAMES)}; or a diffusers scheduler class: {', '.join(SCHEDULER_CLASS_NAMES)}"


def resolve_sampler(name: str) -> SamplerSpec:
    """Look a sampler up by exact name, then case-insensitively (users type "euler A" as often as not)."""
    if not isinstance(name, str):
        raise FlipbookError("sampler", name, _allowed())
    spec = _BY_NAME.get(name) or _BY_FOLDED.get(" ".join(name.split()).casefold())
    if spec is None:
        raise FlipbookError("sampler", name, _allowed())
    return spec


def _accepted(cls: type[SchedulerMixin], options: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the options this class's __init__ takes.

    A model's config carries options of its own scheduler class (PNDM's ``skip_prk_steps``) that other classes
    ignore anyway but log a warning about on every build; and an older diffusers may lack a variant option.
    """
    params = inspect.signature(cls.__init__).parameters
    return {key: value for key, value in options.items() if key in params}


def make_scheduler(
    name: str, base_config: Mapping[str, Any], *, noise_seed: int | Sequence[int] | None = None
) -> SchedulerMixin:
    """A new scheduler for ``name`` on the model's scheduler config; never shared, as schedulers hold state.

    ``noise_seed`` seeds the Brownian-tree noise of "DPM++ SDE" (:class:`DPMSolverSDEScheduler`), which draws
    its noise from its own sampler rather than the pipeline's generator; without it that sampler is not
    reproducible. Other schedulers ignore it. A sequence gives one seed per row of the batch the scheduler
    steps: every row then gets its own Brownian tree, so a row's noise does not depend on the rows beside it
    (one int seeds a single tree over the whole batch, as diffusers' pipelines do).
    """
    spec = resolve_sampler(name)
    kwargs = dict(spec.kwargs)
    if noise_seed is not None and spec.cls is DPMSolverSDEScheduler:
        kwargs["noise_sampler_seed"] = _seed_value(noise_seed)
    return spec.cls.from_config(_accepted(spec.cls, base_config), **_accepted(spec.cls, kwargs))


def _seed_value(noise_seed: int | Sequence[int]) -> int | list[int]:
    """An int, or a list of ints (diffusers' BatchedBrownianTree takes one tree per list entry)."""
    if isinstance(noise_seed, Sequence):
        return [int(seed) for seed in noise_seed]
    return int(noise_seed)


def is_ancestral(name: str) -> bool:
    """Whether ``name`` is one of A1111's ancestral ("a") samplers, which add fresh noise at every step."""
    return resolve_sampler(name).ancestral


def is_stochastic(name: str) -> bool:
    """Whether ``name`` draws noise during sampling (ancestral, SDE, DDPM, LCM), so its noise must be seeded."""
    return resolve_sampler(name).stochastic

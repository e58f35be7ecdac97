"""The sampler names flipbook knows, as data: no diffusers, no torch.

Validating a spec checks its sampler names, and that must stay fast (no torch import), so the table of names
lives here (the spec imports it) and :mod:`flipbook.samplers.schedulers` builds diffusers schedulers from it.
Each A1111 name maps to a scheduler class, named as a string (a diffusers class, or flipbook's own
:class:`~flipbook.samplers.dpmpp_2s_ancestral.DPMSolverPlusPlus2SAncestralScheduler`), and the init options
that select the variant. See :mod:`flipbook.samplers.schedulers` for why each name maps where it does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from flipbook.errors import FlipbookError


@dataclass(frozen=True)
class SamplerSpec:
    """How to build one sampler: the scheduler class (by name) and the init options that select the variant.

    ``ancestral`` marks A1111's "a" samplers (fresh noise each step, so results never converge with more
    steps); ``stochastic`` is wider: any sampler whose steps draw noise (ancestral, SDE, DDPM, LCM), which is
    what decides whether per-step noise must be seeded for frames to be reproducible.
    """

    name: str
    class_name: str
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    ancestral: bool = False
    stochastic: bool = False


# The sigma-schedule options exclude each other (diffusers raises if two are on), so all are set explicitly.
_KARRAS = {"use_karras_sigmas": True, "use_exponential_sigmas": False, "use_beta_sigmas": False}
_NO_KARRAS = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}
_DPMPP = {"algorithm_type": "dpmsolver++", "solver_order": 2}
_DPMPP_SDE = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}
_TRAILING = {"timestep_spacing": "trailing"}


def _spec(
    name: str,
    class_name: str,
    *extra: Mapping[str, Any],
    ancestral: bool = False,
    stochastic: bool = False,
) -> SamplerSpec:
    kwargs: dict[str, Any] = {}
    for part in extra:
        kwargs.update(part)
    return SamplerSpec(name, class_name, MappingProxyType(kwargs), ancestral, stochastic or ancestral)


_A1111: tuple[SamplerSpec, ...] = (
    _spec("Euler", "EulerDiscreteScheduler", _NO_KARRAS),
    _spec("Euler a", "EulerAncestralDiscreteScheduler", ancestral=True),
    _spec("Heun", "HeunDiscreteScheduler", _NO_KARRAS),
    _spec("LMS", "LMSDiscreteScheduler", _NO_KARRAS),
    _spec("LMS Karras", "LMSDiscreteScheduler", _KARRAS),
    _spec("DDIM", "DDIMScheduler"),
    _spec("PLMS", "PNDMScheduler", {"skip_prk_steps": True}),
    _spec("DPM2", "KDPM2DiscreteScheduler", _NO_KARRAS),
    _spec("DPM2 a", "KDPM2AncestralDiscreteScheduler", _NO_KARRAS, ancestral=True),
    _spec("DPM2 Karras", "KDPM2DiscreteScheduler", _KARRAS),
    _spec("DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", _KARRAS, ancestral=True),
    _spec("DPM++ 2S a", "DPMSolverPlusPlus2SAncestralScheduler", _NO_KARRAS, ancestral=True),
    _spec("DPM++ 2S a Karras", "DPMSolverPlusPlus2SAncestralScheduler", _KARRAS, ancestral=True),
    _spec("DPM++ 2M", "DPMSolverMultistepScheduler", _DPMPP, _NO_KARRAS),
    _spec("DPM++ 2M Karras", "DPMSolverMultistepScheduler", _DPMPP, _KARRAS),
    _spec("DPM++ 2M SDE", "DPMSolverMultistepScheduler", _DPMPP_SDE, _NO_KARRAS, stochastic=True),
    _spec("DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler", _DPMPP_SDE, _KARRAS, stochastic=True),
    _spec("DPM++ SDE", "DPMSolverSDEScheduler", _NO_KARRAS, stochastic=True),
    _spec("DPM++ SDE Karras", "DPMSolverSDEScheduler", _KARRAS, stochastic=True),
    _spec("UniPC", "UniPCMultistepScheduler", _NO_KARRAS),
    _spec("DEIS", "DEISMultistepScheduler", _NO_KARRAS),
    _spec("LCM", "LCMScheduler", stochastic=True),
    # "SGM Uniform" (A1111's and ComfyUI's schedule type): steps evenly spaced from the last training step,
    # diffusers' timestep_spacing "trailing"; what distilled models (Turbo, Lightning, Hyper-SD) are sampled with.
    _spec("Euler SGM Uniform", "EulerDiscreteScheduler", _NO_KARRAS, _TRAILING),
    _spec("Euler a SGM Uniform", "EulerAncestralDiscreteScheduler", _TRAILING, ancestral=True),
    _spec("DDIM SGM Uniform", "DDIMScheduler", _TRAILING),
    _spec("DDPM", "DDPMScheduler", stochastic=True),
)

SAMPLER_NAMES: tuple[str, ...] = tuple(spec.name for spec in _A1111)
"""The A1111 sampler names, in A1111's menu order as far as it has them."""


def _class_spec(class_name: str) -> SamplerSpec:
    """A scheduler class named directly, built with the base config unchanged: ancestral (or stochastic) when
    every A1111 sampler on that class is, so DPMSolverMultistepScheduler (2M and 2M SDE) is neither."""
    uses = [spec for spec in _A1111 if spec.class_name == class_name]
    return _spec(
        class_name,
        class_name,
        ancestral=all(spec.ancestral for spec in uses),
        stochastic=all(spec.stochastic for spec in uses),
    )


_CLASS_SPECS: tuple[SamplerSpec, ...] = tuple(
    _class_spec(name) for name in dict.fromkeys(spec.class_name for spec in _A1111)
)
SCHEDULER_CLASS_NAMES: tuple[str, ...] = tuple(spec.name for spec in _CLASS_SPECS)
"""Scheduler class names also accepted as sampler names; built with the base config unchanged."""

_BY_NAME: dict[str, SamplerSpec] = {spec.name: spec for spec in (*_A1111, *_CLASS_SPECS)}
_BY_FOLDED: dict[str, SamplerSpec] = {name.casefold(): spec for name, spec in _BY_NAME.items()}


def allowed_samplers() -> str:
    """What a sampler may be, for error messages."""
    return f"one of: {', '.join(SAMPLER_NAMES)}; or a diffusers scheduler class: {', '.join(SCHEDULER_CLASS_NAMES)}"


def resolve_sampler(name: str) -> SamplerSpec:
    """Look a sampler up by exact name, then case-insensitively (users type "euler A" as often as not)."""
    if not isinstance(name, str):
        raise FlipbookError("sampler", name, allowed_samplers())
    spec = _BY_NAME.get(name) or _BY_FOLDED.get(" ".join(name.split()).casefold())
    if spec is None:
        raise FlipbookError("sampler", name, allowed_samplers())
    return spec


def is_ancestral(name: str) -> bool:
    """Whether ``name`` is one of A1111's ancestral ("a") samplers, which add fresh noise at every step."""
    return resolve_sampler(name).ancestral


def is_stochastic(name: str) -> bool:
    """Whether ``name`` draws noise during sampling (ancestral, SDE, DDPM, LCM), so its noise must be seeded."""
    return resolve_sampler(name).stochastic

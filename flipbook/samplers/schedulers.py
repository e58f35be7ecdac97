"""AUTOMATIC1111 sampler names mapped onto diffusers schedulers.

Users know samplers by their A1111 names ("DPM++ 2M Karras"); diffusers knows scheduler classes plus init
options. The mapping follows the table in the diffusers scheduler overview ("A1111/k-diffusion" column),
with one deliberate difference: "DPM++ SDE" uses :class:`DPMSolverSDEScheduler`, which is a port of
k-diffusion's ``sample_dpmpp_sde`` (the sampler A1111 runs), rather than the deterministic single-step solver
the table suggests. "DPM++ 2S a" (k-diffusion's ``sample_dpmpp_2s_ancestral``) has no diffusers counterpart,
so flipbook brings its own scheduler for it (:mod:`flipbook.samplers.dpmpp_2s_ancestral`). "DPM fast" and
"DPM adaptive" have none and are absent.

The table itself (names, class names, options) is :mod:`flipbook.samplers.names`, which imports neither
diffusers nor torch, so validating a spec stays fast; this module turns its entries into schedulers.

Every scheduler is built ``from_config`` on the model's own scheduler config, so the betas, the
``prediction_type`` (epsilon / v_prediction) and the timestep spacing of the checkpoint carry over. Options
that pick the sampler variant (Karras sigmas, the DPM-Solver algorithm) are always set explicitly, so a base
config that happens to come from, say, a Karras scheduler does not leak Karras sigmas into plain "Euler".
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
from collections.abc import Mapping, Sequence
from typing import Any

import diffusers
from diffusers import DPMSolverSDEScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from flipbook.samplers.dpmpp_2s_ancestral import DPMSolverPlusPlus2SAncestralScheduler
from flipbook.samplers.names import (
    SAMPLER_NAMES,
    SCHEDULER_CLASS_NAMES,
    SamplerSpec,
    is_ancestral,
    is_stochastic,
    resolve_sampler,
)

__all__ = [
    "SAMPLER_NAMES",
    "SCHEDULER_CLASS_NAMES",
    "SamplerSpec",
    "is_ancestral",
    "is_stochastic",
    "make_scheduler",
    "resolve_sampler",
    "scheduler_class",
]

_OWN_SCHEDULERS: dict[str, type[SchedulerMixin]] = {
    cls.__name__: cls for cls in (DPMSolverPlusPlus2SAncestralScheduler,)
}
"""Schedulers flipbook brings itself; every other class name in the table is a diffusers class."""


def scheduler_class(name: str) -> type[SchedulerMixin]:
    """The scheduler class behind a sampler name (see :mod:`flipbook.samplers.names`)."""
    class_name = resolve_sampler(name).class_name
    return _OWN_SCHEDULERS.get(class_name) or getattr(diffusers, class_name)


def _accepted(cls: type[SchedulerMixin], options: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the options this class's __init__ takes.

    A model's config carries options of its own scheduler class (PNDM's ``skip_prk_steps``) that other classes
    ignore anyway but log a warning about on every build; and an older diffusers may lack a variant option.
    """
    params = _init_parameters(cls)
    return {key: value for key, value in options.items() if key in params}


@functools.cache
def _init_parameters(cls: type[SchedulerMixin]) -> frozenset[str]:
    """The names ``cls.__init__`` takes (read once per class: a signature costs milliseconds, and a render
    makes a scheduler per frame)."""
    return frozenset(inspect.signature(cls.__init__).parameters)


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
    cls = scheduler_class(name)
    kwargs = dict(resolve_sampler(name).kwargs)
    if noise_seed is not None and cls is DPMSolverSDEScheduler:
        kwargs["noise_sampler_seed"] = _seed_value(noise_seed)
        return cls.from_config(_accepted(cls, base_config), **_accepted(cls, kwargs))  # one per seed
    config, options = _accepted(cls, base_config), _accepted(cls, kwargs)
    try:
        key = json.dumps([config, options], sort_keys=True)
    except TypeError:  # a value JSON cannot hold: built from the config, as always
        return cls.from_config(config, **options)
    return copy.deepcopy(_unused_scheduler(cls, key))


@functools.lru_cache(maxsize=32)
def _unused_scheduler(cls: type[SchedulerMixin], key: str) -> SchedulerMixin:
    """A scheduler of ``cls`` built from the JSON ``[config, options]`` and never stepped: copied for each use
    (``from_config`` reads ``inspect.signature`` of the class and its parents: milliseconds, and a render
    makes a scheduler per frame; a copy is a fraction of that)."""
    config, options = json.loads(key)
    return cls.from_config(config, **options)


def _seed_value(noise_seed: int | Sequence[int]) -> int | list[int]:
    """An int, or a list of ints (diffusers' BatchedBrownianTree takes one tree per list entry)."""
    if isinstance(noise_seed, Sequence):
        return [int(seed) for seed in noise_seed]
    return int(noise_seed)

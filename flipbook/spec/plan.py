"""The plan: every per-frame value of a spec, resolved and range-checked before any model is loaded.

Schedules become arrays here (Deforum semantics, see ``schedules.py``); each frame's prompt keyframe and seed
are fixed too, so a render, a resume and ``flipbook validate`` all see the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flipbook.errors import FlipbookError
from flipbook.spec.model import ScheduleTable, ScheduleValue, Spec
from flipbook.spec.schedules import ScheduleError, resolve_schedule
from flipbook.spec.seeds import seed_sequence


@dataclass(frozen=True)
class FramePlan:
    index: int
    prompt_key: int
    seed: int
    cfg: float
    strength: float  # Deforum strength: share of the previous frame kept

    @property
    def denoise(self) -> float:
        return round(1.0 - self.strength, 6)


@dataclass(frozen=True)
class Plan:
    frames: tuple[FramePlan, ...]

    def __getitem__(self, index: int) -> FramePlan:
        return self.frames[index]

    def __len__(self) -> int:
        return len(self.frames)


def resolve_value(spec: Spec, field: str, value: ScheduleValue) -> np.ndarray:
    """Per-frame values of one schedule field; problems become a FlipbookError naming the field."""
    schedule, interpolation = value, "linear"
    if isinstance(value, ScheduleTable):
        schedule, interpolation = value.schedule, value.interpolation
    a = spec.animation
    try:
        return resolve_schedule(
            schedule, max_frames=a.max_frames, fps=a.fps, seed=spec.sampling.seed, interpolation=interpolation
        )
    except ScheduleError as error:
        raise FlipbookError(field, schedule, "a valid schedule", detail=str(error)) from None


def build_plan(spec: Spec) -> Plan:
    """The per-frame table for ``spec`` (whose seed must already be chosen, see ``Spec.with_seed``)."""
    if spec.sampling.seed == -1:
        raise ValueError("build_plan needs a chosen seed; call spec.with_seed() first")
    n = spec.animation.max_frames
    cfg = resolve_value(spec, "sampling.cfg", spec.sampling.cfg)
    strength = resolve_value(spec, "animation.strength", spec.animation.strength)
    _check_range("sampling.cfg", cfg, 0.0, 100.0, "a guidance scale from 0 to 100")
    _check_range("animation.strength", strength, 0.0, np.nextafter(1.0, 0.0), "a strength in [0, 1)")
    _check_denoise_steps(spec, strength)
    seeds = _seeds(spec)
    frames = tuple(
        FramePlan(
            index=i,
            prompt_key=spec.prompt_key_at(i),
            seed=seeds[i],
            cfg=float(cfg[i]),
            strength=float(strength[i]),
        )
        for i in range(n)
    )
    return Plan(frames)


def _seeds(spec: Spec) -> list[int]:
    """Per-frame seeds with Deforum's seed behaviours (random draws reproducible from the base seed)."""
    s = spec.sampling
    schedule = None
    if s.seed_behavior == "schedule":
        if s.seed_schedule is None:
            raise FlipbookError("sampling.seed_schedule", None, 'a schedule when seed_behavior = "schedule"')
        schedule = resolve_value(spec, "sampling.seed_schedule", s.seed_schedule)
    return seed_sequence(
        s.seed, spec.animation.max_frames, s.seed_behavior, iter_n=s.seed_iter_n, schedule=schedule
    )


def _check_range(field: str, values: np.ndarray, low: float, high: float, allowed: str) -> None:
    bad = np.flatnonzero((values < low) | (values > high))
    if bad.size:
        frame = int(bad[0])
        raise FlipbookError(field, float(values[frame]), allowed, detail=f"at frame {frame}")


def _check_denoise_steps(spec: Spec, strength: np.ndarray) -> None:
    """img2img runs steps x (1 - strength) steps; every feedback frame needs at least one."""
    steps = spec.sampling.steps
    run = np.floor(steps * np.round(1.0 - strength[1:], 6))
    bad = np.flatnonzero(run < 1)
    if bad.size:
        frame = int(bad[0]) + 1
        raise FlipbookError(
            "animation.strength",
            float(strength[frame]),
            f"at most {1 - 1 / steps:.3g} with sampling.steps {steps}",
            detail=f"at frame {frame} steps x (1 - strength) leaves no denoising step",
        )

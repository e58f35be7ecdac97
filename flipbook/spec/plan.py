"""The plan: every per-frame value of a spec, resolved and range-checked before any model is loaded.

Schedules become arrays here (Deforum semantics, see ``schedules.py``); each frame's prompt keyframe and seed
are fixed too, so a render, a resume and ``flipbook validate`` all see the same table.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from flipbook.errors import FlipbookError
from flipbook.spec.model import ScheduleTable, ScheduleValue, Spec, is_string_schedule
from flipbook.spec.schedules import ScheduleError, resolve_schedule, resolve_string_schedule
from flipbook.spec.seeds import seed_sequence
from flipbook.spec.travel import (
    compose_line_prompt,
    parse_deforum_prompts,
    parse_prompt_lines,
    prompt_at_frames,
)


@dataclass(frozen=True)
class FramePlan:
    index: int
    prompt_key: int  # the keyframe whose prompt is in force
    prompt: str  # with global additions and backtick math evaluated at this frame
    negative_prompt: str
    seed: int
    sampler: str
    cfg: float
    strength: float  # Deforum strength: share of the previous frame kept
    denoise: float  # img2img strength given to the sampler: 1 - strength, at least one step's worth


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
    denoise = _denoise(strength, spec.sampling.steps)
    seeds = _seeds(spec)
    samplers = _samplers(spec)
    keys, positives, negatives = _prompts(spec)
    frames = tuple(
        FramePlan(
            index=i,
            prompt_key=keys[i],
            prompt=positives[i],
            negative_prompt=negatives[i],
            seed=seeds[i],
            sampler=samplers[i],
            cfg=float(cfg[i]),
            strength=float(strength[i]),
            denoise=float(denoise[i]),
        )
        for i in range(n)
    )
    return Plan(frames)


def _prompts(spec: Spec) -> tuple[list[int], list[str], list[str]]:
    """Per frame: the keyframe in force (prompts hold until the next key, the first one back to frame 0, as in
    Deforum 2D/3D), its prompt and its negative, with backtick math evaluated at that frame."""
    n, fps, seed = spec.animation.max_frames, spec.animation.fps, spec.sampling.seed
    keyframes = parse_deforum_prompts(
        _keyframe_table(spec.prompts), max_frames=n, seed=seed,
        positive=spec.positive_prompt, negative=spec.negative_prompt,
    )  # fmt: skip
    starts = sorted(keyframes)
    in_force = [starts[max(0, bisect.bisect_right(starts, i) - 1)] for i in range(n)]
    frames = np.arange(n)

    def per_frame(text: str, field: str) -> list[str]:
        return prompt_at_frames(text, frames, max_f=n - 1, seed=seed, fps=fps, field=field)

    texts = {
        k: (per_frame(p.positive, "prompts"), per_frame(p.negative, "negative_prompt"))
        for k, p in keyframes.items()
    }
    positives = [texts[k][0][i] for i, k in enumerate(in_force)]
    negatives = [texts[k][1][i] for i, k in enumerate(in_force)]
    return in_force, positives, negatives


def _keyframe_table(prompts: dict[str, str] | str) -> dict[str, str]:
    """AnimateDiff-style lines become Deforum-style keyframes (head and tail joined as AnimateDiff does)."""
    if not isinstance(prompts, str):
        return prompts
    head, keys, tail = parse_prompt_lines(prompts, field="prompts")
    if not keys:
        return {"0": head}
    return {str(frame): compose_line_prompt(head, text, tail) for frame, text in keys.items()}


def _samplers(spec: Spec) -> list[str]:
    """Per-frame sampler names: a plain name everywhere, or a Deforum string schedule that holds its values."""
    s, n = spec.sampling, spec.animation.max_frames
    if not is_string_schedule(s.sampler):
        return [s.sampler] * n
    try:
        return resolve_string_schedule(s.sampler, n, seed=s.seed, fps=spec.animation.fps)
    except ScheduleError as error:
        raise FlipbookError(
            "sampling.sampler", s.sampler, "a valid sampler schedule", detail=str(error)
        ) from None


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


def _denoise(strength: np.ndarray, steps: int) -> np.ndarray:
    """denoise = 1 - strength, but never less than one sampling step: like A1111 (whose img2img always runs at
    least one step), a feedback frame with steps x denoise < 1 is denoised for one step at the lowest noise."""
    one_step = 1.0 / steps + 1e-9  # nudged up so that int(steps * denoise) can't round down to 0
    return np.maximum(np.round(1.0 - strength, 6), one_step)

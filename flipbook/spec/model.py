"""The animation spec: one versioned, nested pydantic model that every face of flipbook accepts.

Sections: model, sampling, animation, prompts, output. Numeric settings that change over the animation
(``animation.strength``, ``sampling.cfg``) take a number, a per-frame list, or a Deforum schedule string
(``"0:(0.65), 30:(0.4)"``, math in ``t`` allowed), optionally as a table with an interpolation. Schedules are
parsed here, so a typo is reported with a caret before anything runs; ``spec/plan.py`` resolves them per frame.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flipbook.errors import FlipbookError

SPEC_VERSION = 1


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_schedule_text(value: object) -> object:
    """Parse a schedule string now (syntax, allowed names and functions); values are checked in the plan."""
    if isinstance(value, str):
        from flipbook.spec.expressions import caret
        from flipbook.spec.schedules import Schedule, ScheduleError

        try:
            Schedule.parse(value)
        except ScheduleError as error:
            pointer = f"\n    {caret(value, error.position).replace(chr(10), chr(10) + '    ')}"
            raise ValueError(f"{error}{pointer if error.position is not None else ''}") from None
    return value


class ScheduleTable(_Section):
    """A schedule with its interpolation: ``{ schedule = "0:(1), 30:(2)", interpolation = "cubic" }``."""

    schedule: float | str | list[float]
    interpolation: Literal["linear", "cubic", "step"] = "linear"

    @field_validator("schedule")
    @classmethod
    def _parse(cls, value: float | str | list[float]) -> float | str | list[float]:
        return _check_schedule_text(value)


ScheduleValue = float | str | list[float] | ScheduleTable
"""A number (constant), a per-frame list, a Deforum schedule string, or a table with an interpolation."""


class LoraRef(_Section):
    name: str = Field(description="LoRA file or name in the models folder's LoRA directory")
    weight: float = Field(1.0, ge=-10, le=10)


class ModelSection(_Section):
    name: str = Field(
        "tiny",
        description="built-in (tiny, random-sd15), folder, .safetensors/.ckpt, models-dir name or hub id",
    )
    models_dir: Path | None = Field(None, description="A1111 or ComfyUI install (or its models/ folder)")
    vae: str | None = None
    loras: list[LoraRef] = Field(default_factory=list)
    prediction_type: Literal["epsilon", "v_prediction"] | None = None
    device: str = "auto"
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    vae_slicing: bool = False
    vae_tiling: bool = False


class SamplingSection(_Section):
    sampler: str = Field(
        "Euler a", description='A1111 sampler name, or a schedule: 0:("Euler a"), 30:("DDIM")'
    )
    steps: int = Field(20, ge=1, le=1000)
    cfg: ScheduleValue = Field(7.0, description="guidance scale 0-100; a number or a schedule")
    seed: int = Field(-1, ge=-1, lt=2**32, description="-1 picks a random seed; the chosen one is recorded")
    seed_behavior: Literal["iter", "fixed", "random", "ladder", "alternate", "schedule"] = Field(
        "iter", description="how the seed changes from frame to frame, as in Deforum"
    )
    seed_iter_n: int = Field(1, ge=1, description="iter: frames per seed step (Deforum's seed_iter_N)")
    seed_schedule: ScheduleValue | None = Field(
        None, description='seed_behavior "schedule": e.g. "0:(s), 1:(-1)" (-1 = random at that frame)'
    )
    clip_skip: int = Field(1, ge=1, le=12)

    @field_validator("cfg", "seed_schedule")
    @classmethod
    def _schedule_text(cls, value: ScheduleValue) -> ScheduleValue:
        return _check_schedule_text(value)

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        """A name, or a Deforum sampler schedule ``0:("Euler a"), 30:("DDIM")``; every name must be known."""
        from flipbook.models.samplers import resolve_sampler
        from flipbook.spec.schedules import ScheduleError, parse_schedule

        names = [value]
        if is_string_schedule(value):
            try:
                names = [keyframe.value.strip().strip("\"'") for keyframe in parse_schedule(value)]
            except ScheduleError as error:
                raise ValueError(str(error)) from None
        for name in names:
            try:
                resolve_sampler(name)
            except FlipbookError as error:
                raise ValueError(f"{name!r} is not a sampler; {error.allowed}") from None
        return value


def is_string_schedule(value: str) -> bool:
    """``0:("Euler a"), 30:("DDIM")`` rather than a plain name (names never contain ``:(``)."""
    return bool(re.search(r":\s*\(", value))


class AnimationSection(_Section):
    mode: str = "travel"
    max_frames: int = Field(24, ge=1, le=100_000)
    fps: float = Field(12, gt=0, le=240)
    width: int = Field(512, ge=8, le=8192)
    height: int = Field(512, ge=8, le=8192)
    strength: ScheduleValue = Field(
        0.65,
        description="Deforum strength in [0, 1): share of the previous frame kept (denoise = 1 - strength); "
        "a number or a schedule",
    )

    @field_validator("strength")
    @classmethod
    def _strength_schedule(cls, value: ScheduleValue) -> ScheduleValue:
        return _check_schedule_text(value)

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        from flipbook.modes import MODES

        if value not in MODES:
            raise ValueError(f"one of: {', '.join(MODES)}")
        return value

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError("must be a multiple of 8")
        return value


class OutputSection(_Section):
    dir: Path = Path("out")
    formats: list[Literal["png", "gif", "mp4"]] = Field(default_factory=lambda: ["png", "gif", "mp4"])
    name: str | None = Field(None, description="file stem; defaults to the spec file's stem")
    gif_loop: int = Field(0, ge=0, le=65535, description="0 loops forever")
    mp4_crf: int = Field(18, ge=0, le=51)


class Spec(_Section):
    version: int = SPEC_VERSION
    model: ModelSection = Field(default_factory=ModelSection)
    sampling: SamplingSection = Field(default_factory=SamplingSection)
    animation: AnimationSection = Field(default_factory=AnimationSection)
    prompts: dict[str, str] | str = Field(
        description='Deforum keyframes {"0" = "a forest", "max_f-10" = "a city --neg fog"} (keys may be '
        'expressions in max_f and s; " --neg " starts the negative), or AnimateDiff lines: head lines, '
        '"N: prompt" lines, tail lines. Backtick math such as (cherry:`1+t/max_f`) is evaluated per frame.'
    )
    positive_prompt: str = Field("", description="added before every prompt (Deforum's prompts_positive)")
    negative_prompt: str = Field(
        "", description="added after every prompt's negative (Deforum's prompts_negative)"
    )
    output: OutputSection = Field(default_factory=OutputSection)

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != SPEC_VERSION:
            raise ValueError(f"only version {SPEC_VERSION} is known")
        return value

    @field_validator("prompts")
    @classmethod
    def _prompt_syntax(cls, value: dict[str, str] | str) -> dict[str, str] | str:
        """Check line syntax and backtick math now; keys that depend on max_f are checked in the plan."""
        from flipbook.spec.travel import compile_prompt_math, parse_prompt_lines

        try:
            if isinstance(value, str):
                parse_prompt_lines(value, field="prompts")
                texts = [value]
            elif not value:
                raise ValueError("at least one keyframe prompt is needed")
            else:
                texts = list(value.values())
            for text in texts:
                compile_prompt_math(text, field="prompts")
        except FlipbookError as error:
            detail = f" ({error.detail})" if error.detail else ""
            raise ValueError(f"{error.allowed}{detail}") from None
        return value

    def with_seed(self) -> Spec:
        """The spec with seed -1 replaced by a random seed (recorded, so the render can be repeated)."""
        if self.sampling.seed != -1:
            return self
        seed = random.SystemRandom().randrange(2**32)
        return self.model_copy(update={"sampling": self.sampling.model_copy(update={"seed": seed})})

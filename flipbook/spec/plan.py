"""The plan: every per-frame value of a spec, resolved and range-checked before any model is loaded.

Schedules become arrays here (Deforum semantics, see ``schedules.py``); each frame's prompt keyframe and seed
are fixed too, so a render, a resume and ``flipbook validate`` all see the same table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from pydantic import BaseModel

from flipbook.errors import SpecError
from flipbook.modes import get_mode
from flipbook.spec.fields import (
    AUDIO_NAMES,
    ScheduleTable,
    ScheduleValue,
    is_string_schedule,
    range_of,
    schedule_fields,
)
from flipbook.spec.model import AnimationSection, SamplingSection, Spec
from flipbook.spec.prompt_keyframes import (
    Keyframes,
    PromptKey,
    compose_line_prompt,
    deforum_keyframes,
    parse_prompt_lines,
    prompt_at_frames,
)
from flipbook.spec.schedules import ScheduleError, resolve_schedule, resolve_string_schedule
from flipbook.spec.seeds import seed_sequence


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
    steps: int = 20
    checkpoint: str = "tiny"
    camera: Mapping[str, float] = field(default_factory=dict)  # every [camera] schedule at this frame
    # animation.prompt_interpolation: the next keyframe's prompt and negative at this frame (backtick math
    # evaluated here too) and its weight, (i - key) / (next key - key); with "hold", or from the last keyframe
    # on, blend is 0 and next_* are this frame's own prompt and negative (None here means the same). A mode with
    # a walk (Mode.walk: the latent walk) sets blend itself (the eased walk position, which also mixes the
    # noise), and next_* are always the next keyframe's.
    next_prompt: str | None = None
    next_negative_prompt: str | None = None
    blend: float = 0.0
    # every other section's schedule the mode reads, at this frame, by path: {"video.feedback": 0.3}
    schedules: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.next_prompt is None:
            object.__setattr__(self, "next_prompt", self.prompt)
        if self.next_negative_prompt is None:
            object.__setattr__(self, "next_negative_prompt", self.negative_prompt)


@dataclass(frozen=True)
class Plan:
    frames: tuple[FramePlan, ...]
    # the audio variables (beat, bpm, amp per frame) the schedules were resolved with; empty without audio.file
    variables: Mapping[str, np.ndarray] = field(default_factory=dict, compare=False)
    # what the user should be told about the spec as planned (prompt keyframes no frame reaches, ...)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def __getitem__(self, index: int) -> FramePlan:
        return self.frames[index]

    def __len__(self) -> int:
        return len(self.frames)


_AUDIO_NAME = re.compile(r"\b(" + "|".join(AUDIO_NAMES) + r")\b")


def resolve_value(
    spec: Spec, field: str, value: ScheduleValue, variables: Mapping[str, np.ndarray] | None = None
) -> np.ndarray:
    """Per-frame values of one schedule field; problems become a FlipbookError naming the field.

    ``variables`` are extra per-frame arrays the schedule may use: the audio variables (see
    :func:`schedule_variables`) and, for easing schedules, ``u``.
    """
    schedule, interpolation = value, "linear"
    if isinstance(value, ScheduleTable):
        schedule, interpolation = value.schedule, value.interpolation
    variables = dict(variables or {})
    if isinstance(schedule, str) and not set(AUDIO_NAMES) <= set(variables):
        used = _AUDIO_NAME.search(schedule)
        if used:
            allowed = f"a schedule without {used.group(1)}, or audio.file set (beat, bpm and amp follow it)"
            raise SpecError(field, schedule, allowed)
    a = spec.animation
    try:
        return resolve_schedule(
            schedule, max_frames=a.max_frames, fps=a.fps, seed=spec.sampling.seed, interpolation=interpolation,
            extra_vars=variables or None,
        )  # fmt: skip
    except ScheduleError as error:
        raise SpecError(field, schedule, "a valid schedule", detail=str(error)) from None


@dataclass(frozen=True)
class AudioFeatures:
    """What ``audio.file`` gives the plan: per-frame schedule variables and, for audio easing, energy."""

    variables: Mapping[str, np.ndarray]
    energy: np.ndarray | None = None


def audio_features(spec: Spec) -> AudioFeatures:
    """Analyse ``audio.file`` (from ``audio.offset``) once per plan; empty without a file. The percussive
    energy (an HPSS, the slow part) is only computed when the mode asks for it (``Mode.audio_energy``)."""
    if spec.audio.file is None:
        return AudioFeatures({})
    from flipbook.audio.analysis import expression_variables, load_audio, percussive_energy

    n, fps = spec.animation.max_frames, spec.animation.fps
    y, sr = load_audio(spec.audio.file, offset=spec.audio.offset, duration=(n + 1) / fps)
    variables = expression_variables(y, sr, fps, n)
    mode = get_mode(spec.animation.mode)
    wants_energy = mode.audio_energy is not None and mode.audio_energy(spec)
    energy = percussive_energy(y, sr, fps, n + 1) if wants_energy else None
    return AudioFeatures(variables, energy)


def build_plan(spec: Spec, audio: AudioFeatures | None = None) -> Plan:
    """The per-frame table for ``spec`` (whose seed must already be chosen, see ``Spec.with_seed``).

    ``audio`` is :func:`audio_features` of the spec, analysed here when not given.
    """
    if spec.sampling.seed == -1:
        raise ValueError("build_plan needs a chosen seed; call spec.with_seed() first")
    audio = audio if audio is not None else audio_features(spec)
    variables = audio.variables
    n = spec.animation.max_frames
    cfg = resolve_value(spec, "sampling.cfg", spec.sampling.cfg, variables)
    strength = resolve_value(spec, "animation.strength", spec.animation.strength, variables)
    _check_range("sampling.cfg", cfg, SamplingSection, "cfg")
    _check_range("animation.strength", strength, AnimationSection, "strength")
    steps = _steps(spec, variables)
    denoise = denoise_for(strength, steps)
    seeds = _seeds(spec, variables)
    samplers = _string_schedule(spec, "sampling.sampler", spec.sampling.sampler)
    checkpoints = _string_schedule(spec, "model.name", spec.model.name)
    sections = section_values(spec, variables)
    camera = sections.pop("camera", {})
    schedules = {f"{section}.{name}": v for section, values in sections.items() for name, v in values.items()}
    mode = get_mode(spec.animation.mode)
    if mode.columns is not None:
        schedules.update(
            {path: np.asarray(values, dtype=np.float64) for path, values in mode.columns(spec).items()}
        )
    prompts = _prompts(spec, audio)
    frames = tuple(
        FramePlan(
            index=i,
            prompt_key=prompts.keys[i],
            prompt=prompts.positives[i],
            negative_prompt=prompts.negatives[i],
            seed=seeds[i],
            sampler=samplers[i],
            cfg=float(cfg[i]),
            strength=float(strength[i]),
            denoise=float(denoise[i]),
            steps=int(steps[i]),
            checkpoint=checkpoints[i],
            camera=MappingProxyType({name: float(values[i]) for name, values in camera.items()}),
            schedules=MappingProxyType({path: float(values[i]) for path, values in schedules.items()}),
            next_prompt=prompts.next_positives[i],
            next_negative_prompt=prompts.next_negatives[i],
            blend=prompts.blends[i],
        )
        for i in range(n)
    )
    check_mode(spec, frames)
    return Plan(frames, MappingProxyType(dict(variables)), prompts.warnings)


@dataclass(frozen=True)
class _FramePrompts:
    keys: list[int]
    positives: list[str]
    negatives: list[str]
    next_positives: list[str]
    next_negatives: list[str]
    blends: list[float]
    warnings: tuple[str, ...] = ()


def _prompts(spec: Spec, audio: AudioFeatures) -> _FramePrompts:
    """Per frame: the keyframe in force (prompts hold until the next key, the first one back to frame 0, as in
    Deforum 2D/3D), its prompt and its negative, with backtick math evaluated at that frame; and, for
    ``animation.prompt_interpolation`` lerp/slerp, the next keyframe's prompt and negative at that frame with
    its weight ``(i - key) / (next key - key)`` (0 with hold, before the first key and from the last key on,
    except where the mode closes the loop: ``Mode.prompt_loop``); a mode's ``walk`` sets the weights itself.

    Linear in frames + keyframes: each keyframe's text is evaluated only at the frames that use it (a run of
    frames as the prompt in force, the run before it as the next prompt)."""
    n = spec.animation.max_frames
    resolved = _keyframes(spec)
    keyframes = resolved.by_frame
    unused = resolved.unused_warning(n)
    warnings = (unused,) if unused else ()
    starts = np.fromiter(keyframes, dtype=np.int64, count=len(keyframes))  # sorted
    frames = np.arange(n)
    position = np.searchsorted(starts, frames, side="right") - 1  # the key in force; -1 before the first
    in_force = starts[np.maximum(position, 0)]
    positives, negatives = _texts_at(spec, keyframes, in_force)
    keys = in_force.tolist()
    mode = get_mode(spec.animation.mode)
    walk = mode.walk is not None
    if not (walk or spec.animation.text_interpolation() != "hold"):
        return _FramePrompts(keys, positives, negatives, positives, negatives, [0.0] * n, warnings)
    # the keyframe each frame moves toward, and how far it has come: the next key between two keys; with a
    # closed loop the first key from the last one on; else (hold) the frame's own prompt at weight 0
    has_next = (position >= 0) & (position + 1 < starts.size)
    following = starts[np.minimum(position + 1, starts.size - 1)]
    toward = np.where(has_next, following, in_force)
    with np.errstate(divide="ignore", invalid="ignore"):
        blends = np.where(has_next, (frames - in_force) / (following - in_force), 0.0)
    if starts.size > 1 and mode.prompt_loop is not None and mode.prompt_loop(spec):
        last = position == starts.size - 1
        toward = np.where(last, starts[0], toward)
        blends = np.where(last, (frames - in_force) / (n - in_force + starts[0]), blends)
    next_positives, next_negatives = _texts_at(spec, keyframes, toward)
    if mode.walk is not None:
        blends = mode.walk(spec, starts.tolist(), audio)
    return _FramePrompts(
        keys, positives, negatives, next_positives, next_negatives, blends.tolist(), warnings
    )


def _keyframes(spec: Spec) -> Keyframes:
    """The prompt keyframes within the animation, by frame (sorted), global additions joined in; and those
    outside it."""
    return deforum_keyframes(
        _keyframe_table(spec.prompts), max_frames=spec.animation.max_frames, seed=spec.sampling.seed,
        positive=spec.positive_prompt, negative=spec.negative_prompt,
    )  # fmt: skip


def _texts_at(
    spec: Spec, keyframes: Mapping[int, PromptKey], owner: np.ndarray
) -> tuple[list[str], list[str]]:
    """Per frame i: keyframe ``owner[i]``'s prompt and negative with backtick math evaluated at frame i. Each
    run of frames with one owner is evaluated at once (a prompt without math is the same string object for
    the whole run)."""
    n, fps, seed = spec.animation.max_frames, spec.animation.fps, spec.sampling.seed
    positives: list[str] = []
    negatives: list[str] = []
    bounds = [0, *(np.flatnonzero(np.diff(owner)) + 1).tolist(), n]
    for start, stop in zip(bounds, bounds[1:], strict=False):
        key = keyframes[int(owner[start])]
        frames = np.arange(start, stop)
        positives += prompt_at_frames(key.positive, frames, max_f=n - 1, seed=seed, fps=fps, field="prompts")
        negatives += prompt_at_frames(
            key.negative, frames, max_f=n - 1, seed=seed, fps=fps, field="negative_prompt"
        )
    return positives, negatives


def _keyframe_table(prompts: dict[str, str] | str) -> dict[str, str]:
    """AnimateDiff-style lines become Deforum-style keyframes (head and tail joined as AnimateDiff does)."""
    if not isinstance(prompts, str):
        return prompts
    head, keys, tail = parse_prompt_lines(prompts, field="prompts")
    if not keys:
        return {"0": head}
    return {str(frame): compose_line_prompt(head, text, tail) for frame, text in keys.items()}


def _string_schedule(spec: Spec, field: str, value: str) -> list[str]:
    """Per-frame names (sampler, checkpoint): a plain name everywhere, or a Deforum string schedule that holds
    its values."""
    n = spec.animation.max_frames
    if not is_string_schedule(value):
        return [value] * n
    try:
        names = resolve_string_schedule(value, n, seed=spec.sampling.seed, fps=spec.animation.fps)
    except ScheduleError as error:
        raise SpecError(field, value, "a valid string schedule", detail=str(error)) from None
    return [name.strip().strip("\"'") for name in names]


def _steps(spec: Spec, variables: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    steps = spec.sampling.steps
    if isinstance(steps, int):
        return np.full(spec.animation.max_frames, steps, dtype=np.int64)
    values = np.round(resolve_value(spec, "sampling.steps", steps, variables))
    _check_range("sampling.steps", values, SamplingSection, "steps")
    return values.astype(np.int64)


# Sections whose schedules the plan resolves on its own terms (cfg, strength, seeds, steps above).
_OWN_COLUMNS = frozenset({"sampling", "animation"})


def section_schedule_fields(model: type[BaseModel] = Spec) -> dict[str, tuple[str, ...]]:
    """Every section's schedule fields (those that take a :class:`ScheduleTable`), found from the model's
    annotations, so a schedule added to any section goes through the plan without a list to keep up to date;
    sampling and animation are left out (the plan resolves them itself)."""
    fields: dict[str, tuple[str, ...]] = {}
    for section, info in model.model_fields.items():
        if section in _OWN_COLUMNS or not _is_section(info.annotation):
            continue
        names = schedule_fields(info.annotation)
        if names:
            fields[section] = names
    return fields


def _is_section(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def section_values(
    spec: Spec, variables: Mapping[str, np.ndarray] | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """The sections' schedules per frame, by section and name: every schedule of a section planned in every
    mode (``[camera]``: frames.csv shows every camera value), and of the others those the mode reads
    (``Mode.schedules``: [video]'s in video mode). Each is resolved with the audio variables (see
    :func:`resolve_value`) and, where the mode reads it, checked against the range in its type and the
    section's own rules on its values (``Section.check_frames``)."""
    reads = get_mode(spec.animation.mode).read_schedules(spec)
    out: dict[str, dict[str, np.ndarray]] = {}
    for section, names in section_schedule_fields(type(spec)).items():
        model = type(getattr(spec, section))
        used = reads.get(section, frozenset())
        values = {}
        for name in names:
            if name not in used and not model.planned_in_every_mode:
                continue
            path = f"{section}.{name}"
            array = resolve_value(spec, path, getattr(getattr(spec, section), name), variables)
            if name in used:
                _check_range(path, array, model, name)
            values[name] = array
        if values:
            out[section] = values
        if used:
            model.check_frames(values)
    return out


def _seeds(spec: Spec, variables: Mapping[str, np.ndarray] | None = None) -> list[int]:
    """Per-frame seeds with Deforum's seed behaviours (random draws reproducible from the base seed)."""
    s = spec.sampling
    schedule = None
    if s.seed_behavior == "schedule":
        if s.seed_schedule is None:
            raise SpecError("sampling.seed_schedule", None, 'a schedule when seed_behavior = "schedule"')
        schedule = resolve_value(spec, "sampling.seed_schedule", s.seed_schedule, variables)
    return seed_sequence(
        s.seed, spec.animation.max_frames, s.seed_behavior, iter_n=s.seed_iter_n, schedule=schedule
    )


def _check_range(field: str, values: np.ndarray, model: type[BaseModel], name: str) -> None:
    """The range in the type of ``model``'s field ``name`` (none: any finite number), at every frame."""
    allowed = range_of(model, name)
    if allowed is not None:
        allowed.check(field, values)


def denoise_for(strength: np.ndarray | float, steps: np.ndarray | int) -> np.ndarray:
    """denoise = 1 - strength, but never less than one sampling step: like A1111 (whose img2img always runs at
    least one step), a feedback frame with steps x denoise < 1 is denoised for one step at the lowest noise.
    The result is always in (0, 1]."""
    return np.maximum(np.round(1.0 - np.asarray(strength, dtype=np.float64), 6), one_step(steps))


def one_step(steps: np.ndarray | int) -> np.ndarray:
    """The smallest denoise that runs one step of ``steps``: 1/steps, or the next float up where
    ``steps * (1/steps)`` rounds below 1 (49 * (1/49) is 0.9999999999999999), so that the sampler's
    ``int(steps * denoise)`` is 1; with one step it is exactly 1."""
    steps = np.asarray(steps, dtype=np.float64)
    share = 1.0 / steps
    return np.where(steps * share < 1.0, np.nextafter(share, 1.0), share)


# ---- what a mode can't render, refused with the plan, so that validate refuses it rather than the render ----


def check_mode(spec: Spec, frames: Sequence[FramePlan]) -> None:
    """The rules of the spec's mode that need nothing but the spec and its plan (``Mode.check_plan``; files are
    opened by the mode's ``check_inputs`` at render; a model's own limits are known when it loads)."""
    mode = get_mode(spec.animation.mode)
    if mode.check_plan is not None:
        mode.check_plan(spec, frames)

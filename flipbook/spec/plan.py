"""The plan: every per-frame value of a spec, resolved and range-checked before any model is loaded.

Schedules become arrays here (Deforum semantics, see ``schedules.py``); each frame's prompt keyframe and seed
are fixed too, so a render, a resume and ``flipbook validate`` all see the same table.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from pydantic import BaseModel

from flipbook.errors import SpecError
from flipbook.spec.easing import walk_weights
from flipbook.spec.model import AUDIO_NAMES, ScheduleTable, ScheduleValue, Spec, is_string_schedule
from flipbook.spec.schedules import ScheduleError, resolve_schedule, resolve_string_schedule
from flipbook.spec.seeds import seed_sequence
from flipbook.spec.travel import (
    Keyframes,
    PromptKey,
    compose_line_prompt,
    deforum_keyframes,
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
    steps: int = 20
    checkpoint: str = "tiny"
    camera: Mapping[str, float] = field(default_factory=dict)  # every [camera] schedule at this frame
    # animation.prompt_interpolation: the next keyframe's prompt and negative at this frame (backtick math
    # evaluated here too) and its weight, (i - key) / (next key - key); with "hold", or from the last keyframe
    # on, blend is 0 and next_* are this frame's own prompt and negative (None here means the same). In
    # interpolate mode blend is the eased walk position (interpolate.easing), which also mixes the noise, and
    # next_* are always the next keyframe's.
    next_prompt: str | None = None
    next_negative_prompt: str | None = None
    blend: float = 0.0
    # every other mode section's schedule the mode reads, at this frame, by path: {"video.feedback": 0.3}
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
    energy (an HPSS, the slow part) is only computed when an interpolate easing asks for it."""
    if spec.audio.file is None:
        return AudioFeatures({})
    from flipbook.audio.analysis import expression_variables, load_audio, percussive_energy

    n, fps = spec.animation.max_frames, spec.animation.fps
    y, sr = load_audio(spec.audio.file, offset=spec.audio.offset, duration=(n + 1) / fps)
    variables = expression_variables(y, sr, fps, n)
    easing = spec.interpolate.easing
    wants_energy = spec.animation.mode == "interpolate" and "audio" in (
        easing if isinstance(easing, list) else [easing]
    )
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
    _check_range("sampling.cfg", cfg, 0.0, 100.0, "a guidance scale from 0 to 100")
    _check_range("animation.strength", strength, 0.0, 1.0, "a strength in [0, 1]")
    steps = _steps(spec, variables)
    denoise = denoise_for(strength, steps)
    seeds = _seeds(spec, variables)
    samplers = _string_schedule(spec, "sampling.sampler", spec.sampling.sampler)
    checkpoints = _string_schedule(spec, "model.name", spec.model.name)
    sections = section_values(spec, variables)
    camera = sections.pop("camera", {})
    schedules = {f"{section}.{name}": v for section, values in sections.items() for name, v in values.items()}
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
    except in an animatediff closed loop, see :func:`_prompts_loop`).

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
    walk = spec.animation.mode == "interpolate"
    if not (walk or spec.animation.text_interpolation() != "hold"):
        return _FramePrompts(keys, positives, negatives, positives, negatives, [0.0] * n, warnings)
    # the keyframe each frame moves toward, and how far it has come: the next key between two keys; with a
    # closed loop the first key from the last one on; else (hold) the frame's own prompt at weight 0
    has_next = (position >= 0) & (position + 1 < starts.size)
    following = starts[np.minimum(position + 1, starts.size - 1)]
    toward = np.where(has_next, following, in_force)
    with np.errstate(divide="ignore", invalid="ignore"):
        blends = np.where(has_next, (frames - in_force) / (following - in_force), 0.0)
    if starts.size > 1 and _prompts_loop(spec):
        last = position == starts.size - 1
        toward = np.where(last, starts[0], toward)
        blends = np.where(last, (frames - in_force) / (n - in_force + starts[0]), blends)
    next_positives, next_negatives = _texts_at(spec, keyframes, toward)
    if walk:
        blends = _walk_blends(spec, starts.tolist(), audio)
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


def _prompts_loop(spec: Spec) -> bool:
    """animatediff with ``closed_loop`` R+P or A (and more frames than one context window): prompts travel from
    the last keyframe back to the first, which they reach at frame ``max_frames`` (the A1111 extension's loop)."""
    if spec.animation.mode != "animatediff":
        return False
    from flipbook.sampling.context import ContextOptions, prompts_loop

    a = spec.animatediff
    options = ContextOptions(length=a.context_length, overlap=a.overlap(), closed_loop=a.closed_loop)
    return prompts_loop(spec.animation.max_frames, options)


def _walk_blends(spec: Spec, starts: list[int], audio: AudioFeatures) -> np.ndarray:
    """interpolate mode: the eased weight toward the next keyframe at every frame (``interpolate.easing``)."""

    def schedule(text: str, u: np.ndarray) -> np.ndarray:
        return resolve_value(spec, "interpolate.easing", text, {**audio.variables, "u": u})

    return walk_weights(
        starts,
        spec.animation.max_frames,
        spec.interpolate.easing,
        frequencies=spec.interpolate.sine_frequencies,
        energy=audio.energy,
        schedule=schedule,
    )


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
    _check_range("sampling.steps", values, 1, 1000, "a step count from 1 to 1000")
    return values.astype(np.int64)


# Schedules of the mode sections ([camera], [video], ...) that must stay in a range when their mode reads
# them: (low, high, what is allowed). A schedule field not named here takes any finite number. The fields
# themselves are found from the spec model (see section_schedule_fields), not listed here.
_RANGES: dict[str, tuple[float, float, str]] = {
    # 0 is Deforum's degenerate 2D warp (cv2.getRotationMatrix2D with scale 0), rendered as Deforum renders it
    "camera.zoom": (0.0, 1e3, "a scale factor from 0 to 1000"),
    "camera.perspective_flip_fv": (1.0, 179.0, "a field of view from 1 to 179 degrees"),
    "camera.fov": (1.0, 179.0, "a field of view from 1 to 179 degrees"),
    "camera.near": (1e-3, 1e9, "a positive depth"), "camera.far": (1e-3, 1e9, "a positive depth"),
    "camera.contrast": (0.0, 10.0, "a factor from 0 to 10"),
    "camera.antiblur_amount": (0.0, 100.0, "an amount from 0 to 100"),
    "camera.antiblur_kernel": (0.0, 255.0, "0 or an odd kernel size up to 255"),
    "camera.antiblur_sigma": (0.0, 100.0, "a sigma from 0 to 100"),
    "camera.antiblur_threshold": (0.0, 255.0, "a threshold from 0 to 255"),
    "camera.noise": (0.0, 10.0, "a noise amount from 0 to 10"),
    "camera.noise_multiplier": (0.0, 10.0, "a multiplier from 0 to 10"),
    "camera.hybrid_comp_alpha": (0.0, 1.0, "a share from 0 to 1"),
    "video.feedback": (0.0, 1.0, "a share from 0 to 1"),
    "video.noise_multiplier": (0.0, 10.0, "a multiplier from 0 to 10"),
}  # fmt: skip

# Sections whose schedules the plan resolves on its own terms (cfg, strength, seeds, steps above).
_OWN_COLUMNS = frozenset({"sampling", "animation"})

# The [camera] schedules each mode reads; only those are range-checked (a 3D spec's unused zoom of 0, as
# Deforum files have, is not an error). All are resolved, so frames.csv shows every value.
_SHARED = {"cadence_flow_factor", "contrast", "antiblur_amount", "antiblur_kernel", "antiblur_sigma",
           "antiblur_threshold", "noise", "noise_multiplier", "hybrid_flow_factor", "hybrid_comp_alpha"}  # fmt: skip
_USED_BY_MODE: dict[str, set[str]] = {
    "2d": _SHARED | {"translation_x", "translation_y", "angle", "zoom", "transform_center_x",
                     "transform_center_y", "perspective_flip_theta", "perspective_flip_phi",
                     "perspective_flip_gamma", "perspective_flip_fv"},
    "3d": _SHARED | {"translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y",
                     "rotation_3d_z", "fov", "near", "far"},
}  # fmt: skip


def section_schedule_fields(model: type[BaseModel] = Spec) -> dict[str, tuple[str, ...]]:
    """Every section's schedule fields (those that take a :class:`ScheduleTable`), found from the model's
    annotations, so a schedule added to any section goes through the plan without a list to keep up to date;
    sampling and animation are left out (the plan resolves them itself)."""
    fields: dict[str, tuple[str, ...]] = {}
    for section, info in model.model_fields.items():
        if section in _OWN_COLUMNS or not _is_section(info.annotation):
            continue
        names = tuple(n for n, f in info.annotation.model_fields.items() if _takes_schedule(f.annotation))
        if names:
            fields[section] = names
    return fields


def _is_section(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _takes_schedule(annotation: object) -> bool:
    """Whether ``ScheduleTable`` appears anywhere in the annotation (unions, Optional, Annotated)."""
    if annotation is ScheduleTable:
        return True
    return any(_takes_schedule(arg) for arg in typing.get_args(annotation))


def _used_schedules(spec: Spec, section: str, names: tuple[str, ...]) -> set[str]:
    """The schedules of ``section`` the spec's mode reads: [camera]'s per mode (interpolate reads the 2D ones
    with ``interpolate.motion``); any other section's all of them in the mode of its name ([video] in video
    mode), none in the others."""
    mode = spec.animation.mode
    if section == "camera":
        if mode == "interpolate" and spec.interpolate.motion:
            return _USED_BY_MODE["2d"]
        return _USED_BY_MODE.get(mode, set())
    return set(names) if section == mode else set()


def section_values(
    spec: Spec, variables: Mapping[str, np.ndarray] | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Every mode section's schedules per frame, by section and name: all of [camera] (so frames.csv shows
    every camera value), and of the other sections those the mode reads. Each is resolved with the audio
    variables (see :func:`resolve_value`) and, where the mode reads it, range-checked."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for section, names in section_schedule_fields().items():
        used = _used_schedules(spec, section, names)
        values = {}
        for name in names:
            if section != "camera" and name not in used:
                continue
            path = f"{section}.{name}"
            array = resolve_value(spec, path, getattr(getattr(spec, section), name), variables)
            if name in used and path in _RANGES:
                _check_range(path, array, *_RANGES[path])
            values[name] = array
        if values:
            out[section] = values
        if section == "camera" and used:
            _check_camera(values)
    return out


def _check_camera(values: dict[str, np.ndarray]) -> None:
    """What single ranges can't say: antiblur kernels are odd (rounded here), far lies beyond near."""
    kernel = np.round(values["antiblur_kernel"])
    even = np.flatnonzero((kernel > 0) & (kernel % 2 == 0))
    if even.size:
        frame = int(even[0])
        raise SpecError(
            "camera.antiblur_kernel",
            float(kernel[frame]),
            "0 or an odd kernel size",
            detail=f"at frame {frame}",
        )
    values["antiblur_kernel"] = kernel
    crossed = np.flatnonzero(values["far"] <= values["near"])
    if crossed.size:
        frame = int(crossed[0])
        raise SpecError(
            "camera.far", float(values["far"][frame]), f"more than camera.near ({values['near'][frame]:g})",
            detail=f"at frame {frame}",
        )  # fmt: skip


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


def _check_range(field: str, values: np.ndarray, low: float, high: float, allowed: str) -> None:
    bad = np.flatnonzero((values < low) | (values > high))
    if bad.size:
        frame = int(bad[0])
        raise SpecError(field, float(values[frame]), allowed, detail=f"at frame {frame}")


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


def check_mode(spec: Spec, frames: tuple[FramePlan, ...]) -> None:
    """The rules of the spec's mode that need nothing but the spec and its plan (files are opened by the
    mode's ``check_inputs`` at render; a model's own limits are known when it loads)."""
    rules = _MODE_RULES.get(spec.animation.mode)
    if rules is not None:
        rules(spec, frames)


def _animatediff_rules(spec: Spec, frames: tuple[FramePlan, ...]) -> None:
    """Every frame is denoised in one sampling run: one checkpoint, step count and sampler (and strength, from
    an init video); no composable prompts; the preset's sampler; a clip starts from an image or a video."""
    if spec.init.image is not None and spec.init.video is not None:
        raise SpecError(
            "init.image", str(spec.init.image), "no init image together with init.video in animatediff mode"
        )
    values = {
        "model.name": [f.checkpoint for f in frames],
        "sampling.steps": [f.steps for f in frames],
        "sampling.sampler": [f.sampler for f in frames],
    }
    if spec.init.video is not None:
        values["animation.strength"] = [f.strength for f in frames]
    for field_name, per_frame in values.items():
        distinct = list(dict.fromkeys(per_frame))
        if len(distinct) > 1:
            raise SpecError(
                field_name, f"{distinct[0]} then {distinct[1]}", "one value for the whole animation in "
                "animatediff mode", detail="every frame is denoised in the same sampling run",
            )  # fmt: skip
    from flipbook.sampling.prompts import split_composable

    for frame in frames:
        for text in (frame.prompt, frame.next_prompt):
            if len(split_composable(text)) > 1:
                raise SpecError(
                    "prompts", text, "prompts without composable parts (AND, |) in animatediff mode",
                    detail=f"at frame {frame.index}",
                )  # fmt: skip
    _preset_sampler(spec)


def _preset_sampler(spec: Spec) -> None:
    """A preset brings its sampler (LCM, Euler); a different sampler written in the spec is an error rather
    than silently replaced. A spec that leaves the sampler unset gets the preset's."""
    written = spec.sampling.sampler
    if spec.animatediff.preset == "none" or "sampler" not in spec.sampling.model_fields_set:
        return
    from flipbook.models.motion.presets import PRESETS
    from flipbook.models.samplers import resolve_sampler

    preset = PRESETS[spec.animatediff.preset]
    if preset.sampler is None:
        return
    if is_string_schedule(written) or resolve_sampler(written) != resolve_sampler(preset.sampler):
        raise SpecError(
            "sampling.sampler", written,
            f'"{preset.sampler}" with animatediff.preset = "{preset.name}" (or leave the sampler unset)',
        )  # fmt: skip


def _svd_rules(spec: Spec, frames: tuple[FramePlan, ...]) -> None:
    """SVD: guidance rises from the first frame to the last; no ControlNet; one prompt (SVD is conditioned on
    the start image only: a prompt that changes after frame 0 would never be used)."""
    svd = spec.svd
    if svd.min_guidance_scale > svd.max_guidance_scale:
        raise SpecError(
            "svd.min_guidance_scale",
            svd.min_guidance_scale,
            f"at most svd.max_guidance_scale ({svd.max_guidance_scale:g}): guidance rises from the first frame "
            "to the last",
        )
    if spec.controlnet:
        raise SpecError(
            "controlnet",
            f"{len(spec.controlnet)} unit(s)",
            "no ControlNet units in svd mode (SVD takes none)",
        )
    first = (frames[0].prompt, frames[0].negative_prompt)
    changed = next((f for f in frames if (f.prompt, f.negative_prompt) != first), None)
    if changed is not None:
        raise SpecError(
            "prompts",
            changed.prompt,
            "one prompt for the whole video in svd mode (SVD has no text conditioning: the prompt only makes "
            "frame 0 when init.image is not set)",
            detail=f"the prompt changes at frame {changed.index}",
        )


def _variations_rules(spec: Spec, frames: tuple[FramePlan, ...]) -> None:
    """The mode inpaints the init image inside the mask, so both must be given (render opens both files)."""
    for name in ("image", "mask"):
        if getattr(spec.init, name) is None:
            raise SpecError(
                f"init.{name}",
                None,
                "an image file: variations mode inpaints init.image where init.mask is white",
            )


_MODE_RULES = {"animatediff": _animatediff_rules, "svd": _svd_rules, "variations": _variations_rules}

"""A readable summary of a validated spec: what will be rendered, before any GPU time is spent."""

from __future__ import annotations

from flipbook.modes import get_mode
from flipbook.sampling.presets import PRESETS
from flipbook.spec.model import Spec
from flipbook.spec.plan import Plan, build_plan


def summarize(spec: Spec) -> str:
    """Summarise ``spec``; building its plan also checks every schedule's values at every frame. What is said
    about the mode comes from its descriptor (``Mode.frame_count``, ``Mode.describe``)."""
    a, s, m = spec.animation, spec.sampling, spec.model
    mode = get_mode(a.mode)
    random_seed = s.seed == -1
    plan = build_plan(spec.with_seed() if random_seed else spec)
    seed = "random (chosen and recorded at render)" if random_seed else str(s.seed)
    count = mode.frame_count(spec) if mode.frame_count is not None else None
    if count is None:
        count = f"{a.max_frames} frames at {a.fps:g} fps ({a.max_frames / a.fps:.2f} s)"
    lines = [
        f"ok: {a.mode} animation, {count}, {a.width}x{a.height}",
        f"model: {_names(plan, 'checkpoint')}"
        + (f", refiner {m.refiner} after {m.refiner_switch_at:g} of the steps" if m.refiner else "")
        + (f" (models dir {m.models_dir})" if m.models_dir else ""),
        f"sampling: {_names(plan, 'sampler')}, {span(plan, 'steps')} steps, cfg {span(plan, 'cfg')}, "
        f"seed {seed}, clip skip {s.clip_skip}",
    ]
    if s.preset != "none":
        preset = PRESETS[s.preset]
        parts = [
            f"{name} {value}"
            if name in s.preset_settings
            else f"the spec's {name} kept (the card's: {value})"
            for name, value in preset.settings().items()
        ]
        note = f"; {preset.note}" if preset.note else ""
        lines.append(f"preset {s.preset} ({preset.models}) set: {', '.join(parts)}{note}")
    if mode.describe is not None:
        lines += mode.describe(spec, plan)
    lines.append("prompts (frame: prompt | negative, as at the keyframe):")
    for frame in plan.frames:
        if frame.index == 0 or frame.prompt_key == frame.index:
            negative = f" | {frame.negative_prompt}" if frame.negative_prompt else ""
            lines.append(f"  {frame.index:>5}: {frame.prompt}{negative}")
    if spec.audio.file is not None:
        soundtrack = ", soundtrack of video outputs" if spec.audio.soundtrack else ""
        lines.append(f"audio: {spec.audio.file} from {spec.audio.offset:g} s (beat, bpm, amp){soundtrack}")
    lines.append(
        f"output: {spec.output.dir}/{spec.output.name or 'flipbook'}/ as {', '.join(spec.output.formats)}"
    )
    lines += [f"warning: {warning}" for warning in plan.warnings]
    return "\n".join(lines)


def feedback_lines(plan: Plan) -> list[str]:
    """For modes that make each frame from the one before through img2img: the strength and the fewest
    denoising steps a frame after the first gets (none for a one-frame animation)."""
    if len(plan) <= 1:
        return []
    fewest = min(int(round(f.steps * f.denoise, 6)) for f in plan.frames[1:])
    return [
        f"img2img feedback: strength {span(plan, 'strength', start=1)}; "
        f"denoising steps per frame after the first: at least {fewest}"
    ]


def span(plan: Plan, field: str, start: int = 0) -> str:
    """A plan column's value, or its range when it changes (``0.4 to 0.6 (scheduled)``)."""
    values = [getattr(f, field) for f in plan.frames[start:]]
    low, high = min(values), max(values)
    return f"{low:g}" if low == high else f"{low:g} to {high:g} (scheduled)"


def _names(plan: Plan, field: str) -> str:
    names = list(dict.fromkeys(getattr(f, field) for f in plan.frames))
    return names[0] if len(names) == 1 else " then ".join(names) + " (scheduled)"

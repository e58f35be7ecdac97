"""A readable summary of a validated spec: what will be rendered, before any GPU time is spent."""

from __future__ import annotations

from flipbook.spec.model import Spec


def summarize(spec: Spec) -> str:
    a, s, m = spec.animation, spec.sampling, spec.model
    seconds = a.max_frames / a.fps
    seed = "random (recorded at render)" if s.seed == -1 else str(s.seed)
    lines = [
        f"ok: {a.mode} animation, {a.max_frames} frames at {a.fps:g} fps ({seconds:.2f} s), {a.width}x{a.height}",
        f"model: {m.name}" + (f" (models dir {m.models_dir})" if m.models_dir else ""),
        f"sampling: {s.sampler}, {s.steps} steps, cfg {s.cfg:g}, seed {seed}, clip skip {s.clip_skip}",
    ]
    if a.mode == "travel":
        denoise = 1 - a.strength
        lines.append(
            f"img2img feedback: strength {a.strength:g} (denoise {denoise:g}, "
            f"~{max(1, int(s.steps * denoise))} steps per frame after the first)"
        )
    lines.append("prompts:")
    for key, text in spec.prompts.items():
        note = "" if key < a.max_frames else "  (after the last frame: never reached)"
        lines.append(f"  {key:>5}: {text}{note}")
    if spec.negative_prompt:
        lines.append(f"negative: {spec.negative_prompt}")
    lines.append(
        f"output: {spec.output.dir}/{spec.output.name or 'flipbook'}/ as {', '.join(spec.output.formats)}"
    )
    return "\n".join(lines)

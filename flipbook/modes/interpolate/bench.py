"""``flipbook bench interpolate``: the latent walk with frames batched against one frame per call (the harness
is :mod:`flipbook.bench.batching`)."""

from __future__ import annotations

from pathlib import Path

from flipbook.bench.batching import CFG, NEGATIVE, PROMPTS, SEED
from flipbook.bench.batching import run as run_batching
from flipbook.modes.interpolate import INTERPOLATE
from flipbook.spec.model import Spec


def run(**options) -> str:
    return run_batching(walk_spec, case=INTERPOLATE.name, **options)


def walk_spec(
    model: str, width: int, height: int, steps: int, sampler: str, frames: int, batch: int, folder: Path
) -> Spec:
    """A walk between two keyframes (the first and last frame), ``batch`` frames per UNet call."""
    keys = {"0": PROMPTS["0"], str(frames - 1): PROMPTS["8"]}
    return Spec(
        model={"name": model},
        sampling={"sampler": sampler, "steps": steps, "cfg": CFG, "seed": SEED},
        animation={"mode": INTERPOLATE.name, "max_frames": frames, "width": width, "height": height},
        prompts=keys,
        negative_prompt=NEGATIVE,
        interpolate={"batch_size": batch},
        output={"formats": ["png"], "name": "bench"},
    )

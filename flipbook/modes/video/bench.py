"""``flipbook bench video``: restyling a synthetic clip with frames batched against one frame per call (the
harness is :mod:`flipbook.bench.batching`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flipbook.bench.batching import CFG, NEGATIVE, PROMPTS, SEED
from flipbook.bench.batching import run as run_batching
from flipbook.io.writers import write_mp4
from flipbook.modes.video import VIDEO
from flipbook.spec.model import Spec


def run(**options) -> str:
    return run_batching(video_spec, case=VIDEO.name, **options)


def video_spec(
    model: str, width: int, height: int, steps: int, sampler: str, frames: int, batch: int, folder: Path
) -> Spec:
    """A moving square on a textured background (written to ``folder`` once) through img2img at denoise 0.5,
    no feedback, ``batch`` frames per UNet call."""
    source = folder / "source.mp4"
    if not source.exists():
        write_mp4(_moving_square(frames, width, height), source, fps=12, crf=18)
    return Spec(
        model={"name": model},
        sampling={"sampler": sampler, "steps": steps, "cfg": CFG, "seed": SEED, "seed_behavior": "fixed"},
        animation={
            "mode": VIDEO.name,
            "max_frames": frames,
            "width": width,
            "height": height,
            "strength": 0.5,
        },
        prompts={"0": PROMPTS["0"]},
        negative_prompt=NEGATIVE,
        init={"video": source},
        video={"batch_size": batch},
        output={"formats": ["png"], "name": "bench"},
    )


def _moving_square(frames: int, width: int, height: int) -> list[np.ndarray]:
    rng = np.random.default_rng(SEED)
    background = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    side = max(4, min(width, height) // 4)
    clip = []
    for i in range(frames):
        frame = background.copy()
        left = (i * max(1, width // 32)) % max(1, width - side)
        frame[height // 3 : height // 3 + side, left : left + side] = (240, 200, 40)
        clip.append(frame)
    return clip

"""Measured understanding: held-out captions sampled through the normal SD path, judged by the judge.

The captions are full ones (every attribute stated) whose attribute combination never appeared in training
(:func:`flipbook.toy.world.is_held_out`); each is sampled with seed = its index, at each guidance scale.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from flipbook.toy.judge import judge
from flipbook.toy.world import ATTRIBUTES, caption, sample_scene


def held_out_captions(count: int, seed: int = 0) -> list[str]:
    """``count`` full captions of held-out attribute combinations, deterministic from ``seed``."""
    rng = np.random.default_rng([seed, 9])
    return [caption(sample_scene(rng, held_out=True)) for _ in range(count)]


@dataclass
class Scores:
    """Share of pictures that show each attribute of their caption, at one guidance scale."""

    cfg: float
    right: Counter = field(default_factory=Counter)
    stated: Counter = field(default_factory=Counter)

    def add(self, verdict: dict[str, bool]) -> None:
        for name, ok in verdict.items():
            self.stated[name] += 1
            self.right[name] += bool(ok)

    def share(self, name: str) -> float:
        return self.right[name] / self.stated[name] if self.stated[name] else float("nan")

    def as_dict(self) -> dict[str, float]:
        return {name: round(self.share(name), 4) for name in ATTRIBUTES}


def evaluate(
    model: str = "shapes",
    *,
    count: int = 200,
    steps: int = 20,
    cfgs: tuple[float, ...] = (5.0, 1.0),
    sampler: str = "Euler a",
    seed: int = 0,
    batch_size: int = 50,
) -> list[Scores]:
    """Judge ``count`` held-out captions sampled at each of ``cfgs``; one :class:`Scores` per cfg."""
    from flipbook.models.loading import load_model
    from flipbook.sampling.core import SamplingCore
    from flipbook.sampling.requests import FrameRequest

    core = SamplingCore(load_model(model, device="cpu"))
    captions = held_out_captions(count, seed)
    results = []
    for cfg in cfgs:
        requests = [
            FrameRequest(
                prompt=text,
                seed=i,
                num_inference_steps=steps,
                guidance_scale=cfg,
                sampler=sampler,
                width=64,
                height=64,
            )
            for i, text in enumerate(captions)
        ]
        images = core.generate(requests, batch_size=batch_size, output_type="np")
        scores = Scores(cfg)
        for text, image in zip(captions, images, strict=True):
            scores.add(judge(_uint8(image), text))
        results.append(scores)
    return results


def _uint8(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    return array

"""Noise for the latent walk: one standard-normal latent per keyframe, slerp between two of them, and the walk
through the keyframes (:class:`KeyframeWalk`: open, or closed into a loop).

Why slerp: two independent Gaussian latents in thousands of dimensions are nearly orthogonal with nearly equal
norms. Their linear mix at w = 0.5 has only ~71% of that norm, which the sampler reads as "less noise" and
renders as a washed-out, blurry frame; moving along the great circle keeps the norm and gives frames as sharp
as the keyframes (stable-diffusion-videos, GIFfusion).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

PARALLEL_DOT = 0.9995
"""Above this |cosine| the two directions are (anti)parallel: the arc is ill-defined, so slerp falls back to
lerp (the same threshold as the latent-walk tools)."""


def keyframe_noise(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """A standard-normal latent from ``seed``, drawn on the CPU in float32 like the sampling core's own draws,
    so a frame whose walk weight is 0 starts from exactly the noise a plain txt2img with that seed uses."""
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)


def slerp(a: torch.Tensor, b: torch.Tensor, weight: float) -> torch.Tensor:
    """Spherical interpolation of two whole tensors (flattened) at ``weight`` in [0, 1], in float64.

    ``weight`` 0 and 1 return ``a`` and ``b`` exactly. Between, the result is
    ``sin((1 - w) theta) / sin(theta) a + sin(w theta) / sin(theta) b`` with theta the angle between them:
    for unit vectors it stays on the unit sphere.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"slerp weight must be in [0, 1], not {weight}")
    if weight == 0.0:
        return a.clone()
    if weight == 1.0:
        return b.clone()
    a64, b64 = a.double(), b.double()
    norms = a64.norm() * b64.norm()
    dot = float((a64 * b64).sum() / norms) if norms > 0 else 1.0
    if abs(dot) > PARALLEL_DOT:
        mixed = (1.0 - weight) * a64 + weight * b64
    else:
        theta = torch.arccos(torch.tensor(dot, dtype=torch.float64))
        sin_theta = torch.sin(theta)
        mixed = (torch.sin((1.0 - weight) * theta) * a64 + torch.sin(weight * theta) * b64) / sin_theta
    return mixed.to(a.dtype)


class KeyframeWalk:
    """The noise of every frame of a walk through keyframes: frame i of keyframe ``key``'s segment starts from
    that keyframe's noise slerped toward the next keyframe's at the frame's weight ``blend`` (0: the keyframe's
    own noise, exactly what a plain txt2img with its seed draws). Keyframe k's noise comes from ``seed_of(k)``.
    Frames before the first keyframe hold it; from the last keyframe on the walk holds too, or, ``closed``,
    heads back to the first keyframe (a loop). Each keyframe's noise is drawn once per latent shape."""

    def __init__(self, keys: Iterable[int], seed_of: Callable[[int], int], *, closed: bool = False) -> None:
        self.keys = sorted(set(keys))
        self.seed_of = seed_of
        self.closed = closed
        self._cache: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}

    def noise(self, index: int, key: int, blend: float, shape: tuple[int, ...]) -> torch.Tensor:
        """Frame ``index``'s noise: keyframe ``key`` (the one in force) toward the next at ``blend``."""
        start = self.key_noise(key, shape)
        after = self.next_key(index, key)
        if after is None or blend == 0.0:
            return start
        return slerp(start, self.key_noise(after, shape), blend)

    def next_key(self, index: int, key: int) -> int | None:
        """The keyframe frame ``index`` walks toward, or None where it holds ``key``."""
        if index < key:  # before the first keyframe: it holds
            return None
        later = [k for k in self.keys if k > key]
        if later:
            return later[0]
        return self.keys[0] if self.closed and len(self.keys) > 1 else None

    def key_noise(self, key: int, shape: tuple[int, ...]) -> torch.Tensor:
        seed = self.seed_of(key)
        if (seed, shape) not in self._cache:
            self._cache[(seed, shape)] = keyframe_noise(seed, shape)
        return self._cache[(seed, shape)]

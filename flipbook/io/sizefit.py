"""Size targets (``output.gif_max_mb``, ``webp_max_mb``, ``apng_max_mb``): the best encoding under a budget.

Each format offers a few ladders, one per way of saving bytes (smaller frames, fewer colours, lossier
coding), each best quality first and smaller further down. :func:`fit` bisects one ladder for its first rung
that fits, encoding only the rungs it looks at (about log2 of the ladder's length); :func:`best_fit` does that
for every ladder and keeps, of the rungs that fit, the one whose frames are closest to the source (PSNR,
:func:`psnr`, measured on the decoded file, scaled back up): which way costs least depends on the picture and
its size (measured: on a 512x512 photo smaller frames won, on the same photo at 96x96 fewer colours). When no
rung fits, the smallest file tried is kept and the caller says so. The caller says what was chosen
(:func:`fit_note`); nothing is dropped or changed without that line.

Frames are resized (:func:`resize_frames`) and frame rates lowered (:func:`step_frames`, every n-th frame kept)
only as rungs of a ladder; lowering the frame rate is on the ladder only when ``output.max_mb_allow_fps`` is
set.
"""

from __future__ import annotations

import bisect
import io
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from PIL import Image, ImageSequence

from flipbook.io.frames import mapped, picked

logger = logging.getLogger(__name__)

R = TypeVar("R")  # a rung of a ladder: the settings of one encoding
FRAME_STEPS = (1, 2, 3, 4)  # every n-th frame, when a size target may lower the frame rate
MIN_SIDE = 16  # a size target never makes frames smaller than this many pixels on a side
BYTES_PER_MB = 1_000_000  # sites state limits in decimal megabytes (Discord's 10 MB is 10,000,000 bytes)


@dataclass(frozen=True)
class Fit(Generic[R]):
    """The rung chosen, its encoded bytes, whether they fit, and how many rungs were encoded."""

    rung: R
    data: bytes
    fits: bool
    tried: int


def fit(ladder: Sequence[R], encode: Callable[[R], bytes], max_bytes: int) -> Fit[R]:
    """Bisect ``ladder`` (best first, sizes falling) for the first rung whose encoding has at most
    ``max_bytes``; of the rungs encoded, the best that fits wins, else the smallest."""
    encoded: dict[int, bytes] = {}

    def fits(index: int) -> bool:
        if index not in encoded:
            encoded[index] = encode(ladder[index])
        return len(encoded[index]) <= max_bytes

    bisect.bisect_left(range(len(ladder)), True, key=fits)
    fitting = sorted(i for i, data in encoded.items() if len(data) <= max_bytes)
    best = fitting[0] if fitting else min(encoded, key=lambda i: len(encoded[i]))
    return Fit(ladder[best], encoded[best], bool(fitting), len(encoded))


def best_fit(
    ladders: Sequence[Sequence[R]],
    encode: Callable[[R], bytes],
    quality: Callable[[R, bytes], float],
    max_bytes: int,
    fallback: Sequence[R] = (),
) -> Fit[R]:
    """The rung to use: the first rung of the first ladder (the settings as given) when it fits; else, of the
    first fitting rung of each ladder, the one with the highest ``quality``; else the first fitting rung of
    ``fallback`` (everything at once); else the smallest file encoded. Rungs are encoded once."""
    cache: dict[R, bytes] = {}

    def cached(rung: R) -> bytes:
        if rung not in cache:
            cache[rung] = encode(rung)
            logger.info("size target: %s -> %d bytes", rung, len(cache[rung]))
        return cache[rung]

    def chosen(rung: R, fits: bool = True) -> Fit[R]:
        return Fit(rung, cache[rung], fits, len(cache))

    first = ladders[0][0]
    if len(cached(first)) <= max_bytes:
        return chosen(first)
    fitting = list(
        dict.fromkeys(f.rung for f in (fit(ladder, cached, max_bytes) for ladder in ladders) if f.fits)
    )
    if fitting:
        return chosen(
            max(fitting, key=lambda rung: quality(rung, cache[rung])) if len(fitting) > 1 else fitting[0]
        )
    if fallback:
        last = fit(fallback, cached, max_bytes)
        if last.fits:
            return chosen(last.rung)
    return chosen(min(cache, key=lambda rung: len(cache[rung])), fits=False)


def psnr(source: Sequence[np.ndarray], shown: Iterable[np.ndarray]) -> float:
    """Mean per-frame PSNR in dB of ``shown`` against ``source``; frames of another size are scaled to the
    source's first (bicubic), so detail lost to a smaller scale counts. Both are read one frame at a time."""
    height, width = source[0].shape[:2]
    values = []
    for a, b in zip(source, shown, strict=True):
        if b.shape != a.shape:
            b = np.asarray(Image.fromarray(b).resize((width, height), Image.Resampling.BICUBIC))
        mse = float(np.mean((a.astype(np.float64) - b) ** 2))
        values.append(10 * math.log10(255**2 / max(mse, 1e-10)))
    return float(np.mean(values))


def decode_frames(data: bytes, count: int | None = None) -> list[np.ndarray]:
    """The frames of an animated GIF, WebP or PNG as shown (composited, RGB). With ``count``, the picture
    shown in the middle of each of ``count`` equal frame times, so a file whose encoder merged identical
    frames into one longer frame still lines up with its source (and rounded delays do not shift it)."""
    return list(shown_frames(data, count))


def shown_frames(data: bytes, count: int | None = None) -> Iterator[np.ndarray]:
    """:func:`decode_frames` one frame at a time (a first pass reads the frame times, a second decodes), so
    a size target's quality check holds two frames, not the clip."""
    starts, clock = _frame_starts(data)
    with Image.open(io.BytesIO(data)) as image:
        decoded = (np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image))
        if count is None or count == len(starts) or clock <= 0:
            yield from decoded
            return
        wanted = [bisect.bisect_right(starts, (i + 0.5) * clock / count) - 1 for i in range(count)]
        position, current = -1, None
        for index in wanted:  # never decreasing: each file frame is decoded once
            while position < index:
                current, position = next(decoded), position + 1
            assert current is not None
            yield current


def _frame_starts(data: bytes) -> tuple[list[float], float]:
    """When each frame of an animated image starts (ms) and the total time."""
    starts, clock = [], 0.0
    with Image.open(io.BytesIO(data)) as image:
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            starts.append(clock)
            clock += float(image.info.get("duration") or 0)
    return starts, clock


def scales_for(shape: tuple[int, ...], scales: Sequence[float]) -> list[float]:
    """The scales that keep both sides at least MIN_SIDE pixels (1 always stays)."""
    short = min(shape[:2])
    return [s for s in scales if s == 1 or short * s >= MIN_SIDE]


def frame_steps(allow_fps: bool, n_frames: int) -> list[int]:
    """Frame steps a ladder may use: 1 only, unless lowering the frame rate is allowed (and leaves 2 frames)."""
    if not allow_fps:
        return [1]
    return [step for step in FRAME_STEPS if step == 1 or math.ceil(n_frames / step) >= 2]


def resize_frames(arrays: Sequence[np.ndarray], scale: float) -> Sequence[np.ndarray]:
    """Frames scaled by ``scale`` (Lanczos), rounded to whole pixels; unchanged at 1. Frames on disk are
    resized as they are read (a lazy view), a list at once."""
    if scale == 1:
        return arrays
    height, width = arrays[0].shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return mapped(arrays, lambda a: np.asarray(Image.fromarray(a).resize(size, Image.Resampling.LANCZOS)))


def step_frames(arrays: Sequence[np.ndarray], step: int) -> Sequence[np.ndarray]:
    """Every ``step``-th frame, from the first (a view of frames on disk)."""
    return picked(arrays, range(0, len(arrays), step))


def fit_note(
    fmt: str, max_mb: float, size_bytes: int, fits: bool, chosen: str, step: int, n_frames: int, fps: float
) -> str:
    """One line saying what a size target chose, or that nothing fits and by how much."""
    mb = size_bytes / BYTES_PER_MB
    if step > 1:
        kept = math.ceil(n_frames / step)
        chosen += f"; 1 frame in {step} kept ({kept} of {n_frames}: {fps / step:g} fps instead of {fps:g})"
    if fits:
        return f"{fmt} fits {max_mb:g} MB: {mb:.2f} MB with {chosen}"
    over = mb - max_mb
    hint = "" if step > 1 else "; output.max_mb_allow_fps = true lets it lower the frame rate"
    return (
        f"{fmt} does not fit {max_mb:g} MB: the smallest tried is {mb:.2f} MB ({over:.2f} MB over) with "
        f"{chosen}{hint}"
    )

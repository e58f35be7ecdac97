"""Benchmark ``frame-interpolation``: in-between frames per second of flow interpolation on the CPU, x2 and x4.

The scene is synthetic, so the true in-betweens are known: a textured square moving right (and a little
down) over a textured background that pans slowly left, the kind of motion a camera move plus a moving
subject gives. The ground truth is rendered at every in-between position; the inputs are every
``factor``-th of those frames. Each case interpolates all ``frames`` inputs with :func:`interpolate_frames`
as in real use (flows computed once per pair, pairs spread over one thread per core), once to warm up, then
``runs`` times; the median wall time is reported as in-between frames per second, alongside the mean
absolute error (0-255) of the in-betweens against the truth for ``flow`` and for the plain cross-fade
(``blend``). Frames are made before the clock starts; nothing is written to disk while timed.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from flipbook.bench.report import write_report
from flipbook.post.frame_interpolation import interpolate_frames

FACTORS = (2, 4)
OBJECT_SPEED = (12.0, 2.0)  # pixels per input frame at 512x512, (x, y); scaled with the frame size
BACKGROUND_SPEED = -3.0  # background pan, pixels per input frame at 512 wide
SEED = 7


def run(*, out: Path, frames: int = 30, width: int = 512, height: int = 512, runs: int = 3, **ignored) -> str:
    """Time x2 and x4 flow interpolation of ``frames`` frames at ``width`` x ``height``; write
    ``frame-interpolation-<W>x<H>.json`` and ``.md`` under ``out`` and return the markdown table."""
    cases = [_case(factor, frames, width, height, runs) for factor in FACTORS]
    result = {
        "case": "frame-interpolation",
        "size": f"{width}x{height}",
        "frames": frames,
        "runs": runs,
        "method": "flow",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
        "cases": cases,
    }
    return _write(result, Path(out))


def _case(factor: int, frames: int, width: int, height: int, runs: int) -> dict:
    """One factor: timings of ``runs`` runs after a warm-up, and the in-betweens' errors against the truth."""
    truth = scene_frames((frames - 1) * factor + 1, width, height, step=1.0 / factor)
    inputs = truth[::factor]
    interpolate_frames(inputs[:3], factor=factor)  # warm-up: OpenCV's first calls allocate and spin up
    times, result = [], []
    for _ in range(runs):
        start = time.perf_counter()
        result = interpolate_frames(inputs, factor=factor)
        times.append(time.perf_counter() - start)
    blend = interpolate_frames(inputs, factor=factor, method="blend")
    tweens = (frames - 1) * (factor - 1)
    seconds = statistics.median(times)
    return {
        "factor": factor,
        "in_betweens": tweens,
        "in_betweens_per_s": tweens / seconds,
        "ms_per_in_between": 1000 * seconds / tweens,
        "flow_mean_abs_error": _tween_error(result, truth, factor),
        "blend_mean_abs_error": _tween_error(blend, truth, factor),
        "times_s": times,
    }


def scene_frames(count: int, width: int, height: int, *, step: float = 1.0) -> list[np.ndarray]:
    """``count`` frames of the moving scene, ``step`` input-frame intervals apart (1/4 for x4 truth)."""
    scale = width / 512
    background = _texture(height, width + int(abs(BACKGROUND_SPEED) * scale * count * step) + 2, SEED)
    size = max(8, min(width, height) // 4)
    square = _texture(size, size, SEED + 1)
    frames = []
    for index in range(count):
        t = index * step
        shift = BACKGROUND_SPEED * scale * t  # content moves by shift px; the texture is wide enough
        view = cv2.warpAffine(background, np.float32([[1, 0, shift], [0, 1, 0]]), (width, height))
        x = width / 8 + OBJECT_SPEED[0] * scale * t
        y = height / 3 + OBJECT_SPEED[1] * scale * t
        frames.append(_paste(view, square, x, y))
    return frames


def _texture(height: int, width: int, seed: int) -> np.ndarray:
    """Noise at several scales (fine grain to broad blotches), like the detail of a generated image."""
    rng = np.random.default_rng(seed)
    total = np.zeros((height, width, 3), np.float32)
    for sigma in (1.0, 4.0, 16.0):
        layer = cv2.GaussianBlur(rng.standard_normal((height, width, 3)).astype(np.float32), (0, 0), sigma)
        total += layer / layer.std()
    return np.clip(128 + 40 * total / np.sqrt(3), 0, 255).astype(np.uint8)


def _paste(view: np.ndarray, square: np.ndarray, x: float, y: float) -> np.ndarray:
    """``square`` over ``view`` with its corner at sub-pixel (x, y), edges anti-aliased."""
    height, width = view.shape[:2]
    matrix = np.float32([[1, 0, x], [0, 1, y]])
    mask = cv2.warpAffine(np.ones(square.shape[:2], np.float32), matrix, (width, height))[..., None]
    moved = cv2.warpAffine(square, matrix, (width, height)).astype(np.float32)
    return np.clip(np.rint(view * (1 - mask) + moved * mask), 0, 255).astype(np.uint8)


def _tween_error(frames: list[np.ndarray], truth: list[np.ndarray], factor: int) -> float:
    """Mean absolute error of the in-betweens (not the kept inputs) against the true frames."""
    errors = [
        np.abs(frame.astype(np.float32) - true).mean()
        for index, (frame, true) in enumerate(zip(frames, truth, strict=True))
        if index % factor
    ]
    return float(np.mean(errors))


def _write(result: dict, out: Path) -> str:
    """Write ``frame-interpolation-<size>.json`` and ``.md`` under ``out``; return the markdown."""
    return write_report(result, out, f"frame-interpolation-{result['size']}", _markdown(result))


def _markdown(r: dict) -> str:
    header = (
        "| size | factor | in-betweens | in-betweens/s | ms per in-between | flow error | cross-fade error "
        "| machine |"
    )
    rule = "|---|---|---|---|---|---|---|---|"
    rows = [
        f"| {r['size']} | x{c['factor']} | {c['in_betweens']} | {c['in_betweens_per_s']:.1f} "
        f"| {c['ms_per_in_between']:.1f} | {c['flow_mean_abs_error']:.2f} | {c['blend_mean_abs_error']:.2f} "
        f"| {r['machine']}, OpenCV {r['opencv']} ({r['opencv_threads']} threads) |"
        for c in r["cases"]
    ]
    return "\n".join([header, rule, *rows])

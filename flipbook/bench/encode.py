"""Benchmark ``encode``: how long each output encoder takes for one animation, and how big the files are.

The clip stands in for Stable Diffusion frames (which compress nothing like flat colour): smooth colour
gradients that move, a drifting band-limited random texture and mild per-frame grain, 120 frames of
512x512 by default. Timed: GIF (global palette, no dither: the defaults), MP4 H.264 at the default preset
and, for the record, at ``medium``, VP9 WebM and animated WebP, each through its public writer into a
temporary folder. Every encoder runs once untimed on a short clip first (codec libraries load lazily), then
``runs`` times; the median wall and CPU seconds are reported with the targets for GIF and MP4. CPU seconds
count all the process's threads, so they change less than wall time when the machine is busy.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import PIL
from PIL import Image

from flipbook.bench.report import write_report
from flipbook.errors import FlipbookError
from flipbook.io.writers import (
    DEFAULT_X264_PRESET,
    gif_optimizer,
    write_gif,
    write_mp4,
    write_webm,
    write_webp,
)

FPS = 12
TARGETS_S = {"gif": 3.0, "mp4": 1.5}  # at 512x512, 120 frames, on a 2-core machine
Encoder = Callable[[list[np.ndarray], Path], Path]


def encoders() -> dict[str, Encoder]:
    """The timed cases: name -> a function writing the frames to a file in the given folder."""
    return {
        "gif": lambda frames, folder: write_gif(frames, folder / "a.gif", fps=FPS),
        "mp4": lambda frames, folder: write_mp4(frames, folder / "a.mp4", fps=FPS),
        "mp4-medium": lambda frames, folder: write_mp4(frames, folder / "b.mp4", fps=FPS, preset="medium"),
        "webm": lambda frames, folder: write_webm(frames, folder / "a.webm", fps=FPS),
        "webp": lambda frames, folder: write_webp(frames, folder / "a.webp", fps=FPS),
    }


def run(
    *, out: Path, frames: int = 120, width: int = 512, height: int = 512, runs: int = 3, **ignored
) -> str:
    """Time every encoder ``runs`` times on one clip; write ``encode-<W>x<H>.json`` and ``.md`` under ``out``."""
    if frames < 2:
        raise FlipbookError("frames", frames, "at least 2")
    if runs < 1:
        raise FlipbookError("runs", runs, "at least 1")
    clip = bench_frames(frames, width, height)
    rows = {name: _time(encode, clip, runs) for name, encode in encoders().items()}
    result = {
        "case": "encode",
        "size": f"{width}x{height}",
        "frames": frames,
        "fps": FPS,
        "runs": runs,
        "machine": _machine(),
        "mp4_default_preset": DEFAULT_X264_PRESET,
        "gif_optimizer": gif_optimizer(),
        "targets_s": TARGETS_S,
        "encoders": rows,
    }
    return _write(result, Path(out))


def bench_frames(n: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """Moving colour gradients over a drifting smooth random texture, plus mild grain (HxWx3 uint8)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    texture = Image.fromarray(texture).resize((2 * width, 2 * height), Image.Resampling.BICUBIC)
    texture = np.asarray(texture).astype(np.float32) - 128
    frames = []
    for i in range(n):
        t = 2 * np.pi * i / n
        red = 128 + 70 * np.sin(x / 97 + t) * np.cos(y / 131 - t)
        green = 128 + 70 * np.sin((x + y) / 173 - 2 * t)
        blue = 128 + 70 * np.cos(np.hypot(x - width / 2, y - height / 2) / 59 - t)
        dx, dy = (2 * i) % width, i % height
        image = np.stack([red, green, blue], -1) + 0.5 * texture[dy : dy + height, dx : dx + width]
        image += rng.normal(0, 2, (height, width, 1))
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
    return frames


def _time(encode: Encoder, clip: list[np.ndarray], runs: int) -> dict:
    """Median wall and CPU seconds of ``runs`` encodes (after one short untimed warm-up) and the file size."""
    walls, cpus, size = [], [], 0
    with tempfile.TemporaryDirectory(prefix="flipbook-bench-encode-") as folder:
        encode(clip[:2], Path(folder))
        for _ in range(runs):
            wall, cpu = time.perf_counter(), time.process_time()
            path = encode(clip, Path(folder))
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            size = path.stat().st_size
    return {
        "wall_s": statistics.median(walls),
        "cpu_s": statistics.median(cpus),
        "bytes": size,
        "wall_times": walls,
    }


def _machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info}), Pillow {PIL.__version__}"
    )


def _write(result: dict, out: Path) -> str:
    """Write ``encode-<size>.json`` and ``.md`` under ``out``; return the markdown."""
    return write_report(result, out, f"encode-{result['size']}", _markdown(result))


def _markdown(r: dict) -> str:
    lines = [
        f"{r['frames']} frames of {r['size']} at {r['fps']} fps, median of {r['runs']} runs; {r['machine']}; "
        f"MP4 default preset {r['mp4_default_preset']}; GIF optimiser {r['gif_optimizer']}",
        "",
        "| encoder | wall s | CPU s | target s | MB |",
        "|---|---|---|---|---|",
    ]
    for name, row in r["encoders"].items():
        target = r["targets_s"].get(name)
        verdict = (
            "" if target is None else f"<= {target:g} ({'met' if row['wall_s'] <= target else 'missed'})"
        )
        lines.append(
            f"| {name} | {row['wall_s']:.2f} | {row['cpu_s']:.2f} | {verdict} | {row['bytes'] / 1e6:.2f} |"
        )
    return "\n".join(lines)

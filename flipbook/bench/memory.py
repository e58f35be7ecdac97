"""Benchmark ``memory``: peak resident memory of encoding and post-processing, short clip against long.

An animation's length must not decide how much memory its outputs need. This case writes a short and a long
clip of cheap synthetic 512x512 PNG frames to disk (moving gradients; nothing is rendered), then runs each
command a user would run on them in a child process of its own and reads that child's peak resident set size
from the kernel (``os.wait4``'s resource usage: ``ru_maxrss``, the child alone):

- ``flipbook encode FRAMES --to FMT`` for every encoder (mp4, mp4-h265, webm, gif, webp, apng, png frames);
- ``flipbook interpolate FRAMES --x 2`` (optical-flow in-betweens, PNG frames out);
- ``flipbook upscale FRAMES --scale 2`` (Lanczos, PNG frames out).

The long clip has ``frames`` frames (1200 by default), the short one an eighth of that; the target is the long
clip's peak within 10% of the short one's for every command. Python, NumPy, PyAV and Pillow alone take about
100 MB, which both clips share.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from flipbook.bench.report import write_report
from flipbook.errors import FlipbookError

FPS = 24
TARGET_RATIO = 1.10  # the long clip's peak RSS at most 10% over the short clip's
SHORT_PART = 8  # the short clip has 1/8 of the long one's frames (150 of 1200)
ENCODERS = ("mp4", "mp4-h265", "webm", "gif", "webp", "apng", "png")
# The CLI as a child process: the module's entry point, so the measurement does not depend on PATH.
CLI = (sys.executable, "-c", "from flipbook.cli import main; main()")


def commands(frames: Path, out: Path) -> dict[str, list[str]]:
    """Each measured command line (without the interpreter), by name; outputs go under ``out``."""
    encode = {
        fmt: ["encode", str(frames), "--to", fmt, "--fps", str(FPS), "--out", str(out), "--name", fmt]
        for fmt in ENCODERS
    }
    return {
        **{f"encode {fmt}": line for fmt, line in encode.items()},
        "interpolate x2 (flow)": ["interpolate", str(frames), "--x", "2", "--out", str(out / "interpolated")],
        "upscale x2 (lanczos)": ["upscale", str(frames), "--scale", "2", "--out", str(out / "upscaled")],
    }


def run(*, out: Path, frames: int = 1200, width: int = 512, height: int = 512, **ignored) -> str:
    """Measure every command on a clip of ``frames // 8`` and of ``frames`` frames; write
    ``memory-<W>x<H>.json`` and ``.md`` under ``out``."""
    if frames < 2 * SHORT_PART:
        raise FlipbookError("frames", frames, f"at least {2 * SHORT_PART}")
    counts = (frames // SHORT_PART, frames)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="flipbook-bench-memory-") as folder:
        root = Path(folder)
        for count in counts:
            clip = root / f"clip-{count}"
            write_clip(clip, count, width, height)
            for name, line in commands(clip, root / f"out-{count}").items():
                peak, seconds = peak_rss(line)
                rows.setdefault(name, {})[str(count)] = {"peak_mb": peak / 1e6, "seconds": seconds}
    result = {
        "case": "memory",
        "size": f"{width}x{height}",
        "frames": list(counts),
        "fps": FPS,
        "target_ratio": TARGET_RATIO,
        "commands": rows,
    }
    return write_report(result, Path(out), f"memory-{width}x{height}", _markdown(result))


def write_clip(folder: Path, count: int, width: int, height: int) -> None:
    """``count`` PNG frames of moving colour gradients (cheap to make, PNG level 1)."""
    folder.mkdir(parents=True)
    y, x = np.mgrid[0:height, 0:width]
    for i in range(count):
        red = (x + 3 * i) % 256
        green = (y + 2 * i) % 256
        blue = (x // 2 + y // 2 + i) % 256
        array = np.stack([red, green, blue], -1).astype(np.uint8)
        Image.fromarray(array).save(folder / f"frame_{i:05d}.png", compress_level=1)


def peak_rss(line: list[str]) -> tuple[int, float]:
    """Run the CLI with ``line`` in a child process; its peak resident set size in bytes and its wall time.
    Why ``wait4``: it reports the resource usage of that one child, not the maximum over every child so far."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    child = subprocess.Popen([*CLI, *line], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert child.stderr is not None
    errors = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        detail = errors.decode(errors="replace").strip()[-500:]
        raise FlipbookError("command", " ".join(line), "a command that succeeds", detail=detail)
    return usage.ru_maxrss * 1024, seconds  # Linux reports kilobytes


def _markdown(r: dict) -> str:
    short, long = r["frames"]
    lines = [
        f"Peak RSS of each command in a child process, {short} against {long} frames of {r['size']} "
        f"(PNG frames on disk); target: {long} frames within {100 * (r['target_ratio'] - 1):.0f}% of {short}",
        "",
        f"| command | {short} frames MB | {long} frames MB | ratio | target | {long} frames s |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in r["commands"].items():
        a, b = row[str(short)], row[str(long)]
        ratio = b["peak_mb"] / a["peak_mb"]
        verdict = "met" if ratio <= r["target_ratio"] else "missed"
        lines.append(
            f"| {name} | {a['peak_mb']:.0f} | {b['peak_mb']:.0f} | {ratio:.2f} | {verdict} | "
            f"{b['seconds']:.1f} |"
        )
    return "\n".join(lines)

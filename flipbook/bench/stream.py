"""``flipbook bench stream``: video restyling with StreamDiffusion's stream batch against per-frame batches.

The same synthetic clip as ``flipbook bench video`` (img2img at denoise 0.5, no feedback) rendered four ways
through the real :func:`flipbook.runs.render.render`: one frame per UNet call; ``k`` frames per call, all at
the same step (``k`` = the steps each frame runs); a stream batch (one call advances up to ``k`` frames, each at
its own step); and the stream batch with residual guidance (no UNet rows for the negative prompt). The clock
runs over whole renders after one warm-up each, the variants taking turns. Frames are compared with the
one-frame-per-call render: the stream batch must agree up to float rounding, residual guidance is an
approximation and reports how far it moves the frames.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np

from flipbook.bench.batching import _timed_render
from flipbook.bench.report import write_report
from flipbook.bench.timing import machine
from flipbook.errors import FlipbookError
from flipbook.models.loading import load_model
from flipbook.modes.video.bench import video_spec

STRENGTH = 0.5  # the video case's denoise


def run(
    *,
    model: str,
    width: int,
    height: int,
    steps: int,
    runs: int,
    sampler: str,
    device: str,
    dtype: str,
    out: Path,
    frames: int = 16,
) -> str:
    depth = int(steps * STRENGTH)
    if depth < 2:
        raise FlipbookError("steps", steps, f"at least {int(2 / STRENGTH)} (2 steps at denoise {STRENGTH})")
    variants = {
        "one frame per call": {"batch_size": 1},
        f"{depth} frames per call": {"batch_size": depth},
        "stream batch": {"batch_size": frames, "stream_batch": True},
        "stream batch, residual cfg": {"batch_size": frames, "stream_batch": True, "residual_cfg": True},
    }
    bundle = load_model(model, device=device, dtype=dtype)
    times: dict[str, list[float]] = {name: [] for name in variants}
    images: dict[str, np.ndarray] = {}
    with (
        tempfile.TemporaryDirectory(prefix="flipbook-bench-source-") as folder,
        mock.patch("flipbook.runs.cores.load_model", lambda *args, **kwargs: bundle),
    ):
        base = video_spec(model, width, height, steps, sampler, frames, 1, Path(folder))
        specs = {
            name: base.model_copy(update={"video": base.video.model_copy(update=settings)})
            for name, settings in variants.items()
        }
        for spec in specs.values():  # warm-up
            _timed_render(spec, bundle.device)
        for _ in range(runs):
            for name, spec in specs.items():
                seconds, frames_out = _timed_render(spec, bundle.device)
                times[name].append(seconds)
                images[name] = np.stack(frames_out).astype(np.int16)
    reference = images["one frame per call"]
    rows = [
        {
            "variant": name,
            "frames_per_s": frames / statistics.median(times[name]),
            "times": times[name],
            "max_abs_diff": int(np.abs(images[name] - reference).max()),
            "mean_abs_diff": float(np.abs(images[name] - reference).mean()),
        }
        for name in variants
    ]
    for row in rows:
        row["vs_one_per_call"] = row["frames_per_s"] / rows[0]["frames_per_s"]
    result = {
        "case": "stream",
        "model": model,
        "size": f"{width}x{height}",
        "frames": frames,
        "steps_per_frame": depth,
        "sampler": sampler,
        "runs": runs,
        "device": str(bundle.device),
        "dtype": str(bundle.dtype).replace("torch.", ""),
        "machine": machine(bundle.device),
        "variants": rows,
    }
    name = f"stream-{model}-{width}x{height}-{result['device'].split(':')[0]}"
    return write_report(result, out, name, _markdown(result))


def _markdown(r: dict) -> str:
    lines = [
        f"{r['model']} {r['size']}, {r['frames']} frames of {r['steps_per_frame']} steps, {r['sampler']}, "
        f"{r['device']} {r['dtype']}",
        "",
        "| variant | frames/s | vs one frame per call | frames differ (max, mean) |",
        "|---|---|---|---|",
    ]
    for v in r["variants"]:
        lines.append(
            f"| {v['variant']} | {v['frames_per_s']:.4g} | {v['vs_one_per_call']:.2f}x "
            f"| {v['max_abs_diff']}, {v['mean_abs_diff']:.3f} |"
        )
    return "\n".join(lines)

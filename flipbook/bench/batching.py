"""The benchmark of modes whose frames are independent, rendered with frames batched against one frame per call;
each such mode's case gives the spec (``flipbook/modes/<name>/bench.py``, registered by its descriptor):

- ``interpolate``: the latent walk (keyframed prompts, per-keyframe noise, lerped embeddings).
- ``video``: restyling a synthetic source clip (a textured background with a moving square, made in a
  temporary folder) frame by frame with img2img at denoise 0.5, no feedback.

Both runs are the real :func:`flipbook.runs.render.render` of the same spec (PNG frames written) and differ
only in the mode's ``batch_size``: ``batch`` frames share every UNet call, or each frame has its own. The model is loaded once and handed to every render (as in
``camera-2d``); the clock runs over the whole render, frame 0 included (every frame is alike), after one
warm-up render each. The two take turns so drift in the machine's speed hits both alike. The frames of the
two must agree (up to float rounding: a batched convolution may sum in another order).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import PIL.Image

from flipbook.bench.report import write_report
from flipbook.bench.timing import machine, sync
from flipbook.errors import FlipbookError
from flipbook.models.loading import load_model
from flipbook.runs.render import render
from flipbook.spec.model import Spec

PROMPTS = {"0": "a lighthouse on a cliff, stormy sea, oil painting", "8": "a lighthouse at night, aurora"}
NEGATIVE = "blurry, lowres"
SEED = 1234
CFG = 7.0


SpecFor = Callable[[str, int, int, int, str, int, int, Path], Spec]
"""(model, width, height, steps, sampler, frames, batch size, a scratch folder) -> the spec to render."""


def run(
    spec_for: SpecFor,
    *,
    case: str,
    model: str,
    width: int,
    height: int,
    steps: int,
    runs: int,
    sampler: str,
    device: str,
    dtype: str,
    out: Path,
    frames: int = 8,
    batch: int = 4,
) -> str:
    """Time ``frames`` frames of ``case`` batched by ``batch`` and one by one; write JSON and markdown."""
    if frames < 2:
        raise FlipbookError("frames", frames, "at least 2")
    if batch < 2:
        raise FlipbookError("batch", batch, "at least 2 (1 is the one-by-one run it is compared with)")
    with tempfile.TemporaryDirectory(prefix="flipbook-bench-source-") as folder:
        specs = {
            size: spec_for(model, width, height, steps, sampler, frames, size, Path(folder))
            for size in (batch, 1)
        }
        return _run(specs, case, model=model, width=width, height=height, steps=steps, runs=runs,
                    sampler=sampler, device=device, dtype=dtype, out=out, frames=frames, batch=batch)  # fmt: skip


def _run(
    specs, case, *, model, width, height, steps, runs, sampler, device, dtype, out, frames, batch
) -> str:
    bundle = load_model(model, device=device, dtype=dtype)
    times: dict[int, list[float]] = {batch: [], 1: []}
    images: dict[int, list[np.ndarray]] = {}
    with mock.patch("flipbook.runs.cores.load_model", lambda *args, **kwargs: bundle):
        for size in (batch, 1):  # warm-up
            _timed_render(specs[size], bundle.device)
        for _ in range(runs):
            for size in (batch, 1):
                seconds, images[size] = _timed_render(specs[size], bundle.device)
                times[size].append(seconds)
    difference = np.abs(np.stack(images[batch]).astype(np.int16) - np.stack(images[1]))
    result = {
        "case": case,
        "model": model,
        "size": f"{width}x{height}",
        "frames": frames,
        "batch": batch,
        "steps": steps,
        "sampler": sampler,
        "cfg": CFG,
        "runs": runs,
        "device": str(bundle.device),
        "dtype": str(bundle.dtype).replace("torch.", ""),
        "machine": machine(bundle.device),
        "batched_frames_per_s": frames / statistics.median(times[batch]),
        "single_frames_per_s": frames / statistics.median(times[1]),
        "batched_times": times[batch],
        "single_times": times[1],
        "frames_max_abs_diff": int(difference.max()),
        "frames_share_differing": float((difference > 0).mean()),
    }
    result["speedup"] = result["batched_frames_per_s"] / result["single_frames_per_s"]
    return _write(result, out)


def _timed_render(spec: Spec, device) -> tuple[float, list[np.ndarray]]:
    with tempfile.TemporaryDirectory(prefix="flipbook-bench-") as folder:
        output = spec.output.model_copy(update={"dir": Path(folder)})
        sync(device)
        start = time.perf_counter()
        result = render(spec.model_copy(update={"output": output}))
        sync(device)
        seconds = time.perf_counter() - start
        frames = [np.asarray(PIL.Image.open(path)) for path in result.frames]
    return seconds, frames


def _write(result: dict, out: Path) -> str:
    return write_report(
        result,
        out,
        f"{result['case']}-{result['model']}-{result['size']}-{result['device'].split(':')[0]}",
        _markdown(result),
    )


def _markdown(r: dict) -> str:
    header = (
        "| model | size | frames | batch | steps | sampler | device | batched frames/s | one-by-one frames/s "
        "| speedup | frames differ (max, share) |"
    )
    rule = "|---|---|---|---|---|---|---|---|---|---|---|"
    row = (
        f"| {r['model']} | {r['size']} | {r['frames']} | {r['batch']} | {r['steps']} | {r['sampler']} "
        f"| {r['device']} {r['dtype']} | {r['batched_frames_per_s']:.4g} | {r['single_frames_per_s']:.4g} "
        f"| {r['speedup']:.2f}x | {r['frames_max_abs_diff']}, {100 * r['frames_share_differing']:.3f}% |"
    )
    return "\n".join([header, rule, row])

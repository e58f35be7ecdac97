"""Benchmark ``cache``: the step caches of ``[performance]`` against exact sampling, on the same requests.

For the image model (``--model``, a UNet): DeepCache with full steps every 2, 3 and 5 steps. For a video
diffusion transformer (tiny-wan; ``random-wan-1.3b`` at 832x480 when ``--model random-sd15`` asks for full-size
nets on a GPU): first-block cache, FasterCache and pyramid attention broadcast, each on a freshly loaded transformer
(diffusers enables one cache per model). Each row: seconds per image or clip (median of ``runs`` after a
warm-up), the speed-up over exact, and the mean and largest absolute difference from the exact frames (pixel
values in [0, 1]).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from flipbook.bench.report import write_report
from flipbook.bench.timing import machine, timed_runs
from flipbook.models.loading import load_model
from flipbook.models.performance import Performance, prepare
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest

PROMPT, NEGATIVE = "a lighthouse on a cliff at sunset, dramatic clouds", "blurry"
DEEPCACHE_INTERVALS = (2, 3, 5)
TRANSFORMER_CACHES = ("first-block", "faster-cache", "pyramid")
SEED = 1


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
    frames: int | None = None,
) -> str:
    rows = _unet_rows(model, width, height, steps, runs, sampler, device, dtype)
    full_size = model.startswith("random") and rows[0]["device"].startswith("cuda")
    rows += _transformer_rows(full_size, steps, runs, device, dtype, frames or 9)
    result = {
        "case": "cache",
        "model": model,
        "size": f"{width}x{height}",
        "steps": steps,
        "runs": runs,
        "device": rows[0]["device"],
        "machine": machine(torch.device(rows[0]["device"])),
        "rows": rows,
    }
    stem = f"cache-{model}-{width}x{height}-{result['device'].split(':')[0]}"
    return write_report(result, out, stem, _markdown(result))


def _unet_rows(model, width, height, steps, runs, sampler, device, dtype) -> list[dict]:
    request = FrameRequest(PROMPT, NEGATIVE, seed=SEED, num_inference_steps=steps, guidance_scale=7.0,
                           sampler=sampler, width=width, height=height)  # fmt: skip
    exact_bundle = load_model(model, device=device, dtype=dtype)
    exact = timed_runs(lambda: _image(exact_bundle, request), runs, exact_bundle.device)
    rows = [_row(model, "exact", exact_bundle, exact, exact)]
    for interval in DEEPCACHE_INTERVALS:
        bundle = load_model(model, device=device, dtype=dtype)
        prepare(bundle, Performance(unet_cache="deepcache", cache_interval=interval))
        timed = timed_runs(lambda b=bundle: _image(b, request), runs, bundle.device)
        rows.append(_row(model, f"deepcache, full every {interval}", bundle, timed, exact))
        del bundle
    return rows


def _image(bundle, request) -> np.ndarray:
    return SamplingCore(bundle).generate([request], output_type="np")[0]


def _transformer_rows(full_size: bool, steps, runs, device, dtype, frames) -> list[dict]:
    from flipbook.models.families import builtin_family
    from flipbook.sampling.segments import SegmentSettings

    name = "random-wan-1.3b" if full_size else "tiny-wan"
    family = builtin_family(name, "video diffusion")
    size = (832, 480) if name.startswith("random") else (64, 64)

    def clip(bundle) -> np.ndarray:
        length = bundle.text_length or 64
        settings = SegmentSettings(num_frames=frames, width=size[0], height=size[1], num_inference_steps=steps,
                                   guidance_scale=5.0, max_sequence_length=length)  # fmt: skip
        embeds, negative = family.encoder(bundle, PROMPT, length), family.encoder(bundle, NEGATIVE, length)
        generator = torch.Generator("cpu").manual_seed(SEED)
        return np.asarray(family.sample(bundle, embeds, negative, settings, generator=generator))

    def load():
        return family.load(name, field_name="model", device=device, dtype=dtype)

    exact_bundle = load()
    exact = timed_runs(lambda: clip(exact_bundle), runs, exact_bundle.device)
    rows = [_row(name, "exact", exact_bundle, exact, exact, size=size, frames=frames)]
    for kind in TRANSFORMER_CACHES:
        bundle = prepare(load(), Performance(transformer_cache=kind))
        timed = timed_runs(lambda b=bundle: clip(b), runs, bundle.device)
        rows.append(_row(name, kind, bundle, timed, exact, size=size, frames=frames))
        del bundle
    return rows


def _row(model, cache, bundle, timed, exact, *, size=None, frames=1) -> dict:
    difference = np.abs(
        np.asarray(timed.output, dtype=np.float64) - np.asarray(exact.output, dtype=np.float64)
    )
    return {
        "model": model,
        "cache": cache,
        "frames": frames,
        "size": f"{size[0]}x{size[1]}" if size else None,
        "device": str(bundle.device),
        "dtype": str(bundle.dtype).replace("torch.", ""),
        "seconds": timed.seconds,
        "speedup": exact.seconds / timed.seconds,
        "mean_abs_difference": float(difference.mean()),
        "max_abs_difference": float(difference.max()),
        "peak_gpu_memory_gib": timed.peak_gib,
        "times": timed.times,
    }


def _markdown(r: dict) -> str:
    header = (
        "| model | cache | frames | device | s per image/clip | speed-up | mean abs diff | max abs diff |"
    )
    rule = "|---|---|---|---|---|---|---|---|"
    rows = [
        f"| {row['model']} | {row['cache']} | {row['frames']} | {row['device']} {row['dtype']} "
        f"| {row['seconds']:.3f} | {row['speedup']:.2f}x | {row['mean_abs_difference']:.4f} "
        f"| {row['max_abs_difference']:.4f} |"
        for row in r["rows"]
    ]
    return "\n".join([header, rule, *rows])

"""Benchmark ``compile``: the sampling core with the UNet and VAE decoder compiled (``performance.compile``)
against the same model eager, on the same request.

Reports seconds per image eager and compiled (medians of ``runs`` after one warm-up each; the compiled warm-up,
which compiles, is reported on its own), their ratio, the largest difference between the two images (pixel
values in [0, 1]) and, on a GPU, the peak memory of each. The eager runs come first, then the model is compiled
in place (``models/performance.py``, as a render does it) and timed again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flipbook.bench.report import write_report
from flipbook.bench.timing import machine, timed_runs
from flipbook.models.loading import load_model
from flipbook.models.performance import Performance, prepare
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest

PROMPT, NEGATIVE = "a lighthouse on a cliff at sunset, dramatic clouds", "blurry"


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
    mode: str = "default",
) -> str:
    bundle = load_model(model, device=device, dtype=dtype)
    request = FrameRequest(PROMPT, NEGATIVE, seed=1, num_inference_steps=steps, guidance_scale=7.0,
                           sampler=sampler, width=width, height=height)  # fmt: skip

    def image() -> np.ndarray:
        return SamplingCore(bundle).generate([request], output_type="np")[0]

    eager = timed_runs(image, runs, bundle.device)
    prepare(bundle, Performance(compile=mode))
    compiled = timed_runs(image, runs, bundle.device)
    result = {
        "case": "compile",
        "model": model,
        "mode": mode,
        "size": f"{width}x{height}",
        "steps": steps,
        "sampler": sampler,
        "runs": runs,
        "device": str(bundle.device),
        "dtype": str(bundle.dtype).replace("torch.", ""),
        "machine": machine(bundle.device),
        "eager_s_per_image": eager.seconds,
        "compiled_s_per_image": compiled.seconds,
        "compiled_over_eager": compiled.seconds / eager.seconds,
        "compile_warmup_s": compiled.warmup,
        "max_abs_difference": float(np.abs(compiled.output - eager.output).max()),
        "peak_gpu_memory_gib": {"eager": eager.peak_gib, "compiled": compiled.peak_gib},
        "times": {"eager": eager.times, "compiled": compiled.times},
    }
    stem = f"compile-{model}-{width}x{height}-{result['device'].split(':')[0]}"
    return write_report(result, out, stem, _markdown(result))


def _markdown(r: dict) -> str:
    header = (
        "| model | size | steps | device | mode | eager s/img | compiled s/img | compiled/eager | compile warm-up s "
        "| max abs diff |"
    )
    rule = "|---|---|---|---|---|---|---|---|---|---|"
    row = (
        f"| {r['model']} | {r['size']} | {r['steps']} | {r['device']} {r['dtype']} | {r['mode']} "
        f"| {r['eager_s_per_image']:.3f} | {r['compiled_s_per_image']:.3f} | {r['compiled_over_eager']:.3f} "
        f"| {r['compile_warmup_s']:.1f} | {r['max_abs_difference']:.2e} |"
    )
    return "\n".join([header, rule, row])

"""Benchmark ``animatediff``: one AnimateDiff clip (``frames`` frames in one context window by default) sampled
by the animatediff mode's sampler, seconds per clip and frames per second.

The motion module is the built-in that fits the model (``tiny`` for the tiny models, ``random-sd15`` for
random-sd15 and ``random-sdxl`` for random-sdxl: random weights of the real architectures, so the timing is a
real one). Setting up (loading the
model and assembling the motion UNet) is timed once and reported apart; the clock per run covers what a render
repeats for every clip: prompt encoding (per-frame travel between two keyframes), every denoising step with
classifier-free guidance, and decoding every frame. One warm-up run first; the median of ``runs`` is reported.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from flipbook.bench.report import write_report
from flipbook.bench.timing import machine, sync
from flipbook.errors import FlipbookError

PROMPTS = ("a lighthouse on a cliff, stormy sea, oil painting", "a lighthouse at night, aurora, oil painting")
NEGATIVE = "blurry, lowres"
SEED = 1234
CFG = 7.5
MOTION_MODULES = {
    "tiny": "tiny",
    "random-sd15": "random-sd15",
    "tiny-xl": "tiny",
    "random-sdxl": "random-sdxl",
}


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
    context_length: int = 16,
) -> str:
    """Time ``frames`` frames of AnimateDiff on ``model``; write JSON and markdown under ``out``."""
    from flipbook.models.families import get_family
    from flipbook.models.families.animatediff.loading import load_motion_adapter
    from flipbook.models.loading import load_model
    from flipbook.sampling.animatediff import AnimateDiffSampler, motion_pipeline

    if frames < 2:
        raise FlipbookError("frames", frames, "at least 2")
    if model not in MOTION_MODULES:
        raise FlipbookError(
            "model", model, f"a built-in with a matching motion module: {', '.join(MOTION_MODULES)}"
        )
    start = time.perf_counter()
    bundle = load_model(model, device=device, dtype=dtype)
    pipe = motion_pipeline(bundle, load_motion_adapter(MOTION_MODULES[model], image_family=bundle.family))
    encoder = get_family(bundle.family).encoder(bundle, 1)  # the family's prompt encoder, as a render's
    clip_sampler = AnimateDiffSampler(pipe.unet, pipe.vae, encoder, bundle.scheduler_config)
    sync(bundle.device)
    setup_seconds = time.perf_counter() - start

    request = _request(width, height, steps, sampler, frames, context_length)
    times = []
    for index in range(runs + 1):
        encoder.clear()  # every run encodes its prompts, as a render does
        sync(bundle.device)
        begin = time.perf_counter()
        clip_sampler.sample(request, output_type="np")
        sync(bundle.device)
        if index:  # the first run warms up
            times.append(time.perf_counter() - begin)
    seconds = statistics.median(times)
    result = {
        "case": "animatediff",
        "model": model,
        "motion_module": MOTION_MODULES[model],
        "size": f"{width}x{height}",
        "frames": frames,
        "context_length": context_length,
        "steps": steps,
        "sampler": sampler,
        "cfg": CFG,
        "runs": runs,
        "device": str(bundle.device),
        "dtype": str(bundle.dtype).replace("torch.", ""),
        "machine": machine(bundle.device),
        "setup_s": setup_seconds,
        "s_per_clip": seconds,
        "frames_per_s": frames / seconds,
        "times": times,
        "unet_calls_per_clip": clip_sampler.stats["unet_calls"] // (runs + 1),
    }
    stem = f"animatediff-{model}-{width}x{height}-{result['device'].split(':')[0]}"
    return write_report(result, out, stem, _markdown(result))


def _request(width: int, height: int, steps: int, sampler: str, frames: int, context_length: int):
    """Prompt travel from the first prompt to the second over the clip, one seed per frame."""
    from flipbook.clips.windows import ContextOptions
    from flipbook.sampling.animatediff import ClipRequest, FramePrompt

    prompts = tuple(
        FramePrompt(
            PROMPTS[0], NEGATIVE, PROMPTS[1], NEGATIVE, blend_weight=i / (frames - 1), guidance_scale=CFG
        )
        for i in range(frames)
    )
    return ClipRequest(
        prompts=prompts, seeds=tuple(SEED + i for i in range(frames)), steps=steps, sampler=sampler,
        width=width, height=height, context=ContextOptions(length=context_length),
    )  # fmt: skip


def _markdown(r: dict) -> str:
    header = "| model | motion module | size | frames | context | steps | sampler | device | s/clip | frames/s | setup s |"
    rule = "|---|---|---|---|---|---|---|---|---|---|---|"
    row = (
        f"| {r['model']} | {r['motion_module']} | {r['size']} | {r['frames']} | {r['context_length']} "
        f"| {r['steps']} | {r['sampler']} | {r['device']} {r['dtype']} | {r['s_per_clip']:.3f} "
        f"| {r['frames_per_s']:.3g} | {r['setup_s']:.1f} |"
    )
    return "\n".join([header, rule, row])

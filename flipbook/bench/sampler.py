"""Benchmark ``sampler``: the sampling core against diffusers' own pipeline for the model (the class the model
loaded as: StableDiffusionPipeline, StableDiffusionXLPipeline) on the same work.

Reports seconds per image for both, their ratio, and the share of the core's wall time spent inside the UNet,
VAE and text encoder (the rest is the loop's own overhead). The VAE is timed through its encoder/decoder
modules, since the pipeline calls ``vae.decode`` rather than ``vae.forward``.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from flipbook.bench.timing import ModuleTimer, clock, machine
from flipbook.models.loading import load_model
from flipbook.samplers.schedulers import make_scheduler
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest

PROMPT = "a lighthouse on a cliff at sunset, dramatic clouds"
NEGATIVE = "blurry"


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
) -> str:
    bundle = load_model(model, device=device, dtype=dtype)
    request = FrameRequest(PROMPT, NEGATIVE, seed=1, num_inference_steps=steps, guidance_scale=7.0,
                           sampler=sampler, width=width, height=height)  # fmt: skip
    pipe = type(bundle.pipe)(**bundle.pipe.components)  # a fresh pipeline of the family's class, same parts
    pipe.set_progress_bar_config(disable=True)
    nets = {
        "unet": bundle.unet,
        "vae_decoder": bundle.vae.decoder,
        "vae_post_quant_conv": bundle.vae.post_quant_conv,
        "text_encoder": bundle.text_encoder,
    }
    if getattr(bundle.pipe, "text_encoder_2", None) is not None:
        nets["text_encoder_2"] = bundle.pipe.text_encoder_2
    timer = ModuleTimer(nets, bundle.device)

    def run_core() -> None:
        SamplingCore(bundle).generate([request], output_type="np")

    def run_diffusers() -> None:
        pipe.scheduler = make_scheduler(sampler, bundle.scheduler_config)
        pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=7.0, width=width,
             height=height, generator=torch.Generator("cpu").manual_seed(1), output_type="np")  # fmt: skip

    (core_times, core_net_share), (diffusers_times, diffusers_net_share) = _timed_interleaved(
        [run_core, run_diffusers], runs, timer, bundle.device
    )
    result = {
        "case": "sampler",
        "model": model,
        "size": f"{width}x{height}",
        "steps": steps,
        "sampler": sampler,
        "runs": runs,
        "device": str(bundle.device),
        "dtype": str(bundle.dtype).replace("torch.", ""),
        "machine": machine(bundle.device),
        "core_s_per_image": statistics.median(core_times),
        "diffusers_s_per_image": statistics.median(diffusers_times),
        "core_over_diffusers": statistics.median(core_times) / statistics.median(diffusers_times),
        "core_share_in_nets": core_net_share,
        "diffusers_share_in_nets": diffusers_net_share,
        "core_times": core_times,
        "diffusers_times": diffusers_times,
    }
    out.mkdir(parents=True, exist_ok=True)
    stem = f"sampler-{model}-{width}x{height}-{result['device'].split(':')[0]}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    table = _markdown(result)
    (out / f"{stem}.md").write_text(table + "\n", encoding="utf-8")
    return table


def _timed_interleaved(
    fns, runs: int, timer: ModuleTimer, device: torch.device
) -> list[tuple[list[float], float]]:
    """Wall times of each function after one warm-up each, and the share of wall time inside the nets.

    The functions take turns (A, B, A, B, ...) so drift in the machine's speed affects them alike.
    """
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    in_nets = [0.0 for _ in fns]
    with timer.attached():
        for _ in range(runs):
            for i, fn in enumerate(fns):
                timer.reset()
                times[i].append(clock(fn, device))
                in_nets[i] += timer.total
    return [(t, share / sum(t)) for t, share in zip(times, in_nets, strict=True)]


def _markdown(r: dict) -> str:
    header = "| model | size | steps | sampler | device | core s/img | diffusers s/img | core/diffusers | core time in nets |"
    rule = "|---|---|---|---|---|---|---|---|---|"
    row = (
        f"| {r['model']} | {r['size']} | {r['steps']} | {r['sampler']} | {r['device']} {r['dtype']} "
        f"| {r['core_s_per_image']:.3f} | {r['diffusers_s_per_image']:.3f} | {r['core_over_diffusers']:.3f} "
        f"| {100 * r['core_share_in_nets']:.2f}% |"
    )
    return "\n".join([header, rule, row])

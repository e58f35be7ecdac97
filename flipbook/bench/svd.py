"""Benchmark ``svd``: one Stable Video Diffusion clip (image to video), flipbook's sampler against diffusers'
StableVideoDiffusionPipeline on the same parts, seed and settings.

``model`` tiny is the built-in tiny SVD; random-svd (or random-sd15, the name other cases use for "full size,
random weights") is SVD-XT's exact architecture with random weights, for GPU speed and memory; anything else
is loaded as ``svd.model`` (a diffusers folder or a cached hub id). ``frames`` is frames per clip (default the
model's: 25 for random-svd) and ``steps`` the denoising steps; guidance runs 1 -> 3 as SVD's default (two
UNet rows per frame). The start image is a synthetic picture. After one warm-up each, the two take turns so
drift in the machine's speed hits both alike; each run is timed from the image to decoded frames, and the
time in the UNet, the VAE decoder and the image encoder is measured for flipbook's run.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from flipbook.bench.report import write_report
from flipbook.bench.timing import ModuleTimer, machine, timed_against
from flipbook.errors import FlipbookError
from flipbook.models.families.svd.loading import diffusers_pipeline, load_svd
from flipbook.sampling.svd import SvdSettings, sample_clip

SEED = 1234
_RANDOM_FULL_SIZE = ("random-svd", "random-sd15")


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
    """Time one clip of ``frames`` frames at ``width``x``height``; write JSON and markdown. ``sampler`` is not
    used: SVD samples with its own Euler/EDM schedule."""
    if width % 64 or height % 64:
        raise FlipbookError("size", f"{width}x{height}", "multiples of 64 for SVD (e.g. 1024x576)")
    if frames is not None and frames < 2:
        raise FlipbookError("frames", frames, "at least 2 frames per clip")
    name = "random-svd" if model in _RANDOM_FULL_SIZE else model
    bundle = load_svd(name, device=device, dtype=dtype)
    settings = SvdSettings(num_frames=frames or bundle.num_frames, num_inference_steps=steps)
    image = _start_image(width, height)
    pipe = diffusers_pipeline(bundle)
    nets = {"unet": bundle.unet, "vae_decoder": bundle.vae.decoder, "image_encoder": bundle.image_encoder}
    timer = ModuleTimer(nets, bundle.device)

    def ours() -> None:
        sample_clip(bundle, image, settings, generator=torch.Generator("cpu").manual_seed(SEED))

    def theirs() -> None:
        pipe(image, height=height, width=width, num_frames=settings.num_frames, num_inference_steps=steps,
             generator=torch.Generator("cpu").manual_seed(SEED), output_type="np")  # fmt: skip

    times, in_nets, peak = timed_against(ours, theirs, runs, timer, bundle.device)
    clip = statistics.median(times["flipbook"])
    result = {
        "case": "svd",
        "model": name,
        "size": f"{width}x{height}",
        "frames": settings.num_frames,
        "steps": steps,
        "guidance": f"{settings.min_guidance_scale:g}-{settings.max_guidance_scale:g}",
        "runs": runs,
        "device": str(bundle.device),
        "dtype": str(bundle.dtype).replace("torch.", ""),
        "machine": machine(bundle.device),
        "s_per_clip": clip,
        "frames_per_s": settings.num_frames / clip,
        "diffusers_s_per_clip": statistics.median(times["diffusers"]),
        "flipbook_over_diffusers": clip / statistics.median(times["diffusers"]),
        "s_in_nets_per_clip": in_nets,
        "peak_gpu_memory_gib": peak,
        "times": times,
    }
    stem = f"svd-{name}-{width}x{height}-{result['device'].split(':')[0]}"
    return write_report(result, out, stem, _markdown(result))


def _start_image(width: int, height: int) -> PIL.Image.Image:
    """A picture with structure (gradients, a square, grain), the same for every run."""
    rng = np.random.default_rng(SEED)
    y, x = np.mgrid[0:height, 0:width]
    array = np.stack([255 * x / width, 255 * y / height, 128 + 0 * x], axis=-1)
    array[height // 3 : 2 * height // 3, width // 3 : width // 2] = (240, 200, 40)
    array += rng.normal(0, 8, array.shape)
    return PIL.Image.fromarray(array.clip(0, 255).astype(np.uint8))


def _markdown(r: dict) -> str:
    nets = r["s_in_nets_per_clip"]
    header = (
        "| model | size | frames | steps | device | s/clip | frames/s | diffusers s/clip | flipbook/diffusers "
        "| UNet s | VAE decode s |"
    )
    rule = "|---|---|---|---|---|---|---|---|---|---|---|"
    row = (
        f"| {r['model']} | {r['size']} | {r['frames']} | {r['steps']} | {r['device']} {r['dtype']} "
        f"| {r['s_per_clip']:.3f} | {r['frames_per_s']:.3g} | {r['diffusers_s_per_clip']:.3f} "
        f"| {r['flipbook_over_diffusers']:.3f} | {nets.get('unet', 0):.3f} | {nets.get('vae_decoder', 0):.3f} |"
    )
    return "\n".join([header, rule, row])

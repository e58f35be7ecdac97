"""Benchmark ``videomodel``: one text-to-video segment, flipbook's sampler (the family's ``encoder`` and
``sample``) against diffusers' own pipeline (the family's ``reference``: WanPipeline, LTXPipeline) on the same
parts, prompt, seed and settings.

``model``: a built-in video diffusion model (tiny-wan, tiny-ltx, random-wan-1.3b; ``tiny`` means tiny-wan and
``random-sd15``, the name other cases use for "full size, random weights", means random-wan-1.3b). ``frames``:
frames per segment (9 for the tiny models, 81 for random-wan-1.3b), rounded to the model's rule. After one
warm-up each the two take turns; each run is timed from the prompt to decoded frames, and the time in the
transformer, the VAE decoder and the text encoder is measured for flipbook's run. The GPU command for Wan 2.1
1.3B's real size: ``flipbook bench videomodel --model random-wan-1.3b --size 832x480 --frames 81 --steps 50
--runs 1 --device cuda``.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from flipbook.bench.report import write_report
from flipbook.bench.timing import ModuleTimer, machine, timed_against
from flipbook.errors import FlipbookError
from flipbook.models.families import builtin_family
from flipbook.modes.videomodel.rules import CAPABILITY
from flipbook.sampling.segments import SegmentSettings

SEED = 1234
PROMPT, NEGATIVE = "a lighthouse on a cliff, stormy sea, waves crashing", "blurry, static"
_ALIASES = {"tiny": "tiny-wan", "random-sd15": "random-wan-1.3b"}


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
    """Time one segment of ``frames`` frames at ``width``x``height``; write JSON and markdown. ``sampler`` is
    not used: video diffusion models sample with their own scheduler."""
    name = _ALIASES.get(model, model)
    family = builtin_family(name, CAPABILITY)
    if family is None:
        from flipbook.models.families import builtin_names

        raise FlipbookError(
            "model",
            model,
            f"a built-in video diffusion model: {', '.join(builtin_names('video diffusion model') or ())}",
        )
    side = family.side_multiple or 16
    if width % side or height % side:
        raise FlipbookError("size", f"{width}x{height}", f"multiples of {side} for {family.title}")
    bundle = family.load(name, field_name="model", device=device, dtype=dtype)
    step = bundle.scale_temporal
    count = frames or (81 if name.startswith("random") else 9)
    count = (count - 1 + step - 1) // step * step + 1
    length = bundle.text_length or (512 if name.startswith("random") else 64)
    settings = SegmentSettings(num_frames=count, height=height, width=width, num_inference_steps=steps,
                               guidance_scale=5.0, max_sequence_length=length)  # fmt: skip

    def ours() -> None:
        embeds = family.encoder(bundle, PROMPT, length)
        negative = family.encoder(bundle, NEGATIVE, length)
        family.sample(bundle, embeds, negative, settings, generator=torch.Generator("cpu").manual_seed(SEED))

    def theirs() -> None:
        family.reference(bundle, PROMPT, NEGATIVE, settings, SEED)

    nets = {
        "transformer": bundle.transformer,
        "vae_decoder": bundle.vae.decoder,
        "text_encoder": bundle.text_encoder,
    }
    timer = ModuleTimer(nets, bundle.device)
    times, in_nets, peak = timed_against(ours, theirs, runs, timer, bundle.device)
    clip = statistics.median(times["flipbook"])
    result = {
        "case": "videomodel",
        "model": name,
        "family": family.title,
        "size": f"{width}x{height}",
        "frames": count,
        "steps": steps,
        "runs": runs,
        "device": str(bundle.device),
        "dtype": str(bundle.dtype).replace("torch.", ""),
        "machine": machine(bundle.device),
        "s_per_clip": clip,
        "diffusers_s_per_clip": statistics.median(times["diffusers"]),
        "flipbook_over_diffusers": clip / statistics.median(times["diffusers"]),
        "s_in_nets_per_clip": in_nets,
        "transformer_share": in_nets.get("transformer", 0.0) / clip,
        "peak_gpu_memory_gib": peak,
        "times": times,
    }
    stem = f"videomodel-{name}-{width}x{height}-{result['device'].split(':')[0]}"
    return write_report(result, out, stem, _markdown(result))


def _markdown(r: dict) -> str:
    nets = r["s_in_nets_per_clip"]
    header = (
        "| model | size | frames | steps | device | s/clip | diffusers s/clip | flipbook/diffusers | transformer s "
        "| transformer share | VAE decode s |"
    )
    rule = "|---|---|---|---|---|---|---|---|---|---|---|"
    row = (
        f"| {r['model']} | {r['size']} | {r['frames']} | {r['steps']} | {r['device']} {r['dtype']} "
        f"| {r['s_per_clip']:.3f} | {r['diffusers_s_per_clip']:.3f} | {r['flipbook_over_diffusers']:.3f} "
        f"| {nets.get('transformer', 0):.3f} | {r['transformer_share']:.0%} | {nets.get('vae_decoder', 0):.3f} |"
    )
    return "\n".join([header, rule, row])

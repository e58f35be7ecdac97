"""Benchmark ``videomodel``: one text-to-video segment, flipbook's sampler (the family's ``encoder`` and
``sample``) against diffusers' own pipeline (the family's ``reference``: WanPipeline, LTXPipeline) on the same
parts, prompt, seed and settings.

``model``: a built-in video diffusion model (tiny-wan, tiny-ltx, random-wan-1.3b; ``tiny`` means tiny-wan and
``random-sd15``, the name other cases use for "full size, random weights", means random-wan-1.3b). ``frames``:
frames per segment (9 for the tiny models, 81 for random-wan-1.3b), rounded to the model's rule. After one
warm-up each the two take turns; each run is timed from the prompt to decoded frames, and the time in the
transformer, the VAE decoder and the text encoder is measured for flipbook's run.

Then the memory switches (:data:`SWITCHES`, ``sampling/video_memory.py``) are compared: for each, the model is
loaded again, the switch set, and flipbook's segment timed once, with its peak memory: on CUDA
``torch.cuda.max_memory_allocated`` (reset after the load), elsewhere the process's resident memory sampled
every 5 ms (peak RSS, weights included). The GPU command for Wan 2.1 1.3B's real size: ``flipbook bench
videomodel --model random-wan-1.3b --size 832x480 --frames 81 --steps 50 --runs 1 --device cuda``.
"""

from __future__ import annotations

import gc
import statistics
import threading
from pathlib import Path

import torch

from flipbook.bench.report import write_report
from flipbook.bench.timing import ModuleTimer, machine, timed_against
from flipbook.errors import FlipbookError
from flipbook.models.families import builtin_family
from flipbook.modes.videomodel.rules import CAPABILITY
from flipbook.sampling.segments import SegmentSettings
from flipbook.sampling.video_memory import MemorySwitches

SWITCHES: dict[str, MemorySwitches] = {
    "none": MemorySwitches("none", False, None),
    "model offload": MemorySwitches("model", False, None),
    "group offload, blocks": MemorySwitches("block", False, None),
    "group offload, leaf layers": MemorySwitches("leaf", False, None),
    "fp8 storage": MemorySwitches("none", False, None, fp8_storage=True),
    "fp8 storage + group offload, blocks": MemorySwitches("block", False, None, fp8_storage=True),
    "VAE tiling": MemorySwitches("none", True, None),
}
"""The memory switches the bench compares (each on a freshly loaded model)."""

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
    where, dtype_name = bundle.device, str(bundle.dtype).replace("torch.", "")
    times, in_nets, peak = _against_diffusers(family, bundle, settings, length, runs)
    del bundle  # each switch loads its own
    gc.collect()
    switches = _compare_switches(family, name, device, dtype, settings, length)
    clip = statistics.median(times["flipbook"])
    result = {
        "case": "videomodel",
        "model": name,
        "family": family.title,
        "size": f"{width}x{height}",
        "frames": count,
        "steps": steps,
        "runs": runs,
        "device": str(where),
        "dtype": dtype_name,
        "machine": machine(where),
        "s_per_clip": clip,
        "diffusers_s_per_clip": statistics.median(times["diffusers"]),
        "flipbook_over_diffusers": clip / statistics.median(times["diffusers"]),
        "s_in_nets_per_clip": in_nets,
        "transformer_share": in_nets.get("transformer", 0.0) / clip,
        "peak_gpu_memory_gib": peak,
        "times": times,
        "switches": switches,
    }
    stem = f"videomodel-{name}-{width}x{height}-{result['device'].split(':')[0]}"
    return write_report(result, out, stem, _markdown(result))


def _against_diffusers(family, bundle, settings: SegmentSettings, length: int, runs: int):
    """flipbook's segment and the family's diffusers pipeline taking turns (``timed_against``)."""

    def theirs() -> None:
        family.reference(bundle, PROMPT, NEGATIVE, settings, SEED)

    nets = {
        "transformer": bundle.transformer,
        "vae_decoder": bundle.vae.decoder,
        "text_encoder": bundle.text_encoder,
    }
    timer = ModuleTimer(nets, bundle.device)
    return timed_against(_segment(family, bundle, settings, length), theirs, runs, timer, bundle.device)


def _segment(family, bundle, settings: SegmentSettings, length: int):
    """flipbook's segment from the prompt to decoded frames, as a function to time."""

    def run() -> None:
        embeds = family.encoder(bundle, PROMPT, length)
        negative = family.encoder(bundle, NEGATIVE, length)
        family.sample(bundle, embeds, negative, settings, generator=torch.Generator("cpu").manual_seed(SEED))

    return run


def _compare_switches(family, name: str, device: str, dtype: str, settings, length: int) -> dict[str, dict]:
    """Seconds and peak GiB of one segment per memory switch, each on a freshly loaded model."""
    from flipbook.bench.timing import clock
    from flipbook.sampling import video_memory

    results = {}
    for label, switches in SWITCHES.items():
        bundle = video_memory.apply(
            family.load(name, field_name="model", device=device, dtype=dtype), switches
        )
        with PeakMemory(bundle.device) as peak:
            seconds = clock(_segment(family, bundle, settings, length), bundle.device)
        results[label] = {"s_per_clip": seconds, "peak_gib": peak.gib, "peak_kind": peak.kind}
        del bundle
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return results


class PeakMemory:
    """Peak memory over a ``with`` block: on CUDA the allocator's peak (reset on entry); elsewhere the process's
    resident memory sampled every 5 ms by a thread (psutil, which accelerate already requires)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda allocated" if device.type == "cuda" else "process RSS"
        self.gib = 0.0
        self._stop = threading.Event()
        self._peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            import psutil

            process = psutil.Process()
            self._peak = process.memory_info().rss

            def sample() -> None:
                while not self._stop.wait(0.005):
                    self._peak = max(self._peak, process.memory_info().rss)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.gib = torch.cuda.max_memory_allocated(self.device) / 2**30
        else:
            self._stop.set()
            self._thread.join()
            self.gib = self._peak / 2**30


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
    lines = [header, rule, row, "", "| switches | s/clip | peak GiB |", "|---|---|---|"]
    for label, switch in r["switches"].items():
        lines.append(
            f"| {label} | {switch['s_per_clip']:.3f} | {switch['peak_gib']:.3f} ({switch['peak_kind']}) |"
        )
    return "\n".join(lines)

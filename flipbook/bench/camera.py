"""Benchmark ``camera-2d``: a 2D camera animation through ``render()`` against a naive diffusers loop.

Both make the same frames: frame 0 is txt2img, every later frame is the previous one warped by the camera
(zoom 1.02, angle 0.5 per frame), colour-matched to frame 0 (LAB), contrast, unsharp mask, noise 0.02, then
img2img at denoise 1 - strength = 0.35 with that frame's seed, and written as a PNG. Only frames 1..N are
timed; frame 0 and the model load are not.

- **flipbook**: the real :func:`flipbook.runs.render.render` into a temporary folder. The model is loaded
  once up front and ``flipbook.runs.cores.load_model`` is patched to hand that bundle to every render; the
  clock runs from frame 0's hand-over to the background writer to the last frame's event (sent after its
  PNG is on disk).
- **naive**: diffusers' img2img pipeline of the model's family (``StableDiffusionImg2ImgPipeline`` for SD
  1.x/2.x, ``StableDiffusionXLImg2ImgPipeline`` for SDXL, through ``AutoPipelineForImage2Image.from_pipe``) on
  the same loaded components, called once per frame with prompt strings (re-encoded every frame), a fresh
  scheduler for the same sampler name from :func:`~flipbook.samplers.schedulers.make_scheduler`, a PIL image in
  and out, the warp and filters on numpy in between, and ``PIL.Image.save`` per frame. It starts from flipbook's frame 0 (same seed and
  prompt), so the two animations can be compared pixel for pixel.

After one short warm-up each (frame 0 and one img2img frame) the two take turns (flipbook, naive, flipbook,
...) so drift in the machine's speed hits both alike. The share of each one's timed wall time spent inside
the UNet, the VAE encoder/decoder and the text encoder is measured with :class:`ModuleTimer`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import PIL.Image
import torch
from diffusers import AutoPipelineForImage2Image

from flipbook.bench.report import write_report
from flipbook.bench.timing import ModuleTimer, machine, sync
from flipbook.errors import FlipbookError
from flipbook.events import Events, FrameEvent
from flipbook.imaging.color import match_colors
from flipbook.imaging.filters import add_noise, adjust_contrast, unsharp_mask
from flipbook.models.bundle import ModelBundle
from flipbook.models.loading import load_model
from flipbook.modes.camera import CAMERA_2D
from flipbook.motion.camera2d import matrix_2d, warp_2d
from flipbook.runs.render import render
from flipbook.samplers.schedulers import make_scheduler
from flipbook.spec.model import Spec
from flipbook.spec.plan import FramePlan, Plan, build_plan

PROMPT = "a lighthouse on a cliff at sunset, dramatic clouds"
NEGATIVE = "blurry"
SEED = 1
CFG = 7.0
STRENGTH = 0.65  # Deforum strength: share of the previous frame kept (denoise 0.35)
CAMERA = {"zoom": 1.02, "angle": 0.5, "color_coherence": "lab", "noise": 0.02, "cadence": 1}


@dataclass
class Timing:
    """One timed run of frames 1..N: wall seconds, seconds per net inside them, and the first and last frame."""

    seconds: float = 0.0
    in_nets: dict[str, float] = field(default_factory=dict)
    first_frame: np.ndarray | None = None
    last_frame: np.ndarray | None = None


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
    frames: int = 8,
) -> str:
    """Time ``frames`` camera frames after frame 0, flipbook against naive; write JSON and markdown to ``out``."""
    if frames < 1:
        raise FlipbookError("frames", frames, "at least 1 (frames timed after frame 0)")
    bundle = load_model(model, device=device, dtype=dtype)
    spec = camera_spec(model, width, height, steps, sampler, frames)
    timer = ModuleTimer(net_modules(bundle), bundle.device)
    naive = NaiveLoop(bundle, spec)
    with mock.patch("flipbook.runs.cores.load_model", lambda *args, **kwargs: bundle), timer.attached():
        # warm-up: frame 0 and one img2img frame each; flipbook's frame 0 is where the naive loop starts
        naive.first = flipbook_run(_with_frames(spec, 1), timer).first_frame
        naive(timer, frames=1)
        flipbook_times, naive_times = _alternate(
            [lambda: flipbook_run(spec, timer), lambda: naive(timer, frames)], runs
        )
    result = _result(spec, bundle, runs, flipbook_times, naive_times)
    return _write(result, out)


# ---- the two ways to render ------------------------------------------------------------------------------


def camera_spec(model: str, width: int, height: int, steps: int, sampler: str, frames: int) -> Spec:
    """The benchmark animation: frame 0 plus ``frames`` 2D camera frames, PNG output only."""
    return Spec(
        model={"name": model},
        sampling={"sampler": sampler, "steps": steps, "cfg": CFG, "seed": SEED},
        animation={"mode": CAMERA_2D.name, "max_frames": frames + 1, "width": width, "height": height,
                   "strength": STRENGTH},
        prompts={"0": PROMPT},
        negative_prompt=NEGATIVE,
        camera=CAMERA,
        output={"formats": ["png"], "name": "bench"},
    )  # fmt: skip


def _with_frames(spec: Spec, frames: int) -> Spec:
    animation = spec.animation.model_copy(update={"max_frames": frames + 1})
    return spec.model_copy(update={"animation": animation})


def flipbook_run(spec: Spec, timer: ModuleTimer) -> Timing:
    """``render(spec)`` into a temporary folder, timed from frame 0's hand-over to the background writer to
    the last frame's event (sent once its PNG is on disk)."""
    from flipbook.bench.overhead import frame_zero_handed_over

    timing = Timing()
    last = spec.animation.max_frames - 1
    start = 0.0

    def on_frame_zero() -> None:
        nonlocal start
        sync(timer.device)
        timer.reset()
        start = time.perf_counter()

    def on_frame(event: FrameEvent) -> None:
        sync(timer.device)
        if event.index == 0:
            timing.first_frame = np.asarray(event.image)
        if event.index == last:
            timing.seconds = time.perf_counter() - start
            timing.in_nets = dict(timer.seconds)
            timing.last_frame = np.asarray(event.image)

    with (
        tempfile.TemporaryDirectory(prefix="flipbook-bench-") as folder,
        frame_zero_handed_over(on_frame_zero),
    ):
        output = spec.output.model_copy(update={"dir": Path(folder)})
        render(spec.model_copy(update={"output": output}), Events(on_frame=on_frame))
    return timing


class NaiveLoop:
    """The frames one img2img pipeline call at a time, with a PIL round trip per frame."""

    def __init__(self, bundle: ModelBundle, spec: Spec) -> None:
        self.pipe = AutoPipelineForImage2Image.from_pipe(bundle.pipe)  # the family's img2img, same parts
        self.pipe.set_progress_bar_config(disable=True)
        self.vae, self.unet_dtype = bundle.vae, bundle.unet.dtype
        self.scheduler_config = bundle.scheduler_config
        self.spec = spec
        self.plan: Plan = build_plan(spec)
        self.first: np.ndarray | None = None  # frame 0 (RGB uint8), set before the first call

    def __call__(self, timer: ModuleTimer, frames: int) -> Timing:
        """Frames 1..``frames`` from frame 0, timed; each written as a PNG to a temporary folder."""
        timing = Timing()
        image = PIL.Image.fromarray(self.first)
        with (
            tempfile.TemporaryDirectory(prefix="flipbook-bench-naive-") as folder,
            vae_dtype_bridge(self.vae, self.unet_dtype),
        ):
            sync(timer.device)
            timer.reset()
            start = time.perf_counter()
            for index in range(1, frames + 1):
                image = self.frame(self.plan[index], image)
                image.save(Path(folder) / f"frame_{index:05d}.png")
            sync(timer.device)
            timing.seconds = time.perf_counter() - start
        timing.in_nets = dict(timer.seconds)
        timing.last_frame = np.asarray(image)
        return timing

    def frame(self, frame: FramePlan, previous: PIL.Image.Image) -> PIL.Image.Image:
        """One frame: PIL -> numpy, warp and filters, numpy -> PIL, one img2img pipeline call."""
        prepared = PIL.Image.fromarray(self.prepare(frame, np.asarray(previous)))
        self.pipe.scheduler = make_scheduler(frame.sampler, self.scheduler_config, noise_seed=frame.seed)
        return self.pipe(
            frame.prompt, negative_prompt=frame.negative_prompt, image=prepared, strength=frame.denoise,
            num_inference_steps=frame.steps, guidance_scale=frame.cfg,
            generator=torch.Generator("cpu").manual_seed(frame.seed),
        ).images[0]  # fmt: skip

    def prepare(self, frame: FramePlan, previous: np.ndarray) -> np.ndarray:
        """The 2D camera warp, LAB colour match to frame 0, contrast, unsharp mask and noise (on numpy)."""
        v, a, c = frame.camera, self.spec.animation, self.spec.camera
        matrix = matrix_2d(
            width=a.width, height=a.height, angle=v["angle"], zoom=v["zoom"],
            translation_x=v["translation_x"], translation_y=v["translation_y"],
            transform_center_x=v["transform_center_x"], transform_center_y=v["transform_center_y"],
        )  # fmt: skip
        image = match_colors(warp_2d(previous, matrix, c.border), self.first, c.color_coherence)
        image = adjust_contrast(image, v["contrast"])
        image = unsharp_mask(image, amount=v["antiblur_amount"], kernel_size=int(v["antiblur_kernel"]),
                             sigma=v["antiblur_sigma"], threshold=v["antiblur_threshold"])  # fmt: skip
        return add_noise(image, v["noise"], seed=frame.seed, noise_type=c.noise_type)


@contextmanager
def vae_dtype_bridge(vae: torch.nn.Module, dtype: torch.dtype) -> Iterator[None]:
    """Let a diffusers pipeline use a VAE kept in another dtype than the UNet's (``load_model`` keeps SD VAEs
    in fp32 under an fp16 UNet, as fp16 SD VAEs overflow; diffusers' img2img pipeline would hand them fp16
    tensors and fail). While active, the VAE's encoder and decoder inputs are cast to the VAE's dtype and
    the encoder's latent moments back to ``dtype``: the casts flipbook's core makes around its VAE calls.
    Nothing is hooked when the dtypes agree (fp32 or bf16 everywhere)."""
    if vae.dtype == dtype:
        yield
        return

    def inputs_to_vae(module, args):
        return tuple(a.to(vae.dtype) if torch.is_tensor(a) else a for a in args)

    def output_to_unet(module, args, output):
        return output.to(dtype)

    encoder_out = vae.quant_conv if getattr(vae, "quant_conv", None) is not None else vae.encoder
    decoder_in = vae.post_quant_conv if getattr(vae, "post_quant_conv", None) is not None else vae.decoder
    handles = [
        vae.encoder.register_forward_pre_hook(inputs_to_vae),
        encoder_out.register_forward_hook(output_to_unet),
        decoder_in.register_forward_pre_hook(inputs_to_vae),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def net_modules(bundle: ModelBundle) -> dict[str, torch.nn.Module]:
    """The modules whose forward time counts as 'in the nets': UNet, text encoder, VAE encoder and decoder
    (through their submodules: pipelines call ``vae.encode``/``vae.decode``, not ``vae.forward``)."""
    vae = bundle.vae
    nets = {"unet": bundle.unet, "text_encoder": bundle.text_encoder}
    if getattr(bundle.pipe, "text_encoder_2", None) is not None:  # SDXL's second encoder
        nets["text_encoder_2"] = bundle.pipe.text_encoder_2
    for name in ("encoder", "quant_conv", "decoder", "post_quant_conv"):
        if getattr(vae, name, None) is not None:
            nets[f"vae_{name}"] = getattr(vae, name)
    return nets


def _alternate(fns: list[Callable[[], Timing]], runs: int) -> list[list[Timing]]:
    """Each function ``runs`` times, taking turns (A, B, A, B, ...)."""
    timings: list[list[Timing]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            timings[i].append(fn())
    return timings


# ---- results -----------------------------------------------------------------------------------------------


def _result(spec: Spec, bundle: ModelBundle, runs: int, flipbook: list[Timing], naive: list[Timing]) -> dict:
    """Everything measured, as the JSON written next to the markdown."""
    frames = spec.animation.max_frames - 1
    first = build_plan(spec)[1]
    flipbook_fps = frames / statistics.median(t.seconds for t in flipbook)
    naive_fps = frames / statistics.median(t.seconds for t in naive)
    a, m = spec.animation, spec.model
    difference = np.abs(flipbook[-1].last_frame.astype(np.int16) - naive[-1].last_frame.astype(np.int16))
    return {
        "case": "camera-2d",
        "model": m.name,
        "size": f"{a.width}x{a.height}",
        "frames": frames,
        "steps": first.steps,
        "denoise": first.denoise,
        "unet_steps_per_frame": int(first.steps * first.denoise),
        "cfg": first.cfg,
        "sampler": first.sampler,
        "camera": CAMERA,
        "runs": runs,
        "device": str(bundle.device),
        "dtype": str(bundle.dtype).replace("torch.", ""),
        "machine": machine(bundle.device),
        "flipbook_frames_per_s": flipbook_fps,
        "naive_frames_per_s": naive_fps,
        "flipbook_over_naive": flipbook_fps / naive_fps,
        "flipbook_share_in_nets": _share(flipbook),
        "naive_share_in_nets": _share(naive),
        "flipbook_s_per_run_in": _per_net(flipbook),
        "naive_s_per_run_in": _per_net(naive),
        "last_frame_max_abs_diff": int(difference.max()),
        "last_frame_mean_abs_diff": float(difference.mean()),
        "flipbook_times": [t.seconds for t in flipbook],
        "naive_times": [t.seconds for t in naive],
    }


def _share(timings: list[Timing]) -> float:
    """Share of the timed wall time (all runs together) spent inside the nets."""
    return sum(sum(t.in_nets.values()) for t in timings) / sum(t.seconds for t in timings)


def _per_net(timings: list[Timing]) -> dict[str, float]:
    """Mean seconds per run inside each net, plus the rest of the wall time ('outside')."""
    names = sorted({name for t in timings for name in t.in_nets})
    mean = {name: statistics.fmean(t.in_nets.get(name, 0.0) for t in timings) for name in names}
    mean["outside"] = statistics.fmean(t.seconds - sum(t.in_nets.values()) for t in timings)
    return mean


def _write(result: dict, out: Path) -> str:
    """Write ``camera-2d-<model>-<size>-<device>.json`` and ``.md`` under ``out``; return the markdown."""
    return write_report(
        result,
        out,
        f"camera-2d-{result['model']}-{result['size']}-{result['device'].split(':')[0]}",
        _markdown(result),
    )


def _markdown(r: dict) -> str:
    header = (
        "| model | size | frames | steps x denoise | sampler | device | flipbook frames/s | naive frames/s "
        "| flipbook/naive | flipbook time in nets | naive time in nets |"
    )
    rule = "|---|---|---|---|---|---|---|---|---|---|---|"
    row = (
        f"| {r['model']} | {r['size']} | {r['frames']} | {r['steps']} x {r['denoise']:g} | {r['sampler']} "
        f"| {r['device']} {r['dtype']} | {r['flipbook_frames_per_s']:.4g} | {r['naive_frames_per_s']:.4g} "
        f"| {r['flipbook_over_naive']:.3f} | {100 * r['flipbook_share_in_nets']:.2f}% "
        f"| {100 * r['naive_share_in_nets']:.2f}% |"
    )
    return "\n".join([header, rule, row])

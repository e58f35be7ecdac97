"""Benchmark ``overhead``: the time a feedback-loop render spends outside the nets, per frame and per stage.

The real :func:`flipbook.runs.render.render` runs each case's animation (camera-2d: zoom 1.02, angle 0.5, LAB
colour coherence, contrast, unsharp mask, noise 0.02, PNG output; camera-3d with a flat depth; travel: a
prompt per frame) with the **nets replaced by stand-ins**: the UNet answers zeros of its input's shape, the VAE
encodes by average pooling and decodes by nearest upsampling (the shapes and dtypes of the real ones, so every
step around them runs: image to tensor, latents, scheduler, tensor to image, PNG). The text encoder stays (a
new prompt is encoded once; its time is counted as in the nets). Nothing else is changed.

For each case and size (512x512 and 1024x1024) it reports milliseconds per frame outside the nets on the
render's critical path (frame 0 handed to the background writer to the end of ``render()``, frames 1..N,
minus the stand-ins' own time), and split by stage: the wall time spent in the functions each stage names (:data:`STAGES`), on the
render's thread ("critical path") or on other threads (the background writer: off the critical path).
The render's waits for the writer are a stage of their own ("writer wait"): with the nets this fast the writer
(PNG encoding, the consistency score) can fall behind, which real nets taking longer than a frame's write hide;
"making the frame" is the time outside the nets without those waits, what the next frame waits for then.
"""

from __future__ import annotations

import importlib
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import torch
import torch.nn.functional as F

from flipbook.bench.report import write_report
from flipbook.bench.timing import ModuleTimer, machine
from flipbook.errors import FlipbookError
from flipbook.events import Events
from flipbook.models.bundle import ModelBundle
from flipbook.models.loading import load_model
from flipbook.modes.camera import CAMERA_2D, CAMERA_3D
from flipbook.modes.travel import TRAVEL
from flipbook.runs.render import render
from flipbook.spec.model import Spec

LABEL = "nets replaced by stand-ins"
SIZES = ((512, 512), (1024, 1024))
STEPS, STRENGTH, SEED = 4, 0.65, 1
CAMERA_2D_SETTINGS = {"zoom": 1.02, "angle": 0.5, "color_coherence": "lab", "noise": 0.02, "cadence": 1}
CAMERA_3D_SETTINGS = {"translation_z": 2.0, "rotation_3d_y": 0.5, "color_coherence": "lab", "noise": 0.02,
             "depth_model": "flat", "cadence": 1}  # fmt: skip

# stage -> the functions ("module:qualname") whose wall time counts as that stage
STAGES: dict[str, tuple[str, ...]] = {
    "warp": (
        "flipbook.motion.camera:Camera2D.warp",
        "flipbook.motion.camera:Camera3D.warp",
    ),
    "colour": (
        "flipbook.imaging.color_torch:ColorReference.match",
        "flipbook.modes.camera.render:match_colors",
    ),
    "contrast": ("flipbook.modes.camera.render:adjust_contrast",),
    "unsharp": ("flipbook.modes.camera.render:unsharp_mask",),
    "noise": (
        "flipbook.modes.camera.render:add_scaled_noise",
        "flipbook.modes.camera.render:_frame_noise",  # drawn and scaled ahead on a helper thread
        "flipbook.modes.camera.render:_NoiseAhead.take",  # waiting for it
    ),
    "image to latents": ("flipbook.sampling.core:SamplingCore._preprocess_image",),
    "latents to image": (
        "diffusers.image_processor:VaeImageProcessor.postprocess",
        "flipbook.sampling.core:_rgb_pictures",
    ),
    "png write": ("flipbook.runs.writer:save_png",),
    # the render's thread waiting for the background writer (frame k's write overlaps making frame k+1)
    "writer wait": (
        "flipbook.runs.writer:FrameWriter.wait",
        "flipbook.runs.writer:FrameWriter.put",
        "flipbook.runs.writer:FrameWriter.close",
    ),
    "frame event": ("flipbook.events:Events.frame",),
    "consistency score": ("flipbook.runs.writer:pair_error", "flipbook.runs.render:consistency_metrics"),
    "outputs": ("flipbook.runs.render:write_animation",),
}

CASES: dict[str, dict] = {
    "camera-2d": {"animation": {"mode": CAMERA_2D.name}, "camera": CAMERA_2D_SETTINGS},
    "camera-3d": {"animation": {"mode": CAMERA_3D.name}, "camera": CAMERA_3D_SETTINGS},
    "travel": {"animation": {"mode": TRAVEL.name}},
}


def run(*, runs: int, out: Path, device: str = "cpu", frames: int | None = None, sizes=SIZES) -> str:
    """Time each case at each size ``runs`` times (after one warm-up); write JSON and markdown to ``out``."""
    frames = 6 if frames is None else frames
    if frames < 1:
        raise FlipbookError("frames", frames, "at least 1 (frames timed after frame 0)")
    bundle = load_model("tiny", device=device)
    rows = []
    with stand_in_nets(bundle), mock.patch("flipbook.runs.cores.load_model", lambda *a, **k: bundle):
        for case, sections in CASES.items():
            for width, height in sizes:
                spec = overhead_spec(sections, width, height, frames)
                timings = [time_render(spec, bundle) for _ in range(runs + 1)][1:]
                rows.append(_row(case, width, height, frames, timings))
    result = {"case": "overhead", "label": LABEL, "device": str(bundle.device), "runs": runs,
              "machine": machine(bundle.device), "steps": STEPS, "strength": STRENGTH, "rows": rows}  # fmt: skip
    return write_report(result, out, f"overhead-{result['device'].split(':')[0]}", _markdown(result))


def overhead_spec(sections: dict, width: int, height: int, frames: int) -> Spec:
    """A case's animation: frame 0 plus ``frames`` frames at ``width`` x ``height``, PNG output only."""
    animation = {"max_frames": frames + 1, "width": width, "height": height, "strength": STRENGTH}
    return Spec(
        model={"name": "tiny"},
        sampling={"sampler": "Euler", "steps": STEPS, "cfg": 7.0, "seed": SEED},
        prompts={"0": "a lighthouse on a cliff", str(frames): "a forest at night"},
        output={"formats": ["png"], "name": "overhead"},
        **{**sections, "animation": {**animation, **sections.get("animation", {})}},
    )


# ---- the stand-ins ---------------------------------------------------------------------------------------


@contextmanager
def stand_in_nets(bundle: ModelBundle) -> Iterator[None]:
    """Replace the bundle's UNet and VAE by near-free stand-ins of the same shapes and dtypes (the text
    encoder stays: prompts are encoded once and cached, before the timed frames)."""
    scale, vae, unet = bundle.vae_scale_factor, bundle.vae, bundle.unet
    channels = vae.config.latent_channels

    def unet_forward(sample, timestep, *args, **kwargs):
        return (torch.zeros_like(sample),)

    def encode(images, *args, **kwargs):
        pooled = F.avg_pool2d(images, scale)
        latents = pooled.new_zeros(pooled.shape[0], channels, *pooled.shape[2:])
        latents[:, : min(3, channels)] = pooled[:, : min(3, channels)]
        return SimpleNamespace(latent_dist=SimpleNamespace(sample=lambda generator=None: latents))

    def decode(latents, *args, **kwargs):
        rgb = latents.new_zeros(latents.shape[0], 3, *latents.shape[2:])
        rgb[:, : min(3, channels)] = latents[:, : min(3, channels)]
        return (F.interpolate(rgb, scale_factor=scale, mode="nearest"),)

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(unet, "forward", unet_forward))
        stack.enter_context(mock.patch.object(vae, "encode", _timed(encode)))
        stack.enter_context(mock.patch.object(vae, "decode", _timed(decode)))
        yield


_NET_SECONDS = threading.local()


def _timed(fn: Callable) -> Callable:
    """``fn`` adding its wall time to this thread's stand-in total (the VAE's calls are not module forwards)."""

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _NET_SECONDS.total = getattr(_NET_SECONDS, "total", 0.0) + time.perf_counter() - start

    return timed


# ---- timing ------------------------------------------------------------------------------------------------


class StageClock:
    """Wall time per stage, split into the render's thread and other threads (the background writer), and the
    CPU time of the other threads' stages (their wall time also counts waiting for a core, which on a busy
    machine hides what they cost; OpenCV's own worker threads are not counted)."""

    def __init__(self) -> None:
        self.critical: dict[str, float] = defaultdict(float)
        self.background: dict[str, float] = defaultdict(float)
        self.background_cpu: dict[str, float] = defaultdict(float)
        self.on = False
        self._main = threading.get_ident()

    @contextmanager
    def attached(self) -> Iterator[StageClock]:
        with ExitStack() as stack:
            for stage, targets in STAGES.items():
                for target in targets:
                    owner, name = _resolve(target)
                    if owner is not None:
                        original = getattr(owner, name)
                        stack.enter_context(mock.patch.object(owner, name, self._wrap(stage, original)))
            yield self

    def _wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.on:
                    if threading.get_ident() == self._main:
                        self.critical[stage] += time.perf_counter() - start
                    else:
                        self.background[stage] += time.perf_counter() - start
                        self.background_cpu[stage] += time.thread_time() - cpu

        return timed


def _resolve(target: str) -> tuple[object | None, str]:
    """The object holding ``module:qualname``'s last attribute, and that attribute's name (None if absent)."""
    module, qualname = target.split(":")
    owner: object = importlib.import_module(module)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part, None)
    return (owner, name) if owner is not None and hasattr(owner, name) else (None, name)


def time_render(spec: Spec, bundle: ModelBundle) -> dict:
    """One render into a temporary folder: seconds from frame 0's hand-over to the writer to the end of
    ``render()``, the stand-ins' seconds within them, and the stages' seconds."""
    clock = StageClock()
    timer = ModuleTimer({"unet": bundle.unet, "text_encoder": bundle.text_encoder}, bundle.device)
    start = cpu = 0.0

    def on_frame_zero() -> None:
        nonlocal start, cpu
        clock.on, start, cpu = True, time.perf_counter(), time.thread_time()
        timer.reset()
        _NET_SECONDS.total = 0.0

    with (
        tempfile.TemporaryDirectory(prefix="flipbook-overhead-") as folder,
        clock.attached(),
        timer.attached(),
        frame_zero_handed_over(on_frame_zero),
    ):
        output = spec.output.model_copy(update={"dir": Path(folder)})
        render(spec.model_copy(update={"output": output}), Events())
        seconds, cpu_seconds = time.perf_counter() - start, time.thread_time() - cpu
    nets = timer.total + getattr(_NET_SECONDS, "total", 0.0)
    return {"seconds": seconds, "nets": nets, "render_thread_cpu": cpu_seconds, "critical": dict(clock.critical),
            "background": dict(clock.background), "background_cpu": dict(clock.background_cpu)}  # fmt: skip


@contextmanager
def frame_zero_handed_over(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` when the render hands frame 0 to its background writer (frame events come later:
    after the frame is on disk, from the render's thread)."""
    from flipbook.runs.writer import FrameWriter

    put = FrameWriter.put

    def watched(writer, index, *args, **kwargs):
        if index == 0:
            callback()
        return put(writer, index, *args, **kwargs)

    with mock.patch.object(FrameWriter, "put", watched):
        yield


def _row(case: str, width: int, height: int, frames: int, timings: list[dict]) -> dict:
    """Medians over the runs, in milliseconds per frame."""

    def per_frame(values: list[float]) -> float:
        return 1000 * statistics.median(values) / frames

    stages = {stage: per_frame([t["critical"].get(stage, 0.0) for t in timings]) for stage in STAGES}
    background = {stage: per_frame([t["background"].get(stage, 0.0) for t in timings]) for stage in STAGES}
    background_cpu = {
        stage: per_frame([t["background_cpu"].get(stage, 0.0) for t in timings]) for stage in STAGES
    }
    outside = per_frame([t["seconds"] - t["nets"] for t in timings])
    return {
        "case": case,
        "size": f"{width}x{height}",
        "frames": frames,
        "ms_per_frame_outside_nets": outside,
        # what the next frame waits for when the writer keeps up (as it does when the nets take longer than a
        # frame's write: the write of frame k overlaps making frame k+1)
        "ms_per_frame_making": outside - stages["writer wait"],
        "ms_per_frame_in_stand_ins": per_frame([t["nets"] for t in timings]),
        "critical_ms_per_frame": {k: v for k, v in stages.items() if v > 0},
        "other_critical_ms_per_frame": outside - sum(stages.values()),
        "background_ms_per_frame": {k: v for k, v in background.items() if v > 0},
        # CPU time, not wall time: what the background work costs whatever else runs on the machine
        "background_cpu_ms_per_frame": {k: v for k, v in background_cpu.items() if v > 0},
        # the render's thread's own CPU time (stand-ins included; OpenCV's and torch's workers not)
        "render_thread_cpu_ms_per_frame": per_frame([t["render_thread_cpu"] for t in timings]),
    }


def _markdown(result: dict) -> str:
    lines = [
        f"{LABEL}; ms per frame outside the nets on the render's critical path ({result['machine']})",
        "",
        "| case | size | ms/frame outside nets | of which making the frame (no writer waits) "
        "| critical path by stage | background threads (wall) | background threads (CPU) | render thread CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["critical_ms_per_frame"].items())
        stages += f", other {r['other_critical_ms_per_frame']:.1f}"
        background = ", ".join(f"{k} {v:.1f}" for k, v in r["background_ms_per_frame"].items()) or "-"
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in r["background_cpu_ms_per_frame"].items()) or "-"
        lines.append(
            f"| {r['case']} | {r['size']} | {r['ms_per_frame_outside_nets']:.1f} | {r['ms_per_frame_making']:.1f} "
            f"| {stages} | {background} | {cpu} | {r['render_thread_cpu_ms_per_frame']:.1f} |"
        )
    return "\n".join(lines)

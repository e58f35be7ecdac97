"""``render(spec, events)``: the one entry point the CLI, the HTTP API, the UI and benchmarks call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flipbook import __version__
from flipbook.events import Events, FrameEvent
from flipbook.io.frames import FrameFiles
from flipbook.io.pnginfo import GenerationParameters, format_parameters, refiner_parameters
from flipbook.modes import Mode
from flipbook.modes.frame import Frame
from flipbook.runs.finish import write_animation
from flipbook.runs.run_dir import RunDir
from flipbook.runs.setup import mode_context, open_run, prepare, resolve_prompts
from flipbook.runs.writer import FrameWriter, Written
from flipbook.spec.model import Spec
from flipbook.spec.plan import FramePlan, Plan

__all__ = ["RenderResult", "prepare", "render", "resume"]  # prepare: the shared preparation (runs/setup.py)


@dataclass
class RenderResult:
    run_dir: Path
    frames: list[Path] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    seed: int = 0
    resumed_from: int = -1  # the frame a resumed render continued from (-1: rendered from frame 0)
    metrics: dict[str, float] = field(default_factory=dict)  # temporal error of the output (and the source)
    notes: list[str] = field(default_factory=list)  # what the encoders' size targets chose


def render(spec: Spec, events: Events | None = None, *, overwrite: bool = False) -> RenderResult:
    """Render ``spec`` into ``output.dir/output.name``; every frame is written as soon as it exists, so a crash
    or cancel loses nothing and :func:`resume` can continue.

    A run folder that already holds a run is refused (runs are never mixed) unless ``overwrite``, which
    deletes that run's files first, and only if the folder holds nothing but flipbook's files (see
    :mod:`flipbook.runs.run_dir`). Both checks come after the whole spec is checked and before any model loads.
    """
    return _render(spec, events or Events(), run=None, overwrite=overwrite)


def resume(run_dir: str | Path, events: Events | None = None) -> RenderResult:
    """Continue a render that was stopped (Ctrl-C, a crash, SIGKILL) from the frames in ``run_dir``.

    The spec is the one the run recorded (with its chosen seed), so the frames come out identical to an
    uninterrupted render's.
    """
    run = RunDir(Path(run_dir))
    return _render(run.read_spec(), events or Events(), run=run)


def _render(spec: Spec, events: Events, run: RunDir | None, overwrite: bool = False) -> RenderResult:
    # 1. Resolve everything random or named and read every input file, before any model is loaded
    spec, plan, mode = prepare(spec)
    networks, prompts = resolve_prompts(spec, plan)
    n = spec.animation.max_frames

    # 2. Start (or continue) the run folder; models load when the first frame needs one
    resuming = run is not None
    run, start = open_run(spec, plan, mode, run, overwrite=overwrite)
    result = RenderResult(run_dir=run.path, seed=spec.sampling.seed, resumed_from=start)
    run.log(f"resume from frame {start}" if resuming else f"start: {n} frames, seed {spec.sampling.seed}")
    ctx = mode_context(spec, plan, events, run, start, networks=networks, prompts=prompts)
    cores = ctx.cores

    # 3. Render frames; the background writer writes each one (PNG, atomically, in order) while the mode makes
    # the next; once it has, the frames before it are on disk and are logged and reported here, on the render's
    # thread (a cancel from a frame's event stops before the next frame is handed over)
    in_betweens = set()

    def report(written: list[Written]) -> None:
        for frame in written:
            result.frames.append(frame.path)
            run.log(f"frame {frame.index}" + (" (in-between)" if frame.index in in_betweens else ""))
            events.frame(FrameEvent(frame.index, n, frame.image))

    try:
        with FrameWriter() as writer:
            for frame in mode.render(ctx):
                planned = plan[frame.index]
                if frame.request is None:
                    in_betweens.add(frame.index)
                parameters = frame_parameters(
                    frame, planned, spec, cores.hash_of(planned.checkpoint), cores.refiner_hash
                )
                report(writer.wait())
                writer.put(frame.index, frame.image, run.frame_path(frame.index), parameters)
            report(writer.close())
    except BaseException as error:
        run.log(f"stopped: {type(error).__name__}: {error}".rstrip(": "))
        raise

    # 4. Measure flicker (the pairs the writer scored are not measured again), then post-process and encode
    # the animation from every frame on disk
    frames = FrameFiles([run.frame_path(i) for i in range(n)])  # read one at a time: memory flat in length
    result.metrics = consistency_metrics(frames, mode, spec, known=writer.pair_errors)
    run.write_metrics(result.metrics)
    run.log("temporal error: " + ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items()))
    soundtrack = mode.soundtrack(spec, run.path)
    parameters = animation_parameters(spec, plan, result.metrics, cores.hash_of(plan[0].checkpoint))
    result.outputs = write_animation(
        spec, frames, run.path, parameters, soundtrack=soundtrack, report=result.notes.append
    )
    for note in result.notes:
        run.log(note)
    run.log("done: " + ", ".join(f"{kind} {path.name}" for kind, path in result.outputs.items()))
    result.frames = [run.frame_path(i) for i in range(n)]
    return result


def frame_parameters(
    frame: Frame,
    planned: FramePlan,
    spec: Spec,
    model_hash: str | None = None,
    refiner_hash: str | None = None,
) -> GenerationParameters:
    """A1111-style parameters for one frame, so any frame can be re-made in another tool: what its request
    used (a mode may reorder frames, as variations does), or, for cadence in-betweens (no diffusion of their
    own), the plan's values, saying so. The model is named as A1111 names it (a file by its stem) with its
    ``model_hash`` (a single file's, once loaded), and so is the refiner with ``refiner_hash``."""
    extra = {"Frame": str(frame.index), "Version": f"flipbook {__version__}"}
    r = frame.request
    if frame.parameters is not None:
        extra.update(frame.parameters)
    elif r is None:
        extra["Diffused"] = "no (cadence in-between)"
    elif r.blend_weight > 0:
        extra["Prompt blend"] = f"{r.blend_mode} {r.blend_weight:.4g} toward: {r.blend_prompt}"
    if r is not None and r.refiner_switch_at is not None and spec.model.refiner is not None:
        extra.update(refiner_parameters(spec.model.refiner, refiner_hash, r.refiner_switch_at))
    return GenerationParameters(
        prompt=planned.prompt if r is None else r.prompt,
        negative_prompt=planned.negative_prompt if r is None else r.negative_prompt,
        steps=planned.steps if r is None else r.num_inference_steps,
        sampler=planned.sampler if r is None else r.sampler,
        cfg_scale=planned.cfg if r is None else r.guidance_scale,
        seed=planned.seed if r is None else r.seed,
        width=spec.animation.width,
        height=spec.animation.height,
        denoising_strength=r.strength if r is not None and r.image is not None else None,
        clip_skip=spec.sampling.clip_skip if spec.sampling.clip_skip > 1 else None,
        model_name=a1111_model_name(planned.checkpoint),
        model_hash=model_hash,
        extra=extra,
    )


def a1111_model_name(checkpoint: str) -> str:
    """A checkpoint as A1111's "Model" names it: a file by its stem, anything else as written."""
    path = Path(checkpoint)
    return path.stem if path.suffix.lower() in (".safetensors", ".ckpt") else checkpoint


def consistency_metrics(
    frames: Sequence[np.ndarray], mode: Mode, spec: Spec, known: dict[int, float] | None = None
) -> dict[str, float]:
    """The temporal-consistency score (flow-compensated frame-to-frame error, 0-255) of the output and, for
    modes with a source (video), of the source, so flicker is a number next to its baseline. ``known``: the
    output's pair errors already measured (by the background writer)."""
    from flipbook.motion.consistency import temporal_error

    metrics = {}
    output = temporal_error(frames, known=known)
    if output is not None:
        metrics["output"] = output
        source = mode.source_frames(spec)
        if source is not None:
            metrics["source"] = temporal_error(source)
    return metrics


def animation_parameters(
    spec: Spec, plan: Plan, metrics: dict[str, float] | None = None, model_hash: str | None = None
) -> str:
    """A1111-style parameters for the whole animation (frame 0's settings, the mode and frame count), stored
    in every output next to the spec itself."""
    first = plan[0]
    extra = {
        "Mode": spec.animation.mode,
        "Frames": str(spec.animation.max_frames),
        "FPS": f"{spec.animation.fps:g}",
        "Version": f"flipbook {__version__}",
    }
    for name, value in (metrics or {}).items():
        extra[f"Temporal error {name}"] = f"{value:.3f}"
    return format_parameters(
        GenerationParameters(
            prompt=first.prompt,
            negative_prompt=first.negative_prompt,
            steps=first.steps,
            sampler=first.sampler,
            cfg_scale=first.cfg,
            seed=first.seed,
            width=spec.animation.width,
            height=spec.animation.height,
            clip_skip=spec.sampling.clip_skip if spec.sampling.clip_skip > 1 else None,
            model_name=a1111_model_name(first.checkpoint),
            model_hash=model_hash,
            extra=extra,
        )
    )

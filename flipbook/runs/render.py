"""``render(spec, events)``: the one entry point the CLI, the HTTP API, the UI and benchmarks call."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from flipbook import __version__
from flipbook.io.pnginfo import GenerationParameters, save_png
from flipbook.io.writers import write_gif, write_mp4
from flipbook.models.extra_networks import ExtraNetworks
from flipbook.models.folders import ModelsDir
from flipbook.models.loading import load_model
from flipbook.modes import get_mode
from flipbook.modes.frame import Frame
from flipbook.runs.events import Events, FrameEvent
from flipbook.sampling.core import SamplingCore
from flipbook.spec.model import Spec
from flipbook.spec.plan import build_plan


@dataclass
class RenderResult:
    run_dir: Path
    frames: list[Path] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    seed: int = 0


def render(spec: Spec, events: Events | None = None) -> RenderResult:
    """Render ``spec``; every frame is written as soon as it exists, so a crash or cancel loses nothing."""
    events = events or Events()

    # 1. Resolve what is random or named, before any model is loaded
    spec = spec.with_seed()
    plan = build_plan(spec)
    mode = get_mode(spec.animation.mode)
    folders = ModelsDir(spec.model.models_dir) if spec.model.models_dir else None
    networks = ExtraNetworks(folders, [(lora.name, lora.weight) for lora in spec.model.loras])
    texts = {f.prompt for f in plan.frames} | {f.negative_prompt for f in plan.frames}
    prompts = {text: networks.resolve(text) for text in sorted(texts)}
    run_dir = Path(spec.output.dir) / (spec.output.name or "flipbook")
    result = RenderResult(run_dir=run_dir, seed=spec.sampling.seed)

    # 2. Load the model
    m = spec.model
    model = load_model(
        m.name, models_dir=m.models_dir, device=m.device, dtype=m.dtype, vae=m.vae,
        prediction_type=m.prediction_type, vae_slicing=m.vae_slicing, vae_tiling=m.vae_tiling,
    )  # fmt: skip
    networks.load_embeddings_for(model.pipe, [clean for clean, _ in prompts.values()])
    core = SamplingCore(model, events)

    # 3. Render frames, writing each one as it arrives
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.json").write_text(spec.model_dump_json(indent=2), encoding="utf-8")
    frames = []
    for frame in mode.render(spec, plan, core, events, prompts):
        result.frames.append(_save_frame(run_dir, frame, spec))
        frames.append(frame.image)
        events.frame(FrameEvent(frame.index, spec.animation.max_frames, frame.image))

    # 4. Encode the animation
    _write_animation(spec, frames, result)
    return result


def _save_frame(run_dir: Path, frame: Frame, spec: Spec) -> Path:
    path = run_dir / "frames" / f"frame_{frame.index:05d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(frame.image, path, frame_parameters(frame, spec))
    return path


def frame_parameters(frame: Frame, spec: Spec) -> GenerationParameters:
    """A1111-style parameters for one frame, so any frame can be re-made in another tool."""
    r = frame.request
    extra = {"Frame": str(frame.index), "Version": f"flipbook {__version__}"}
    return GenerationParameters(
        prompt=r.prompt,
        negative_prompt=r.negative_prompt,
        steps=r.num_inference_steps,
        sampler=r.sampler,
        cfg_scale=r.guidance_scale,
        seed=r.seed,
        width=r.width,
        height=r.height,
        denoising_strength=r.strength if r.image is not None else None,
        clip_skip=r.clip_skip if r.clip_skip > 1 else None,
        model_name=spec.model.name,
        extra=extra,
    )


def _write_animation(spec: Spec, frames: list, result: RenderResult) -> None:
    out, stem = spec.output, spec.output.name or "flipbook"
    comment = json.dumps({"flipbook_spec": spec.model_dump(mode="json")})
    if "png" in out.formats:
        result.outputs["png"] = result.run_dir / "frames"
    if "gif" in out.formats:
        path = result.run_dir / f"{stem}.gif"
        result.outputs["gif"] = write_gif(
            frames, path, fps=spec.animation.fps, loop=out.gif_loop, comment=comment
        )
    if "mp4" in out.formats:
        path = result.run_dir / f"{stem}.mp4"
        result.outputs["mp4"] = write_mp4(frames, path, fps=spec.animation.fps, crf=out.mp4_crf)

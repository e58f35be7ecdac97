"""``flipbook``: the command line, a thin shell over the spec model, ``render()`` and the sampling core."""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from pathlib import Path
from typing import Annotated

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import typer  # noqa: E402

from flipbook.errors import FlipbookError, LibraryError, NumericError  # noqa: E402

app = typer.Typer(
    help="Animated GIFs and videos with Stable Diffusion. `flipbook render SPEC` renders a spec file.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="built-in (tiny, random-sd15, shapes, tiny-xl, random-sdxl), folder, checkpoint, name or hub id",
    ),
]
ModelsDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--models-dir", envvar="FLIPBOOK_MODELS_DIR", help="A1111 or ComfyUI install (or its models/ folder)"
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="output folder")]
SPEC_HELP = "spec file: .toml, or JSON of any name (a flipbook spec, Deforum settings, a Parseq manifest)"


@app.command()
def render(
    spec: Annotated[Path | None, typer.Argument(help=SPEC_HELP)] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a field: animation.max_frames=48")
    ] = None,
    models_dir: ModelsDirOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output folder (default: the spec's)")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="continue a stopped render from its run folder (no SPEC needed)"),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="replace the run already in the run folder (deletes only flipbook's files; refused if the "
            "folder holds others); without it an existing run is refused",
        ),
    ] = False,
    preview_every: Annotated[
        int,
        typer.Option("--preview-every", min=0, help="write RUN_DIR/preview.png every N frames (0: never)"),
    ] = 1,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="render on Ray actors: 'local' (a Ray instance started here), 'auto' (the cluster `ray start` "
            "made on this machine) or a cluster's address (host:port); one actor per GPU, the job split where "
            "its frames are independent (interpolate, loop, variations, video without feedback, videomodel "
            "restyles by a text-to-video model), a sweep's runs side by side",
        ),
    ] = None,
    ray_actors: Annotated[
        int, typer.Option("--ray-actors", help="with --ray on a cluster without GPUs: how many CPU actors")
    ] = 2,
) -> None:
    """Render an animation spec to PNG frames, GIF and MP4; Ctrl-C stops cleanly, --resume continues, --overwrite
    replaces an earlier run.

    A run folder (output.dir/output.name) that holds a run needs --resume (continue) or --overwrite (replace).
    With --ray the frames are rendered on a Ray cluster's actors and written here; the result is the same.
    A spec with a [sweep] section renders every combination of its values as a run of its own
    (output.dir/output.name/<values>) and a contact sheet of them, labelled with the values.
    """
    from flipbook.runs.render import render as run_render
    from flipbook.runs.render import resume as run_resume
    from flipbook.runs.run_dir import PREVIEW_FILE, RunDir

    if (spec is None) == (resume is None):
        raise FlipbookError("render", "SPEC" if spec else "nothing", "a SPEC file or --resume RUN_DIR (one)")
    if resume is not None:
        if set_ or models_dir or out or overwrite:
            raise FlipbookError(
                "--resume",
                str(resume),
                "no --set, --models-dir, --out or --overwrite (the run's spec is used)",
            )
        loaded, run_dir = RunDir(resume).read_spec(), resume
    else:
        loaded = _load_spec_warning(spec, set_)
        if models_dir:
            loaded = loaded.model_copy(
                update={"model": loaded.model.model_copy(update={"models_dir": models_dir})}
            )
        if out:
            loaded = loaded.model_copy(update={"output": loaded.output.model_copy(update={"dir": out})})
        run_dir = Path(loaded.output.dir) / (loaded.output.name or "flipbook")
    if resume is None and loaded.sweep:
        _render_sweep(loaded, _farm(ray, ray_actors), overwrite)
        return
    preview = run_dir / PREVIEW_FILE if preview_every else None
    farm = _farm(ray, ray_actors)
    with (
        _ProgressEvents(
            loaded.animation.max_frames, "frames", preview=preview, preview_every=preview_every
        ) as events,
        _stop_on_ctrl_c(events, run_dir),
        farm or contextlib.nullcontext(),
    ):
        if farm is not None:
            result = (
                farm.resume(resume, events) if resume else farm.render(loaded, events, overwrite=overwrite)
            )
        elif resume is not None:
            result = run_resume(resume, events)
        else:
            result = run_render(loaded, events, overwrite=overwrite)
    if result.resumed_from >= 0:
        typer.echo(f"resumed after frame {result.resumed_from}")
    typer.echo(f"seed: {result.seed}")
    typer.echo(f"frames: {result.run_dir / 'frames'} ({len(result.frames)} PNG)")
    for fmt, path in result.outputs.items():
        if fmt != "png":
            typer.echo(f"{fmt}: {path}")
    for note in result.notes:
        typer.echo(note)
    if "output" in result.metrics:
        source = result.metrics.get("source")
        baseline = f" (source: {source:.2f})" if source is not None else ""
        typer.echo(f"temporal error: {result.metrics['output']:.2f}{baseline}  (flow-compensated, 0-255)")


def _render_sweep(spec, farm, overwrite: bool) -> None:
    """A spec's ``[sweep]``: every run of its grid (side by side on the farm's actors with --ray), then the
    contact sheet; prints each run's folder."""
    from flipbook.runs.sweep import render_sweep, sweep_summary
    from flipbook.spec.sweep import run_count

    total = spec.animation.max_frames * run_count(spec.sweep)
    run_dir = Path(spec.output.dir) / (spec.output.name or "flipbook")
    with (
        _ProgressEvents(total, "frames") as events,
        _stop_on_ctrl_c(events, run_dir),
        farm or contextlib.nullcontext(),
    ):
        if farm is not None:
            result = farm.render_sweep(spec, events, overwrite=overwrite)
        else:
            result = render_sweep(spec, events, overwrite=overwrite)
    for line in sweep_summary(result):
        typer.echo(line)


def _farm(address: str | None, actors: int):
    """The render farm for ``--ray`` (None without), its options checked before anything starts."""
    if address is None:
        return None
    from flipbook.farm.farm import Farm, FarmSettings

    return Farm(FarmSettings(address=address, cpu_actors=actors))


@app.command()
def validate(
    spec: Annotated[Path, typer.Argument(help=SPEC_HELP)],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a field: animation.max_frames=48")
    ] = None,
) -> None:
    """Check a spec without loading any model and print a summary of what it will render."""
    from flipbook.spec.summary import summarize

    typer.echo(summarize(_load_spec_warning(spec, set_)))


@app.command()
def plan(
    spec: Annotated[Path, typer.Argument(help=SPEC_HELP)],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a field: animation.max_frames=48")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="PNG path (default: <spec>.plan.png)")
    ] = None,
    motion: Annotated[
        bool, typer.Option("--motion/--no-motion", help="2d/3d: also write <spec>.motion.gif")
    ] = True,
) -> None:
    """Chart every schedule over the frames, prompt keyframes marked, and (2d/3d) write a motion preview GIF:
    a test pattern or the init image moved by the camera, no diffusion; no model is loaded."""
    from flipbook.io.plan_chart import plot_plan
    from flipbook.modes import get_mode
    from flipbook.spec.plan import build_plan

    loaded = _load_spec_warning(spec, set_).with_seed()
    built = build_plan(loaded)
    chart_path = out or spec.with_suffix(".plan.png")
    typer.echo(str(plot_plan(built, chart_path, title=spec.name)))
    if motion and get_mode(loaded.animation.mode).camera_path is not None:
        from flipbook.runs.preview import write_motion_preview

        gif = chart_path.with_name(
            chart_path.name.removesuffix(".plan.png").removesuffix(".png") + ".motion.gif"
        )
        typer.echo(str(write_motion_preview(loaded, built, gif)))


@app.command("import-deforum")
def import_deforum(
    settings: Annotated[
        Path,
        typer.Argument(
            help="a Deforum settings file of any era and name (.txt, .json: read by content; a Parseq manifest "
            "works too)"
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="spec file to write (default: stdout)")
    ] = None,
) -> None:
    """Convert Deforum settings to a flipbook spec (TOML): values read as the Deforum that wrote the file reads
    them, each difference and every unused setting listed on stderr, never dropped silently."""
    from flipbook.spec.load import read_spec_data

    _write_imported(*read_spec_data(settings), out)


@app.command("import-parseq")
def import_parseq(
    manifest: Annotated[
        Path, typer.Argument(help="a Parseq manifest (the JSON Parseq saves, with rendered_frames)")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="spec file to write (default: stdout)")
    ] = None,
) -> None:
    """Convert a Parseq manifest to a flipbook spec (TOML): its rendered values as schedules, prompts and seeds,
    the rest Deforum's defaults, as Deforum renders a manifest."""
    from flipbook.spec.deforum import read_deforum_settings
    from flipbook.spec.load import document_data, document_kind

    try:
        document = read_deforum_settings(manifest)
    except FlipbookError as error:
        raise FlipbookError(
            "manifest", str(manifest), "a Parseq manifest (JSON)", detail=error.detail
        ) from None
    if document_kind(document) != "parseq":
        raise FlipbookError(
            "manifest", str(manifest), "a Parseq manifest (JSON with rendered_frames)",
            detail="for Deforum settings use flipbook import-deforum",
        )  # fmt: skip
    _write_imported(*document_data(document, base=manifest.parent), out)


def _write_imported(data: dict, warnings: list[str], out: Path | None) -> None:
    """Validate imported spec data (the written spec must load), list the warnings, write TOML."""
    from flipbook.spec.load import spec_from_data
    from flipbook.spec.toml_writer import spec_to_toml

    spec_from_data(data)
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    text = spec_to_toml(data)
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    typer.echo(str(out))


@app.command()
def schema(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write to this file instead of stdout")
    ] = None,
) -> None:
    """Write the spec's JSON Schema (for editor autocompletion and validation): the modes and each one's
    section, and under "x-flipbook" what a field means (input files and models by kind, schedule ranges and
    units)."""
    import json

    from flipbook.spec.model import Spec

    text = json.dumps(Spec.model_json_schema(), indent=2)
    if out:
        out.write_text(text + "\n", encoding="utf-8")
        typer.echo(str(out))
    else:
        typer.echo(text)


def _load_spec_warning(path: Path, overrides: list[str] | None):
    """Load a spec (or Deforum settings file); settings flipbook can't use yet are listed once on stderr."""
    from flipbook.spec.load import load_spec_and_warnings

    spec, warnings = load_spec_and_warnings(path, list(overrides or []))
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    return spec


def _still_command(
    prompt: str,
    *,
    negative: str,
    steps: int,
    cfg: float,
    sampler: str,
    seed: int,
    size: str,
    batch_count: int,
    batch_size: int,
    model: str,
    models_dir: Path | None,
    out: Path,
    clip_skip: int,
    device: str,
    dtype: str,
    vae: str | None,
    refiner: str | None = None,
    refiner_switch_at: float = 0.8,
    image: Path | None = None,
    strength: float = 1.0,
    mask: Path | None = None,
    mask_blur: float = 0.0,
    masked_content: str = "original",
    overlay: bool = False,
    **hires_options: object,
) -> None:
    """txt2img, img2img and inpaint: the still-image pipeline (flipbook/runs/stills.py) the A1111 API runs too.
    ``hires_options`` are txt2img's ``--hires-*`` options (``hires_scale`` ...): any of them turns hires fix on."""
    from flipbook.io.images import open_image
    from flipbook.models.extra_networks import ExtraNetworks
    from flipbook.models.folders import ModelsDir
    from flipbook.models.loading import load_model
    from flipbook.runs.hires import hires_settings
    from flipbook.runs.stills import StillSettings, make_stills, prepare_stills

    # 1. Check everything before loading the model
    width, height = parse_size(size)
    given = {
        name.removeprefix("hires_"): v
        for name, v in hires_options.items()
        if name != "hires" and v is not None
    }
    hires = hires_settings(given, _HIRES_FLAGS) if given or hires_options.get("hires") else None
    for name, value in (("--batch-count", batch_count), ("--batch-size", batch_size)):
        if value < 1:
            raise FlipbookError(name, value, "an integer >= 1")
    settings = StillSettings(
        prompt, model, negative_prompt=negative, steps=steps, cfg_scale=cfg, sampler=sampler, seed=seed,
        width=width, height=height, count=batch_count, batch_size=batch_size,
        inits=(open_image(image, "--image"),) if image else (), strength=strength,
        mask=open_image(mask, "--mask") if mask else None, mask_blur=mask_blur, masked_content=masked_content,
        overlay=overlay, clip_skip=clip_skip, hires=hires, refiner=refiner, refiner_switch_at=refiner_switch_at,
    )  # fmt: skip
    networks = ExtraNetworks(ModelsDir(models_dir) if models_dir else None)
    try:
        prepared = prepare_stills(settings, networks, seed_field="--seed")
    except FlipbookError as error:  # hires and refiner settings are named by their options
        if error.field == "refiner_switch_at":
            raise FlipbookError("--refiner-switch-at", error.value, error.allowed) from None
        field = _HIRES_FLAGS.get(error.field.removeprefix("hires."), error.field)
        if not error.field.startswith("hires.") or field == error.field:
            raise
        raise FlipbookError(field, error.value, error.allowed, detail=error.detail) from None
    _create_output_folder(out)

    # 2. Load the model, sample, and save PNGs with A1111 parameters
    try:
        bundle = load_model(
            model, models_dir=models_dir, device=device, dtype=dtype, vae=vae, refiner=refiner
        )
    except FlipbookError as error:
        if error.field != "model.refiner":
            raise
        raise FlipbookError("--refiner", error.value, error.allowed, detail=error.detail) from None
    with _ProgressEvents(batch_count * steps, "steps", per_step=True) as events:
        made = make_stills(prepared, bundle, networks, events, out)
    for still in made.stills:
        typer.echo(str(still.path))


def _create_output_folder(out: Path) -> None:
    """Make ``--out`` before any model loads: one error naming it and the system's reason if that fails."""
    from flipbook.io.atomic import unwritable_folder

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise unwritable_folder("--out", out, error) from None


def parse_size(size: str) -> tuple[int, int]:
    """``512x768`` -> (512, 768); both multiples of 8."""
    parts = size.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise FlipbookError("--size", size, "WIDTHxHEIGHT, e.g. 512x512")
    width, height = (int(p) for p in parts)
    for name, value in (("width", width), ("height", height)):
        if value < 8 or value % 8:
            raise FlipbookError("--size", size, f"a {name} that is a positive multiple of 8")
    return width, height


Prompt = Annotated[
    str, typer.Argument(help="prompt, A1111 syntax: (word:1.2), \\[word], <lora:name:0.8>, a AND b")
]
Negative = Annotated[str, typer.Option("--negative", "-n", help="negative prompt")]
Steps = Annotated[int, typer.Option("--steps", help="sampling steps")]
Cfg = Annotated[float, typer.Option("--cfg", help="classifier-free guidance scale")]
Sampler = Annotated[
    str, typer.Option("--sampler", help='A1111 sampler name, e.g. "Euler a", "DPM++ 2M Karras"')
]
Seed = Annotated[
    int,
    typer.Option(
        "--seed",
        help="seed, 0 to 4294967295 (32-bit, as A1111's); -1 picks a random one (recorded in the PNG)",
    ),
]
Size = Annotated[str, typer.Option("--size", help="WIDTHxHEIGHT, multiples of 8")]
BatchCount = Annotated[
    int, typer.Option("--batch-count", help="images to make (seeds seed, seed+1, ... wrapping at 2**32)")
]
BatchSize = Annotated[int, typer.Option("--batch-size", help="images per UNet call")]
ClipSkip = Annotated[int, typer.Option("--clip-skip", help="A1111 clip skip (1 = none)")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps")]
Dtype = Annotated[str, typer.Option("--dtype", help="auto, fp32, fp16, bf16")]
Vae = Annotated[str | None, typer.Option("--vae", help="separate VAE: file, folder or name in --models-dir")]
RefinerOpt = Annotated[
    str | None,
    typer.Option(
        "--refiner", help="SDXL refiner (tiny-xl-refiner, file, folder, name in --models-dir or hub id)"
    ),
]
RefinerSwitch = Annotated[
    float,
    typer.Option("--refiner-switch-at", help="with --refiner: the share of the steps it takes over after"),
]


_STILL_OPTIONS = [  # (name, annotated type, default) shared by txt2img, img2img and inpaint
    ("negative", Negative, ""),
    ("steps", Steps, 20),
    ("cfg", Cfg, 7.0),
    ("sampler", Sampler, "Euler a"),
    ("seed", Seed, -1),
    ("size", Size, "512x512"),
    ("batch_count", BatchCount, 1),
    ("batch_size", BatchSize, 1),
    ("model", ModelOpt, "tiny"),
    ("models_dir", ModelsDirOpt, None),
    ("clip_skip", ClipSkip, 1),
    ("device", Device, "auto"),
    ("dtype", Dtype, "auto"),
    ("vae", Vae, None),
    ("refiner", RefinerOpt, None),
    ("refiner_switch_at", RefinerSwitch, 0.8),
]
from flipbook.runs.hires import HiresSettings  # noqa: E402

_HIRES_FLAGS = {name: f"--hires-{name.replace('_', '-')}" for name in HiresSettings.model_fields}
"""Each hires setting's txt2img option."""


def _hires_options() -> list[tuple[str, object, object]]:
    """txt2img's ``--hires-*`` options, one per :class:`HiresSettings` field (its type and description)."""
    options: list[tuple[str, object, object]] = [
        ("hires", Annotated[bool, typer.Option("--hires", help="A1111's hires fix with its defaults")], False)
    ]
    for name, info in HiresSettings.model_fields.items():
        kind = info.annotation if info.annotation in (int, float) else str
        default = (
            ""
            if info.default in (None, "")
            else f"; default {info.default:g}"
            if kind is not str
            else f"; default {info.default}"
        )
        text = f"hires fix: {info.description}{default}"
        options.append(
            (f"hires_{name}", Annotated[kind | None, typer.Option(_HIRES_FLAGS[name], help=text)], None)
        )
    return options


_IMAGE = ("image", Annotated[Path, typer.Option("--image", "-i", help="init image")], inspect.Parameter.empty)


def _still(name: str, doc: str, extra: list[tuple[str, object, object]]) -> None:
    """Register one still-image command: the prompt, its own options, then the shared ones."""

    def command(**options) -> None:
        _still_command(**options)

    options = [("prompt", Prompt, inspect.Parameter.empty), *extra, *_STILL_OPTIONS]
    options.append(("out", OutOpt, Path(f"out/{name}")))
    command.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=t, default=d) for n, t, d in options]
    )
    command.__doc__ = doc
    command.__name__ = name.replace("2", "_to_")
    app.command(name)(command)


_still(
    "txt2img",
    "Make still images from a prompt (PNG with A1111 parameters); --hires or any --hires-* option adds A1111's "
    "hires fix (a second, upscaled img2img pass).",
    _hires_options(),
)
_still(
    "img2img",
    "Re-draw an image guided by a prompt.",
    [
        _IMAGE,
        ("strength", Annotated[float, typer.Option("--strength", help="denoising strength (0, 1]")], 0.75),
    ],
)
_still(
    "inpaint",
    "Repaint the masked part of an image.",
    [
        _IMAGE,
        (
            "mask",
            Annotated[Path, typer.Option("--mask", help="mask image: white = repaint")],
            inspect.Parameter.empty,
        ),
        ("strength", Annotated[float, typer.Option("--strength", help="denoising strength (0, 1]")], 1.0),
        (
            "mask_blur",
            Annotated[float, typer.Option("--mask-blur", help="Gaussian blur of the mask, pixels")],
            4.0,
        ),
        (
            "masked_content",
            Annotated[
                str, typer.Option("--masked-content", help="original, fill, latent_noise, latent_nothing")
            ],
            "original",
        ),
        ("overlay", Annotated[bool, typer.Option(help="keep unmasked pixels exactly (A1111 overlay)")], True),
    ],
)


@app.command()
def info(
    file: Annotated[
        Path,
        typer.Argument(help="a PNG from flipbook, A1111 or ComfyUI, or a flipbook GIF/MP4/WebM/WebP/APNG"),
    ],
    spec: Annotated[bool, typer.Option("--spec", help="print the embedded flipbook spec (JSON)")] = False,
) -> None:
    """Print the generation parameters stored in an image or animation (and its flipbook spec with --spec)."""
    import json

    from flipbook.io.metadata import read_embedded

    embedded = read_embedded(file)
    if spec:
        if embedded.spec is None:
            raise FlipbookError("file", str(file), "a file made by flipbook", detail="no flipbook spec in it")
        typer.echo(json.dumps(embedded.spec, indent=2, ensure_ascii=False))
        return
    if embedded.parameters is None and embedded.spec is None:
        raise FlipbookError("file", str(file), "a file with generation parameters", detail="none found")
    if embedded.parameters is not None:
        typer.echo(embedded.parameters)
    if embedded.spec is not None:
        typer.echo(f"(flipbook spec embedded: `flipbook info --spec {file}` prints it, `flipbook render {file}` "
                   "renders it again)")  # fmt: skip


@app.command()
def bench(
    case: Annotated[
        str,
        typer.Argument(
            help="benchmark case: sampler, camera-2d, frame-interpolation, encode, gif-quality, memory, server, "
            "propagation, overhead (the render loop outside the nets, at 512x512 and 1024x1024), stream, compile, "
            "cache, gpu (every GPU case in one run), farm, or a mode's own (interpolate, video, svd, animatediff, "
            "videomodel)"
        ),
    ] = "sampler",
    model: ModelOpt = "tiny",
    size: Size = "64x64",
    steps: Steps = 10,
    runs: Annotated[int, typer.Option("--runs", help="timed repetitions (after one warm-up)")] = 3,
    frames: Annotated[
        int | None,
        typer.Option(
            "--frames",
            help="camera-2d: frames timed after frame 0 (8); interpolate, video: frames (8); "
            "frame-interpolation: source frames (30); encode: frames (120); gif-quality: photo clip frames (48); "
            "memory: the long clip's frames (1200; the short clip has 1/8); "
            "videomodel: frames per segment (9; 81 for random-wan-1.3b); stream: frames (16); "
            "farm: frames of the split job (24)",
        ),
    ] = None,
    sampler: Sampler = "Euler",
    device: Device = "auto",
    dtype: Dtype = "auto",
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for results JSON and markdown")] = Path(
        "benchmarks"
    ),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="gpu: list the cases, their settings and budgets; run nothing")
    ] = False,
) -> None:
    """Measure speed: the sampling core (sampler) or a 2D camera render (camera-2d) against plain diffusers;
    the latent walk (interpolate) and video restyling (video) batched against one frame per call;
    optical-flow frame interpolation (frame-interpolation) and the encoders (encode), where --size sets the
    frame size; restyle's keyframe propagation (propagation: fidelity, speed at 512x512, flicker against the
    video mode); video restyling with StreamDiffusion's stream batch against per-frame batches (stream);
    torch.compile against eager (compile); the step caches' speed-up and difference (cache); every GPU case in
    one run of at most 8 minutes, one JSON + markdown report (gpu; refused without a CUDA GPU, --dry-run lists
    it); the render farm on a local Ray instance (farm: 1 against 2 actors, overhead against in-process)."""
    from flipbook.bench import run_case

    width, height = parse_size(size)
    report = run_case(case, model=model, width=width, height=height, steps=steps, runs=runs, sampler=sampler,
                      device=device, dtype=dtype, out=out, frames=frames, dry_run=dry_run)  # fmt: skip
    typer.echo(report)


class _ProgressEvents:
    """A rich progress bar fed by the render's Events object: frames done, frames/s and time left; with
    ``preview``, the latest frame is written there every ``preview_every`` frames."""

    def __init__(
        self,
        total: int,
        unit: str,
        per_step: bool = False,
        preview: Path | None = None,
        preview_every: int = 0,
    ) -> None:
        self.total, self.unit, self.per_step = total, unit, per_step
        self.preview, self.preview_every = preview, preview_every

    def __enter__(self):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        from flipbook.events import Events

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TaskProgressColumn(), TimeRemainingColumn(),
            transient=True, disable=not sys.stderr.isatty(),
        )  # fmt: skip
        self.bar.start()
        self.task = self.bar.add_task(self.unit, total=self.total, rate="")
        if self.per_step:
            return Events(on_step=lambda e: self.bar.advance(self.task))
        return Events(on_frame=self._on_frame)

    def _on_frame(self, event) -> None:
        """Count finished frames (a resumed run starts at the frames already there) and show frames/s."""
        if self.bar.tasks[0].completed == 0 and event.index > 0:  # resumed: earlier frames are done
            self.bar.reset(self.task, completed=event.index, rate="")
        self.bar.advance(self.task)
        speed = self.bar.tasks[0].speed
        self.bar.update(self.task, rate=f"{speed:.2f} frames/s" if speed else "")
        if self.preview is not None and self.preview_every and (event.index + 1) % self.preview_every == 0:
            _write_preview(event.image, self.preview)

    def __exit__(self, *exc) -> None:
        self.bar.stop()


def _write_preview(image, path: Path) -> None:
    from flipbook.io.atomic import atomic_target

    with atomic_target(path) as tmp:
        image.save(tmp, format="PNG")


class _stop_on_ctrl_c:
    """The first Ctrl-C asks the render to stop at the next step (frames on disk stay, the run stays
    resumable); a second one interrupts at once. Either way the user is told how to resume."""

    def __init__(self, events, run_dir: Path) -> None:
        self.events, self.run_dir = events, run_dir

    def __enter__(self):
        import signal

        self._previous = signal.getsignal(signal.SIGINT)

        def first(signum, frame) -> None:
            typer.echo("\nstopping after this step (Ctrl-C again to stop now)", err=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.events.cancel()

        signal.signal(signal.SIGINT, first)
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        import signal

        from flipbook.events import RenderCancelled

        signal.signal(signal.SIGINT, self._previous)
        if kind is not None and issubclass(kind, RenderCancelled | KeyboardInterrupt):
            typer.echo(f"stopped; continue with: flipbook render --resume {self.run_dir}", err=True)
            raise SystemExit(130)
        return False


def _register_command_groups() -> None:
    """Commands that live in ``flipbook/commands/``, one module per group (each imports its heavy libraries
    only when it runs)."""
    from flipbook.commands import audio, encode, inspire, interpolate, serve, toy, upscale

    app.add_typer(audio.app, name="audio")
    encode.register(app)
    inspire.register(app)
    interpolate.register(app)
    serve.register(app)
    toy.register(app)
    upscale.register(app)


_register_command_groups()


def run_app(typer_app: typer.Typer) -> None:
    """Run a typer app the flipbook way: user errors print one line and exit with 2 (usage errors too, as
    click does)."""
    try:
        typer_app()
    except FlipbookError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except (LibraryError, NumericError) as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)


def main() -> None:
    """Entry point of the ``flipbook`` command."""
    run_app(app)


if __name__ == "__main__":
    main()

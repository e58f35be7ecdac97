"""``flipbook upscale``: upscale an image or a folder of frames, with Lanczos or an ESRGAN-family model.

A thin adapter over :mod:`flipbook.post.upscale`: it checks the arguments, lists the input files, and writes
one PNG per input. Frames are read, upscaled and written one at a time, so a long animation never has to fit
in memory; the model is loaded once.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated

import PIL.Image
import typer
from PIL.Image import Image

from flipbook.errors import FlipbookError

ALLOWED_INPUT = "an image, a folder of images, an animated GIF/WebP/PNG or a video"


def register(app: typer.Typer) -> None:
    """Add the ``upscale`` command to ``app`` (the main CLI calls this)."""
    app.command("upscale")(upscale)


def upscale(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="IN", help="an image, a folder of frames, an animated GIF/WebP/PNG or a video"
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="output PNG for one image, else a folder of PNG frames"),
    ],
    scale: Annotated[float, typer.Option("--scale", help="size factor: 2 doubles width and height")] = 2.0,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="upscaler file or name (e.g. 4x-UltraSharp); default: Lanczos"),
    ] = None,
    models_dir: Annotated[
        Path | None,
        typer.Option(
            "--models-dir",
            help="A1111 or ComfyUI install (or its models/ folder); default: FLIPBOOK_MODELS_DIR",
        ),
    ] = None,
    tile: Annotated[
        int, typer.Option("--tile", help="tile size in input pixels, bounds memory (0: whole frame)")
    ] = 512,
    overlap: Annotated[int, typer.Option("--overlap", help="tile overlap in input pixels, feathered")] = 32,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N, mps")] = "auto",
) -> None:
    """Upscale an image, a folder of frames, a GIF or a video to PNG frames; a model whose scale differs from --scale is finished
    with Lanczos (a 4x model at --scale 2 runs at 4x, then halves)."""
    from flipbook.post.upscale import check_scale, load_upscaler, upscale_frames

    scale = check_scale(scale, "--scale")
    if tile > 0 and not 0 <= overlap < tile:
        raise FlipbookError("--overlap", overlap, f"an integer >= 0 and < --tile ({tile})")
    pairs = _input_output_pairs(source, out)
    upscaler = load_upscaler(model, models_dir=models_dir, device=device) if model else None
    for load, target in pairs:
        (result,) = upscale_frames([load()], scale=scale, model=upscaler, tile=tile, overlap=overlap)
        _save_png(result, target)
        typer.echo(str(target))


def _input_output_pairs(source: Path, out: Path) -> list[tuple[Callable[[], Image], Path]]:
    """(a loader of the input frame, output PNG) for every frame; all checked before any model is loaded.
    Folder frames are opened one at a time; a GIF or video is decoded up front (PyAV/Pillow)."""
    from flipbook.io.readers import image_files, is_animation, read_frames

    if source.is_dir():
        files = image_files(source)
        if not files:
            raise FlipbookError("IN", str(source), ALLOWED_INPUT, detail="the folder holds no images")
        _check_folder(out)
        return [(partial(_open, path), out / f"{path.stem}.png") for path in files]
    if not source.is_file():
        raise FlipbookError("IN", str(source), ALLOWED_INPUT, detail="no such file or folder")
    if is_animation(source):
        _check_folder(out)
        frames = read_frames(source, field="IN").frames
        return [(partial(PIL.Image.fromarray, f), out / f"frame_{i:05d}.png") for i, f in enumerate(frames)]
    if out.is_dir():
        return [(partial(_open, source), out / f"{source.stem}.png")]
    if out.suffix.lower() != ".png":
        raise FlipbookError("--out", str(out), "a .png file or an existing folder (IN is one image)")
    return [(partial(_open, source), out)]


def _check_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FlipbookError("--out", str(out), "a folder (IN has several frames)", detail="it is a file")


def _open(path: Path):
    from flipbook.io.images import open_image

    return open_image(path, "IN")


def _save_png(image, path: Path) -> None:
    """Write atomically, so an interrupted run never leaves a truncated frame under its final name."""
    from flipbook.io.atomic import atomic_target

    with atomic_target(path) as tmp:
        image.save(tmp, format="PNG")

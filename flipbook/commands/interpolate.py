"""``flipbook interpolate``: N times as many frames, for smoother or slower motion.

A thin adapter over :mod:`flipbook.post.frame_interpolation`: it reads any input that
:func:`flipbook.io.readers.read_frames` accepts, works out the output's frame rate, interpolates, and writes
by OUT's suffix: no suffix is a folder of PNG frames, ``.gif`` an animated GIF, ``.mp4`` an H.264 video. The
output kind, method and model file are checked before any frame is read, the frame rate as soon as the
input's is known, and a model file that does not load (FILM: not TorchScript; RIFE: not a RIFE 4.6 state
dict) fails before interpolation starts.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flipbook.errors import FlipbookError

if TYPE_CHECKING:
    import numpy as np

OUTPUT_KINDS = {"": "png", ".gif": "gif", ".mp4": "mp4"}


def register(app: typer.Typer) -> None:
    """Add the ``interpolate`` command to ``app`` (the main CLI calls this)."""
    app.command("interpolate")(interpolate)


def interpolate(
    source: Annotated[
        Path, typer.Argument(metavar="IN", help="a folder of images, an animated GIF/WebP/PNG or a video")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="a folder (PNG frames), a .gif or an .mp4")],
    factor: Annotated[
        int, typer.Option("--x", min=1, help="frames per input frame: 2 doubles, 4 quadruples")
    ] = 2,
    loop: Annotated[
        bool, typer.Option("--loop", help="also interpolate last -> first, for a seamless looping GIF")
    ] = False,
    slowmo: Annotated[
        bool, typer.Option("--slowmo", help="keep the input's fps, so motion is --x times slower")
    ] = False,
    fps: Annotated[
        float | None,
        typer.Option("--fps", help="output frame rate (default: the input's x --x, or x 1 with --slowmo)"),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            "--method", help="flow (no weights), blend (cross-fade), film or rife (both need --model)"
        ),
    ] = "flow",
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="FILM TorchScript file (film_net_fp32.pt) or RIFE 4.6 weights (flownet.pkl), or its name in "
            "--models-dir",
        ),
    ] = None,
    models_dir: Annotated[
        Path | None,
        typer.Option(
            "--models-dir",
            envvar="FLIPBOOK_MODELS_DIR",
            help="A1111 or ComfyUI install (or its models/ folder) whose FILM/RIFE folders --model names",
        ),
    ] = None,
) -> None:
    """Insert in-betweens (optical flow, cross-fade, FILM or RIFE) and write PNG frames, a GIF or an MP4."""
    from flipbook.io.readers import read_frames
    from flipbook.post.frame_interpolation import check_method, interpolated_frames, output_fps

    kind = output_kind(out)
    weights = check_method(method, model, models_dir)
    clip = read_frames(source, field="IN", lazy=True)  # a folder stays on disk: memory flat in length
    rate = fps if fps is not None else output_fps(clip.fps, factor, slowmo=slowmo)
    check_rate(rate, kind, source)
    frames = interpolated_frames(clip.frames, factor=factor, loop=loop, method=method, model_path=weights)
    written, count = write(frames, out, kind, rate)
    timing = f" at {rate:g} fps" if kind != "png" else ""
    typer.echo(f"{len(clip.frames)} -> {count} frames{timing}: {written}")


def output_kind(out: Path) -> str:
    """``png`` (a folder), ``gif`` or ``mp4`` from OUT's suffix."""
    kind = OUTPUT_KINDS.get(out.suffix.lower())
    if kind is None:
        raise FlipbookError("--out", str(out), "a folder (no suffix, PNG frames), a .gif or an .mp4")
    if kind != "png" and out.is_dir():
        raise FlipbookError("--out", str(out), f"a .{kind} file", detail="it is a folder")
    return kind


def check_rate(rate: float | None, kind: str, source: Path) -> None:
    """A GIF or MP4 needs a frame rate; why only those: PNG frames store no timing."""
    from flipbook.io.writers import GIF_MAX_FPS

    if kind == "png":
        return
    if rate is None:
        detail = f"{source} stores no frame rate (a folder or a still image)"
        raise FlipbookError("--fps", None, "a frame rate > 0 for the output, e.g. --fps 24", detail=detail)
    if rate <= 0:
        raise FlipbookError("--fps", rate, "a number > 0")
    if kind == "gif" and rate > GIF_MAX_FPS:
        detail = "GIF delays are whole centiseconds; lower --fps or use --slowmo"
        raise FlipbookError("--fps", rate, f"at most {GIF_MAX_FPS} for a GIF", detail=detail)


def write(frames: Iterable[np.ndarray], out: Path, kind: str, fps: float | None) -> tuple[Path, int]:
    """Write ``frames`` as OUT's kind with the writers every flipbook output goes through, as they are made:
    PNG frames straight into OUT, a GIF or MP4 from a scratch folder of them beside OUT (removed after), so
    the clip is never held in memory. Returns OUT and the number of frames."""
    from flipbook.io.frames import save_frames
    from flipbook.io.writers import PNG_COMPRESS_LEVEL, write_gif, write_mp4

    if kind == "png":
        return out, len(save_frames(frames, out, compress_level=PNG_COMPRESS_LEVEL, field="--out"))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as scratch:
        made = save_frames(frames, Path(scratch))
        return (write_gif if kind == "gif" else write_mp4)(made, out, fps=fps), len(made)

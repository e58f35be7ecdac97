"""``flipbook encode``: write frames you already have as GIF, MP4, WebM, WebP, APNG, PNG frames or a contact sheet.

A thin adapter over :func:`flipbook.io.writers.write_outputs`: FRAMES is anything
:func:`flipbook.io.readers.read_frames` accepts (a folder of images, an animated GIF/WebP/PNG, a video). The
frame rate is the source's unless ``--fps`` is given; a folder or a still has none, so it then needs ``--fps``.
When FRAMES is a file carrying an embedded spec or A1111 parameters (see :mod:`flipbook.io.metadata`), they
are carried over into every output. Errors name the command-line flag, not the library's field. A folder of
frames is read one frame at a time by each encoder (see :mod:`flipbook.io.frames`), so memory does not grow
with the number of frames; an animated image or a video is decoded into memory first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from flipbook.errors import FlipbookError

# The library's field names -> the flag a user of this command typed.
FLAGS = {
    "output.formats": "--to",
    "output.fps": "--fps",
    "output.stem": "--name",
    "output.gif_palette": "--gif-palette",
    "output.gif_dither": "--gif-dither",
    "output.gif_colors": "--gif-colors",
    "output.gif_lossy": "--gif-lossy",
    "output.gif_max_mb": "--gif-max-mb",
    "output.webp_max_mb": "--webp-max-mb",
    "output.apng_colors": "--apng-colors",
    "output.apng_max_mb": "--apng-max-mb",
    "output.max_mb_allow_fps": "--allow-fps",
    "output.mp4_crf": "--crf",
    "output.h265_crf": "--crf",
    "output.webm_crf": "--crf",
    "output.mp4_preset": "--preset",
    "output.webp_quality": "--webp-quality",
    "audio": "--audio",
    "audio.file": "--audio",
    "audio.offset": "--audio-offset",
}


def register(app: typer.Typer) -> None:
    """Add the ``encode`` command to ``app`` (the main CLI calls this)."""
    app.command("encode")(encode)


def encode(
    frames: Annotated[
        Path,
        typer.Argument(metavar="FRAMES", help="a folder of images, an animated GIF/WebP/PNG or a video"),
    ],
    to: Annotated[
        str,
        typer.Option("--to", help="comma-separated: png, gif, mp4, mp4-h265, webm, webp, apng, contact"),
    ] = "gif,mp4",
    fps: Annotated[
        float | None, typer.Option("--fps", help="frame rate (default: the source's; needed for a folder)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output folder (default: the one FRAMES is in)")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="file name stem (default: FRAMES' name)")] = None,
    ping_pong: Annotated[
        bool, typer.Option("--ping-pong", help="play forward then backward (0 1 2 3 2 1), a seamless loop")
    ] = False,
    gif_palette: Annotated[
        str,
        typer.Option(
            "--gif-palette",
            help="per_scene (one palette per scene, no shimmer), global (one for the clip) or per_frame",
        ),
    ] = "per_scene",
    gif_dither: Annotated[
        str,
        typer.Option(
            "--gif-dither", help="none, ordered (a fixed pattern: no crawling noise) or floyd-steinberg"
        ),
    ] = "none",
    gif_colors: Annotated[int, typer.Option("--gif-colors", help="GIF colours per palette, 2-255")] = 255,
    gif_lossy: Annotated[
        int, typer.Option("--gif-lossy", help="gifsicle lossy LZW, 0 (off) to 200; 30-80 is typical")
    ] = 0,
    gif_max_mb: Annotated[
        float | None,
        typer.Option(
            "--gif-max-mb", help="fit the GIF in this many MB (e.g. 10): smaller frames, fewer colours, lossy"
        ),
    ] = None,
    webp_max_mb: Annotated[
        float | None, typer.Option("--webp-max-mb", help="fit the WebP in this many MB")
    ] = None,
    apng_colors: Annotated[
        int, typer.Option("--apng-colors", help="APNG palette size 2-256 (0: every colour, lossless)")
    ] = 0,
    apng_max_mb: Annotated[
        float | None, typer.Option("--apng-max-mb", help="fit the APNG in this many MB")
    ] = None,
    allow_fps: Annotated[
        bool,
        typer.Option(
            "--allow-fps", help="size targets may lower the frame rate (keep every 2nd-4th frame; reported)"
        ),
    ] = False,
    crf: Annotated[
        int | None,
        typer.Option("--crf", help="quality of every video format asked for: lower is better and bigger"),
    ] = None,
    preset: Annotated[
        str | None, typer.Option("--preset", help="x264 preset for mp4, e.g. faster, medium, slow")
    ] = None,
    webp_quality: Annotated[int, typer.Option("--webp-quality", help="WebP quality 0-100")] = 90,
    lossless: Annotated[bool, typer.Option("--lossless", help="lossless WebP")] = False,
    audio: Annotated[
        Path | None, typer.Option("--audio", help="soundtrack for mp4/webm, cut to the video's length")
    ] = None,
    audio_offset: Annotated[
        float, typer.Option("--audio-offset", help="start this many seconds into the soundtrack")
    ] = 0.0,
) -> None:
    """Encode existing frames (a folder, a GIF/WebP/APNG or a video) into other formats."""
    from flipbook.io.readers import read_frames
    from flipbook.io.writers import EncodeOptions, write_outputs

    formats = [part.strip() for part in to.split(",") if part.strip()]
    values = _option_values(formats, ping_pong, gif_palette, gif_dither, crf, preset, webp_quality, lossless)
    values.update(
        gif_colors=gif_colors,
        gif_lossy=gif_lossy,
        gif_max_mb=gif_max_mb,
        webp_max_mb=webp_max_mb,
        apng_colors=apng_colors,
        apng_max_mb=apng_max_mb,
        max_mb_allow_fps=allow_fps,
    )
    with _named_by_flags():
        options = EncodeOptions.from_mapping(values)
        soundtrack = _soundtrack(audio, audio_offset)
    source = read_frames(frames, field="FRAMES", lazy=True)  # a folder stays on disk: memory flat in length
    rate = fps if fps is not None else source.fps
    if rate is None:
        detail = f"{frames} stores no frame rate (a folder or a still image)"
        raise FlipbookError("--fps", None, "a frame rate > 0, e.g. --fps 12", detail=detail)
    out_dir = out if out is not None else frames.resolve().parent
    stem = name if name is not None else (frames.name if frames.is_dir() else frames.stem)
    notes: list[str] = []
    with _named_by_flags():
        _refuse_overwriting(frames, out_dir, stem, formats)
        embedded = _embedded(frames)
        written = write_outputs(
            source.frames,
            out_dir,
            stem=stem,
            fps=rate,
            formats=formats,
            parameters=embedded.parameters,
            spec=embedded.spec,
            options=options,
            audio=soundtrack,
            report=notes.append,
        )
    _report(written, len(source.frames), rate, options, notes)


def _option_values(
    formats: list[str],
    ping_pong: bool,
    gif_palette: str,
    gif_dither: str,
    crf: int | None,
    preset: str | None,
    webp_quality: int,
    lossless: bool,
) -> dict[str, object]:
    """EncodeOptions fields from the flags; ``--crf`` goes to each video format asked for (their scales
    differ, so it is not applied to formats that were not asked for, where it could be out of range)."""
    values: dict[str, object] = {
        "ping_pong": ping_pong,
        "gif_palette": gif_palette,
        "gif_dither": gif_dither,
        "webp_quality": webp_quality,
        "webp_lossless": lossless,
    }
    if preset is not None:
        values["mp4_preset"] = preset
    if crf is not None:
        wanted = {fmt.lower() for fmt in formats}
        for fmt, key in (("mp4", "mp4_crf"), ("mp4-h265", "h265_crf"), ("webm", "webm_crf")):
            if fmt in wanted:
                values[key] = crf
    return values


def _soundtrack(audio: Path | None, offset: float):
    """A Soundtrack, or None; an offset without a file is an error (it would silently do nothing)."""
    from flipbook.io.writers import Soundtrack

    if audio is None:
        if offset:
            raise FlipbookError("--audio-offset", offset, "used together with --audio FILE")
        return None
    return Soundtrack(audio, offset)


def _refuse_overwriting(frames: Path, out_dir: Path, stem: str, formats: list[str]) -> None:
    """Why: ``flipbook encode anim.gif --to gif`` would replace the source with its own re-encode."""
    from flipbook.io.writers import FORMATS, output_path

    source = frames.resolve()
    for fmt in formats:
        if fmt.lower() in FORMATS and output_path(out_dir, stem, fmt.lower()).resolve() == source:
            raise FlipbookError("--name", stem, "a name or --out whose outputs do not overwrite FRAMES")


def _embedded(frames: Path):
    """The spec and parameters FRAMES carries, when it is a file of a kind that can carry them."""
    from flipbook.io.metadata import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Embedded, read_embedded

    if not frames.is_file() or frames.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        return Embedded()
    try:
        return read_embedded(frames)
    except FlipbookError as error:
        typer.echo(f"warning: not carrying over the embedded spec ({error})", err=True)
        return Embedded()


def _report(written: dict[str, Path], n_frames: int, rate: float, options, notes: list[str]) -> None:
    """What was written; a size target's choice (or that nothing fits) on a line of its own."""
    from flipbook.io.writers import gif_optimizer

    typer.echo(f"{n_frames} frames at {rate:g} fps")
    for fmt, path in written.items():
        note = f" ({gif_optimizer(options.gif_optimize, options.gif_lossy)})" if fmt == "gif" else ""
        typer.echo(f"{fmt}: {path}{note}")
    for line in notes:
        typer.echo(line)


@contextmanager
def _named_by_flags() -> Iterator[None]:
    """Re-raise a FlipbookError under the flag the user typed (``output.gif_palette`` -> ``--gif-palette``)."""
    try:
        yield
    except FlipbookError as error:
        if error.field not in FLAGS:
            raise
        raise FlipbookError(FLAGS[error.field], error.value, error.allowed, detail=error.detail) from error

"""``flipbook audio``: analyse a song for audio-reactive animations.

A thin adapter over :mod:`flipbook.audio`: ``keyframes`` lists the video frames where onsets land, ``schedule``
prints a Deforum schedule string driven by a feature of the song. The main CLI mounts :data:`app` with
``add_typer(app, name="audio")``; its ``main()`` turns a :class:`~flipbook.errors.FlipbookError` into
``error: ...`` on stderr and exit code 2. librosa is imported only when a command runs, so ``flipbook --help``
stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flipbook.errors import FlipbookError

app = typer.Typer(
    help="Analyse a song: onset keyframes and Deforum schedules for audio-reactive animations.",
    no_args_is_help=True,
)

SongArg = Annotated[Path, typer.Argument(help="audio file (wav, flac, ogg, mp3)")]
FpsOpt = Annotated[float, typer.Option("--fps", help="video frames per second")]
OffsetOpt = Annotated[float, typer.Option("--offset", help="start this many seconds into the song")]
DurationOpt = Annotated[
    float | None, typer.Option("--duration", help="use at most this many seconds (default: to the end)")
]
KEYFRAME_FORMATS = ("lines", "prompts")


@app.command()
def keyframes(
    song: SongArg,
    fps: FpsOpt = 12.0,
    component: Annotated[
        str, typer.Option("--component", help="percussive (hits), harmonic (tone changes) or both")
    ] = "percussive",
    offset: OffsetOpt = 0.0,
    duration: DurationOpt = None,
    output_format: Annotated[
        str,
        typer.Option("--format", help="lines: 'FRAME: SECONDSs'; prompts: 'FRAME: ' stubs for prompt travel"),
    ] = "lines",
) -> None:
    """Print the video frame of each onset, one per line."""
    from flipbook.audio.analysis import load_audio, onset_keyframes

    if output_format not in KEYFRAME_FORMATS:
        raise FlipbookError("--format", output_format, "lines or prompts")
    y, sr = load_audio(song, offset=offset, duration=duration)
    for frame, seconds in onset_keyframes(y, sr, fps, component=component):
        typer.echo(f"{frame}: {seconds:.3f}s" if output_format == "lines" else f"{frame}: ")


@app.command()
def schedule(
    song: SongArg,
    fps: FpsOpt = 12.0,
    feature: Annotated[
        str, typer.Option("--feature", help="onsets, rms, beats or band:LOW-HIGH (Hz, e.g. band:20-200)")
    ] = "onsets",
    map_expr: Annotated[
        str,
        typer.Option("--map", help="value per frame from x (feature, 0..1) and t (frame), e.g. '1 + 0.05*x'"),
    ] = "x",
    offset: OffsetOpt = 0.0,
    duration: DurationOpt = None,
    frames: Annotated[
        int | None, typer.Option("--frames", help="number of frames (default: as many as the audio covers)")
    ] = None,
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="drop keyframes that linear interpolation gets this close to")
    ] = 1e-3,
) -> None:
    """Print a Deforum schedule string (0:(1), 12:(1.05), ...) of a song feature, ready to paste or pipe."""
    from flipbook.audio.analysis import feature_curve, load_audio, parse_feature
    from flipbook.audio.schedule import schedule_string

    parse_feature(feature)  # a typo in --feature fails before the song is decoded
    y, sr = load_audio(song, offset=offset, duration=duration)
    curve = feature_curve(y, sr, fps, feature, frames)
    if curve.size == 0:
        raise FlipbookError("--frames", frames, "a number of frames > 0")
    typer.echo(schedule_string(curve, map_expr, tolerance=tolerance, fps=fps))

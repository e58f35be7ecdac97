"""Write finished animation frames: PNG frames, GIF, MP4 (H.264 or H.265), WebM (VP9), animated WebP and APNG.

Frames arrive as RGB :class:`PIL.Image.Image` objects or ``HxWx3`` ``uint8`` numpy arrays; both are accepted
and normalised once by :func:`normalise_frames`. Every file is written atomically (a hidden temporary file in
the same folder, fsynced, then :func:`os.replace`), so a crash or an encoder error never leaves a truncated
frame or video under its final name. Every writer checks all of its arguments before it writes anything.

Timing: GIF stores each frame's delay in whole centiseconds, so most frame rates cannot be exact per frame
(12 fps is 83.33 ms). :func:`gif_durations_ms` rounds the *cumulative* end time of every frame to the nearest
10 ms and takes differences, giving e.g. 80, 90, 80, 80, 90, 80 ms at 12 fps: each frame ends within 5 ms of
``i * 1000 / fps`` and the animation never drifts. The shortest GIF delay is 10 ms, so GIF output accepts at
most 100 fps. Note that most browsers show delays under 20 ms as 100 ms, so GIFs meant for the web should stay
at <= 50 fps. WebP does the same in whole milliseconds (:func:`webp_durations_ms`); APNG stores a delay
fraction, so every APNG frame lasts exactly ``1 / fps`` seconds. Videos use the time base ``1 / fps``.

:func:`write_outputs` writes several formats from one set of frames, with the spec and A1111 parameters
embedded in each (see :mod:`flipbook.io.metadata`), an optional soundtrack in the videos and ping-pong playback.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from io import BytesIO
from numbers import Integral, Real
from pathlib import Path
from typing import BinaryIO, TypeVar

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc
from PIL import Image

from flipbook.errors import FlipbookError
from flipbook.io.apng import write_apng as write_apng_frames
from flipbook.io.atomic import atomic_target
from flipbook.io.frames import FrameSequence, picked
from flipbook.io.gif import (
    GIF_DITHERS,
    GIF_MAX_COLORS,
    GIF_MAX_LOSSY,
    GIF_PALETTES,
    GifResult,
    GifSettings,
    check_lossy,
    encode_gif,
    fit_gif,
    palette_frames,
    save_gif,
)
from flipbook.io.gif import (
    gif_optimizer as gif_optimizer_name,
)
from flipbook.io.metadata import CONTAINER_KEY, embedded_payload, png_info, xmp_packet
from flipbook.io.pnginfo import PNG_COMPRESS_LEVEL  # one zlib level for every PNG file written
from flipbook.io.sizefit import (
    BYTES_PER_MB,
    Fit,
    best_fit,
    fit_note,
    frame_steps,
    psnr,
    resize_frames,
    scales_for,
    shown_frames,
    step_frames,
)
from flipbook.io.webp import write_animated_webp

logger = logging.getLogger(__name__)

Frame = Image.Image | np.ndarray
T = TypeVar("T")

FORMATS = ("png", "gif", "mp4", "mp4-h265", "webm", "webp", "apng", "contact")
VIDEO_FORMATS = ("mp4", "mp4-h265", "webm")  # the formats that carry a soundtrack
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
# Why not x264's "medium": on the benchmark clip (flipbook.bench.encode: 120 frames of 512x512 moving
# gradients, texture and grain, 2 cores) medium took 1.95 s wall / 3.3 s CPU, over the 1.5 s budget, and
# "faster" 1.22 s / 2.1 s for 9% more bytes at the same CRF and the same luma PSNR (42.9 against 43.2 dB):
# at a fixed CRF, x264 presets trade file size for time, not quality. "medium" stays one option away.
DEFAULT_X264_PRESET = "faster"
GIF_MAX_FPS = 100
GIF_MAX_DELAY_MS = 65535 * 10  # the delay field is an unsigned 16-bit count of centiseconds
MAX_MB = 100_000  # size targets: up to 100 GB (a typo, not a limit anyone has)
# Animated WebP and APNG: frames of at least 1 ms.
IMAGE_ANIMATION_MAX_FPS = 1000
WEBP_MAX_DELAY_MS = (1 << 24) - 1  # the ANMF duration field is 24 bits
# libwebp effort 0-6: measured at 512x512, method 2 is ~2.3x faster than Pillow's default 4 for the same size.
WEBP_METHOD = 2
APNG_MAX_DELAY = 65535  # seconds: the delay numerator is 16 bits
# 10000 keeps NTSC rates exact (30000/1001) and decimal rates like 29.97 as 2997/100.
FPS_MAX_DENOMINATOR = 10_000
VP9_MAX_CRF = 63
# libvpx "good" deadline at cpu-used 4 with row multithreading: ~1.5 s CPU for the benchmark clip; cpu-used 0
# (libvpx's default) is several times slower for a few percent fewer bytes.
VP9_CPU_USED = 4
# Fixed encoder thread counts instead of one per core: x264's frame threads and libvpx's threads change the
# bitstream (measured: x264 gave four different files for 1, 2, 3 and 4 threads, libvpx one for 1 and another
# for 2 and more), so the same frames give the same file on every machine only with a fixed count.
X264_THREADS = 4
VP9_THREADS = 4
# x265 4.2 (the build PyAV ships) refuses frames under 16 pixels in either direction, overwrites its heap
# (the process aborts) on frames 34 to 48 pixels wide, and codes frames exactly one coding block (CTU) wide
# differently from run to run (widths 16, 32 and 64 in a sweep of 16..264 with 64-pixel CTUs). So frames
# must be at least 64 wide, and up to H265_SMALL_CTU_MAX_WIDTH they are coded in 16-pixel CTUs (several
# columns; 32-pixel ones fail on frames under 32 high). Swept: widths 64-160 at heights 64 and 128, heights
# 16-136 at width 64, four encodes each, both presets flipbook uses.
H265_MIN_WIDTH = 64
H265_MIN_HEIGHT = 16
H265_SMALL_CTU_MAX_WIDTH = 64
AUDIO_RATE = 48_000  # Opus only takes 48 kHz (and divisors); AAC takes it too, so one rate serves both
AUDIO_CHUNK = 4_800  # samples handed to the resampler at a time (0.1 s)


# --- options ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Soundtrack:
    """An audio file muxed into MP4 (AAC) and WebM (Opus) output, starting ``offset`` seconds into the file.

    The audio is cut at the end of the video; a shorter soundtrack just ends early.
    """

    path: Path
    offset: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.path, str | os.PathLike):
            raise FlipbookError("audio.file", self.path, "a path to an audio file")
        object.__setattr__(self, "path", Path(self.path))
        offset = self.offset
        if (
            isinstance(offset, bool)
            or not isinstance(offset, Real)
            or not math.isfinite(offset)
            or offset < 0
        ):
            raise FlipbookError("audio.offset", offset, "a number of seconds >= 0")


@dataclass(frozen=True)
class EncodeOptions:
    """Encoder settings for :func:`write_outputs`; checked when made, errors name ``output.<field>``.

    GIF (see :mod:`flipbook.io.gif`): ``gif_palette`` ``per_scene`` (one palette per scene, chosen from all
    its frames), ``global`` or ``per_frame``; ``gif_dither`` ``none``, ``ordered`` (a fixed Bayer pattern:
    still where the picture is still) or ``floyd-steinberg``; ``gif_colors`` 2-255; ``gif_optimize`` stores
    only changed pixels; ``gif_lossy`` 0-200 is gifsicle's lossy LZW; ``gif_loop`` the GIF's loop count (0:
    forever). Size targets ``gif_max_mb``, ``webp_max_mb``, ``apng_max_mb`` (MB of 10**6 bytes, None: off)
    pick the best settings that fit (see :mod:`flipbook.io.sizefit`), lowering the frame rate only with
    ``max_mb_allow_fps``. CRFs: lower is better and bigger (x264/x265 0-51, VP9 0-63). ``webp_quality`` is
    0-100 (with ``webp_lossless`` it is the compression effort instead). ``apng_colors`` 0 keeps every colour,
    2-256 uses one palette. ``loop`` is the WebP/APNG loop count. ``ping_pong`` plays forward then backward.
    """

    gif_palette: str = "per_scene"
    gif_dither: str = "none"
    gif_colors: int = GIF_MAX_COLORS
    gif_lossy: int = 0
    gif_max_mb: float | None = None
    gif_loop: int = 0
    gif_optimize: bool = True
    mp4_crf: int = 18
    mp4_preset: str = DEFAULT_X264_PRESET
    h265_crf: int = 23
    webm_crf: int = 32
    webp_quality: int = 90
    webp_lossless: bool = False
    webp_max_mb: float | None = None
    apng_colors: int = 0
    apng_max_mb: float | None = None
    max_mb_allow_fps: bool = False
    loop: int = 0
    ping_pong: bool = False

    def __post_init__(self) -> None:
        _check_gif_settings(self.gif_settings())
        _check_mb("output.gif_max_mb", self.gif_max_mb)
        _check_int("output.gif_loop", self.gif_loop, 0, 65535, "an integer from 0 (forever) to 65535")
        _check_int("output.mp4_crf", self.mp4_crf, 0, 51, "an integer from 0 (lossless) to 51")
        _check_choice("output.mp4_preset", self.mp4_preset, X264_PRESETS)
        _check_int("output.h265_crf", self.h265_crf, 0, 51, "an integer from 0 (lossless) to 51")
        _check_int("output.webm_crf", self.webm_crf, 0, VP9_MAX_CRF, f"an integer from 0 to {VP9_MAX_CRF}")
        _check_int("output.webp_quality", self.webp_quality, 0, 100, "an integer from 0 to 100")
        _check_bool("output.webp_lossless", self.webp_lossless)
        _check_mb("output.webp_max_mb", self.webp_max_mb)
        _check_apng_colors(self.apng_colors)
        _check_mb("output.apng_max_mb", self.apng_max_mb)
        _check_bool("output.max_mb_allow_fps", self.max_mb_allow_fps)
        _check_int("output.loop", self.loop, 0, 65535, "an integer from 0 (forever) to 65535")
        _check_bool("output.ping_pong", self.ping_pong)

    def gif_settings(self) -> GifSettings:
        return GifSettings(
            self.gif_palette, self.gif_dither, self.gif_colors, self.gif_lossy, self.gif_optimize
        )

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> EncodeOptions:
        """Options from a dict (a spec's or the CLI's); an unknown key is an error naming it."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise FlipbookError(
                    f"output.{key}", values[key], f"a known option: {', '.join(sorted(known))}"
                )
        return cls(**values)  # type: ignore[arg-type]


def _check_choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise FlipbookError(name, value, f"one of {', '.join(allowed)}")


def _check_int(name: str, value: object, low: int, high: int, allowed: str) -> None:
    """A whole number in range (NumPy's too, as pipelines hand them out); bools are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, Integral) or not low <= value <= high:
        raise FlipbookError(name, value, allowed)


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise FlipbookError(name, value, "true or false")


# --- validation and normalisation -------------------------------------------------------------------------


def normalise_frames(frames: Iterable[Frame]) -> Sequence[np.ndarray]:
    """Return the frames as HxWx3 uint8 arrays of one size; raise FlipbookError for anything else.

    Why arrays: the video encoders need them anyway and the GIF palette is built from all pixels at once. A
    :class:`~flipbook.io.frames.FrameSequence` (frames read from disk when needed, checked when it was made)
    is returned as it is, so the encoders read one frame at a time instead of holding them all.
    """
    if isinstance(frames, FrameSequence):
        if not len(frames):
            raise FlipbookError("frames", [], "at least one frame")
        return frames
    arrays = [_as_rgb_array(frame, index) for index, frame in enumerate(frames)]
    if not arrays:
        raise FlipbookError("frames", [], "at least one frame")
    height, width = arrays[0].shape[:2]
    for index, array in enumerate(arrays):
        if array.shape[:2] != (height, width):
            size = f"{array.shape[1]}x{array.shape[0]}"
            raise FlipbookError(f"frames[{index}]", size, f"the size of frames[0], {width}x{height}")
    return arrays


def _as_rgb_array(frame: object, index: int) -> np.ndarray:
    """One frame as an HxWx3 uint8 array; PIL images of other modes (L, RGBA, P) are converted to RGB."""
    allowed = "an RGB PIL image or an HxWx3 uint8 numpy array"
    if isinstance(frame, Image.Image):
        array = np.asarray(frame.convert("RGB") if frame.mode != "RGB" else frame)
    elif isinstance(frame, np.ndarray):
        array = frame
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise FlipbookError(f"frames[{index}]", f"array {array.shape} {array.dtype}", allowed)
    else:
        raise FlipbookError(f"frames[{index}]", type(frame).__name__, allowed)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise FlipbookError(f"frames[{index}]", f"{array.shape[1]}x{array.shape[0]}", "a non-empty image")
    return array


def _exact_fps(fps: float) -> Fraction:
    """The frame rate as an exact fraction; why: GIF delays and timestamps must not accumulate float error."""
    if isinstance(fps, bool) or not isinstance(fps, Real) or not math.isfinite(fps) or fps <= 0:
        raise FlipbookError("output.fps", fps, "a number > 0")
    return Fraction(fps)


def _video_rate(fps: float) -> Fraction:
    """The frame rate as a small fraction for a video time base (29.97 -> 2997/100, 30000/1001 stays)."""
    rate = _exact_fps(fps).limit_denominator(FPS_MAX_DENOMINATOR)
    if rate <= 0:
        raise FlipbookError("output.fps", fps, "a number >= 1/10000")
    return rate


def ping_pong(frames: Sequence[T]) -> Sequence[T]:
    """Frames forward then backward without repeating either end (0 1 2 3 -> 0 1 2 3 2 1), so it loops smoothly.

    Why skip the ends: the loop returns to frame 0 by itself, and a repeated end frame reads as a stall. A list
    gives a list; frames on disk a view of them in that order (nothing read).
    """
    count = len(frames)
    return picked(frames, [*range(count), *range(count - 2, 0, -1)])


# --- PNG ----------------------------------------------------------------------------------------------------


def write_png_frames(
    frames: Iterable[Frame],
    out_dir: Path,
    *,
    start: int = 0,
    pattern: str = "frame_{:05d}.png",
    pnginfo_text: str | None = None,
    spec: dict | None = None,
) -> list[Path]:
    """Write one PNG per frame into ``out_dir`` (created if missing) and return their paths in order.

    ``pattern`` is formatted with the frame number (``start``, ``start + 1``, ...). ``pnginfo_text`` is stored
    as a ``parameters`` text chunk, the key other Stable Diffusion tools read generation settings from
    (non-Latin-1 text is stored as an iTXt chunk), and ``spec`` as a compressed ``flipbook_spec`` chunk.
    Frames from an earlier, longer run are not deleted.
    """
    arrays = normalise_frames(frames)
    names = _png_names(pattern, start, len(arrays))
    out_dir = Path(out_dir)
    info = png_info(spec, pnginfo_text)
    paths = []
    for name, array in zip(names, arrays, strict=True):
        path = out_dir / name
        with atomic_target(path) as tmp:
            Image.fromarray(array).save(tmp, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
        paths.append(path)
    return paths


def _png_names(pattern: str, start: int, count: int) -> list[str]:
    """File names for ``count`` frames; why check: a pattern without a number would overwrite one file."""
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise FlipbookError("output.start", start, "an integer >= 0")
    allowed = "a file name with one number field, e.g. 'frame_{:05d}.png'"
    try:
        names = [pattern.format(start + i) for i in range(count)]
    except (IndexError, KeyError, ValueError, AttributeError) as error:
        raise FlipbookError("output.pattern", pattern, allowed) from error
    if len(set(names)) != count or any(Path(name).name != name for name in names):
        raise FlipbookError("output.pattern", pattern, allowed)
    return names


# --- GIF ----------------------------------------------------------------------------------------------------


def gif_durations_ms(n_frames: int, fps: float) -> list[int]:
    """Per-frame GIF durations in ms: multiples of 10, each running sum within 5 ms of ``i * 1000 / fps``.

    Why: GIF delays are whole centiseconds. Rounding each frame on its own (83.33 -> 80 ms at 12 fps) makes
    the animation run 4% fast; rounding the cumulative end time of each frame instead spreads the remainder
    (80, 90, 80, 80, 90, 80, ...) so the total is right. Above 100 fps a frame would need less than the
    10 ms minimum, so that raises FlipbookError, as does a rate so low that one frame exceeds 655.35 s.
    """
    rate = _exact_fps(fps)
    if rate > GIF_MAX_FPS:
        detail = "GIF delays are whole centiseconds"
        raise FlipbookError("output.fps", fps, f"a number <= {GIF_MAX_FPS} for GIF", detail=detail)
    durations = _cumulative_durations_ms(n_frames, rate, step_ms=10)
    if durations and max(durations) > GIF_MAX_DELAY_MS:
        raise FlipbookError("output.fps", fps, "a rate whose GIF frames last at most 655.35 s")
    return durations


def webp_durations_ms(n_frames: int, fps: float) -> list[int]:
    """Per-frame WebP durations in whole ms, each running sum within 0.5 ms of ``i * 1000 / fps``.

    Same cumulative rounding as :func:`gif_durations_ms`, at WebP's 1 ms resolution (12 fps: 83, 84, 83, ...).
    """
    rate = _exact_fps(fps)
    if rate > IMAGE_ANIMATION_MAX_FPS:
        raise FlipbookError("output.fps", fps, f"a number <= {IMAGE_ANIMATION_MAX_FPS} for WebP")
    durations = _cumulative_durations_ms(n_frames, rate, step_ms=1)
    if durations and max(durations) > WEBP_MAX_DELAY_MS:
        raise FlipbookError("output.fps", fps, "a rate whose WebP frames last at most 4.6 hours")
    return durations


def _cumulative_durations_ms(n_frames: int, rate: Fraction, *, step_ms: int) -> list[int]:
    """Durations in multiples of ``step_ms`` whose running sums are the rounded exact frame end times."""
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 0:
        raise FlipbookError("frames", n_frames, "a frame count >= 0")
    ends = [math.floor(i * Fraction(1000, step_ms) / rate + Fraction(1, 2)) for i in range(n_frames + 1)]
    return [step_ms * (end - begin) for begin, end in zip(ends, ends[1:], strict=False)]


def gif_optimizer(optimize: bool = True, lossy: int = 0) -> str:
    """What shrinks a GIF beyond LZW with these options: ``changed pixels only`` (unchanged pixels are stored
    transparent and each frame is cropped to what changed), ``gifsicle --lossy=N``, or ``none``."""
    return gif_optimizer_name(GifSettings(optimize=optimize, lossy=lossy))


def write_gif(
    frames: Iterable[Frame],
    path: Path,
    *,
    fps: float,
    loop: int = 0,
    comment: str | None = None,
    palette: str = "per_scene",
    dither: str = "none",
    optimize: bool = True,
    colors: int = GIF_MAX_COLORS,
    lossy: int = 0,
    max_mb: float | None = None,
    allow_fps: bool = False,
) -> Path:
    """Write an animated GIF with centisecond-exact timing; returns ``path``. How frames become a GIF (the
    palettes, the dithering, storing only changed pixels, gifsicle) is :mod:`flipbook.io.gif`.

    ``palette``: ``per_scene`` (one palette per scene, chosen from all its frames: no shimmer, new colours at
    a cut), ``global`` (one for the clip) or ``per_frame``. ``dither``: ``none``, ``ordered`` (a Bayer
    pattern fixed in place: smooth gradients, still where the picture is still) or ``floyd-steinberg``.
    ``colors`` 2-255 per palette. ``lossy`` 0-200 runs gifsicle's lossy LZW. ``max_mb``: the best GIF of at
    most that many MB (10**6 bytes), trying smaller frames, fewer colours and lossy levels, and, only with
    ``allow_fps``, lower frame rates; what it chose is logged (see :func:`make_gif`). ``loop`` 0 repeats
    forever; n > 0 is written as the GIF loop count. ``comment`` goes into a GIF comment extension (UTF-8).
    ``optimize`` stores only the pixels that changed. Consecutive identical frames are merged into one
    longer frame, so the file may hold fewer frames with the same total time. Without ``max_mb`` the GIF is
    written to the file as its frames are quantized (frames on disk are read one at a time).
    """
    settings = GifSettings(palette, dither, colors, lossy, optimize)
    save_or_make_gif(
        frames, Path(path), fps=fps, loop=loop, comment=comment, settings=settings, max_mb=max_mb,
        allow_fps=allow_fps,
    )  # fmt: skip
    return Path(path)


def save_or_make_gif(
    frames: Iterable[Frame],
    path: Path,
    *,
    fps: float,
    loop: int,
    comment: str | None,
    settings: GifSettings,
    max_mb: float | None,
    allow_fps: bool,
) -> GifResult | None:
    """Write the GIF to ``path``: streamed into the file (None returned) without a size target, else the
    size search's choice (:func:`make_gif`, returned for its note). Arguments are checked before writing."""
    arrays, durations = _gif_arguments(frames, fps, loop, settings, max_mb, allow_fps)
    if max_mb is not None:
        result = make_gif(
            arrays, fps=fps, loop=loop, comment=comment, settings=settings, max_mb=max_mb, allow_fps=allow_fps
        )
        _write_bytes(path, result.data)
        return result
    with atomic_target(path) as tmp:
        save_gif(arrays, durations, settings, tmp, loop=loop, comment=comment)
    return None


def make_gif(
    frames: Iterable[Frame],
    *,
    fps: float,
    loop: int,
    comment: str | None,
    settings: GifSettings,
    max_mb: float | None = None,
    allow_fps: bool = False,
) -> GifResult:
    """The GIF's bytes, checked arguments first; with ``max_mb`` the size search's choice, which is logged
    (a warning when nothing fits) and kept in the result's ``note``."""
    arrays, durations = _gif_arguments(frames, fps, loop, settings, max_mb, allow_fps)
    if max_mb is None:
        data = encode_gif(arrays, durations, settings, loop=loop, comment=comment)
        height, width = arrays[0].shape[:2]
        return GifResult(data, settings, (width, height), fps)
    result = fit_gif(
        arrays,
        fps,
        settings,
        max_mb=max_mb,
        allow_fps=allow_fps,
        loop=loop,
        comment=comment,
        durations_for=gif_durations_ms,
    )
    (logger.info if result.fits else logger.warning)("%s", result.note)
    return result


def _gif_arguments(
    frames: Iterable[Frame],
    fps: float,
    loop: int,
    settings: GifSettings,
    max_mb: float | None,
    allow_fps: bool,
) -> tuple[Sequence[np.ndarray], list[int]]:
    """The frames and their durations, every argument of a GIF checked."""
    arrays = normalise_frames(frames)
    durations = gif_durations_ms(len(arrays), fps)
    _check_loop(loop)
    _check_gif_settings(settings)
    check_lossy(settings.lossy)
    _check_mb("output.gif_max_mb", max_mb)
    _check_bool("output.max_mb_allow_fps", allow_fps)
    return arrays, durations


def _check_gif_settings(settings: GifSettings) -> None:
    _check_choice("output.gif_palette", settings.palette, GIF_PALETTES)
    _check_choice("output.gif_dither", settings.dither, GIF_DITHERS)
    _check_int(
        "output.gif_colors", settings.colors, 2, GIF_MAX_COLORS, f"an integer from 2 to {GIF_MAX_COLORS}"
    )
    _check_int(
        "output.gif_lossy", settings.lossy, 0, GIF_MAX_LOSSY, f"an integer from 0 (off) to {GIF_MAX_LOSSY}"
    )
    _check_bool("output.gif_optimize", settings.optimize)


def _check_loop(loop: int) -> None:
    """The NETSCAPE loop count is an unsigned 16-bit field."""
    _check_int("output.loop", loop, 0, 65535, "an integer from 0 (forever) to 65535")


def _check_mb(name: str, value: object) -> None:
    """A size target: None (off) or a number of MB > 0."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise FlipbookError(name, value, f"a number of MB > 0 and <= {MAX_MB}, or none")
    if not 0 < value <= MAX_MB:
        raise FlipbookError(name, value, f"a number of MB > 0 and <= {MAX_MB}, or none")


# --- animated WebP and APNG ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """A file's bytes and, when a size target chose its settings, one line saying what it chose."""

    data: bytes
    note: str | None = None


Streamed = Callable[[BinaryIO], None]  # writes a file frame by frame to the open file it is given


def _write_output(path: Path, output: Encoded | Streamed) -> Path:
    """``output`` written atomically to ``path``: its bytes, or streamed into the file frame by frame."""
    if isinstance(output, Encoded):
        return _write_bytes(path, output.data)
    path = Path(path)
    with atomic_target(path) as tmp, open(tmp, "wb") as file:
        output(file)
    return path


def _in_memory(output: Streamed) -> Encoded:
    """``output`` written into memory: its bytes."""
    out = BytesIO()
    output(out)
    return Encoded(out.getvalue())


def write_webp(
    frames: Iterable[Frame],
    path: Path,
    *,
    fps: float,
    quality: int = 90,
    lossless: bool = False,
    loop: int = 0,
    comment: str | None = None,
    max_mb: float | None = None,
    allow_fps: bool = False,
) -> Path:
    """Write an animated WebP with per-frame durations in exact cumulative milliseconds; returns ``path``.

    ``quality`` 0-100 (with ``lossless`` it is libwebp's compression effort instead). ``loop`` 0 repeats
    forever. ``comment`` is stored as the ``dc:description`` of an XMP packet. ``max_mb``: the best WebP of at
    most that many MB, trying lower qualities, then smaller frames, then (only with ``allow_fps``) lower frame
    rates; the choice is logged (see :func:`make_webp`).
    """
    output = _webp_output(
        frames,
        fps=fps,
        quality=quality,
        lossless=lossless,
        loop=loop,
        comment=comment,
        max_mb=max_mb,
        allow_fps=allow_fps,
    )
    return _write_output(path, output)


def make_webp(
    frames: Iterable[Frame],
    *,
    fps: float,
    quality: int = 90,
    lossless: bool = False,
    loop: int = 0,
    comment: str | None = None,
    max_mb: float | None = None,
    allow_fps: bool = False,
) -> Encoded:
    """The WebP's bytes (arguments checked first); with ``max_mb``, the size search's choice."""
    output = _webp_output(
        frames,
        fps=fps,
        quality=quality,
        lossless=lossless,
        loop=loop,
        comment=comment,
        max_mb=max_mb,
        allow_fps=allow_fps,
    )
    return output if isinstance(output, Encoded) else _in_memory(output)


def _webp_output(
    frames: Iterable[Frame],
    *,
    fps: float,
    quality: int,
    lossless: bool,
    loop: int,
    comment: str | None,
    max_mb: float | None,
    allow_fps: bool,
) -> Encoded | Streamed:
    """The WebP (arguments checked first): with ``max_mb`` the size search's choice (bytes), else a writer
    that reads the frames and writes the file one frame at a time."""
    arrays = normalise_frames(frames)
    webp_durations_ms(len(arrays), fps)
    _check_int("output.webp_quality", quality, 0, 100, "an integer from 0 to 100")
    _check_bool("output.webp_lossless", lossless)
    _check_loop(loop)
    _check_mb("output.webp_max_mb", max_mb)
    _check_bool("output.max_mb_allow_fps", allow_fps)

    def write(file: BinaryIO, rung: _ImageRung) -> None:
        shown = resize_frames(step_frames(arrays, rung.frame_step), rung.scale)
        durations = webp_durations_ms(len(shown), fps / rung.frame_step)
        _write_webp_frames(file, shown, durations, rung.quality, rung.lossless, loop, comment)

    def encode(rung: _ImageRung) -> bytes:
        return _in_memory(functools.partial(write, rung=rung)).data

    first = _ImageRung(quality=quality, lossless=lossless)
    if max_mb is None:
        return functools.partial(write, rung=first)
    shape = arrays[0].shape
    return _fit_image(
        "webp", arrays, fps, max_mb, allow_fps, encode, lambda low: _webp_ladders(first, shape, low)
    )


def _write_webp_frames(
    file: BinaryIO,
    arrays: Sequence[np.ndarray],
    durations: list[int],
    quality: int,
    lossless: bool,
    loop: int,
    comment: str | None,
) -> None:
    """An animated WebP written frame by frame (:mod:`flipbook.io.webp`); one frame is a still WebP
    (Pillow's own path)."""
    xmp = xmp_packet(comment) if comment else b""
    if len(arrays) == 1:
        Image.fromarray(arrays[0]).save(
            file, format="WEBP", quality=quality, lossless=lossless, method=WEBP_METHOD, xmp=xmp
        )
        return
    write_animated_webp(
        file, arrays.__getitem__, durations, quality=quality, lossless=lossless, method=WEBP_METHOD,
        loop=loop, xmp=xmp,
    )  # fmt: skip


@dataclass(frozen=True)
class _ImageRung:
    """One rung of a WebP or APNG size ladder: frame scale and step, WebP quality, APNG colours (0: all)."""

    scale: float = 1.0
    frame_step: int = 1
    quality: int = 90
    lossless: bool = False
    colors: int = 0

    def describe(self, fmt: str, size: tuple[int, int], fps: float) -> str:
        width, height = size
        if fmt == "webp":
            what = "lossless" if self.lossless else f"quality {self.quality}"
        else:
            what = f"{self.colors} colours" if self.colors else "all colours"
        return f"{width}x{height}, {fps:g} fps, {what}"


# Size ladders (see flipbook.io.sizefit): WebP trades quality, then frame size; APNG colours (a palette is
# several times smaller than full colour), then frame size. Each ladder is best first.
WEBP_QUALITIES = (90, 80, 70, 60, 50, 40, 30, 20, 10)
APNG_COLORS = 256
APNG_COLOR_STEPS = (256, 192, 128, 96, 64, 48, 32, 16)
IMAGE_SCALES = (0.85, 0.7, 0.6, 0.5, 0.4, 0.33, 0.25)
FALLBACK_QUALITY = 50  # WebP quality of the last-resort ladder (smaller frames and lossy)
FALLBACK_COLORS = 64  # APNG colours of the last-resort ladder


def _webp_ladders(first: _ImageRung, shape: tuple[int, ...], min_scale: float) -> _Ladders:
    """Lower quality; the same quality at smaller sizes; and, last, quality 50 at smaller sizes."""
    scales = [s for s in scales_for(shape, (1.0, *IMAGE_SCALES)) if s >= min_scale]
    qualities = [q for q in WEBP_QUALITIES if q < first.quality or first.lossless]
    return [
        [first, *(_ImageRung(quality=q) for q in qualities)],
        [replace(first, scale=s) for s in scales],
    ], [_ImageRung(scale=s, quality=min(first.quality, FALLBACK_QUALITY)) for s in scales]


def _apng_ladders(first: _ImageRung, shape: tuple[int, ...], min_scale: float) -> _Ladders:
    """Fewer colours; the same colours at smaller sizes; and, last, 64 colours at smaller sizes."""
    scales = [s for s in scales_for(shape, (1.0, *IMAGE_SCALES)) if s >= min_scale]
    colors = [c for c in APNG_COLOR_STEPS if not first.colors or c < first.colors]
    return [
        [first, *(_ImageRung(colors=c) for c in colors)],
        [replace(first, scale=s) for s in scales],
    ], [_ImageRung(scale=s, colors=min(first.colors or APNG_COLORS, FALLBACK_COLORS)) for s in scales]


_Ladders = tuple[list[list[_ImageRung]], list[_ImageRung]]  # ladders and the last resort


def _fit_image(
    fmt: str,
    arrays: list[np.ndarray],
    fps: float,
    max_mb: float,
    allow_fps: bool,
    encode: Callable[[_ImageRung], bytes],
    ladders: Callable[[float], _Ladders],
) -> Encoded:
    """The best rung under ``max_mb`` (:func:`flipbook.io.sizefit.best_fit`) at the full frame rate, then
    (when allowed) at every 2nd, 3rd, 4th frame, keeping frames at least half size until the last frame
    step; logged and noted."""
    max_bytes = int(max_mb * BYTES_PER_MB)

    def quality(rung: _ImageRung, data: bytes) -> float:
        source = step_frames(arrays, rung.frame_step)
        return psnr(source, shown_frames(data, len(source)))

    steps = frame_steps(allow_fps, len(arrays))
    best: Fit[_ImageRung] | None = None
    for index, step in enumerate(steps):
        min_scale = 0.0 if index == len(steps) - 1 else 0.5
        ways, last = ladders(min_scale)
        stepped = [list(dict.fromkeys(replace(r, frame_step=step) for r in ladder)) for ladder in ways]
        fallback = [replace(r, frame_step=step) for r in last]
        found = best_fit(stepped, encode, quality, max_bytes, fallback)
        if best is None or found.fits or len(found.data) < len(best.data):
            best = found
        if found.fits:
            break
    assert best is not None
    height, width = resize_frames(arrays[:1], best.rung.scale)[0].shape[:2]
    rate = fps / best.rung.frame_step
    chosen = best.rung.describe(fmt, (width, height), rate)
    note = fit_note(fmt, max_mb, len(best.data), best.fits, chosen, best.rung.frame_step, len(arrays), fps)
    (logger.info if best.fits else logger.warning)("%s", note)
    return Encoded(best.data, note)


def _write_bytes(path: Path, data: bytes) -> Path:
    path = Path(path)
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return path


def apng_delay(fps: float) -> Fraction:
    """Each APNG frame's delay in seconds: exactly ``1 / fps`` when it fits APNG's 16-bit fraction.

    Why a fraction: APNG stores the delay as numerator/denominator, so 12 fps is 1/12 s, not 83 ms; every
    common rate (29.97 = 100/2997 s, 30000/1001) is exact, others are the nearest fraction that fits.
    """
    rate = _exact_fps(fps)
    if rate > IMAGE_ANIMATION_MAX_FPS:
        raise FlipbookError("output.fps", fps, f"a number <= {IMAGE_ANIMATION_MAX_FPS} for APNG")
    delay = (1 / rate).limit_denominator(65535)
    if delay.numerator > APNG_MAX_DELAY:
        raise FlipbookError("output.fps", fps, f"a rate whose APNG frames last at most {APNG_MAX_DELAY} s")
    return delay


def write_apng(
    frames: Iterable[Frame],
    path: Path,
    *,
    fps: float,
    loop: int = 0,
    pnginfo_text: str | None = None,
    spec: dict | None = None,
    colors: int = 0,
    max_mb: float | None = None,
    allow_fps: bool = False,
) -> Path:
    """Write an animated PNG whose frames each last exactly ``1 / fps`` s.

    ``colors`` 0 keeps every colour (lossless); 2-256 maps the frames onto one palette of that many colours
    chosen from the whole clip (:func:`flipbook.io.gif.kmeans_palette`), several times smaller. ``loop`` 0
    repeats forever. ``pnginfo_text`` and ``spec`` go into the ``parameters`` and ``flipbook_spec`` text
    chunks, as for PNG frames. ``max_mb``: the best APNG of at most that many MB, trying a palette, smaller
    frames, fewer colours, then (only with ``allow_fps``) lower frame rates; the choice is logged. Identical
    consecutive frames are merged by Pillow.
    """
    output = _apng_output(
        frames,
        fps=fps,
        loop=loop,
        pnginfo_text=pnginfo_text,
        spec=spec,
        colors=colors,
        max_mb=max_mb,
        allow_fps=allow_fps,
    )
    return _write_output(path, output)


def make_apng(
    frames: Iterable[Frame],
    *,
    fps: float,
    loop: int = 0,
    pnginfo_text: str | None = None,
    spec: dict | None = None,
    colors: int = 0,
    max_mb: float | None = None,
    allow_fps: bool = False,
) -> Encoded:
    """The APNG's bytes (arguments checked first); with ``max_mb``, the size search's choice."""
    output = _apng_output(
        frames,
        fps=fps,
        loop=loop,
        pnginfo_text=pnginfo_text,
        spec=spec,
        colors=colors,
        max_mb=max_mb,
        allow_fps=allow_fps,
    )
    return output if isinstance(output, Encoded) else _in_memory(output)


def _apng_output(
    frames: Iterable[Frame],
    *,
    fps: float,
    loop: int = 0,
    pnginfo_text: str | None = None,
    spec: dict | None = None,
    colors: int = 0,
    max_mb: float | None = None,
    allow_fps: bool = False,
) -> Encoded | Streamed:
    """The APNG (arguments checked first): with ``max_mb`` the size search's choice (bytes), else a writer
    that reads the frames and writes the file one frame at a time."""
    arrays = normalise_frames(frames)
    apng_delay(fps)
    _check_loop(loop)
    _check_apng_colors(colors)
    _check_mb("output.apng_max_mb", max_mb)
    _check_bool("output.max_mb_allow_fps", allow_fps)
    info = png_info(spec, pnginfo_text)

    def encode(rung: _ImageRung) -> bytes:
        shown = resize_frames(step_frames(arrays, rung.frame_step), rung.scale)
        return _apng_bytes(shown, apng_delay(fps / rung.frame_step), rung.colors, loop, info)

    first = _ImageRung(colors=colors)
    if max_mb is None:
        return lambda file: _write_apng_frames(file, arrays, apng_delay(fps), colors, loop, info)
    shape = arrays[0].shape
    return _fit_image(
        "apng", arrays, fps, max_mb, allow_fps, encode, lambda low: _apng_ladders(first, shape, low)
    )


def _check_apng_colors(colors: object) -> None:
    allowed = f"0 (all colours) or an integer from 2 to {APNG_COLORS}"
    _check_int("output.apng_colors", colors, 0, APNG_COLORS, allowed)
    if colors == 1:
        raise FlipbookError("output.apng_colors", colors, allowed)


def _apng_bytes(arrays: Sequence[np.ndarray], delay: Fraction, colors: int, loop: int, info: object) -> bytes:
    """APNG bytes (:func:`_write_apng_frames` into memory: the size search's tries)."""
    out = BytesIO()
    _write_apng_frames(out, arrays, delay, colors, loop, info)
    return out.getvalue()


def _write_apng_frames(
    file: BinaryIO, arrays: Sequence[np.ndarray], delay: Fraction, colors: int, loop: int, info: object
) -> None:
    """The APNG Pillow's ``save(save_all=True)`` writes, frame by frame (:mod:`flipbook.io.apng`); with
    ``colors`` the frames share one palette from the whole clip (PNG has one PLTE)."""
    image = palette_frames(arrays, colors) if colors else (lambda index: Image.fromarray(arrays[index]))
    write_apng_frames(
        file, image, len(arrays), delay=delay, loop=loop, pnginfo=info, compress_level=PNG_COMPRESS_LEVEL
    )


# --- video --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _VideoCodec:
    """How one video format is encoded: container, codecs, encoder options, threads and stream tags.

    ``threads`` 0 lets FFmpeg pick (one per core), which is only right for an encoder whose bitstream does
    not depend on it; ``thread_type`` "FRAME" or "SLICE" (None: PyAV's default).
    """

    container: str
    codec: str
    audio_codec: str
    options: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)
    codec_tag: str | None = None
    threads: int = 0
    thread_type: str | None = None


@dataclass(frozen=True)
class _AudioClip:
    """A decoded, trimmed soundtrack: float32 samples shaped (channels, n) at AUDIO_RATE."""

    samples: np.ndarray
    layout: str


def write_mp4(
    frames: Iterable[Frame],
    path: Path,
    *,
    fps: float,
    crf: int = 18,
    preset: str = DEFAULT_X264_PRESET,
    codec: str = "libx264",
    comment: str | None = None,
    audio: Soundtrack | None = None,
) -> Path:
    """Encode an MP4 (yuv420p, BT.709 tagged, +faststart) that plays in browsers and phones.

    ``codec`` is ``libx264`` (H.264) or ``libx265`` (H.265, tagged ``hvc1`` so Apple players open it). Why
    padding: yuv420p needs even width and height; an odd size gets one replicated edge row/column so the
    picture is never rescaled. The time base is exactly 1/fps (29.97 -> 100/2997), so timestamps do not
    drift. ``crf`` (0 lossless .. 51 worst) and ``preset`` are x264/x265 options. ``comment`` is stored in the
    container metadata. ``audio`` is muxed as AAC, cut at the video's end.
    """
    arrays = normalise_frames(frames)
    rate = _video_rate(fps)
    _check_encoder(codec, crf, preset)
    video = _h26x(codec, crf, preset, _video_size(arrays[0]))
    clip = _load_soundtrack(audio, len(arrays) / rate)
    path = Path(path)
    with atomic_target(path) as tmp:
        _encode_video(arrays, tmp, rate=rate, video=video, comment=comment, clip=clip)
    return path


def write_webm(
    frames: Iterable[Frame],
    path: Path,
    *,
    fps: float,
    crf: int = 32,
    comment: str | None = None,
    audio: Soundtrack | None = None,
) -> Path:
    """Encode a VP9 WebM (constant quality: ``crf`` 0-63 with no bitrate cap, yuv420p, BT.709 tagged).

    Sizes are padded to even as for MP4. ``comment`` is stored as the Matroska ``COMMENT`` tag; ``audio`` is
    muxed as Opus, cut at the video's end.
    """
    arrays = normalise_frames(frames)
    rate = _video_rate(fps)
    _check_int("output.webm_crf", crf, 0, VP9_MAX_CRF, f"an integer from 0 to {VP9_MAX_CRF}")
    clip = _load_soundtrack(audio, len(arrays) / rate)
    path = Path(path)
    with atomic_target(path) as tmp:
        _encode_video(arrays, tmp, rate=rate, video=_vp9(crf), comment=comment, clip=clip)
    return path


def _h26x(codec: str, crf: int, preset: str, size: tuple[int, int]) -> _VideoCodec:
    """x264/x265 in MP4 for frames of ``size`` (width, height, padded to even), set up so that the same frames
    always give the same bytes (see :func:`_x264_params`, :func:`_x265_params`).

    Why frame threads for x264: PyAV asks for slice threads by default, which on 2 cores were ~8% slower (1.32
    against 1.22 s on the benchmark clip) for slightly bigger files; X264_THREADS of them, not one per core.
    """
    options = {"crf": str(crf), "preset": preset}
    if codec == "libx264":
        options.update(_x264_params())
    elif codec == "libx265":
        check_h265_size(*size)
        options["x265-params"] = _x265_params(size)
    is_x264 = codec == "libx264"
    return _VideoCodec(
        container="mp4",
        codec=codec,
        audio_codec="aac",
        options=options,
        container_options={"movflags": "+faststart", **_BITEXACT},
        codec_tag="hvc1" if codec == "libx265" else None,
        threads=X264_THREADS if is_x264 else 0,
        thread_type="FRAME" if is_x264 else None,
    )


# Muxers write no random or time-dependent fields (Matroska's segment UID and date, the muxer's version).
_BITEXACT = {"fflags": "+bitexact"}


def _x264_params() -> dict[str, str]:
    """x264 options for a reproducible bitstream on this machine's CPU.

    x264's AVX-512 code reads memory it never wrote while building the macroblock tree, so on AVX-512 CPUs the
    same frames gave different files from run to run (decoded pixels up to 33 levels apart, at sizes such as
    200x120). Its AVX2 code gives the same bytes every time, the bytes AVX-512 gives when it happens to work
    and the bytes its SSE4.2 code gives (measured), so machines of other CPU generations agree too; only x264
    without assembly writes a different (equally valid) file.
    """
    return {"x264-params": "asm=AVX2"} if _cpu_has_avx512() else {}


@functools.cache
def _cpu_has_avx512() -> bool:
    """Whether this CPU (and OS) runs the AVX-512 subset x264 uses (F, CD, BW, DQ, VL: x86-64-v4), as NumPy
    detects it at run time (NumPy >= 2.4 names it X86_V4, older versions AVX512_SKX)."""
    simd = np.show_config(mode="dicts").get("SIMD Extensions", {})
    found = {*simd.get("baseline", ()), *simd.get("found", ())}
    return bool(found & {"X86_V4", "AVX512_SKX"})


def _x265_params(size: tuple[int, int]) -> str:
    """x265 options: quiet, and 16-pixel coding blocks for frames one 64-pixel block wide (see
    H265_SMALL_CTU_MAX_WIDTH)."""
    params = ["log-level=error"]  # x265 prints its settings to stderr otherwise
    if size[0] <= H265_SMALL_CTU_MAX_WIDTH:
        params.append("ctu=16")
    return ":".join(params)


def check_h265_size(width: int, height: int) -> None:
    """Refuse a frame size x265 cannot encode safely (see H265_MIN_WIDTH), before anything is written."""
    if width < H265_MIN_WIDTH or height < H265_MIN_HEIGHT:
        raise FlipbookError(
            "output.formats",
            "mp4-h265",
            f"frames at least {H265_MIN_WIDTH}x{H265_MIN_HEIGHT} for mp4-h265, or mp4 (H.264) for smaller ones",
            detail=f"the frames are {width}x{height}; x265 fails on narrower or lower frames",
        )


def _video_size(array: np.ndarray) -> tuple[int, int]:
    """(width, height) of a frame as encoded: padded to even sizes (see :func:`_pad_even`)."""
    height, width = array.shape[:2]
    return width + width % 2, height + height % 2


def _vp9(crf: int) -> _VideoCodec:
    """libvpx-vp9 in constant-quality mode (crf with ``b:v 0``), row multithreading on VP9_THREADS threads."""
    options = {"crf": str(crf), "b": "0", "deadline": "good", "cpu-used": str(VP9_CPU_USED), "row-mt": "1"}
    return _VideoCodec(
        container="webm",
        codec="libvpx-vp9",
        audio_codec="libopus",
        options=options,
        container_options=dict(_BITEXACT),
        threads=VP9_THREADS,
    )


def _check_encoder(codec: str, crf: int, preset: str) -> None:
    """Fail before encoding starts, with a message naming the bad option."""
    try:
        found = av.codec.Codec(codec, "w")
    except (av.codec.codec.UnknownCodecError, TypeError) as error:
        raise FlipbookError("output.codec", codec, "a video encoder FFmpeg knows, e.g. 'libx264'") from error
    if found.type != "video":
        raise FlipbookError("output.codec", codec, "a video encoder, e.g. 'libx264'")
    _check_int("output.crf", crf, 0, 51, "an integer from 0 (lossless) to 51")
    if preset not in X264_PRESETS:
        raise FlipbookError("output.preset", preset, f"one of {', '.join(X264_PRESETS)}")


def _pad_even(array: np.ndarray) -> np.ndarray:
    """Pad an odd height/width by replicating the last row/column; why: yuv420p needs even sizes."""
    pad_h, pad_w = array.shape[0] % 2, array.shape[1] % 2
    if not (pad_h or pad_w):
        return array
    return np.pad(array, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _encode_video(
    arrays: Sequence[np.ndarray],
    target: Path,
    *,
    rate: Fraction,
    video: _VideoCodec,
    comment: str | None,
    clip: _AudioClip | None,
) -> None:
    """Encode frames with pts 0, 1, 2, ... in a 1/rate time base, the audio interleaved as the video goes."""
    height, width = _pad_even(arrays[0]).shape[:2]
    with av.open(
        str(target), mode="w", format=video.container, container_options=video.container_options
    ) as out:
        if comment:
            out.metadata[CONTAINER_KEY] = comment
        stream = _video_stream(out, video, rate, width, height)
        sound = _AudioMuxer(out, video.audio_codec, clip) if clip is not None else None
        # Keep our own copy: the MP4 muxer swaps stream.time_base for its timescale once the header is out.
        time_base = 1 / rate
        for index, array in enumerate(arrays):
            frame = _yuv_frame(_pad_even(array))
            frame.pts = index
            frame.time_base = time_base
            out.mux(stream.encode(frame))
            if sound is not None:
                sound.write_until((index + 1) / rate)
        out.mux(stream.encode(None))
        if sound is not None:
            sound.finish()


def _video_stream(
    out: av.container.OutputContainer, video: _VideoCodec, rate: Fraction, width: int, height: int
) -> av.video.stream.VideoStream:
    """The video stream with its options, size, time base, threading and BT.709 tags set."""
    stream = out.add_stream(video.codec, rate=rate)
    stream.options = dict(video.options)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.time_base = stream.codec_context.time_base = 1 / rate
    if video.codec_tag:
        stream.codec_tag = video.codec_tag
    if video.thread_type:
        stream.codec_context.thread_type = video.thread_type
    stream.codec_context.thread_count = video.threads
    _tag_bt709(stream.codec_context)
    return stream


def _tag_bt709(context: av.video.codeccontext.VideoCodecContext) -> None:
    """Tag the stream BT.709 limited range; why: untagged video makes players guess, and HD guesses differ."""
    context.colorspace = Colorspace.ITU709
    context.color_range = ColorRange.MPEG
    context.color_primaries = ColorPrimaries.BT709
    context.color_trc = ColorTrc.BT709


def _yuv_frame(array: np.ndarray) -> av.VideoFrame:
    """Convert RGB to yuv420p with the BT.709 matrix the stream is tagged with."""
    rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
    return rgb.reformat(
        format="yuv420p",
        src_colorspace=Colorspace.ITU709,
        dst_colorspace=Colorspace.ITU709,
        src_color_range=ColorRange.JPEG,
        dst_color_range=ColorRange.MPEG,
        dst_color_trc=ColorTrc.BT709,
        dst_color_primaries=ColorPrimaries.BT709,
    )


# --- soundtrack ---------------------------------------------------------------------------------------------


def _load_soundtrack(track: Soundtrack | None, seconds: float | Fraction) -> _AudioClip | None:
    """Decode ``seconds`` of audio from ``track.offset`` on, resampled to AUDIO_RATE float32, or None.

    Why decode before writing: an unreadable file or an offset past the end must fail before any output is
    written, and the clip is shared by every video format.
    """
    if track is None:
        return None
    if not isinstance(track, Soundtrack):
        raise FlipbookError("audio", type(track).__name__, "a Soundtrack(path, offset)")
    allowed = "a readable audio file (wav, flac, mp3, ogg, m4a, or a video with sound)"
    try:
        with av.open(str(track.path), metadata_errors="replace") as container:
            if not container.streams.audio:
                raise FlipbookError("audio.file", str(track.path), allowed, detail="it has no audio stream")
            samples, layout = _decode_audio(
                container, container.streams.audio[0], track.offset, float(seconds)
            )
    except (av.FFmpegError, OSError, ValueError) as error:
        raise FlipbookError("audio.file", str(track.path), allowed, detail=str(error)) from None
    if samples.shape[1] == 0:
        raise FlipbookError("audio.offset", track.offset, "a time before the end of the audio file")
    return _AudioClip(samples, layout)


def _decode_audio(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream, offset: float, seconds: float
) -> tuple[np.ndarray, str]:
    """Samples (channels, n) from ``offset`` for at most ``seconds``; mono stays mono, more becomes stereo.

    Seeks near the offset first (decoding a long track from its start would be slow), then drops the samples
    before the offset exactly, using the first decoded frame's timestamp.
    """
    layout = "mono" if stream.codec_context.channels == 1 else "stereo"
    origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    if offset > 0:
        # Not seekable: decode from the start; the samples before the offset are dropped below either way.
        with contextlib.suppress(av.FFmpegError):
            container.seek(int((origin + offset) / stream.time_base), stream=stream, backward=True)
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=AUDIO_RATE)
    chunks: list[np.ndarray] = []
    start, have, wanted = None, 0, 0
    for frame in container.decode(stream):
        if start is None:
            start = frame.time if frame.time is not None else origin
            wanted = round((origin + offset - start + seconds) * AUDIO_RATE)
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray())
            have += out.samples
        if have >= wanted:
            break
    else:
        chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    channels = 1 if layout == "mono" else 2
    if start is None or not chunks:
        return np.zeros((channels, 0), np.float32), layout
    skip = max(0, round((origin + offset - start) * AUDIO_RATE))
    samples = np.concatenate(chunks, axis=1)[:, skip : skip + round(seconds * AUDIO_RATE)]
    return np.ascontiguousarray(samples, dtype=np.float32), layout


class _AudioMuxer:
    """Encodes a clip into its own output stream, in step with the video so the packets interleave.

    Why a resampler on the way out: each encoder wants its own sample format (AAC planar float, Opus packed)
    and exact frame sizes (1024 and 960 samples), which ``av.AudioResampler(frame_size=...)`` provides.
    """

    def __init__(self, out: av.container.OutputContainer, codec: str, clip: _AudioClip) -> None:
        self.out, self.clip, self.position = out, clip, 0
        self.stream = out.add_stream(codec, rate=AUDIO_RATE)
        context = self.stream.codec_context
        context.layout = clip.layout
        context.open()  # sets frame_size
        self.resampler = av.AudioResampler(
            format=context.format.name,
            layout=clip.layout,
            rate=AUDIO_RATE,
            frame_size=context.frame_size or None,
        )

    def write_until(self, seconds: float | Fraction) -> None:
        """Encode and mux the clip's samples up to ``seconds`` (or its end)."""
        end = min(self.clip.samples.shape[1], math.ceil(seconds * AUDIO_RATE))
        while self.position < end:
            stop = min(end, self.position + AUDIO_CHUNK)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(self.clip.samples[:, self.position : stop]),
                format="fltp",
                layout=self.clip.layout,
            )
            frame.sample_rate = AUDIO_RATE
            frame.pts, frame.time_base = self.position, Fraction(1, AUDIO_RATE)
            self._encode(self.resampler.resample(frame))
            self.position = stop

    def finish(self) -> None:
        """Encode what is left, flush the resampler and the encoder."""
        self.write_until(Fraction(self.clip.samples.shape[1], AUDIO_RATE))
        self._encode(self.resampler.resample(None))
        self.out.mux(self.stream.encode(None))

    def _encode(self, frames: Iterable[av.AudioFrame]) -> None:
        for frame in frames:
            self.out.mux(self.stream.encode(frame))


# --- all formats --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """Everything one output format needs, checked and prepared by :func:`write_outputs` before writing."""

    formats: list[str]
    frames: Sequence[np.ndarray]  # in playing order (ping-pong applied); frames on disk stay there
    originals: Sequence[np.ndarray]  # as given, for the contact sheet
    out_dir: Path
    stem: str
    fps: float
    options: EncodeOptions
    parameters: str | None
    spec: dict | None
    comment: str | None
    clip: _AudioClip | None
    report: Callable[[str], None]


def write_outputs(
    frames: Iterable[Frame],
    out_dir: Path,
    *,
    stem: str,
    fps: float,
    formats: Sequence[str],
    parameters: str | None = None,
    spec: dict | None = None,
    options: EncodeOptions | Mapping[str, object] | None = None,
    audio: Soundtrack | None = None,
    report: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write the requested formats into ``out_dir`` and return ``{format: path}`` in the order asked for.

    Files: ``png`` -> ``<stem>_frames/`` (that folder is the returned path), ``gif`` -> ``<stem>.gif``,
    ``mp4`` -> ``<stem>.mp4`` (H.264), ``mp4-h265`` -> ``<stem>.h265.mp4``, ``webm`` -> ``<stem>.webm``,
    ``webp`` -> ``<stem>.webp``, ``apng`` -> ``<stem>.apng``, ``contact`` -> ``<stem>_contact.png`` (a contact
    sheet of the frames as given, without ping-pong). Everything, the soundtrack included, is checked
    before the first file is written, so bad input never leaves a partial set of outputs. ``parameters``
    (A1111 infotext) and ``spec`` (the spec as JSON data) are embedded in every file (see
    :mod:`flipbook.io.metadata`); ``audio`` goes into the mp4, mp4-h265 and webm files. ``report`` is
    called with one line per size target (``output.*_max_mb``): what it chose, or that nothing fits.
    """
    job = _prepare(frames, out_dir, stem, fps, formats, parameters, spec, options, audio, report)
    return {fmt: _WRITERS[fmt](job, output_path(job.out_dir, job.stem, fmt)) for fmt in job.formats}


def _prepare(
    frames: Iterable[Frame],
    out_dir: Path,
    stem: str,
    fps: float,
    formats: Sequence[str],
    parameters: str | None,
    spec: dict | None,
    options: EncodeOptions | Mapping[str, object] | None,
    audio: Soundtrack | None,
    report: Callable[[str], None] | None = None,
) -> _Job:
    """Check every argument and every chosen format's timing limits; decode the soundtrack."""
    originals = normalise_frames(frames)
    chosen = _check_formats(formats)
    settings = _check_options(options)
    _check_stem(stem)
    played = ping_pong(originals) if settings.ping_pong else originals
    _check_timing(chosen, fps, len(played))
    if "mp4-h265" in chosen:
        check_h265_size(*_video_size(originals[0]))
    if "gif" in chosen:
        check_lossy(settings.gif_lossy)
    has_metadata = spec is not None or parameters is not None
    comment = embedded_payload(spec, parameters) if has_metadata else None
    if audio is not None and not any(fmt in VIDEO_FORMATS for fmt in chosen):
        raise FlipbookError(
            "audio", str(getattr(audio, "path", audio)), "a soundtrack only with mp4, mp4-h265 or webm"
        )
    clip = _load_soundtrack(audio, len(played) / _video_rate(fps)) if audio is not None else None
    return _Job(
        chosen,
        played,
        originals,
        Path(out_dir),
        stem,
        fps,
        settings,
        parameters,
        spec,
        comment,
        clip,
        report or (lambda line: None),
    )


def _check_timing(chosen: Sequence[str], fps: float, n_frames: int) -> None:
    """Each format's frame-rate limits (GIF <= 100 fps, WebP/APNG <= 1000 fps, video time bases)."""
    _exact_fps(fps)
    if any(fmt in VIDEO_FORMATS for fmt in chosen):
        _video_rate(fps)
    if "gif" in chosen:
        gif_durations_ms(n_frames, fps)
    if "webp" in chosen:
        webp_durations_ms(n_frames, fps)
    if "apng" in chosen:
        apng_delay(fps)


def _check_options(options: EncodeOptions | Mapping[str, object] | None) -> EncodeOptions:
    if options is None:
        return EncodeOptions()
    if isinstance(options, EncodeOptions):
        return options
    if isinstance(options, Mapping):
        return EncodeOptions.from_mapping(options)
    raise FlipbookError(
        "output.options", type(options).__name__, "an EncodeOptions, a dict of options or None"
    )


# Where write_outputs puts each format, relative to the output folder; "{stem}" is the name given.
OUTPUT_NAMES = {
    "png": "{stem}_frames",
    "gif": "{stem}.gif",
    "mp4": "{stem}.mp4",
    "mp4-h265": "{stem}.h265.mp4",
    "webm": "{stem}.webm",
    "webp": "{stem}.webp",
    "apng": "{stem}.apng",
    "contact": "{stem}_contact.png",
}


def output_path(out_dir: Path, stem: str, fmt: str) -> Path:
    """The file (the folder, for ``png``) :func:`write_outputs` writes ``fmt`` to; why public: callers such as
    the CLI check it against their input before anything is overwritten."""
    return Path(out_dir) / OUTPUT_NAMES[fmt].format(stem=stem)


def _write_png(job: _Job, path: Path) -> Path:
    write_png_frames(job.frames, path, pnginfo_text=job.parameters, spec=job.spec)
    return path


def _write_gif(job: _Job, path: Path) -> Path:
    o = job.options
    result = save_or_make_gif(
        job.frames,
        path,
        fps=job.fps,
        loop=o.gif_loop,
        comment=job.comment,
        settings=o.gif_settings(),
        max_mb=o.gif_max_mb,
        allow_fps=o.max_mb_allow_fps,
    )
    if result is not None and result.note:
        job.report(result.note)
    return path


def _write_h264(job: _Job, path: Path) -> Path:
    size = _video_size(job.frames[0])
    return _write_video(job, path, _h26x("libx264", job.options.mp4_crf, job.options.mp4_preset, size))


def _write_h265(job: _Job, path: Path) -> Path:
    # x265's own default preset: measured on the benchmark clip, "fast" saved 10% of the time for 50% more bytes.
    size = _video_size(job.frames[0])
    return _write_video(job, path, _h26x("libx265", job.options.h265_crf, "medium", size))


def _write_webm(job: _Job, path: Path) -> Path:
    return _write_video(job, path, _vp9(job.options.webm_crf))


def _write_video(job: _Job, path: Path, video: _VideoCodec) -> Path:
    with atomic_target(path) as tmp:
        _encode_video(
            job.frames, tmp, rate=_video_rate(job.fps), video=video, comment=job.comment, clip=job.clip
        )
    return path


def _write_webp(job: _Job, path: Path) -> Path:
    o = job.options
    output = _webp_output(
        job.frames,
        fps=job.fps,
        quality=o.webp_quality,
        lossless=o.webp_lossless,
        loop=o.loop,
        comment=job.comment,
        max_mb=o.webp_max_mb,
        allow_fps=o.max_mb_allow_fps,
    )
    return _reported(job, path, output)


def _write_apng(job: _Job, path: Path) -> Path:
    o = job.options
    output = _apng_output(
        job.frames,
        fps=job.fps,
        loop=o.loop,
        pnginfo_text=job.parameters,
        spec=job.spec,
        colors=o.apng_colors,
        max_mb=o.apng_max_mb,
        allow_fps=o.max_mb_allow_fps,
    )
    return _reported(job, path, output)


def _reported(job: _Job, path: Path, output: Encoded | Streamed) -> Path:
    if isinstance(output, Encoded) and output.note:
        job.report(output.note)
    return _write_output(path, output)


def _write_contact(job: _Job, path: Path) -> Path:
    from flipbook.io.contact_sheet import write_contact_sheet  # it imports this module: load it on first use

    return write_contact_sheet(job.originals, path, pnginfo_text=job.parameters, spec=job.spec)


_WRITERS = {
    "png": _write_png,
    "gif": _write_gif,
    "mp4": _write_h264,
    "mp4-h265": _write_h265,
    "webm": _write_webm,
    "webp": _write_webp,
    "apng": _write_apng,
    "contact": _write_contact,
}


def _check_formats(formats: Sequence[str]) -> list[str]:
    """Lower-cased formats without duplicates; a lone string counts as one format, not a list of letters."""
    if isinstance(formats, str):
        formats = [formats]
    allowed = f"one or more of {', '.join(repr(f) for f in FORMATS)}"
    chosen: list[str] = []
    for fmt in formats:
        name = fmt.lower() if isinstance(fmt, str) else fmt
        if name not in FORMATS:
            raise FlipbookError("output.formats", fmt, allowed)
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise FlipbookError("output.formats", list(formats), allowed)
    return chosen


def _check_stem(stem: str) -> None:
    """The stem becomes a file name, so it must be one plain name."""
    if not isinstance(stem, str) or not stem or stem in (".", "..") or Path(stem).name != stem:
        raise FlipbookError("output.stem", stem, "a plain file name without folders")

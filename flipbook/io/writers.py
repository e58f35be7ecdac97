"""Write finished animation frames as PNG frames, an animated GIF or an H.264 MP4.

Frames arrive as RGB :class:`PIL.Image.Image` objects or ``HxWx3`` ``uint8`` numpy arrays; both are accepted
and normalised once by :func:`_normalise_frames`. Every file is written atomically (a hidden temporary file in
the same folder, fsynced, then :func:`os.replace`), so a crash or an encoder error never leaves a truncated
frame or video under its final name.

GIF timing: GIF stores each frame's delay in whole centiseconds, so most frame rates cannot be exact per frame
(12 fps is 83.33 ms). :func:`gif_durations_ms` rounds the *cumulative* end time of every frame to the nearest
10 ms and takes differences, giving e.g. 80, 90, 80, 80, 90, 80 ms at 12 fps: each frame ends within 5 ms of
``i * 1000 / fps`` and the animation never drifts. The shortest GIF delay is 10 ms, so GIF output accepts at
most 100 fps. Note that most browsers show delays under 20 ms as 100 ms, so GIFs meant for the web should stay
at <= 50 fps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from numbers import Real
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from flipbook.errors import FlipbookError
from flipbook.io.atomic import atomic_target

Frame = Image.Image | np.ndarray

FORMATS = ("png", "gif", "mp4")
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
# zlib level for PNG frames: measured on a 512x512 smooth colour field, level 3 is ~3x faster than Pillow's
# default 6 for ~12% bigger files, which matters when every frame of a long animation is kept.
PNG_COMPRESS_LEVEL = 3
GIF_MAX_FPS = 100
GIF_MAX_DELAY_MS = 65535 * 10  # the delay field is an unsigned 16-bit count of centiseconds
# 255 palette entries, not 256: Pillow needs one free index to mark unchanged pixels transparent in delta
# frames, which makes GIFs of mostly static scenes several times smaller.
GIF_COLORS = 255
# Pixels sampled (evenly from every frame) to build the shared GIF palette: measured on gradients and smooth
# noise, 4x more samples gave the same error at 3x the time.
GIF_PALETTE_SAMPLES = 1 << 18
# 10000 keeps NTSC rates exact (30000/1001) and decimal rates like 29.97 as 2997/100.
FPS_MAX_DENOMINATOR = 10_000


# --- validation and normalisation -------------------------------------------------------------------------


def _normalise_frames(frames: Iterable[Frame]) -> list[np.ndarray]:
    """Return the frames as HxWx3 uint8 arrays of one size; raise FlipbookError for anything else.

    Why arrays: the MP4 encoder needs them anyway and the GIF palette is built from all pixels at once.
    """
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


# --- PNG ----------------------------------------------------------------------------------------------------


def write_png_frames(
    frames: Iterable[Frame],
    out_dir: Path,
    *,
    start: int = 0,
    pattern: str = "frame_{:05d}.png",
    pnginfo_text: str | None = None,
) -> list[Path]:
    """Write one PNG per frame into ``out_dir`` (created if missing) and return their paths in order.

    ``pattern`` is formatted with the frame number (``start``, ``start + 1``, ...). ``pnginfo_text`` is stored
    as a ``parameters`` text chunk, the key other Stable Diffusion tools read generation settings from
    (non-Latin-1 text is stored as an iTXt chunk). Frames from an earlier, longer run are not deleted.
    """
    arrays = _normalise_frames(frames)
    names = _png_names(pattern, start, len(arrays))
    out_dir = Path(out_dir)
    info = _png_info(pnginfo_text)
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


def _png_info(text: str | None) -> PngInfo | None:
    """A PngInfo carrying the ``parameters`` text, or None when there is nothing to store."""
    if text is None:
        return None
    info = PngInfo()
    info.add_text("parameters", text)
    return info


# --- GIF ----------------------------------------------------------------------------------------------------


def gif_durations_ms(n_frames: int, fps: float) -> list[int]:
    """Per-frame GIF durations in ms: multiples of 10, each running sum within 5 ms of ``i * 1000 / fps``.

    Why: GIF delays are whole centiseconds. Rounding each frame on its own (83.33 -> 80 ms at 12 fps) makes
    the animation run 4% fast; rounding the cumulative end time of each frame instead spreads the remainder
    (80, 90, 80, 80, 90, 80, ...) so the total is right. Above 100 fps a frame would need less than the
    10 ms minimum, so that raises FlipbookError, as does a rate so low that one frame exceeds 655.35 s.
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 0:
        raise FlipbookError("frames", n_frames, "a frame count >= 0")
    rate = _exact_fps(fps)
    if rate > GIF_MAX_FPS:
        detail = "GIF delays are whole centiseconds"
        raise FlipbookError("output.fps", fps, f"a number <= {GIF_MAX_FPS} for GIF", detail=detail)
    ends_cs = [math.floor(i * 100 / rate + Fraction(1, 2)) for i in range(n_frames + 1)]
    durations = [10 * (end - begin) for begin, end in zip(ends_cs, ends_cs[1:], strict=False)]
    if durations and max(durations) > GIF_MAX_DELAY_MS:
        raise FlipbookError("output.fps", fps, "a rate whose GIF frames last at most 655.35 s")
    return durations


def write_gif(
    frames: Iterable[Frame], path: Path, *, fps: float, loop: int = 0, comment: str | None = None
) -> Path:
    """Write an animated GIF with one palette shared by all frames and centisecond-exact timing.

    Why one palette: a palette per frame makes flat colours shimmer as each frame picks slightly different
    entries. Dithering is off for the same reason: error-diffusion noise differs from frame to frame and
    crawls. ``loop`` 0 repeats forever; n > 0 is written as the GIF loop count (viewers differ on whether the
    first play counts). ``comment`` goes into a GIF comment extension (UTF-8). Consecutive identical frames
    are merged into one longer frame by Pillow, so the file may hold fewer frames with the same total time.
    """
    arrays = _normalise_frames(frames)
    durations = gif_durations_ms(len(arrays), fps)
    _check_loop(loop)
    palette = _shared_palette(arrays)
    images = [Image.fromarray(array).quantize(palette=palette, dither=Image.Dither.NONE) for array in arrays]
    # disposal 1 keeps the previous frame, so optimize can store only changed pixels (the rest transparent).
    options: dict[str, object] = {"duration": durations, "loop": loop, "disposal": 1, "optimize": True}
    if comment:
        options["comment"] = comment
    path = Path(path)
    with atomic_target(path) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            palette=palette.getpalette(),
            **options,
        )
    return path


def _check_loop(loop: int) -> None:
    """The NETSCAPE loop count is an unsigned 16-bit field."""
    if isinstance(loop, bool) or not isinstance(loop, int) or not 0 <= loop <= 65535:
        raise FlipbookError("output.loop", loop, "an integer from 0 (forever) to 65535")


def _shared_palette(arrays: Sequence[np.ndarray]) -> Image.Image:
    """A P-mode image whose palette (at most GIF_COLORS entries) is a median cut of pixels from all frames.

    Why sample: median cut over every pixel of a long, large animation takes seconds, and an even sample from
    every frame gives the same palette for all practical purposes.
    """
    height, width = arrays[0].shape[:2]
    per_frame = min(height * width, max(1, GIF_PALETTE_SAMPLES // len(arrays)))
    index = np.linspace(0, height * width - 1, per_frame).astype(np.int64)
    pixels = np.concatenate([array.reshape(-1, 3)[index] for array in arrays])
    sample = Image.fromarray(pixels.reshape(1, -1, 3))
    palette = sample.quantize(colors=GIF_COLORS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    used = int(np.asarray(palette).max()) + 1
    # Trim unused trailing entries: Pillow's GIF writer maps colours by value, and duplicate black padding
    # entries would be ambiguous.
    palette.putpalette(palette.getpalette()[: 3 * used])
    return palette


# --- MP4 ----------------------------------------------------------------------------------------------------


def write_mp4(
    frames: Iterable[Frame],
    path: Path,
    *,
    fps: float,
    crf: int = 18,
    preset: str = "medium",
    codec: str = "libx264",
    comment: str | None = None,
) -> Path:
    """Encode an H.264 MP4 (yuv420p, BT.709 tagged, +faststart) that plays in browsers and phones.

    Why padding: yuv420p needs even width and height; an odd size gets one replicated edge row/column so
    the picture is never rescaled. The time base is exactly 1/fps (29.97 -> 100/2997), so timestamps do not
    drift. ``crf`` (0 lossless .. 51 worst) and ``preset`` are libx264/libx265 options. ``comment`` is
    stored in the container metadata. Soundtracks are added elsewhere; this writes video only.
    """
    arrays = _normalise_frames(frames)
    rate = _video_rate(fps)
    _check_encoder(codec, crf, preset)
    path = Path(path)
    with atomic_target(path) as tmp:
        _encode_mp4(arrays, tmp, rate=rate, crf=crf, preset=preset, codec=codec, comment=comment)
    return path


def _check_encoder(codec: str, crf: int, preset: str) -> None:
    """Fail before encoding starts, with a message naming the bad option."""
    try:
        found = av.codec.Codec(codec, "w")
    except (av.codec.codec.UnknownCodecError, TypeError) as error:
        raise FlipbookError("output.codec", codec, "a video encoder FFmpeg knows, e.g. 'libx264'") from error
    if found.type != "video":
        raise FlipbookError("output.codec", codec, "a video encoder, e.g. 'libx264'")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise FlipbookError("output.crf", crf, "an integer from 0 (lossless) to 51")
    if preset not in X264_PRESETS:
        raise FlipbookError("output.preset", preset, f"one of {', '.join(X264_PRESETS)}")


def _pad_even(array: np.ndarray) -> np.ndarray:
    """Pad an odd height/width by replicating the last row/column; why: yuv420p needs even sizes."""
    pad_h, pad_w = array.shape[0] % 2, array.shape[1] % 2
    if not (pad_h or pad_w):
        return array
    return np.pad(array, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _encode_mp4(
    arrays: Sequence[np.ndarray],
    target: Path,
    *,
    rate: Fraction,
    crf: int,
    preset: str,
    codec: str,
    comment: str | None,
) -> None:
    """Encode frames with pts 0, 1, 2, ... in a 1/rate time base."""
    height, width = _pad_even(arrays[0]).shape[:2]
    with av.open(str(target), mode="w", format="mp4", container_options={"movflags": "+faststart"}) as out:
        if comment:
            out.metadata["comment"] = comment
        stream = out.add_stream(codec, rate=rate)
        stream.options = {"crf": str(crf), "preset": preset}
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # Keep our own copy: the MP4 muxer swaps stream.time_base for its timescale once the header is out.
        time_base = 1 / rate
        stream.time_base = stream.codec_context.time_base = time_base
        _tag_bt709(stream.codec_context)
        for index, array in enumerate(arrays):
            frame = _yuv_frame(_pad_even(array))
            frame.pts = index
            frame.time_base = time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


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


# --- all formats --------------------------------------------------------------------------------------------


def write_outputs(
    frames: Iterable[Frame],
    out_dir: Path,
    *,
    stem: str,
    fps: float,
    formats: Sequence[str],
    parameters: str | None = None,
) -> dict[str, Path]:
    """Write the requested formats into ``out_dir`` and return ``{format: path}``.

    PNG frames go to ``<stem>_frames/`` (that folder is the returned path), GIF to ``<stem>.gif`` and MP4 to
    ``<stem>.mp4``. Everything is validated before the first file is written, so bad input never leaves a
    partial set of outputs. ``parameters`` (the generation settings) is stored in each PNG, as the GIF
    comment and as the MP4 comment.
    """
    arrays = _normalise_frames(frames)
    chosen = _check_formats(formats)
    _exact_fps(fps)
    if "mp4" in chosen:
        _video_rate(fps)
    if "gif" in chosen:
        gif_durations_ms(len(arrays), fps)
    _check_stem(stem)
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    for fmt in chosen:
        if fmt == "png":
            folder = out_dir / f"{stem}_frames"
            write_png_frames(arrays, folder, pnginfo_text=parameters)
            written[fmt] = folder
        elif fmt == "gif":
            written[fmt] = write_gif(arrays, out_dir / f"{stem}.gif", fps=fps, comment=parameters)
        else:
            written[fmt] = write_mp4(arrays, out_dir / f"{stem}.mp4", fps=fps, comment=parameters)
    return written


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

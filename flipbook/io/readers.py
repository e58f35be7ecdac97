"""Read frames back from what users have: a folder of images, an animated GIF/WebP/PNG, or a video file.

One entry point, :func:`read_frames`, returns every frame as an HxWx3 uint8 RGB array with the source's frame
rate when it has one. The standalone commands (``flipbook interpolate``, ``encode``, ``upscale``) and the
video-init modes read through it, so every input kind behaves the same way everywhere.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageSequence

from flipbook.errors import FlipbookError
from flipbook.io.frames import FrameFiles
from flipbook.io.images import rgb_array

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
ANIMATED_SUFFIXES = (".gif", ".webp", ".png", ".apng")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
_ALLOWED = "a folder of images, an image, an animated GIF/WebP/PNG or a video (mp4, webm, mov, mkv, avi)"


@dataclass(frozen=True)
class FrameSource:
    """Frames as HxWx3 uint8 arrays; ``fps`` is None for a folder or a still image (no timing stored)."""

    frames: Sequence[np.ndarray]  # a list, or with ``lazy`` a folder's files read when needed (FrameFiles)
    fps: float | None = None
    durations_ms: list[int] | None = None  # per frame, for animated images


def read_frames(
    path: str | Path, *, field: str = "input", limit: int | None = None, lazy: bool = False
) -> FrameSource:
    """Every frame of ``path`` (the first ``limit`` when given: a video is decoded no further); errors name
    ``field`` (the CLI argument or spec field that gave the path). With ``lazy`` a folder's frames are a
    :class:`~flipbook.io.frames.FrameFiles` (sizes checked from the headers, each file decoded when read), so
    a long animation is never in memory at once; animated images and videos are decoded up front either way."""
    path = Path(path)
    if path.is_dir():
        if lazy:
            files = image_files(path)[:limit]
            if not files:
                raise FlipbookError(field, str(path), _ALLOWED, detail="the folder holds no images")
            return FrameSource(FrameFiles(files, field=field))
        return _read_folder(path, field, limit)
    if not path.is_file():
        raise FlipbookError(field, str(path), _ALLOWED, detail="no such file or folder")
    suffix = path.suffix.lower()
    try:
        if suffix in VIDEO_SUFFIXES:
            return _read_video(path, limit)
        if suffix in ANIMATED_SUFFIXES or suffix in IMAGE_SUFFIXES:
            return _read_image(path, limit)
    except (OSError, ValueError, av.FFmpegError) as error:
        raise FlipbookError(field, str(path), _ALLOWED, detail=str(error)) from None
    raise FlipbookError(field, str(path), _ALLOWED, detail=f"unknown file type {suffix or '(none)'}")


def natural_key(name: str) -> list:
    """Sort key that puts frame_2 before frame_10 (numbers compare as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, in natural order (what a folder of frames means)."""
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: natural_key(p.name),
    )


def is_animation(path: Path) -> bool:
    """A video, or an image file holding more than one frame (GIF, WebP, APNG)."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return True
    try:
        with Image.open(path) as image:
            return bool(getattr(image, "is_animated", False))
    except (OSError, ValueError):
        return False


def _read_folder(folder: Path, field: str, limit: int | None = None) -> FrameSource:
    files = image_files(folder)[:limit]
    if not files:
        raise FlipbookError(field, str(folder), _ALLOWED, detail="the folder holds no images")
    frames = []
    for file in files:
        try:
            with Image.open(file) as image:
                frames.append(rgb_array(image))
        except (OSError, ValueError) as error:
            raise FlipbookError(field, str(file), "a readable image", detail=str(error)) from None
    first = frames[0].shape
    for file, frame in zip(files, frames, strict=True):
        if frame.shape != first:
            size = f"{frame.shape[1]}x{frame.shape[0]}"
            raise FlipbookError(field, str(file), f"images of one size, {first[1]}x{first[0]}", detail=size)
    return FrameSource(frames)


def _read_image(path: Path, limit: int | None = None) -> FrameSource:
    """A still or animated image; animated frames are composited by Pillow as a viewer shows them."""
    with Image.open(path) as image:
        if not getattr(image, "is_animated", False):
            return FrameSource([rgb_array(image)])
        frames, durations = [], []
        for frame in itertools.islice(ImageSequence.Iterator(image), limit):
            frames.append(rgb_array(frame))
            durations.append(int(frame.info.get("duration", 0) or 0))
    total = sum(durations)
    fps = 1000.0 * len(frames) / total if total > 0 else None
    return FrameSource(frames, fps, durations)


def video_frames_with_times(
    path: str | Path, *, field: str = "input"
) -> tuple[list[np.ndarray], list[float]]:
    """Every frame of a video (RGB uint8) with its presentation time in seconds from the first frame; a GIF or
    a frame folder counts too (times from its durations, or 1/12 s apart when it has none)."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        try:
            return _decode_with_times(path)
        except (OSError, ValueError, av.FFmpegError) as error:
            raise FlipbookError(field, str(path), _ALLOWED, detail=str(error)) from None
    source = read_frames(path, field=field)
    step = 1.0 / (source.fps or 12.0)
    return source.frames, [i * step for i in range(len(source.frames))]


def frame_times(path: str | Path, *, field: str = "input") -> list[float]:
    """The presentation time of every frame, as :func:`video_frames_with_times` gives them, without decoding
    a video: its packets' timestamps are enough (what a source's frame rate and start time need)."""
    path = Path(path)
    if not (path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES):
        return video_frames_with_times(path, field=field)[1]
    try:
        with av.open(str(path), metadata_errors="replace") as container:
            if not container.streams.video:
                raise ValueError("the file has no video stream")
            stream = container.streams.video[0]
            times = sorted(
                float(packet.pts * packet.time_base)
                for packet in container.demux(stream)
                if packet.pts is not None
            )
    except (OSError, ValueError, av.FFmpegError) as error:
        raise FlipbookError(field, str(path), _ALLOWED, detail=str(error)) from None
    if not times:
        raise FlipbookError(field, str(path), _ALLOWED, detail="the video has no frames")
    return [t - times[0] for t in times]


def _decode_with_times(path: Path) -> tuple[list[np.ndarray], list[float]]:
    frames, times = [], []
    with av.open(str(path), metadata_errors="replace") as container:
        if not container.streams.video:
            raise ValueError("the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 12)
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.time) if frame.time is not None else len(times) / rate)
    if not frames:
        raise ValueError("the video has no frames")
    return frames, [t - times[0] for t in times]


def has_audio(path: str | Path) -> bool:
    """Whether a media file has an audio stream (a video's soundtrack to keep)."""
    try:
        with av.open(str(path), metadata_errors="replace") as container:
            return bool(container.streams.audio)
    except (OSError, ValueError, av.FFmpegError):
        return False


def source_rate(times: list[float]) -> float:
    """Frames per second of a source from its frame times (the median spacing, robust to a dropped frame)."""
    if len(times) < 2:
        return 12.0
    spacing = float(np.median(np.diff(times)))
    return 1.0 / spacing if spacing > 0 else 12.0


def select_frames(
    times: list[float],
    *,
    every_nth: int = 1,
    start: int = 0,
    end: int | None = None,
    fps: float | None = None,
) -> list[int]:
    """The source frames a video mode uses: frames ``start`` to ``end`` (exclusive), every ``every_nth``, or
    resampled to ``fps`` (the nearest source frame to each output time, so frames repeat or drop as needed)."""
    last = min(end if end is not None else len(times), len(times))
    if start >= last:
        return []
    if fps is None:
        return list(range(start, last, every_nth))
    span = times[last - 1] - times[start] + 1.0 / source_rate(times)
    count = max(1, int(np.floor(span * fps + 1e-9)))
    window = np.asarray(times[start:last])
    targets = times[start] + np.arange(count) / fps
    nearest = np.clip(np.searchsorted(window, targets), 1, len(window) - 1)
    left_closer = targets - window[nearest - 1] <= window[nearest] - targets
    chosen = np.where(left_closer, nearest - 1, nearest) if len(window) > 1 else np.zeros(count, dtype=int)
    return [start + int(i) for i in chosen]


def _read_video(path: Path, limit: int | None = None) -> FrameSource:
    with av.open(str(path), metadata_errors="replace") as container:
        if not container.streams.video:
            raise ValueError("the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        decoded = itertools.islice(container.decode(stream), limit)
        frames = [frame.to_ndarray(format="rgb24") for frame in decoded]
        rate = stream.average_rate or stream.guessed_rate
    if not frames:
        raise ValueError("the video has no frames")
    return FrameSource(frames, float(rate) if rate else None)

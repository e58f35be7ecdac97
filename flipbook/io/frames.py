"""Frames on disk as a sequence: what lets encoders and post-processing use memory independent of length.

A :class:`FrameSequence` is a read-only ``Sequence`` of HxWx3 uint8 RGB arrays that makes each frame only when
it is asked for: :class:`FrameFiles` decodes an image file, :class:`Picked` is a choice of another sequence's
frames (a slice, every n-th frame, ping-pong order, a scene), :class:`Mapped` a function applied to each
frame (frames resized for a size target). The encoders iterate them, so one frame (or a pair, for frame
interpolation) is in memory at a time however long the animation, and a second pass (a GIF's palette, a size
target's next try) reads the files again instead of keeping the frames.

Why a ``Sequence`` and not a generator: encoders need the length up front (timing, durations, the soundtrack)
and several passes (scenes, palettes, quantisation); code written for a list of frames works unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np
from PIL import Image

from flipbook.errors import FlipbookError
from flipbook.io.atomic import atomic_target
from flipbook.io.images import rgb_array


class FrameSequence(Sequence[np.ndarray]):
    """Frames made on demand; subclasses say how many (``__len__``) and how to make one (``_frame``)."""

    def _frame(self, index: int) -> np.ndarray:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> FrameSequence: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | FrameSequence:
        if isinstance(index, slice):
            return Picked(self, range(len(self))[index])
        count = len(self)
        if not -count <= index < count:
            raise IndexError(index)
        return self._frame(index % count)

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self._frame(index)


class FrameFiles(FrameSequence):
    """Image files as frames of one size, decoded (to 8-bit RGB) one at a time when read.

    Sizes are checked when made, from the files' headers only (no pixel is decoded); ``field`` names the input
    in errors.
    """

    def __init__(self, files: Sequence[Path], *, field: str = "frames") -> None:
        if not files:
            raise FlipbookError(field, [], "at least one image file")
        self.files, self.field = [Path(f) for f in files], field
        sizes = [self._size(path) for path in self.files]
        width, height = sizes[0]
        for path, size in zip(self.files, sizes, strict=True):
            if size != (width, height):
                raise FlipbookError(
                    field, str(path), f"images of one size, {width}x{height}", detail=f"{size[0]}x{size[1]}"
                )
        self.size = (width, height)

    def _size(self, path: Path) -> tuple[int, int]:
        try:
            with Image.open(path) as image:
                return image.size
        except (OSError, ValueError) as error:
            raise FlipbookError(self.field, str(path), "a readable image", detail=str(error)) from None

    def __len__(self) -> int:
        return len(self.files)

    def _frame(self, index: int) -> np.ndarray:
        path = self.files[index]
        try:
            with Image.open(path) as image:
                return rgb_array(image)
        except (OSError, ValueError) as error:
            raise FlipbookError(self.field, str(path), "a readable image", detail=str(error)) from None


class Picked(FrameSequence):
    """Frames ``indices`` of ``base``, in that order (repeats allowed)."""

    def __init__(self, base: Sequence[np.ndarray], indices: Sequence[int]) -> None:
        self.base, self.indices = base, indices

    def __len__(self) -> int:
        return len(self.indices)

    def _frame(self, index: int) -> np.ndarray:
        return self.base[self.indices[index]]


class Mapped(FrameSequence):
    """``function`` applied to each frame of ``base`` as it is read."""

    def __init__(self, base: Sequence[np.ndarray], function: Callable[[np.ndarray], np.ndarray]) -> None:
        self.base, self.function = base, function

    def __len__(self) -> int:
        return len(self.base)

    def _frame(self, index: int) -> np.ndarray:
        return self.function(self.base[index])


def picked(frames: Sequence[np.ndarray], indices: Sequence[int]) -> Sequence[np.ndarray]:
    """Frames ``indices`` of ``frames``: a list for a list (frames already in memory), else a lazy view."""
    if isinstance(frames, FrameSequence):
        return Picked(frames, indices)
    return [frames[i] for i in indices]


def mapped(
    frames: Sequence[np.ndarray], function: Callable[[np.ndarray], np.ndarray]
) -> Sequence[np.ndarray]:
    """``function`` of every frame: a list for a list, else a lazy view (nothing computed until read)."""
    if isinstance(frames, FrameSequence):
        return Mapped(frames, function)
    return [function(frame) for frame in frames]


SCRATCH_PNG_LEVEL = 1  # frames written only to be read back (post-processing): lossless, fastest zlib level


def save_frames(
    frames: Iterable[np.ndarray],
    folder: Path,
    *,
    pattern: str = "frame_{:05d}.png",
    compress_level: int = SCRATCH_PNG_LEVEL,
    field: str = "frames",
) -> FrameFiles:
    """Write frames (HxWx3 uint8) as PNGs into ``folder`` (created) as they arrive, each atomically, and
    return them as :class:`FrameFiles`: how a stream of made frames (in-betweens, upscales) reaches encoders
    that read it more than once, without holding it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, frame in enumerate(frames):
        path = folder / pattern.format(index)
        with atomic_target(path) as tmp:
            Image.fromarray(frame).save(tmp, format="PNG", compress_level=compress_level)
        files.append(path)
    return FrameFiles(files, field=field)

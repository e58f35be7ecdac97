"""The background frame writer: PNG encoding, the atomic file write and the frame's share of the
temporal-consistency score run on one writer thread while the render goes on with the next frame.

- **Bounded**: at most ``depth`` frames wait (the render blocks when the writer falls behind), so memory
  stays flat however long the render.
- **In order**: one thread takes frames first in, first out; each frame file appears (atomically: a
  temporary name moved over the final one, :func:`flipbook.io.pnginfo.save_png`) only after every frame
  before it, so the run folder always holds a prefix of the frames and a SIGKILL loses only frames not yet
  written, which a resume renders again, identically.
- **Errors reach the render**: a failed write is raised in the render's thread at its next call (``put``,
  ``finished`` or ``close``); nothing after it is written.
- **Events stay on the render's thread**: ``wait()`` and ``finished()`` hand back the frames written since
  the last call, in order, for the render to log and report through its ``Events`` (callbacks never run on
  the writer). The render waits for frame k's write only when the mode has made frame k+1 (the write
  overlaps the nets), reports frame k, then hands over k+1: a cancel from frame k's event leaves exactly
  frames 0..k on disk, as when frames were written in the render's thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image

from flipbook.io.pnginfo import GenerationParameters, save_png
from flipbook.motion.consistency import ANALYSIS_SIZE, downscale, pair_error

DEPTH = 2  # frames that may wait for the writer


@dataclass(frozen=True)
class Written:
    """A frame on disk: its index, path and image (the one the render handed over)."""

    index: int
    path: Path
    image: PIL.Image.Image


class FrameWriter:
    """Writes frames on a background thread; use as a context manager (``close`` waits for every frame)."""

    def __init__(self, *, depth: int = DEPTH, save: Callable[..., Path] | None = None) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._save = save if save is not None else save_png
        self._done: list[Written] = []
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._previous: tuple[int, np.ndarray] | None = None
        self.pair_errors: dict[int, float] = {}  # i -> consistency error between frames i-1 and i
        self._thread = threading.Thread(target=self._run, name="flipbook-frame-writer", daemon=True)
        self._thread.start()

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(raise_error=error is None)

    def put(self, index: int, image: PIL.Image.Image, path: Path, parameters: GenerationParameters) -> None:
        """Queue frame ``index`` (blocks while ``depth`` frames wait); raises the writer's error if it failed."""
        self._raise()
        while True:
            try:
                self._queue.put((index, image, path, parameters), timeout=0.1)
                return
            except queue.Full:
                self._raise()

    def wait(self) -> list[Written]:
        """Wait until every frame handed over is written; those since the last call, in order (raises the
        writer's error if it failed)."""
        self._queue.join()
        return self.finished()

    def finished(self) -> list[Written]:
        """The frames written since the last call, in order; raises the writer's error if it failed."""
        with self._lock:
            done, self._done = self._done, []
        self._raise()
        return done

    def close(self, *, raise_error: bool = True) -> list[Written]:
        """Wait for every queued frame; the frames written since ``finished`` was last called."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        with self._lock:
            done, self._done = self._done, []
        if raise_error:
            self._raise()
        return done

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._write(*item)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _write(
        self, index: int, image: PIL.Image.Image, path: Path, parameters: GenerationParameters
    ) -> None:
        if self._error is not None:
            return  # nothing is written after a failure
        try:
            self._save(image, path, parameters)
            self._score(index, image)
        except BaseException as error:  # handed to the render's thread
            self._error = error
            return
        with self._lock:
            self._done.append(Written(index, path, image))

    def _score(self, index: int, image: PIL.Image.Image) -> None:
        """The consistency error between this frame and the one before it, when that came just before."""
        small = downscale(np.asarray(image.convert("RGB")), ANALYSIS_SIZE)
        if self._previous is not None and self._previous[0] == index - 1:
            self.pair_errors[index] = pair_error(self._previous[1], small)
        self._previous = (index, small)

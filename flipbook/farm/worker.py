""":class:`FrameWorker`: one farm actor. It renders runs of a job's frames and keeps its model loaded.

A task is "the frames after ``after`` up to ``stop`` of this spec": the mode renders from ``ctx.start =
after`` (as a resume does) and the task stops taking frames at ``stop``. Each frame is encoded exactly as
``render()`` writes it (the same PNG with the same parameters) and streamed back as bytes; the driver writes
it into the run folder. A mode that continues from a frame on disk (``after >= 0`` in a feedback mode) reads
it from the run folder, which is therefore shared (the head's, or a shared filesystem).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flipbook.events import Events


class FrameWorker:
    """The actor's state: the models it loaded (kept between tasks: the newest one only, so a device never
    holds two) and the running task's Events (``cancel`` runs on a second actor thread)."""

    def __init__(self, threads: int = 1) -> None:
        import torch

        torch.set_num_threads(threads)
        self._models: dict[tuple, Any] = {}
        self._running: tuple[str, Events] | None = None  # the running task's job and Events
        self._cancelled: set[str] = set()  # jobs cancelled (a cancel may arrive before the job's task)
        self._lock = threading.Lock()

    def pid(self) -> int:
        return os.getpid()

    def loaded(self) -> list[str]:
        """The checkpoints this actor holds."""
        return [key[0] for key in self._models]

    def cancel(self, job: str) -> None:
        """Stop ``job``'s task at its next step (it raises RenderCancelled), and any task of it still to come."""
        with self._lock:
            self._cancelled.add(job)
            if self._running is not None and self._running[0] == job:
                self._running[1].cancel()

    def frames(
        self, job: str, spec_data: dict[str, Any], run_path: str, after: int, stop: int
    ) -> Iterator[tuple]:
        """Render the frames ``after+1 .. stop-1`` of ``job``'s spec; yields ``(index, png_bytes)`` per frame."""
        from flipbook.io.pnginfo import save_png
        from flipbook.runs.render import frame_parameters
        from flipbook.runs.run_dir import RunDir
        from flipbook.runs.setup import mode_context, prepare
        from flipbook.spec.load import spec_from_data

        spec, plan, mode = prepare(spec_from_data(spec_data))
        events = Events()
        with self._lock:
            self._running = (job, events)
            if job in self._cancelled:
                events.cancel()
        ctx = mode_context(spec, plan, events, RunDir(Path(run_path)), after, loader=self._load)
        cores = ctx.cores
        try:
            with tempfile.TemporaryDirectory(prefix="flipbook-farm-") as scratch:
                target = Path(scratch) / "frame.png"
                for frame in mode.render(ctx):
                    if frame.index >= stop:
                        break
                    planned = plan[frame.index]
                    parameters = frame_parameters(frame, planned, spec, cores.hashes.get(planned.checkpoint))
                    save_png(frame.image, target, parameters)
                    yield frame.index, target.read_bytes()
        finally:
            with self._lock:
                self._running = None

    def _load(self, checkpoint: str, **options: Any) -> Any:
        """``load_model`` with the newest model kept: the same checkpoint and settings load once."""
        from flipbook.models.loading import load_model

        key = (checkpoint, *sorted((name, repr(value)) for name, value in options.items()))
        if key not in self._models:
            self._models.clear()
            self._models[key] = load_model(checkpoint, **options)
        return self._models[key]

""":class:`FrameWorker`: one farm actor. It renders runs of a job's frames and keeps its model loaded.

A task is "the frames after ``after`` up to ``stop`` of this spec": the mode renders from ``ctx.start =
after`` (as a resume does) and the task stops taking frames at ``stop``. Each frame is encoded exactly as
``render()`` writes it (the same PNG with the same parameters) and streamed back as bytes; the driver writes
it into the run folder. Every denoising step is streamed back too, as it happens (the mode runs on a thread
of the task), so the driver reports per-step progress. For a job split into parts (variations) a task makes
and stores a run of the parts instead (``parts``). A mode that continues from a frame on disk (``after >= 0`` in a feedback mode) reads
it from the run folder, which is therefore shared (the head's, or a shared filesystem).
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flipbook.events import Events

_DONE = object()
"""The end of a task's messages."""


class FrameWorker:
    """The actor's state: the models it loaded (kept between tasks: the newest one only, so a device never
    holds two) and the running task's Events (``cancel`` runs on a second actor thread)."""

    def __init__(self, threads: int = 1) -> None:
        import torch

        torch.set_num_threads(threads)
        self._threads = threads
        self._models: dict[tuple, Any] = {}
        self._running: tuple[str, Events] | None = None  # the running task's job and Events
        self._cancelled: set[str] = set()  # jobs cancelled (a cancel may arrive before the job's task)
        self._lock = threading.Lock()

    def pid(self) -> int:
        return os.getpid()

    def loaded(self) -> list[str]:
        """The checkpoints this actor holds."""
        return [key[0] for key in self._models]

    def running(self) -> str | None:
        """The job whose task runs here now (None: idle)."""
        with self._lock:
            return None if self._running is None else self._running[0]

    def cancel(self, job: str) -> None:
        """Stop ``job``'s task at its next step (it raises RenderCancelled), and any task of it still to come."""
        with self._lock:
            self._cancelled.add(job)
            if self._running is not None and self._running[0] == job:
                self._running[1].cancel()

    def frames(
        self, job: str, spec_data: dict[str, Any], run_path: str, after: int, stop: int
    ) -> Iterator[tuple]:
        """Render the frames ``after+1 .. stop-1`` of ``job``'s spec; yields ``("step", StepEvent)`` at every
        denoising step and ``("frame", index, png_bytes)`` per frame."""

        def work(ctx: Any, mode: Any, put: Callable[[tuple], None]) -> None:
            from flipbook.io.pnginfo import save_png
            from flipbook.runs.render import frame_parameters

            with tempfile.TemporaryDirectory(prefix="flipbook-farm-") as scratch:
                target = Path(scratch) / "frame.png"
                for frame in mode.render(ctx):  # frames come in order: stop after the task's last one, so
                    if frame.index >= stop:  # the mode never starts the batch after it
                        break
                    planned = ctx.plan[frame.index]
                    checkpoint_hash = ctx.cores.hash_of(planned.checkpoint)
                    parameters = frame_parameters(
                        frame, planned, ctx.spec, checkpoint_hash, ctx.cores.refiner_hash
                    )
                    save_png(frame.image, target, parameters)
                    put(("frame", frame.index, target.read_bytes()))
                    if frame.index >= stop - 1:
                        break

        yield from self._task(job, spec_data, run_path, after, work)

    def parts(
        self, job: str, spec_data: dict[str, Any], run_path: str, first: int, stop: int
    ) -> Iterator[tuple]:
        """Make and store the parts ``first .. stop-1`` of a job split into parts (``Split.parts``: variations,
        into the run folder); yields ``("step", StepEvent)`` at every denoising step."""

        def work(ctx: Any, mode: Any, put: Callable[[tuple], None]) -> None:
            mode.make_parts(ctx, range(first, stop))

        yield from self._task(job, spec_data, run_path, -1, work)

    def units(
        self, job: str, function: str, data: dict[str, Any], run_path: str, first: int, stop: int
    ) -> Iterator[tuple]:
        """Run the units ``first .. stop-1`` of a job that is not a spec's render but splits the same way (a
        still request's images): ``function`` names flipbook's function (``module:name``) that makes them,
        ``function(data, run_dir, units, events, load, forget)`` yielding ``(index, value)`` per unit, with
        this actor's kept model (``load``; ``forget`` drops it when the work changed it). Yields
        ``("step", StepEvent)`` at every denoising step and ``("unit", index, value)`` per unit."""
        make = _flipbook_function(function)

        def work(events: Events, put: Callable[[tuple], None]) -> None:
            units = range(first, stop)
            for index, value in make(data, Path(run_path), units, events, self._load, self._models.clear):
                put(("unit", index, value))

        yield from self._stream(job, work)

    def _task(
        self, job: str, spec_data: dict[str, Any], run_path: str, after: int, work: Callable
    ) -> Iterator:
        """Run ``work(ctx, mode, put)`` with the context ``render()`` builds (the shared preparation,
        :mod:`flipbook.runs.setup`), as :meth:`_stream` runs its work."""
        from flipbook.runs.run_dir import RunDir
        from flipbook.runs.setup import mode_context, prepare
        from flipbook.spec.load import spec_from_data

        spec, plan, mode = prepare(spec_from_data(spec_data))

        def in_context(events: Events, put: Callable[[tuple], None]) -> None:
            ctx = mode_context(spec, plan, events, RunDir(Path(run_path)), after, loader=self._load)
            work(ctx, mode, put)

        yield from self._stream(job, in_context)

    def _stream(self, job: str, work: Callable[[Events, Callable[[tuple], None]], None]) -> Iterator:
        """Run ``work(events, put)`` on a thread of its own, yielding what it puts and every step as it
        happens; its error is raised here. When the stream is closed early the work is cancelled at its next
        step, as it is by :meth:`cancel`."""
        import torch

        messages: queue.Queue = queue.Queue()
        events = Events(on_step=lambda event: messages.put(("step", event)))
        with self._lock:
            self._running = (job, events)
            if job in self._cancelled:
                events.cancel()
        failed: list[BaseException] = []

        def run() -> None:
            torch.set_num_threads(self._threads)  # torch's thread count is per thread
            try:
                work(events, messages.put)
            except BaseException as error:
                failed.append(error)
            finally:
                messages.put(_DONE)

        thread = threading.Thread(target=run, name=f"flipbook-task-{job}", daemon=True)
        thread.start()
        try:
            while (message := messages.get()) is not _DONE:
                yield message
            if failed:
                raise failed[0]
        finally:
            events.cancel()  # a no-op once the work is done; else it stops at its next step
            thread.join()
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


def _flipbook_function(name: str) -> Callable:
    """The function ``module:name`` of flipbook's own modules (the head names it; never a user's text)."""
    import importlib

    module, _, function = name.partition(":")
    if module.split(".")[0] != "flipbook" or not function:
        raise ValueError(f"not a flipbook function: {name}")
    return getattr(importlib.import_module(module), function)

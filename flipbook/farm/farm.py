""":class:`Farm`: renders jobs on Ray actors from the head node (see :mod:`flipbook.farm`)."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from flipbook.errors import FlipbookError
from flipbook.events import Events, FrameEvent, RenderCancelled
from flipbook.farm.segments import segments
from flipbook.io.atomic import atomic_target

log = logging.getLogger("flipbook.farm")
LOCAL = "local"
SEGMENTS_PER_ACTOR = 2
"""A split job is cut into about this many runs per actor, so a fast actor takes over a slow one's share."""


@dataclasses.dataclass(frozen=True)
class FarmSettings:
    """Where the cluster is and what actors to start: ``address`` ``local`` (a Ray instance started here,
    stopped with the farm), ``auto`` (the cluster ``ray start`` made on this machine) or ``ray://host:port`` /
    ``host:port``; one actor per GPU of the cluster, or ``cpu_actors`` on a cluster without GPUs."""

    address: str = LOCAL
    cpu_actors: int = 2
    threads_per_actor: int = 1

    def checked(self) -> FarmSettings:
        if not self.address.strip():
            raise FlipbookError(
                "--ray", self.address, "local, auto, or a Ray address (host:port, ray://host:port)"
            )
        if self.cpu_actors < 1:
            raise FlipbookError("--ray-actors", self.cpu_actors, "1 or more CPU actors")
        if self.threads_per_actor < 1:
            raise FlipbookError("--ray-threads", self.threads_per_actor, "1 or more threads per actor")
        return self


@dataclasses.dataclass(frozen=True)
class UnitWork:
    """A job of independent units that is not a spec's render (a still request's images), for
    :meth:`Farm.run_units`: ``total`` units split as ``split`` says; an actor makes a run of them with
    ``function`` (``module:name``, see :meth:`~flipbook.farm.worker.FrameWorker.units`) from ``data`` and
    the folder ``run_path`` (on the head, or shared), loading ``checkpoint``; the head hands each unit to
    ``receive(index, value)`` (once), whose answers :meth:`Farm.run_units` returns by index."""

    function: str
    data: dict[str, Any]
    run_path: str
    total: int
    split: Any  # flipbook.modes.base.Split
    checkpoint: str
    receive: Any  # Callable[[int, Any], Any]


class _Actors:
    """The farm's actors: idle ones are handed out preferring one that holds the wanted checkpoint."""

    def __init__(self, handles: list[Any]) -> None:
        self._idle = list(handles)
        self._loaded: dict[int, set[str]] = {id(h): set() for h in handles}
        self._ready = threading.Condition()

    @contextmanager
    def one(self, checkpoint: str) -> Iterator[Any]:
        with self._ready:
            self._ready.wait_for(lambda: bool(self._idle))
            handle = next((h for h in self._idle if checkpoint in self._loaded[id(h)]), self._idle[0])
            self._idle.remove(handle)
        try:
            yield handle
            self._loaded[id(handle)] = {checkpoint}
        except BaseException:
            self._loaded[id(handle)] = set()  # it may have died and restarted empty
            raise
        finally:
            with self._ready:
                self._idle.append(handle)
                self._ready.notify()


class Farm:
    """``with Farm(settings) as farm: farm.render(spec, events)``: jobs on Ray actors, frames written here."""

    def __init__(self, settings: FarmSettings | None = None) -> None:
        self.settings = (settings or FarmSettings()).checked()
        self._started_ray = False
        self.handles: list[Any] = []
        self._actors: _Actors | None = None

    # ---- the cluster -----------------------------------------------------------------------------------

    def __enter__(self) -> Farm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        import ray

        from flipbook.farm.worker import FrameWorker

        s = self.settings
        if not ray.is_initialized():
            if s.address == LOCAL:
                ray.init(num_cpus=s.cpu_actors * s.threads_per_actor, include_dashboard=False,
                         log_to_driver=False)  # fmt: skip
            else:
                ray.init(address=s.address, include_dashboard=False, log_to_driver=False)
            self._started_ray = True
        gpus = int(ray.cluster_resources().get("GPU", 0))
        options = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": s.threads_per_actor}
        actor = ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=2, **options)(FrameWorker)
        self.handles = [actor.remote(s.threads_per_actor) for _ in range(gpus or s.cpu_actors)]
        ray.get([h.pid.remote() for h in self.handles])  # started (models load with the first task)
        self._actors = _Actors(self.handles)

    def close(self) -> None:
        import ray

        for handle in self.handles:
            ray.kill(handle)
        self.handles, self._actors = [], None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def pids(self) -> list[int]:
        import ray

        return ray.get([h.pid.remote() for h in self.handles])

    # ---- a job -----------------------------------------------------------------------------------------

    def render(self, spec: Any, events: Events | None = None, *, overwrite: bool = False) -> Any:
        """``render(spec)`` on the farm: the same checks first, the same run folder, the same frames (a job
        split where its mode allows, see :class:`~flipbook.modes.base.Split`), the same outputs."""
        from flipbook.runs.setup import open_run, prepare, resolve_prompts

        spec, plan, mode = prepare(spec)
        resolve_prompts(spec, plan)  # a missing LoRA fails here, as in render(), before the run folder
        run, _ = open_run(spec, plan, mode, overwrite=overwrite)
        run.log(
            f"start on the farm: {len(plan)} frames, seed {spec.sampling.seed}, {len(self.handles)} actors"
        )
        return self._run(spec, plan, mode, run, events or Events(), resumed_from=-1)

    def render_sweep(
        self, spec: Any, events: Events | None = None, *, overwrite: bool = False, resuming: bool = False
    ) -> Any:
        """A spec's ``[sweep]`` grid on the farm: as many runs side by side as there are actors, each run's
        job split where its mode allows; then the contact sheet (:func:`flipbook.runs.sweep.render_sweep`)."""
        from flipbook.runs.sweep import render_sweep

        return render_sweep(
            spec, events, overwrite=overwrite, render_run=self.render, parallel=max(1, len(self.handles)),
            resuming=resuming, resume_run=self.resume,
        )  # fmt: skip

    def resume(self, run_dir: str | Path, events: Events | None = None) -> Any:
        """``resume(run_dir)`` on the farm: the frames not on disk, then the outputs."""
        from flipbook.runs.run_dir import RunDir
        from flipbook.runs.setup import open_run, prepare, resolve_prompts

        run = RunDir(Path(run_dir))
        spec, plan, mode = prepare(run.read_spec())
        resolve_prompts(spec, plan)
        run, start = open_run(spec, plan, mode, run)
        return self._run(spec, plan, mode, run, events or Events(), resumed_from=start)

    def run_units(self, work: UnitWork, events: Events | None = None) -> dict[int, Any]:
        """``work``'s units split across the actors as its ``split`` allows (a batch is never cut), each
        made once (an actor that dies has its unmade units re-run elsewhere); per-step progress through
        ``events``; a cancel stops every task at its next step and keeps what was made. Returns what
        ``work.receive`` answered for each unit made, by index."""
        job = _UnitsJob(work, events or Events(), self._actors)
        pieces = segments(0, work.total, work.split, len(self.handles) * SEGMENTS_PER_ACTOR)
        self._tasks(job, job.run_units, pieces)
        return dict(sorted(job.made.items()))

    def _run(self, spec: Any, plan: Any, mode: Any, run: Any, events: Events, resumed_from: int) -> Any:
        """The job's tasks on the actors (see :class:`~flipbook.modes.base.Split`): runs of frames; or, for a
        job split into parts, runs of parts first and then one task that makes the frames from them."""
        from flipbook.runs.render import resume

        split = mode.split(spec, plan)
        pieces = len(self.handles) * SEGMENTS_PER_ACTOR
        if split is not None and split.parts:
            if resumed_from < len(plan) - 1:
                parts = _Job(spec, plan, mode, run, events, self._actors, split)
                self._tasks(parts, parts.run_parts, segments(0, len(plan), split, pieces))
            split = None  # the frames: one task, reading every part
        job = _Job(spec, plan, mode, run, events, self._actors, split)
        self._tasks(job, job.run_segment, segments(resumed_from + 1, len(plan), split, pieces))
        result = resume(run.path, Events())  # every frame is on disk: only the outputs are made
        return dataclasses.replace(result, resumed_from=resumed_from)

    def _tasks(self, job: _Tasks, task: Any, pieces: list[range]) -> None:
        """``task(piece)`` for every piece, at most one per actor at a time; a cancel (from any thread) or a
        failed task stops the job's other tasks at once, and the first failure is raised."""
        with ThreadPoolExecutor(
            max_workers=max(1, len(self.handles)), thread_name_prefix="flipbook-farm"
        ) as pool:
            futures = [pool.submit(task, piece) for piece in pieces]
            while True:
                done, waiting = wait(futures, timeout=0.1, return_when=FIRST_EXCEPTION)
                if job.events.cancelled or any(f.exception() is not None for f in done):
                    job.stop()
                if not waiting:
                    break
            for future in futures:
                future.result()  # the first failure (a cancel: RenderCancelled) is raised here


class _Tasks:
    """What every job on the farm shares: its tasks on actors, their messages relayed, cancel."""

    def __init__(self, events: Events, actors: _Actors, log: Any) -> None:
        self.events, self.actors, self.log = events, actors, log
        self.token = secrets.token_hex(8)  # names the job's tasks on the actors (for cancel)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._running: set[Any] = set()

    def _on_actor(self, checkpoint: str, label: str, method: str, *args: Any) -> bool:
        """One try of a task (the actor's ``method(token, *args)``) on a free actor, relaying its steps and
        what it makes: True when it ran to its end, False when the actor died (the caller tries again)."""
        import ray
        from ray.exceptions import RayActorError

        with self.actors.one(checkpoint) as actor:
            if self._stopped.is_set():
                return False
            with self._lock:
                self._running.add(actor)
            self.log(f"task: {label}")
            try:
                call = getattr(actor, method).options(num_returns="streaming")
                for ref in call.remote(self.token, *args):
                    self._relay(ray.get(ref))
                return True
            except RayActorError as error:
                if self._stopped.is_set():
                    return False
                log.warning("a farm actor died during %s (%s): re-running the rest", label,
                            type(error).__name__)  # fmt: skip
                self.log(f"an actor died during {label}: re-running the rest")
                return False
            except RenderCancelled:
                self.stop()
                raise
            except ray.exceptions.RayTaskError as error:
                self.stop()
                raise error.as_instanceof_cause() from None
            finally:
                with self._lock:
                    self._running.discard(actor)

    def _relay(self, message: tuple) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Cancel every task of the job (the actors stop at their next step)."""
        self._stopped.set()
        with self._lock:
            running = list(self._running)
        for actor in running:
            actor.cancel.remote(self.token)


class _Job(_Tasks):
    """One render on the farm: its tasks, the frames written (each once), progress and cancel."""

    def __init__(
        self, spec: Any, plan: Any, mode: Any, run: Any, events: Events, actors: _Actors, split: Any
    ) -> None:
        super().__init__(events, actors, run.log)
        self.spec, self.plan, self.mode, self.run = spec, plan, mode, run
        self.split = split
        self.data = spec.model_dump(mode="json")
        self.total = len(plan)

    def run_segment(self, part: range) -> None:
        """Render ``part`` on an actor; when the actor dies mid-way, the frames not yet here go to the next
        free actor (a restarted one, or another), continuing as a resume does."""
        while not self._stopped.is_set():
            missing = [i for i in part if not self.run.done(i)]
            if not missing:
                return
            after = self._restart_point(part, missing[0])
            if self._task(self.plan[missing[0]].checkpoint, part, "frames", after, part.stop):
                return
        self._cancelled()

    def run_parts(self, units: range) -> None:
        """Make and store the parts ``units`` on an actor; when it dies, the same task goes to the next free
        actor (the mode reuses the parts stored before)."""
        while not self._stopped.is_set():
            if self._task(self.plan[units.start].checkpoint, units, "parts", units.start, units.stop):
                return
        self._cancelled()

    def _task(self, checkpoint: str, part: range, method: str, *span: int) -> bool:
        label = f"{method} {span[0] + 1 if method == 'frames' else span[0]}-{span[1] - 1}"
        data = (self.data, str(self.run.path), *span)
        return self._on_actor(checkpoint, label, method, *data)

    def _relay(self, message: tuple) -> None:
        """An actor's message into the job: a step reported (per-step progress from every actor, through the
        job's one ``Events``), a frame written; a cancel raises RenderCancelled here."""
        if message[0] == "step":
            self.events.step(message[1])
        else:
            self._write(message[1], message[2])
        self.events.check_cancelled()

    def _cancelled(self) -> None:
        self.events.check_cancelled()
        raise RenderCancelled("render cancelled")

    def _restart_point(self, part: range, first_missing: int) -> int:
        """The frame to continue after: right before the last place a task may start at or before the first
        missing frame, where frames are independent (a batch is never cut); where the mode continues from
        frames on disk, its resume point (cadence-aligned)."""
        from flipbook.runs.run_dir import resume_point

        if self.split is not None:
            return max(part.start, self.split.restart(first_missing)) - 1
        return max(part.start - 1, resume_point(first_missing, self.mode.resume_every(self.spec)))

    def _write(self, index: int, png: bytes) -> None:
        """A frame from an actor into the run folder, atomically and once (a re-run after a dead actor may
        make a frame that is already here again: it is the same frame and is not written twice)."""
        path = self.run.frame_path(index)
        with self._lock:
            if self.run.done(index):
                return
            with atomic_target(path) as temporary:
                temporary.write_bytes(png)
        self.run.log(f"frame {index}")
        self.events.frame(FrameEvent(index, self.total, _image(png)))


class _UnitsJob(_Tasks):
    """A job of independent units that is not a spec's render (see :meth:`Farm.run_units`)."""

    def __init__(self, work: UnitWork, events: Events, actors: _Actors) -> None:
        super().__init__(events, actors, lambda text: log.info("%s: %s", work.function, text))
        self.work = work
        self.made: dict[int, Any] = {}

    def run_units(self, units: range) -> None:
        """Make ``units`` on an actor; when it dies, the units not yet made go to the next free actor, from
        the last place a task may start before them (a batch is never cut). After a cancel, nothing more."""
        while not self._stopped.is_set():
            missing = [i for i in units if i not in self.made]
            if not missing:
                return
            first = max(units.start, self.work.split.restart(missing[0]))
            w = self.work
            label = f"units {first}-{units.stop - 1}"
            if self._on_actor(
                w.checkpoint, label, "units", w.function, w.data, w.run_path, first, units.stop
            ):
                return

    def _relay(self, message: tuple) -> None:
        """A step into the job's ``Events``; a unit to ``work.receive`` (each once). A cancel does not
        raise here: the actors finish as their work does on a cancel, and what they made is kept."""
        if message[0] == "step":
            with suppress(RenderCancelled):
                self.events.step(message[1])
            return
        with self._lock:
            if message[1] in self.made:
                return
            self.made[message[1]] = self.work.receive(message[1], message[2])


def _image(png: bytes) -> Any:
    import io

    import PIL.Image

    with PIL.Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB")

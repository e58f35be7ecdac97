"""Worker processes: ``flipbook serve --workers N`` runs every job in one of N processes, never in the server's.

A render holds the GIL for much of its time on a CPU (and for the Python parts of every step on a GPU), so
jobs on threads of the server slowed every API request. Here the server process only answers requests; the
work is done by worker processes, one per GPU by default (each pinned to its GPU with
``CUDA_VISIBLE_DEVICES``), one on a machine without GPUs.

- **The queue stays in SQLite.** Each worker process runs one :class:`~flipbook.server.jobs.Workers` loop
  with its own connection to ``flipbook.db``; claiming is the same guarded UPDATE, so two processes never
  take the same job, and the claim records the worker's id (``worker<slot>-<pid>``) with the job.
- **Heartbeats.** A thread in each worker process sets ``heartbeat_at`` of its running job every
  ``heartbeat_s``.
- **Progress and cancel go through a pipe per worker.** The worker's :class:`ProgressHub` relays every
  tracked event (start, step, frame, preview, stop) and every publication; the supervisor's reader thread
  replays them into the server's hub, so polling, SSE streams and previews work as with threads. Cancel and
  skip requests reach the worker through the job's ``control`` callback (a message down the pipe). Progress
  is also written to SQLite at every frame by the worker, as before.
- **A dead worker's job is re-queued once.** The supervisor watches every process (its exit is seen at
  once) and every heartbeat: a worker whose heartbeat is older than ``heartbeat_timeout_s`` is killed first
  (SIGKILL, and waited for), so a job is never run by two processes at once. Its job is then queued again,
  at most once (:data:`~flipbook.server.store.MAX_REQUEUES`), and a render resumes from its frames on disk;
  a new worker takes the slot.
- **Shutdown** sends ``stop``: running jobs are cancelled and recorded ``interrupted`` (resumable); a
  worker still busy after the grace period (a model load cannot be cancelled) is killed and its job
  recorded ``interrupted`` by the supervisor.
- **If the server process dies** (SIGKILL included), its workers die with it, at once: each holds a
  :class:`~flipbook.server.lifeline.Lifeline` whose other end only the server holds; on Linux its closing
  (the server's exit) has the kernel end the worker before another instruction of it runs, and everywhere
  the worker checks it at every step and frame it reports and exits when its message pipe closes. So no
  frame is written after the server is gone, and a new server on the same runs folder never shares a run
  folder with a stale worker; the next start marks what was running ``interrupted``, as after any crash.
- **With Ray** (``serve --ray ADDRESS``) one worker process drives the render farm
  (:mod:`flipbook.farm`): it runs ``--workers`` jobs at once as threads, each sending its frames to the
  cluster's actors (shared by all its jobs, so a job finds the actor that has its checkpoint loaded); a
  still request's batches are made across the actors too. Heartbeats, re-queueing and progress are the same.

Workers start from a fork server that imports the engine once (torch, diffusers: seconds), so a worker
(and a replacement for a dead one) starts in a fraction of a second.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import subprocess
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flipbook.events import Events, RenderCancelled
from flipbook.server.lifeline import ORPHANED_EXIT, Lifeline
from flipbook.server.progress import ProgressHub
from flipbook.server.settings import ServerSettings
from flipbook.server.store import INTERRUPTED, JobStore

log = logging.getLogger("flipbook.server")

ENGINE_MODULES = [
    "flipbook.server.jobs",
    "flipbook.runs.render",
    "flipbook.sampling.core",
    "flipbook.server.stills",
]
"""Imported once by the fork server that worker processes start from."""
MIN_LIFETIME_S = 5.0
"""A worker that dies sooner than this after its start is replaced only after a pause (no restart storm)."""


@dataclass(frozen=True)
class WorkerConfig:
    """What one worker process needs (pickled to it)."""

    slot: int
    db_path: Path
    runs_dir: Path
    models_dir: Path | None
    gpu: str | None  # its CUDA_VISIBLE_DEVICES; None: the server's
    threads: int  # torch's CPU threads
    heartbeat_s: float
    stop_timeout_s: float
    jobs: int = 1  # jobs it runs at once (threads): 1, or with Ray the server's --workers
    ray: str | None = None  # drive a render farm on this Ray cluster
    ray_actors: int = 2


def worker_id(slot: int, pid: int) -> str:
    """The id a worker process claims jobs under (its slot and process id)."""
    return f"worker{slot}-{pid}"


def visible_gpus() -> list[str]:
    """The GPUs this machine offers (``CUDA_VISIBLE_DEVICES`` when set, else ``nvidia-smi``), as device ids
    for ``CUDA_VISIBLE_DEVICES``; found without importing torch (the server process never needs it)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        devices = []
        for device in (d.strip() for d in listed.split(",")):
            if not device or device.startswith("-"):  # CUDA stops at the first invalid entry
                break
            devices.append(device)
        return devices
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        answer = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in answer.stdout.splitlines() if line.strip().isdigit()]


def default_worker_count() -> int:
    """One worker per GPU; one on a machine without."""
    return max(1, len(visible_gpus()))


# ---- the worker process ------------------------------------------------------------------------------------


class _Pipe:
    """One end of a worker's pipe, shared by threads (a Connection is not thread-safe)."""

    def __init__(self, connection: multiprocessing.connection.Connection) -> None:
        self.connection = connection
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        """Send, or drop the message when the other side is gone (it notices on its own)."""
        with self._lock, suppress(OSError, ValueError):
            self.connection.send(message)


def worker_main(
    config: WorkerConfig, connection: multiprocessing.connection.Connection, lifeline: Lifeline
) -> None:
    """A worker process: one Workers loop on the queue, a heartbeat thread, and the pipe's messages
    (``cancel``/``skip`` a job, ``wake``, ``stop``) on the main thread until ``stop`` or the server is gone
    (then it ends at once: ``lifeline``)."""
    lifeline.bind()
    if config.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = config.gpu  # before torch sees a GPU
    import torch

    from flipbook.server.jobs import Workers

    torch.set_num_threads(config.threads)
    pipe = _Pipe(connection)
    me = worker_id(config.slot, os.getpid())
    store = JobStore(config.db_path)
    hub = ProgressHub(relay=functools.partial(_relay, pipe, lifeline))
    farm = _farm(config)
    workers = Workers(store, hub, config.runs_dir, config.models_dir, config.jobs, worker_id=me, farm=farm)
    beating = threading.Event()
    heart = threading.Thread(
        target=_beat, args=(store, me, config.heartbeat_s, beating), name="flipbook-heartbeat", daemon=True
    )
    heart.start()
    workers.start()
    try:
        while True:
            try:
                kind, job_id = connection.recv()
            except (EOFError, OSError):  # the server process died: so does its worker, at once (a crash)
                os._exit(ORPHANED_EXIT)
            if kind == "stop":
                break
            if kind == "cancel":
                hub.cancel(job_id)
            elif kind == "skip":
                hub.skip(job_id)
            elif kind == "wake":
                workers.wake()
    finally:
        stopped = workers.stop(config.stop_timeout_s)
        beating.set()
        heart.join()
        if stopped:
            store.close()
        if farm is not None:
            farm.close()


def _relay(pipe: _Pipe, lifeline: Lifeline, kind: str, job_id: str, payload: Any) -> None:
    """A job's event to the server; run at every step and frame, it first ends the worker if the server is
    gone (where the kernel does not do it at once: :meth:`Lifeline.bind`)."""
    lifeline.check()
    pipe.send((kind, job_id, payload))


def _farm(config: WorkerConfig) -> Any:
    """The render farm this worker drives (``serve --ray``), started; None without Ray."""
    if config.ray is None:
        return None
    from flipbook.farm.farm import Farm, FarmSettings

    farm = Farm(FarmSettings(address=config.ray, cpu_actors=config.ray_actors))
    farm.start()
    return farm


def _beat(store: JobStore, me: str, every_s: float, stop: threading.Event) -> None:
    while not stop.wait(every_s):
        try:
            store.heartbeat(me)
        except Exception:  # the database is busy beyond its timeout: the next beat will do
            log.exception("heartbeat of %s failed", me)


# ---- the supervisor, in the server process -----------------------------------------------------------------


@dataclass
class _Slot:
    """One worker process as the supervisor sees it."""

    index: int
    process: Any  # a multiprocessing Process of the fork-server context
    pipe: _Pipe
    worker: str
    lifeline: multiprocessing.connection.Connection  # the write end, held open while the worker lives
    started: float = field(default_factory=time.monotonic)
    reader: threading.Thread | None = None


class WorkerProcesses:
    """N worker processes and their supervisor (same face as :class:`~flipbook.server.jobs.Workers`:
    ``start``, ``wake``, ``stop``)."""

    def __init__(self, store: JobStore, hub: ProgressHub, settings: ServerSettings) -> None:
        self.store, self.hub, self.settings = store, hub, settings
        # with Ray one process drives the farm and runs --workers jobs at once on its actors
        self.count = 1 if settings.ray is not None else settings.workers
        self._gpus = visible_gpus()
        self._context = _context()
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    # ---- the face the server uses ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers and their watch in the background: the first start waits for the fork server
        to import the engine (seconds), and the API answers meanwhile."""
        self._monitor = threading.Thread(target=self._watch, name="flipbook-supervisor", daemon=True)
        self._monitor.start()

    def wake(self) -> None:
        """New work: every worker looks at the queue now."""
        for slot in self.slots():
            slot.pipe.send(("wake", None))

    def stop(self, timeout: float) -> bool:
        """Stop every worker: running jobs are cancelled and recorded ``interrupted``; a worker still busy
        after ``timeout`` is killed and its job recorded ``interrupted`` here. Always True: no process of
        ours uses the database afterwards."""
        self._stopping.set()
        slots = self.slots()
        for slot in slots:
            slot.pipe.send(("stop", None))
        deadline = time.monotonic() + timeout
        for slot in slots:
            slot.process.join(max(0.0, deadline - time.monotonic()))
        for slot in slots:
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
                for job_id in self.store.held_by(slot.worker):
                    self.store.finish(job_id, INTERRUPTED, error="the server stopped", error_type=INTERRUPTED)
        if self._monitor is not None:
            self._monitor.join()
        for slot in slots:
            self._close(slot)
        return True

    def slots(self) -> list[_Slot]:
        with self._lock:
            return list(self._slots)

    def pids(self) -> list[int]:
        """The worker processes' ids (for operators and tests)."""
        return [slot.process.pid for slot in self.slots()]

    # ---- starting a worker -----------------------------------------------------------------------------

    def _spawn(self, index: int) -> _Slot:
        config = self._config(index)
        ours, theirs = self._context.Pipe()
        line, held = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=worker_main, args=(config, theirs, Lifeline(line)), name=f"flipbook-worker-{index}",
            daemon=True,
        )  # fmt: skip
        process.start()
        theirs.close()
        line.close()
        slot = _Slot(index, process, _Pipe(ours), worker_id(index, process.pid), held)
        slot.reader = threading.Thread(
            target=self._read, args=(slot,), name=f"flipbook-relay-{index}", daemon=True
        )
        slot.reader.start()
        return slot

    def _config(self, index: int) -> WorkerConfig:
        s = self.settings
        gpu = self._gpus[index % len(self._gpus)] if self._gpus and s.ray is None else None
        cpus = os.cpu_count() or 1
        threads = max(1, cpus // max(self.count, 1)) if gpu is None else max(1, min(4, cpus))
        return WorkerConfig(
            slot=index, db_path=s.db_path, runs_dir=s.runs_dir, models_dir=s.models_dir, gpu=gpu,
            threads=threads, heartbeat_s=s.heartbeat_s, stop_timeout_s=s.graceful_shutdown_s,
            jobs=s.workers if s.ray is not None else 1, ray=s.ray, ray_actors=s.ray_actors,
        )  # fmt: skip

    # ---- what a worker reports -------------------------------------------------------------------------

    def _read(self, slot: _Slot) -> None:
        """Replay a worker's relayed events into the server's hub until its pipe closes."""
        running: dict[str, Events] = {}
        while True:
            try:
                kind, job_id, payload = slot.pipe.connection.recv()
            except (EOFError, OSError):
                break
            try:
                self._apply(slot, running, kind, job_id, payload)
            except Exception:
                log.exception("relaying %s of job %s failed", kind, job_id)
        for job_id in running:
            self.hub.stop(job_id)

    def _apply(self, slot: _Slot, running: dict[str, Events], kind: str, job_id: str, payload: Any) -> None:
        if kind == "start":
            total, done, stills = payload
            control = functools.partial(_control, slot.pipe, job_id)
            running[job_id] = self.hub.start(job_id, total, done=done, stills=stills, control=control)
        elif kind in ("step", "frame"):
            events = running.get(job_id)
            if events is not None:
                with suppress(RenderCancelled):  # the worker stops on its own; here it is only a record
                    (events.step if kind == "step" else events.frame)(payload)
        elif kind == "preview":
            self.hub.show_preview(job_id, payload)
        elif kind == "publish":
            self.hub.publish(job_id, *payload)
        elif kind == "stop":
            running.pop(job_id, None)
            self.hub.stop(job_id)

    # ---- watching the workers --------------------------------------------------------------------------

    def _watch(self) -> None:
        """Replace a worker whose process exited (seen at once) or whose heartbeat is too old (checked
        every second or heartbeat, whichever is sooner)."""
        every = min(1.0, self.settings.heartbeat_s)
        for index in range(self.count):
            if self._stopping.is_set():
                return
            slot = self._spawn(index)
            with self._lock:
                self._slots.append(slot)
        while not self._stopping.is_set():
            by_sentinel = {slot.process.sentinel: slot for slot in self.slots()}
            ready = multiprocessing.connection.wait(list(by_sentinel), timeout=every)
            if self._stopping.is_set():
                break
            for sentinel in ready:
                self._replace(by_sentinel[sentinel], "its worker process exited")
            try:
                self._check_heartbeats()
            except Exception:
                log.exception("checking the workers' heartbeats failed")

    def _check_heartbeats(self) -> None:
        timeout = self.settings.heartbeat_timeout_s
        stale = set(self.store.stale_workers(time.time() - timeout))
        for slot in self.slots():
            if slot.worker in stale and not self._stopping.is_set():
                log.warning("worker %s sent no heartbeat for %.0f s: stopping it", slot.worker, timeout)
                slot.process.kill()
                self._replace(slot, f"its worker sent no heartbeat for {timeout:g} s")

    def _replace(self, slot: _Slot, why: str) -> None:
        """The slot's process is dead or being killed: wait for it, re-queue its job (once), start another."""
        slot.process.join()
        if slot.reader is not None:
            slot.reader.join(5.0)
        for job_id in self.store.held_by(slot.worker):
            self.hub.stop(job_id)
            state = self.store.requeue_dead(job_id, slot.worker, f"{why} (exit code {slot.process.exitcode})")
            log.warning("job %s: %s (exit code %s); now %s", job_id, why, slot.process.exitcode, state)
            if state is not None:
                self.hub.publish(job_id, "state", {"id": job_id, "state": state})
        self._close(slot)
        if self._stopping.is_set():
            return
        if time.monotonic() - slot.started < MIN_LIFETIME_S:
            self._stopping.wait(MIN_LIFETIME_S)
        if self._stopping.is_set():
            return
        fresh = self._spawn(slot.index)
        with self._lock:
            self._slots[slot.index] = fresh
        fresh.pipe.send(("wake", None))

    @staticmethod
    def _close(slot: _Slot) -> None:
        with suppress(OSError):
            slot.pipe.connection.close()
        with suppress(OSError):
            slot.lifeline.close()


def _control(pipe: _Pipe, job_id: str, what: str) -> None:
    """A cancel or skip request for ``job_id``, sent to the worker process that runs it."""
    pipe.send((what, job_id))


def _context() -> Any:
    """Fork-server processes that start with the engine imported (where the platform has them)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(ENGINE_MODULES)
        return context
    return multiprocessing.get_context("spawn")

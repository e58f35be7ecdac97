"""Workers: threads that take the oldest queued job and run it through flipbook's engine.

``flipbook serve`` runs each worker in a process of its own (:mod:`flipbook.server.processes`: one of these
loops with one thread in every worker process), so a render never holds the server's GIL; the threads alone
(``ServerSettings(worker_processes=False)``) serve embedding and tests that need no isolation.

A worker is a loop: claim a job in SQLite (atomic, see :meth:`JobStore.claim`), run it (a render through
``render()``/``resume()``, a still through the sampling core), record how it ended. Renders and A1111 stills
share the workers, so with one worker per device a device never runs two things at once. Progress goes to
the in-memory hub at every step and to SQLite at every frame.

When the server stops, running jobs are cancelled through their Events and recorded as ``interrupted``
(resumable), the same state a crash leaves them in after the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from flipbook.errors import FlipbookError
from flipbook.events import RenderCancelled
from flipbook.server.progress import ProgressHub
from flipbook.server.stills import STILL_KINDS, ModelCache, run_still
from flipbook.server.store import CANCELLED, DONE, FAILED, INTERRUPTED, RENDER, RUNNING, JobRecord, JobStore

log = logging.getLogger("flipbook.server")


class Workers:
    """The worker threads of one server, and the wake-up signal new jobs send them."""

    def __init__(
        self,
        store: JobStore,
        hub: ProgressHub,
        runs_dir: Path,
        models_dir: Path | None,
        count: int,
        worker_id: str | None = None,
        farm: Any = None,
    ) -> None:
        self.store, self.hub = store, hub
        self.worker_id = worker_id  # recorded with every job it claims (the supervisor's heartbeat check)
        self.farm = farm  # a flipbook.farm Farm: renders and stills go to its Ray actors
        self.runs_dir, self.models_dir = runs_dir, models_dir
        self.count = count
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._wake = threading.Condition()
        self._generation = 0

    def start(self) -> None:
        for index in range(self.count):
            thread = threading.Thread(target=self._loop, name=f"flipbook-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """New work: every idle worker looks at the queue now (not at its next poll)."""
        with self._wake:
            self._generation += 1
            self._wake.notify_all()

    def stop(self, timeout: float) -> bool:
        """Stop taking jobs, cancel the running ones (they become ``interrupted``) and wait for the threads;
        False when one is still busy (a model load cannot be cancelled), so the caller keeps the database
        open for it."""
        self._stopping.set()
        self.hub.cancel_all()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _loop(self) -> None:
        """Claim and run jobs until the server stops; an idle worker sleeps until woken (or 1 s passes, in
        case a job was queued by anything that did not wake it)."""
        cache = ModelCache()
        while not self._stopping.is_set():
            with self._wake:
                generation = self._generation
            try:
                job = self.store.claim(self.worker_id)
            except Exception:  # the database went away under us (shutdown): stop quietly
                if self._stopping.is_set():
                    break
                log.exception("claiming a job failed")
                job = None
            if job is None:
                with self._wake:
                    if self._generation == generation and not self._stopping.is_set():
                        self._wake.wait(1.0)
                continue
            try:
                self.run(job, cache)
            except Exception:  # recording the end failed (the database closed at shutdown): keep going
                if not self._stopping.is_set():
                    log.exception("recording job %s failed", job.id)
        cache.clear()

    def run(self, job: JobRecord, cache: ModelCache) -> None:
        """Run one claimed job and record its end; nothing a job raises stops the worker."""
        self.hub.publish(job.id, "state", {"id": job.id, "state": RUNNING})
        outcome: dict[str, Any]
        try:
            if job.kind == RENDER:
                cache.clear()
                result = self._render(job)
            else:
                result = self._still(job, cache)
            outcome = {"state": DONE, "result": result}
        except RenderCancelled:
            user = self.hub.cancel_requested(job.id) and not self._stopping.is_set()
            state = CANCELLED if user else INTERRUPTED
            outcome = {
                "state": state,
                "error": "cancelled" if user else "the server stopped",
                "error_type": state,
            }
        except FlipbookError as error:
            outcome = {"state": FAILED, "error": str(error), "error_field": error.field,
                       "error_type": type(error).__name__}  # fmt: skip
        except Exception as error:
            log.exception("job %s failed", job.id)
            outcome = {"state": FAILED, "error": f"{type(error).__name__}: {error}", "error_type": "internal"}
        progress = self.hub.progress(job.id)
        if outcome["state"] == DONE and progress is not None:
            progress |= {"phase": "done", "fraction": 1.0, "eta_s": 0.0, "frame": progress["frames"]}
        try:
            self.store.finish(job.id, progress=progress, **outcome)
        finally:
            self.hub.stop(job.id)
            self.hub.publish(job.id, outcome["state"], {"id": job.id, "state": outcome["state"]})

    def _render(self, job: JobRecord) -> dict[str, Any]:
        """``render(spec)``, or ``resume(run_dir)`` for a job resumed after an interruption (frames on disk
        are kept); a run that died before writing its spec.json starts from the queued spec."""
        from flipbook.runs.render import render, resume
        from flipbook.runs.run_dir import SPEC_FILE, RunDir
        from flipbook.spec.load import spec_from_data

        run_dir = self.runs_dir / job.id
        if job.payload.get("sweep"):
            return self._sweep(job, run_dir)
        total = int(job.payload["animation"]["max_frames"])
        resuming = job.resume and (run_dir / SPEC_FILE).is_file()
        done = RunDir(run_dir).completed(total) if resuming else 0
        events = self.hub.start(
            job.id, total, done=done, persist=lambda p: self.store.save_progress(job.id, p)
        )
        if self.farm is not None:
            render, resume = self.farm.render, self.farm.resume
        result = resume(run_dir, events) if resuming else render(spec_from_data(job.payload), events)
        outputs = {kind: _relative(path, run_dir) for kind, path in result.outputs.items()}
        return {"seed": result.seed, "resumed_from": result.resumed_from, "frames": len(result.frames),
                "outputs": outputs}  # fmt: skip

    def _sweep(self, job: JobRecord, run_dir: Path) -> dict[str, Any]:
        """A spec with a ``[sweep]``: its grid of runs (:func:`~flipbook.runs.sweep.render_sweep`, on the farm
        side by side), each a run folder inside the job's, and the contact sheet; progress counts the runs'
        frames one after another, a cancel stops every run. A resumed sweep continues each run from its
        frames on disk. Outputs: the contact sheet and each run's, under the run's label."""
        from flipbook.runs.sweep import render_sweep
        from flipbook.spec.load import spec_from_data
        from flipbook.spec.sweep import sweep_runs

        spec = spec_from_data(job.payload)
        total = int(spec.animation.max_frames) * len(sweep_runs(spec))
        events = self.hub.start(job.id, total, persist=lambda p: self.store.save_progress(job.id, p))
        if self.farm is not None:
            result = self.farm.render_sweep(spec, events, resuming=job.resume)
        else:
            result = render_sweep(spec, events, resuming=job.resume)
        outputs = {"contact_sheet": _relative(result.contact, run_dir)}
        for run, rendered in result.runs:
            outputs |= {
                f"{run.label}/{kind}": _relative(path, run_dir) for kind, path in rendered.outputs.items()
            }
        return {"seed": result.runs[0][1].seed, "resumed_from": -1, "frames": total, "outputs": outputs,
                "runs": [{"label": run.label, "values": dict(run.values)} for run, _ in result.runs]}  # fmt: skip

    def _still(self, job: JobRecord, cache: ModelCache) -> dict[str, Any]:
        if job.kind not in STILL_KINDS:
            raise FlipbookError("kind", job.kind, f"one of: {RENDER}, {', '.join(STILL_KINDS)}")
        events = self.hub.start(job.id, int(job.payload["count"]), stills=True)
        return run_still(job.payload, self.runs_dir / job.id, events, cache, self.models_dir, self.farm)


def _relative(path: Path, root: Path) -> str:
    """An output's path inside the run folder (folders end with ``/``)."""
    relative = Path(path).resolve().relative_to(root.resolve()).as_posix()
    return relative + "/" if Path(path).is_dir() else relative

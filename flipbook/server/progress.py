"""Live progress of running jobs, in memory, and its delivery to server-sent-event streams.

A render reports through its :class:`~flipbook.events.Events` object (steps, frames, previews) on a worker
thread; HTTP handlers read the latest snapshot (polling) or subscribe to a :class:`Mailbox` (SSE) that the
event loop fills. Frames and state changes are delivered one by one; steps are coalesced to the latest one,
so a slow client never makes memory grow with the number of steps. Progress also goes to SQLite at every
frame (the worker does that), so a restart shows how far a job got.

Worker processes (:mod:`flipbook.server.processes`) each have a hub of their own, made with a ``relay``: it
sends every tracked event (start, step, frame, preview, stop) and every publication to the server process,
whose hub replays them (so polling, SSE and previews read the server's hub as with threads), and a job's
``control`` callback sends cancel and skip requests the other way.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flipbook.events import Events, FrameEvent, StepEvent

Relay = Callable[[str, str, Any], None]
"""``relay(kind, job_id, payload)``: a worker process's hub hands what happens to the server process."""
Control = Callable[[str], None]
"""``control("cancel" | "skip")``: a request for a job that runs in another process."""


@dataclass
class Tracker:
    """One running job's progress: frame i/N, step i/N within the current batch, fraction, ETA, preview.

    ``units`` are frames for renders and images for stills; stills have no frame events, so a finished
    batch of steps counts its images as done (``steps_finish_units``).
    """

    total: int
    done: int = 0
    step: int = 0
    steps: int = 0
    fraction: float = 0.0
    phase: str = "preparing"
    steps_finish_units: bool = False
    started: float = field(default_factory=time.monotonic)
    start_fraction: float = 0.0
    preview: Any = None
    events: Events | None = None
    control: Control | None = None

    def on_step(self, event: StepEvent) -> None:
        self.phase = "generating"
        self.step, self.steps = event.step, event.total_steps
        share = len(event.frames) * event.step / max(event.total_steps, 1)
        if self.steps_finish_units and event.step == event.total_steps:
            self.done = min(self.total, self.done + len(event.frames))
            share = 0.0
        self.fraction = min(1.0, (self.done + share) / max(self.total, 1))

    def on_frame(self, event: FrameEvent) -> None:
        self.total = max(self.total, event.total)
        self.done = min(self.total, max(self.done, event.index + 1))
        self.fraction = self.done / max(self.total, 1)
        self.preview = event.image
        if self.done == self.total:
            self.phase = "post_processing"

    def eta_s(self) -> float | None:
        """Seconds left at the rate seen since this run started (None until there is a rate)."""
        gained = self.fraction - self.start_fraction
        if gained <= 0:
            return None
        return (time.monotonic() - self.started) * (1.0 - self.fraction) / gained

    def snapshot(self) -> dict[str, Any]:
        eta = self.eta_s()
        return {
            "phase": self.phase,
            "frame": self.done,
            "frames": self.total,
            "step": self.step,
            "steps": self.steps,
            "fraction": round(self.fraction, 4),
            "eta_s": None if eta is None else round(eta, 2),
            "elapsed_s": round(time.monotonic() - self.started, 2),
        }


class Mailbox:
    """One SSE subscriber's queue: milestones (frames, states) in order, steps coalesced to the newest.

    Filled and drained on the event loop's thread only (publishers go through ``call_soon_threadsafe``).
    """

    def __init__(self) -> None:
        self._items: deque[tuple[int, str, dict[str, Any]]] = deque()
        self._step: tuple[int, str, dict[str, Any]] | None = None
        self._ready = asyncio.Event()

    def put(self, item: tuple[int, str, dict[str, Any]]) -> None:
        if item[1] == "step":
            self._step = item
        else:
            self._items.append(item)
        self._ready.set()

    async def wait(self, timeout: float) -> bool:
        """Wait until something arrives; False on timeout (time for a keep-alive)."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        """Everything waiting, in publication order."""
        items = list(self._items)
        self._items.clear()
        if self._step is not None:
            items.append(self._step)
            items.sort(key=lambda item: item[0])
            self._step = None
        self._ready.clear()
        return [(name, data) for _, name, data in items]


class ProgressHub:
    """Trackers of running jobs, cancel handles, and the SSE subscribers of every job."""

    def __init__(self, relay: Relay | None = None) -> None:
        self._relay = relay
        self._lock = threading.Lock()
        self._trackers: dict[str, Tracker] = {}
        self._cancelled: set[str] = set()
        self._subscribers: dict[str, set[Mailbox]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = itertools.count()

    def bind(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """The event loop that owns the mailboxes (set when the server starts, cleared when it stops)."""
        self._loop = loop

    # ---- worker side -----------------------------------------------------------------------------------

    def start(
        self,
        job_id: str,
        total: int,
        *,
        done: int = 0,
        stills: bool = False,
        persist: Callable[[dict[str, Any]], None] | None = None,
        control: Control | None = None,
    ) -> Events:
        """Track a job that a worker is about to run; the returned Events feed the tracker, and ``persist``
        gets the progress after every frame (the worker writes it to SQLite). ``control`` gets the cancel
        and skip requests of a job that runs in another process. A cancel that arrived between the claim
        and now takes effect at once."""
        tracker = Tracker(total=max(total, 1), done=done, steps_finish_units=stills, control=control)
        tracker.start_fraction = tracker.fraction = done / tracker.total
        self._relayed("start", job_id, (total, done, stills))

        def on_frame(event: FrameEvent) -> None:
            self._relayed("frame", job_id, event)
            self._update(job_id, tracker.on_frame, event, "frame")
            if persist is not None:
                persist(tracker.snapshot())

        def on_step(event: StepEvent) -> None:
            self._relayed("step", job_id, event)
            self._update(job_id, tracker.on_step, event, "step")

        def on_preview(image: Any) -> None:
            self._relayed("preview", job_id, image)
            tracker.preview = image

        events = Events(on_step=on_step, on_frame=on_frame, on_preview=on_preview, preview_every=1)
        tracker.events = events
        with self._lock:
            self._trackers[job_id] = tracker
            cancelled = job_id in self._cancelled
        if cancelled:
            events.cancel()
            if control is not None:
                control("cancel")
        return events

    def _update(self, job_id: str, apply, event, name: str) -> None:
        apply(event)
        self._broadcast(job_id, name, {"id": job_id, "progress": self.progress(job_id)})

    def _relayed(self, kind: str, job_id: str, payload: Any) -> None:
        if self._relay is not None:
            self._relay(kind, job_id, payload)

    def show_preview(self, job_id: str, image: Any) -> None:
        """A preview of a job running in another process (its tracker shows it from now on)."""
        with self._lock:
            tracker = self._trackers.get(job_id)
        if tracker is not None:
            tracker.preview = image

    def stop(self, job_id: str) -> None:
        """The job's run ended: forget its tracker and any cancel request."""
        self._relayed("stop", job_id, None)
        with self._lock:
            self._trackers.pop(job_id, None)
            self._cancelled.discard(job_id)

    # ---- request side ----------------------------------------------------------------------------------

    def progress(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            tracker = self._trackers.get(job_id)
        return None if tracker is None else tracker.snapshot()

    def preview(self, job_id: str) -> Any:
        with self._lock:
            tracker = self._trackers.get(job_id)
        return None if tracker is None else tracker.preview

    def cancel(self, job_id: str) -> None:
        """Stop a running job at its next step (Events.cancel); remembered if the job is just starting."""
        with self._lock:
            self._cancelled.add(job_id)
            tracker = self._trackers.get(job_id)
        if tracker is not None:
            _request(tracker, "cancel")

    def skip(self, job_id: str) -> None:
        """A1111's skip for a running job: its current image is finished as it stands (Events.skip)."""
        with self._lock:
            tracker = self._trackers.get(job_id)
        if tracker is not None:
            _request(tracker, "skip")

    def cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancelled

    def cancel_all(self) -> list[str]:
        """Stop every running job (the server is shutting down); returns their ids."""
        with self._lock:
            trackers = dict(self._trackers)
        for tracker in trackers.values():
            _request(tracker, "cancel")
        return list(trackers)

    def running(self) -> list[str]:
        with self._lock:
            return list(self._trackers)

    # ---- publishing ------------------------------------------------------------------------------------

    def subscribe(self, job_id: str) -> Mailbox:
        """A mailbox for one SSE stream (call on the event loop's thread)."""
        mailbox = Mailbox()
        with self._lock:
            self._subscribers.setdefault(job_id, set()).add(mailbox)
        return mailbox

    def unsubscribe(self, job_id: str, mailbox: Mailbox) -> None:
        with self._lock:
            boxes = self._subscribers.get(job_id)
            if boxes is not None:
                boxes.discard(mailbox)
                if not boxes:
                    del self._subscribers[job_id]

    def publish(self, job_id: str, name: str, data: dict[str, Any]) -> None:
        """Send an event to the job's subscribers, from any thread."""
        self._relayed("publish", job_id, (name, data))
        self._broadcast(job_id, name, data)

    def _broadcast(self, job_id: str, name: str, data: dict[str, Any]) -> None:
        with self._lock:
            boxes = list(self._subscribers.get(job_id, ()))
            item = (next(self._seq), name, data)
        loop = self._loop
        if not boxes or loop is None:
            return
        for box in boxes:
            try:
                loop.call_soon_threadsafe(box.put, item)
            except RuntimeError:  # the loop has closed: the server is gone, so are the streams
                return


def _request(tracker: Tracker, what: str) -> None:
    """Cancel or skip a tracked job: its Events here, and the process that runs it when that is another."""
    if tracker.events is not None:
        getattr(tracker.events, what)()
    if tracker.control is not None:
        tracker.control(what)

"""The one object through which a render reports progress, shows previews and is cancelled.

It is passed down explicitly (render -> mode -> sampling core); nothing in a render loop reads or writes global
state. The CLI attaches a progress bar, the server a job record, tests a list.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class RenderCancelled(Exception):
    """Raised inside a render when :meth:`Events.cancel` was called; frames already written are kept."""


@dataclass(frozen=True)
class StepEvent:
    """One denoising step of one batch of frames."""

    step: int  # 1-based step within this batch
    total_steps: int
    frames: tuple[int, ...]  # frame indices in this batch (or request indices for stills)


@dataclass(frozen=True)
class FrameEvent:
    """A finished frame (index within the render, total frames, the image)."""

    index: int
    total: int
    image: Any


class Events:
    """Progress, preview and cancel for one render.

    ``on_step`` gets a :class:`StepEvent` after every denoising step; ``on_preview`` gets a cheap RGB preview
    (a PIL image) of the batch every ``preview_every`` steps (0 = never, so no time is spent on previews);
    ``on_frame`` gets each finished frame. ``cancel()`` may be called from any thread.
    """

    def __init__(
        self,
        *,
        on_step: Callable[[StepEvent], None] | None = None,
        on_frame: Callable[[FrameEvent], None] | None = None,
        on_preview: Callable[[Any], None] | None = None,
        preview_every: int = 0,
    ) -> None:
        self._on_step = on_step
        self._on_frame = on_frame
        self._on_preview = on_preview
        self.preview_every = preview_every
        self._cancelled = threading.Event()
        self._skip = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def skip(self) -> None:
        """Ask for A1111's skip: the image being sampled is finished as it stands and the next one starts
        (only a sampler that takes skips acts on it: the still-image API's)."""
        self._skip.set()

    def take_skip(self) -> bool:
        """Whether a skip was asked for since the last call (the request is used up)."""
        if not self._skip.is_set():
            return False
        self._skip.clear()
        return True

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise RenderCancelled("render cancelled")

    def wants_preview(self, step: int) -> bool:
        return self._on_preview is not None and self.preview_every > 0 and step % self.preview_every == 0

    def step(self, event: StepEvent, preview: Callable[[], Any] | None = None) -> None:
        """Report a step; build and send a preview only when one is due; stop here if cancelled."""
        if self._on_step is not None:
            self._on_step(event)
        if preview is not None and self.wants_preview(event.step):
            self._on_preview(preview())
        self.check_cancelled()

    def frame(self, event: FrameEvent) -> None:
        if self._on_frame is not None:
            self._on_frame(event)
        self.check_cancelled()

"""A worker process's lifeline to its server: a worker never outlives the server that started it.

A worker whose server died must not write another frame: a new server started on the same runs folder
marks the job ``interrupted`` and may resume it, and a stale worker still rendering would race it in the
same run folder. The server keeps the write end of a pipe per worker and never writes to it; the worker
holds the read end. The server's death (however it dies: SIGKILL included) closes the write end, which the
kernel does while the server exits, before anyone can wait for it; so

- **on Linux the kernel ends the worker at that moment**: the read end is set to deliver SIGIO to the
  worker when it becomes readable (``O_ASYNC``, ``F_SETOWN``), and SIGIO's default action terminates the
  process: the signal is sent from the server's exit itself, so no thread of the worker (a frame writer
  half-way through a frame, say) runs another instruction in user space. ``PR_SET_PDEATHSIG`` would not
  do: a worker's parent is multiprocessing's fork server, which outlives the server for a moment.
- **everywhere**, :meth:`Lifeline.check` (a poll that does not wait) ends the worker when the server is
  gone; the worker calls it at every step and frame it reports (the progress relay), and its main thread
  waits for the server's messages and exits when their pipe closes.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import signal
from dataclasses import dataclass

ORPHANED_EXIT = 1
"""The exit code of a worker that found its server gone."""


@dataclass(frozen=True)
class Lifeline:
    """The read end of the pipe the server holds open for as long as it lives (a one-way multiprocessing
    pipe: handed to the worker process as it starts, the file descriptor with it)."""

    reader: multiprocessing.connection.Connection

    @property
    def read_fd(self) -> int:
        return self.reader.fileno()

    def gone(self) -> bool:
        """Whether the server is gone (its end closed: the pipe reads as at its end), without waiting."""
        try:
            return self.reader.poll(0)  # nothing is ever written: readable means the other end closed
        except (OSError, EOFError):
            return True

    def check(self) -> None:
        """End this process at once when the server is gone (no clean-up: nothing more may be written)."""
        if self.gone():
            os._exit(ORPHANED_EXIT)

    def bind(self) -> bool:
        """Have the kernel end this process the moment the server's end closes (Linux: SIGIO from the pipe,
        default action: terminate); False where the platform cannot (then :meth:`check` alone stops it).
        Call from the main thread (it resets SIGIO to its default action)."""
        if not hasattr(signal, "SIGIO") or not hasattr(os, "O_ASYNC"):
            return False
        import fcntl  # POSIX only

        try:
            signal.signal(signal.SIGIO, signal.SIG_DFL)
            fcntl.fcntl(self.read_fd, fcntl.F_SETOWN, os.getpid())
            flags = fcntl.fcntl(self.read_fd, fcntl.F_GETFL)
            fcntl.fcntl(self.read_fd, fcntl.F_SETFL, flags | os.O_ASYNC | os.O_NONBLOCK)
        except (OSError, ValueError):
            return False
        self.check()  # the server may have died before the signal was armed
        return True

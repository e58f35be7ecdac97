"""Timing for the bench cases: time spent inside neural-network modules, measured with forward hooks
(synchronising CUDA); a wall clock that waits for the device; one case's runs against a reference taking turns;
the machine a result was measured on."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch


class ModuleTimer:
    """Accumulates wall time spent in the forward passes of named top-level modules."""

    def __init__(self, modules: dict[str, torch.nn.Module], device: torch.device) -> None:
        self.modules = modules
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._start: dict[str, float] = {}

    def _sync(self) -> None:
        sync(self.device)

    def _pre(self, name: str):
        def hook(module, args, kwargs=None):
            self._sync()
            self._start[name] = time.perf_counter()

        return hook

    def _post(self, name: str):
        def hook(module, args, output):
            self._sync()
            self.seconds[name] += time.perf_counter() - self._start.pop(name)
            self.calls[name] += 1

        return hook

    @contextmanager
    def attached(self):
        handles = []
        for name, module in self.modules.items():
            handles.append(module.register_forward_pre_hook(self._pre(name)))
            handles.append(module.register_forward_hook(self._post(name)))
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so a clock reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine(device: torch.device) -> str:
    """The GPU's name, or the CPU, its core count and torch's version."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def clock(fn, device: torch.device) -> float:
    """Seconds ``fn()`` takes on ``device``, its queued work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def timed_against(ours, theirs, runs: int, timer: ModuleTimer, device: torch.device):
    """Wall times of both after one warm-up each (taking turns), the median seconds inside each net for
    ours, and the peak GPU memory over the timed runs of both (None off CUDA)."""
    ours()
    theirs()
    times: dict[str, list[float]] = {"flipbook": [], "diffusers": []}
    in_nets: dict[str, list[float]] = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(runs):
        timer.reset()
        with timer.attached():
            times["flipbook"].append(clock(ours, device))
        for name, seconds in timer.seconds.items():
            in_nets.setdefault(name, []).append(seconds)
        times["diffusers"].append(clock(theirs, device))
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return times, {name: statistics.median(s) for name, s in in_nets.items()}, peak


@dataclass(frozen=True)
class TimedRuns:
    """``runs`` timed calls of one function after a warm-up: the median seconds, each run's, the warm-up's
    (a compiled net compiles in it), the last output, and the peak GPU memory over the timed runs (None off
    CUDA)."""

    seconds: float
    times: list[float]
    warmup: float
    output: Any
    peak_gib: float | None


def timed_runs(fn, runs: int, device: torch.device) -> TimedRuns:
    """Time ``fn()`` (see :class:`TimedRuns`)."""
    outputs = []
    warmup = clock(lambda: outputs.append(fn()), device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = [clock(lambda: outputs.append(fn()), device) for _ in range(runs)]
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return TimedRuns(statistics.median(times), times, warmup, outputs[-1], peak)

"""Time spent inside neural-network modules, measured with forward hooks (synchronising CUDA)."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

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
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

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

"""Benchmark ``farm``: the render farm on a local Ray instance against ``render()`` in this process.

A split ``interpolate`` job (tiny model unless ``--model``; frames independent, split at multiples of the
batch size) rendered three ways, each after a warm-up job that loads the model:

- in process: ``render()``, torch on one thread;
- on 1 actor and on 2 actors (one thread each): ``Farm.render()``, frames streamed back and written here.

In-process and 1-actor runs alternate. Reported: frames/s of each, the speed-up of 2 actors over 1 (target >= 1.7x on a 2-core machine) and the
scheduling overhead per frame of the farm with 1 actor against in-process (target <= 5 %). Both farm runs
include what the farm adds: the job's tasks, the frames' transfer, writing them, and the outputs made on the
head. Each number is the best of ``runs``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from flipbook.bench.report import write_report
from flipbook.errors import FlipbookError


def run(
    *,
    out: Path,
    runs: int = 2,
    frames: int = 24,
    width: int = 64,
    height: int = 64,
    model: str = "tiny",
    steps: int = 4,
    **ignored: Any,
) -> str:
    """Time the three ways ``runs`` times; write ``farm.json``/``farm.md``."""
    import torch

    from flipbook.farm.farm import Farm, FarmSettings
    from flipbook.runs.render import render

    if runs < 1:
        raise FlipbookError("runs", runs, "at least 1")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="flipbook-bench-farm-") as folder:
        job = _Jobs(Path(folder), frames, width, height, model, steps)
        render(job.spec())  # warm-up: imports, model load
        times: dict[str, list[float]] = {"in_process": [], "1_actor": [], "2_actors": []}
        with Farm(FarmSettings(cpu_actors=1)) as farm:
            farm.render(job.spec(frames=2))  # warm-up: the actor loads the model
            for _ in range(runs):  # alternating, so drift in the machine's speed hits both alike
                times["in_process"].append(_timed(lambda: render(job.spec())))
                times["1_actor"].append(_timed(lambda farm=farm: farm.render(job.spec())))
        with Farm(FarmSettings(cpu_actors=2)) as farm:
            farm.render(job.spec(frames=4))  # warm-up: both actors load the model
            times["2_actors"] = [_timed(lambda farm=farm: farm.render(job.spec())) for _ in range(runs)]
    in_process, on_farm = min(times["in_process"]), {1: min(times["1_actor"]), 2: min(times["2_actors"])}
    result = {
        "case": "farm",
        "mode": job.mode.name,
        "frames": frames,
        "size": f"{width}x{height}",
        "model": model,
        "steps": steps,
        "runs": runs,
        "seconds": {"in_process": in_process, "1_actor": on_farm[1], "2_actors": on_farm[2]},
        "all_seconds": times,
        "frames_per_s": {
            "in_process": frames / in_process,
            "1_actor": frames / on_farm[1],
            "2_actors": frames / on_farm[2],
        },
        "speedup_2_over_1": on_farm[1] / on_farm[2],
        "overhead_per_frame_ms": (on_farm[1] - in_process) / frames * 1000,
        "overhead_share": on_farm[1] / in_process - 1,
    }
    return write_report(result, Path(out), "farm", _table(result))


class _Jobs:
    """Specs of the benchmark's job, each into a new run folder."""

    def __init__(self, folder: Path, frames: int, width: int, height: int, model: str, steps: int) -> None:
        self.folder, self.frames, self.size = folder, frames, (width, height)
        self.model, self.steps = model, steps
        self.mode = _split_mode()
        self.count = 0

    def spec(self, frames: int | None = None):
        from flipbook.spec.load import spec_from_data

        self.count += 1
        n = frames or self.frames
        return spec_from_data({
            "model": {"name": self.model, "device": "cpu"},
            "sampling": {"steps": self.steps, "seed": 5, "sampler": "Euler"},
            "animation": {"mode": self.mode.name, "max_frames": n, "width": self.size[0], "height": self.size[1]},
            self.mode.section: {"batch_size": 1},
            "prompts": {"0": "a forest", str(n - 1): "a city"},
            "output": {"dir": str(self.folder), "name": f"run{self.count}", "formats": ["png"]},
        })  # fmt: skip


def _split_mode():
    """The first registered mode whose jobs split across actors (the latent walk, ``interpolate``)."""
    from flipbook.modes import REGISTERED

    return next(mode for mode in REGISTERED if hasattr(mode.renderer(), "split"))


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _table(r: dict) -> str:
    fps, s = r["frames_per_s"], r["seconds"]
    return "\n".join([
        f"farm benchmark: split {r['mode']} job, {r['frames']} frames {r['size']}, {r['model']}, {r['steps']} "
        f"steps, one thread per actor, best of {r['runs']}",
        "",
        "| way | seconds | frames/s |",
        "|---|---|---|",
        f"| in process (render()) | {s['in_process']:.2f} | {fps['in_process']:.2f} |",
        f"| farm, 1 actor | {s['1_actor']:.2f} | {fps['1_actor']:.2f} |",
        f"| farm, 2 actors | {s['2_actors']:.2f} | {fps['2_actors']:.2f} |",
        "",
        f"speed-up 2 actors / 1 actor: {r['speedup_2_over_1']:.2f}x (target >= 1.7x); farm overhead per frame: "
        f"{r['overhead_per_frame_ms']:.1f} ms ({100 * r['overhead_share']:.1f} %, target <= 5 %)",
    ])  # fmt: skip

"""Benchmark ``gpu``: every case that needs a GPU to say something, in one command, on one card, in at most
:data:`TOTAL_BUDGET_S` seconds (8 minutes on one H100), with one JSON and one markdown report.

The plan (:func:`plan`, pure) is: the sampling core against diffusers (``sampler``) for SD 1.5 and SDXL in fp16
and bf16; ``compile`` (eager against ``torch.compile``, fp16 and bf16); ``cache`` (DeepCache, the transformer
caches); ``camera-2d`` at 512x512, 25 steps; and every registered mode's own case (from the mode registry, at
the size the mode defaults to, 25 steps), all with the full-size random-weight models (``random-sd15``: the
real architectures, so the timings are real ones). Each case runs in its own process with its budget as a
time limit, so one slow case can't take the others' time; its peak GPU memory is measured there. A case that
fails or runs out of time is reported as such and the suite goes on.

On a machine without CUDA the command refuses (one line naming ``--device``); ``--dry-run`` prints the plan
instead, anywhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flipbook.bench.report import write_report
from flipbook.errors import FlipbookError

TOTAL_BUDGET_S = 480
MODEL = "random-sd15"
STEPS = 25
FRAMES = 16


@dataclass(frozen=True)
class Job:
    """One case of the suite: the ``flipbook bench`` case, its options, and its time limit in seconds."""

    case: str
    budget_s: int
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        shown = {
            k: v for k, v in self.options.items() if k in ("model", "width", "height", "dtype", "frames")
        }
        return self.case + " " + " ".join(f"{k}={v}" for k, v in shown.items())

    def command_line(self) -> str:
        """The ``flipbook bench`` command that runs this job alone."""
        o = dict(self.options)
        parts = ["flipbook bench", self.case]
        if "width" in o:
            parts.append(f"--size {o.pop('width')}x{o.pop('height')}")
        parts += [f"--{k.replace('_', '-')} {v}" for k, v in o.items() if k != "out"]
        return " ".join(parts)


def _common(dtype: str, **options: Any) -> dict[str, Any]:
    return {"model": MODEL, "width": 512, "height": 512, "steps": STEPS, "runs": 2, "sampler": "Euler",
            "device": "cuda", "dtype": dtype} | options  # fmt: skip


def plan() -> list[Job]:
    """The suite's jobs in the order they run; their budgets add up to at most :data:`TOTAL_BUDGET_S`."""
    jobs = [
        Job("sampler", 20, _common("fp16")),
        Job("sampler", 20, _common("bf16")),
        Job("sampler", 30, _common("fp16", model="random-sdxl", width=1024, height=1024, runs=1)),
        Job("compile", 60, _common("fp16")),
        Job("compile", 60, _common("bf16")),
        Job("camera-2d", 40, _common("fp16", frames=FRAMES, runs=1)),
        Job("cache", 60, _common("fp16", steps=STEPS, runs=1, frames=9)),
    ]
    jobs += [
        Job(case, 35, _common("fp16", width=w, height=h, frames=FRAMES, runs=1)) for case, (w, h) in _modes()
    ]
    return jobs


def _modes() -> list[tuple[str, tuple[int, int]]]:
    """Each registered mode with its own bench case, and the frame size the mode defaults to (512x512 where
    the mode needs inputs to say)."""
    from flipbook.modes import REGISTERED

    return [(mode.name, _mode_size(mode.name)) for mode in REGISTERED if mode.bench is not None]


def _mode_size(mode: str) -> tuple[int, int]:
    from flipbook.spec.load import spec_from_data

    try:
        spec = spec_from_data({"animation": {"mode": mode}, "prompts": {"0": "a"}})
    except FlipbookError:
        return (512, 512)
    a = spec.animation
    return (a.width, a.height) if a.width >= 512 else (512, 512)


def run(*, out: Path, dry_run: bool = False, **_: object) -> str:
    """Run the suite (or, with ``dry_run``, list it); write ``gpu.json`` and ``gpu.md`` under ``out``."""
    jobs = plan()
    if dry_run:
        return _plan_markdown(jobs)
    import torch

    if not torch.cuda.is_available():
        raise FlipbookError(
            "--device", "cpu", "a CUDA GPU: bench gpu times the GPU cases (--dry-run lists them on any machine)",
            detail="no CUDA device here",
        )  # fmt: skip
    results = [_run_job(job, out / "gpu" / f"{i:02d}-{job.case}") for i, job in enumerate(jobs)]
    report = {"case": "gpu", "device": torch.cuda.get_device_name(0), "jobs": results}
    return write_report(report, out, "gpu", _markdown(report))


def _run_job(job: Job, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    request = json.dumps({"case": job.case, "options": job.options, "out": str(folder)})
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "flipbook.bench.gpu", request], capture_output=True,
                              text=True, timeout=job.budget_s, check=False)  # fmt: skip
        status = "ok" if done.returncode == 0 else f"failed: {_last_line(done.stderr)}"
    except subprocess.TimeoutExpired:
        status = f"over its {job.budget_s} s budget"
    seconds = time.perf_counter() - start
    measured = folder / "child.json"
    child = json.loads(measured.read_text(encoding="utf-8")) if measured.exists() else {}
    return asdict(job) | {"status": status, "seconds": seconds, **child}


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no message"


def _child(request: str) -> None:
    """Run one case in this process and note its peak GPU memory (``python -m flipbook.bench.gpu JSON``)."""
    import torch

    from flipbook.bench import run_case

    data = json.loads(request)
    out = Path(data["out"])
    torch.cuda.reset_peak_memory_stats()
    table = run_case(data["case"], out=out, **data["options"])
    peak = torch.cuda.max_memory_allocated() / 2**30
    (out / "child.json").write_text(
        json.dumps({"peak_gpu_memory_gib": peak, "table": table}), encoding="utf-8"
    )


def _plan_markdown(jobs: list[Job]) -> str:
    total = sum(job.budget_s for job in jobs)
    rows = [f"| {job.case} | {job.label} | {job.budget_s} | `{job.command_line()}` |" for job in jobs]
    return "\n".join(
        [f"bench gpu would run {len(jobs)} cases, at most {total} s in all (dry run: nothing was run)", "",
         "| case | settings | budget s | command |", "|---|---|---|---|", *rows]
    )  # fmt: skip


def _markdown(report: dict) -> str:
    lines = [f"GPU suite on {report['device']}", "", "| case | settings | status | s | peak GPU GiB |",
             "|---|---|---|---|---|"]  # fmt: skip
    for job in report["jobs"]:
        peak = job.get("peak_gpu_memory_gib")
        label = Job(job["case"], job["budget_s"], job["options"]).label
        shown = f"{peak:.2f}" if peak is not None else "-"
        lines.append(f"| {job['case']} | {label} | {job['status']} | {job['seconds']:.1f} | {shown} |")
    tables = [f"\n### {job['case']}\n\n{job['table']}" for job in report["jobs"] if job.get("table")]
    return "\n".join(lines + tables)


if __name__ == "__main__":
    _child(sys.argv[1])

"""``render_sweep(spec)``: a spec's ``[sweep]`` grid (:mod:`flipbook.spec.sweep`) rendered, each run a normal run
folder ``output.dir/output.name/<label>``, then a contact sheet of the runs labelled with their values
(``output.dir/output.name/sweep_contact.png``: each run's last frame, one row per value of the first swept
fields, one column per value of the last).

Every run is checked as its render would check it (plan, input files, prompts' LoRAs) before any model
loads. Runs render one after another with :func:`~flipbook.runs.render.render`, or side by side on the render
farm (``Farm.render_sweep``: ``render_run`` is the farm's and ``parallel`` its actor count). Progress goes to
the one ``Events``: the runs' frames numbered one after another (run k's frame i is ``k * frames + i``), every
step passed on; its cancel stops every run.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from flipbook.errors import FlipbookError, SpecError
from flipbook.events import Events, FrameEvent, StepEvent
from flipbook.runs.render import RenderResult, render, resume
from flipbook.runs.run_dir import SPEC_FILE
from flipbook.runs.setup import prepare, resolve_prompts
from flipbook.spec.model import Spec
from flipbook.spec.plan import Plan
from flipbook.spec.sweep import SweepRun, describe, sweep_runs

CONTACT_FILE = "sweep_contact.png"


@dataclass
class SweepResult:
    folder: Path
    runs: list[tuple[SweepRun, RenderResult]]
    contact: Path


def render_sweep(
    spec: Spec,
    events: Events | None = None,
    *,
    overwrite: bool = False,
    render_run: Callable[..., RenderResult] = render,
    parallel: int = 1,
    resuming: bool = False,
    resume_run: Callable[..., RenderResult] = resume,
) -> SweepResult:
    """Render every run of ``spec``'s sweep (see the module docstring). ``resuming`` (a sweep interrupted,
    then resumed): a run whose folder holds its spec continues from its frames on disk (``resume_run``; a
    finished run only makes its outputs again), the others render."""
    events = events or Events()
    runs = check_runs(spec)
    frames = spec.animation.max_frames
    total = frames * len(runs)
    folder = sweep_folder(spec)

    def one(number: int) -> RenderResult:
        run_events = _RunEvents(events, number * frames, total)
        run_dir = folder / runs[number].label
        if resuming and (run_dir / SPEC_FILE).is_file():
            return resume_run(run_dir, run_events)
        return render_run(runs[number].spec, run_events, overwrite=overwrite)

    if parallel > 1 and len(runs) > 1:
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="flipbook-sweep") as pool:
            futures = [pool.submit(one, number) for number in range(len(runs))]
            try:
                results = [future.result() for future in futures]
            except BaseException:
                events.cancel()  # one run failed or was cancelled: the others stop too
                raise
    else:
        results = [one(number) for number in range(len(runs))]
    contact = write_sweep_sheet(spec, runs, results, folder / CONTACT_FILE)
    return SweepResult(folder, list(zip(runs, results, strict=True)), contact)


def sweep_folder(spec: Spec) -> Path:
    """The folder that holds a sweep's runs and its contact sheet (``output.dir/output.name``)."""
    return Path(spec.output.dir) / (spec.output.name or "flipbook")


def check_runs(spec: Spec) -> list[SweepRun]:
    """The sweep's runs, each checked as its render checks it (:func:`check_run`), before any model loads."""
    runs = sweep_runs(spec)
    for run in runs:
        check_run(run)
    return runs


def check_run(run: SweepRun) -> Plan:
    """What the run's render checks before loading a model (plan: schedules at every frame, input files,
    prompts' LoRAs), and its plan; a problem with a swept field is one error naming ``sweep.<path>`` and the
    run's value."""
    try:
        checked, plan, _ = prepare(run.spec)
        resolve_prompts(checked, plan)
        return plan
    except FlipbookError as error:
        swept = dict(run.values)
        if error.field not in swept:
            raise
        raise SpecError(
            f"sweep.{error.field}", swept[error.field], f"a value {error.field} takes: {error.allowed}",
            detail=error.detail,
        ) from None  # fmt: skip


def write_sweep_sheet(spec: Spec, runs: list[SweepRun], results: list[RenderResult], path: Path) -> Path:
    """The contact sheet of the grid: each run's last frame, labelled with the run's values; as many columns
    as the last swept field has values (a near-square grid for a single field)."""
    from flipbook.io.contact_sheet import write_contact_sheet
    from flipbook.io.images import open_image

    pictures = [open_image(result.frames[-1], "sweep").convert("RGB") for result in results]
    last = list(spec.sweep.values())[-1]
    columns = len(last) if len(spec.sweep) > 1 else None
    return write_contact_sheet(
        pictures,
        path,
        columns=columns,
        thumb_width=max(128, min(256, spec.animation.width)),
        labels=[describe(run.values) for run in runs],
        spec=spec.model_dump(mode="json", exclude_unset=True),
    )


class _RunEvents(Events):
    """One run's Events: its steps and frames passed on to the sweep's (frames numbered across the runs), and
    cancelled when the sweep's is."""

    def __init__(self, parent: Events, offset: int, total: int) -> None:
        super().__init__(on_step=self._step, on_frame=self._frame)
        self.parent, self.offset, self.total = parent, offset, total

    def _step(self, event: StepEvent) -> None:
        self.parent.step(event)

    def _frame(self, event: FrameEvent) -> None:
        self.parent.frame(FrameEvent(self.offset + event.index, self.total, event.image))

    @property
    def cancelled(self) -> bool:
        return super().cancelled or self.parent.cancelled

    def check_cancelled(self) -> None:
        self.parent.check_cancelled()
        super().check_cancelled()


def sweep_summary(result: SweepResult) -> list[str]:
    """What the CLI prints: each run's folder and values, then the contact sheet."""
    lines = [f"{run.label}: {describe(run.values)} -> {rendered.run_dir}" for run, rendered in result.runs]
    return [*lines, f"contact sheet: {result.contact}"]


__all__ = [
    "CONTACT_FILE",
    "SweepResult",
    "check_runs",
    "render_sweep",
    "sweep_folder",
    "sweep_summary",
    "write_sweep_sheet",
]

"""What every render sets up before its mode makes a frame, in one place: :func:`~flipbook.runs.render.render`
(and ``resume``) and a render-farm actor (:mod:`flipbook.farm.worker`) call these same functions, so the two
cannot drift apart.

- :func:`prepare`: the spec resolved and checked (seed, the mode's own values, plan, every input file), before
  any model loads; the server runs it before queueing a job.
- :func:`resolve_prompts`: every prompt of the plan with its ``<lora:...>`` tags found (a missing LoRA fails
  here, before the run folder is touched).
- :func:`open_run`: the run folder started (or, resuming, reopened) and the frame to continue after.
- :func:`mode_context`: the :class:`~flipbook.modes.frame.ModeContext` a mode renders with (its models loaded
  on first use by :class:`~flipbook.runs.cores.Cores`, through ``loader`` when one is given: a farm actor's
  cache).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flipbook.control import check_controlnet
from flipbook.errors import SpecError
from flipbook.events import Events
from flipbook.models.extra_networks import ExtraNetworks
from flipbook.models.folders import ModelsDir
from flipbook.models.performance import Performance
from flipbook.modes import Mode, get_mode
from flipbook.modes.frame import ModeContext, ResolvedPrompts, animation_mask, init_image
from flipbook.runs.cores import Cores
from flipbook.runs.finish import check_output_size, check_post_inputs
from flipbook.runs.run_dir import RunDir, resume_point
from flipbook.spec.model import Spec
from flipbook.spec.plan import Plan, build_plan


def prepare(spec: Spec) -> tuple[Spec, Plan, Mode]:
    """Everything a render resolves and checks before any model loads, in the render's order: the seed, what
    the mode fills in from its inputs (``resolve_spec``: a source video's frame rate), the plan, every input
    file all modes read and the mode's own (videos decoded, ...). The server runs this before queueing a job,
    so a file the render would refuse (a truncated MP4) is refused at submission. A spec with a ``[sweep]``
    is a grid of renders, not one: refused here (:func:`flipbook.runs.sweep.render_sweep` renders it)."""
    if spec.sweep:
        raise SpecError(
            "sweep", ", ".join(spec.sweep), "no sweep in a single render: `flipbook render SPEC` renders a "
            "sweep's grid of runs (flipbook.runs.sweep.render_sweep from Python)",
        )  # fmt: skip
    spec = spec.with_seed()
    mode = get_mode(spec.animation.mode)
    spec = mode.resolve_spec(spec)
    plan = build_plan(spec)
    check_inputs(spec, plan)
    mode.check_inputs(spec)
    return spec, plan, mode


def check_inputs(spec: Spec, plan: Plan) -> None:
    """Open the input files every mode reads (init image, mask, ControlNet images) now: a missing file fails
    before any model is loaded, with the field that names it (a mode checks its own in ``check_inputs``)."""
    if spec.init.image is not None:
        init_image(spec)
    animation_mask(spec)
    check_controlnet(spec, plan.variables)
    check_post_inputs(spec)
    check_output_size(spec)


def resolve_prompts(spec: Spec, plan: Plan) -> tuple[ExtraNetworks, ResolvedPrompts]:
    """The extra networks (``model.loras``, the models folder) and every prompt text of the plan with its
    ``<lora:...>`` tags resolved to files."""
    folders = ModelsDir(spec.model.models_dir) if spec.model.models_dir else None
    networks = ExtraNetworks(folders, [(lora.name, lora.weight) for lora in spec.model.loras])
    texts = {
        t for f in plan.frames for t in (f.prompt, f.negative_prompt, f.next_prompt, f.next_negative_prompt)
    }
    return networks, {text: networks.resolve(text) for text in sorted(texts)}


def open_run(
    spec: Spec, plan: Plan, mode: Mode, run: RunDir | None = None, *, overwrite: bool = False
) -> tuple[RunDir, int]:
    """The run folder and the frame to continue after: a new run (``run`` None) in ``output.dir/output.name``,
    started (refused if it holds a run, unless ``overwrite``), -1; an existing ``run`` reopened, at the last
    frame on disk its mode can continue from (:func:`~flipbook.runs.run_dir.resume_point`)."""
    if run is None:
        run = RunDir(Path(spec.output.dir) / (spec.output.name or "flipbook"))
        run.start(spec, plan, overwrite=overwrite)
        return run, -1
    start = resume_point(run.completed(len(plan)), mode.resume_every(spec))
    run.reopen(spec, plan)
    return run, start


def mode_context(
    spec: Spec,
    plan: Plan,
    events: Events,
    run: RunDir,
    start: int,
    *,
    networks: ExtraNetworks | None = None,
    prompts: ResolvedPrompts | None = None,
    loader: Callable[..., Any] | None = None,
) -> ModeContext:
    """What the mode renders with: the prompts (resolved here unless given), the sampling cores (models
    loaded on first use, through ``loader`` when given), the run folder and the frame to continue after."""
    if networks is None or prompts is None:
        networks, prompts = resolve_prompts(spec, plan)
    cores = Cores(
        spec.model,
        events,
        networks,
        [clean for clean, _ in prompts.values()],
        Performance.of(spec.performance),
        loader=loader,
    )
    return ModeContext(spec, plan, cores, events, prompts, run, start)

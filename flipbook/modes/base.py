"""What a mode declares about itself: :class:`Mode`, the one descriptor every mode package exports.

A mode is a package ``flipbook/modes/<name>/``: ``settings.py`` holds its spec section (a pure pydantic model),
``rules.py`` the checks and descriptions that need only the spec and its plan, ``render.py`` the rendering
(torch), and ``__init__.py`` the descriptor, which says everything the rest of flipbook asks of a mode. The
spec (``flipbook/spec/model.py``) is assembled from the core sections plus the registered modes' sections, the
plan resolves and range-checks the schedules a mode says it reads, and ``validate``'s summary, the server,
the web UI, ``flipbook bench`` and the Deforum import read the descriptor: nothing outside ``flipbook/modes/``
branches on a mode's name (``tests/test_mode_names.py`` counts). Importing a descriptor never imports torch:
the render module is imported when a render needs it.

The render module (``render_module``) has ``render(ctx: ModeContext) -> Iterator[Frame]`` (see
``modes/frame.py``), ``resume_every(spec)`` (a resumed render restarts at a multiple of this) and
``check_inputs(spec)`` (opens the mode's own input files before any model loads), and optionally
``split(spec, plan) -> Split | None`` (where the render farm may split a job into tasks that run apart: see
:class:`Split`) with, for a split into stored parts, ``make_parts(ctx, units)``,
``resolve_spec(spec) -> Spec`` (fill in values that come from the mode's inputs, such as a source video's frame
rate, before the plan is built and recorded), ``soundtrack(spec, run_dir) -> (path, offset) | None`` (audio
to mux when ``audio.file`` is not set: a source video's, or audio the mode made and keeps in the run folder)
and ``source_frames(spec)`` (frames the output is compared with in the run's temporal-consistency score).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from flipbook.spec.fields import schedule_fields

if TYPE_CHECKING:
    import numpy as np

    from flipbook.modes.frame import Frame, ModeContext
    from flipbook.motion.camera import Camera
    from flipbook.spec.model import Spec
    from flipbook.spec.plan import AudioFeatures, FramePlan, Plan


@dataclass(frozen=True)
class FormField:
    """A web UI hint for one field of a mode's tab: ``key`` names it among the form's values, ``path`` is the
    spec field it sets (``camera.zoom``, or outside the mode's section ``init.image``), ``label`` replaces the
    schema's title, ``live`` re-plots the schedules as it changes (schedule fields always do). The tab is
    generated from the mode's settings schema whatever the hints say: hinted fields come first, in the hints'
    order, and the section's other fields follow; the widget and its default are the field's schema's
    (:func:`flipbook.server.widgets.widget_for`)."""

    key: str
    path: str
    label: str | None = None
    live: bool = False


@dataclass(frozen=True)
class Split:
    """Where a job's work divides into tasks that run apart (on the render farm's actors) and still give the
    frames of one uninterrupted render: tasks start at frame 0 and at ``offset + k * every`` (a batch, a
    stream or a segment is never cut).

    Without ``parts`` a task renders a run of frames, continuing after the frame before it (``ctx.start``) as a
    resume does. With ``parts`` the tasks make the mode's stored parts (``make_parts(ctx, units)``: variations
    kept in the run folder, one unit per frame index), and one last task then renders every frame from them (a
    frame needs all of them: variations are ordered once all exist)."""

    every: int
    offset: int = 0
    parts: bool = False

    def starts(self, total: int) -> list[int]:
        """The frames (or units) among ``0..total-1`` where a task may start."""
        return [0, *(s for s in range(self.offset, total, self.every) if s > 0)]

    def restart(self, index: int) -> int:
        """The last place a task may start at or before ``index`` (where a dead actor's run is taken up)."""
        if index < max(self.offset, 1):
            return 0
        return max(0, index - (index - self.offset) % self.every)


@dataclass(frozen=True)
class Mode:
    """Everything flipbook asks of an animation mode. Only ``name``, ``description`` and ``render_module`` are
    required; every hook left None means "nothing special" (see each field)."""

    name: str
    """The value of ``animation.mode``."""
    description: str
    """One paragraph: what each frame is (the web UI's tab, the schema's description of the mode)."""
    render_module: str
    """The module with ``render``, ``resume_every``, ``check_inputs`` and the optional render hooks."""
    section: str | None = None
    """The spec key of the mode's settings (``camera`` for ``[camera]``); None when it has none. Two modes may
    share one (``2d`` and ``3d`` both read ``[camera]``); the spec has the section once."""
    settings: type[BaseModel] | None = None
    """The section's model (``flipbook.spec.fields.Section``): pure pydantic, no torch."""
    inputs: tuple[str, ...] = ()
    """Spec fields that only some modes read (``init.video``, ``camera.hybrid_video``) and this one does: a
    spec that sets one in a mode that doesn't read it is refused, naming the modes that do."""
    prompt_interpolation: Literal["hold", "lerp", "slerp"] = "hold"
    """``animation.prompt_interpolation`` when the spec leaves it unset."""
    deforum_modes: tuple[str, ...] = ()
    """Deforum's ``animation_mode`` values this mode imports (``"Video Input"``), matched case-insensitively."""
    defaults: Callable[[Spec], Mapping[str, Any]] | None = None
    """``animation`` values the mode's users expect where the spec leaves them unset (AnimateDiff: 8 fps)."""
    check_spec: Callable[[Spec], None] | None = None
    """Cross-field rules on the validated spec, raising SpecError naming the field."""
    schedules: Callable[[Spec], Mapping[str, Collection[str]]] | None = None
    """The section schedules the mode reads, by section (``{"camera": {"zoom", ...}}``): the plan range-checks
    those. None: every schedule of its own section."""
    columns: Callable[[Spec], Mapping[str, Sequence[float]]] | None = None
    """Per-frame values the mode derives from the spec and its inputs (restyle's keyframes, chosen from the
    source video), by path (``restyle.keyframe``): planned beside the schedules (``FramePlan.schedules``,
    frames.csv, ``flipbook plan``'s chart), so the render reads them from the plan."""
    check_plan: Callable[[Spec, Sequence[FramePlan]], None] | None = None
    """Rules that need the spec and its plan (one sampler for the whole clip, ...): ``validate``, the server and
    the render all refuse what this refuses, before any model loads."""
    prompt_loop: Callable[[Spec], bool] | None = None
    """Whether prompts travel from the last keyframe back to the first (a closed loop)."""
    walk: Callable[[Spec, Sequence[int], AudioFeatures], np.ndarray] | None = None
    """The blend weight toward the next keyframe at every frame, when the mode sets it itself (the latent walk:
    eased, and the prompts always blend). None: the plan's linear weights, with ``prompt_interpolation``."""
    audio_energy: Callable[[Spec], bool] | None = None
    """Whether the plan needs ``audio.file``'s percussive energy (an HPSS: only computed when asked)."""
    frame_count: Callable[[Spec], str | None] | None = None
    """The summary's frame count and timing when the mode fills them in at render (None: the spec's)."""
    describe: Callable[[Spec, Plan], Sequence[str]] | None = None
    """The summary's lines for the mode: how its frames are made, with the values in force."""
    camera_path: Callable[[Spec, Plan, tuple[int, int]], Camera] | None = None
    """The camera over the plan at a (width, height), with no model loaded: ``flipbook plan``'s and the web
    UI's motion preview. None: the mode has no camera to preview."""
    form: tuple[FormField, ...] = ()
    """Optional hints for the mode's web UI tab (which fields come first, in what order, with what label):
    the tab shows every field of ``settings`` and the ``inputs`` anyway, from their schema."""
    bench: str | None = None
    """A module with ``run(**options) -> str``: the mode's ``flipbook bench`` case, under the mode's name."""

    # ---- the spec side (no torch) ------------------------------------------------------------------------

    def read_schedules(self, spec: Spec) -> Mapping[str, frozenset[str]]:
        """The schedules the mode reads, by section (see ``schedules``)."""
        if self.schedules is not None:
            return MappingProxyType({name: frozenset(names) for name, names in self.schedules(spec).items()})
        if self.section is None or self.settings is None:
            return MappingProxyType({})
        return MappingProxyType({self.section: frozenset(schedule_fields(self.settings))})

    # ---- the render side (the render module, imported when first needed) ---------------------------------

    def renderer(self) -> ModuleType:
        """The render module (imported when a render first needs it: it imports torch)."""
        return importlib.import_module(self.render_module)

    def render(self, ctx: ModeContext) -> Iterator[Frame]:
        return self.renderer().render(ctx)

    def resume_every(self, spec: Spec) -> int:
        return self.renderer().resume_every(spec)

    def check_inputs(self, spec: Spec) -> None:
        self.renderer().check_inputs(spec)

    def split(self, spec: Spec, plan: Plan) -> Split | None:
        """Where a job may be split across workers (the render farm, see :class:`Split`); None (the render
        module has no ``split``, or it says None for this spec) when frames depend on the ones before."""
        hook = getattr(self.renderer(), "split", None)
        return None if hook is None else hook(spec, plan)

    def make_parts(self, ctx: ModeContext, units: range) -> None:
        """Make and store the parts ``units`` of a job split into parts (``Split.parts``)."""
        self.renderer().make_parts(ctx, units)

    def resolve_spec(self, spec: Spec) -> Spec:
        hook = getattr(self.renderer(), "resolve_spec", None)
        return spec if hook is None else hook(spec)

    def soundtrack(self, spec: Spec, run_dir: Path) -> tuple[Path, float] | None:
        hook = getattr(self.renderer(), "soundtrack", None)
        return None if hook is None else hook(spec, run_dir)

    def source_frames(self, spec: Spec) -> list[np.ndarray] | None:
        hook = getattr(self.renderer(), "source_frames", None)
        return None if hook is None else hook(spec)

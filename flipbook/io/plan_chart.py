"""A PNG chart of a plan's per-frame values, so a schedule can be checked by eye before any model is loaded.

Schedules are easy to get subtly wrong (a key off by one, a cubic overshoot, a sine with the wrong period) and
the plan table is long; a picture of every scheduled value against the frame (cfg, strength, seed, steps,
sampler, checkpoint, every camera schedule...), with the prompt keyframes marked, shows such mistakes at a
glance. The columns come from the plan itself (:class:`~flipbook.spec.plan.FramePlan`'s fields and its camera
values), so a new schedule is charted without touching this module. Only columns that change get a panel: a
flat line says nothing a number cannot, so the constant ones are listed with their values above the panels.

Matplotlib is driven through :class:`~matplotlib.figure.Figure` and the Agg canvas directly, never ``pyplot``,
so charting neither picks a GUI backend nor touches global state that a host application (a notebook, the UI)
may rely on, and figures are freed as soon as they go out of scope.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from flipbook.io.atomic import atomic_target
from flipbook.spec.plan import FramePlan, Plan

WIDTH_IN = 10.0
PANEL_HEIGHT_IN = 2.2
KEYFRAME_LABELS_IN = 1.0  # room above the top panel for the slanted prompt labels
DPI = 100
PROMPT_LABEL_CHARS = 30
LABEL_ROTATION = 35.0  # degrees; steeper needs more headroom, shallower more room between keyframes
LABEL_LINE_PX = 13.0  # a line of 8 pt text at 100 dpi, with a little air

HEADING_CHARS = 125  # a line of 10 pt heading text fits across the figure
HEADING_LINE_IN = 0.2
CONSTANT_LINE_IN = 0.25  # a line of the constant panel's text (10 pt, 1.5 line spacing)
CATEGORY_LABEL_CHARS = 24

# y-axis labels that differ from the column's name
SERIES_LABELS = {"blend": "prompt blend w", "denoise": "denoise (img2img)"}
# FramePlan fields that are not charted as columns: the frame number is the x axis, the prompt keyframes are
# the dashed lines and their labels (prompt texts change with backtick math on every frame)
_NOT_COLUMNS = frozenset(
    {"index", "prompt_key", "prompt", "negative_prompt", "next_prompt", "next_negative_prompt"}
)


def all_series(plan: Plan) -> dict[str, np.ndarray]:
    """Every per-frame column of the plan, flat or not, in FramePlan's field order with each mapping field
    (the camera schedules) expanded in its own order: integers (seeds, steps) as int64, other numbers as
    float64, names (sampler, checkpoint) as str."""
    if not plan.frames:
        return {}
    columns: dict[str, np.ndarray] = {}
    for field in dataclasses.fields(FramePlan):
        if field.name in _NOT_COLUMNS:
            continue
        values = [getattr(frame, field.name) for frame in plan.frames]
        if isinstance(values[0], Mapping):
            for key in values[0]:
                columns[key] = _column([value[key] for value in values])
        else:
            columns[field.name] = _column(values)
    return columns


def _column(values: list) -> np.ndarray:
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    if all(isinstance(v, float | int | np.number) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.float64)
    return np.array([str(v) for v in values], dtype=str)


def is_uninteresting(name: str, values: np.ndarray) -> bool:
    """True for a series whose panel would be a straight line everyone expects.

    Why seeds are special: the default ``iter`` behaviour (seed, seed+1, ...) is a ramp that says nothing, so a
    seed panel is only drawn when seeds do something else (``ladder``, ``alternate``, ``seed_iter_n``, ...).
    """
    if values.size < 2 or np.all(values == values[0]):
        return True
    return name == "seed" and bool(np.all(np.diff(values) == 1))


def chart_series(plan: Plan) -> dict[str, np.ndarray]:
    """The series that get a panel, in panel order (empty when everything is flat: one 'constant' panel)."""
    return {name: v for name, v in all_series(plan).items() if not is_uninteresting(name, v)}


def prompt_keyframes(plan: Plan) -> list[tuple[int, str]]:
    """``(frame, shortened prompt)`` where a prompt takes over: frame 0, then every frame that is its own key.

    Frame 0 is always included because the first prompt also covers the frames before its own key.
    """
    marks = [(f.index, shorten(f.prompt)) for f in plan.frames if f.index == 0 or f.prompt_key == f.index]
    return marks


def shorten(prompt: str, limit: int = PROMPT_LABEL_CHARS) -> str:
    """One line of at most ``limit`` characters, so keyframe labels stay short enough not to collide."""
    flat = " ".join(prompt.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip(" ,;:") + "…"


def constant_summary(plan: Plan) -> str:
    """The columns without a panel as text ('seed 100 + frame, sampler Euler a, cfg 7, ... zoom 1.02'), so no
    value of the plan is left out of the chart."""
    parts = []
    for name, values in all_series(plan).items():
        if not is_uninteresting(name, values):
            continue
        if name == "seed" and values.size > 1 and values[1] != values[0]:
            parts.append(f"seed {format_value(values[0])} + frame")
        else:
            parts.append(f"{name} {format_value(values[0])}")
    return ", ".join(parts)


def format_value(value: object) -> str:
    """A plan value as a person reads it: integers whole (a seed is 3541512345, not 3.54151e+09), other numbers
    in at most 6 significant digits, names as they are."""
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return str(value)


def plan_figure(plan: Plan, *, title: str = "") -> Figure:
    """The chart as a Figure (not yet saved): one panel per changing series, or one 'constant' panel."""
    series = chart_series(plan)
    panels = max(len(series), 1)
    heading = _heading(title, plan, bool(series))
    heading_lines = heading.count("\n") + 1 if heading else 0
    constant = "" if series else _constant_text(plan)
    panel_height = max(PANEL_HEIGHT_IN, CONSTANT_LINE_IN * (constant.count("\n") + 3))
    height = panel_height * panels + KEYFRAME_LABELS_IN + HEADING_LINE_IN * heading_lines
    figure = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    frames = np.arange(len(plan))
    if series:
        for ax, (name, values) in zip(axes, series.items(), strict=True):
            _draw_series(ax, name, frames, values)
    else:
        _draw_constant(axes[0], constant)
    for ax in axes:
        _mark_keyframes(ax, plan)
        _style_frame_axis(ax, len(plan))
    axes[-1].set_xlabel("frame")
    _label_keyframes(axes[0], plan)
    if heading:
        figure.suptitle(heading, fontsize=10)
    return figure


def plot_plan(plan: Plan, path: Path, *, title: str = "") -> Path:
    """Write the chart of ``plan`` to ``path`` as a PNG, atomically (a crash never leaves half a file)."""
    path = Path(path)
    figure = plan_figure(plan, title=title)
    with atomic_target(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return path


def _heading(title: str, plan: Plan, has_panels: bool) -> str:
    """The title plus, above real panels, the values that did not get one (so nothing is silently left out),
    wrapped to the figure's width."""
    flat = constant_summary(plan) if has_panels else ""
    text = " — ".join(part for part in (title, f"constant: {flat}" if flat else "") if part)
    return "\n".join(textwrap.wrap(text, HEADING_CHARS))


def _draw_series(ax: Axes, name: str, frames: np.ndarray, values: np.ndarray) -> None:
    """One series as a line with dots (dots show the actual frames; lines alone hide step schedules' jumps);
    names (a sampler or checkpoint schedule) as steps between their labelled levels."""
    ax.set_ylabel(SERIES_LABELS.get(name, name))
    ax.grid(True, axis="y", alpha=0.3)
    if values.dtype.kind in "US":
        _draw_categories(ax, frames, values)
        return
    ax.plot(
        frames,
        values,
        color="tab:blue",
        linewidth=1.4,
        marker="o",
        markersize=2.5 if len(frames) <= 200 else 0,
    )
    if values.dtype.kind == "i":
        # integers (seeds are identifiers, steps counts): whole ticks, never 1e9 + offset
        formatter = ScalarFormatter(useOffset=False)
        formatter.set_scientific(False)
        ax.yaxis.set_major_formatter(formatter)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))


def _draw_categories(ax: Axes, frames: np.ndarray, values: np.ndarray) -> None:
    """A column of names: one level per name in order of first use, each labelled (shortened)."""
    names = list(dict.fromkeys(values.tolist()))
    levels = np.array([names.index(value) for value in values.tolist()])
    ax.step(frames, levels, where="post", color="tab:blue", linewidth=1.4)
    ax.plot(frames, levels, "o", color="tab:blue", markersize=2.5 if len(frames) <= 200 else 0)
    ax.set_yticks(range(len(names)), labels=[shorten(name, CATEGORY_LABEL_CHARS) for name in names])
    ax.tick_params(axis="y", labelsize=8)


def _constant_text(plan: Plan) -> str:
    """What the single panel of a plan where nothing changes says: that, and every value, wrapped."""
    return "every value is constant\n" + "\n".join(textwrap.wrap(constant_summary(plan), HEADING_CHARS - 40))


def _draw_constant(ax: Axes, text: str) -> None:
    """The single panel for a plan where nothing changes: say so, with the values, instead of flat lines."""
    ax.set_yticks([])
    ax.set_ylim(0, 1)
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=10, linespacing=1.5)


def _mark_keyframes(ax: Axes, plan: Plan) -> None:
    """Dashed verticals where a prompt takes over, on every panel, to line value changes up with prompts."""
    for frame, _ in prompt_keyframes(plan):
        ax.axvline(frame, color="tab:gray", linestyle="--", linewidth=0.9, alpha=0.8, zorder=0)


def _label_keyframes(ax: Axes, plan: Plan) -> None:
    """The shortened prompts above the top panel, slanted so neighbouring keyframes' labels do not overlap.

    Keyframes too close to the previous labelled one to fit a label keep their tick and dashed line unlabelled:
    colliding text would make both prompts unreadable.
    """
    marks = prompt_keyframes(plan)
    spacing = _min_label_spacing_frames(len(plan))
    labels, last = [], None
    for frame, text in marks:
        fits = last is None or frame - last >= spacing
        labels.append(f"{frame}: {text}" if fits else "")
        last = frame if fits else last
    top = ax.secondary_xaxis("top")
    top.set_xticks([frame for frame, _ in marks], labels=labels)
    top.tick_params(axis="x", labelsize=8, length=4, color="tab:gray")
    for label in top.get_xticklabels():
        label.set(rotation=LABEL_ROTATION, rotation_mode="anchor", ha="left", va="bottom")


def _min_label_spacing_frames(frame_count: int) -> float:
    """How many frames apart two slanted labels must start so their text lines do not touch.

    Parallel lines of text slanted by θ that start d pixels apart are d·sin θ apart, which must exceed a line
    of 8 pt text; the axes span roughly 85% of the figure width.
    """
    px_per_frame = 0.85 * WIDTH_IN * DPI / max(frame_count, 1)
    return LABEL_LINE_PX / np.sin(np.radians(LABEL_ROTATION)) / px_per_frame


def _style_frame_axis(ax: Axes, frame_count: int) -> None:
    """Whole-frame ticks over exactly the planned frames (a one-frame plan still gets a visible range)."""
    ax.set_xlim(-0.5, max(frame_count - 1, 1) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=12, integer=True))
    ax.margins(y=0.15)

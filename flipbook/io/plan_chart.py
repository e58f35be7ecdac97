"""A PNG chart of a plan's per-frame values, so a schedule can be checked by eye before any model is loaded.

Schedules are easy to get subtly wrong (a key off by one, a cubic overshoot, a sine with the wrong period) and
the plan table is long; a picture of cfg, strength and seed against the frame, with the prompt keyframes marked,
shows such mistakes at a glance. Only series that change get a panel: a flat line says nothing a number cannot.

Matplotlib is driven through :class:`~matplotlib.figure.Figure` and the Agg canvas directly, never ``pyplot``,
so charting neither picks a GUI backend nor touches global state that a host application (a notebook, the UI)
may rely on, and figures are freed as soon as they go out of scope.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from flipbook.io.atomic import atomic_target
from flipbook.spec.plan import Plan

WIDTH_IN = 10.0
PANEL_HEIGHT_IN = 2.2
KEYFRAME_LABELS_IN = 1.0  # room above the top panel for the slanted prompt labels
DPI = 100
PROMPT_LABEL_CHARS = 30
LABEL_ROTATION = 35.0  # degrees; steeper needs more headroom, shallower more room between keyframes
LABEL_LINE_PX = 13.0  # a line of 8 pt text at 100 dpi, with a little air

# Panel order and y-axis labels; the keys are also the names ``chart_series`` returns. The mode sections'
# schedules (``video.feedback``, ...: ``FramePlan.schedules``) follow, labelled by their path.
SERIES_LABELS = {"cfg": "cfg", "strength": "strength", "seed": "seed", "blend": "prompt blend w"}


def all_series(plan: Plan) -> dict[str, np.ndarray]:
    """Every charted series, flat or not, so the constant ones can still be reported as numbers."""
    return {
        "cfg": np.array([f.cfg for f in plan.frames], dtype=np.float64),
        "strength": np.array([f.strength for f in plan.frames], dtype=np.float64),
        "seed": np.array([f.seed for f in plan.frames], dtype=np.int64),
        # the weight toward the next keyframe: prompt interpolation, the latent walk's eased position
        "blend": np.array([f.blend for f in plan.frames], dtype=np.float64),
    } | {
        path: np.array([f.schedules[path] for f in plan.frames], dtype=np.float64)
        for path in (plan.frames[0].schedules if plan.frames else {})
    }


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
    """The flat series as text ('cfg 7, strength 0.6 (denoise 0.4), seed 100 + frame'), for titles and notes."""
    parts = []
    for name, values in all_series(plan).items():
        if not is_uninteresting(name, values) or name == "blend":  # a flat blend is 0: nothing blends
            continue
        if name == "seed" and values.size > 1 and values[1] != values[0]:
            parts.append(f"seed {values[0]} + frame")
        elif name == "strength":
            parts.append(f"strength {values[0]:g} (denoise {1.0 - values[0]:g})")
        else:
            parts.append(f"{name} {values[0]:g}")
    return ", ".join(parts)


def plan_figure(plan: Plan, *, title: str = "") -> Figure:
    """The chart as a Figure (not yet saved): one panel per changing series, or one 'constant' panel."""
    series = chart_series(plan)
    panels = max(len(series), 1)
    height = PANEL_HEIGHT_IN * panels + KEYFRAME_LABELS_IN + (0.3 if title else 0.0)
    figure = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    frames = np.arange(len(plan))
    if series:
        for ax, (name, values) in zip(axes, series.items(), strict=True):
            _draw_series(ax, name, frames, values)
    else:
        _draw_constant(axes[0], plan)
    for ax in axes:
        _mark_keyframes(ax, plan)
        _style_frame_axis(ax, len(plan))
    axes[-1].set_xlabel("frame")
    _label_keyframes(axes[0], plan)
    heading = _heading(title, plan, bool(series))
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
    """The title plus, above real panels, the values that did not get one (so nothing is silently left out)."""
    flat = constant_summary(plan) if has_panels else ""
    return " — ".join(part for part in (title, f"constant: {flat}" if flat else "") if part)


def _draw_series(ax: Axes, name: str, frames: np.ndarray, values: np.ndarray) -> None:
    """One series as a line with dots (dots show the actual frames; lines alone hide step schedules' jumps)."""
    ax.plot(
        frames,
        values,
        color="tab:blue",
        linewidth=1.4,
        marker="o",
        markersize=2.5 if len(frames) <= 200 else 0,
    )
    ax.set_ylabel(SERIES_LABELS.get(name, name))
    ax.grid(True, axis="y", alpha=0.3)
    if name == "seed":
        formatter = ScalarFormatter(useOffset=False)
        formatter.set_scientific(False)
        ax.yaxis.set_major_formatter(
            formatter
        )  # seeds are identifiers: show them whole, never as 1e9 + offset
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    if name == "strength":
        # Deforum strength keeps that share of the previous frame; A1111/diffusers users think in denoise.
        denoise = ax.secondary_yaxis("right", functions=(_one_minus, _one_minus))
        denoise.set_ylabel("denoise = 1 − strength", fontsize=8)


def _one_minus(x: np.ndarray) -> np.ndarray:
    """Strength <-> denoise (its own inverse)."""
    return 1.0 - np.asarray(x)


def _draw_constant(ax: Axes, plan: Plan) -> None:
    """The single panel for a plan where nothing changes: say so, with the values, instead of flat lines."""
    ax.set_yticks([])
    ax.set_ylim(0, 1)
    text = "every series is constant\n" + constant_summary(plan).replace(", ", "\n")
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

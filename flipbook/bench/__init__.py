"""``flipbook bench``: benchmark cases; each writes JSON and a markdown table to the output folder. A mode's own
case is its descriptor's ``bench`` (listed under the mode's name)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from flipbook.errors import FlipbookError
from flipbook.modes import REGISTERED


def _case(
    module: str, *, takes: tuple[str, ...] | None = None, uses_frames: bool = True, **fixed: object
) -> Callable[..., str]:
    """A case whose module (with a ``run``: ``flipbook.bench.<module>``, or a full dotted path) is imported when
    it runs.

    The CLI passes every option to every case: ``takes`` names the ones this case reads (None: all), ``frames``
    is passed only when given and the case uses it (so each case keeps its own default), and ``fixed`` adds
    arguments of the case's own (``case="video"``).
    """

    def run(frames: int | None = None, dry_run: bool = False, **options: object) -> str:
        if dry_run:
            if takes is None or "dry_run" not in takes:
                raise FlipbookError("--dry-run", True, "only with a case that has a plan to list (gpu)")
            options["dry_run"] = True
        if takes is not None:
            options = {name: value for name, value in options.items() if name in takes}
        if uses_frames and frames is not None:
            options["frames"] = frames
        path = module if "." in module else f"flipbook.bench.{module}"
        return importlib.import_module(path).run(**fixed, **options)

    return run


_FRAME_SIZE = ("width", "height", "runs", "out")  # cases without a model: frame size and repetitions only

CASES: dict[str, Callable[..., str]] = {
    "sampler": _case("sampler", uses_frames=False),  # one image per run
    "camera-2d": _case("camera"),
    "frame-interpolation": _case("frame_interpolation", takes=_FRAME_SIZE),
    "encode": _case("encode", takes=_FRAME_SIZE),
    "gif-quality": _case("gif_quality", takes=_FRAME_SIZE),
    "memory": _case("memory", takes=("width", "height", "out")),
    "server": _case("server", takes=("runs", "out"), uses_frames=False),
    "propagation": _case("propagation", takes=("runs", "out", "device")),
    "overhead": _case("overhead", takes=("runs", "out", "device")),
    "stream": _case("stream"),
    "compile": _case("compiled", uses_frames=False),
    "cache": _case("step_cache"),
    "gpu": _case("gpu", takes=("out", "dry_run"), uses_frames=False),
    "farm": _case("farm", takes=("runs", "out", "model", "width", "height", "steps")),
    **{mode.name: _case(mode.bench) for mode in REGISTERED if mode.bench is not None},
}


def run_case(case: str, *, out: Path, **kwargs) -> str:
    """Run benchmark ``case`` and return its markdown report (also written under ``out``)."""
    if case not in CASES:
        raise FlipbookError("case", case, f"one of: {', '.join(CASES)}")
    return CASES[case](out=out, **kwargs)

"""``flipbook bench``: benchmark cases; each writes JSON and a markdown table to the output folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flipbook.errors import FlipbookError


def _sampler_case(frames: int | None = None, **kwargs) -> str:
    from flipbook.bench.sampler import run

    return run(**kwargs)  # one image per run: ``frames`` does not apply


def _camera_2d_case(frames: int | None = None, **kwargs) -> str:
    from flipbook.bench.camera import run

    return run(**kwargs) if frames is None else run(frames=frames, **kwargs)


def _interpolate_case(frames: int | None = None, **kwargs) -> str:
    from flipbook.bench.batching import run

    return (
        run(case="interpolate", **kwargs)
        if frames is None
        else run(case="interpolate", frames=frames, **kwargs)
    )


def _video_case(frames: int | None = None, **kwargs) -> str:
    from flipbook.bench.batching import run

    return run(case="video", **kwargs) if frames is None else run(case="video", frames=frames, **kwargs)


def _frame_interpolation_case(
    frames: int | None = None,
    width: int = 512,
    height: int = 512,
    runs: int = 3,
    out: Path | None = None,
    **_,
) -> str:
    from flipbook.bench.interpolate import run

    kwargs = {"width": width, "height": height, "runs": runs, "out": out}
    return run(**kwargs) if frames is None else run(frames=frames, **kwargs)


def _encode_case(
    frames: int | None = None,
    width: int = 512,
    height: int = 512,
    runs: int = 3,
    out: Path | None = None,
    **_,
) -> str:
    from flipbook.bench.encode import run

    kwargs = {"width": width, "height": height, "runs": runs, "out": out}
    return run(**kwargs) if frames is None else run(frames=frames, **kwargs)


def _server_case(runs: int = 3, out: Path | None = None, **_) -> str:
    from flipbook.bench.server import run

    return run(runs=runs, out=out)


CASES: dict[str, Callable[..., str]] = {
    "sampler": _sampler_case,
    "camera-2d": _camera_2d_case,
    "interpolate": _interpolate_case,
    "video": _video_case,
    "frame-interpolation": _frame_interpolation_case,
    "encode": _encode_case,
    "server": _server_case,
}


def run_case(case: str, *, out: Path, **kwargs) -> str:
    """Run benchmark ``case`` and return its markdown report (also written under ``out``)."""
    if case not in CASES:
        raise FlipbookError("case", case, f"one of: {', '.join(CASES)}")
    return CASES[case](out=out, **kwargs)

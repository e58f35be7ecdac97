"""``flipbook bench``: benchmark cases; each writes JSON and a markdown table to the output folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flipbook.errors import FlipbookError


def _sampler_case(**kwargs) -> str:
    from flipbook.bench.sampler import run

    return run(**kwargs)


CASES: dict[str, Callable[..., str]] = {"sampler": _sampler_case}


def run_case(case: str, *, out: Path, **kwargs) -> str:
    """Run benchmark ``case`` and return its markdown report (also written under ``out``)."""
    if case not in CASES:
        raise FlipbookError("case", case, f"one of: {', '.join(CASES)}")
    return CASES[case](out=out, **kwargs)

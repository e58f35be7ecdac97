"""Where a job's frames split into tasks (pure: no Ray, no torch)."""

from __future__ import annotations

import math


def segments(first: int, total: int, every: int | None, parts: int) -> list[range]:
    """Frames ``first..total-1`` in about ``parts`` runs that each start at a multiple of ``every`` (the
    mode's :meth:`~flipbook.modes.base.Mode.split_every`), so each renders exactly as in one uninterrupted
    render; one run when ``every`` is None (each frame depends on the one before)."""
    if first >= total:
        return []
    if every is None or parts <= 1:
        return [range(first, total)]
    size = max(every, math.ceil((total - first) / parts / every) * every)
    starts = [first, *range((first // size + 1) * size, total, size)]
    return [range(a, b) for a, b in zip(starts, [*starts[1:], total], strict=True)]

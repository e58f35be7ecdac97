"""Where a job's frames split into tasks (pure: no Ray, no torch)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flipbook.modes.base import Split


def segments(first: int, total: int, split: Split | None, parts: int) -> list[range]:
    """Frames (or a split job's parts) ``first..total-1`` in about ``parts`` runs that each start where the
    mode's :class:`~flipbook.modes.base.Split` lets a task start, so each renders exactly as in one
    uninterrupted render; one run when ``split`` is None (each frame depends on the one before)."""
    if first >= total:
        return []
    if split is None or parts <= 1:
        return [range(first, total)]
    size = math.ceil((total - first) / parts)
    starts = [first]
    for start in split.starts(total):
        if start > first and start - starts[-1] >= size:
            starts.append(start)
    return [range(a, b) for a, b in zip(starts, [*starts[1:], total], strict=True)]

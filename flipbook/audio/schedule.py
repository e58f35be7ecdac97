"""A per-frame curve → a Deforum schedule string (``0:(1), 12:(1.05), 13:(1)``) to paste into a spec.

The curve goes through a mapping expression first (``1 + 0.05*x`` turns a 0..1 loudness curve into a zoom),
evaluated by flipbook's safe expression evaluator, never ``eval``. Then only the keyframes that linear
interpolation needs are kept: the schedule reads back (:func:`flipbook.spec.schedules.resolve_schedule`) to
the mapped values within ``tolerance`` plus the rounding to ``decimals``, with far fewer keyframes than frames.
"""

from __future__ import annotations

import math

import numpy as np

from flipbook.errors import FlipbookError
from flipbook.spec.expressions import ExpressionError, compile_expression
from flipbook.spec.prompt_keyframes import format_number

_MAP_ALLOWED = "an expression of x (the curve value, 0..1) and t (the frame index), e.g. 1 + 0.05*x"


def schedule_string(
    values: np.ndarray,
    map_expr: str = "x",
    *,
    tolerance: float = 1e-3,
    decimals: int = 4,
    fps: float | None = None,
) -> str:
    """The Deforum schedule of ``map_expr`` applied to ``values`` (one per frame), keyframes only where needed.

    Frame 0 and the last frame are always written; a frame in between is dropped when the straight line
    between the kept keyframes around it passes within ``tolerance`` of its (rounded) value. ``fps`` makes
    ``fps`` and ``sec`` available to the expression.
    """
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise FlipbookError("tolerance", tolerance, "a number >= 0")
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 12:
        raise FlipbookError("decimals", decimals, "a whole number of decimal places, 0 to 12")
    rounded = np.round(map_curve(values, map_expr, fps=fps), decimals)
    keep = keyframe_indices(rounded, tolerance)
    return ", ".join(f"{frame}:({format_number(float(rounded[frame]))})" for frame in keep)


def map_curve(values: np.ndarray, map_expr: str = "x", *, fps: float | None = None) -> np.ndarray:
    """``map_expr`` at every frame, with ``x`` the curve value, ``t`` the frame index, ``max_f`` the last frame
    index and ``s`` = 0 (no seed exists yet); bad or non-finite results are a FlipbookError on ``map``."""
    curve = np.asarray(values, dtype=np.float64)
    if curve.ndim != 1 or curve.size == 0:
        raise ValueError(f"expected a non-empty curve with one value per frame, got shape {curve.shape}")
    if not np.all(np.isfinite(curve)):
        raise ValueError("curve values must be finite")
    variables: dict[str, float | np.ndarray] = {
        "t": np.arange(curve.size, dtype=np.float64),
        "x": curve,
        "max_f": curve.size - 1,
        "s": 0,
    }
    if fps is not None:
        variables["fps"] = fps
    try:
        return compile_expression(map_expr, ["x"]).evaluate(variables)
    except ExpressionError as error:
        raise FlipbookError(
            "map", map_expr, _MAP_ALLOWED, detail=f"{error.message}, at character {error.position}"
        ) from None


def keyframe_indices(values: np.ndarray, tolerance: float) -> list[int]:
    """Frames to keep so linear interpolation between them reproduces every value within ``tolerance``.

    Greedy "swing door": from each kept frame, track the range of slopes that keeps every frame passed so far
    within tolerance, and jump to the furthest frame whose own slope lies in that range (the line ends exactly
    on it). One pass, no quadratic re-checking; not always the fewest keyframes, but always within tolerance.
    """
    values = np.asarray(values, dtype=np.float64).tolist()  # floats: scalar indexing in the loop is fast
    if not values:
        return []
    last = len(values) - 1
    keep = [0]
    anchor = 0
    while anchor < last:
        low, high = -math.inf, math.inf
        best = anchor + 1
        for frame in range(anchor + 1, last + 1):
            span = frame - anchor
            slope = (values[frame] - values[anchor]) / span
            if low <= slope <= high:
                best = frame
            low = max(low, (values[frame] - tolerance - values[anchor]) / span)
            high = min(high, (values[frame] + tolerance - values[anchor]) / span)
            if low > high:
                break
        keep.append(best)
        anchor = best
    return keep

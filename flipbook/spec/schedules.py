"""Deforum-compatible schedules: ``"0:(0), 30:(15), 60:(-2)"`` → one float64 value per frame.

Semantics follow Deforum's ``FrameInterpolater`` (sd-webui-deforum ``animation_key_frames.py``) so imported
settings files animate the same:

- A numeric keyframe sets the value at its frame; frames between numeric keyframes are interpolated (linear
  by default, also ``cubic``: a natural cubic spline, and ``step``: hold the previous value).
- An expression keyframe (anything but a plain number) is evaluated at every frame from its key up to, not
  including, the next key (to the end if it is the last). Interpolation runs between whatever values are set,
  so ``0:(0), 30:(sin(t))`` ramps from 0 to sin(30) over frames 0..30.
- Before the first key the first value holds and after the last numeric key the last value holds. A schedule
  without a frame-0 key works (Deforum crashes).
- Keys are frame numbers or expressions of ``max_f`` (last frame index), ``s`` (seed) and ``fps``, optionally
  quoted (``"max_f-2":(-1)``, as in Deforum's default ``seed_schedule``); expression keys are truncated to
  an integer like Deforum's ``int()``. Keys out of range (``>= max_frames``, or an expression key below 0) are
  ignored, as in Deforum; a literal negative key is an error. Keys may come in any order.
- Duplicate keys: the last one written wins (Deforum stores keys in a dict).

Where this deliberately differs from Deforum: commas and colons inside parentheses or quotes don't split
(``0:(max(0.5, sin(t)))`` works; Deforum splits it at the comma); any plain numeric literal is a numeric
keyframe (Deforum's regex treats ``1e-3``, ``5.`` and ``( 5 )`` as expressions, which then hold instead of
interpolating); expressions go through :mod:`flipbook.spec.expressions`, never numexpr/eval; string values
keep their inner parentheses and quotes (Deforum strips every ``(``, ``)``, ``'`` and ``"``).

Errors are :class:`ScheduleError` with the character position within the schedule text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from flipbook.spec.expressions import (
    FRAME_NAMES,
    CompiledExpression,
    ExpressionError,
    compile_expression,
    first_nonfinite,
)

MAX_SCHEDULE_LENGTH = 1_000_000
"""Characters in one schedule string (per-frame schedules from music tools run to tens of thousands)."""
MAX_KEYFRAMES = 100_000
KEY_NAMES: tuple[str, ...] = ("max_f", "s", "fps")
"""Variables a key may use: keys are fixed before any frame exists, so no ``t``."""
INTERPOLATIONS: tuple[str, ...] = ("linear", "cubic", "step")

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_STRUCTURE = re.compile(r"[()\"',:]")
_SPACE = " \t\n\r\f\v"


class ScheduleError(ValueError):
    """A bad schedule; ``position`` is the character index in the schedule text (None: not about the text)."""

    def __init__(self, message: str, position: int | None = 0):
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(frozen=True)
class Keyframe:
    """One ``KEY:(VALUE)`` entry as written, with positions for carets.

    ``key`` is without quotes; ``value`` is the text inside the outer parentheses (the whole value when it
    has none). ``frame`` is set when the key is a plain number and None when it is an expression.
    """

    key: str
    key_position: int
    value: str
    value_position: int
    frame: int | None


# ------------------------------------------------------------------------------------------------ parsing
def parse_schedule(text: str) -> list[Keyframe]:
    """Split a Deforum schedule string into keyframes (in written order), checking its structure."""
    if not isinstance(text, str):
        raise ScheduleError(f"a schedule must be text, not {type(text).__name__}", None)
    if len(text) > MAX_SCHEDULE_LENGTH:
        raise ScheduleError(f"the schedule is {len(text)} characters long; at most {MAX_SCHEDULE_LENGTH}", 0)
    spans = _entries(text)
    if len(spans) > 1 and not text[spans[-1][0] : spans[-1][1]].strip(_SPACE):
        spans.pop()  # one trailing comma is harmless
    if len(spans) > MAX_KEYFRAMES:
        raise ScheduleError(f"the schedule has {len(spans)} keyframes; at most {MAX_KEYFRAMES}", 0)
    if len(spans) == 1 and not text.strip(_SPACE):
        raise ScheduleError("the schedule is empty; expected KEY:(VALUE) pairs like 0:(1.0), 30:(2.5)", 0)
    return [_keyframe(text, start, end) for start, end in spans]


def _structure(text: str, start: int, end: int) -> Iterator[tuple[int, str, int]]:
    """``(index, char, depth)`` for each ``( ) , :`` outside quotes; depth is the number of open parentheses
    around the char (a ``(`` and its ``)`` share a depth). Ends with an error on an unclosed quote."""
    depth = 0
    quote, quote_at = "", 0
    for match in _STRUCTURE.finditer(text, start, end):
        char, index = match.group(), match.start()
        if quote:
            if char == quote:
                quote = ""
            continue
        if char in "\"'":
            quote, quote_at = char, index
            continue
        if char == ")":
            depth -= 1
        yield index, char, depth
        if char == "(":
            depth += 1
    if quote:
        raise ScheduleError(f"unclosed quote {quote}", quote_at)


def _entries(text: str) -> list[tuple[int, int]]:
    """Spans of the top-level comma-separated entries; parentheses must balance."""
    opens: list[int] = []
    spans: list[tuple[int, int]] = []
    start = 0
    for index, char, depth in _structure(text, 0, len(text)):
        if char == "(":
            opens.append(index)
        elif char == ")":
            if depth < 0:
                raise ScheduleError("unmatched ')'", index)
            opens.pop()
        elif char == "," and depth == 0:
            spans.append((start, index))
            start = index + 1
    if opens:
        raise ScheduleError("unclosed '('", opens[-1])
    spans.append((start, len(text)))
    return spans


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    """The span without surrounding whitespace."""
    while start < end and text[start] in _SPACE:
        start += 1
    while end > start and text[end - 1] in _SPACE:
        end -= 1
    return start, end


def _unquote(value: str, position: int) -> tuple[str, int]:
    """Remove one pair of matching outer quotes (``"Euler a"`` → ``Euler a``), keeping the position right."""
    if len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0] and value[0] not in value[1:-1]:
        return value[1:-1], position + 1
    return value, position


def _keyframe(text: str, start: int, end: int) -> Keyframe:
    """One ``KEY:(VALUE)`` entry; the colon is the first one outside parentheses and quotes."""
    colons = [i for i, char, depth in _structure(text, start, end) if char == ":" and depth == 0]
    first, _ = _strip(text, start, end)
    if not colons:
        raise ScheduleError("expected KEY:(VALUE), e.g. 0:(1.0) or 30:(sin(t))", first)
    if len(colons) > 1:
        raise ScheduleError("a second ':' in one entry; is a ',' missing between keyframes?", colons[1])
    colon = colons[0]
    key_start, key_end = _strip(text, start, colon)
    key, key_position = _unquote(text[key_start:key_end], key_start)
    stripped = key.strip(_SPACE)
    key_position += len(key) - len(key.lstrip(_SPACE))
    if not stripped:
        raise ScheduleError("missing frame number before ':'", colon)
    value_start, value_end = _strip(text, colon + 1, end)
    if value_start == value_end:
        raise ScheduleError(f"missing value after '{stripped}:'", colon + 1)
    if text[value_start] == "(" and _closing(text, value_start, value_end) == value_end - 1:
        value_start, value_end = _strip(text, value_start + 1, value_end - 1)
    return Keyframe(
        stripped,
        key_position,
        text[value_start:value_end],
        value_start,
        _literal_frame(stripped, key_position),
    )


def _closing(text: str, open_index: int, end: int) -> int | None:
    """Index of the ``)`` matching the ``(`` at ``open_index``."""
    for index, char, depth in _structure(text, open_index, end):
        if char == ")" and depth == 0:
            return index
    return None


def _literal_frame(key: str, position: int) -> int | None:
    """The frame of a plain-number key; None for expression keys (evaluated later, with max_frames known)."""
    if not _NUMBER.fullmatch(key):
        return None
    value = float(key)
    if not math.isfinite(value):
        raise ScheduleError(f"keyframe {key} is out of range", position)
    if value < 0:
        raise ScheduleError(f"keyframe {key} is negative; frames count from 0", position)
    if not value.is_integer():
        raise ScheduleError(f"keyframe {key} is not a whole frame number", position)
    return int(value)


# ---------------------------------------------------------------------------------------------- compiling
@dataclass(frozen=True)
class ScheduleKey:
    """A keyframe with its key and value compiled (``key`` is None for a literal frame number)."""

    keyframe: Keyframe
    key: CompiledExpression | None
    value: CompiledExpression


def _compile_key(keyframe: Keyframe, extra_names: Sequence[str]) -> CompiledExpression | None:
    """Compile an expression key (``max_f-2``); t isn't available to keys."""
    if keyframe.frame is not None:
        return None
    try:
        return compile_expression(keyframe.key, extra_names, names=KEY_NAMES)
    except ExpressionError as error:
        raise _located(error, keyframe, keyframe.key_position) from None


def _located(error: ExpressionError, keyframe: Keyframe, base: int) -> ScheduleError:
    """An expression error re-raised at its position within the whole schedule string."""
    return ScheduleError(f"keyframe {keyframe.key}: {error.message}", base + error.position)


@dataclass(frozen=True)
class Schedule:
    """A parsed, validated numeric schedule; :meth:`resolve` turns it into per-frame values."""

    text: str
    keys: tuple[ScheduleKey, ...]

    @classmethod
    def parse(cls, text: str, extra_names: Sequence[str] = ()) -> Schedule:
        """Parse and compile every key and value, so errors surface before any rendering starts."""
        keys = []
        for keyframe in parse_schedule(text):
            value, position = _unquote(keyframe.value, keyframe.value_position)
            try:
                compiled = compile_expression(value, extra_names)
            except ExpressionError as error:
                raise _located(error, keyframe, position) from None
            keys.append(ScheduleKey(keyframe, _compile_key(keyframe, extra_names), compiled))
        return cls(text, tuple(keys))

    def resolve(
        self,
        *,
        max_frames: int,
        fps: float,
        seed: float,
        interpolation: str = "linear",
        extra_vars: Mapping[str, float | np.ndarray] | None = None,
    ) -> np.ndarray:
        """One float64 value per frame (length ``max_frames``), Deforum's way (see the module docstring)."""
        method = _interpolation(interpolation)
        scalars, arrays = _variables(max_frames, fps, seed, extra_vars)
        chosen = _frames(self.keys, max_frames, scalars)
        values = np.full(max_frames, np.nan)
        for (frame, index), following in zip(chosen, [*chosen[1:], (max_frames, -1)], strict=True):
            key = self.keys[index]
            if key.value.constant is not None:
                values[frame] = key.value.constant
            else:
                values[frame : following[0]] = _span(key, frame, following[0], scalars, arrays)
        filled = _fill(values, method)
        bad = first_nonfinite(filled)
        if bad is not None:
            before = [index for frame, index in chosen if frame <= bad] or [chosen[0][1]]
            keyframe = self.keys[before[-1]].keyframe
            raise ScheduleError(
                f"keyframe {keyframe.key}: interpolation overflows at frame {bad}; use smaller values",
                keyframe.value_position,
            )
        return filled


def _interpolation(name: str) -> str:
    method = str(name).lower()
    if method not in INTERPOLATIONS:
        raise ScheduleError(f"interpolation {name!r} is not valid; one of: {', '.join(INTERPOLATIONS)}", None)
    return method


def _variables(
    max_frames: int, fps: float, seed: float, extra_vars: Mapping[str, float | np.ndarray] | None
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Scalar variables (available to keys and values) and per-frame arrays (values only)."""
    if isinstance(max_frames, bool) or not isinstance(max_frames, int | np.integer) or max_frames < 1:
        raise ValueError(f"max_frames must be a positive integer, not {max_frames!r}")
    scalars: dict[str, float] = {"max_f": float(max_frames - 1), "s": float(seed), "fps": float(fps)}
    arrays: dict[str, np.ndarray] = {}
    for name, value in (extra_vars or {}).items():
        if name in FRAME_NAMES:
            raise ValueError(
                f"extra variable {name!r} would replace a built-in one ({', '.join(FRAME_NAMES)})"
            )
        if np.ndim(value) == 0:
            scalars[name] = float(value)
            continue
        array = np.asarray(value, dtype=np.float64)
        if array.shape != (max_frames,):
            raise ValueError(f"extra variable {name!r} has shape {array.shape}; expected ({max_frames},)")
        arrays[name] = array
    return scalars, arrays


def _frames(
    keys: Sequence[ScheduleKey], max_frames: int, scalars: Mapping[str, float]
) -> list[tuple[int, int]]:
    """``(frame, key index)`` of the keys within range, sorted by frame; a later duplicate replaces an earlier."""
    chosen: dict[int, int] = {}
    for index, key in enumerate(keys):
        frame = key.keyframe.frame if key.key is None else _key_frame(key, scalars)
        if 0 <= frame < max_frames:
            chosen[frame] = index
    if not chosen:
        first = keys[0].keyframe
        raise ScheduleError(f"no keyframe falls within frames 0..{max_frames - 1}", first.key_position)
    return sorted(chosen.items())


def _key_frame(key: ScheduleKey, scalars: Mapping[str, float]) -> int:
    """Evaluate an expression key; truncated toward zero like Deforum's ``int(numexpr.evaluate(key))``."""
    assert key.key is not None
    try:
        value = float(key.key.evaluate(scalars, check_finite=False))
    except ExpressionError as error:
        raise _located(error, key.keyframe, key.keyframe.key_position) from None
    if not math.isfinite(value):
        raise ScheduleError(
            f"keyframe {key.keyframe.key} gives {value}; not a frame number", key.keyframe.key_position
        )
    return int(value)


def _span(
    key: ScheduleKey, start: int, stop: int, scalars: Mapping[str, float], arrays: Mapping[str, np.ndarray]
) -> np.ndarray:
    """An expression keyframe evaluated at frames start..stop-1 (its span, up to the next key)."""
    variables: dict[str, float | np.ndarray] = dict(scalars)
    variables["t"] = np.arange(start, stop, dtype=np.float64)
    variables.update({name: array[start:stop] for name, array in arrays.items()})
    try:
        values = key.value.evaluate(variables, check_finite=False)
    except ExpressionError as error:
        raise _located(error, key.keyframe, key.keyframe.value_position) from None
    bad = first_nonfinite(values)
    if bad is not None:
        raise ScheduleError(
            f"keyframe {key.keyframe.key}: the value is {values[bad]} at frame {start + bad}; values must be finite",
            key.keyframe.value_position + key.value.offset,
        )
    return values


# ------------------------------------------------------------------------------------------ interpolation
def _fill(values: np.ndarray, method: str) -> np.ndarray:
    """Fill the unset (NaN) frames: hold before the first and after the last set value, interpolate between."""
    known = np.flatnonzero(~np.isnan(values))
    values[: known[0]] = values[known[0]]
    values[known[-1] + 1 :] = values[known[-1]]
    missing = np.flatnonzero(np.isnan(values))
    if not missing.size:
        return values
    x, y = known.astype(np.float64), values[known]
    with np.errstate(all="ignore"):
        if method == "step":
            values[missing] = y[np.searchsorted(known, missing, side="right") - 1]
        elif method == "cubic" and known.size >= 3:
            values[missing] = natural_cubic(x, y, missing.astype(np.float64))
        else:  # linear; cubic with fewer than 3 points (Deforum falls back the same way)
            values[missing] = np.interp(missing, x, y)
    return values


def natural_cubic(x: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Natural cubic spline through ``(x, y)`` (x increasing, >= 3 points) evaluated at ``at``; numpy only."""
    h = np.diff(x)
    slopes = np.diff(y) / h
    n = x.size
    # Tridiagonal system for the second derivatives m[1..n-2] (m[0] = m[n-1] = 0), solved with the Thomas
    # algorithm: O(n), and n can be every frame when expression spans are involved.
    diagonal = 2.0 * (h[:-1] + h[1:])
    rhs = 6.0 * np.diff(slopes)
    upper = h[1:-1].copy()
    for i in range(1, n - 2):
        factor = h[i] / diagonal[i - 1]
        diagonal[i] -= factor * upper[i - 1]
        rhs[i] -= factor * rhs[i - 1]
    m = np.zeros(n)
    inner = np.empty(n - 2)
    inner[-1] = rhs[-1] / diagonal[-1]
    for i in range(n - 4, -1, -1):
        inner[i] = (rhs[i] - upper[i] * inner[i + 1]) / diagonal[i]
    m[1:-1] = inner
    j = np.clip(np.searchsorted(x, at, side="right") - 1, 0, n - 2)
    a = (x[j + 1] - at) / h[j]
    b = (at - x[j]) / h[j]
    return a * y[j] + b * y[j + 1] + ((a**3 - a) * m[j] + (b**3 - b) * m[j + 1]) * h[j] ** 2 / 6.0


# ------------------------------------------------------------------------------------------- entry points
def resolve_schedule(
    spec_value: str | float | Sequence[float] | np.ndarray,
    *,
    max_frames: int,
    fps: float,
    seed: float,
    interpolation: str = "linear",
    extra_vars: Mapping[str, float | np.ndarray] | None = None,
) -> np.ndarray:
    """Per-frame float64 values from a Deforum string, a constant, or a list with one value per frame."""
    if isinstance(spec_value, str):
        names = [name for name in (extra_vars or {}) if name not in FRAME_NAMES]
        schedule = Schedule.parse(spec_value, names)
        return schedule.resolve(
            max_frames=max_frames, fps=fps, seed=seed, interpolation=interpolation, extra_vars=extra_vars
        )
    _interpolation(interpolation)
    _variables(max_frames, fps, seed, None)
    if isinstance(spec_value, bool):
        raise ScheduleError(
            "a schedule can't be true/false; give a number, a list or a schedule string", None
        )
    if isinstance(spec_value, int | float | np.integer | np.floating):
        if not math.isfinite(spec_value):
            raise ScheduleError(f"the value {spec_value} is not finite", None)
        return np.full(max_frames, float(spec_value))
    if isinstance(spec_value, Sequence | np.ndarray) and not isinstance(spec_value, bytes | bytearray):
        return _per_frame(spec_value, max_frames)
    raise ScheduleError(
        f"a schedule must be a number, a list or a string, not {type(spec_value).__name__}", None
    )


def _per_frame(values: Sequence[float] | np.ndarray, max_frames: int) -> np.ndarray:
    """A per-frame list: exactly one finite number per frame."""
    if len(values) != max_frames:
        raise ScheduleError(f"the list has {len(values)} values; expected one per frame ({max_frames})", None)
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ScheduleError(f"frame {index}: {value!r} is not a number", None)
    array = np.asarray(values, dtype=np.float64).copy()
    bad = first_nonfinite(array)
    if bad is not None:
        raise ScheduleError(f"frame {bad}: {array[bad]} is not finite", None)
    return array


def resolve_string_schedule(
    text: str, max_frames: int, *, seed: float | None = None, fps: float | None = None
) -> list[str]:
    """Per-frame strings (sampler, checkpoint, mask schedules): each value holds until the next key, and the
    first holds back to frame 0. Values may be quoted (``0:("Euler a")``) or bare; only the outer
    parentheses and one pair of outer quotes are removed."""
    if isinstance(max_frames, bool) or not isinstance(max_frames, int | np.integer) or max_frames < 1:
        raise ValueError(f"max_frames must be a positive integer, not {max_frames!r}")
    scalars = {"max_f": float(max_frames - 1)}
    scalars.update({name: float(v) for name, v in (("s", seed), ("fps", fps)) if v is not None})
    keyframes = parse_schedule(text)
    keys = [ScheduleKey(kf, _compile_key(kf, ()), _placeholder()) for kf in keyframes]
    chosen = _frames(keys, max_frames, scalars)
    out: list[str] = []
    for number, ((frame, index), following) in enumerate(
        zip(chosen, [*chosen[1:], (max_frames, -1)], strict=True)
    ):
        value, _ = _unquote(keyframes[index].value, keyframes[index].value_position)
        start = 0 if number == 0 else frame  # the first value also holds before its key
        out.extend([value] * (following[0] - start))
    return out


def _placeholder() -> CompiledExpression:
    """String schedules carry no numeric value; keys reuse the numeric machinery."""
    return compile_expression("0")

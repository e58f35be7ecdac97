"""Prompt keyframes (prompt travel) as users already write them: Deforum JSON prompts, AnimateDiff ``N: prompt``
backtick math inside a prompt (``(cherry:`1+t/max_f`)``).

Pure text → keyframes and text → per-frame text; nothing here knows about models or encoders.

**Deforum** (sd-webui-deforum ``args.py``, ``render.py``, ``prompt.py``):

- Keys are frame numbers or expressions of ``max_f`` (= max_frames - 1) and ``s`` (seed), truncated to an
  integer like Deforum's ``int(numexpr.evaluate(key))``; here they go through
  :mod:`flipbook.spec.expressions`, never numexpr/eval. Keys outside ``0..max_frames-1`` are dropped (Deforum
  writes them past the end of its pandas series, where no frame reads them), with a warning here
  (:meth:`Keyframes.unused_warning`); duplicate frames: the last key in the mapping wins (Deforum assigns in
  dict order). At most :data:`~flipbook.spec.schedules.MAX_KEYFRAMES` keys, as many as the longest
  animation has frames. As in :mod:`flipbook.spec.schedules`, a literal key
  that is negative or not a whole number is an error rather than silently dropped or truncated.
- Deforum joins the global additions as ``f"{positive} {prompt} {'' if '--neg' in prompt else '--neg'}
  {negative}"`` (with ``--neg`` removed from ``negative``), then splits the text at ``--neg`` (a plain
  substring, no spaces required), strips both sides and drops any further ``--neg`` markers
  (``"".join(rest)``). So the global positive goes *before* the prompt's positive and the global negative
  *after* the prompt's negative, separated by one space, no comma. Here the non-empty stripped parts are
  joined with a single space: Deforum's doubled spaces change nothing, CLIP's tokeniser collapses whitespace.

**AnimateDiff** (continue-revolution/sd-webui-animatediff ``scripts/animatediff_prompt.py``): the prompt is
``strip()``-ped and split at ``\\n``; lines before the first ``^\\d+:`` line are the head, ``^(\\d+): (.+)$``
lines are keyframes, and the first other line starts the tail. Each frame's prompt is
``f"{', '.join(head_lines)}, {prompt}, {', '.join(tail_lines)}"``: a comma and a space between the three
parts, even when head or tail is empty (``", closed mouth, "``). Lines and keyframe prompts are kept as
written (only the whole text is stripped), because whitespace between commas changes CLIP's tokens
(``"a, , b"`` is not ``"a,, b"``). Deliberate differences: a keyframe line may be indented, may have more
than one space after its colon (AnimateDiff wants exactly ``N: ``; one separating space is dropped) and may
be empty (``N:``); blank lines are ignored (AnimateDiff ends the keyframes at a blank line and turns later
keyframes into tail text); a keyframe after tail text, a duplicate, a negative or a non-integer key is an
error naming its line (AnimateDiff keeps the last duplicate and quietly treats the others as text);
keyframes may come in any order; ``\\r\\n`` line ends work. :func:`compose_line_prompt` joins exactly as
AnimateDiff by default, or ``tidy``.

**Backtick math**: Deforum's ``prepare_prompt`` finds ```…``` spans with a regex, substitutes ``t`` and
``max_f`` by *string replacement* (which also rewrites the ``t`` in ``sqrt``), and writes
``str(numexpr.evaluate(...))``: ``3`` for integer arithmetic, ``3.0`` for float arithmetic, Python's shortest
round-trip digits otherwise, and scientific notation for tiny or huge values (``1e-05``), which A1111's
attention parser (``:\\s*([+-]?[.\\d]+)\\s*\\)``) then fails to read as a weight. Here spans are tokenised
(backticks pair up left to right), compiled once, evaluated for all frames at once with ``t``, ``max_f``,
``s``, ``fps`` and ``sec``, and written with the shortest round-trip digits in positional notation, whole
values without ``.0`` (:func:`format_number`): ``3``, ``1.5``, ``0.3333333333333333``, ``0.00001``, all of
which A1111 reads as weights.

Errors are :class:`~flipbook.errors.FlipbookError`; character positions in them count from 0, like the
expression module's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from flipbook.errors import SpecError
from flipbook.spec.expressions import CompiledExpression, ExpressionError, compile_expression
from flipbook.spec.schedules import MAX_KEYFRAMES

DEFORUM_KEY_NAMES: tuple[str, ...] = ("max_f", "s")
"""Variables a Deforum prompt key may use: ``max_f`` as in Deforum's render.py, ``s`` (the seed) as in its
schedules."""
NEG_MARKER = "--neg"
"""Deforum's separator between positive and negative text in one prompt."""
BACKTICK = "`"

_DIGITS = re.compile(r"\d+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_KEY_LINE = re.compile(r"\s*([+-]?[\d.]*\d[\d.]*)\s*:(?:\s(.*))?", re.DOTALL)
"""A line that means to be a keyframe: a number, a colon, then whitespace or the end of the line (so a head
line like ``12:30 sunset`` or ``1girl: solo`` stays text, as in AnimateDiff)."""


# ------------------------------------------------------------------------------------------------- Deforum
@dataclass(frozen=True)
class PromptKey:
    """One Deforum prompt keyframe, already split and with the global additions joined in."""

    frame: int
    positive: str
    negative: str


def parse_deforum_prompts(
    prompts: Mapping[str, str],
    *,
    max_frames: int,
    seed: int,
    positive: str = "",
    negative: str = "",
    field: str = "prompts",
) -> dict[int, PromptKey]:
    """Deforum's ``animation_prompts`` → keyframes by frame (sorted), with ``animation_prompts_positive`` /
    ``_negative`` joined in Deforum's order (see the module docstring)."""
    return deforum_keyframes(
        prompts, max_frames=max_frames, seed=seed, positive=positive, negative=negative, field=field
    ).by_frame


@dataclass(frozen=True)
class Keyframes:
    """Prompt keyframes resolved against the animation: those within it by frame (sorted), and the keys as
    written that fall outside it (with the frame each gives), which no frame uses."""

    by_frame: dict[int, PromptKey]
    unused: dict[str, int]

    def unused_warning(self, max_frames: int, field: str = "prompts") -> str | None:
        """One line saying which keyframes no frame reaches (None when all are used)."""
        if not self.unused:
            return None
        shown = [f"{key!r}" + ("" if key.strip() == str(frame) else f" (frame {frame})")
                 for key, frame in list(self.unused.items())[:_SHOWN_UNUSED]]  # fmt: skip
        more = len(self.unused) - len(shown)
        listed = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
        count = len(self.unused)
        return (
            f"{field}: {count} keyframe{'s' if count > 1 else ''} outside frames 0..{max_frames - 1} "
            f"(animation.max_frames = {max_frames}) {'are' if count > 1 else 'is'} not used: {listed}"
        )


_SHOWN_UNUSED = 5


def check_keyframe_count(count: int, field: str = "prompts") -> None:
    """At most :data:`MAX_KEYFRAMES` prompt keyframes (the bound schedules have too): as many as the longest
    animation has frames; more could never each start a frame, and every plan would pay for them."""
    if count > MAX_KEYFRAMES:
        raise SpecError(
            field, f"{count} keyframes", f"at most {MAX_KEYFRAMES} prompt keyframes",
            detail="animation.max_frames is at most the same, so more could never each start a frame",
        )  # fmt: skip


def deforum_keyframes(
    prompts: Mapping[str, str],
    *,
    max_frames: int,
    seed: int,
    positive: str = "",
    negative: str = "",
    field: str = "prompts",
) -> Keyframes:
    """:func:`parse_deforum_prompts` that also says which keys fall outside the animation (Deforum drops them
    silently; flipbook warns, see :meth:`Keyframes.unused_warning`)."""
    if isinstance(max_frames, bool) or not isinstance(max_frames, int | np.integer) or max_frames < 1:
        raise ValueError(f"max_frames must be a positive integer, not {max_frames!r}")
    if not isinstance(prompts, Mapping) or not prompts:
        raise SpecError(field, prompts, 'a non-empty table of frame → prompt, e.g. {"0": "a forest"}')
    check_keyframe_count(len(prompts), field)
    if NEG_MARKER in positive:
        raise SpecError(
            f"{field} positive", positive, f"text without {NEG_MARKER}", detail="it would split every prompt"
        )
    global_negative = negative.replace(NEG_MARKER, "")  # Deforum removes it the same way
    scalars = {"max_f": float(max_frames - 1), "s": float(seed)}
    chosen: dict[int, PromptKey] = {}
    unused: dict[str, int] = {}
    for key, text in prompts.items():
        if not isinstance(text, str):
            raise SpecError(f"{field}[{key!r}]", text, "prompt text")
        frame = deforum_key_frame(key, scalars, field=field)
        if not 0 <= frame < max_frames:
            unused[str(key)] = frame
            continue
        own_positive, own_negative = split_negative(text)
        chosen[frame] = PromptKey(
            frame, _join_words(positive, own_positive), _join_words(own_negative, global_negative)
        )
    if not chosen:
        raise SpecError(
            field,
            list(prompts),
            f"at least one key within frames 0..{max_frames - 1}",
            detail="all are out of range",
        )
    return Keyframes(dict(sorted(chosen.items())), unused)


def deforum_key_frame(key: str | int, scalars: Mapping[str, float], *, field: str = "prompts") -> int:
    """A key's frame: digits as written, an expression truncated toward zero like Deforum's ``int()``.

    Out-of-range frames come back as they are (callers drop them); a literal that is negative or fractional
    is an error, because it can only be a typo (a schedule key is held to the same rule).
    """
    if isinstance(key, bool) or not isinstance(key, str | int):
        raise SpecError(field, key, "frame numbers or expressions of max_f and s as keys")
    text = str(key).strip()
    if _DIGITS.fullmatch(text):
        return int(text)
    where = f"{field}[{str(key)!r}]"
    if _NUMBER.fullmatch(text):
        value = float(text)
        if value < 0:
            raise SpecError(where, key, "a frame number from 0", detail="the key is negative")
        if not value.is_integer() or not math.isfinite(value):
            raise SpecError(where, key, "a whole frame number")
        return int(value)
    try:
        value = float(
            compile_expression(str(key), names=DEFORUM_KEY_NAMES).evaluate(scalars, check_finite=False)
        )
    except ExpressionError as error:
        raise SpecError(
            where,
            key,
            "a frame number or an expression of max_f and s",
            detail=f"at character {error.position}: {error.message}",
        ) from None
    if not math.isfinite(value):
        raise SpecError(where, key, "an expression giving a frame number", detail=f"it gives {value}")
    return int(value)


def split_negative(text: str) -> tuple[str, str]:
    """Deforum's split of one prompt at ``--neg``: (positive, negative), both stripped; further ``--neg``
    markers are dropped from the negative, as Deforum's ``"".join(after_neg)`` does."""
    before, _, after = text.partition(NEG_MARKER)
    return before.strip(), after.replace(NEG_MARKER, "").strip()


def _join_words(*parts: str) -> str:
    """Deforum's space join without its doubled and dangling spaces (CLIP collapses whitespace anyway)."""
    return " ".join(part.strip() for part in parts if part.strip())


# ---------------------------------------------------------------------------------------------- AnimateDiff
def parse_prompt_lines(text: str, *, field: str = "prompt") -> tuple[str, dict[int, str], str]:
    """AnimateDiff prompt travel → (head, {frame: prompt} sorted by frame, tail).

    Head and tail are their lines joined with ``", "`` (as AnimateDiff joins them). Without any keyframe
    line the text is an ordinary prompt and comes back whole as the head (stripped, newlines kept), with no
    keyframes and an empty tail, which is how AnimateDiff uses it.
    """
    if not isinstance(text, str):
        raise SpecError(field, text, "prompt text")
    stripped = text.strip()  # AnimateDiff strips the whole text first, then splits at "\n"
    first_line = text[: text.find(stripped)].count("\n") + 1 if stripped else 1
    head: list[str] = []
    keys: dict[int, str] = {}
    key_lines: dict[int, int] = {}
    tail: list[str] = []
    tail_start = 0
    for number, line in enumerate(stripped.split("\n"), start=first_line):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        match = _KEY_LINE.fullmatch(line)
        if match is None:
            if keys and not tail:
                tail_start = number
            (tail if keys else head).append(line)
            continue
        frame = _line_frame(match.group(1), number, field)
        if tail:
            raise SpecError(
                field,
                line.strip(),
                "keyframe lines together, between the head and the tail",
                detail=f"line {number}: keyframe {frame} comes after the tail text that starts on line "
                f"{tail_start}",
            )
        if frame in keys:
            raise SpecError(
                field,
                line.strip(),
                "each frame once",
                detail=f"line {number}: frame {frame} is already set on line {key_lines[frame]}",
            )
        keys[frame] = match.group(2) or ""
        key_lines[frame] = number
    check_keyframe_count(len(keys), field)
    if not keys:
        return stripped, {}, ""
    return ", ".join(head), dict(sorted(keys.items())), ", ".join(tail)


def _line_frame(key: str, line: int, field: str) -> int:
    """The frame of a keyframe line's key: digits only, as AnimateDiff's ``^(\\d+): `` accepts."""
    if _DIGITS.fullmatch(key):
        return int(key)
    if key.startswith("-"):
        raise SpecError(field, key, "a frame number from 0", detail=f"line {line}: the keyframe is negative")
    raise SpecError(field, key, "a whole frame number (digits only)", detail=f"line {line}")


def compose_line_prompt(head: str, prompt: str, tail: str, *, tidy: bool = False) -> str:
    """One frame's prompt from head, keyframe prompt and tail.

    By default exactly AnimateDiff's ``f"{head}, {prompt}, {tail}"``, so imported prompts condition the same
    (an empty head still leaves ``", "`` in front). ``tidy`` drops empty parts and the commas at their edges
    (``"best quality,"`` + ``"smile"`` → ``"best quality, smile"``) for prompts written fresh.
    """
    if not tidy:
        return f"{head}, {prompt}, {tail}"
    parts = (part.strip().strip(",").strip() for part in (head, prompt, tail))
    return ", ".join(part for part in parts if part)


# ---------------------------------------------------------------------------------------------- backticks
@dataclass(frozen=True)
class _Span:
    """A backtick expression: where its text starts in the prompt (after the opening backtick)."""

    start: int
    end: int  # index of the closing backtick
    expression: CompiledExpression


def backtick_positions(text: str) -> list[int]:
    """Where the backticks are; consecutive pairs delimit the math spans (Deforum pairs them left to right
    too, with a non-greedy regex)."""
    return [index for index, char in enumerate(text) if char == BACKTICK]


def compile_prompt_math(text: str, *, field: str = "prompt") -> list[_Span]:
    """Find and compile every backtick span once, so a bad one is reported before any frame is made."""
    if not isinstance(text, str):
        raise SpecError(field, text, "prompt text")
    marks = backtick_positions(text)
    if len(marks) % 2:
        raise SpecError(
            field,
            text,
            "backticks in pairs around math, e.g. (cherry:`1+t/max_f`)",
            detail=f"unclosed backtick at character {marks[-1]}",
        )
    compiled = []
    for opening, closing in zip(marks[::2], marks[1::2], strict=True):
        start = opening + 1
        try:
            expression = compile_expression(text[start:closing])
        except ExpressionError as error:
            raise SpecError(
                field,
                text[start:closing],
                "math in t, max_f, s, fps, sec",
                detail=f"at character {start + error.position}: {error.message}",
            ) from None
        compiled.append(_Span(start, closing, expression))
    return compiled


def prompt_at_frames(
    text: str, frames: np.ndarray, *, max_f: int, seed: int, fps: float, field: str = "prompt"
) -> list[str]:
    """The prompt text at each of ``frames``, with every backtick span replaced by its value there.

    A prompt without backticks comes back unchanged for every frame, without evaluating anything.
    """
    frame_values = np.asarray(frames, dtype=np.float64).reshape(-1)
    spans = compile_prompt_math(text, field=field)
    if not spans:
        return [text] * frame_values.size
    variables = {"t": frame_values, "max_f": float(max_f), "s": float(seed), "fps": float(fps)}
    columns = [_span_values(span, text, variables, field) for span in spans]
    literals = text.split(BACKTICK)[::2]  # the text around the spans: one more piece than spans
    out = []
    for row in range(frame_values.size):
        parts = [literals[0]]
        for column, literal in zip(columns, literals[1:], strict=True):
            parts.append(column[row])
            parts.append(literal)
        out.append("".join(parts))
    return out


def _span_values(
    span: _Span, text: str, variables: Mapping[str, float | np.ndarray], field: str
) -> list[str]:
    """One span evaluated at every frame and formatted; inf/NaN is an error naming the frame."""
    try:
        values = span.expression.evaluate(variables, check_finite=False)
    except ExpressionError as error:
        raise SpecError(
            field,
            text[span.start : span.end],
            "math in t, max_f, s, fps, sec",
            detail=f"at character {span.start + error.position}: {error.message}",
        ) from None
    values = np.broadcast_to(values, np.shape(variables["t"]))
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        frame = int(np.asarray(variables["t"]).reshape(-1)[bad[0]])
        raise SpecError(
            field,
            text[span.start : span.end],
            "math with a finite value at every frame",
            detail=f"it gives {values[bad[0]]} at frame {frame}",
        )
    return [format_number(float(value)) for value in values]


def format_number(value: float) -> str:
    """Shortest digits that read back as ``value``, never in scientific notation (A1111's weight syntax
    has none), and whole numbers without ``.0``: 3, 1.5, 0.00001, -0.25."""
    if value == 0:
        return "0"  # also for -0.0
    return np.format_float_positional(value, unique=True, trim="-")

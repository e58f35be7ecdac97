"""Deforum keyframe strings read the way the Deforum that wrote the settings file reads them.

Deforum has had two keyframe parsers (``parse_key_frames`` in the A1111 extension's ``animation_key_frames.py``):

- **regex** (the notebook, and the extension until March 2023): ``KEY:(VALUE)`` pairs found by
  ``(\\d+):\\s*\\((.*?)\\)(,\\s?|\\s?$)``. Text between pairs is skipped, so ``0: 0: (t)`` is frame 0 = ``t``;
  the value is what lies inside the parentheses; keys are plain frame numbers.
- **split** (the extension since merge 187e2e6f, 2023-03-14, and its forks): the text is split at every ``,``,
  each piece at every ``:``, and piece 0 is the key, piece 1 the value; later pieces are dropped. So
  ``0: 0: (t)`` is frame 0 = ``0``, ``0: 4:(0.4), 5:(0.4)`` is frame 0 = ``4``, and a comma inside a function
  call (``max(a, b)``) breaks the schedule. Keys may be expressions in ``max_f`` and ``s`` (quotes removed).

Both then call a value a number when, with ``'``, ``"``, ``(`` and ``)`` removed (split) or as found (regex), it
matches ``[+-]?[0-9]*(\\.[0-9]+)?``; numbers are interpolated between, anything else is an expression evaluated
at every frame up to the next key. flipbook's own schedules (:mod:`flipbook.spec.schedules`) read commas inside
parentheses and any numeric literal (``5.``, ``1e-3``) as a number; a reading that differs is written out as
the keyframes Deforum sees, and the caller tells the user.

Which parser: the file's ``deforum_git_commit_id`` (see :mod:`flipbook.spec.deforum_versions`); the notebook's
own keys, or a 2022 sampler index, mean the regex; anything else is read as current Deforum reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from flipbook.errors import FlipbookError
from flipbook.spec.deforum_versions import REGEX_PARSER_COMMITS
from flipbook.spec.expressions import ExpressionError, compile_expression
from flipbook.spec.schedules import KEY_NAMES, ScheduleError, parse_schedule

Parser = Literal["regex", "split"]

_REGEX_PAIR = re.compile(r"((?P<frame>[0-9]+):[\s]*\((?P<param>[\S\s]*?)\)([,][\s]?|[\s]?$))")
_DEFORUM_NUMBER = re.compile(r"^(?=.)([+-]?([0-9]*)(\.([0-9]+))?)$")
_COMMIT = re.compile(r"\s*([0-9a-fA-F]{7,40})\b")

PARSER_RULES: dict[Parser, str] = {
    "regex": "it reads only KEY:(VALUE) pairs, each followed by a comma or the end",
    "split": 'it splits keyframes at every "," and ":" and keeps the first two pieces',
}
"""How each parser reads a schedule, for the notes that say a schedule was read the Deforum way."""


@dataclass(frozen=True)
class DeforumVersion:
    """The Deforum that wrote a settings file, as far as the file says: which keyframe parser it had, what it
    floors the frame size to (the notebook to 64, A1111 to 8), and how to name it in a warning."""

    parser: Parser
    label: str
    notebook: bool = False

    @property
    def size_multiple(self) -> int:
        return 64 if self.notebook else 8


def deforum_version(settings: dict[str, Any], notebook_keys: frozenset[str] = frozenset()) -> DeforumVersion:
    """The Deforum that wrote ``settings``: from its ``deforum_git_commit_id``; without one, the notebook when
    a key only the notebook writes is present (``notebook_keys``) or the sampler is a notebook name, the 2022
    extension when the sampler is an index; otherwise current Deforum."""
    raw = settings.get("deforum_git_commit_id")
    if isinstance(raw, str) and raw.strip():
        match = _COMMIT.match(raw)
        if match is None:
            return DeforumVersion(
                "split", f'current Deforum (the file\'s deforum_git_commit_id is "{raw.strip()}")'
            )
        commit = match.group(1).lower()[:8]
        if commit in REGEX_PARSER_COMMITS:
            return DeforumVersion(
                "regex", f"Deforum at commit {commit} (its keyframe parser of before March 2023)"
            )
        return DeforumVersion("split", f"Deforum at commit {commit}")
    sampler = settings.get("sampler")
    if notebook_keys & settings.keys() or (isinstance(sampler, str) and _is_notebook_sampler(sampler)):
        return DeforumVersion("regex", "the Deforum notebook", notebook=True)
    if isinstance(sampler, int) and not isinstance(sampler, bool):
        return DeforumVersion("regex", "the Deforum extension of late 2022")
    return DeforumVersion("split", "current Deforum (the file has no deforum_git_commit_id)")


def _is_notebook_sampler(name: str) -> bool:
    """k-diffusion names (``euler_ancestral``, ``klms``, ``dpmpp_2s_a``): only the notebook wrote those."""
    return re.fullmatch(r"[a-z0-9_]+", name.strip()) is not None and name.strip() not in ("ddim", "plms")


@dataclass(frozen=True)
class DeforumKeyframe:
    """One keyframe as Deforum reads it: the key (a frame number or an expression in max_f and s), the value
    (a number or an expression, or for text schedules the text), and whether Deforum calls the value a number."""

    key: str
    value: str
    number: bool


def deforum_keyframes(text: str, parser: Parser, *, strings: bool = False) -> list[DeforumKeyframe] | None:
    """The keyframes ``parser`` finds in ``text``, in written order; None when that Deforum can't read it (it
    raises on it). ``strings``: a text schedule (sampler, checkpoint), whose values lose every quote and
    parenthesis as Deforum's are."""
    return _split_keyframes(text, strings) if parser == "split" else _regex_keyframes(text, strings)


def _sanitize(text: str) -> str:
    """Deforum's ``sanitize_value``: every ``'``, ``"``, ``(`` and ``)`` removed."""
    return re.sub(r"[\"'()]", "", text)


def _split_keyframes(text: str, strings: bool) -> list[DeforumKeyframe] | None:
    keyframes = []
    for piece in text.split(","):
        if not piece.strip():
            continue  # Deforum fails on an empty piece (a trailing comma); nothing is lost by skipping it
        parts = piece.split(":")
        if len(parts) < 2:
            return None
        key = _sanitize(parts[0]).strip()
        if _DEFORUM_NUMBER.match(key) and key.startswith("-"):
            continue  # a negative frame: Deforum stores it and never reaches it
        if not _DEFORUM_NUMBER.match(key):
            key = parts[0].strip().replace("'", "", 1).replace('"', "", 1)[::-1]
            key = key.replace("'", "", 1).replace('"', "", 1)[::-1].strip()
            if not _is_key_expression(key):
                return None
        value = parts[1].strip()
        number = bool(_DEFORUM_NUMBER.match(_sanitize(value)))
        if strings or number:
            value = _sanitize(value).strip()
        elif not _is_expression(value):
            return None  # numexpr raises on it
        keyframes.append(DeforumKeyframe(key, value, number))
    return keyframes


def _regex_keyframes(text: str, strings: bool) -> list[DeforumKeyframe] | None:
    keyframes = []
    for match in _REGEX_PAIR.finditer(text):
        value = match.group("param")
        number = bool(_DEFORUM_NUMBER.match(value))
        if strings:
            value = value.replace("'", "").replace('"', "")
        elif not number and not _is_expression(value):
            return None  # numexpr raises on it
        keyframes.append(DeforumKeyframe(match.group("frame"), value, number))
    return keyframes or (None if text.strip() else [])


def _is_key_expression(key: str) -> bool:
    return _is_expression(key, KEY_NAMES)


def _is_expression(text: str, names: tuple[str, ...] | None = None) -> bool:
    """Whether ``text`` is an expression flipbook evaluates (over ``names``; default the frame variables)."""
    try:
        compile_expression(text, names=names)
    except ExpressionError:
        return False
    return True


def flipbook_text(keyframes: list[DeforumKeyframe], *, strings: bool = False) -> str:
    """Deforum's keyframes as a flipbook schedule that reads the same: numbers as numbers, expressions as
    expressions (one flipbook would take for a number, ``5.``, is written ``(5.)+0`` so that it holds until the
    next key as Deforum's expression does; after the last key both hold), text values quoted."""
    parts = []
    frames = [int(k.key) if k.key.isdigit() else None for k in keyframes]
    for index, keyframe in enumerate(keyframes):
        later = None in frames or any(f > frames[index] for f in frames if f is not None)
        if strings:
            value = '"' + keyframe.value.replace('"', "") + '"'
        elif keyframe.number or not later or not _flipbook_constant(keyframe.value):
            value = keyframe.value  # a held value with no key after it holds to the end either way
        else:
            value = f"({_unwrapped(keyframe.value)})+0"
        parts.append(f"{keyframe.key}: ({_unwrapped(value)})")
    return ", ".join(parts)


def _unwrapped(value: str) -> str:
    """``value`` without the parentheses around all of it (``((t))`` -> ``t``), so none are doubled."""
    text = value.strip()
    while text.startswith("(") and _closing(text) == len(text) - 1:
        text = text[1:-1].strip()
    return text


def _closing(text: str) -> int | None:
    """Index of the parenthesis that closes the one at index 0."""
    depth = 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return index
    return None


def _flipbook_constant(value: str) -> bool:
    try:
        return compile_expression(value).constant is not None
    except ExpressionError:
        return False


@dataclass(frozen=True)
class ScheduleReading:
    """A Deforum schedule as flipbook takes it, and a note when that differs from how flipbook would read the
    text as written (None when it doesn't)."""

    value: Any
    note: str | None = None


def read_deforum_schedule(
    key: str, value: Any, version: DeforumVersion, *, strings: bool = False
) -> ScheduleReading:
    """``value`` (the text of Deforum key ``key``) as ``version`` reads it. Whitespace is collapsed (presets wrap
    long schedules over lines). When flipbook's own reading of the text is the same, the text is kept; else the
    keyframes Deforum sees are written out and the note says so. Text neither reads is one FlipbookError naming
    the key; text only flipbook reads (``max(a, b)``, which the split parser breaks) is kept, with a note."""
    if not isinstance(value, str):
        return ScheduleReading(value)
    text = " ".join(value.split())
    own = _own_keyframes(text, strings)
    found = deforum_keyframes(text, version.parser, strings=strings)
    if found is None:
        if isinstance(own, str):
            raise FlipbookError(
                key, _shorten(value), "a Deforum schedule such as 0: (1), 30: (2.5)", detail=own
            )
        return ScheduleReading(
            text,
            f"{key}: {version.label} can't read {_shorten(text)!r} ({PARSER_RULES[version.parser]}); "
            "read as written",
        )
    if not found:
        return ScheduleReading(text)
    written = flipbook_text(found, strings=strings)
    if not isinstance(own, str) and own == _own_keyframes(written, strings):
        return ScheduleReading(text)
    return ScheduleReading(
        written,
        f"{key}: {_shorten(text)!r} read as {version.label} reads it ({PARSER_RULES[version.parser]}): "
        f"{_shorten(written)!r}",
    )


def _own_keyframes(text: str, strings: bool) -> list[tuple[str, object]] | str:
    """flipbook's reading of ``text`` as comparable keyframes (key, value), or the parse error's message."""
    try:
        keyframes = parse_schedule(text)
    except ScheduleError as error:
        return error.message
    out: list[tuple[str, object]] = []
    for keyframe in keyframes:
        key: object = keyframe.frame if keyframe.frame is not None else "".join(keyframe.key.split())
        out.append((str(key), _comparable(keyframe.value, strings)))
    return out


def _comparable(value: str, strings: bool) -> object:
    """A keyframe value in a form two spellings of the same value share: text without outer quotes for text
    schedules, the number for constants, the expression without whitespace otherwise."""
    inner = value.strip()
    if len(inner) >= 2 and inner[0] in "\"'" and inner[-1] == inner[0]:
        inner = inner[1:-1]
    if strings:
        return inner
    inner = _unwrapped(inner)
    try:
        constant = compile_expression(inner).constant
    except ExpressionError:
        constant = None
    return constant if constant is not None else "".join(inner.split())


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."

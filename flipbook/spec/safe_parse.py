"""Parsing user text (JSON, JSON with comments, TOML, Python literals) and checking parsed data, with every
size problem reported as one :class:`~flipbook.errors.SpecError` instead of a crash.

What the parsers underneath do with hostile input, and what happens here instead:

- **Nesting.** ``json``, ``ast`` and pydantic recurse per level: 100000 ``[`` raise RecursionError (a 500 in
  the server, a traceback in the CLI); ``tomllib`` recurses too. :func:`check_nesting` scans the brackets
  (outside strings and comments) *before* parsing and refuses more than :data:`MAX_NESTING` levels, naming the
  line; a RecursionError that still escapes a parser becomes the same error. No spec or Deforum file nests
  deeper than a handful of levels.
- **Huge integers.** Python refuses to convert more than ``sys.get_int_max_str_digits()`` (4300) digits to an
  int with a ValueError that tells the user to call ``sys.set_int_max_str_digits``; here it is an error naming
  the number of digits.
- **Lone surrogates.** JSON may spell ``"\\ud800"``, a string that can't be encoded as UTF-8, so it would crash
  whatever writes it later (PNG text, spec.json, the run log). :func:`check_data` refuses one anywhere in the
  data (keys too), naming the field.

:func:`check_data` also bounds the nesting of data that arrives already parsed (a request body FastAPI read,
``--set`` overrides), and ``spec_from_data`` runs it on everything before validation.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flipbook.errors import SpecError

MAX_NESTING = 64
"""Levels of brackets or tables in user text; a spec nests 4, a Deforum file 3."""

_BRACKETS = re.compile(
    r"""
      "(?:[^"\\]+|\\.)*"?    # a double-quoted string (an unterminated one runs to the end)
    | '(?:[^'\\]+|\\.)*'?    # a single-quoted string
    | \#[^\n]*               # a comment: TOML, Python, Deforum files
    | //[^\n]*               # JSON with comments
    | /\*.*?(?:\*/|\Z)
    | [\[{(]
    | [\]})]
    """,
    re.VERBOSE | re.DOTALL,
)
_DIGITS_LIMIT = re.compile(r"\(\s*(\d+)\s*digits\s*\)[^:]*:\s*value has\s*(\d+)\s*digits")


def check_nesting(text: str, *, field: str = "spec", source: str = "text") -> None:
    """Refuse text whose brackets nest deeper than :data:`MAX_NESTING`, before any parser recurses into it.

    Brackets inside strings and comments don't count (a prompt's ``((((masterpiece))))`` is text)."""
    depth = 0
    for match in _BRACKETS.finditer(text):
        token = match.group()
        if token in "[{(":
            depth += 1
            if depth > MAX_NESTING:
                line = text.count("\n", 0, match.start()) + 1
                raise _too_deep(field, source, f"more than {MAX_NESTING} levels of brackets at line {line}")
        elif token in "]})":
            depth = max(depth - 1, 0)


def parse_json(text: str, *, field: str = "spec", source: str = "text") -> Any:
    """``json.loads`` with the checks of this module; a syntax error stays a ``json.JSONDecodeError`` for
    the caller to word (it knows what the text was meant to be)."""
    check_nesting(text, field=field, source=source)
    with size_errors(field, source):
        data = json.loads(text, parse_int=_json_int(field, source))
    check_data(data, field=field)
    return data


def parse_toml(text: str, *, field: str = "spec", source: str = "text") -> dict[str, Any]:
    """``tomllib.loads`` with the checks of this module (syntax errors stay ``tomllib.TOMLDecodeError``)."""
    check_nesting(text, field=field, source=source)
    with size_errors(field, source):
        data = tomllib.loads(text)
    check_data(data, field=field)
    return data


def parse_python_literal(text: str, *, field: str = "spec", source: str = "text") -> Any:
    """``ast.literal_eval`` (never ``eval``) with the checks of this module; syntax errors stay ValueError or
    SyntaxError."""
    check_nesting(text, field=field, source=source)
    with size_errors(field, source):
        data = ast.literal_eval(text)
    check_data(data, field=field)
    return data


@contextmanager
def size_errors(field: str, source: str) -> Iterator[None]:
    """Recursion and integer-size failures of a parser or validator inside as one SpecError."""
    try:
        yield
    except RecursionError:
        raise _too_deep(field, source, "it nests too deeply to read") from None
    except (ValueError, SyntaxError) as error:
        digits = _DIGITS_LIMIT.search(str(error))
        if digits is None:
            raise
        raise _too_many_digits(field, source, int(digits.group(2))) from None


def _json_int(field: str, source: str):
    limit = sys.get_int_max_str_digits()

    def parse_int(text: str) -> int:
        digits = len(text.lstrip("-"))
        if limit and digits > limit:
            raise _too_many_digits(field, source, digits)
        return int(text)

    return parse_int


def _too_deep(field: str, source: str, detail: str) -> SpecError:
    return SpecError(field, source, f"at most {MAX_NESTING} levels of nesting", detail=detail)


def _too_many_digits(field: str, source: str, digits: int) -> SpecError:
    limit = sys.get_int_max_str_digits()
    return SpecError(
        field, source, f"numbers of at most {limit} digits", detail=f"a number has {digits} digits"
    )


def check_data(data: Any, *, field: str = "spec") -> None:
    """Walk parsed data (dicts, lists, tuples, strings; keys too), without recursion: at most
    :data:`MAX_NESTING` levels, and no string that can't be encoded as UTF-8 (a lone surrogate such as
    ``"\\ud800"``). The error names the path of the offending value (``prompts.0``, ``controlnet.1.image``)."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            _check_text(value, path, field)
            continue
        if not isinstance(value, dict | list | tuple):
            continue
        if len(path) >= MAX_NESTING:
            raise _too_deep(_where(path, field), "data", f"more than {MAX_NESTING} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str):
                    _check_text(key, path, field, key=True)
                stack.append((item, (*path, str(key))))
        else:
            stack.extend((item, (*path, str(index))) for index, item in enumerate(value))


def _check_text(text: str, path: tuple[str, ...], field: str, *, key: bool = False) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        what = "a key" if key else "text"
        code = f"U+{ord(text[error.start]):04X}"
        raise SpecError(
            _where(path, field), _shorten(text), f"{what} without lone surrogates (valid Unicode text)",
            detail=f"character {error.start} is {code}, half of a UTF-16 pair, which UTF-8 can't encode",
        ) from None  # fmt: skip


def _where(path: tuple[str, ...], field: str) -> str:
    """``prompts.0`` for data of a spec; the field itself for other data (``body`` of an A1111 request:
    ``prompt``)."""
    return ".".join(path) or field


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."

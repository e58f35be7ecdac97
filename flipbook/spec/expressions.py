"""A safe, vectorised evaluator for the math in schedules (``0:(1.02+0.02*sin(2*pi*t/20))``).

Deforum hands schedule text to ``numexpr.evaluate`` (and forks to ``eval``), which let a shared settings file
run code (CVE-2023-39631). Here the text is parsed with :mod:`ast` and only an allow-list of node types is
accepted; nothing is ever compiled or executed by Python. Evaluation walks the tree with numpy over all frames
at once, in float64, so no input can run code, hang or exhaust memory: the text length, the number of nodes,
the nesting depth, integer literals, constant exponents and argument counts are all capped.

Errors are :class:`ExpressionError` with the 0-based character position of the offending part, so callers can
draw a caret under it (:func:`caret`).
"""

from __future__ import annotations

import ast
import functools
import keyword
import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

MAX_LENGTH = 1000
"""Characters in one expression; real Deforum expressions stay under 400."""
MAX_NODES = 2000
"""AST nodes in one expression (operators and contexts count); a backstop behind the length cap."""
MAX_DEPTH = 200
"""Nesting depth of the AST (a sum of n terms is n deep); keeps the recursive walks, about two Python frames
per level, well inside Python's recursion limit of 1000."""
MAX_INT_LITERAL = 10**18
"""Largest integer literal; bigger integers would lose precision in float64 (write ``1e20`` instead)."""
MAX_EXPONENT = 1000
"""Largest |exponent| when the exponent is a constant (real files use ``cos(...)**220``)."""
MAX_ARGS = 32
"""Most arguments to ``min``/``max``."""

FRAME_NAMES: tuple[str, ...] = ("t", "max_f", "s", "fps", "sec")
"""Variables of a per-frame expression: frame index, last frame index, seed, frames per second, t/fps."""
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


class ExpressionError(ValueError):
    """Bad expression text, with the 0-based character position of the problem within that text."""

    def __init__(self, message: str, position: int = 0):
        super().__init__(message)
        self.message = message
        self.position = position


CARET_WIDTH = 100
"""The most characters of the text :func:`caret` shows: a longer text is cut to a window around the caret."""


def caret(text: str, position: int, width: int = CARET_WIDTH) -> str:
    """Two lines, the text and a ``^`` under ``position``, for error output (newlines shown as spaces). A text
    longer than ``width`` shows only a window of it around ``position``, ``...`` marking what is cut."""
    flat = text.replace("\r", " ").replace("\n", " ").replace("\t", " ")
    position = max(0, min(position, len(flat)))
    if len(flat) <= width:
        return f"{flat}\n{' ' * position}^"
    start = max(0, min(position - width // 2, len(flat) - width))
    end = start + width
    head, tail = ("..." if start else ""), ("..." if end < len(flat) else "")
    return f"{head}{flat[start:end]}{tail}\n{' ' * (len(head) + position - start)}^"


# ---------------------------------------------------------------------------------------------- functions
def _reduce(op: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    """An n-ary elementwise ``min``/``max`` from numpy's binary ufunc."""

    def apply(*args: np.ndarray) -> np.ndarray:
        return functools.reduce(op, args)

    return apply


def _clamp(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``clamp(x, lo, hi)``: min(max(x, lo), hi), elementwise."""
    return np.minimum(np.maximum(x, lo), hi)


def _where(condition: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``where(c, a, b)``: a where c is non-zero, else b (numexpr's ``where``, which Deforum files use)."""
    return np.where(condition != 0, a, b)


_FUNCTIONS: dict[str, tuple[int, int, Callable[..., np.ndarray]]] = {
    "sin": (1, 1, np.sin),
    "cos": (1, 1, np.cos),
    "tan": (1, 1, np.tan),
    "asin": (1, 1, np.arcsin),
    "acos": (1, 1, np.arccos),
    "atan": (1, 1, np.arctan),
    "atan2": (2, 2, np.arctan2),
    "sinh": (1, 1, np.sinh),
    "cosh": (1, 1, np.cosh),
    "tanh": (1, 1, np.tanh),
    "exp": (1, 1, np.exp),
    "log": (1, 1, np.log),
    "log10": (1, 1, np.log10),
    "sqrt": (1, 1, np.sqrt),
    "abs": (1, 1, np.abs),
    "floor": (1, 1, np.floor),
    "ceil": (1, 1, np.ceil),
    "round": (1, 1, np.round),  # half to even, as Python's round()
    "min": (2, MAX_ARGS, _reduce(np.minimum)),
    "max": (2, MAX_ARGS, _reduce(np.maximum)),
    "clamp": (3, 3, _clamp),
    "where": (3, 3, _where),
    # numexpr's spellings, so Deforum files that use them keep working.
    "arcsin": (1, 1, np.arcsin),
    "arccos": (1, 1, np.arccos),
    "arctan": (1, 1, np.arctan),
    "arctan2": (2, 2, np.arctan2),
}
FUNCTIONS: tuple[str, ...] = tuple(_FUNCTIONS)

_BINARY: dict[type[ast.operator], Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.FloorDiv: np.floor_divide,
    ast.Mod: np.mod,  # sign of the divisor, as Python's %
    ast.Pow: np.power,
}
_COMPARE: dict[type[ast.cmpop], Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
}
_OPERATOR_SYMBOLS = {
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.Invert: "~",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}
_NOT_ALLOWED = {
    ast.Attribute: "attribute access (a.b)",
    ast.Subscript: "indexing (x[0])",
    ast.Slice: "a slice",
    ast.Lambda: "lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.List: "a list",
    ast.Tuple: "a tuple",
    ast.Set: "a set",
    ast.Dict: "a dict",
    ast.JoinedStr: "an f-string",
    ast.FormattedValue: "an f-string",
    ast.NamedExpr: "assignment (:=)",
    ast.Starred: "a starred argument (*x)",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}

_ALLOWED_SUMMARY = (
    "allowed: numbers, the names {names}, + - * / // % **, comparisons, and/or/not, `a if c else b`, "
    "and calls of "
    + ", ".join(
        {"clamp": "clamp(x, lo, hi)", "where": "where(c, a, b)"}.get(f, f)
        for f in FUNCTIONS
        if not f.startswith("arc")
    )
)

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_WHITESPACE = str.maketrans({"\t": " ", "\n": " ", "\r": " ", "\f": " ", "\v": " "})


# --------------------------------------------------------------------------------------------- compiling
@dataclass(frozen=True, eq=False)
class CompiledExpression:
    """A validated expression, ready to evaluate many times.

    ``constant`` is set when the text is just a number (``0.65``, ``-2``, ``(1e-3)``): schedules interpolate
    between such keyframes and evaluate all others at every frame.
    """

    text: str
    tree: ast.expr
    offset: int  # characters of leading whitespace stripped before parsing
    names: tuple[str, ...]  # the variables the text may use
    used: Mapping[str, int]  # variables it does use → position of the first use (read-only: cached)
    constant: float | None

    @property
    def uses_frame(self) -> bool:
        """Whether the value changes from frame to frame through ``t``/``sec`` (other array variables aside)."""
        return "t" in self.used or "sec" in self.used

    def evaluate(
        self, variables: Mapping[str, float | np.ndarray], *, check_finite: bool = True
    ) -> np.ndarray:
        """Evaluate over all frames at once; returns float64 with the broadcast shape of the array variables.

        Scalars are broadcast, so ``0.5`` over ``t = arange(120)`` gives 120 values; with no array variables
        the result is a 0-d array. ``sec`` is derived from ``t / fps`` when not given. With ``check_finite``,
        inf or NaN at any frame is an error naming the frame (``t``) where it first appears.
        """
        env = _environment(variables)
        shape = np.broadcast_shapes(*(np.shape(v) for v in env.values()))
        for name, position in self.used.items():
            if name not in env:
                available = ", ".join(sorted(env)) or "none"
                raise ExpressionError(f"{name!r} is not available here; available: {available}", position)
        with np.errstate(all="ignore"):
            result = _evaluate(self.tree, env)
        out = np.array(np.broadcast_to(np.asarray(result, dtype=np.float64), shape), dtype=np.float64)
        if check_finite:
            bad = first_nonfinite(out)
            if bad is not None:
                value = out.flat[bad]
                where = f" at frame {_frame_label(env, bad)}" if out.ndim else ""
                raise ExpressionError(
                    f"the expression gives {value}{where}; values must be finite", self.offset
                )
        return out


def compile_expression(
    text: str, extra_names: Iterable[str] = (), *, names: Iterable[str] | None = None
) -> CompiledExpression:
    """Parse and validate once. ``names`` replaces the frame variables (:data:`FRAME_NAMES`), e.g. for keys;
    ``extra_names`` adds caller variables such as ``beat``. ``pi`` and ``e`` are always available."""
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be text, not {type(text).__name__}", 0)
    base = tuple(FRAME_NAMES if names is None else names)
    extra = tuple(extra_names)
    for name in (*base, *extra):
        _check_variable_name(name)
    allowed = tuple(dict.fromkeys((*base, *extra)))
    if len(text) <= _CACHED_LENGTH:
        return _compile_cached(text, allowed)
    return _compile(text, allowed)


def evaluate(
    expr: str | CompiledExpression, variables: Mapping[str, float | np.ndarray], *, check_finite: bool = True
) -> np.ndarray:
    """Compile (if needed) and evaluate; every key of ``variables`` is an allowed name."""
    if isinstance(expr, str):
        expr = compile_expression(expr, [k for k in variables if k not in FRAME_NAMES])
    return expr.evaluate(variables, check_finite=check_finite)


def first_nonfinite(values: np.ndarray) -> int | None:
    """Flat index of the first inf/NaN, or None; schedules use it to name the bad frame."""
    bad = np.flatnonzero(~np.isfinite(values))
    return int(bad[0]) if bad.size else None


def _check_variable_name(name: str) -> None:
    """Caller-supplied names must be plain identifiers that can't shadow functions or constants."""
    if not name.isidentifier() or keyword.iskeyword(name) or name in _FUNCTIONS or name in CONSTANTS:
        raise ValueError(f"{name!r} can't be an expression variable")


_CACHED_LENGTH = 64


@functools.lru_cache(maxsize=4096)
def _compile_cached(text: str, names: tuple[str, ...]) -> CompiledExpression:
    """Short texts only: per-frame schedules repeat the same few values thousands of times, and a cache of
    short entries can't be grown into a memory problem by many distinct long inputs."""
    return _compile(text, names)


def _compile(text: str, names: tuple[str, ...]) -> CompiledExpression:
    """Validate ``text`` against the allow-list (see :func:`compile_expression`)."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"the expression is {len(text)} characters long; at most {MAX_LENGTH}", MAX_LENGTH
        )
    stripped = text.lstrip(" \t\n\r\f\v")
    offset = len(text) - len(stripped)
    if not stripped.strip():
        raise ExpressionError("the expression is empty; expected a number or a formula like 1+0.5*sin(t)", 0)
    _reject_characters(stripped, offset)
    if _NUMBER.fullmatch(stripped.rstrip()):
        number = _number_literal(stripped.rstrip(), offset)
        tree: ast.expr = ast.Constant(number, col_offset=0)
        return CompiledExpression(text, tree, offset, names, MappingProxyType({}), number)
    flat = stripped.translate(_WHITESPACE)
    try:
        # Silence e.g. "invalid decimal literal" for `1and 2`: problems are reported as errors, not warnings.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(flat, mode="eval").body
    except SyntaxError as error:
        column = max(0, min((error.offset or 1) - 1, len(flat)))
        reason = (error.msg or "invalid syntax").split(" (")[0]
        raise ExpressionError(f"not a valid expression ({reason})", offset + column) from None
    except (RecursionError, MemoryError):
        raise ExpressionError("the expression is nested too deeply", offset) from None
    except (ValueError, OverflowError):
        raise ExpressionError("not a valid expression", offset) from None
    checker = _Checker(flat, offset, names)
    checker.count(tree)
    checker.check(tree)
    return CompiledExpression(text, tree, offset, names, MappingProxyType(checker.used), _literal(tree))


def _reject_characters(text: str, offset: int) -> None:
    """Comments, line continuations and control characters have no business in a formula."""
    for index, char in enumerate(text):
        if char == "#":
            raise ExpressionError("comments (#) are not allowed in an expression", offset + index)
        if char == "\\":
            raise ExpressionError("backslashes are not allowed in an expression", offset + index)
        if char < " " and char not in "\t\n\r\f\v":
            raise ExpressionError(f"control character {char!r} is not allowed", offset + index)


def _number_literal(token: str, position: int) -> float:
    """A plain number as float64, refusing integers too big to represent and non-finite floats."""
    digits = token.lstrip("+-")
    if digits.isdigit() and int(digits) > MAX_INT_LITERAL:
        raise ExpressionError(
            f"integer {digits[:20]}... is too large; at most {MAX_INT_LITERAL:.0e}", position
        )
    value = float(token)
    if not math.isfinite(value):
        raise ExpressionError(f"number {token!r} is out of range (not finite in float64)", position)
    return value


def _literal(tree: ast.expr) -> float | None:
    """The value of a plain (optionally signed) number, else None."""
    sign = 1.0
    while isinstance(tree, ast.UnaryOp) and isinstance(tree.op, ast.UAdd | ast.USub):
        sign = -sign if isinstance(tree.op, ast.USub) else sign
        tree = tree.operand
    if isinstance(tree, ast.Constant) and type(tree.value) in (int, float):
        return sign * float(tree.value)
    return None


class _Checker:
    """Walks a parsed tree and rejects everything outside the allow-list, recording positions."""

    def __init__(self, flat: str, offset: int, names: tuple[str, ...]):
        self.encoded = flat.encode("utf-8")
        self.offset = offset
        self.names = names
        self.used: dict[str, int] = {}

    def position(self, node: ast.AST) -> int:
        """ast columns are UTF-8 byte offsets on the (single) line; callers want characters. For ``a.b`` and
        ``a[0]`` the caret goes under the ``.``/``[``, just after the object."""
        if isinstance(node, ast.Attribute | ast.Subscript):
            column = node.value.end_col_offset or 0
        else:
            column = getattr(node, "col_offset", 0) or 0
        return self.offset + len(self.encoded[:column].decode("utf-8", errors="ignore"))

    def fail(self, node: ast.AST, what: str) -> ExpressionError:
        summary = _ALLOWED_SUMMARY.format(names=", ".join((*self.names, *CONSTANTS)))
        return ExpressionError(f"{what} is not allowed; {summary}", self.position(node))

    def count(self, tree: ast.AST) -> None:
        """Node budget, counted iteratively so even pathological trees can't recurse."""
        for index, _ in enumerate(ast.walk(tree)):
            if index >= MAX_NODES:
                raise ExpressionError(
                    f"the expression is too complex (more than {MAX_NODES} parts)", self.offset
                )

    def check(self, tree: ast.expr) -> None:
        """Validate every node depth-first, left to right (the first problem in the text is the one reported),
        with an explicit stack: no recursion, however deep the caller's own stack already is. Constant
        subtrees are folded on the way back up so that a constant exponent can be capped."""
        folded: dict[int, np.ndarray] = {}  # id(node) → value of a constant subtree
        stack: list[tuple[ast.AST, int, bool]] = [(tree, 1, False)]
        while stack:
            node, depth, done = stack.pop()
            if done:
                self.fold(node, folded)
                continue
            if depth > MAX_DEPTH:
                raise ExpressionError(
                    f"the expression is nested too deeply (more than {MAX_DEPTH} levels)", self.position(node)
                )
            self.check_node(node)
            stack.append((node, depth, True))
            stack.extend((child, depth + 1, False) for child in reversed(_children(node)))

    def check_node(self, node: ast.AST) -> None:
        """The allow-list for one node; its children are checked separately."""
        if isinstance(node, ast.Constant):
            self.check_constant(node)
        elif isinstance(node, ast.Name):
            self.check_name(node)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.UAdd | ast.USub | ast.Not):
                raise self.fail(node, f"the operator {_OPERATOR_SYMBOLS.get(type(node.op), '?')!r}")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise self.fail(node, f"the operator {_OPERATOR_SYMBOLS.get(type(node.op), '?')!r}")
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _COMPARE:
                    raise self.fail(node, f"the comparison {_OPERATOR_SYMBOLS.get(type(op), '?')!r}")
        elif isinstance(node, ast.Call):
            self.check_call(node)
        elif not isinstance(node, ast.BoolOp | ast.IfExp):
            node = _leftmost_access(node)
            raise self.fail(node, _NOT_ALLOWED.get(type(node), type(node).__name__))

    def check_constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool) or value is None or value is Ellipsis:
            raise self.fail(node, f"{value!r}")
        if isinstance(value, str | bytes):
            raise self.fail(node, "text (a string)")
        if isinstance(value, complex):
            raise self.fail(node, "a complex number")
        if isinstance(value, int) and abs(value) > MAX_INT_LITERAL:
            raise ExpressionError(
                f"integer literal is too large; at most {MAX_INT_LITERAL:.0e}", self.position(node)
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ExpressionError("number is out of range (not finite in float64)", self.position(node))

    def check_name(self, node: ast.Name) -> None:
        if node.id in CONSTANTS:
            return
        if node.id in self.names:
            self.used.setdefault(node.id, self.position(node))
            return
        if node.id in _FUNCTIONS:
            raise self.fail(node, f"{node.id!r} without a call (write {node.id}(...))")
        if node.id in FRAME_NAMES:
            available = ", ".join((*self.names, *CONSTANTS))
            raise ExpressionError(
                f"{node.id!r} is not available here; available: {available}", self.position(node)
            )
        raise self.fail(node, f"the name {node.id!r}")

    def check_call(self, node: ast.Call) -> None:
        if not isinstance(node.func, ast.Name):
            self.check_node(node.func)  # `a.b()` is reported as the attribute access it is
            raise self.fail(node, "calling the result of an expression")
        if node.func.id not in _FUNCTIONS:
            raise self.fail(node, f"calling {node.func.id!r}")
        if node.keywords:
            raise self.fail(node.keywords[0].value, "a keyword argument")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.fail(arg, "a starred argument (*x)")
        low, high, _ = _FUNCTIONS[node.func.id]
        if not low <= len(node.args) <= high:
            wanted = str(low) if low == high else f"{low} to {high}"
            raise ExpressionError(
                f"{node.func.id}() takes {wanted} argument{'s' if high > 1 else ''}, got {len(node.args)}",
                self.position(node),
            )

    def fold(self, node: ast.AST, folded: dict[int, np.ndarray]) -> None:
        """Compute ``node`` if it is constant (children folded, no variables); cap constant exponents."""
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and id(node.right) in folded:
            value = float(folded[id(node.right)])
            if not math.isfinite(value) or abs(value) > MAX_EXPONENT:
                raise ExpressionError(
                    f"exponent {value:g} is too large; |exponent| must be at most {MAX_EXPONENT}",
                    self.position(node.right),
                )
        if isinstance(node, ast.Name) and node.id not in CONSTANTS:
            return
        children = _children(node)
        if all(id(child) in folded for child in children):
            with np.errstate(all="ignore"):
                folded[id(node)] = _apply(node, [folded.pop(id(child)) for child in children], _CONSTANT_ENV)


def _leftmost_access(node: ast.AST) -> ast.AST:
    """In ``().__class__.__bases__[0]`` point at the first ``.``/``[``, where the escape attempt starts."""
    while isinstance(node, ast.Attribute | ast.Subscript):
        inner = node.value
        if isinstance(inner, ast.Call):
            inner = inner.func
        if not isinstance(inner, ast.Attribute | ast.Subscript):
            break
        node = inner
    return node


# -------------------------------------------------------------------------------------------- evaluating
def _environment(variables: Mapping[str, float | np.ndarray]) -> dict[str, np.ndarray]:
    """Variables as float64 arrays/scalars, plus the constants and ``sec`` when it can be derived."""
    env: dict[str, np.ndarray] = {}
    for name, value in variables.items():
        if isinstance(value, bool):
            raise TypeError(f"expression variable {name!r} must be a number or an array, not bool")
        env[name] = np.asarray(value, dtype=np.float64)
    if "sec" not in env and "t" in env and "fps" in env:
        with np.errstate(all="ignore"):
            env["sec"] = env["t"] / env["fps"]
    for name, value in CONSTANTS.items():
        env[name] = np.float64(value)
    return env


def _frame_label(env: Mapping[str, np.ndarray], index: int) -> str:
    """The frame number for an error: t's value at that index when t is an array, else the index."""
    t = env.get("t")
    if t is not None and np.ndim(t) and index < np.size(t):
        return f"{float(np.ravel(t)[index]):g}"
    return str(index)


def _truthy(value: np.ndarray) -> np.ndarray:
    """Python truthiness, elementwise: non-zero (NaN included) is true."""
    return np.asarray(value) != 0


def _children(node: ast.AST) -> list[ast.expr]:
    """The operand nodes of an allowed node, in source order (a call's function name is not an operand)."""
    if isinstance(node, ast.UnaryOp):
        return [node.operand]
    if isinstance(node, ast.BinOp):
        return [node.left, node.right]
    if isinstance(node, ast.BoolOp):
        return list(node.values)
    if isinstance(node, ast.Compare):
        return [node.left, *node.comparators]
    if isinstance(node, ast.IfExp):
        return [node.test, node.body, node.orelse]
    if isinstance(node, ast.Call):
        return list(node.args)
    return []


def _evaluate(tree: ast.expr, env: Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluate a validated tree bottom-up with an explicit stack (no recursion). Every branch is computed,
    vectorised; problems show up as inf/NaN, which callers check."""
    values: dict[int, np.ndarray] = {}
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, done = stack.pop()
        children = _children(node)
        if done:
            values[id(node)] = _apply(node, [values.pop(id(child)) for child in children], env)
        else:
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(children))
    return values[id(tree)]


def _apply(node: ast.AST, operands: list[np.ndarray], env: Mapping[str, np.ndarray]) -> np.ndarray:
    """One node's value from its operands' values."""
    if isinstance(node, ast.Constant):
        return np.float64(node.value)
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.USub):
            return np.negative(operands[0])
        if isinstance(node.op, ast.Not):
            return np.logical_not(_truthy(operands[0])).astype(np.float64)
        return operands[0]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](operands[0], operands[1])
    if isinstance(node, ast.BoolOp):
        result = operands[-1]
        for value in reversed(operands[:-1]):
            # Python's value semantics: `a and b` is b where a is true, else a; `a or b` is a where a is true.
            if isinstance(node.op, ast.And):
                result = np.where(_truthy(value), result, value)
            else:
                result = np.where(_truthy(value), value, result)
        return result
    if isinstance(node, ast.Compare):
        result = np.True_
        for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
            result = np.logical_and(result, _COMPARE[type(op)](left, right))
        return np.asarray(result, dtype=np.float64)
    if isinstance(node, ast.IfExp):
        return np.where(_truthy(operands[0]), operands[1], operands[2])
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _FUNCTIONS[node.func.id][2](*operands)
    raise ExpressionError(f"{type(node).__name__} is not allowed", 0)  # unreachable after validation


_CONSTANT_ENV: dict[str, np.ndarray] = {name: np.float64(value) for name, value in CONSTANTS.items()}

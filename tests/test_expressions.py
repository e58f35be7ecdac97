"""The safe expression evaluator: Deforum formulas work, everything else is refused with a position."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.spec import expressions
from flipbook.spec.expressions import (
    FUNCTIONS,
    MAX_DEPTH,
    MAX_LENGTH,
    ExpressionError,
    caret,
    compile_expression,
    evaluate,
)

T = np.arange(120, dtype=np.float64)
FRAME = {"t": T, "max_f": 119.0, "s": 42.0, "fps": 15.0}


def run(text: str, **extra: float | np.ndarray) -> np.ndarray:
    return evaluate(text, {**FRAME, **extra})


# ------------------------------------------------------------------------------------------- what works
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.0025+0.002*sin(1.25*3.14*t/30)", 1.0025 + 0.002 * np.sin(1.25 * 3.14 * T / 30)),
        ("1.02+0.02*sin(2*3.14*t/20)", 1.02 + 0.02 * np.sin(2 * 3.14 * T / 20)),
        ("-0.06*(cos(3.141*t/15)**100)+0.06", -0.06 * (np.cos(3.141 * T / 15) ** 100) + 0.06),
        ("(t % 3)+t/3", (T % 3) + T / 3),
        ("t%15", T % 15),
        ("where(t>10, 1, 0)", np.where(T > 10, 1.0, 0.0)),
        ("max(0.5, sin(t))", np.maximum(0.5, np.sin(T))),
        ("min(t, 5, max_f - t)", np.minimum(np.minimum(T, 5), 119 - T)),
        ("clamp(t - 10, 0, 50)", np.clip(T - 10, 0, 50)),
        ("0.65", np.full(120, 0.65)),
        ("s", np.full(120, 42.0)),
        ("sec", T / 15),
        ("2*pi*sec + e", 2 * math.pi * T / 15 + math.e),
        ("t // 7 - 2 ** 3", T // 7 - 8),
        ("-t + +t", np.zeros(120)),
        ("1 if t < 30 else 2", np.where(T < 30, 1.0, 2.0)),
        ("10 < t <= 20", ((T > 10) & (T <= 20)).astype(float)),
        ("t == 5 or t != t", (T == 5).astype(float)),
        ("not t", (T == 0).astype(float)),
        ("atan2(1, t) + arctan2(1, t)", 2 * np.arctan2(1, T)),
        (
            "floor(t / 4) + ceil(t / 4) + round(t / 4) + abs(-t)",
            np.floor(T / 4) + np.ceil(T / 4) + np.round(T / 4) + T,
        ),
        (
            "sqrt(t) + exp(-t) + log(t + 1) + log10(t + 1)",
            np.sqrt(T) + np.exp(-T) + np.log(T + 1) + np.log10(T + 1),
        ),
        (
            "sinh(t / 100) + cosh(t / 100) + tanh(t) + tan(t / 200)",
            np.sinh(T / 100) + np.cosh(T / 100) + np.tanh(T) + np.tan(T / 200),
        ),
        ("asin(t / 200) + acos(t / 200) + atan(t)", np.arcsin(T / 200) + np.arccos(T / 200) + np.arctan(T)),
        ("0x10 + 1_000 + .5 + 5.", np.full(120, 16 + 1000 + 0.5 + 5.0)),
    ],
)
def test_evaluates_like_numpy(text: str, expected: np.ndarray) -> None:
    result = run(text)
    assert result.dtype == np.float64 and result.shape == (120,)
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)


def test_and_or_have_python_value_semantics_elementwise() -> None:
    t = np.array([0.0, 1.0, 2.0])
    np.testing.assert_array_equal(evaluate("t and 5", {"t": t}), [0, 5, 5])
    np.testing.assert_array_equal(evaluate("t or 5", {"t": t}), [5, 1, 2])
    np.testing.assert_array_equal(evaluate("t > 0 and t < 2", {"t": t}), [0, 1, 0])


def test_both_branches_are_evaluated_but_only_the_chosen_one_counts() -> None:
    # 1/t is inf at t=0 and log(t-5) NaN below 5, but those values are never selected.
    np.testing.assert_array_equal(run("where(t > 0, 1/t, 0)")[:2], [0, 1])
    assert np.isfinite(run("log(t - 5) if t > 5 else 0")).all()


def test_scalars_are_broadcast_and_no_arrays_give_a_0d_array() -> None:
    assert evaluate("1 + 2", {"t": np.arange(4)}).tolist() == [3, 3, 3, 3]
    result = evaluate("max_f - 2", {"max_f": 119})
    assert result.shape == () and float(result) == 117.0


def test_extra_variables_scalars_and_arrays() -> None:
    beat = np.linspace(0, 1, 120)
    np.testing.assert_allclose(run("amp * beat + bpm / 60", beat=beat, amp=2.0, bpm=120.0), 2 * beat + 2)
    compiled = compile_expression("beat * 2", ["beat"])
    np.testing.assert_allclose(compiled.evaluate({"t": T, "beat": beat}), beat * 2)
    with pytest.raises(ExpressionError, match="'beat' is not allowed"):
        compile_expression("beat * 2")
    with pytest.raises(ValueError):
        compile_expression("1", ["sin"])  # a variable can't shadow a function


def test_compile_once_evaluate_many() -> None:
    compiled = compile_expression("1 + 0.5*sin(t)")
    assert compiled.constant is None and compiled.uses_frame
    for n in (1, 10, 1000):
        t = np.arange(n, dtype=float)
        np.testing.assert_allclose(compiled.evaluate({"t": t}), 1 + 0.5 * np.sin(t))
    assert compile_expression(" (-2.5) ").constant == -2.5
    assert compile_expression("1e-3").constant == 0.001
    assert compile_expression("2*3").constant is None  # a formula, even if constant


def test_vectorised_equals_frame_by_frame() -> None:
    compiled = compile_expression("where(t % 7 < 3, sin(t) ** 2, -cos(sec)) + (t > 50 and t < 60)")
    whole = compiled.evaluate({"t": T, "fps": 12.0})
    single = [float(compiled.evaluate({"t": np.float64(t), "fps": 12.0})) for t in T]
    np.testing.assert_allclose(whole, single, rtol=0, atol=0)


def test_variable_missing_at_evaluation_is_an_error_at_its_use() -> None:
    compiled = compile_expression("max_f - t")
    with pytest.raises(ExpressionError, match="'t' is not available here") as info:
        compiled.evaluate({"max_f": 10.0})
    assert info.value.position == 8


def test_names_can_be_restricted_for_keys() -> None:
    compiled = compile_expression("max_f-2", names=("max_f", "s", "fps"))
    assert float(compiled.evaluate({"max_f": 119.0})) == 117.0
    with pytest.raises(ExpressionError, match="'t' is not available here; available: max_f, s, fps") as info:
        compile_expression("max_f - t", names=("max_f", "s", "fps"))
    assert info.value.position == 8


# ------------------------------------------------------------------------------------------ what doesn't
@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("__import__('os')", 0, "calling '__import__'"),
        ("__import__('os').system('ls')", 16, "attribute access"),
        ("().__class__", 2, "attribute access"),
        ("().__class__.__bases__[0].__subclasses__()", 2, "attribute access"),
        ("sin(1)(2)", 0, "calling the result"),
        ("a.b", 1, "attribute access"),
        ("t.real", 1, "attribute access"),
        ("x[0]", 1, "indexing"),
        ("t[0]", 1, "indexing"),
        ("lambda: 1", 0, "lambda"),
        ("[1,2]", 0, "a list"),
        ("(1, 2)", 0, "a tuple"),
        ("{1}", 0, "a set"),
        ("{1: 2}", 0, "a dict"),
        ("[t for t in t]", 0, "a comprehension"),
        ("sum(t for t in t)", 0, "calling 'sum'"),
        ('"s"', 0, "a string"),
        ("b's'", 0, "a string"),
        ("f'{t}'", 0, "an f-string"),
        ("(y := 1)", 1, "assignment"),
        ("open", 0, "the name 'open'"),
        ("open('x')", 0, "calling 'open'"),
        ("eval('1')", 0, "calling 'eval'"),
        ("sin", 0, "'sin' without a call"),
        ("sin(x=1)", 6, "a keyword argument"),
        ("sin(*t)", 4, "a starred argument"),
        ("t @ t", 0, "'@'"),
        ("t | 1", 0, "'|'"),
        ("~t", 0, "'~'"),
        ("t is t", 0, "'is'"),
        ("t in t", 0, "'in'"),
        ("True", 0, "True"),
        ("None", 0, "None"),
        ("1j", 0, "a complex number"),
        ("x", 0, "the name 'x'"),
        ("1 + foo * 2", 4, "the name 'foo'"),
        ("sin(1, 2)", 0, "sin() takes 1 argument, got 2"),
        ("clamp(1, 2)", 0, "clamp() takes 3 arguments, got 2"),
        ("min(1)", 0, "min() takes 2 to 32 arguments"),
        ("where(t)", 0, "where() takes 3 arguments"),
        ("9**9**9", 3, "exponent"),
        ("2 ** 1001", 5, "exponent"),
        ("1e999", 0, "out of range"),
        ("9" * 30, 0, "too large"),
        ("t + 1 # comment", 6, "comments"),
        ("t + \\\n1", 4, "backslashes"),
        ("1 +\x00 2", 3, "control character"),
        ("1 +* 2", 3, "not a valid expression"),
        ("1 if t", 0, "not a valid expression"),
        ("", 0, "empty"),
        ("   ", 0, "empty"),
    ],
)
def test_rejected_with_position(text: str, position: int, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    assert fragment in info.value.message
    assert info.value.position == position
    assert isinstance(info.value, ValueError)


def test_rejection_message_says_what_is_allowed() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("os.system")
    message = info.value.message
    assert "is not allowed" in message and "t, max_f, s, fps, sec, pi, e" in message and "sin" in message


def test_positions_account_for_leading_whitespace_newlines_and_unicode() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("  \n t +\n  foo")
    assert info.value.position == 10
    with pytest.raises(ExpressionError) as info:
        compile_expression("ééé + x")
    assert info.value.position == 0  # 'ééé' itself is an unknown name; positions are characters, not bytes
    with pytest.raises(ExpressionError) as info:
        compile_expression("t + (ééé)")
    assert info.value.position == 5
    with pytest.raises(ExpressionError) as info:
        compile_expression("(1 + sin(t)) + é.b")
    assert info.value.position == 16


def test_non_finite_results_are_errors_naming_the_frame() -> None:
    with pytest.raises(ExpressionError, match="inf"):
        evaluate("1e308*1e308", {})
    with pytest.raises(ExpressionError, match="inf at frame 0"):
        run("1e308*1e308")
    with pytest.raises(ExpressionError, match="at frame 12"):
        run("1 / (t - 12)")
    with pytest.raises(ExpressionError, match="nan at frame 0"):
        run("sqrt(t - 5)")
    assert np.isinf(evaluate("1/(t-12)", FRAME, check_finite=False)).any()


def test_length_and_depth_caps() -> None:
    with pytest.raises(ExpressionError, match="characters long") as info:
        compile_expression("1+" * MAX_LENGTH + "1")
    assert info.value.position == MAX_LENGTH
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression("-" * (MAX_DEPTH + 5) + "1")
    compile_expression("+".join(["sin(t)"] * 140))  # a long sum is deep but allowed
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression("+".join(["t"] * 450))
    with pytest.raises(ExpressionError):
        compile_expression("(" * 400 + "1" + ")" * 400)
    compile_expression("(" * 40 + "t" + ")" * 40)  # reasonable nesting is fine
    compile_expression("cos(3.141*(t+5)/110)**220")  # real presets use big exponents


def test_node_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(expressions, "MAX_NODES", 10)
    with pytest.raises(ExpressionError, match="too complex"):
        compile_expression("(t + 1) * (t - 2) * 3.5")


def test_worst_cases_end_in_a_result_or_an_error() -> None:
    """The caps keep these bounded; how fast they run is measured elsewhere, not asserted here."""
    nasty = [
        "9**9**9**9**9",
        "-" * 999 + "1",
        "not " * 240 + "1",
        "(" * 199 + "1" + ")" * 199,
        "+".join(["sin(t)"] * 140),
        "max(" + ",".join(["t"] * 32) + ")",
        "t" + "**1" * 300,
    ]
    for text in nasty:
        with contextlib.suppress(ExpressionError):
            assert evaluate(text, {"t": np.arange(100_000.0)}).shape == (100_000,)


def test_caret_points_at_the_position() -> None:
    assert caret("1 + foo", 4) == "1 + foo\n    ^"


@given(st.text(alphabet="0123456789+t() ", min_size=1, max_size=600), st.integers(0, 700))
def test_caret_of_a_long_text_is_a_window_that_still_points_at_the_character(text, position) -> None:
    """A 1000-character schedule's error shows at most about 100 characters, and the caret stays under the
    character it names."""
    shown, mark = caret(text, position).split("\n")
    assert len(shown) <= 106 and mark.strip() == "^"
    at = min(position, len(text))
    if at < len(text):
        assert shown[len(mark) - 1] == text[at]
    if len(text) <= 100:
        assert shown == text


def test_function_list_is_the_documented_one() -> None:
    documented = "sin cos tan asin acos atan atan2 sinh cosh tanh exp log log10 sqrt abs floor ceil round min max clamp where"
    assert set(documented.split()) <= set(FUNCTIONS)
    assert set(FUNCTIONS) - set(documented.split()) == {
        "arcsin",
        "arccos",
        "arctan",
        "arctan2",
    }  # numexpr names


# -------------------------------------------------------------------------------------------- properties
_TOKENS = [
    "t", "max_f", "s", "fps", "sec", "pi", "e", "x", "0", "1", "2.5", "1e3", "-", "+", "*", "/", "//", "%", "**",
    "(", ")", ",", "<", ">=", "==", " and ", " or ", "not ", " if ", " else ", "sin(", "max(", "where(",
    "clamp(", "round(", "[", "]", ".", "'", "lambda", ":", "__class__", " ", "9**9", "1e308",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(st.sampled_from(_TOKENS), max_size=60).map("".join)))
def test_arbitrary_text_only_raises_expression_error(text: str) -> None:
    try:
        result = evaluate(text, FRAME)
    except ExpressionError as error:
        assert 0 <= error.position <= max(len(text), MAX_LENGTH)
    else:
        assert result.shape == (120,) and np.isfinite(result).all()


def _expressions() -> st.SearchStrategy[str]:
    leaves = st.sampled_from(["t", "max_f", "s", "sec", "pi", "1", "2", "0.5", "3"])

    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.tuples(children, st.sampled_from(["+", "-", "*", "/", "%", "<", "and", "or"]), children)
        return st.one_of(
            binary.map(lambda p: f"({p[0]} {p[1]} {p[2]})"),
            st.tuples(st.sampled_from(["sin", "cos", "abs", "floor", "sqrt"]), children).map(
                lambda p: f"{p[0]}({p[1]})"
            ),
            st.tuples(children, children, children).map(lambda p: f"where({p[0]}, {p[1]}, {p[2]})"),
        )

    return st.recursive(leaves, extend, max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(_expressions())
def test_generated_formulas_are_vectorised_consistently(text: str) -> None:
    compiled = compile_expression(text)
    t = np.arange(30, dtype=np.float64)
    variables = {"max_f": 29.0, "s": 3.0, "fps": 10.0}
    whole = compiled.evaluate({**variables, "t": t}, check_finite=False)
    single = [float(compiled.evaluate({**variables, "t": value}, check_finite=False)) for value in t]
    np.testing.assert_array_equal(whole, single)

"""Deforum schedules: parsing, Deforum's interpolation semantics, error positions, real settings files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.spec.expressions import ExpressionError, compile_expression
from flipbook.spec.schedules import (
    Keyframe,
    Schedule,
    ScheduleError,
    natural_cubic,
    parse_schedule,
    resolve_schedule,
    resolve_string_schedule,
)

DEFORUM_FILES = Path(__file__).resolve().parents[1] / ".." / "shared" / "testdata" / "deforum"


def resolve(text: str, max_frames: int = 100, **options: object) -> np.ndarray:
    options = {"fps": 15.0, "seed": 7, **options}
    return resolve_schedule(text, max_frames=max_frames, **options)  # type: ignore[arg-type]


def error_of(text: str, max_frames: int = 100) -> ScheduleError:
    with pytest.raises(ScheduleError) as info:
        resolve(text, max_frames)
    return info.value


# ------------------------------------------------------------------------------------------------ parsing
def test_parse_keeps_keys_values_and_positions() -> None:
    text = '0:(0), 30: (15),\n  60 :( -2 ), "max_f-2":(max(0.5, sin(t)))'
    keyframes = parse_schedule(text)
    assert [(k.key, k.value, k.frame) for k in keyframes] == [
        ("0", "0", 0),
        ("30", "15", 30),
        ("60", "-2", 60),
        ("max_f-2", "max(0.5, sin(t))", None),
    ]
    for keyframe in keyframes:
        assert text[keyframe.key_position :].startswith(keyframe.key)
        assert text[keyframe.value_position :].startswith(keyframe.value)
    assert isinstance(keyframes[0], Keyframe)


def test_commas_and_colons_inside_parentheses_or_quotes_do_not_split() -> None:
    # Deforum splits on every comma, so max(a,b) breaks there; here it doesn't.
    values = resolve("0:(max(0.5, sin(t))), 10:(clamp(t, 0, 12)), 20:(where(t > 25, 1, 0))", 30)
    t = np.arange(30.0)
    np.testing.assert_allclose(values[:10], np.maximum(0.5, np.sin(t[:10])))
    np.testing.assert_allclose(values[10:20], np.clip(t[10:20], 0, 12))
    np.testing.assert_allclose(values[20:], np.where(t[20:] > 25, 1, 0))
    assert resolve_string_schedule('0:("a, b: c"), 2:(d)', 4) == ["a, b: c", "a, b: c", "d", "d"]


def test_whitespace_newlines_trailing_comma_and_bare_values() -> None:
    text = "\n    0:(0.40),    1:(0.40),\r\n   2 : ( 0.5 ) ,\n"
    np.testing.assert_allclose(resolve(text, 4), [0.4, 0.4, 0.5, 0.5])
    np.testing.assert_allclose(resolve("0: 1, 2: 3", 3), [1, 2, 3])  # Deforum's split parser takes these too


# ---------------------------------------------------------------------------------------- Deforum semantics
def test_deforum_zoom_formula() -> None:
    values = resolve("0:(1.0025+0.002*sin(1.25*3.14*t/30))", 120)
    t = np.arange(120.0)
    np.testing.assert_allclose(values, 1.0025 + 0.002 * np.sin(1.25 * 3.14 * t / 30), rtol=0, atol=1e-15)


def test_linear_between_numeric_keys_and_hold_after_the_last() -> None:
    values = resolve("0:(0), 30:(15), 60:(-2)", 70)
    assert values[0] == 0 and values[30] == 15 and values[60] == -2
    np.testing.assert_allclose(values[:31], np.linspace(0, 15, 31))
    np.testing.assert_allclose(values[30:61], np.linspace(15, -2, 31))
    assert (values[60:] == -2).all()


def test_constant_with_space_after_colon() -> None:
    np.testing.assert_array_equal(resolve("0: (0.65)", 5), np.full(5, 0.65))


def test_missing_frame_zero_holds_the_first_value_backwards() -> None:
    values = resolve("10:(1), 20:(3)", 30)
    assert (values[:11] == 1).all() and (values[20:] == 3).all()
    np.testing.assert_allclose(values[10:21], np.linspace(1, 3, 11))
    # An expression first key: its value at its first frame holds before it.
    values = resolve("5:(t*2)", 10)
    np.testing.assert_array_equal(values, [10, 10, 10, 10, 10, 10, 12, 14, 16, 18])


def test_expression_keyframe_spans_until_the_next_key() -> None:
    values = resolve("0:(t), 10:(100), 20:(t*2)", 30)
    np.testing.assert_array_equal(values[:10], np.arange(10))
    assert values[10] == 100
    np.testing.assert_allclose(values[10:21], np.linspace(100, 40, 11))  # 100 → value of t*2 at frame 20
    np.testing.assert_array_equal(values[20:], np.arange(20, 30) * 2)


def test_constant_formula_holds_over_its_span_instead_of_interpolating() -> None:
    # Deforum evaluates non-number values at every frame of the span: 5*2 holds, then jumps at frame 10.
    values = resolve("0:(5*2), 10:(0)", 12)
    np.testing.assert_array_equal(values, [10] * 10 + [0, 0])


def test_numeric_key_then_expression_interpolates_into_the_expression() -> None:
    values = resolve("10:(1), 20:(sin(t)), 30:(5)", 40)
    assert (values[:11] == 1).all()
    np.testing.assert_allclose(values[10:21], np.linspace(1, np.sin(20), 11))
    np.testing.assert_allclose(values[20:30], np.sin(np.arange(20, 30)))
    assert (values[30:] == 5).all()


def test_duplicate_keys_last_written_wins() -> None:
    # Deforum stores keys in a dict, so a later duplicate replaces the earlier value.
    np.testing.assert_array_equal(resolve("0:(0), 4:(1), 4:(2)", 6), [0, 0.5, 1, 1.5, 2, 2])
    # Also when an expression key lands on the same frame as a literal one.
    np.testing.assert_array_equal(resolve("0:(0), max_f:(7), 3:(9)", 4), [0, 3, 6, 9])


def test_out_of_order_keys_are_sorted() -> None:
    values = resolve("0: (0.0), 5: (0.02), 178:(0.02), 176: (0)", 181)  # deforum-studio Dolly-Zoom-Out
    assert values[5] == 0.02 and values[176] == 0 and values[178] == 0.02 and values[180] == 0.02
    np.testing.assert_allclose(values[176:179], [0, 0.01, 0.02])


def test_keys_beyond_the_end_are_ignored() -> None:
    values = resolve("0:(0), 10:(10), 184:(-0.09)", 20)
    assert (values[10:] == 10).all()
    with pytest.raises(ScheduleError, match="no keyframe falls within frames 0..19") as info:
        resolve("  30:(1)", 20)
    assert info.value.position == 2


def test_expression_keys_quoted_truncated_and_seeded() -> None:
    values = resolve('0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)', 8, seed=1234)
    np.testing.assert_array_equal(values, [1234, -1, -1, -1, -1, -1, 1234, 1234])  # max_f = 7
    values = resolve("0:(0), max_f/2:(10)", 10)  # 4.5 → 4, like Deforum's int()
    assert values[4] == 10 and values[3] == 7.5
    values = resolve("0:(0), fps*2:(1)", 40, fps=12)
    assert values[24] == 1
    # max_f-2 below 0 on a 1-frame render: out of range, ignored (Deforum's default seed_schedule does this).
    np.testing.assert_array_equal(resolve('0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)', 1, seed=3), [3])


def test_keys_may_not_use_t() -> None:
    error = error_of("0:(0), t+1:(1)")
    assert "'t' is not available here" in error.message and error.position == 7


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("-5:(1)", 0, "negative"),
        ("0:(1), -1:(2)", 7, "negative"),
        ("1.5:(2)", 0, "whole frame"),
        ("0:(0), 30:(foo)", 11, "the name 'foo'"),
        ("0:(0), 30:(sin(t) + __import__('os'))", 20, "calling '__import__'"),
        ("0:(0), 30:(().__class__)", 13, "attribute access"),
        ("0:(0),\n  30: (  1 +* 2)", 19, "not a valid expression"),
        ("0:(1) 10:(2)", 8, "is a ',' missing"),
        ("0:(1", 2, "unclosed '('"),
        ("0:(1))", 5, "unmatched ')'"),
        ('0:("x)', 3, "unclosed quote"),
        ("0(1)", 0, "expected KEY:(VALUE)"),
        (":(1)", 0, "missing frame number"),
        ("5:", 2, "missing value"),
        ("0:()", 3, "empty"),
        ("", 0, "empty"),
        ("0:(1),, 5:(2)", 6, "expected KEY:(VALUE)"),
        ("0:(9**9**9)", 6, "exponent"),
        ("0:('abc')", 4, "the name 'abc'"),
    ],
)
def test_errors_point_into_the_schedule_string(text: str, position: int, fragment: str) -> None:
    error = error_of(text)
    assert fragment in error.message
    assert error.position == position
    assert isinstance(error, ValueError) and not isinstance(error, ExpressionError)


def test_non_finite_values_name_the_keyframe_and_frame() -> None:
    error = error_of("0:(1), 10:(1/(t-12))")
    assert error.message.startswith("keyframe 10:") and "inf at frame 12" in error.message
    assert error.position == 11
    error = error_of("0:(1), 40: ( log(50 - t) )")
    assert "keyframe 40" in error.message and "at frame 50" in error.message and error.position == 13
    error = error_of("0:(1e308), 10:(-1e308)")
    assert "keyframe 0" in error.message and "overflows at frame 1" in error.message
    error = error_of("0:(1e308*10)")
    assert "inf at frame 0" in error.message


def test_quoted_numeric_values_are_unquoted_like_deforum() -> None:
    np.testing.assert_array_equal(resolve("0:('0.5'), 2:(\"1.5\")", 3), [0.5, 1.0, 1.5])


# ------------------------------------------------------------------------------------------ interpolation
def test_step_interpolation_holds_previous_key() -> None:
    values = resolve("0:(0), 10:(10), 20:(0)", 25, interpolation="step")
    np.testing.assert_array_equal(values, [0] * 10 + [10] * 10 + [0] * 5)


def test_cubic_passes_through_keys_and_is_smooth() -> None:
    values = resolve("0:(0), 10:(10), 20:(0), 30:(10)", 35, interpolation="Cubic")
    assert values[0] == 0 and values[10] == 10 and values[20] == 0 and values[30] == 10
    assert (values[30:] == 10).all()
    second = np.diff(values[:31], 2)
    assert np.abs(np.diff(second)).max() < 1.0  # no kinks: second differences change gradually
    # Two points: cubic falls back to linear (as Deforum falls back from cubic to linear).
    np.testing.assert_allclose(resolve("0:(0), 10:(10)", 11, interpolation="cubic"), np.arange(11))


def test_natural_cubic_matches_known_spline() -> None:
    x = np.array([0.0, 1.0, 2.0])
    y = np.array([0.0, 1.0, 0.0])
    # Natural spline through (0,0), (1,1), (2,0): m1 = -3, so s(0.5) = 0.5 + (0.125 - 0.5) * -3 / 6 = 0.6875.
    np.testing.assert_allclose(natural_cubic(x, y, np.array([0.5, 1.5])), [0.6875, 0.6875])
    x = np.arange(6.0)
    np.testing.assert_allclose(
        natural_cubic(x, 2 * x + 1, np.array([0.3, 4.7])), [1.6, 10.4]
    )  # lines stay lines


def test_unknown_interpolation_is_an_error() -> None:
    with pytest.raises(ScheduleError, match="one of: linear, cubic, step"):
        resolve("0:(1)", interpolation="quadratic")


# ------------------------------------------------------------------------------------ other value kinds
def test_constant_and_per_frame_values() -> None:
    np.testing.assert_array_equal(resolve_schedule(0.5, max_frames=3, fps=15, seed=0), [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(resolve_schedule(2, max_frames=2, fps=15, seed=0), [2.0, 2.0])
    np.testing.assert_array_equal(resolve_schedule([1, 2.5, 3], max_frames=3, fps=15, seed=0), [1, 2.5, 3])
    np.testing.assert_array_equal(resolve_schedule(np.arange(3), max_frames=3, fps=15, seed=0), [0, 1, 2])
    with pytest.raises(ScheduleError, match="expected one per frame"):
        resolve_schedule([1, 2], max_frames=3, fps=15, seed=0)
    with pytest.raises(ScheduleError, match="not finite"):
        resolve_schedule([1, float("nan"), 2], max_frames=3, fps=15, seed=0)
    with pytest.raises(ScheduleError, match="not finite"):
        resolve_schedule(float("inf"), max_frames=3, fps=15, seed=0)
    with pytest.raises(ScheduleError, match="true/false"):
        resolve_schedule(True, max_frames=3, fps=15, seed=0)
    with pytest.raises(ScheduleError, match="not a number"):
        resolve_schedule([1, "2", 3], max_frames=3, fps=15, seed=0)


def test_extra_variables_reach_values_and_scalar_ones_reach_keys() -> None:
    beat = np.linspace(0, 1, 10)
    values = resolve("0:(amp * beat), bars*2:(0)", 10, extra_vars={"beat": beat, "amp": 2.0, "bars": 3.0})
    np.testing.assert_allclose(values[:6], 2 * beat[:6])
    assert (values[6:] == 0).all()
    with pytest.raises(ScheduleError, match="'beat' is not available here"):
        resolve("0:(0), beat:(1)", 10, extra_vars={"beat": beat})
    with pytest.raises(ValueError, match="built-in"):
        resolve("0:(t)", 10, extra_vars={"t": beat})


def test_schedule_object_parses_once() -> None:
    schedule = Schedule.parse("0:(0), 10:(sin(t)*amp)", ["amp"])
    assert len(schedule.keys) == 2 and schedule.keys[0].value.constant == 0.0
    a = schedule.resolve(max_frames=20, fps=10, seed=0, extra_vars={"amp": 1.0})
    b = schedule.resolve(max_frames=20, fps=10, seed=0, extra_vars={"amp": 2.0})
    np.testing.assert_allclose(b[10:], 2 * a[10:])
    with pytest.raises(ScheduleError, match="the name 'amp'"):
        Schedule.parse("0:(amp)")


def test_sec_is_seconds() -> None:
    np.testing.assert_allclose(resolve("0:(sec)", 5, fps=2), [0, 0.5, 1, 1.5, 2])


# ------------------------------------------------------------------------------------------- string values
def test_string_schedules_hold_values() -> None:
    assert resolve_string_schedule('0: ("Euler a"), 3:("DDIM")', 5) == ["Euler a"] * 3 + ["DDIM"] * 2
    assert (
        resolve_string_schedule("2:(Euler), 4:('DPM++ 2M Karras')", 6)
        == ["Euler"] * 4 + ["DPM++ 2M Karras"] * 2
    )
    assert (
        resolve_string_schedule('0: ("model1.ckpt"), 100: ("model2.safetensors")', 3) == ["model1.ckpt"] * 3
    )
    assert resolve_string_schedule('0:("a"), "max_f":("b"), 1:("c"), 1:("d")', 3) == ["a", "d", "b"]
    # Mask expressions keep their parentheses and spacing (Deforum strips every parenthesis).
    mask = '0: ("!({everywhere}^({init_mask}|{video_mask}) ) ")'
    assert resolve_string_schedule(mask, 1) == ["!({everywhere}^({init_mask}|{video_mask}) ) "]
    assert resolve_string_schedule('0:("model (v2).safetensors")', 1) == ["model (v2).safetensors"]


def test_string_schedule_errors() -> None:
    with pytest.raises(ScheduleError, match="unclosed quote") as info:
        resolve_string_schedule('0:("Euler a)', 10)
    assert info.value.position == 3
    with pytest.raises(ScheduleError, match="'s' is not available here"):
        resolve_string_schedule('0:("a"), s:("b")', 10)
    assert resolve_string_schedule('0:("a"), s:("b")', 10, seed=8)[8] == "b"


# ---------------------------------------------------------------------------------------------- properties
_SCHEDULE_TOKENS = [
    "0", "1", "30", "max_f", "-", ":", "(", ")", ",", " ", "\n", '"', "'", "t", "sin(", "max(", "s", "1e308",
    "*", "/", "**", "where(", "x", "Euler a", "__import__", ".", "[", "]", "2.5", "1/(t-3)", "%",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(st.text(max_size=200), st.lists(st.sampled_from(_SCHEDULE_TOKENS), max_size=60).map("".join)),
    st.integers(1, 40),
)
def test_arbitrary_text_only_raises_schedule_errors(text: str, max_frames: int) -> None:
    try:
        values = resolve_schedule(text, max_frames=max_frames, fps=15, seed=1)
    except ScheduleError as error:
        assert error.position is not None and 0 <= error.position <= len(text)
    else:
        assert values.shape == (max_frames,) and np.isfinite(values).all()
    try:
        strings = resolve_string_schedule(text, max_frames, seed=1, fps=15)
    except ScheduleError as error:
        assert error.position is not None and 0 <= error.position <= len(text)
    else:
        assert len(strings) == max_frames


_values = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 80).flatmap(
        lambda n: st.tuples(st.just(n), st.dictionaries(st.integers(0, n - 1), _values, min_size=1))
    )
)
def test_random_numeric_keyframes(case: tuple[int, dict[int, float]]) -> None:
    max_frames, keys = case
    items = list(keys.items())
    text = ", ".join(f"{frame}:({value!r})" for frame, value in reversed(items))
    values = resolve(text, max_frames)
    frames = sorted(keys)
    for frame in frames:
        assert values[frame] == keys[frame]  # exactly the keyframe value
    assert (values[: frames[0]] == keys[frames[0]]).all() and (values[frames[-1] :] == keys[frames[-1]]).all()
    for left, right in zip(frames, frames[1:], strict=False):
        low, high = sorted((keys[left], keys[right]))
        slack = 1e-9 * max(1.0, abs(low), abs(high))
        assert (values[left : right + 1] >= low - slack).all() and (
            values[left : right + 1] <= high + slack
        ).all()
    for method in ("step", "cubic"):
        other = resolve(text, max_frames, interpolation=method)
        assert all(other[frame] == keys[frame] for frame in frames)


def _deforum_reference(keys: dict[int, str], max_frames: int) -> np.ndarray:
    """Deforum's get_inbetweens, restated: a frame loop where the last key's "is it a number" flag carries
    over (so an expression fills its span), ends set to the first/last valid value, then linear
    interpolation between the valid points."""
    series = np.full(max_frames, np.nan)
    value, is_number = "", True
    for i in range(max_frames):
        if i in keys:
            value = keys[i]
            is_number = re.fullmatch(r"[+-]?[0-9]*(\.[0-9]+)?", value) is not None
            if is_number:
                series[i] = float(value)
        if not is_number:
            series[i] = float(compile_expression(value).evaluate({"t": float(i), "max_f": max_frames - 1.0}))
    valid = np.flatnonzero(~np.isnan(series))
    series[0], series[-1] = series[valid[0]], series[valid[-1]]
    valid = np.flatnonzero(~np.isnan(series))
    return np.interp(np.arange(max_frames), valid, series[valid])


_deforum_values = st.one_of(
    st.integers(-50, 50).map(str),
    st.sampled_from(["0.5", "-2.25", "t", "t*0.5+1", "sin(t)", "max_f-t", "where(t>10, 1, 0)", "7"]),
)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 60).flatmap(
        lambda n: st.tuples(st.just(n), st.dictionaries(st.integers(0, n - 1), _deforum_values, min_size=1))
    )
)
def test_matches_deforum_algorithm_when_frame_zero_is_keyed(case: tuple[int, dict[int, str]]) -> None:
    max_frames, keys = case
    keys = {0: "0", **keys}  # Deforum itself crashes without a frame-0 key
    text = ", ".join(f"{frame}: ({value})" for frame, value in keys.items())
    np.testing.assert_allclose(
        resolve(text, max_frames), _deforum_reference(keys, max_frames), rtol=1e-12, atol=1e-12
    )


# ------------------------------------------------------------------------------------------- real files
STRING_FIELDS = {
    "sampler_schedule",
    "scheduler_schedule",
    "checkpoint_schedule",
    "mask_schedule",
    "noise_mask_schedule",
}
_LOOKS_LIKE_SCHEDULE = re.compile(r"\s*[\"']?[^:,()\"']*[\"']?\s*:\s*\(")


def _schedule_fields() -> list[tuple[str, str, str, dict]]:
    if not DEFORUM_FILES.is_dir():
        return []
    found = []
    for path in sorted(DEFORUM_FILES.glob("*.txt")):
        settings_ = json.loads(path.read_text(encoding="utf-8"))
        for field, value in settings_.items():
            if isinstance(value, str) and _LOOKS_LIKE_SCHEDULE.match(value):
                found.append((path.name, field, value, settings_))
    return found


_FIELDS = _schedule_fields()


@pytest.mark.skipif(not _FIELDS, reason="shared Deforum test data not present")
@pytest.mark.parametrize(
    ("name", "field", "text", "settings_"), _FIELDS, ids=[f"{f[0][:40]}:{f[1]}" for f in _FIELDS]
)
def test_real_deforum_schedules_resolve(name: str, field: str, text: str, settings_: dict) -> None:
    max_frames = settings_.get("max_frames") or 120
    fps = settings_.get("fps") or 15
    seed = settings_.get("seed") if isinstance(settings_.get("seed"), int) and settings_["seed"] >= 0 else 42
    if field in STRING_FIELDS:
        strings = resolve_string_schedule(text, max_frames, seed=seed, fps=fps)
        assert len(strings) == max_frames and all(strings)
    else:
        values = resolve_schedule(text, max_frames=max_frames, fps=fps, seed=seed)
        assert values.shape == (max_frames,) and np.isfinite(values).all()
        last_written = {
            k.frame: k.value for k in parse_schedule(text) if k.frame is not None and k.frame < max_frames
        }
        for frame, value in last_written.items():
            if re.fullmatch(r"-?[\d.]+", value):
                assert values[frame] == float(value)  # numeric keys land exactly

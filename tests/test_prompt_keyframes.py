"""Prompt travel: Deforum JSON prompts, AnimateDiff ``N: prompt`` lines, backtick math inside prompts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.errors import FlipbookError
from flipbook.spec.prompt_keyframes import (
    PromptKey,
    compose_line_prompt,
    format_number,
    parse_deforum_prompts,
    parse_prompt_lines,
    prompt_at_frames,
    split_negative,
)


def deforum(prompts: dict[str, str], max_frames: int = 100, **options: str) -> dict[int, PromptKey]:
    return parse_deforum_prompts(prompts, max_frames=max_frames, seed=42, **options)


def error_of(call, *args, **kwargs) -> FlipbookError:  # type: ignore[no-untyped-def]
    with pytest.raises(FlipbookError) as info:
        call(*args, **kwargs)
    return info.value


# ------------------------------------------------------------------------------------------------- Deforum
def test_deforum_default_prompts_with_neg() -> None:
    # Deforum's own default prompts (one uses --neg).
    keys = deforum(
        {
            "0": "tiny cute bunny, vibrant diffraction, highly detailed",
            "30": "anthropomorphic clean cat, surrounded by fractals",
            "60": "a beautiful coconut --neg photo, realistic",
            "90": "a beautiful durian, award winning photography",
        }
    )
    assert list(keys) == [0, 30, 60, 90]
    assert keys[60] == PromptKey(60, "a beautiful coconut", "photo, realistic")
    assert keys[0].negative == ""


def test_deforum_global_additions_join_like_deforum() -> None:
    # Deforum: f"{positive} {val} {'' if '--neg' in val else '--neg'} {negative}", then split at --neg.
    keys = deforum(
        {"0": "a forest --neg blurry", "10": "a city"}, positive="masterpiece,", negative="nsfw, nude --neg"
    )
    assert keys[0] == PromptKey(0, "masterpiece, a forest", "blurry nsfw, nude")
    assert keys[10] == PromptKey(10, "masterpiece, a city", "nsfw, nude")


def test_deforum_neg_is_a_plain_substring_and_extra_markers_are_dropped() -> None:
    assert split_negative("a cat--neg dog") == ("a cat", "dog")
    assert split_negative("a --neg b --neg c") == ("a", "b  c")
    assert split_negative("  only positive ") == ("only positive", "")


def test_deforum_expression_keys_use_last_frame_index_and_seed() -> None:
    keys = parse_deforum_prompts(
        {"0": "a", "max_f-10": "b", "max_f": "c", "s % 7": "d", " 5 ": "e"}, max_frames=50, seed=45
    )
    assert {frame: key.positive for frame, key in keys.items()} == {0: "a", 3: "d", 5: "e", 39: "b", 49: "c"}


def test_deforum_expression_keys_truncate_toward_zero() -> None:
    keys = deforum({"0": "a", "max_f/4": "b"}, max_frames=11)  # 10/4 = 2.5
    assert list(keys) == [0, 2]


def test_deforum_keys_past_the_end_are_dropped_and_last_duplicate_wins() -> None:
    keys = deforum({"0": "a", "100": "late", "max_f+1": "later", "0*max_f": "again", "max_f-200": "early"})
    assert keys == {0: PromptKey(0, "again", "")}


def test_deforum_integer_keys_and_sorted_result() -> None:
    keys = parse_deforum_prompts({"20": "b", 5: "a"}, max_frames=30, seed=1)  # type: ignore[dict-item]
    assert list(keys) == [5, 20]


@pytest.mark.parametrize(
    ("prompts", "needle"),
    [
        ({}, "non-empty"),
        ({"100": "a"}, "out of range"),
        ({"-1": "a"}, "negative"),
        ({"2.5": "a"}, "whole frame"),
        ({"max_f+foo": "a"}, "at character 6"),
        ({"__import__('os')": "a"}, "not allowed"),
        ({"0": 3}, "prompt text"),
        ({"log(0)": "a"}, "gives -inf"),
    ],
)
def test_deforum_errors(prompts: dict[str, str], needle: str) -> None:
    error = error_of(parse_deforum_prompts, prompts, max_frames=100, seed=1)
    assert needle in str(error)


def test_deforum_global_positive_with_neg_is_an_error() -> None:
    assert "--neg" in str(error_of(deforum, {"0": "a"}, positive="x --neg y"))


# ---------------------------------------------------------------------------------------------- AnimateDiff
ANIMATEDIFF_README = (  # the example in the extension's README
    "1girl, yoimiya (genshin impact), origen, line, comet, wink, Masterpiece, BestQuality. UltraDetailed, "
    "<lora:LineLine2D:0.7>,  <lora:yoimiya:0.8>,\n0: closed mouth\n8: open mouth\nsmile"
)


def test_animatediff_readme_example() -> None:
    head, keys, tail = parse_prompt_lines(ANIMATEDIFF_README)
    assert head.endswith("<lora:yoimiya:0.8>,")
    assert keys == {0: "closed mouth", 8: "open mouth"}
    assert tail == "smile"
    # AnimateDiff: f"{', '.join(head)}, {prompt}, {', '.join(tail)}"
    assert compose_line_prompt(head, keys[8], tail) == head + ", open mouth, smile"


def test_animatediff_head_and_tail_lines_join_with_comma_space() -> None:
    text = "\n\nmasterpiece\nbest quality\n0: a cat\n16: a dog\nsmile\nsunset\n\n"
    head, keys, tail = parse_prompt_lines(text)
    assert (head, keys, tail) == ("masterpiece, best quality", {0: "a cat", 16: "a dog"}, "smile, sunset")
    assert compose_line_prompt(head, keys[0], tail) == "masterpiece, best quality, a cat, smile, sunset"


def test_animatediff_empty_head_or_tail_keeps_its_commas_unless_tidy() -> None:
    head, keys, tail = parse_prompt_lines("0: closed mouth\r\n8: open mouth\r\n")
    assert (head, tail) == ("", "")
    assert compose_line_prompt(head, keys[0], tail) == ", closed mouth, "
    assert compose_line_prompt(head, keys[0], tail, tidy=True) == "closed mouth"
    assert compose_line_prompt("best quality, ", "smile", "", tidy=True) == "best quality, smile"


def test_animatediff_lines_are_kept_as_written() -> None:
    # Whitespace between commas changes CLIP's tokens, so nothing inside the text is stripped.
    head, keys, tail = parse_prompt_lines("a, \n0:  two spaces \nb ")
    assert (head, keys, tail) == ("a, ", {0: " two spaces "}, "b")


def test_animatediff_without_keyframes_is_an_ordinary_prompt() -> None:
    text = "  a cat\n12:30 sunset\n1girl: solo, 5:foo  "
    assert parse_prompt_lines(text) == (text.strip(), {}, "")


def test_animatediff_keys_in_any_order_blank_lines_and_empty_prompts() -> None:
    head, keys, tail = parse_prompt_lines("h\n8: b\n\n0: a\n4:\nt")
    assert (head, keys, tail) == ("h", {0: "a", 4: "", 8: "b"}, "t")
    assert list(keys) == [0, 4, 8]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("head\n0: a\n1.5: b", "line 3"),
        ("head\n\n-1: a", "line 3: the keyframe is negative"),
        ("0: a\n4: b\n0: c", "line 3: frame 0 is already set on line 1"),
        ("0: a\ntail\n8: b", "line 3: keyframe 8 comes after the tail text that starts on line 2"),
        ("\n\n0: a\n+3: b", "line 4"),
    ],
)
def test_animatediff_errors_name_the_line(text: str, needle: str) -> None:
    assert needle in str(error_of(parse_prompt_lines, text))


# ------------------------------------------------------------------------------------------------ backticks
def test_backtick_math_at_several_frames() -> None:
    text = "a tree, (cherry:`1+t/max_f`), (snow:`clamp(t-2, 0, 1)`) --neg `s`"
    out = prompt_at_frames(text, np.array([0, 2, 4, 8]), max_f=8, seed=7, fps=12.0)
    assert out == [
        "a tree, (cherry:1), (snow:0) --neg 7",
        "a tree, (cherry:1.25), (snow:0) --neg 7",
        "a tree, (cherry:1.5), (snow:1) --neg 7",
        "a tree, (cherry:2), (snow:1) --neg 7",
    ]


def test_backtick_math_uses_sec_and_fps_and_is_not_string_replacement() -> None:
    # Deforum replaces every "t" in the span by the frame number, breaking sqrt; here names are names.
    out = prompt_at_frames(
        "`sqrt(t)` `sec*fps` `floor(sin(t)*100)/100`", np.array([4, 9]), max_f=9, seed=0, fps=2.0
    )
    assert out == ["2 4 -0.76", "3 9 0.41"]


def test_prompt_without_backticks_is_returned_unchanged() -> None:
    text = "a (red:1.2) cat, t max_f"
    assert prompt_at_frames(text, np.arange(3), max_f=2, seed=0, fps=8.0) == [text] * 3
    assert prompt_at_frames("`t`", np.arange(0), max_f=2, seed=0, fps=8.0) == []


def test_number_format_reads_back_and_has_no_exponent() -> None:
    assert [format_number(v) for v in (3.0, 1.5, 1 / 3, 1e-5, -0.0, -0.25, 1e20)] == [
        "3",
        "1.5",
        "0.3333333333333333",
        "0.00001",
        "0",
        "-0.25",
        "100000000000000000000",
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a `t+1` b `oops", "unclosed backtick at character 10"),
        ("`1+t` and `", "unclosed backtick at character 10"),
        ("(cat:`1+foo`)", "at character 8"),
        ("x ``", "empty"),
        ("(cat:`1/(t-2)`)", "at frame 2"),
        ("`__import__('os')`", "not allowed"),
    ],
)
def test_backtick_errors(text: str, needle: str) -> None:
    error = error_of(prompt_at_frames, text, np.arange(5), max_f=4, seed=0, fps=8.0)
    assert needle in str(error)


# -------------------------------------------------------------------------------------------- robustness
TEXT = st.text(alphabet=st.sampled_from("0123456789: \n\r\t-+.,`abt()*/_ë"), max_size=80) | st.text(
    max_size=60
)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_parse_prompt_lines_raises_only_flipbook_errors(text: str) -> None:
    try:
        head, keys, tail = parse_prompt_lines(text)
    except FlipbookError:
        return
    assert all(isinstance(frame, int) and frame >= 0 for frame in keys)
    if keys:
        for prompt in keys.values():
            compose_line_prompt(head, prompt, tail)


@settings(max_examples=300, deadline=None)
@given(TEXT, st.lists(st.integers(0, 50), max_size=4))
def test_prompt_at_frames_raises_only_flipbook_errors(text: str, frames: list[int]) -> None:
    try:
        out = prompt_at_frames(text, np.array(frames, dtype=np.int64), max_f=50, seed=3, fps=12.0)
    except FlipbookError:
        return
    assert len(out) == len(frames)
    assert all("`" not in line for line in out)

"""A1111 prompt syntax: attention weights, LoRA tags and composable parts.

The expected attention weights are A1111's own docstring examples (modules/prompt_parser.py), compared exactly:
A1111's products of 1.1 are what users' saved prompts were tuned with.
"""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.errors import FlipbookError
from flipbook.prompting.grammar import (
    BREAK_PIECE,
    LoraTag,
    extract_loras,
    parse_attention,
    split_composable,
)

# --- parse_attention: A1111's docstring examples ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("\\(literal\\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0),
                ("house", 1.5730000000000004),
                (" ", 1.1),
                # 1.0, not 1/1.1: the first "(" is never closed, so it wraps everything after it and the end of
                # the text closes it, multiplying [on]'s 1/1.1 back by 1.1 (A1111's docstring says 1.0 too).
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641000000000006),
                (".", 1.1),
            ],
        ),
    ],
)
def test_a1111_docstring_examples(text, expected):
    assert parse_attention(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [("", 1.0)]),
        ("[on]", [("on", 1 / 1.1)]),
        ("[[a]]", [("a", (1 / 1.1) * (1 / 1.1))]),
        ("(a:1.5)", [("a", 1.5)]),
        ("(a: 1.5 )", [("a", 1.5)]),
        ("((a:1.5))", [("a", 1.5 * 1.1)]),
        ("[(a:1.5)]", [("a", 1.5 * (1 / 1.1))]),
        ("(a:+2)", [("a", 2.0)]),
        ("(a:.5)", [("a", 0.5)]),
        ("a)b]", [("a)b]", 1.0)]),  # stray closing brackets are text
        ("(a]", [("a]", 1.1)]),  # ] has no [ to close: text, inside the still-open (
        ("[a:1.5)", [("a:1.5)", 1 / 1.1)]),  # ":1.5)" without an open ( is text
        ("(a:1.5x)", [("a:1.5x", 1.1)]),  # not a number: the colon is text and ")" closes normally
        ("(a:-)", [("a:-", 1.1)]),
        ("a: b", [("a: b", 1.0)]),
        ("\\\\", [("\\", 1.0)]),
        ("a\\b", [("ab", 1.0)]),  # A1111 drops a backslash that escapes nothing
        ("\\(a\\)", [("(a)", 1.0)]),
        ("(\\(a\\))", [("(a)", 1.1)]),
        ("()", [("", 1.0)]),
        ("a()b", [("ab", 1.0)]),
        ("(a)(b:1.1)", [("ab", 1.1)]),  # equal weights merge even when they came from different brackets
        ("(a[b]c)", [("a", 1.1), ("b", (1 / 1.1) * 1.1), ("c", 1.1)]),
    ],
)
def test_attention_edge_cases(text, expected):
    assert parse_attention(text) == expected


def test_nesting_multiplies_in_a1111_order():
    # Each closing bracket multiplies every piece since its opening, innermost first; the float products are
    # order-sensitive, so compare with the same sequence of multiplications.
    assert parse_attention("(((a)))") == [("a", 1.0 * 1.1 * 1.1 * 1.1)]
    assert parse_attention("((a:1.3))") == [("a", 1.0 * 1.3 * 1.1)]
    # unclosed: round brackets are closed before square ones
    assert parse_attention("[(a") == [("a", 1.0 * 1.1 * (1 / 1.1))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a BREAK b", [("a", 1.0), BREAK_PIECE, ("b", 1.0)]),
        ("a\nBREAK\nb", [("a", 1.0), BREAK_PIECE, ("b", 1.0)]),
        ("BREAK", [BREAK_PIECE]),
        ("a BREAK", [("a", 1.0), BREAK_PIECE]),
        ("a, BREAK, b", [("a,", 1.0), BREAK_PIECE, (", b", 1.0)]),
        ("BREAKING news", [("BREAKING news", 1.0)]),
        ("break it", [("break it", 1.0)]),
        ("a_BREAK_b", [("a_BREAK_b", 1.0)]),
        ("(a BREAK b)", [("a", 1.1), BREAK_PIECE, ("b", 1.1)]),  # A1111 would weight BREAK -1.1
        ("a BREAK BREAK b", [("a", 1.0), BREAK_PIECE, BREAK_PIECE, ("b", 1.0)]),  # A1111: "BREAKBREAK"
        ("a BREAK (b)", [("a", 1.0), BREAK_PIECE, ("b", 1.1)]),
    ],
)
def test_break(text, expected):
    assert parse_attention(text) == expected


@pytest.mark.parametrize(
    "text", ["(a:0)", "(a:-1)", "(a:1.2.3)", "(a:.)", "(a:" + "9" * 400 + ")", "(a:0." + "0" * 400 + "1)"]
)
def test_unusable_explicit_weight_is_an_error(text):
    with pytest.raises(FlipbookError) as error:
        parse_attention(text)
    assert error.value.field == "prompt"
    assert error.value.value == text


def test_absurd_nesting_is_an_error():
    with pytest.raises(FlipbookError, match="nested"):
        parse_attention("(" * 8000 + "a")
    # the other way the product only gets tiny: it stays a positive (subnormal) float, as in A1111
    assert 0 < parse_attention("[" * 8000 + "a")[0][1] < 1e-300
    # deep but sane nesting still works
    assert parse_attention("(" * 50 + "a")[0][1] == pytest.approx(1.1**50)


# --- extract_loras --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rest", "tags"),
    [
        ("a cat", "a cat", []),
        ("a cat <lora:foo>", "a cat ", [LoraTag("foo", 1.0, 1.0)]),
        ("a cat, <lora:foo:0.8>", "a cat, ", [LoraTag("foo", 0.8, 0.8)]),
        ("<lora:foo:0.8:0.5>a", "a", [LoraTag("foo", weight=0.5, te_weight=0.8)]),
        ("<lora:foo:te=0.3>", "", [LoraTag("foo", 0.3, 0.3)]),  # unet defaults to the te weight
        ("<lora:foo:unet=0.3>", "", [LoraTag("foo", weight=0.3, te_weight=1.0)]),
        ("<lora:foo:0.8:unet=0.2>", "", [LoraTag("foo", weight=0.2, te_weight=0.8)]),
        ("<lora:foo:1:te=0.5>", "", [LoraTag("foo", weight=0.5, te_weight=0.5)]),
        ("<lora:foo:-1>", "", [LoraTag("foo", -1.0)]),
        ("<lyco:bar:0.7>", "", [LoraTag("bar", 0.7)]),
        ("<lora:my style v2.1:1e-1>", "", [LoraTag("my style v2.1", 0.1)]),
        ("<lora: spaced :0.5>", "", [LoraTag("spaced", 0.5)]),
        (
            "x <lora:a:0.5> y <lora:b> z",
            "x  y  z",
            [LoraTag("a", 0.5), LoraTag("b", 1.0)],
        ),
        ("<lora:>", "<lora:>", []),  # not a tag for A1111 either
        ("a <3 b>", "a <3 b>", []),
        ("<lora:a:1", "<lora:a:1", []),
    ],
)
def test_extract_loras(text, rest, tags):
    assert extract_loras(text) == (rest, tags)


def test_lora_tag_te_weight_defaults_to_weight():
    assert LoraTag("x", 0.6).te_weight == 0.6
    assert LoraTag("x").weight == LoraTag("x").te_weight == 1.0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a <hypernet:x:1>", "hypernet"),
        ("a <embedding:x>", "embedding"),
        ("a <lora:x:abc>", "abc"),
        ("a <lora:x:inf>", "finite"),
        ("a <lora:x:nan>", "finite"),
        ("a <lora:x:>", "lora:x"),
        ("a <lora::0.5>", "name"),
        ("a <lora:x:1:1:8>", "two weights"),  # A1111's dyn= is not supported
        ("a <lora:x:dyn=8>", "dyn"),
    ],
)
def test_bad_lora_tags_are_errors(text, fragment):
    with pytest.raises(FlipbookError) as error:
        extract_loras(text)
    assert fragment in str(error.value)


def test_unknown_tag_error_names_the_tag_and_the_allowed_kinds():
    with pytest.raises(FlipbookError) as error:
        extract_loras("a cat <hypernet:x:1>")
    assert error.value.value == "<hypernet:x:1>"
    assert "lora" in error.value.allowed and "lyco" in error.value.allowed


# --- split_composable -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [("", 1.0)]),
        ("  a cat  ", [("a cat", 1.0)]),
        ("a cat :0.7", [("a cat", 0.7)]),
        ("a cat AND a dog", [("a cat", 1.0), ("a dog", 1.0)]),
        ("a cat :1.2 AND a dog AND a penguin :2.2", [("a cat", 1.2), ("a dog", 1.0), ("a penguin", 2.2)]),
        ("a cat:0.5AND a dog", [("a cat:0.5AND a dog", 1.0)]),  # AND must be a whole word
        ("a cat and a dog", [("a cat and a dog", 1.0)]),  # upper case only
        ("ANDROID AND ANDES", [("ANDROID", 1.0), ("ANDES", 1.0)]),
        ("a cat | a dog :0.5", [("a cat", 1.0), ("a dog", 0.5)]),
        ("a [cat|dog] | a bird", [("a [cat|dog]", 1.0), ("a bird", 1.0)]),  # alternation stays
        ("(a|b)", [("(a|b)", 1.0)]),
        ("a \\| b", [("a \\| b", 1.0)]),  # escaped bar
        ("[a AND b]", [("[a AND b]", 1.0)]),
        ("a (word:1.2)", [("a (word:1.2)", 1.0)]),  # attention, not a part weight
        ("a (word:1.2) AND b (x:0.5):0.3", [("a (word:1.2)", 1.0), ("b (x:0.5)", 0.3)]),
        ("a cat : -0.5 AND b", [("a cat", -0.5), ("b", 1.0)]),
        ("a cat :.5", [("a cat", 0.5)]),
        ("a cat :5.", [("a cat", 5.0)]),
        ("a) | b", [("a)", 1.0), ("b", 1.0)]),  # a stray ) does not make the depth negative
        ("a\nAND\nb", [("a", 1.0), ("b", 1.0)]),
        ("16:9", [("16", 9.0)]),  # A1111 reads a trailing ":NUMBER" the same way
    ],
)
def test_split_composable(text, expected):
    assert split_composable(text) == expected


@pytest.mark.parametrize("text", ["a AND", "AND b", "a AND AND b", "a | | b", "|", "a :0.5 AND :0.7"])
def test_empty_composable_part_is_an_error(text):
    with pytest.raises(FlipbookError, match="empty"):
        split_composable(text)


def test_infinite_part_weight_is_an_error():
    with pytest.raises(FlipbookError):
        split_composable("a :" + "9" * 400 + " AND b")


@pytest.mark.parametrize("function", [parse_attention, extract_loras, split_composable])
def test_non_string_is_a_flipbook_error(function):
    with pytest.raises(FlipbookError):
        function(None)


# --- properties -----------------------------------------------------------------------------------------------

# Text biased towards the syntax, so that the interesting paths are hit often.
SYNTAX = st.sampled_from(
    list("ab ()[]\\:|,.<>=-019") + [" BREAK ", "BREAK", " AND ", ":1.5)", ":0.5)", ":1.2.3)", "<lora:", "\n"]
)
syntax_text = st.lists(SYNTAX, max_size=30).map("".join)
any_text = st.one_of(st.text(max_size=60), syntax_text)
_BREAK_RE = re.compile(r"\s*\bBREAK\b\s*")


def _escape(text: str) -> str:
    return re.sub(r"([()\[\]\\])", r"\\\1", text)


@settings(max_examples=300)
@given(any_text)
def test_parse_attention_only_raises_flipbook_error_and_weights_are_usable(text):
    try:
        pieces = parse_attention(text)
    except FlipbookError:
        return
    assert pieces
    for piece, weight in pieces:
        assert isinstance(piece, str)
        if (piece, weight) == BREAK_PIECE:
            continue
        assert math.isfinite(weight) and weight > 0
    # merged: no two text pieces in a row with the same weight, and no empty pieces unless it is all there is
    for (a, wa), (b, wb) in zip(pieces, pieces[1:], strict=False):
        if BREAK_PIECE not in ((a, wa), (b, wb)):
            assert wa != wb
    assert all(piece for piece, _ in pieces) or pieces == [("", 1.0)]


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(exclude_characters="()[]\\"), max_size=60) | syntax_text)
def test_text_without_brackets_comes_back_unchanged(text):
    if any(char in text for char in "()[]\\"):
        text = re.sub(r"[()\[\]\\]", "", text)
    pieces = parse_attention(text)
    assert "".join(piece for piece, _ in pieces) == (_BREAK_RE.sub("BREAK", text))
    assert all(weight == 1.0 for piece, weight in pieces if (piece, weight) != BREAK_PIECE)


@settings(max_examples=200)
@given(any_text)
def test_escaped_text_is_literal(text):
    pieces = parse_attention(_escape(text))
    assert "".join(piece for piece, _ in pieces) == _BREAK_RE.sub("BREAK", text)
    assert all(weight == 1.0 for piece, weight in pieces if (piece, weight) != BREAK_PIECE)


@settings(max_examples=200)
@given(st.text(alphabet="abc ,", min_size=1, max_size=20), st.integers(1, 4))
def test_brackets_multiply_by_powers_of_1_1(word, depth):
    (piece,) = parse_attention("(" * depth + _escape(word) + ")" * depth)
    assert piece[0] == word and piece[1] == pytest.approx(1.1**depth)
    (piece,) = parse_attention("[" * depth + _escape(word) + "]" * depth)
    assert piece[0] == word and piece[1] == pytest.approx(1.1**-depth)


@settings(max_examples=300)
@given(any_text)
def test_extract_loras_only_raises_flipbook_error(text):
    try:
        rest, tags = extract_loras(text)
    except FlipbookError:
        return
    assert isinstance(rest, str)
    assert all(isinstance(tag, LoraTag) and math.isfinite(tag.weight) for tag in tags)


lora_names = st.text(alphabet="abcxyz_-. 0123456789", min_size=1, max_size=12).filter(lambda n: n.strip())
finite = st.floats(min_value=-10, max_value=10, allow_nan=False)


@settings(max_examples=200)
@given(st.lists(st.tuples(lora_names, finite, finite), max_size=4), st.text(alphabet="abc ,()", max_size=10))
def test_lora_tags_round_trip(specs, filler):
    text = filler.join(f"<lora:{name}:{te!r}:{unet!r}>" for name, te, unet in specs) + filler
    rest, tags = extract_loras(text)
    assert rest == filler * max(len(specs), 1)
    assert tags == [LoraTag(name.strip(), weight=unet, te_weight=te) for name, te, unet in specs]


@settings(max_examples=300)
@given(any_text)
def test_split_composable_only_raises_flipbook_error(text):
    try:
        parts = split_composable(text)
    except FlipbookError:
        return
    assert parts
    for part, weight in parts:
        assert part == part.strip()
        assert math.isfinite(weight)


words = st.text(alphabet="abcxyz ,.", min_size=1, max_size=15).filter(lambda w: w.strip())
part_weights = st.integers(-2000, 2000).map(lambda n: n / 100)  # A1111's part weights have no exponent


@settings(max_examples=200)
@given(st.lists(st.tuples(words, st.one_of(st.none(), part_weights)), min_size=1, max_size=4), st.booleans())
def test_composable_parts_round_trip(parts, use_bar):
    separator = " | " if use_bar else " AND "
    text = separator.join(part + ("" if weight is None else f" :{weight}") for part, weight in parts)
    expected = [(part.strip(), 1.0 if weight is None else weight) for part, weight in parts]
    assert split_composable(text) == expected

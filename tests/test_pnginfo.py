"""A1111 infotext ("parameters" PNG chunk): format, parse and the PNG round trip."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import PIL.Image
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.errors import FlipbookError
from flipbook.io.pnginfo import (
    PNG_COMPRESS_LEVEL,
    GenerationParameters,
    format_parameters,
    parse_parameters,
    read_png_parameters,
    save_png,
)

# As A1111 1.10 writes it for a hires-fix txt2img with a LoRA and an embedding (one line per field here).
A1111_INFOTEXT = (
    "masterpiece, best quality, 1girl, (blue eyes:1.2), <lora:add_detail:0.6>\n"
    "standing in a field of flowers\n"
    "Negative prompt: (worst quality, low quality:1.4), easynegative\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 2837461234, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, Clip skip: 2, "
    'Hires upscale: 2, Hires upscaler: Latent, Lora hashes: "add_detail: 7c6bad76eb54", '
    'TI hashes: "easynegative: c74b4e810b03", Version: v1.10.1'
)


def make(**changes) -> GenerationParameters:
    base = GenerationParameters(
        prompt="a cat in a hat",
        negative_prompt="blurry",
        steps=20,
        sampler="Euler a",
        cfg_scale=7.0,
        seed=123,
        width=512,
        height=512,
    )
    return replace(base, **changes)


# --- parse ----------------------------------------------------------------------------------------------------


def test_real_infotext_parses_to_the_right_fields():
    p = parse_parameters(A1111_INFOTEXT)
    assert p.prompt == (
        "masterpiece, best quality, 1girl, (blue eyes:1.2), <lora:add_detail:0.6>\nstanding in a field of flowers"
    )
    assert p.negative_prompt == "(worst quality, low quality:1.4), easynegative"
    assert (p.steps, p.sampler, p.cfg_scale, p.seed) == (28, "DPM++ 2M", 7.5, 2837461234)
    assert (p.width, p.height) == (512, 768)
    assert (p.model_hash, p.model_name) == ("6ce0161689", "v1-5-pruned-emaonly")
    assert (p.denoising_strength, p.clip_skip) == (0.45, 2)
    assert p.extra == {
        "Schedule type": "Karras",
        "Hires upscale": "2",
        "Hires upscaler": "Latent",
        "Lora hashes": "add_detail: 7c6bad76eb54",
        "TI hashes": "easynegative: c74b4e810b03",
        "Version": "v1.10.1",
    }
    assert isinstance(p.steps, int) and isinstance(p.seed, int) and isinstance(p.cfg_scale, float)


def test_missing_negative_line_and_optional_fields():
    p = parse_parameters("a dog\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512")
    assert p == make(prompt="a dog", negative_prompt="", seed=1)
    assert p.denoising_strength is p.clip_skip is p.model_name is p.model_hash is None


def test_multi_line_negative_prompt_and_blank_lines():
    text = (
        "line one\n\nline three\nNegative prompt: bad\nworse\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64"
    )
    p = parse_parameters(text)
    assert p.prompt == "line one\n\nline three"
    assert p.negative_prompt == "bad\nworse"


def test_empty_prompt_and_crlf_line_ends():
    text = "\r\nNegative prompt: bad \r\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x32\r\n"
    p = parse_parameters(text)
    assert (p.prompt, p.negative_prompt, p.width, p.height) == ("", "bad", 64, 32)


def test_quoted_values_are_json():
    text = (
        "x\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64, "
        'Wildcard prompt: "a, \\"b\\": c\\nd", Emoji: "ü, ✓"'
    )
    p = parse_parameters(text)
    assert p.extra == {"Wildcard prompt": 'a, "b": c\nd', "Emoji": "ü, ✓"}


def test_bare_keys_and_junk_are_tolerated():
    # A1111 writes a key alone when its value equals it; junk between commas is skipped as A1111 does.
    text = "x\nSteps: 20, Sampler: Euler a, (junk), CFG scale: 7, Seed: 1, Size: 64x64, y, Tiling"
    p = parse_parameters(text)
    assert p.extra == {"Tiling": "Tiling"}
    assert (
        format_parameters(p) == "x\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64, Tiling"
    )


def test_last_line_with_fewer_than_three_pairs_is_prompt_text():
    with pytest.raises(FlipbookError) as error:
        parse_parameters("a cat\nStyle: x, Mood: y")
    assert "Steps" in str(error.value)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("", "parameters"),
        ("just a prompt", "parameters"),
        ("x\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1", "parameters"),  # no Size
        ("x\nSteps: many, Sampler: a, CFG scale: 7, Seed: 1, Size: 64x64", "parameters: Steps"),
        ("x\nSteps: 0, Sampler: a, CFG scale: 7, Seed: 1, Size: 64x64", "parameters: Steps"),
        ("x\nSteps: 1_0, Sampler: a, CFG scale: 7, Seed: 1, Size: 64x64", "parameters: Steps"),
        ("x\nSteps: 20, Sampler: a, CFG scale: nan, Seed: 1, Size: 64x64", "parameters: CFG scale"),
        ("x\nSteps: 20, Sampler: a, CFG scale: 7, Seed: 1.5, Size: 64x64", "parameters: Seed"),
        ("x\nSteps: 20, Sampler: a, CFG scale: 7, Seed: 1, Size: 64", "parameters: Size"),
        ("x\nSteps: 20, Sampler: a, CFG scale: 7, Seed: 1, Size: 0x64", "parameters: Size"),
        ("x\nSteps: 20, Sampler: a, CFG scale: 7, Seed: 1, Size: 8x8, Clip skip: 0", "parameters: Clip skip"),
        (
            "x\nSteps: 20, Sampler: a, CFG scale: 7, Seed: 1, Size: 8x8, Denoising strength: x",
            "parameters: D",
        ),
    ],
)
def test_malformed_infotext_is_a_flipbook_error(text, field):
    with pytest.raises(FlipbookError) as error:
        parse_parameters(text)
    assert error.value.field.startswith(field)


def test_non_string_is_a_flipbook_error():
    with pytest.raises(FlipbookError):
        parse_parameters(b"Steps: 20")  # type: ignore[arg-type]


# --- format ---------------------------------------------------------------------------------------------------


def test_format_matches_a1111():
    p = make(
        model_hash="abc", model_name="name", denoising_strength=0.75, clip_skip=2, extra={"ENSD": "31337"}
    )
    assert format_parameters(p) == (
        "a cat in a hat\nNegative prompt: blurry\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 123, Size: 512x512, Model hash: abc, Model: name, "
        "Denoising strength: 0.75, Clip skip: 2, ENSD: 31337"
    )


def test_format_numbers_like_a1111():
    assert "CFG scale: 7.5," in format_parameters(make(cfg_scale=7.5))
    assert "CFG scale: 7," in format_parameters(make(cfg_scale=7))
    assert format_parameters(make(denoising_strength=1.0)).endswith("Denoising strength: 1")
    assert format_parameters(make(denoising_strength=0.3)).endswith("Denoising strength: 0.3")
    assert "Seed: -1," in format_parameters(make(seed=-1))


def test_format_accepts_numpy_numbers():
    import numpy as np

    p = make(steps=np.int64(20), cfg_scale=np.float32(7.5), seed=np.uint32(4294967295), width=np.int32(64))
    assert "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 4294967295, Size: 64x512" in format_parameters(
        p
    )


def test_format_omits_empty_negative_prompt_and_empty_prompt():
    assert format_parameters(make(negative_prompt="")).startswith("a cat in a hat\nSteps: 20,")
    assert format_parameters(make(prompt="", negative_prompt="")).startswith("Steps: 20,")
    assert format_parameters(make(prompt="")).startswith("Negative prompt: blurry\nSteps: 20,")


def test_format_key_order_follows_a1111_not_the_extra_dict():
    p = make(extra={"Version": "flipbook 0.1", "Hires upscale": "2", "Schedule type": "Karras", "RNG": "CPU"})
    line = format_parameters(p).split("\n")[-1]
    assert line == (
        "Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 123, Size: 512x512, RNG: CPU, "
        "Hires upscale: 2, Version: flipbook 0.1"
    )


def test_format_quotes_like_a1111():
    p = make(sampler="DPM++ 2M, Karras", extra={"Lora hashes": "a: 1, b: 2", "Note": "é x", "Lines": "a\nb"})
    line = format_parameters(p).split("\n")[-1]
    assert 'Sampler: "DPM++ 2M, Karras"' in line
    assert 'Lora hashes: "a: 1, b: 2"' in line
    assert "Note: é x" in line  # no quoting needed, non-ASCII kept
    assert 'Lines: "a\\nb"' in line


@pytest.mark.parametrize(
    "p",
    [
        make(steps=0),
        make(steps=2.5),
        make(cfg_scale=float("nan")),
        make(cfg_scale=True),
        make(width=0),
        make(clip_skip=0),
        make(sampler=None),
        make(extra={"Steps": "30"}),
        make(extra={"x": "1"}),
        make(extra={"bad:key": "1"}),
        make(extra={"trailing ": "1"}),
        make(extra={"Key": 5}),
    ],
)
def test_format_rejects_bad_values(p):
    with pytest.raises(FlipbookError):
        format_parameters(p)


# --- round trips ----------------------------------------------------------------------------------------------

A1111_STRINGS = [
    A1111_INFOTEXT,
    "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b",
    "girl with an artist's beret, determined, blue eyes, desert scene, ((eyeshadow)), (coquettish)\n"
    "Negative prompt: ugly, fat, (((deformed))), [blurry], bad anatomy, (extra_limb)\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b",
    "photo of a lighthouse\nNegative prompt: cartoon\n"
    "Steps: 30, Sampler: DPM++ SDE Karras, CFG scale: 6.5, Seed: 42, Size: 768x512, Model hash: e6bb9ea85b, "
    "Model: realisticVision, Denoising strength: 0.3, Hires upscale: 1.5, Hires steps: 10, "
    "Hires upscaler: R-ESRGAN 4x+, Version: v1.6.0",
    "img2img\nSteps: 25, Sampler: Euler, CFG scale: 7, Seed: 7, Size: 640x640, Model hash: abc, "
    'Denoising strength: 0.6, Mask blur: 4, ControlNet 0: "Module: canny, Model: control_v11p, Weight: 1", '
    "Version: v1.7.0",
]


@pytest.mark.parametrize("text", A1111_STRINGS)
def test_format_of_parse_is_identity_for_a1111_strings(text):
    assert format_parameters(parse_parameters(text)) == text


def _representable(text: str) -> str:
    """A prompt as A1111's reader returns it: lines stripped, no line starting with the negative marker."""
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if not line.startswith("Negative prompt:")]
    return "\n".join(lines).strip()


prompts = st.text(max_size=60).map(_representable)
values = st.text(max_size=20)
keys = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_ \-/]{0,12}[A-Za-z0-9_\-/]\Z").filter(
    lambda k: (
        k not in {"Steps", "Sampler", "CFG scale", "Seed", "Size", "Model hash", "Model"}
        and k not in {"Denoising strength", "Clip skip"}
    )
)
numbers = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
)

parameters = st.builds(
    GenerationParameters,
    prompt=prompts,
    negative_prompt=prompts,
    steps=st.integers(1, 10_000),
    sampler=values,
    cfg_scale=numbers,
    seed=st.integers(-(2**63), 2**64),
    width=st.integers(1, 16384),
    height=st.integers(1, 16384),
    denoising_strength=st.none() | numbers,
    clip_skip=st.none() | st.integers(1, 12),
    model_name=st.none() | values,
    model_hash=st.none() | values,
    extra=st.dictionaries(keys, values, max_size=5),
)


@settings(max_examples=300)
@given(parameters)
def test_parse_of_format_is_identity(p):
    parsed = parse_parameters(format_parameters(p))
    assert parsed == p
    # extra keeps the order it is written in (A1111's, not necessarily the dict's)
    assert set(parsed.extra) == set(p.extra)


INFOTEXT_PIECES = st.sampled_from(
    ["Steps: 20", "Sampler: a", "CFG scale: 7", "Seed: 1", "Size: 8x8", "Clip skip: 2", ", ", ",", " "]
    + ['"', '"a, b"', "\\", ":", "\n", "\r", "Negative prompt:", "x", "ab", "Key : v", "Size: 0x0", "é"]
)


@settings(max_examples=300)
@given(st.text(max_size=200) | st.lists(INFOTEXT_PIECES, max_size=30).map("".join))
def test_parse_only_raises_flipbook_error_and_what_it_reads_can_be_written(text):
    try:
        p = parse_parameters(text)
    except FlipbookError:
        return
    assert parse_parameters(format_parameters(p)) == p


# --- PNG files ------------------------------------------------------------------------------------------------


def _image() -> PIL.Image.Image:
    return PIL.Image.new("RGB", (16, 8), (200, 30, 40))


def test_png_round_trip(tmp_path):
    path = tmp_path / "frame.png"
    p = make(prompt="a cat, ünïcödé ✓ 猫", extra={"Version": "flipbook"})
    assert save_png(_image(), path, p) == path
    text = read_png_parameters(path)
    assert text == format_parameters(p)
    assert parse_parameters(text) == p
    with PIL.Image.open(path) as image:
        assert image.format == "PNG" and image.size == (16, 8)
        assert image.getpixel((0, 0)) == (200, 30, 40)
    assert [entry.name for entry in tmp_path.iterdir()] == ["frame.png"]  # no temporary file left


def test_png_latin1_text_is_a_text_chunk_named_parameters(tmp_path):
    path = tmp_path / "a.png"
    save_png(_image(), path, "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 16x8")
    data = path.read_bytes()
    assert b"tEXtparameters\x00a cat\nSteps: 20" in data
    assert read_png_parameters(path).startswith("a cat\n")


def _zlib_level_field(level: int) -> int:
    """The FLEVEL field zlib writes in its header for a compression ``level`` (RFC 1950; zlib's deflate.c)."""
    return 0 if level < 2 else 1 if level < 6 else 2 if level == 6 else 3


def _idat_header(data: bytes) -> int:
    """The second byte (FLG) of the zlib stream in a PNG's first IDAT chunk."""
    at = data.index(b"IDAT") + 4
    return data[at + 1]


def test_save_png_compresses_at_the_project_level_losslessly(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    path = save_png(PIL.Image.fromarray(pixels), tmp_path / "frame.png", "a cat")
    assert _idat_header(path.read_bytes()) >> 6 == _zlib_level_field(PNG_COMPRESS_LEVEL) == 0  # fastest
    with PIL.Image.open(path) as image:
        assert np.array_equal(np.asarray(image), pixels)


def test_save_png_replaces_an_existing_file(tmp_path):
    path = tmp_path / "a.png"
    save_png(_image(), path, "first")
    save_png(_image(), str(path), "second")
    assert read_png_parameters(path) == "second"


def test_png_without_parameters_reads_none(tmp_path):
    path = tmp_path / "plain.png"
    _image().save(path)
    assert read_png_parameters(path) is None


def test_non_image_file_is_an_error_naming_the_path(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    with pytest.raises(FlipbookError) as error:
        read_png_parameters(path)
    assert error.value.field == "path" and error.value.value == str(path)
    assert str(path) in str(error.value)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(FlipbookError):
        read_png_parameters(tmp_path / "missing.png")


def test_save_into_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FlipbookError):
        save_png(_image(), tmp_path / "nowhere" / "a.png", "x")


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "a.png"

    def fail(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(RuntimeError):
        save_png(_image(), path, "x")
    assert list(tmp_path.iterdir()) == []

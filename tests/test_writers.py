"""Tests for flipbook.io.writers: files read back with Pillow and PyAV, timing, atomic writes, bad input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from flipbook.errors import FlipbookError
from flipbook.io import writers
from flipbook.io.writers import (
    gif_durations_ms,
    write_gif,
    write_mp4,
    write_outputs,
    write_png_frames,
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

    def broken_save(self: Image.Image, fp: Path, *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"GIF89a-half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
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
        ({"formats": ["gif", "webm"]}, "output.formats"),
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
        writers._normalise_frames(frames)
    assert "32x64" in str(caught.value)
    assert "64x64" in str(caught.value)

"""Memory independent of length: encoders read frames on disk one at a time, and write what they wrote before.

Each encoder is run on the same short clip from a list in memory and from PNG files on disk
(:class:`flipbook.io.frames.FrameFiles`); the files must be the same bytes. A frame sequence that counts the
frames alive at once shows that no encoder holds the clip.
"""

from __future__ import annotations

import weakref
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flipbook.errors import FlipbookError
from flipbook.io import gif
from flipbook.io.frames import FrameFiles, FrameSequence
from flipbook.io.metadata import png_info, xmp_packet
from flipbook.io.readers import read_frames
from flipbook.io.writers import (
    FORMATS,
    PNG_COMPRESS_LEVEL,
    WEBP_METHOD,
    EncodeOptions,
    apng_delay,
    make_apng,
    make_gif,
    make_webp,
    webp_durations_ms,
    write_outputs,
)

FPS = 12
SIZE = 64


def _clip(n: int = 10, size: int = SIZE, seed: int = 0) -> list[np.ndarray]:
    """Moving gradients with grain, a repeated frame (merged by GIF and APNG) and a cut (a new GIF scene)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    frames = []
    for i in range(n):
        base = np.stack([(x * 3 + 9 * i) % 256, (y * 2 + 5 * i) % 256, (x + y + i) % 256], -1)
        frames.append(np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8))
    frames.insert(4, frames[3].copy())
    frames.append(np.full_like(frames[0], 200))
    return frames


def _on_disk(frames: list[np.ndarray], folder: Path) -> FrameFiles:
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{i:05d}.png")
    return read_frames(folder, lazy=True).frames


def _read_all(path: Path) -> bytes | list[bytes]:
    if path.is_dir():
        return [p.read_bytes() for p in sorted(path.iterdir())]
    return path.read_bytes()


@pytest.mark.parametrize("ping_pong", [False, True])
def test_every_format_from_disk_is_the_same_file_as_from_memory(tmp_path: Path, ping_pong: bool) -> None:
    frames = _clip()
    files = _on_disk(frames, tmp_path / "frames")
    assert isinstance(files, FrameFiles) and len(files) == len(frames)
    options = EncodeOptions(ping_pong=ping_pong, gif_palette="per_scene", apng_colors=0)
    made = {}
    for name, source in (("memory", frames), ("disk", files)):
        written = write_outputs(
            source, tmp_path / name, stem="a", fps=FPS, formats=FORMATS, options=options, spec={"x": 1}
        )
        made[name] = {fmt: _read_all(path) for fmt, path in written.items()}
    for fmt in FORMATS:
        assert made["disk"][fmt] == made["memory"][fmt], fmt


class _Counted(FrameSequence):
    """Synthetic frames made when read, counting how many are alive at once."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames, self.alive, self.most = frames, 0, 0

    def __len__(self) -> int:
        return len(self.frames)

    def _frame(self, index: int) -> np.ndarray:
        frame = self.frames[index].copy()
        self.alive += 1
        self.most = max(self.most, self.alive)
        weakref.finalize(frame, self._freed)
        return frame

    def _freed(self) -> None:
        self.alive -= 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_encoders_hold_a_few_frames_whatever_the_length(tmp_path: Path, fmt: str) -> None:
    """40 frames, at most 3 alive at any time (a frame, the one before for GIF's still pixels and APNG's
    changed rectangle, a first)."""
    frames = _Counted(_clip(40))
    write_outputs(frames, tmp_path, stem="a", fps=FPS, formats=[fmt], options=EncodeOptions(ping_pong=True))
    assert frames.most <= 3, f"{fmt} held {frames.most} frames"


@pytest.mark.parametrize("colors", [0, 32])
def test_apng_holds_a_few_pictures_whatever_the_length(tmp_path: Path, monkeypatch, colors: int) -> None:
    """The frames' pictures (PIL images, what Pillow's own APNG writer kept all of) alive at once: a few."""
    alive: set[int] = set()
    most = [0]

    def counted(make):
        def made(*args, **kwargs):
            image = make(*args, **kwargs)
            if id(image) not in alive:  # fromarray makes its picture with frombytes
                alive.add(id(image))
                most[0] = max(most[0], len(alive))
                weakref.finalize(image, alive.discard, id(image))
            return image

        return made

    monkeypatch.setattr(Image, "fromarray", counted(Image.fromarray))
    monkeypatch.setattr(Image, "frombytes", counted(Image.frombytes))
    options = EncodeOptions(apng_colors=colors)
    write_outputs(_clip(40), tmp_path, stem="a", fps=FPS, formats=["apng"], options=options)
    assert 0 < most[0] <= 3


@pytest.mark.parametrize("colors", [0, 16])
@pytest.mark.parametrize("clip", ["moving", "one picture", "one frame", "ping-pong"])
def test_streamed_apng_is_what_pillow_writes_from_every_frame(colors: int, clip: str) -> None:
    """The streaming APNG writer against Pillow's own ``save`` of the whole list (what the encoder did before
    it streamed): the same bytes, repeated frames merged, changed rectangles, text chunks, loop, delays."""
    frames = {"moving": _clip(), "one picture": [_clip()[0]] * 3, "one frame": _clip()[:1],
              "ping-pong": _clip() + _clip()[::-1]}[clip]  # fmt: skip
    streamed = make_apng(frames, fps=FPS, loop=2, colors=colors, spec={"a": 1}, pnginfo_text="p").data
    if colors:
        frame = gif.palette_frames(frames, colors)
        images = [frame(i) for i in range(len(frames))]
    else:
        images = [Image.fromarray(array) for array in frames]
    reference = BytesIO()
    images[0].save(
        reference, format="PNG", save_all=True, append_images=images[1:],
        duration=[apng_delay(FPS) * 1000] * len(images), loop=2, default_image=False,
        pnginfo=png_info({"a": 1}, "p"), compress_level=PNG_COMPRESS_LEVEL,
    )  # fmt: skip
    assert streamed == reference.getvalue()


def test_gif_size_target_holds_a_few_frames(tmp_path: Path) -> None:
    frames = _Counted(_clip(30))
    options = EncodeOptions(gif_max_mb=0.02, max_mb_allow_fps=True)
    write_outputs(frames, tmp_path, stem="a", fps=FPS, formats=["gif"], options=options)
    assert frames.most <= 3


@pytest.mark.parametrize("palette", ["per_scene", "global", "per_frame"])
@pytest.mark.parametrize("dither", ["none", "ordered"])
def test_streamed_gif_is_what_pillow_writes_from_every_frame(palette: str, dither: str) -> None:
    """The streaming GIF writer against Pillow's own ``save`` of the whole list of quantized frames (what the
    encoder did before it streamed): the same bytes, so a Pillow upgrade that changes them fails here."""
    frames = _clip()
    settings = gif.GifSettings(palette, dither, 64)
    durations = [80, 90, 80] * 4
    images = list(gif.quantize_clip(frames, palette, dither, 64))
    options: dict[str, object] = {"duration": durations, "loop": 0, "disposal": 1, "optimize": False}
    palettes = {image.palette.tobytes() for image in images}
    if len(palettes) == 1:
        options["palette"] = palettes.pop()
    reference = BytesIO()
    images[0].save(reference, format="GIF", save_all=True, append_images=images[1:], comment="c", **options)
    streamed = gif.pillow_gif(frames, durations, settings, loop=0, comment="c")
    assert streamed == reference.getvalue()


def test_streamed_gif_of_one_picture_is_a_still_with_the_whole_duration() -> None:
    frames = [_clip()[0]] * 3
    data = make_gif(frames, fps=10, loop=0, comment=None, settings=gif.GifSettings()).data
    with Image.open(BytesIO(data)) as image:
        assert getattr(image, "n_frames", 1) == 1
        assert image.info["duration"] == 300


@pytest.mark.parametrize("lossless", [False, True])
def test_streamed_webp_shows_each_frame_as_libwebp_codes_it(lossless: bool) -> None:
    """The WebP written frame by frame: every frame as libwebp's still encoder codes it at the same settings
    (lossless: the frame itself), a repeated frame merged into the one before it (durations added), the loop
    count and the XMP packet; a frame that changes in part stores only that part."""
    frames = _clip()
    frames[6] = frames[5].copy()
    frames[6][20:30, 11:40] = 0  # a change in a rectangle: its corner on even pixels, (10, 20)
    data = make_webp(frames, fps=FPS, quality=80, lossless=lossless, loop=3, comment="c").data
    durations = webp_durations_ms(len(frames), FPS)
    with Image.open(BytesIO(data)) as image:
        assert image.info["loop"] == 3 and image.info["xmp"] == xmp_packet("c")
        shown, lasting = [], []
        for index in range(image.n_frames):
            image.seek(index)
            shown.append(np.asarray(image.convert("RGB")))
            lasting.append(image.info["duration"])
    kept = [0, 1, 2, 3, *range(5, len(frames))]  # frame 4 repeats frame 3
    assert lasting == [durations[0], durations[1], durations[2], durations[3] + durations[4], *durations[5:]]
    for picture, index in zip(shown, kept, strict=True):
        if lossless:
            assert np.array_equal(picture, frames[index])
        elif index != 6:
            still = BytesIO()
            Image.fromarray(frames[index]).save(still, format="WEBP", quality=80, method=WEBP_METHOD)
            assert np.array_equal(picture, np.asarray(Image.open(still).convert("RGB")))
    outside = np.ones(frames[0].shape[:2], bool)
    outside[20:30, 10:40] = False  # the stored rectangle
    assert np.array_equal(shown[5][outside], shown[4][outside])


def test_webp_frames_reach_the_file_as_they_are_read() -> None:
    """Each frame is in the file before the one after the next is read (libwebp's animation encoder kept
    every compressed frame until the end)."""
    from flipbook.io.webp import write_animated_webp

    frames, out, written = _clip(12), BytesIO(), []

    def frame(index: int) -> np.ndarray:
        written.append(out.tell())
        return frames[index]

    write_animated_webp(
        out, frame, [80] * len(frames), quality=80, lossless=False, method=WEBP_METHOD, loop=0
    )
    # the first read gives the size; then frame i is read with frames before i - 1 written
    assert all(written[i + 1] < written[i + 2] for i in range(1, len(frames) - 1) if i != 4)
    assert written[-1] < len(out.getvalue())


def test_frame_files_refuse_mixed_sizes_from_headers(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 9)).save(tmp_path / "b.png")
    with pytest.raises(FlipbookError) as error:
        read_frames(tmp_path, field="FRAMES", lazy=True)
    assert error.value.field == "FRAMES" and "b.png" in str(error.value.value)


def test_frame_files_are_a_sequence(tmp_path: Path) -> None:
    frames = _clip(4)
    files = _on_disk(frames, tmp_path / "f")
    np.testing.assert_array_equal(files[-1], frames[-1])
    assert [f.shape for f in files[1::2]] == [(SIZE, SIZE, 3)] * 3
    with pytest.raises(IndexError):
        files[len(files)]


def test_lossy_gif_written_to_a_file_is_the_lossy_gif_in_memory(tmp_path: Path) -> None:
    """gifsicle on the streamed file gives the bytes it gives from standard input."""
    if gif.gifsicle_path() is None:
        pytest.skip("gifsicle is not installed")
    from flipbook.io.writers import write_gif

    frames = _clip()
    path = write_gif(frames, tmp_path / "a.gif", fps=FPS, lossy=40)
    assert (
        path.read_bytes()
        == make_gif(frames, fps=FPS, loop=0, comment=None, settings=gif.GifSettings(lossy=40)).data
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif"]


def _post_spec(tmp_path: Path, formats: list[str]):
    from flipbook.spec.load import spec_from_data

    return spec_from_data(
        {
            "model": {"name": "tiny", "device": "cpu"},
            "animation": {"mode": "interpolate", "max_frames": 4, "fps": 8, "width": 64, "height": 64},
            "prompts": {"0": "a forest", "3": "a city"},
            "output": {"dir": str(tmp_path), "name": "out", "formats": formats},
            "post": {"interpolate": 3, "loop": True, "upscale": 1.5},
        }
    )


def test_post_processing_streams_from_disk_to_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interpolation and upscaling in the finish of a render: frames on disk give the same files as frames in
    memory, the in-betweens pass through a scratch folder that is removed, and few frames are alive at once."""
    from flipbook.runs.finish import post_process, write_animation

    formats = ["gif", "mp4", "png"]
    frames = _clip(8)
    spec = _post_spec(tmp_path, formats)
    made = {}
    for name, source in (("memory", frames), ("disk", _on_disk(frames, tmp_path / "frames"))):
        (tmp_path / name).mkdir()
        written = write_animation(spec, source, tmp_path / name, "params")
        made[name] = {fmt: _read_all(path) for fmt, path in written.items()}
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["out.gif", "out.mp4", "out_frames"]
    assert made["disk"] == made["memory"]
    assert len(made["disk"]["png"]) == len(frames) * 3
    from flipbook.post import frame_interpolation

    monkeypatch.setattr(frame_interpolation, "_cores", lambda: 2)  # flow threads: pairs in flight
    most = []
    for length in (20, 40):
        counted = _Counted(_clip(length))
        (tmp_path / f"counted-{length}").mkdir()
        write_animation(spec, counted, tmp_path / f"counted-{length}", "params")
        most.append(counted.most)
    assert most[0] == most[1] <= 2 * (2 * frame_interpolation.FLOW_BATCH + 1) + 1  # whatever the length
    expected = post_process(spec, frames)  # the list form: the same frames
    np.testing.assert_array_equal(read_frames(tmp_path / "disk" / "out_frames").frames[5], expected[5])


def test_interpolate_command_streams_and_writes_what_it_wrote_from_memory(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flipbook.cli import app
    from flipbook.io.writers import write_gif, write_png_frames
    from flipbook.post.frame_interpolation import interpolate_frames

    frames = _clip(6)
    _on_disk(frames, tmp_path / "in")
    runner = CliRunner()
    for out in ("frames", "a.gif"):
        done = runner.invoke(app, ["interpolate", str(tmp_path / "in"), "--out", str(tmp_path / "out" / out),
                                   "--x", "3", "--fps", "10"])  # fmt: skip
        assert done.exit_code == 0, done.output
        assert f"{len(frames)} -> {3 * len(frames) - 2} frames" in done.output
    expected = interpolate_frames(frames, factor=3)
    reference = write_png_frames(expected, tmp_path / "ref")
    assert [p.read_bytes() for p in reference] == _read_all(tmp_path / "out" / "frames")
    assert write_gif(expected, tmp_path / "ref.gif", fps=10).read_bytes() == _read_all(
        tmp_path / "out" / "a.gif"
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.gif", "frames"]  # no scratch left

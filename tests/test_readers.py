"""Reading frames back: folders in natural order, animated images with their timing, videos with their rate."""

import cv2
import numpy as np
import pytest
from PIL import Image

from flipbook.errors import FlipbookError
from flipbook.imaging.masks import load_mask
from flipbook.io.images import open_image
from flipbook.io.readers import natural_key, read_frames
from flipbook.io.writers import write_gif, write_mp4


def _frames(n=6, size=(48, 32)):
    return [np.full((size[1], size[0], 3), (i * 40, 255 - i * 40, 128), np.uint8) for i in range(n)]


def test_folder_in_natural_order(tmp_path):
    for i in (10, 2, 1):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(tmp_path / f"frame_{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    source = read_frames(tmp_path)
    assert [int(f[0, 0, 0]) for f in source.frames] == [1, 2, 10]
    assert source.fps is None


def test_natural_key_orders_numbers_as_numbers():
    assert sorted(["f10.png", "f9.png", "F1.png"], key=natural_key) == ["F1.png", "f9.png", "f10.png"]


def test_gif_frames_and_rate(tmp_path):
    path = write_gif(_frames(), tmp_path / "a.gif", fps=10)
    source = read_frames(path)
    assert len(source.frames) == 6
    assert source.frames[0].shape == (32, 48, 3)
    assert source.durations_ms == [100] * 6
    assert source.fps == pytest.approx(10)


def test_video_frames_and_rate(tmp_path):
    path = write_mp4(_frames(8), tmp_path / "a.mp4", fps=12)
    source = read_frames(path)
    assert len(source.frames) == 8
    assert source.fps == pytest.approx(12)
    assert np.abs(source.frames[3].astype(int) - _frames(8)[3]).mean() < 4


def test_still_image_is_one_frame(tmp_path):
    Image.fromarray(_frames(1)[0]).save(tmp_path / "a.jpg")
    assert len(read_frames(tmp_path / "a.jpg").frames) == 1


@pytest.mark.parametrize("name", ["missing.mp4", "empty_dir", "mixed", "bad.mp4", "x.xyz"])
def test_bad_inputs_name_the_field(tmp_path, name):
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "mixed").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "mixed" / "1.png")
    Image.new("RGB", (9, 8)).save(tmp_path / "mixed" / "2.png")
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    (tmp_path / "x.xyz").write_bytes(b"?")
    with pytest.raises(FlipbookError) as caught:
        read_frames(tmp_path / name, field="init.video")
    assert caught.value.field == "init.video"


# --- 16-bit and float inputs -----------------------------------------------------------------------------

RAMP16 = np.linspace(0, 65535, 48 * 32).round().astype(np.uint16).reshape(32, 48)


def _write_16bit(path, array, writer):
    """A 16-bit PNG as each library writes it (OpenCV wants BGR channel order)."""
    if writer == "opencv":
        assert cv2.imwrite(str(path), array[..., ::-1] if array.ndim == 3 else array)
    elif writer == "pillow":
        Image.fromarray(array).save(path)
    else:  # numpy data through Pillow's explicit 16-bit mode
        Image.frombytes("I;16", array.shape[::-1], array.astype("<u2").tobytes()).save(path)
    return path


def _expected_8bit(array16):
    return np.rint(array16 / 257.0).astype(int)


@pytest.mark.parametrize("writer", ["opencv", "pillow", "numpy"])
def test_16bit_grey_png_is_scaled_not_clipped(tmp_path, writer):
    path = _write_16bit(tmp_path / "grey16.png", RAMP16, writer)
    image = open_image(path, "init.image")
    assert image.mode == "L"
    assert np.abs(np.asarray(image).astype(int) - _expected_8bit(RAMP16)).max() <= 1
    rgb = read_frames(path).frames[0]  # a still as a video/mask source
    assert np.abs(rgb.astype(int) - _expected_8bit(RAMP16)[..., None]).max() <= 1
    assert (rgb == 255).mean() < 0.01  # it read 99.6% white before


def test_16bit_rgb_png_keeps_its_colours(tmp_path):
    rgb16 = np.stack([RAMP16, RAMP16[::-1], np.full_like(RAMP16, 30000)], axis=-1)
    path = _write_16bit(tmp_path / "rgb16.png", rgb16, "opencv")
    image = open_image(path, "init.image")
    assert image.mode == "RGB"
    assert np.abs(np.asarray(image).astype(int) - _expected_8bit(rgb16)).max() <= 1


def test_a_folder_of_16bit_frames_reads_like_8bit_ones(tmp_path):
    for i in range(3):
        _write_16bit(tmp_path / f"f{i}.png", (RAMP16 // (i + 1)).astype(np.uint16), "opencv")
    frames = read_frames(tmp_path).frames
    for i, frame in enumerate(frames):
        assert np.abs(frame[..., 1].astype(int) - _expected_8bit(RAMP16 // (i + 1))).max() <= 1


def test_float_image_is_read_as_0_to_1(tmp_path):
    values = np.linspace(0, 1, 48 * 32, dtype=np.float32).reshape(32, 48)
    Image.fromarray(values).save(tmp_path / "float.tif")
    image = open_image(tmp_path / "float.tif", "init.image")
    assert np.abs(np.asarray(image).astype(int) - np.rint(values * 255)).max() <= 1
    mask = load_mask(tmp_path / "float.tif", (48, 32))
    assert np.abs(mask - values).max() < 1e-3

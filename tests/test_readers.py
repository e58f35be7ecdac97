"""Reading frames back: folders in natural order, animated images with their timing, videos with their rate."""

import numpy as np
import pytest
from PIL import Image

from flipbook.errors import FlipbookError
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

"""The background frame writer: order, bound, errors raised in the render's thread, the consistency score."""

import threading

import numpy as np
import PIL.Image
import pytest

from flipbook.errors import FlipbookError
from flipbook.events import Events
from flipbook.io.pnginfo import read_png_parameters, save_png
from flipbook.motion.consistency import temporal_error
from flipbook.runs.writer import FrameWriter


def _frames(n: int, size: int = 48) -> list[PIL.Image.Image]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return [PIL.Image.fromarray(np.roll(base, 2 * i, axis=1)) for i in range(n)]


def test_frames_are_written_in_order_as_save_png_writes_them(tmp_path):
    frames = _frames(5)
    done = []
    with FrameWriter() as writer:
        for i, image in enumerate(frames):
            writer.put(i, image, tmp_path / f"frame_{i}.png", f"frame {i}")
            done += writer.finished()
        done += writer.close()
    assert [w.index for w in done] == list(range(5))
    save_png(frames[3], tmp_path / "direct.png", "frame 3")
    assert (tmp_path / "frame_3.png").read_bytes() == (tmp_path / "direct.png").read_bytes()
    assert read_png_parameters(tmp_path / "frame_4.png") == "frame 4"
    assert not list(tmp_path.glob("*.part"))


def test_the_queue_is_bounded(tmp_path):
    """With the writer held up, the render can hand over ``depth`` frames (plus the one being written), then
    waits."""
    gate, started = threading.Event(), threading.Event()

    def slow_save(image, path, parameters):
        started.set()
        gate.wait(10)
        return save_png(image, path, parameters)

    writer = FrameWriter(depth=2, save=slow_save)
    frames = _frames(5)
    writer.put(0, frames[0], tmp_path / "0.png", "")
    started.wait(10)
    writer.put(1, frames[1], tmp_path / "1.png", "")
    writer.put(2, frames[2], tmp_path / "2.png", "")
    blocked = threading.Thread(target=writer.put, args=(3, frames[3], tmp_path / "3.png", ""))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()  # the fourth frame waits for room
    gate.set()
    blocked.join(10)
    assert [w.index for w in writer.close()] == [0, 1, 2, 3]


def test_a_failed_write_is_raised_in_the_render_and_nothing_after_it_is_written(tmp_path):
    def failing(image, path, parameters):
        if path.name == "1.png":
            raise FlipbookError("output.dir", str(path.parent), "a folder flipbook may write")
        return save_png(image, path, parameters)

    frames = _frames(4)
    writer = FrameWriter(save=failing)
    with pytest.raises(FlipbookError, match="output.dir"):
        for i, image in enumerate(frames):
            writer.put(i, image, tmp_path / f"{i}.png", "")
        writer.close()
    writer.close(raise_error=False)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["0.png"]


def test_the_writers_pair_scores_are_the_consistency_score(tmp_path):
    frames = _frames(5, size=300)
    with FrameWriter() as writer:
        for i, image in enumerate(frames):
            writer.put(i, image, tmp_path / f"{i}.png", "")
    arrays = [np.asarray(f) for f in frames]
    assert sorted(writer.pair_errors) == [1, 2, 3, 4]
    assert temporal_error(arrays, known=writer.pair_errors) == pytest.approx(temporal_error(arrays), abs=1e-9)
    assert temporal_error(arrays, known={1: writer.pair_errors[1]}) == pytest.approx(temporal_error(arrays))


def test_render_reports_every_frame_in_order_from_its_own_thread(tmp_path, tiny_model):
    from unittest import mock

    from flipbook.runs.render import render
    from flipbook.spec.model import Spec

    spec = Spec(
        model={"name": "tiny"}, sampling={"steps": 2, "seed": 3},
        animation={"mode": "2d", "max_frames": 4, "width": 64, "height": 64},
        prompts={"0": "a lighthouse"}, camera={"cadence": 2}, output={"dir": tmp_path, "formats": ["png"]},
    )  # fmt: skip
    seen = []

    def on_frame(event):
        seen.append((event.index, threading.current_thread() is threading.main_thread()))
        assert (tmp_path / "flipbook" / "frames" / f"frame_{event.index:05d}.png").exists()

    with mock.patch("flipbook.runs.cores.load_model", lambda *a, **k: tiny_model):
        result = render(spec, Events(on_frame=on_frame))
    assert seen == [(i, True) for i in range(4)]
    assert [p.name for p in result.frames] == [f"frame_{i:05d}.png" for i in range(4)]
    log = (tmp_path / "flipbook" / "render.log").read_text()
    assert "frame 1 (in-between)" in log and "frame 2\n" in log

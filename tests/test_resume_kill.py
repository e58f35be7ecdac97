"""A render killed with SIGKILL at a random frame, then resumed, gives the frames of an uninterrupted render.

Three real ``flipbook render`` processes (one thread each, so their floating point is comparable): the whole
render, one killed as soon as a randomly chosen frame file appears, and ``--resume`` on the killed run.
"""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import PIL.Image

SPEC = """
version = 1
[model]
name = "tiny"
device = "cpu"
[sampling]
steps = 3
seed = 21
[animation]
mode = "2d"
max_frames = 9
width = 64
height = 64
strength = 0.5
[prompts]
0 = "a forest"
4 = "a city"
[camera]
cadence = 2
zoom = "0:(1.04)"
angle = "0:(3*sin(t/2))"
noise = 0.05
[output]
dir = "{out}"
formats = ["png", "gif"]
"""


def flipbook(*args: str) -> list[str]:
    return [sys.executable, "-c", "from flipbook.cli import main; main()", *args]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def read_frames(run_dir):
    return [np.asarray(PIL.Image.open(p)) for p in sorted((run_dir / "frames").glob("frame_*.png"))]


def test_sigkill_at_a_random_frame_then_resume_gives_identical_frames(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(out=tmp_path / "out"))
    # a diffused frame or an in-between, never 7 or 8: with cadence 2 frame 8 is diffused before in-between 7
    # and written right after it, so a kill at 7 usually comes too late
    kill_at = random.randint(1, 6)

    killed = subprocess.Popen(flipbook("render", str(spec), "--set", "output.name='part'"), env=env())
    target = tmp_path / "out" / "part" / "frames" / f"frame_{kill_at:05d}.png"
    deadline = time.monotonic() + 300
    while not target.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, f"the render ended before frame {kill_at} was written"
    on_disk = sorted(p.name for p in (tmp_path / "out" / "part" / "frames").glob("frame_*.png"))
    written = len(on_disk)
    assert written < 9 and not list((tmp_path / "out" / "part").glob("*.gif"))
    # the background writer writes in order: what a kill leaves is always frames 0..k, never a gap
    assert on_disk == [f"frame_{i:05d}.png" for i in range(written)]

    subprocess.run(flipbook("render", "--resume", str(tmp_path / "out" / "part")), env=env(), check=True)
    subprocess.run(flipbook("render", str(spec), "--set", "output.name='whole'"), env=env(), check=True)

    whole, resumed = read_frames(tmp_path / "out" / "whole"), read_frames(tmp_path / "out" / "part")
    assert len(whole) == len(resumed) == 9
    same = [np.array_equal(a, b) for a, b in zip(whole, resumed, strict=True)]
    assert all(same), f"killed at frame {kill_at} ({written} written); frames equal: {same}"
    assert (tmp_path / "out" / "part" / "part.gif").is_file()
    assert (
        sorted((tmp_path / "out" / "part").rglob(".*.part")) == []
    )  # what the kill left half-written is gone
    log = (tmp_path / "out" / "part" / "render.log").read_text()
    assert "resume from frame" in log

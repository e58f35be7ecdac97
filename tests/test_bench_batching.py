"""``flipbook bench interpolate`` on the tiny model: the report's fields and files (no timing assertions)."""

import json

import pytest

from flipbook.bench import run_case
from flipbook.errors import FlipbookError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_interpolate_case_writes_report(run_cli, tmp_path):
    code, out, err = run_cli("bench", "interpolate", "--model", "tiny", "--size", "64x64", "--steps", "2",
                             "--runs", "1", "--frames", "4", "--device", "cpu", "--out", tmp_path)  # fmt: skip
    assert code == 0, err
    result = json.loads((tmp_path / "interpolate-tiny-64x64-cpu.json").read_text(encoding="utf-8"))
    assert (tmp_path / "interpolate-tiny-64x64-cpu.md").read_text(encoding="utf-8").strip() in out
    assert result["case"] == "interpolate" and result["frames"] == 4 and result["batch"] == 4
    assert result["batched_frames_per_s"] > 0 and result["single_frames_per_s"] > 0
    assert len(result["batched_times"]) == len(result["single_times"]) == 1
    assert result["frames_max_abs_diff"] <= 1 and result["frames_share_differing"] < 0.01


def test_interpolate_case_needs_a_walk(tmp_path):
    with pytest.raises(FlipbookError) as error:
        run_case("interpolate", model="tiny", width=64, height=64, steps=2, runs=1, sampler="Euler",
                 device="cpu", dtype="auto", out=tmp_path, frames=1)  # fmt: skip
    assert error.value.field == "frames"


def test_frame_interpolation_case_through_the_cli(run_cli, tmp_path):
    code, out, err = run_cli("bench", "frame-interpolation", "--size", "64x64", "--frames", "4", "--runs", "1",
                             "--out", tmp_path)  # fmt: skip
    assert code == 0, err
    result = json.loads((tmp_path / "frame-interpolation-64x64.json").read_text(encoding="utf-8"))
    assert result["case"] == "frame-interpolation"
    assert "in-betweens/s" in out


def test_video_case_writes_report(run_cli, tmp_path):
    code, out, err = run_cli("bench", "video", "--model", "tiny", "--size", "64x64", "--steps", "2",
                             "--runs", "1", "--frames", "4", "--device", "cpu", "--out", tmp_path)  # fmt: skip
    assert code == 0, err
    result = json.loads((tmp_path / "video-tiny-64x64-cpu.json").read_text(encoding="utf-8"))
    assert result["case"] == "video" and result["frames"] == 4
    assert result["batched_frames_per_s"] > 0 and result["frames_max_abs_diff"] <= 1

"""The memory bench's measurement: a child's own peak RSS, and a failing command as one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from flipbook.bench import CASES
from flipbook.bench.memory import _markdown, commands, peak_rss, write_clip
from flipbook.errors import FlipbookError


def test_peak_rss_is_the_childs_and_failures_name_the_command(tmp_path: Path) -> None:
    write_clip(tmp_path / "clip", 3, 32, 32)
    line = commands(tmp_path / "clip", tmp_path / "out")["encode png"]
    peak, seconds = peak_rss(line)
    assert 20e6 < peak < 2e9 and seconds > 0  # an interpreter with NumPy and Pillow, not this test process
    assert len(list((tmp_path / "out" / "png_frames").iterdir())) == 3
    with pytest.raises(FlipbookError) as error:
        peak_rss(["encode", str(tmp_path / "missing"), "--to", "png", "--fps", "1"])
    assert error.value.field == "command" and "missing" in error.value.value


def test_the_case_is_registered_and_reports_the_target() -> None:
    assert "memory" in CASES
    row = {"150": {"peak_mb": 100.0, "seconds": 1.0}, "1200": {"peak_mb": 115.0, "seconds": 8.0}}
    table = _markdown({"frames": [150, 1200], "size": "512x512", "target_ratio": 1.1, "commands": {"x": row}})
    assert "| x | 100 | 115 | 1.15 | missed | 8.0 |" in table

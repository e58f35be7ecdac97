"""Every mode renders with an SDXL checkpoint (``tiny-xl``): each mode's example, 4 frames at 64x64."""

from __future__ import annotations

from pathlib import Path

import pytest

from flipbook.models.families import builtin_family
from flipbook.modes import MODES
from flipbook.spec.load import load_spec

pytestmark = pytest.mark.usefixtures("one_thread")
EXAMPLES = {
    spec.animation.mode: path
    for path in sorted(Path(__file__).parents[1].glob("examples/*.toml"))
    if not (spec := load_spec(path)).sweep  # a sweep example renders a grid of runs, not one mode's run
}
SDXL = builtin_family("tiny-xl", "image").name


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_renders_four_frames_on_tiny_xl(mode, tmp_path, run_cli):
    code, out, err = run_cli(
        "render", EXAMPLES[mode], "-o", tmp_path, "--set", "model.name=tiny-xl",
        "--set", "animation.max_frames=4", "--set", "animation.width=64", "--set", "animation.height=64",
        "--set", "sampling.steps=2", "--set", "output.formats=['png']",
    )  # fmt: skip
    assert code == 0, err
    assert len(list(tmp_path.glob("*/frames/frame_*.png"))) == 4


def test_an_sdxl_render_is_deterministic(tmp_path, run_cli):
    frames = []
    for run in ("a", "b"):
        code, _, err = run_cli(
            "render", EXAMPLES["2d"], "-o", tmp_path / run, "--set", "model.name=tiny-xl",
            "--set", "animation.max_frames=3", "--set", "animation.width=64", "--set", "animation.height=64",
            "--set", "sampling.steps=2", "--set", "output.formats=['png']",
        )  # fmt: skip
        assert code == 0, err
        frames.append([p.read_bytes() for p in sorted((tmp_path / run).glob("*/frames/frame_*.png"))])
    assert len(frames[0]) == 3 and frames[0] == frames[1]


def test_an_sdxl_render_resumed_after_a_cancel_gives_the_same_frames(tmp_path):
    """Per-frame generators and the resume point hold for SDXL as for SD 1.x (prompt travel with blended
    pooled embeddings, a 2D camera)."""
    import numpy as np
    import PIL.Image

    from flipbook.events import Events, RenderCancelled
    from flipbook.runs.render import render, resume
    from flipbook.spec.load import spec_from_data

    def make(name):
        return spec_from_data({
            "model": {"name": "tiny-xl", "device": "cpu"}, "sampling": {"steps": 2, "seed": 11},
            "animation": {"mode": "2d", "max_frames": 5, "width": 64, "height": 64, "strength": 0.5},
            "camera": {"zoom": "0:(1.05)"}, "prompts": {"0": "a forest", "4": "a city"},
            "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
        })  # fmt: skip

    def frames(result):
        return [np.asarray(PIL.Image.open(p)) for p in result.frames]

    whole = frames(render(make("whole")))
    events = Events(on_frame=lambda event: events.cancel() if event.index == 2 else None)
    with pytest.raises(RenderCancelled):
        render(make("part"), events)
    result = resume(tmp_path / "part")
    assert result.resumed_from >= 0
    assert all(np.array_equal(a, b) for a, b in zip(whole, frames(result), strict=True))

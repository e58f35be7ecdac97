"""Spec loading and ``render()`` with the travel mode on the tiny model."""

import json

import numpy as np
import PIL.Image
import pytest

from flipbook.errors import FlipbookError
from flipbook.events import Events, RenderCancelled
from flipbook.runs.render import render
from flipbook.spec.load import load_spec, spec_from_data
from flipbook.spec.plan import build_plan

SPEC = """
version = 1
[model]
name = "tiny"
device = "cpu"
[sampling]
steps = 4
seed = {seed}
[animation]
max_frames = 4
fps = 10
width = 64
height = 64
strength = 0.5
[prompts]
0 = "a forest"
2 = "a city"
[output]
dir = "{out}"
formats = ["png", "gif"]
"""


def write_spec(tmp_path, seed=5, name="spec.toml"):
    path = tmp_path / name
    path.write_text(SPEC.format(seed=seed, out=tmp_path / "out"))
    return path


def frames(result):
    return [np.asarray(PIL.Image.open(p)) for p in result.frames]


def test_same_spec_same_frames(tmp_path):
    first = frames(render(load_spec(write_spec(tmp_path), ["output.name='a'"])))
    second = frames(render(load_spec(write_spec(tmp_path), ["output.name='b'"])))
    assert len(first) == 4 and all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_random_seed_is_recorded(tmp_path):
    result = render(load_spec(write_spec(tmp_path, seed=-1)))
    recorded = json.loads((result.run_dir / "spec.json").read_text())["sampling"]["seed"]
    assert recorded == result.seed != -1


def test_prompts_hold_until_the_next_keyframe(tmp_path):
    plan = build_plan(load_spec(write_spec(tmp_path)))
    assert [f.prompt for f in plan.frames] == ["a forest", "a forest", "a city", "a city"]


def test_cancel_keeps_frames_already_written(tmp_path):
    seen = []

    def on_frame(event):
        seen.append(event.index)
        if event.index == 1:
            events.cancel()

    events = Events(on_frame=on_frame)
    with pytest.raises(RenderCancelled):
        render(load_spec(write_spec(tmp_path)), events)
    kept = sorted((tmp_path / "out" / "spec" / "frames").glob("*.png"))
    assert seen == [0, 1] and len(kept) == 2


def test_gif_duration_is_milliseconds(tmp_path):
    result = render(load_spec(write_spec(tmp_path)))
    with PIL.Image.open(result.outputs["gif"]) as gif:
        assert gif.info["duration"] == 100  # 10 fps


def test_all_spec_problems_are_reported_together():
    with pytest.raises(FlipbookError) as error:
        spec_from_data({"version": 2, "animation": {"width": 100, "fps": 0}, "prompts": {}})
    message = str(error.value)
    for field in ("version", "animation.width", "animation.fps", "prompts"):
        assert field in message


def test_unknown_keys_are_errors_not_ignored():
    with pytest.raises(FlipbookError, match="animation.zooom"):
        spec_from_data({"animation": {"zooom": 1.02}, "prompts": {"0": "x"}})


def test_set_override_parses_values(tmp_path):
    spec = load_spec(
        write_spec(tmp_path), ["animation.max_frames=48", 'sampling.sampler="DDIM"', "sampling.cfg=5.5"]
    )
    assert (spec.animation.max_frames, spec.sampling.sampler, spec.sampling.cfg) == (48, "DDIM", 5.5)
    with pytest.raises(FlipbookError, match="--set"):
        load_spec(write_spec(tmp_path), ["nonsense"])


def test_an_output_size_h265_cannot_take_is_refused_before_anything_is_written(tmp_path):
    spec = load_spec(write_spec(tmp_path), ["animation.width=56", 'output.formats=["gif", "mp4-h265"]'])
    with pytest.raises(FlipbookError, match="mp4-h265") as info:
        render(spec)
    assert "56x64" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_sampler_and_mode_are_checked_before_any_model_loads():
    with pytest.raises(FlipbookError) as error:
        spec_from_data(
            {"sampling": {"sampler": "Euler b"}, "animation": {"mode": "warp"}, "prompts": {"0": "x"}}
        )
    assert "sampling.sampler" in str(error.value) and "animation.mode" in str(error.value)
    assert "DPM++ 2M Karras" in str(error.value)


def test_validate_and_schema_commands(monkeypatch, capsys, tmp_path):
    import sys

    from flipbook.cli import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["flipbook", *args])
        with pytest.raises(SystemExit) as exit_:
            main()
        return exit_.value.code, capsys.readouterr().out

    code, out = run("validate", "examples/quickstart.toml")
    assert code == 0 and out.startswith("ok: 2d animation, 12 frames at 6 fps")
    code, _ = run("schema", "-o", str(tmp_path / "schema.json"))
    schema = json.loads((tmp_path / "schema.json").read_text())
    assert code == 0 and "animation" in schema["properties"] and "prompts" in schema["required"]


def test_sampler_schedule_switches_sampler_mid_render(tmp_path):
    from flipbook.io.pnginfo import parse_parameters, read_png_parameters

    spec = load_spec(write_spec(tmp_path), ['sampling.sampler=\'0:("Euler a"), 2:("DDIM")\''])
    result = render(spec)
    used = [parse_parameters(read_png_parameters(p)).sampler for p in result.frames]
    assert used == ["Euler a", "Euler a", "DDIM", "DDIM"]

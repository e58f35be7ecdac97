"""The ``loop`` mode, added through the mode shape only (its package and one registration line): a latent walk
closed into a loop. Its plan, the seam, frame 0 against a plain txt2img, batching and its refusals, on the tiny
model (64x64, 2 steps, 8 frames)."""

import numpy as np
import PIL.Image
import pytest
import torch

from flipbook.errors import FlipbookError
from flipbook.runs.render import render
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.noise import KeyframeWalk
from flipbook.sampling.requests import FrameRequest
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPTS = {"0": "a forest", "4": "a city"}


@pytest.fixture(autouse=True)
def shared_model(monkeypatch, tiny_model):
    monkeypatch.setattr("flipbook.runs.cores.load_model", lambda name, **kwargs: tiny_model)


def make_spec(tmp_path, name="loop", mode="loop", **sections):
    data = {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"steps": 2, "seed": 5, "sampler": "Euler"},
        "animation": {"mode": mode, "max_frames": 8, "width": 64, "height": 64},
        "prompts": PROMPTS,
        "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    }
    for section, values in sections.items():  # the prompts are replaced, sections updated
        data[section] = values if section == "prompts" else {**data.get(section, {}), **values}
    return spec_from_data(data)


def frames(result) -> np.ndarray:
    return np.stack([np.asarray(PIL.Image.open(p), dtype=np.float64) for p in result.frames])


def distance(a, b) -> float:
    return float(np.abs(a - b).mean())


def test_the_plan_walks_from_the_last_keyframe_back_to_the_first(tmp_path):
    plan = build_plan(make_spec(tmp_path))
    assert [f.blend for f in plan.frames] == pytest.approx([0, 0.25, 0.5, 0.75] * 2)
    assert [f.prompt for f in plan.frames] == ["a forest"] * 4 + ["a city"] * 4
    assert [f.next_prompt for f in plan.frames] == ["a city"] * 4 + ["a forest"] * 4  # the text loops too
    sine = build_plan(make_spec(tmp_path, loop={"easing": "sine"}))
    assert [f.blend for f in sine.frames[4:]] == pytest.approx([f.blend for f in sine.frames[:4]])
    walk = build_plan(make_spec(tmp_path, mode="interpolate"))  # the open walk holds from the last keyframe
    assert [f.blend for f in walk.frames[4:]] == [0, 0, 0, 0]


def test_frame_0_is_a_plain_txt2img_and_the_seam_is_no_wider_than_a_step(tmp_path, tiny_model):
    """One frame per UNet call, so the comparison is exact (batched frames agree within float rounding)."""
    spec = make_spec(tmp_path, loop={"batch_size": 1})
    loop = frames(render(spec))
    plan = build_plan(spec)
    core = SamplingCore(tiny_model)
    for index, text in ((0, "a forest"), (4, "a city")):  # keyframes: seed semantics as interpolate
        request = FrameRequest(text, seed=plan[index].seed, num_inference_steps=2, sampler="Euler", width=64,
                               height=64)  # fmt: skip
        np.testing.assert_array_equal(loop[index], np.asarray(core.generate([request])[0]))
    steps = [distance(loop[i], loop[i + 1]) for i in range(len(loop) - 1)]
    assert all(step > 0 for step in steps)
    assert distance(loop[-1], loop[0]) <= max(steps)  # frame 7 -> frame 0 is one more step of the walk
    # the same check fails for the open walk, whose last frames hold the last keyframe: the loop is what passes
    open_walk = frames(render(make_spec(tmp_path, "open", mode="interpolate", interpolate={"batch_size": 1})))
    open_steps = [distance(open_walk[i], open_walk[i + 1]) for i in range(len(open_walk) - 1)]
    assert distance(open_walk[-1], open_walk[0]) > max(open_steps)


def test_the_seam_in_the_latents_is_one_step_of_the_walk(tmp_path):
    plan = build_plan(make_spec(tmp_path))
    walk = KeyframeWalk((f.prompt_key for f in plan.frames), lambda key: plan[key].seed, closed=True)
    shape = (1, 4, 8, 8)
    noises = [walk.noise(f.index, f.prompt_key, f.blend, shape).double() for f in plan.frames]
    steps = [float((noises[i + 1] - noises[i]).norm()) for i in range(len(noises) - 1)]
    seam = float((noises[0] - noises[-1]).norm())
    assert min(steps) * (1 - 1e-9) <= seam <= max(steps) * (1 + 1e-9)  # a step like the others
    assert torch.equal(noises[0].float(), walk.key_noise(0, shape))


def test_batched_and_one_by_one_give_the_same_frames(tmp_path):
    batched = frames(render(make_spec(tmp_path, "b4", loop={"batch_size": 4})))
    single = frames(render(make_spec(tmp_path, "b1", loop={"batch_size": 1})))
    difference = np.abs(batched - single)
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01


@pytest.mark.parametrize(
    ("sections", "field"),
    [
        ({"prompts": {"0": "a forest"}}, "prompts"),  # one keyframe: nowhere to walk to
        ({"prompts": {"0": "a forest", "9": "a city"}}, "prompts"),  # the second is past the last frame
        ({"init": {"image": "photo.png"}}, "init.image"),  # every frame is txt2img
        ({"init": {"video": "clip.mp4"}}, "init.video"),  # an input only other modes read
        ({"loop": {"easing": "audio"}}, "loop.easing"),
        ({"loop": {"batch_size": 0}}, "loop.batch_size"),
    ],
)
def test_what_the_loop_cannot_render_is_refused_naming_the_field(tmp_path, sections, field):
    with pytest.raises(FlipbookError) as error:
        build_plan(make_spec(tmp_path, **sections))
    assert error.value.field == field


def test_validate_and_schema_know_the_loop(run_cli, tmp_path):
    import json

    code, out, err = run_cli("validate", "examples/loop.toml")
    assert code == 0, err
    assert (
        out.startswith("ok: loop animation, 16 frames") and "the last frame walks back into keyframe 0" in out
    )
    code, out, _ = run_cli("schema")
    schema = json.loads(out)
    assert "loop" in schema["$defs"]["AnimationSection"]["properties"]["mode"]["enum"]
    assert set(schema["$defs"]["LoopSection"]["properties"]) == {"batch_size", "noise", "easing"}


def test_its_web_ui_tab_comes_from_its_settings_with_no_ui_code():
    from flipbook.server import ui

    entries = {entry.key: entry for entry in ui.mode_form("loop")}
    assert set(entries) == {"loop.batch_size", "loop.noise", "loop.easing"} and all(
        e.shown for e in entries.values()
    )
    assert entries["loop.easing"].widget.choices == ("linear", "sine")
    common = {"prompts": [["0", "a forest"], ["4", "a city"]], "frames": 8, "width": 64, "height": 64}
    spec, plan = ui.validate(ui.mode_data("loop", common, {"loop.easing": "sine", "loop.batch_size": 2}))
    assert (spec.animation.mode, spec.loop.easing, spec.loop.batch_size) == ("loop", "sine", 2)
    assert plan[7].next_prompt == "a forest"

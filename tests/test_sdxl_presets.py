"""Distilled-model presets (``sampling.preset``): steps, cfg and sampler as the model cards say, where the spec
leaves them unset; what the spec writes wins; validate says what the preset set; renders on tiny-xl."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, StableDiffusionXLPipeline

from flipbook.samplers.schedulers import make_scheduler
from flipbook.sampling.presets import PRESETS
from flipbook.spec.load import spec_from_data
from flipbook.spec.summary import summarize

pytestmark = pytest.mark.usefixtures("one_thread")


def spec(**sampling):
    data = {"prompts": {"0": "a fox"}, "model": {"name": "tiny-xl"}, "sampling": {"seed": 1, **sampling},
            "animation": {"width": 64, "height": 64, "max_frames": 2}}  # fmt: skip
    return spec_from_data(data)


@pytest.mark.parametrize("name", list(PRESETS))
def test_a_preset_sets_what_the_spec_leaves_unset_and_validate_says_so(name):
    preset = PRESETS[name]
    s = spec(preset=name)
    assert (s.sampling.steps, s.sampling.cfg, s.sampling.sampler) == (
        preset.steps,
        preset.cfg,
        preset.sampler,
    )
    assert f"preset {name}" in summarize(s) and f"steps {preset.steps}" in summarize(s)
    written = spec(preset=name, steps=6, cfg=1.5)
    assert (written.sampling.steps, written.sampling.cfg) == (
        6,
        1.5,
    ) and written.sampling.sampler == preset.sampler
    assert "steps 6" not in summarize(written) and f"sampler {preset.sampler}" in summarize(written)
    assert f"the spec's steps kept (the card's: {preset.steps})" in summarize(written)


def test_no_preset_changes_nothing():
    s = spec()
    assert (s.sampling.steps, s.sampling.cfg, s.sampling.sampler) == (20, 7.0, "Euler a")
    assert "preset" not in summarize(s)


def test_an_unknown_preset_is_one_clear_error():
    with pytest.raises(Exception, match="sampling.preset") as info:
        spec(preset="turbo2")
    assert "lightning" in str(info.value)


@pytest.mark.parametrize(
    ("sampler", "cls"),
    [("Euler SGM Uniform", EulerDiscreteScheduler), ("Euler a SGM Uniform", EulerAncestralDiscreteScheduler)],
)
def test_sgm_uniform_is_diffusers_trailing_spacing(sampler, cls):
    from flipbook.models.families.sdxl.builtin import SDXL_SCHEDULER_CONFIG

    ours = make_scheduler(sampler, SDXL_SCHEDULER_CONFIG)
    theirs = cls.from_config(SDXL_SCHEDULER_CONFIG, timestep_spacing="trailing")
    ours.set_timesteps(4)
    theirs.set_timesteps(4)
    assert ours.timesteps.tolist() == theirs.timesteps.tolist() == [999.0, 749.0, 499.0, 249.0]


def test_the_lightning_preset_samples_as_the_model_card_says(tmp_path):
    """Euler, trailing timesteps, no guidance, 4 steps: the same pixels as the card's diffusers code."""
    from flipbook.models.loading import load_model
    from flipbook.sampling.core import SamplingCore
    from flipbook.sampling.requests import FrameRequest

    model = load_model("tiny-xl", device="cpu")
    s = spec(preset="lightning").sampling
    pipe = StableDiffusionXLPipeline(**model.pipe.components)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    pipe.set_progress_bar_config(disable=True)
    expected = pipe("a fox", num_inference_steps=4, guidance_scale=0, height=64, width=64,
                    generator=torch.Generator().manual_seed(1), output_type="np").images  # fmt: skip
    request = FrameRequest("a fox", seed=1, num_inference_steps=s.steps, guidance_scale=s.cfg,
                           sampler=s.sampler, width=64, height=64)  # fmt: skip
    core = SamplingCore(model)
    got = np.stack(core.generate([request], output_type="np"))
    assert np.abs(got - expected).max() <= 1e-4
    assert core.stats["unet_rows"] == 4  # no unconditional pass


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_renders_on_tiny_xl(name, tmp_path, run_cli):
    from pathlib import Path

    example = Path(__file__).parents[1] / "examples" / "camera-2d.toml"
    code, out, err = run_cli(
        "render", example, "-o", tmp_path, "--set", "model.name=tiny-xl", "--set", f"sampling.preset={name}",
        "--set", "animation.max_frames=2", "--set", "animation.width=64", "--set", "animation.height=64",
        "--set", "output.formats=['png']",
    )  # fmt: skip
    assert code == 0, err
    assert len(list(tmp_path.glob("*/frames/frame_*.png"))) == 2


def test_turbo_img2img_with_no_step_left_is_one_clear_error_before_any_model_loads(
    tmp_path, run_cli, monkeypatch
):
    """SDXL-Turbo's 1 step at strength 0.5 leaves int(1 x 0.5) = 0 steps: diffusers' img2img pipelines refuse it
    (and the model card asks for steps x strength >= 1); flipbook says so naming strength and the least that
    works, before loading the model."""
    import PIL.Image

    import flipbook.models.loading as loading
    from flipbook.errors import FlipbookError

    def no_load(name, **kwargs):
        raise FlipbookError("model.name", name, "no model loaded in this test", detail="the load was reached")

    monkeypatch.setattr(loading, "load_model", no_load)
    image = tmp_path / "init.png"
    PIL.Image.new("RGB", (64, 64), (120, 30, 200)).save(image)
    code, _, err = run_cli(
        "img2img", "a fox", "-i", image, "--strength", "0.5", "--steps", "1", "--cfg", "1",
        "--size", "64x64", "-m", "random-sdxl", "--seed", "1", "-o", tmp_path / "out",
    )  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and "the load was reached" not in err
    assert "strength" in err and "0.5" in err and "at least 1 with 1 steps" in err
    code, _, err = run_cli(
        "img2img", "a fox", "-i", image, "--strength", "0.5", "--steps", "2", "--cfg", "1",
        "--size", "64x64", "-m", "random-sdxl", "--seed", "1", "-o", tmp_path / "out",
    )  # fmt: skip
    assert "the load was reached" in err and "at least" not in err  # 2 x 0.5 = 1 step: accepted

"""SDXL ControlNets on tiny-xl: the sampling core against diffusers' StableDiffusionXLControlNetPipeline (same
model, ControlNet, seeds and settings -> same pixels), and a ControlNet of another family is one clear error."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import StableDiffusionXLControlNetPipeline

from flipbook.errors import FlipbookError
from flipbook.models.controlnet import ControlNets, tiny_controlnet
from flipbook.models.loading import load_model
from flipbook.samplers.schedulers import make_scheduler
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import Control, FrameRequest

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-4


@pytest.fixture(scope="module")
def xl():
    return load_model("tiny-xl", device="cpu")


@pytest.fixture()
def control_image() -> PIL.Image.Image:
    y, x = np.mgrid[0:64, 0:64]
    array = np.zeros((64, 64, 3), dtype=np.uint8)
    array[((x - 32) ** 2 + (y - 32) ** 2) < 300] = 255
    return PIL.Image.fromarray(array)


@pytest.mark.parametrize(("sampler", "start", "end"), [("Euler a", 0.0, 1.0), ("DDIM", 0.25, 0.75)])
def test_txt2img_matches_the_sdxl_controlnet_pipeline(xl, control_image, sampler, start, end):
    controlnet = tiny_controlnet(xl.unet.config)
    pipe = StableDiffusionXLControlNetPipeline(**xl.pipe.components, controlnet=controlnet)
    pipe.scheduler = make_scheduler(sampler, xl.scheduler_config)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        "a red fox in the snow", negative_prompt="blurry", image=control_image, num_inference_steps=4,
        guidance_scale=7.5, height=64, width=64, generator=torch.Generator().manual_seed(42), output_type="np",
        controlnet_conditioning_scale=0.7, control_guidance_start=start, control_guidance_end=end,
    ).images  # fmt: skip
    request = FrameRequest(
        "a red fox in the snow", "blurry", seed=42, num_inference_steps=4, guidance_scale=7.5, sampler=sampler,
        width=64, height=64, controls=(Control("tiny", control_image, 0.7, start, end, controlnet=controlnet),),
    )  # fmt: skip
    got = np.stack(SamplingCore(xl).generate([request], output_type="np"))
    assert np.abs(got - expected).max() <= TOL
    plain = np.stack(
        SamplingCore(xl).generate([FrameRequest(**{**request.__dict__, "controls": ()})], output_type="np")
    )
    assert np.abs(got - plain).max() > 0.01  # the ControlNet did steer


def test_the_built_in_tiny_controlnet_fits_sdxl_and_an_sd_one_is_refused(xl, tiny_model, control_image):
    core = SamplingCore(xl)
    request = FrameRequest("a fox", seed=1, num_inference_steps=2, width=64, height=64,
                           controls=(Control("tiny", control_image, 1.0),))  # fmt: skip
    assert core.generate([request], output_type="np")[0].shape == (64, 64, 3)
    sd_controlnet = tiny_controlnet(tiny_model.unet.config)
    with pytest.raises(FlipbookError, match="SDXL") as info:
        from flipbook.models.controlnet import check_fits

        check_fits(sd_controlnet, xl.unet, "sd-canny")
    assert "cross_attention_dim" in info.value.detail
    assert ControlNets().get("tiny", xl).config.addition_embed_type == "text_time"


def _union(unet_config, seed: int = 0):
    """A random union ControlNet fitting tiny-xl, its zero-started convolutions made to steer (as tiny's)."""
    from diffusers import ControlNetUnionModel, UNet2DConditionModel

    from flipbook.models.weights import empty_weights

    shape_only = empty_weights(lambda: UNet2DConditionModel.from_config(dict(unet_config)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        made = ControlNetUnionModel.from_unet(shape_only, load_weights_from_unet=False).config
        config = {key: value for key, value in made.items() if not key.startswith("_")}
        width = config["block_out_channels"][
            0
        ]  # the control-type transformer works at the first block's width
        union = ControlNetUnionModel.from_config(
            {**config, "num_trans_channel": width, "num_proj_channel": width, "num_trans_head": 4}
        )
        for conv in [
            union.controlnet_cond_embedding.conv_out,
            union.controlnet_mid_block,
            *union.controlnet_down_blocks,
        ]:
            torch.nn.init.normal_(conv.weight, std=0.05)
            torch.nn.init.normal_(conv.bias, std=0.05)
    return union.eval()


@pytest.mark.parametrize("mode", [1, 3])
def test_a_union_controlnet_matches_the_sdxl_controlnet_union_pipeline(xl, control_image, mode):
    from diffusers import StableDiffusionXLControlNetUnionPipeline

    union = _union(xl.unet.config)
    pipe = StableDiffusionXLControlNetUnionPipeline(**xl.pipe.components, controlnet=union)
    pipe.scheduler = make_scheduler("Euler a", xl.scheduler_config)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        "a red fox", negative_prompt="blurry", control_image=[control_image], control_mode=[mode],
        num_inference_steps=3, guidance_scale=6.0, height=64, width=64, controlnet_conditioning_scale=0.8,
        generator=torch.Generator().manual_seed(8), output_type="np",
    ).images  # fmt: skip
    request = FrameRequest(
        "a red fox", "blurry", seed=8, num_inference_steps=3, guidance_scale=6.0, width=64, height=64,
        controls=(Control("union", control_image, 0.8, controlnet=union, control_type=mode),),
    )  # fmt: skip
    got = np.stack(SamplingCore(xl).generate([request], output_type="np"))
    assert np.abs(got - expected).max() <= TOL
    other = FrameRequest(
        **{
            **request.__dict__,
            "controls": (Control("union", control_image, 0.8, controlnet=union, control_type=0),),
        }
    )
    assert (
        np.abs(np.stack(SamplingCore(xl).generate([other], output_type="np")) - got).max() > 1e-3
    )  # the type steers


def test_a_union_controlnet_needs_a_control_type_and_others_take_none(xl, control_image, tmp_path):
    union = _union(xl.unet.config)
    union.save_pretrained(tmp_path / "union")
    from flipbook.models.controlnet import load_controlnet

    assert type(load_controlnet(str(tmp_path / "union"))).__name__ == "ControlNetUnionModel"
    cases = [
        (Control("union", control_image, 1.0, controlnet=union), "is a union ControlNet"),
        (Control("union", control_image, 1.0, controlnet=union, control_type=9), "control types"),
        (Control("tiny", control_image, 1.0, control_type=2), "not a union model"),
    ]
    for control, says in cases:
        request = FrameRequest("x", seed=1, num_inference_steps=1, width=64, height=64, controls=(control,))
        with pytest.raises(FlipbookError, match=says) as info:
            SamplingCore(xl).generate([request])
        assert info.value.field.endswith("control_type")


def test_a_spec_unit_names_its_control_type(tmp_path, run_cli, control_image):
    from pathlib import Path

    xl_ = load_model("tiny-xl", device="cpu")
    _union(xl_.unet.config).save_pretrained(tmp_path / "union")
    control_image.save(tmp_path / "control.png")
    example = Path(__file__).parents[1] / "examples" / "quickstart.toml"
    base = ["render", example, "--set", "model.name=tiny-xl", "--set", "animation.max_frames=1",
            "--set", "animation.width=64", "--set", "animation.height=64", "--set", "sampling.steps=2",
            "--set", "output.formats=['png']"]  # fmt: skip
    unit = f"controlnet=[{{model = '{tmp_path / 'union'}', image = '{tmp_path / 'control.png'}', control_type = 'depth'}}]"
    code, _, err = run_cli(*base, "-o", tmp_path / "a", "--set", unit)
    assert code == 0, err
    code, _, err = run_cli(*base, "-o", tmp_path / "b", "--set", unit.replace(", control_type = 'depth'", ""))
    assert code == 2 and "controlnet[0].control_type" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists() or not list(
        (tmp_path / "b").glob("*/frames/*.png")
    )  # before any model
    tiny_unit = "controlnet=[{model = 'tiny', control_type = 'canny'}]"
    code, _, err = run_cli(
        *base, "-o", tmp_path / "c", "--set", tiny_unit, "--set", f"init.image={tmp_path / 'control.png'}"
    )
    assert code == 2 and "controlnet[0].control_type" in err and "not a union ControlNet" in err

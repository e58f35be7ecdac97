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

"""SDXL as a model family: the built-ins, prompt encoding as A1111 does it for SDXL, and the sampling core
against diffusers' SDXL pipelines on ``tiny-xl`` (same model, seeds and settings -> same pixels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import (
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)

from flipbook.models.families import builtin_family, get_family
from flipbook.samplers.schedulers import make_scheduler
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest

TOL = 1e-4
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def xl():
    from flipbook.models.loading import load_model

    return load_model("tiny-xl", device="cpu")


def generator(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def diffusers_pipe(cls, model, sampler):
    pipe = cls(**model.pipe.components)
    pipe.scheduler = make_scheduler(sampler, model.scheduler_config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def core_images(model, requests, **kwargs):
    return np.stack(SamplingCore(model).generate(requests, output_type="np", **kwargs))


def frame(prompt, negative="", **kwargs):
    settings = {"num_inference_steps": 4, "guidance_scale": 7.5, "width": 64, "height": 64, **kwargs}
    return FrameRequest(prompt, negative, **settings)


# ---- the family ------------------------------------------------------------------------------------------


def test_the_built_ins_are_sdxl_models(xl):
    family = builtin_family("tiny-xl", "image")
    assert family is builtin_family("random-sdxl", "image") and family.default_size == (1024, 1024)
    assert xl.family == family.name and get_family(xl.family) is family
    unet = xl.unet.config
    assert unet.addition_embed_type == "text_time"
    assert xl.pipe.text_encoder_2.config.projection_dim + 6 * unet.addition_time_embed_dim == (
        unet.projection_class_embeddings_input_dim
    )
    width = xl.pipe.text_encoder.config.hidden_size + xl.pipe.text_encoder_2.config.hidden_size
    assert unet.cross_attention_dim == width


def test_random_sdxl_has_sdxl_base_architecture():
    """Built on the meta device (no memory): SDXL base's parameter count, two encoders, 1024 default."""
    from flipbook.models.families.sdxl.builtin import random_sdxl_components
    from flipbook.models.weights import empty_weights

    parts = {}
    empty_weights(lambda: parts.update(random_sdxl_components(0)) or torch.nn.Identity())
    unet_params = sum(p.numel() for p in parts["unet"].parameters())
    assert 2_560_000_000 < unet_params < 2_570_000_000  # SDXL base's UNet: 2.567B parameters
    assert (
        parts["text_encoder_2"].config.hidden_size == 1280
        and parts["unet"].config.cross_attention_dim == 2048
    )


# ---- prompts ---------------------------------------------------------------------------------------------


def test_prompts_encode_through_both_encoders_with_pooled_and_size_conditioning(xl):
    encoder = SamplingCore(xl).encoder(1)
    cond = encoder.condition("a red fox")
    assert cond.embeds.shape == (1, 77, 64) and cond.added["text_embeds"].shape == (1, 32)
    sized = encoder.at_size(cond, 96, 64)
    assert sized.added["time_ids"].tolist() == [[64.0, 96.0, 0.0, 0.0, 64.0, 96.0]]  # (h, w), crop, (h, w)
    long = encoder.condition(", ".join(["a red fox in the snow"] * 20))
    assert long.embeds.shape[1] == 77 * 2  # 75-token chunks through both encoders
    # the pooled embedding is the first chunk's
    first_chunk = encoder.condition(", ".join(["a red fox in the snow"] * 20)[:60])
    assert long.added["text_embeds"].shape == first_chunk.added["text_embeds"].shape


def test_an_empty_negative_prompt_is_zeros_and_an_empty_positive_is_encoded(xl):
    encoder = SamplingCore(xl).encoder(1)
    negative = encoder.condition("", negative=True)
    assert not negative.embeds.any() and not negative.added["text_embeds"].any()
    assert encoder.condition("").embeds.abs().sum() > 0
    assert encoder.condition("blurry", negative=True).embeds.abs().sum() > 0


def test_prompt_travel_blends_the_pooled_embeddings_too(xl):
    encoder = SamplingCore(xl).encoder(1)
    a, b = encoder.condition("a red fox"), encoder.condition("a blue whale")
    half = encoder.condition("a red fox", "a blue whale", 0.5)
    assert torch.allclose(half.added["text_embeds"], (a.added["text_embeds"] + b.added["text_embeds"]) / 2)
    assert torch.allclose(half.embeds, (a.embeds + b.embeds) / 2)
    assert torch.equal(
        encoder.condition("a red fox", "a blue whale", 1.0).added["text_embeds"], b.added["text_embeds"]
    )


def test_clip_skip_counts_from_the_penultimate_layer_as_diffusers(xl):
    """flipbook's clip skip 2 is diffusers' SDXL ``clip_skip=1`` (which diffusers applies to the positive prompt
    only, hence cfg 1 here)."""
    pipe = diffusers_pipe(StableDiffusionXLPipeline, xl, "Euler")
    expected = pipe(
        "a castle", num_inference_steps=2, height=64, width=64, clip_skip=1, guidance_scale=1.0,
        generator=generator(5), output_type="np",
    ).images  # fmt: skip
    request = frame(
        "a castle", seed=5, num_inference_steps=2, sampler="Euler", clip_skip=2, guidance_scale=1.0
    )
    got = core_images(xl, [request])
    default = core_images(
        xl, [frame("a castle", seed=5, num_inference_steps=2, sampler="Euler", guidance_scale=1.0)]
    )
    assert np.abs(default - expected).max() > 1e-3
    assert np.abs(got - expected).max() <= TOL


# ---- equivalence with diffusers --------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["Euler a", "Euler", "DPM++ 2M Karras", "DDIM", "UniPC"])
def test_txt2img_matches_diffusers(xl, sampler):
    pipe = diffusers_pipe(StableDiffusionXLPipeline, xl, sampler)
    expected = pipe(
        "a red fox in the snow", negative_prompt="blurry", num_inference_steps=4, guidance_scale=7.5,
        height=64, width=64, generator=generator(42), output_type="np",
    ).images  # fmt: skip
    got = core_images(xl, [frame("a red fox in the snow", "blurry", seed=42, sampler=sampler)])
    assert got.shape == expected.shape == (1, 64, 64, 3)
    assert np.abs(got - expected).max() <= TOL


def test_empty_negative_and_non_square_size_match_diffusers(xl):
    """No negative prompt: zeros on both sides (A1111 and diffusers' force_zeros_for_empty_prompt); the size
    conditioning is (height, width) of the image."""
    pipe = diffusers_pipe(StableDiffusionXLPipeline, xl, "Euler a")
    expected = pipe(
        "a lighthouse", num_inference_steps=3, guidance_scale=5.0, height=64, width=96,
        generator=generator(3), output_type="np",
    ).images  # fmt: skip
    got = core_images(
        xl, [frame("a lighthouse", seed=3, num_inference_steps=3, guidance_scale=5.0, width=96)]
    )
    assert np.abs(got - expected).max() <= TOL


def test_a_batch_of_frames_matches_diffusers_batch(xl):
    pipe = diffusers_pipe(StableDiffusionXLPipeline, xl, "Euler a")
    prompts, seeds = ["a cat", "a dog on a long walk"], [1, 2]
    expected = pipe(
        prompts, negative_prompt=["ugly", "ugly"], num_inference_steps=3, height=64, width=64,
        output_type="np", generator=[generator(s) for s in seeds],
    ).images  # fmt: skip
    requests = [
        frame(p, "ugly", seed=s, num_inference_steps=3, guidance_scale=5.0)
        for p, s in zip(prompts, seeds, strict=True)
    ]
    core = SamplingCore(xl)
    batched = np.stack(core.generate(requests, batch_size=2, output_type="np"))
    assert core.stats["unet_calls"] == 3
    assert np.abs(batched - expected).max() <= TOL


def test_guidance_one_matches_diffusers(xl):
    pipe = diffusers_pipe(StableDiffusionXLPipeline, xl, "Euler")
    expected = pipe(
        "a tree", num_inference_steps=3, guidance_scale=1.0, height=64, width=64,
        generator=generator(3), output_type="np",
    ).images  # fmt: skip
    core = SamplingCore(xl)
    got = np.stack(
        core.generate(
            [frame("a tree", seed=3, num_inference_steps=3, guidance_scale=1.0, sampler="Euler")],
            output_type="np",
        )
    )
    assert core.stats["unet_rows"] == 3
    assert np.abs(got - expected).max() <= TOL


@pytest.mark.parametrize(
    ("sampler", "strength"), [("Euler a", 0.6), ("DPM++ 2M Karras", 0.75), ("DDIM", 1.0)]
)
def test_img2img_matches_diffusers(xl, init_image, sampler, strength):
    pipe = diffusers_pipe(StableDiffusionXLImg2ImgPipeline, xl, sampler)
    expected = pipe(
        "an oil painting", negative_prompt="blurry", image=init_image, strength=strength, num_inference_steps=5,
        guidance_scale=6.0, generator=generator(7), output_type="np",
    ).images  # fmt: skip
    request = frame("an oil painting", "blurry", seed=7, num_inference_steps=5, guidance_scale=6.0,
                    sampler=sampler, image=init_image, strength=strength)  # fmt: skip
    assert np.abs(core_images(xl, [request]) - expected).max() <= TOL


@pytest.mark.parametrize(("sampler", "strength"), [("Euler a", 1.0), ("Euler a", 0.7), ("DDIM", 0.8)])
def test_inpaint_matches_diffusers(xl, init_image, mask_image, sampler, strength):
    pipe = diffusers_pipe(StableDiffusionXLInpaintPipeline, xl, sampler)
    expected = pipe(
        "a blue ball", negative_prompt="blurry", image=init_image, mask_image=mask_image, strength=strength,
        num_inference_steps=5, guidance_scale=7.5, height=64, width=64, generator=generator(11),
        output_type="np",
    ).images  # fmt: skip
    request = frame("a blue ball", "blurry", seed=11, num_inference_steps=5, sampler=sampler,
                    image=init_image, mask_image=mask_image, strength=strength)  # fmt: skip
    assert np.abs(core_images(xl, [request]) - expected).max() <= TOL


def test_inpaint_with_a_9_channel_sdxl_inpainting_unet_matches_diffusers(xl, init_image, mask_image):
    from diffusers import UNet2DConditionModel

    from flipbook.models.bundle import ModelBundle

    config = dict(xl.unet.config, in_channels=9)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = UNet2DConditionModel.from_config(config).eval()
    pipe9 = StableDiffusionXLPipeline(**{**xl.pipe.components, "unet": unet})
    model9 = ModelBundle(pipe9, "tiny-xl-inpaint", xl.family, "builtin", xl.device, xl.dtype)
    pipe = diffusers_pipe(StableDiffusionXLInpaintPipeline, model9, "Euler a")
    expected = pipe(
        "a blue ball", negative_prompt="blurry", image=init_image, mask_image=mask_image, strength=1.0,
        num_inference_steps=4, height=64, width=64, generator=generator(13), output_type="np",
    ).images  # fmt: skip
    request = frame("a blue ball", "blurry", seed=13, image=init_image, mask_image=mask_image)
    assert np.abs(core_images(model9, [request]) - expected).max() <= TOL


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M Karras"])
def test_v_prediction_matches_diffusers(sampler):
    from flipbook.models.loading import load_model

    model = load_model("tiny-xl", device="cpu", prediction_type="v_prediction")
    pipe = diffusers_pipe(StableDiffusionXLPipeline, model, sampler)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    expected = pipe(
        "a harbour at night", negative_prompt="day", num_inference_steps=4, guidance_scale=7.5, height=64, width=64,
        generator=generator(21), output_type="np",
    ).images  # fmt: skip
    got = core_images(model, [frame("a harbour at night", "day", seed=21, sampler=sampler)])
    assert np.abs(got - expected).max() <= TOL


# ---- sizes -----------------------------------------------------------------------------------------------


def test_a_spec_without_a_size_gets_the_built_in_family_s_and_a_given_size_is_kept():
    from flipbook.spec.load import spec_from_data

    def size(**animation):
        data = {"prompts": {"0": "x"}, "model": {"name": "tiny-xl"}, "animation": animation}
        spec = spec_from_data(data)
        return spec.animation.width, spec.animation.height

    assert size() == (1024, 1024)
    assert size(width=832) == (832, 1024)
    assert size(width=64, height=64) == (64, 64)
    assert spec_from_data({"prompts": {"0": "x"}}).animation.width == 512  # tiny: SD 1.x's 512


def test_a_size_far_from_sdxl_buckets_is_warned_about_naming_the_nearest(xl, caplog):
    from flipbook.models.families.sdxl.buckets import size_note

    assert size_note(1024, 1024) is None and size_note(832, 1216) is None and size_note(1216, 832) is None
    assert "nearest for this aspect ratio is 1024x1024" in size_note(512, 512)
    assert "1344x768" in size_note(1920, 1080)
    core = SamplingCore(xl)
    core.generate([frame("x", seed=1, num_inference_steps=1)] * 2)
    warned = [r.getMessage() for r in caplog.records if "far from the sizes" in r.getMessage()]
    assert warned == ["tiny-xl: 64x64 is far from the sizes SDXL models were trained at; the nearest for this "
                      "aspect ratio is 1024x1024 (set animation.width/height)"]  # fmt: skip


def test_a_clip_skip_deeper_than_sdxl_s_encoders_is_one_clear_error(xl):
    from flipbook.errors import FlipbookError

    layers = xl.pipe.text_encoder.config.num_hidden_layers  # 5; SDXL counts from the penultimate layer
    assert SamplingCore(xl).encoder(layers - 1).first.clip_skip == layers - 1
    with pytest.raises(FlipbookError, match=f"at most {layers - 1}") as info:
        SamplingCore(xl).encoder(layers)
    assert info.value.field == "sampling.clip_skip"

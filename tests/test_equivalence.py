"""The sampling core against diffusers' own pipelines: same model, seeds and settings -> same pixels."""

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline

from flipbook.samplers.schedulers import make_scheduler
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest

TOL = 1e-4


def generator(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


SAMPLERS = ["Euler a", "Euler", "DPM++ 2M Karras", "DDIM", "UniPC", "Heun", "LMS", "DPM2 a"]


def diffusers_pipe(cls, model, sampler):
    pipe = cls(**model.pipe.components)
    pipe.scheduler = make_scheduler(sampler, model.scheduler_config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def core_images(model, requests, **kwargs):
    return np.stack(SamplingCore(model).generate(requests, output_type="np", **kwargs))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_txt2img_matches_diffusers(tiny_model, sampler):
    pipe = diffusers_pipe(StableDiffusionPipeline, tiny_model, sampler)
    expected = pipe(
        "a red fox in the snow",
        negative_prompt="blurry",
        num_inference_steps=4,
        guidance_scale=7.5,
        height=64,
        width=64,
        generator=generator(42),
        output_type="np",
    ).images
    request = FrameRequest(
        "a red fox in the snow", "blurry", seed=42, num_inference_steps=4, guidance_scale=7.5,
        sampler=sampler, width=64, height=64,
    )  # fmt: skip
    got = core_images(tiny_model, [request])
    assert got.shape == expected.shape == (1, 64, 64, 3)
    assert np.abs(got - expected).max() <= TOL


def test_txt2img_batch_of_frames_matches_diffusers_batch(tiny_model):
    pipe = diffusers_pipe(StableDiffusionPipeline, tiny_model, "Euler a")
    prompts, seeds = ["a cat", "a dog on a long walk"], [1, 2]
    expected = pipe(
        prompts, num_inference_steps=3, height=64, width=64, output_type="np",
        generator=[generator(s) for s in seeds],
    ).images  # fmt: skip
    requests = [
        FrameRequest(p, seed=s, num_inference_steps=3, guidance_scale=7.5, width=64, height=64)
        for p, s in zip(prompts, seeds, strict=True)
    ]
    core = SamplingCore(tiny_model)
    batched = np.stack(core.generate(requests, batch_size=2, output_type="np"))
    assert core.stats["unet_calls"] == 3  # both frames in one UNet call per step
    assert np.abs(batched - expected).max() <= TOL
    one_by_one = core_images(tiny_model, requests, batch_size=1)
    assert np.abs(batched - one_by_one).max() <= 1e-5


def test_guidance_one_skips_unconditional_pass(tiny_model):
    pipe = diffusers_pipe(StableDiffusionPipeline, tiny_model, "Euler")
    expected = pipe(
        "a tree", num_inference_steps=3, guidance_scale=1.0, height=64, width=64,
        generator=generator(3), output_type="np",
    ).images  # fmt: skip
    core = SamplingCore(tiny_model)
    request = FrameRequest(
        "a tree", seed=3, num_inference_steps=3, guidance_scale=1.0, sampler="Euler", width=64, height=64
    )
    got = np.stack(core.generate([request], output_type="np"))
    assert core.stats["unet_rows"] == 3  # one row per step: no unconditional pass
    assert np.abs(got - expected).max() <= TOL


def _penultimate_layer_embeds(model, text):
    """What diffusers' ``clip_skip=1`` computes (its own path breaks on transformers 5's flat CLIPTextModel)."""
    te, tok = model.text_encoder, model.tokenizer
    ids = tok(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    states = te(ids, output_hidden_states=True).hidden_states
    return getattr(te, "text_model", te).final_layer_norm(states[-2])


@torch.no_grad()
def test_clip_skip_follows_a1111_numbering(tiny_model):
    pipe = diffusers_pipe(StableDiffusionPipeline, tiny_model, "Euler")
    expected = pipe(
        prompt_embeds=_penultimate_layer_embeds(tiny_model, "a castle"),
        negative_prompt_embeds=_penultimate_layer_embeds(tiny_model, ""),
        num_inference_steps=2, height=64, width=64, generator=generator(5), output_type="np",
    ).images  # fmt: skip
    request = FrameRequest("a castle", seed=5, num_inference_steps=2, guidance_scale=7.5, sampler="Euler",
                           width=64, height=64, clip_skip=2)  # fmt: skip
    assert np.abs(core_images(tiny_model, [request]) - expected).max() <= TOL


@pytest.mark.parametrize(
    ("sampler", "strength"), [("Euler a", 0.6), ("DPM++ 2M Karras", 0.75), ("DDIM", 1.0)]
)
def test_img2img_matches_diffusers(tiny_model, init_image, sampler, strength):
    pipe = diffusers_pipe(StableDiffusionImg2ImgPipeline, tiny_model, sampler)
    expected = pipe(
        "an oil painting", image=init_image, strength=strength, num_inference_steps=5, guidance_scale=6.0,
        generator=generator(7), output_type="np",
    ).images  # fmt: skip
    request = FrameRequest("an oil painting", seed=7, num_inference_steps=5, guidance_scale=6.0, sampler=sampler,
                           width=64, height=64, image=init_image, strength=strength)  # fmt: skip
    assert np.abs(core_images(tiny_model, [request]) - expected).max() <= TOL


@pytest.mark.parametrize(("sampler", "strength"), [("Euler a", 1.0), ("Euler a", 0.7), ("DDIM", 0.8)])
def test_inpaint_matches_diffusers(tiny_model, init_image, mask_image, sampler, strength):
    pipe = diffusers_pipe(StableDiffusionInpaintPipeline, tiny_model, sampler)
    expected = pipe(
        "a blue ball", image=init_image, mask_image=mask_image, strength=strength, num_inference_steps=5,
        guidance_scale=7.5, height=64, width=64, generator=generator(11), output_type="np",
    ).images  # fmt: skip
    request = FrameRequest("a blue ball", seed=11, num_inference_steps=5, guidance_scale=7.5, sampler=sampler,
                           width=64, height=64, image=init_image, mask_image=mask_image, strength=strength)  # fmt: skip
    assert np.abs(core_images(tiny_model, [request]) - expected).max() <= TOL


def test_inpaint_with_an_inpainting_unet_matches_diffusers(tiny_model, init_image, mask_image):
    from diffusers import UNet2DConditionModel

    from flipbook.models.bundle import ModelBundle

    config = dict(tiny_model.unet.config, in_channels=9)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = UNet2DConditionModel.from_config(config).eval()
    pipe9 = StableDiffusionPipeline(**{**tiny_model.pipe.components, "unet": unet})
    model9 = ModelBundle(pipe9, "tiny-inpaint", "sd1", "builtin", tiny_model.device, tiny_model.dtype)
    pipe = diffusers_pipe(StableDiffusionInpaintPipeline, model9, "Euler a")
    expected = pipe(
        "a blue ball", image=init_image, mask_image=mask_image, num_inference_steps=4,
        height=64, width=64, generator=generator(13), output_type="np",
    ).images  # fmt: skip
    request = FrameRequest("a blue ball", seed=13, num_inference_steps=4, guidance_scale=7.5, width=64, height=64,
                           image=init_image, mask_image=mask_image)  # fmt: skip
    assert np.abs(core_images(model9, [request]) - expected).max() <= TOL


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M Karras"])
def test_v_prediction_matches_diffusers(sampler):
    """SD 2.x 768-v style models: the prediction type travels with the model's scheduler config."""
    from flipbook.models.loading import load_model

    model = load_model("tiny", device="cpu", prediction_type="v_prediction")
    pipe = diffusers_pipe(StableDiffusionPipeline, model, sampler)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    expected = pipe(
        "a harbour at night", num_inference_steps=4, height=64, width=64,
        generator=generator(21), output_type="np",
    ).images  # fmt: skip
    request = FrameRequest("a harbour at night", seed=21, num_inference_steps=4, guidance_scale=7.5,
                           sampler=sampler, width=64, height=64)  # fmt: skip
    assert np.abs(core_images(model, [request]) - expected).max() <= TOL

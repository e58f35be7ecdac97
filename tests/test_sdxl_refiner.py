"""SDXL's refiner: the ``sdxl-refiner`` family (``tiny-xl-refiner``, single files, folders), its prompt
encoding, and the sampling core's two-expert step against diffusers' ensemble of expert denoisers
(``StableDiffusionXLPipeline(denoising_end=f, output_type="latent")`` then
``StableDiffusionXLImg2ImgPipeline(denoising_start=f)``) on ``tiny-xl`` + ``tiny-xl-refiner``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
from safetensors.torch import load_file

from flipbook.errors import FlipbookError
from flipbook.models.families import builtin_family, detect_checkpoint, detect_folder
from flipbook.models.families.sdxl.convert import pipeline_to_original_state_dict, save_original_checkpoint
from flipbook.models.loading import load_model
from flipbook.models.weights import empty_weights
from flipbook.samplers.schedulers import make_scheduler
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest

TOL = 1e-4
pytestmark = pytest.mark.usefixtures("one_thread")
REFINER = builtin_family("tiny-xl-refiner", "refiner")


@pytest.fixture(scope="module")
def xl():
    return load_model("tiny-xl", device="cpu", refiner="tiny-xl-refiner")


def generator(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def ensemble(model, sampler):
    """diffusers' two pipelines over the same parts: the base, and the refiner sharing the base's VAE."""
    base = StableDiffusionXLPipeline(**model.pipe.components)
    refiner = StableDiffusionXLImg2ImgPipeline(
        **model.refiner.pipe.components, requires_aesthetics_score=True, add_watermarker=False
    )
    for pipe, config in ((base, model.scheduler_config), (refiner, model.refiner.scheduler_config)):
        pipe.scheduler = make_scheduler(sampler, config)
        pipe.set_progress_bar_config(disable=True)
    return base, refiner


def core_images(model, requests, **kwargs):
    return np.stack(SamplingCore(model).generate(requests, output_type="np", **kwargs))


def frame(prompt, negative="", **kwargs):
    settings = {"num_inference_steps": 10, "guidance_scale": 7.5, "width": 64, "height": 64, **kwargs}
    return FrameRequest(prompt, negative, **settings)


# ---- the family ------------------------------------------------------------------------------------------


def test_the_built_in_refiner_has_the_refiners_structure(xl):
    refiner = xl.refiner
    assert refiner.family == REFINER.name and REFINER.attaches_to == (xl.family,)
    assert refiner.pipe.text_encoder is None and refiner.pipe.tokenizer is None
    unet, text = refiner.unet.config, refiner.pipe.text_encoder_2.config
    # cross-attention over OpenCLIP's states alone; pooled output + 5 size numbers (with the aesthetic score)
    assert unet.cross_attention_dim == text.hidden_size
    assert (
        unet.projection_class_embeddings_input_dim == text.projection_dim + 5 * unet.addition_time_embed_dim
    )
    assert refiner.vae is xl.vae  # the base's VAE decodes


def test_prompts_encode_through_the_second_encoder_with_the_aesthetic_score(xl):
    encoder = SamplingCore(xl).encoder(1, xl.refiner)
    cond = encoder.at_size(encoder.condition("a red fox"), 96, 64)
    assert cond.embeds.shape == (1, 77, 32) and cond.added["text_embeds"].shape == (1, 32)
    assert cond.added["time_ids"].tolist() == [[64.0, 96.0, 0.0, 0.0, 6.0]]
    negative = encoder.at_size(encoder.condition("blurry", negative=True), 96, 64)
    assert negative.added["time_ids"].tolist() == [[64.0, 96.0, 0.0, 0.0, 2.5]]
    empty = encoder.condition("", negative=True)
    assert not empty.embeds.any() and not empty.added["text_embeds"].any()  # as the base, as A1111
    # the base's second encoder reads the same text the same way (same weights in the built-ins)
    base = SamplingCore(xl).encoder(1).condition("a red fox")
    assert torch.allclose(base.added["text_embeds"], cond.added["text_embeds"])


# ---- equivalence with diffusers' ensemble of expert denoisers --------------------------------------------


@pytest.mark.parametrize("sampler", ["DDIM", "Euler"])
@pytest.mark.parametrize("switch", [0.8, 0.5])
def test_txt2img_with_the_refiner_matches_diffusers_ensemble(xl, sampler, switch):
    base, refiner = ensemble(xl, sampler)
    g = generator(42)
    common = {"negative_prompt": "blurry", "num_inference_steps": 10, "guidance_scale": 7.5, "generator": g}
    latents = base(
        "a red fox", height=64, width=64, denoising_end=switch, output_type="latent", **common
    ).images
    expected = refiner("a red fox", image=latents, denoising_start=switch, output_type="np", **common).images
    core = SamplingCore(xl)
    got = np.stack(
        core.generate(
            [frame("a red fox", "blurry", seed=42, sampler=sampler, refiner_switch_at=switch)],
            output_type="np",
        )
    )
    assert np.abs(got - expected).max() <= TOL
    plain = core_images(xl, [frame("a red fox", "blurry", seed=42, sampler=sampler)])
    assert np.abs(plain - expected).max() > 1e-3  # the refiner did the last steps
    assert core.stats["unet_calls"] == 10


def test_an_empty_negative_and_a_stochastic_sampler_match_diffusers(xl):
    """No negative prompt: zeros for both experts (diffusers' force_zeros_for_empty_prompt); Euler a's draws
    continue from the same generator in the refiner's steps."""
    base, refiner = ensemble(xl, "Euler a")
    refiner.register_to_config(force_zeros_for_empty_prompt=True)
    g = generator(3)
    latents = base(
        "a lighthouse", num_inference_steps=6, guidance_scale=5.0, height=64, width=96, generator=g,
        denoising_end=0.7, output_type="latent",
    ).images  # fmt: skip
    expected = refiner(
        "a lighthouse", image=latents, num_inference_steps=6, guidance_scale=5.0, generator=g,
        denoising_start=0.7, output_type="np",
    ).images  # fmt: skip
    request = frame("a lighthouse", seed=3, num_inference_steps=6, guidance_scale=5.0, width=96,
                    sampler="Euler a", refiner_switch_at=0.7)  # fmt: skip
    assert np.abs(core_images(xl, [request]) - expected).max() <= TOL


def test_img2img_with_the_refiner_matches_diffusers(xl, init_image):
    base = StableDiffusionXLImg2ImgPipeline(**xl.pipe.components)
    _, refiner = ensemble(xl, "DDIM")
    base.scheduler = make_scheduler("DDIM", xl.scheduler_config)
    base.set_progress_bar_config(disable=True)
    g = generator(7)
    common = {"negative_prompt": "blurry", "num_inference_steps": 10, "guidance_scale": 6.0, "generator": g}
    latents = base(
        "an oil painting", image=init_image, strength=0.6, denoising_end=0.8, output_type="latent", **common
    ).images
    expected = refiner(
        "an oil painting", image=latents, denoising_start=0.8, output_type="np", **common
    ).images
    request = frame("an oil painting", "blurry", seed=7, guidance_scale=6.0, sampler="DDIM",
                    image=init_image, strength=0.6, refiner_switch_at=0.8)  # fmt: skip
    assert np.abs(core_images(xl, [request]) - expected).max() <= TOL


def test_batched_frames_with_the_refiner_equal_one_by_one(xl):
    requests = [frame(p, "ugly", seed=s, num_inference_steps=6, sampler="Euler a", refiner_switch_at=0.6)
                for p, s in (("a cat", 1), ("a dog on a long walk", 2))]  # fmt: skip
    batched = core_images(xl, requests, batch_size=2)
    alone = np.concatenate([core_images(xl, [request]) for request in requests])
    assert np.abs(batched - alone).max() <= TOL
    assert np.array_equal(core_images(xl, requests[:1]), core_images(xl, requests[:1]))  # deterministic


def test_a_switch_without_a_loaded_refiner_is_one_error():
    model = load_model("tiny-xl", device="cpu")
    with pytest.raises(FlipbookError, match="refiner") as info:
        SamplingCore(model).generate([frame("a cat", num_inference_steps=2, refiner_switch_at=0.5)])
    assert info.value.field == "model.refiner"
    with pytest.raises(FlipbookError) as info:
        frame("a cat", refiner_switch_at=1.0).validate()
    assert info.value.field == "refiner_switch_at" and "(0, 1)" in info.value.allowed


# ---- loading: errors, single files, folders ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "refiner", "detail"),
    [
        ("tiny", "tiny-xl-refiner", "Stable Diffusion 1.x"),  # a refiner on a non-SDXL base
        ("tiny-xl", "tiny-xl", "not a refiner"),  # a base model given as the refiner
        ("tiny-xl", "tiny", "not a refiner"),
    ],
)
def test_a_refiner_that_does_not_fit_is_one_error(model, refiner, detail):
    with pytest.raises(FlipbookError, match=detail) as info:
        load_model(model, device="cpu", refiner=refiner)
    assert info.value.field == "model.refiner" and info.value.value == refiner
    assert "refine" in info.value.allowed and "\n" not in str(info.value)


def test_the_refiner_hub_id_is_looked_up_in_the_cache_only(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FlipbookError, match="not in the local Hugging Face cache") as info:
        load_model("tiny-xl", device="cpu", refiner="stabilityai/stable-diffusion-xl-refiner-1.0")
    assert info.value.field == "model.refiner"


def test_a_refiner_given_as_the_model_is_one_error():
    with pytest.raises(FlipbookError, match="this is a refiner") as info:
        load_model("tiny-xl-refiner", device="cpu")
    assert info.value.field == "model"


class _Refiner:
    """SDXL 1.0 refiner's components on the meta device (no memory): real key names and shapes."""

    def __init__(self) -> None:
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModelWithProjection

        from flipbook.models.families.sdxl.builtin import (
            CLIP_G_SIZES,
            SDXL_REFINER_UNET_CONFIG,
            SDXL_VAE_CONFIG,
            text_config,
        )

        parts = {}

        def build():
            from diffusers import AutoencoderKL

            parts["unet"] = UNet2DConditionModel(**SDXL_REFINER_UNET_CONFIG)
            parts["vae"] = AutoencoderKL(**SDXL_VAE_CONFIG)
            parts["text_encoder_2"] = CLIPTextModelWithProjection(text_config(*CLIP_G_SIZES))
            return torch.nn.Identity()

        empty_weights(build)
        self.__dict__.update(parts, text_encoder=None)


def test_the_refiner_layout_is_stabilitys_and_detected_from_its_keys():
    shapes = {key: tuple(value.shape) for key, value in pipeline_to_original_state_dict(_Refiner()).items()}
    # keys and shapes as sd_xl_refiner_1.0.safetensors has them
    assert shapes["model.diffusion_model.label_emb.0.0.weight"] == (1536, 2560)
    assert shapes["model.diffusion_model.input_blocks.4.1.transformer_blocks.3.attn2.to_k.weight"] == (
        768,
        1280,
    )
    assert shapes["conditioner.embedders.0.model.transformer.resblocks.31.attn.in_proj_weight"] == (
        3840,
        1280,
    )
    assert shapes["conditioner.embedders.0.model.text_projection"] == (1280, 1280)
    assert not any(key.startswith("conditioner.embedders.1.") for key in shapes)
    assert detect_checkpoint(shapes) is REFINER


def test_single_file_round_trip_of_the_refiner_gives_the_same_image(xl, tmp_path):
    """tiny-xl-refiner -> diffusers folder -> original key layout -> flipbook loads the file -> same pixels."""
    folder = tmp_path / "tiny-xl-refiner"
    xl.refiner.pipe.save_pretrained(folder)
    from_folder = load_model("tiny-xl", device="cpu", refiner=str(folder))
    assert from_folder.refiner.family == REFINER.name and from_folder.refiner.source == "folder"
    assert from_folder.refiner.vae is from_folder.vae
    path = save_original_checkpoint(from_folder.refiner.pipe, tmp_path / "sd_xl_refiner.safetensors")
    keys = list(load_file(path))
    assert any(k.startswith("conditioner.embedders.0.model.") for k in keys)
    assert not any(k.startswith("conditioner.embedders.1.") for k in keys)
    loaded = load_model("tiny-xl", device="cpu", refiner=str(path))
    assert loaded.refiner.source == "single_file" and loaded.refiner.hash is not None
    request = frame("a red fox in the snow", "blurry", seed=4, num_inference_steps=4, refiner_switch_at=0.5)
    expected = core_images(xl, [request])
    assert np.abs(core_images(from_folder, [request]) - expected).max() <= TOL
    assert np.abs(core_images(loaded, [request]) - expected).max() <= TOL


def test_refiner_folders_are_the_refiners():
    index = {
        "_class_name": "StableDiffusionXLImg2ImgPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": [None, None],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    }
    assert detect_folder(index, {"addition_embed_type": "text_time"}) is REFINER
    base = {**index, "text_encoder": ["transformers", "CLIPTextModel"]}
    assert detect_folder(base, {"addition_embed_type": "text_time"}) is builtin_family("tiny-xl", "image")

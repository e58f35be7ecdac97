"""flipbook's Wan sampling against diffusers' WanPipeline and WanImageToVideoPipeline on the tiny built-ins:
same seed, same frames (max abs difference <= 1e-4, float32)."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from flipbook.models.families.wan.loading import diffusers_pipeline, load_wan
from flipbook.sampling.wan import WanSettings, encode_prompt, sample_segment

SEQ = 64
PROMPT, NEGATIVE = "a cat in the  city at night", "blurry"


@pytest.fixture(scope="module")
def t2v():
    return load_wan("tiny-wan", field_name="model", device="cpu")


@pytest.fixture(scope="module")
def i2v():
    return load_wan("tiny-wan-i2v", field_name="model", device="cpu")


@pytest.fixture(scope="module")
def flf2v():
    return load_wan("tiny-wan-flf2v", field_name="model", device="cpu")


def _image(seed: int) -> PIL.Image.Image:
    return PIL.Image.fromarray((np.random.RandomState(seed).rand(64, 64, 3) * 255).astype("uint8"))


def _ours(bundle, settings, seed, known=None):
    embeds = encode_prompt(bundle, PROMPT, settings.max_sequence_length)
    negative = encode_prompt(bundle, NEGATIVE, settings.max_sequence_length)
    return sample_segment(
        bundle, embeds, negative, settings, generator=torch.Generator().manual_seed(seed), known=known
    ).numpy()


def _embeds(bundle):
    """The prompt states from WanPipeline's own encoder (the image pipeline's module needs ftfy to clean
    prompts when it was importable at install time; the encoder is the same function)."""
    from diffusers import WanPipeline

    pipe = WanPipeline(
        tokenizer=bundle.tokenizer, text_encoder=bundle.text_encoder, transformer=None, vae=bundle.vae,
        scheduler=bundle.scheduler, transformer_2=bundle.transformer,
    )  # fmt: skip
    length = bundle.text_length or SEQ
    return pipe.encode_prompt(PROMPT, NEGATIVE, max_sequence_length=length, device=bundle.device)


def test_prompt_states_match_the_pipeline(t2v):
    ours = encode_prompt(t2v, PROMPT, SEQ)
    theirs, _ = _embeds(t2v)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("guidance", [5.0, 1.0])
def test_text_to_video_matches_wan_pipeline(t2v, guidance):
    settings = WanSettings(num_frames=9, height=64, width=48, num_inference_steps=2, guidance_scale=guidance,
                           max_sequence_length=SEQ)  # fmt: skip
    ours = _ours(t2v, settings, 7)
    theirs = diffusers_pipeline(t2v)(
        prompt=PROMPT, negative_prompt=NEGATIVE, height=64, width=48, num_frames=9, num_inference_steps=2,
        guidance_scale=guidance, generator=torch.Generator().manual_seed(7), output_type="np",
        max_sequence_length=SEQ,
    ).frames[0]  # fmt: skip
    assert ours.shape == theirs.shape == (9, 64, 48, 3)
    assert np.abs(ours - theirs).max() <= 1e-4


@pytest.mark.parametrize("last", [False, True])
def test_image_to_video_matches_wan_i2v_pipeline(i2v, flf2v, last):
    """Image to video (Wan 2.1 I2V's layout), and first and last frame (FLF2V's)."""
    bundle = flf2v if last else i2v
    first, end = _image(1), _image(2)
    settings = WanSettings(num_frames=9, height=64, width=64, num_inference_steps=2, guidance_scale=4.0,
                           shift=5.0, max_sequence_length=bundle.text_length)  # fmt: skip
    known = {0: first, 8: end} if last else {0: first}
    ours = _ours(bundle, settings, 3, known)
    embeds, negative = _embeds(bundle)
    pipe = diffusers_pipeline(bundle)
    pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, flow_shift=5.0)
    theirs = pipe(
        image=first, last_image=end if last else None, prompt_embeds=embeds, negative_prompt_embeds=negative,
        height=64, width=64, num_frames=9, num_inference_steps=2, guidance_scale=4.0,
        generator=torch.Generator().manual_seed(3), output_type="np",
    ).frames[0]  # fmt: skip
    assert ours.shape == theirs.shape == (9, 64, 64, 3)
    assert np.abs(ours - theirs).max() <= 1e-4


def test_random_wan_1_3b_is_wan_2_1_t2v_1_3b_s_architecture():
    """Built on the meta device (no memory): the 1.3B transformer, Wan's VAE and the UMT5-XXL encoder."""
    from flipbook.models.families.wan.loading import random_wan_13b_components

    parts = random_wan_13b_components(0, torch.device("meta"))
    billions = {
        name: sum(p.numel() for p in parts[name].parameters()) / 1e9
        for name in ("transformer", "text_encoder")
    }
    assert 1.3 < billions["transformer"] < 1.5 and 5.6 < billions["text_encoder"] < 5.8
    assert parts["transformer"].config.num_layers == 30 and parts["vae"].config.z_dim == 16

"""Wan 2.2 TI2V-5B's image to video on a tiny TI2V-shaped model built here (Wan 2.2's residual VAE with 16x
spatial compression, a transformer without image channels, a timestep per token): a start image's latent
replaces the first latent frame, as diffusers' WanImageToVideoPipeline does for ``expand_timesteps`` models
(max abs difference <= 1e-4, float32, same seeds); text to video as WanPipeline with ``expand_timesteps``; the
videomodel mode chaining segments on it from a saved diffusers folder, and refusing images it cannot take."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import (
    AutoencoderKLWan,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanTransformer3DModel,
)
from transformers import UMT5Config, UMT5EncoderModel

from flipbook.errors import FlipbookError, SpecError
from flipbook.models.families.wan.loading import (
    SCHEDULER_CONFIG,
    TINY_TEXT_CONFIG,
    TINY_TRANSFORMER_CONFIG,
    conditioning,
    diffusers_pipeline,
    load_wan,
)
from flipbook.models.toy_tokenizer import tiny_tokenizer
from flipbook.models.weights import seeded
from flipbook.runs.render import render
from flipbook.sampling.wan import WanSettings, encode_prompt, sample_segment
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")
SEQ = 32
PROMPT, NEGATIVE = "a cat in the city", "blurry"
TINY_TI2V_VAE_CONFIG = {  # Wan 2.2's VAE layout (residual, 2x2 patches: 16x spatial, 4x temporal) at toy size
    "base_dim": 8,
    "decoder_base_dim": 8,
    "z_dim": 16,
    "dim_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
    "temperal_downsample": [False, True, True],
    "is_residual": True,
    "in_channels": 12,
    "out_channels": 12,
    "patch_size": 2,
    "scale_factor_spatial": 16,
    "scale_factor_temporal": 4,
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A saved diffusers folder of a tiny TI2V-shaped WanImageToVideoPipeline (``expand_timesteps``)."""
    pipe = WanImageToVideoPipeline(
        transformer=seeded(0, lambda: WanTransformer3DModel(**TINY_TRANSFORMER_CONFIG)),
        vae=seeded(1, lambda: AutoencoderKLWan(**TINY_TI2V_VAE_CONFIG)),
        text_encoder=seeded(2, lambda: UMT5EncoderModel(UMT5Config(**TINY_TEXT_CONFIG))),
        tokenizer=tiny_tokenizer(), scheduler=UniPCMultistepScheduler.from_config(SCHEDULER_CONFIG),
        image_encoder=None, image_processor=None, expand_timesteps=True,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("ti2v") / "tiny-ti2v"
    pipe.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="module")
def ti2v(folder):
    return load_wan(str(folder), field_name="videomodel.model", device="cpu")


def _image(seed: int) -> PIL.Image.Image:
    return PIL.Image.fromarray((np.random.RandomState(seed).rand(64, 64, 3) * 255).astype("uint8"))


def _ours(bundle, settings, seed, known=None):
    embeds, negative = encode_prompt(bundle, PROMPT, SEQ), encode_prompt(bundle, NEGATIVE, SEQ)
    generator = torch.Generator().manual_seed(seed)
    return sample_segment(bundle, embeds, negative, settings, generator=generator, known=known).numpy()


def test_the_folder_loads_as_ti2v(ti2v, folder):
    assert ti2v.expand_timesteps and ti2v.replaces_first_frames and not ti2v.takes_images
    assert ti2v.conditioning == "optional" and ti2v.side_multiple == 32
    assert conditioning(str(folder), None, "videomodel.model") == "optional"  # from the configs, unloaded


@pytest.mark.parametrize("guidance", [5.0, 1.0])
def test_a_start_image_matches_wan_i2v_pipeline_with_expand_timesteps(ti2v, guidance):
    start = _image(1)
    settings = WanSettings(num_frames=9, height=64, width=64, num_inference_steps=3, guidance_scale=guidance,
                           max_sequence_length=SEQ)  # fmt: skip
    ours = _ours(ti2v, settings, 3, {0: start})
    # the prompt states from WanPipeline's encoder (the image pipeline's prompt cleaning needs ftfy)
    embeds, negative = diffusers_pipeline(ti2v).encode_prompt(PROMPT, NEGATIVE, max_sequence_length=SEQ)
    theirs = diffusers_pipeline(ti2v, with_images=True)(
        image=start, prompt_embeds=embeds, negative_prompt_embeds=negative, height=64, width=64, num_frames=9,
        num_inference_steps=3, guidance_scale=guidance, generator=torch.Generator().manual_seed(3),
        output_type="np",
    ).frames[0]  # fmt: skip
    assert ours.shape == theirs.shape == (9, 64, 64, 3)
    assert np.abs(ours - theirs).max() <= 1e-4
    assert np.abs(ours - _ours(ti2v, settings, 3)).max() > 1e-3  # the image changed the video


def test_text_to_video_matches_wan_pipeline_with_expand_timesteps(ti2v):
    settings = WanSettings(num_frames=9, height=64, width=64, num_inference_steps=2, guidance_scale=4.0,
                           max_sequence_length=SEQ)  # fmt: skip
    theirs = diffusers_pipeline(ti2v)(
        prompt=PROMPT, negative_prompt=NEGATIVE, height=64, width=64, num_frames=9, num_inference_steps=2,
        guidance_scale=4.0, generator=torch.Generator().manual_seed(4), output_type="np",
        max_sequence_length=SEQ,
    ).frames[0]  # fmt: skip
    assert np.abs(_ours(ti2v, settings, 4) - theirs).max() <= 1e-4


def test_the_first_four_k_plus_one_frames_are_whole_latent_frames(ti2v):
    """A segment's overlap of 5 frames fills its first 2 latent frames; other positions are refused."""
    settings = WanSettings(num_frames=9, height=64, width=64, num_inference_steps=2, guidance_scale=1.0,
                           max_sequence_length=SEQ)  # fmt: skip
    five = {p: _image(p) for p in range(5)}
    assert _ours(ti2v, settings, 2, five).shape == (9, 64, 64, 3)
    for known in ({0: _image(0), 8: _image(8)}, {p: _image(p) for p in range(3)}):
        with pytest.raises(FlipbookError) as error:
            _ours(ti2v, settings, 2, known)
        assert error.value.field == "videomodel" and "TI2V" in str(error.value)


def _spec(tmp_path, folder, name, **sections):
    data = {
        "model": {"device": "cpu"}, "sampling": {"steps": 2, "seed": 5, "cfg": 3.0},
        "animation": {"mode": "videomodel", "max_frames": 13, "width": 64, "height": 64},
        "videomodel": {"model": str(folder), "segment_frames": 9, "max_sequence_length": SEQ},
        "prompts": {"0": PROMPT}, "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    }  # fmt: skip
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return spec_from_data(data)


def test_the_mode_chains_ti2v_segments_from_a_start_image(tmp_path, folder):
    """13 frames in segments of 9 from init.image: segment 1 starts from frame 8 as written. A keyframe in the
    middle of a segment is one error naming it, before any segment is made."""
    start = tmp_path / "start.png"
    _image(5).save(start)
    result = render(_spec(tmp_path, folder, "chain", init={"image": str(start)}))
    assert len(result.frames) == 13
    spec = _spec(tmp_path, folder, "key", init={"image": str(start)},
                 videomodel={"keyframes": [{"frame": 4, "image": str(start)}]})  # fmt: skip
    with pytest.raises(SpecError) as error:
        render(spec)
    assert error.value.field == "videomodel.keyframes[0].frame" and error.value.value == 4
    assert not list((tmp_path / "key" / "frames").glob("*.png"))

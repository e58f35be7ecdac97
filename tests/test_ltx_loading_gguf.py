"""GGUF-quantised LTX-Video transformer files (ComfyUI-GGUF's ``ltx-video-2b-v0.9.1-Q8_0.gguf`` in models/unet
or models/diffusion_models: the transformer alone, in LTX's original layout without the
``model.diffusion_model.`` prefix), written here with the ``gguf`` package from a tiny LTX transformer, with the VAE named beside it (a
VAE file, or the LTX single file that holds one), loaded offline through diffusers' GGUF support."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel
from safetensors.torch import save_file
from test_ltx_loading_single_file import TRANSFORMER, _original_transformer, _original_vae
from test_wan_loading_gguf import write_gguf
from transformers import T5Config, T5EncoderModel

from flipbook.errors import FlipbookError
from flipbook.models.families.ltx.loading import TINY_TEXT_CONFIG, TINY_VAE_CONFIG, load_ltx
from flipbook.models.toy_tokenizer import tiny_tokenizer
from flipbook.models.weights import CONFIG_METADATA_KEY, seeded
from flipbook.runs.render import render
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")
PREFIX = "model.diffusion_model."


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    root = tmp_path_factory.mktemp("ComfyUI")
    for folder in ("checkpoints", "unet", "text_encoders", "vae"):
        (root / "models" / folder).mkdir(parents=True)
    transformer = seeded(1, lambda: LTXVideoTransformer3DModel(**TRANSFORMER))
    original = {_original_transformer(k): v.contiguous() for k, v in transformer.state_dict().items()}
    vae = seeded(2, lambda: AutoencoderKLLTXVideo(**TINY_VAE_CONFIG))
    vae_state = {_original_vae(k): v for k, v in vae.state_dict().items()}
    metadata = {CONFIG_METADATA_KEY: json.dumps({"vae": TINY_VAE_CONFIG})}
    save_file(
        original | vae_state, root / "models" / "checkpoints" / "ltx-toy.safetensors", metadata=metadata
    )
    bare = {k.removeprefix(PREFIX): v for k, v in original.items()}  # ComfyUI-GGUF drops the prefix
    write_gguf(root / "models" / "unet" / "ltx-toy-Q8_0.gguf", bare, flatten=True)
    bare_vae = {k.removeprefix("vae."): v for k, v in vae_state.items()}  # a VAE file: no vae. prefix
    save_file(bare_vae, root / "models" / "vae" / "ltx-toy-vae.safetensors", metadata=metadata)
    text = seeded(3, lambda: T5EncoderModel(T5Config(**TINY_TEXT_CONFIG)))
    text_state = {k: v for k, v in text.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(text_state, root / "models" / "text_encoders" / "t5-toy.safetensors")
    tiny_tokenizer(max_length=128).save_pretrained(root / "tokenizer")
    return root, vae


def _load(root, name, **parts):
    parts = {"text_encoder": "t5-toy", "tokenizer": str(root / "tokenizer")} | parts
    return load_ltx(name, field_name="videomodel.model", models_dir=root, device="cpu", **parts)


def test_a_gguf_transformer_stays_quantised_and_equals_diffusers_loading_the_same_file(comfy):
    from diffusers import GGUFQuantizationConfig

    root, vae = comfy
    bundle = _load(root, "ltx-toy-Q8_0", vae="ltx-toy-vae")
    ours = bundle.transformer
    assert ours.is_quantized and type(ours.transformer_blocks[0].attn1.to_q).__name__ == "GGUFLinear"
    assert all(torch.equal(t, vae.state_dict()[k]) for k, t in bundle.vae.state_dict().items())
    config = root / "config"
    config.mkdir()
    (config / "config.json").write_text(
        json.dumps({"_class_name": "LTXVideoTransformer3DModel", **TRANSFORMER})
    )
    theirs = LTXVideoTransformer3DModel.from_single_file(
        str(root / "models" / "unet" / "ltx-toy-Q8_0.gguf"), config=str(config),
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32), torch_dtype=torch.float32,
        local_files_only=True,
    )  # fmt: skip
    expected = theirs.state_dict()
    assert ours.state_dict().keys() == expected.keys()
    assert all(torch.equal(tensor, expected[key]) for key, tensor in ours.state_dict().items())
    latents, text = torch.randn(1, 8, 8), torch.randn(1, 4, 32)
    rope = {"num_frames": 2, "height": 2, "width": 2}
    with torch.inference_mode():
        a = ours(latents, text, torch.tensor([500]), torch.ones(1, 4), **rope).sample
        b = theirs(latents, text, torch.tensor([500]), torch.ones(1, 4), **rope).sample
    assert torch.equal(a, b)


def _spec(root, out, model, **parts):
    return spec_from_data({
        "model": {"device": "cpu", "models_dir": str(root)},
        "sampling": {"steps": 2, "seed": 5, "cfg": 4.0},
        "animation": {"mode": "videomodel", "max_frames": 9, "width": 64, "height": 64},
        "videomodel": {"model": model, "segment_frames": 9, "max_sequence_length": 32, "text_encoder": "t5-toy",
                       "tokenizer": str(root / "tokenizer"), **parts},
        "prompts": {"0": "a cat in the city"},
        "output": {"dir": str(out), "name": model, "formats": ["png"]},
    })  # fmt: skip


def _frames(result):
    return np.stack([np.asarray(PIL.Image.open(p).convert("RGB")).astype(int) for p in result.frames])


def test_a_spec_renders_from_a_gguf_file_close_to_the_unquantised_single_file(comfy, tmp_path):
    """The .gguf is told from its tensor names (LTX-Video's) and found in models/unet; its VAE here is the
    single file's (which holds one)."""
    root = comfy[0]
    quantised = _frames(render(_spec(root, tmp_path, "ltx-toy-Q8_0", vae="ltx-toy")))
    plain = _frames(render(_spec(root, tmp_path, "ltx-toy")))
    assert quantised.shape == plain.shape == (9, 64, 64, 3)
    # Q8_0 weights: the frames stay within a few levels of 255 of the unquantised model's
    assert np.abs(quantised - plain).mean() <= 0.5
    assert np.abs(quantised - plain).max() <= 4


def test_a_gguf_file_without_its_vae_is_one_error_naming_the_field(comfy):
    root = comfy[0]
    with pytest.raises(FlipbookError) as error:
        _load(root, "ltx-toy-Q8_0")
    assert error.value.field == "videomodel.vae" and "ltx-toy-Q8_0.gguf" in str(error.value)
    with pytest.raises(FlipbookError) as error:
        _load(
            root, "ltx-toy-Q8_0", vae="t5-toy"
        )  # found in models/text_encoders? no: vae looks in models/vae
    assert error.value.field == "videomodel.vae"
    with pytest.raises(FlipbookError) as error:  # a file whose keys are no LTX-Video VAE's
        _load(root, "ltx-toy-Q8_0", vae=str(root / "models" / "text_encoders" / "t5-toy.safetensors"))
    assert error.value.field == "videomodel.vae" and "not an LTX-Video VAE" in str(error.value)
    with pytest.raises(FlipbookError) as error:  # a safetensors single file holds its VAE: none is named
        _load(root, "ltx-toy", vae="ltx-toy-vae")
    assert error.value.field == "videomodel.vae"

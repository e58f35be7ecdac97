"""fp8 Wan files: a transformer cast to float8_e4m3fn (``*_fp8_e4m3fn.safetensors``) and ComfyUI's scaled fp8
(``scale_weight`` per layer, ``scale_input`` and the ``scaled_fp8`` marker), transformer and text encoder,
written here from the tiny parts and upcast into the compute dtype at load."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from safetensors.torch import save_file
from test_wan_single_file import TEXT, TRANSFORMER, _original
from transformers import UMT5Config, UMT5EncoderModel

from flipbook.models.families.wan.loading import TINY_VAE_CONFIG, load_wan
from flipbook.models.toy_tokenizer import tiny_tokenizer
from flipbook.models.weights import CONFIG_METADATA_KEY, seeded
from flipbook.runs.render import render
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")
FP8 = torch.float8_e4m3fn


def _cast(state, scaled: bool):
    """Weights of 2+ dimensions in fp8 (as ComfyUI's fp8 files), with a per-tensor scale when ``scaled``."""
    out = {}
    for key, tensor in state.items():
        if tensor.ndim < 2 or not key.endswith(".weight"):
            out[key] = tensor.to(torch.bfloat16)
            continue
        if scaled:
            scale = tensor.abs().max().float() / 448
            out[key] = (tensor / scale).to(FP8)
            out[f"{key.removesuffix('.weight')}.scale_weight"] = scale.reshape(())
            out[f"{key.removesuffix('.weight')}.scale_input"] = torch.ones(())
        else:
            out[key] = tensor.to(FP8)
    if scaled:
        out["scaled_fp8"] = torch.empty(0, dtype=FP8)
    return out


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    root = tmp_path_factory.mktemp("ComfyUI")
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (root / "models" / folder).mkdir(parents=True)
    transformer = seeded(1, lambda: WanTransformer3DModel(**TRANSFORMER))
    original = {
        f"model.diffusion_model.{_original(k)}": v.contiguous() for k, v in transformer.state_dict().items()
    }
    folder = root / "models" / "diffusion_models"
    save_file(original, folder / "wan-toy.safetensors")
    save_file(_cast(original, scaled=False), folder / "wan-toy_fp8_e4m3fn.safetensors")
    save_file(_cast(original, scaled=True), folder / "wan-toy_fp8_scaled.safetensors")
    text = seeded(2, lambda: UMT5EncoderModel(UMT5Config(**TEXT)))
    text_state = {k: v for k, v in text.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(text_state, root / "models" / "text_encoders" / "umt5-toy.safetensors")
    save_file(
        _cast(text_state, scaled=True), root / "models" / "text_encoders" / "umt5-toy_fp8_scaled.safetensors"
    )
    vae = seeded(3, lambda: AutoencoderKLWan(**TINY_VAE_CONFIG))
    save_file(vae.state_dict(), root / "models" / "vae" / "wan-toy-vae.safetensors",
              metadata={CONFIG_METADATA_KEY: json.dumps({"vae": TINY_VAE_CONFIG})})  # fmt: skip
    tiny_tokenizer().save_pretrained(root / "tokenizer")
    return root


def _load(root, name, text_encoder="umt5-toy"):
    return load_wan(
        name, field_name="videomodel.model", models_dir=root, device="cpu", text_encoder=text_encoder,
        vae="wan-toy-vae", tokenizer=str(root / "tokenizer"),
    )  # fmt: skip


def _spec(root, out, model, text_encoder):
    return spec_from_data({
        "model": {"device": "cpu", "models_dir": str(root)},
        "sampling": {"steps": 2, "seed": 5, "cfg": 4.0},
        "animation": {"mode": "videomodel", "max_frames": 9, "width": 64, "height": 64},
        "videomodel": {"model": model, "segment_frames": 9, "max_sequence_length": 32,
                       "text_encoder": text_encoder, "vae": "wan-toy-vae", "tokenizer": str(root / "tokenizer")},
        "prompts": {"0": "a cat in the city"},
        "output": {"dir": str(out), "name": f"{model}-{text_encoder}", "formats": ["png"]},
    })  # fmt: skip


def _frames(result):
    return np.stack([np.asarray(PIL.Image.open(p).convert("RGB")).astype(int) for p in result.frames])


@pytest.mark.parametrize("name", ["wan-toy_fp8_e4m3fn", "wan-toy_fp8_scaled"])
def test_fp8_weights_are_upcast_times_their_scale(comfy, name):
    from safetensors.torch import load_file

    stored = load_file(comfy / "models" / "diffusion_models" / f"{name}.safetensors")
    bundle = _load(comfy, name)
    weight = bundle.transformer.blocks[0].attn1.to_q.weight
    raw = stored["model.diffusion_model.blocks.0.self_attn.q.weight"]
    scale = stored.get("model.diffusion_model.blocks.0.self_attn.q.scale_weight", torch.tensor(1.0))
    assert weight.dtype == torch.float32
    assert torch.equal(weight, raw.float() * scale.float())


def test_a_spec_renders_from_scaled_fp8_files_close_to_the_full_precision_ones(comfy, tmp_path):
    fp8 = _frames(render(_spec(comfy, tmp_path, "wan-toy_fp8_scaled", "umt5-toy_fp8_scaled")))
    plain = _frames(render(_spec(comfy, tmp_path, "wan-toy", "umt5-toy")))
    assert fp8.shape == plain.shape == (9, 64, 64, 3)
    # fp8 e4m3 keeps 3 mantissa bits; on this toy model the frames stay within a few levels of 255
    # (measured: 0.02 on average, 3 at the worst pixel; the unscaled fp8 file: 0.04 and 3)
    assert np.abs(fp8 - plain).mean() <= 0.5
    assert np.abs(fp8 - plain).max() <= 6

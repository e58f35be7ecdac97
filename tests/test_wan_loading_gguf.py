"""GGUF-quantised Wan transformer files (ComfyUI-GGUF's ``wan2.1-t2v-14b-Q4_K_M.gguf`` in models/unet or
models/diffusion_models), written here with the ``gguf`` package from a tiny Wan transformer in Wan's original
layout (Q8_0 and Q4_0 rows, F16/F32 for the rest, the 5-D patch embedding flattened with ComfyUI-GGUF's
``comfy.gguf.orig_shape`` key or kept 5-D), loaded offline through flipbook's single-file path."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize
from safetensors.torch import save_file
from test_wan_single_file import TEXT, TRANSFORMER, _original
from transformers import UMT5Config, UMT5EncoderModel

from flipbook.errors import FlipbookError
from flipbook.models.families.wan.loading import TINY_VAE_CONFIG, load_wan
from flipbook.models.gguf_files import ORIG_SHAPE
from flipbook.models.toy_tokenizer import tiny_tokenizer
from flipbook.models.weights import CONFIG_METADATA_KEY, seeded
from flipbook.runs.render import render
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")


def _type(name: str, array: np.ndarray) -> GGMLQuantizationType:
    """As the converters do: 2-D weights quantised where their rows fit the blocks, the rest F16/F32."""
    if array.ndim == 2 and array.shape[1] % 32 == 0 and ".weight" in name:
        return GGMLQuantizationType.Q4_0 if ".ffn." in name else GGMLQuantizationType.Q8_0
    return GGMLQuantizationType.F16 if array.ndim > 1 else GGMLQuantizationType.F32


def write_gguf(path, state, flatten: bool):
    writer = GGUFWriter(str(path), "wan")
    for name, tensor in state.items():
        array = tensor.float().numpy()
        kind = _type(name, array)
        if kind in (GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_0):
            writer.add_tensor(name, quantize(array, kind), raw_dtype=kind)
            continue
        if flatten and array.ndim > 4:  # ComfyUI-GGUF: at most 4 dimensions, the shape kept in the metadata
            writer.add_array(f"{ORIG_SHAPE}{name}", list(array.shape))
            array = array.reshape(array.shape[0], -1)
        writer.add_tensor(name, array.astype(np.float16 if kind == GGMLQuantizationType.F16 else np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    root = tmp_path_factory.mktemp("ComfyUI")
    for folder in ("diffusion_models", "unet", "text_encoders", "vae"):
        (root / "models" / folder).mkdir(parents=True)
    transformer = seeded(1, lambda: WanTransformer3DModel(**TRANSFORMER))
    original = {_original(k): v.contiguous() for k, v in transformer.state_dict().items()}
    save_file(
        {f"model.diffusion_model.{k}": v for k, v in original.items()},
        root / "models" / "diffusion_models" / "wan-toy.safetensors",
    )
    write_gguf(root / "models" / "unet" / "wan-toy-Q8_0.gguf", original, flatten=True)
    write_gguf(root / "models" / "diffusion_models" / "wan-toy-5d-Q8_0.gguf", original, flatten=False)
    text = seeded(2, lambda: UMT5EncoderModel(UMT5Config(**TEXT)))
    text_state = {k: v for k, v in text.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(text_state, root / "models" / "text_encoders" / "umt5-toy.safetensors")
    vae = seeded(3, lambda: AutoencoderKLWan(**TINY_VAE_CONFIG))
    save_file(vae.state_dict(), root / "models" / "vae" / "wan-toy-vae.safetensors",
              metadata={CONFIG_METADATA_KEY: json.dumps({"vae": TINY_VAE_CONFIG})})  # fmt: skip
    tiny_tokenizer().save_pretrained(root / "tokenizer")
    return root


def _load(root, name):
    return load_wan(
        name, field_name="videomodel.model", models_dir=root, device="cpu", text_encoder="umt5-toy",
        vae="wan-toy-vae", tokenizer=str(root / "tokenizer"),
    )  # fmt: skip


def _spec(root, out, model):
    return spec_from_data({
        "model": {"device": "cpu", "models_dir": str(root)},
        "sampling": {"steps": 2, "seed": 5, "cfg": 4.0},
        "animation": {"mode": "videomodel", "max_frames": 9, "width": 64, "height": 64},
        "videomodel": {"model": model, "segment_frames": 9, "max_sequence_length": 32, "text_encoder": "umt5-toy",
                       "vae": "wan-toy-vae", "tokenizer": str(root / "tokenizer")},
        "prompts": {"0": "a cat in the city"},
        "output": {"dir": str(out), "name": model, "formats": ["png"]},
    })  # fmt: skip


def _frames(result):
    return np.stack([np.asarray(PIL.Image.open(p).convert("RGB")).astype(int) for p in result.frames])


def test_a_gguf_transformer_stays_quantised_and_equals_diffusers_loading_the_same_file(comfy):
    from diffusers import GGUFQuantizationConfig

    ours = _load(comfy, "wan-toy-5d-Q8_0").transformer
    assert ours.is_quantized and type(ours.blocks[0].attn1.to_q).__name__ == "GGUFLinear"
    config = comfy / "config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"_class_name": "WanTransformer3DModel", **TRANSFORMER}))
    theirs = WanTransformer3DModel.from_single_file(
        str(comfy / "models" / "diffusion_models" / "wan-toy-5d-Q8_0.gguf"), config=str(config),
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32), torch_dtype=torch.float32,
        local_files_only=True,
    )  # fmt: skip
    expected = theirs.state_dict()
    assert ours.state_dict().keys() == expected.keys()
    assert all(torch.equal(tensor, expected[key]) for key, tensor in ours.state_dict().items())
    latents, text = torch.randn(1, 16, 3, 8, 8), torch.randn(1, 8, 32)
    with torch.inference_mode():
        a = ours(latents, torch.tensor([500]), text).sample
        b = theirs(latents, torch.tensor([500]), text).sample
    assert torch.equal(a, b)


def test_comfyui_gguf_files_flattened_5d_tensors_load_in_their_shape(comfy):
    flat = _load(comfy, "wan-toy-Q8_0").transformer.state_dict()
    full = _load(comfy, "wan-toy-5d-Q8_0").transformer.state_dict()
    assert flat["patch_embedding.weight"].shape == (256, 16, 1, 2, 2)
    assert all(torch.equal(tensor, full[key]) for key, tensor in flat.items())


def test_a_spec_renders_from_a_gguf_file_in_models_unet_close_to_the_unquantised_file(comfy, tmp_path):
    quantised = _frames(render(_spec(comfy, tmp_path, "wan-toy-Q8_0")))
    plain = _frames(render(_spec(comfy, tmp_path, "wan-toy")))
    assert quantised.shape == plain.shape == (9, 64, 64, 3)
    # Q8_0/Q4_0 weights: the frames stay within a few levels of 255 of the unquantised model's (measured on
    # this toy model: 0.004 on average, 2 at the worst pixel)
    assert np.abs(quantised - plain).mean() <= 0.5
    assert np.abs(quantised - plain).max() <= 4


def test_fp8_storage_is_refused_on_a_gguf_transformer_and_auto_leaves_it_off(comfy, tmp_path):
    spec = _spec(comfy, tmp_path, "wan-toy-Q8_0")
    fp8 = spec.model_copy(update={"videomodel": spec.videomodel.model_copy(update={"fp8_storage": True})})
    with pytest.raises(FlipbookError) as error:
        render(fp8)
    assert error.value.field == "videomodel.fp8_storage"
    assert "quantised" in error.value.allowed


def test_a_damaged_gguf_file_is_one_error_naming_the_field(comfy):
    broken = comfy / "models" / "unet" / "broken-Q8_0.gguf"
    broken.write_bytes((comfy / "models" / "unet" / "wan-toy-Q8_0.gguf").read_bytes()[:4000])
    with pytest.raises(FlipbookError) as error:
        _load(comfy, "broken-Q8_0")
    assert error.value.field == "videomodel.model"

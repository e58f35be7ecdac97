"""Wan from ComfyUI's split single files, found by name in a models folder: a transformer in Wan's original
layout (``models/diffusion_models``), a UMT5 encoder (``models/text_encoders``), a VAE (``models/vae``), and the
tokenizer a single text-encoder file lacks; configs read from the tensor shapes."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from safetensors.torch import save_file
from transformers import UMT5Config, UMT5EncoderModel

from flipbook.errors import FlipbookError
from flipbook.models.families import detect_checkpoint
from flipbook.models.families.wan.loading import TINY_VAE_CONFIG, load_wan
from flipbook.models.toy_tokenizer import tiny_tokenizer
from flipbook.models.weights import CONFIG_METADATA_KEY, seeded

TRANSFORMER = {
    "patch_size": (1, 2, 2), "num_attention_heads": 2, "attention_head_dim": 128, "in_channels": 16,
    "out_channels": 16, "text_dim": 32, "freq_dim": 256, "ffn_dim": 64, "num_layers": 2, "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
}  # fmt: skip
I2V = {**TRANSFORMER, "in_channels": 36, "image_dim": 8, "added_kv_proj_dim": 256}
TEXT = {"vocab_size": 160, "d_model": 32, "d_kv": 8, "d_ff": 37, "num_layers": 2, "num_heads": 4,
        "relative_attention_num_buckets": 8, "feed_forward_proj": "gated-gelu"}  # fmt: skip

# diffusers' names back to Wan's original ones (the converter's table, reversed; norm2/norm3 swap back)
_BACK = [
    ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
    ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
    ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
    ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn2", "cross_attn"), ("attn1", "self_attn"), (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."),
    (".to_v.", ".v."), (".add_k_proj.", ".k_img."), (".add_v_proj.", ".v_img."), (".norm_added_k.", ".norm_k_img."),
    ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"), ("proj_out", "head.head"),
    ("norm2", "norm__x"), ("norm3", "norm2"), ("norm__x", "norm3"),
]  # fmt: skip


def _original(key: str) -> str:
    if key == "scale_shift_table":
        return "head.modulation"
    key = key.replace("scale_shift_table", "modulation")
    for new, old in _BACK:
        key = key.replace(new, old)
    return key


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    root = tmp_path_factory.mktemp("ComfyUI")
    for folder in ("diffusion_models", "text_encoders", "vae"):
        (root / "models" / folder).mkdir(parents=True)
    transformer = seeded(1, lambda: WanTransformer3DModel(**TRANSFORMER))
    for name, module in (("wan-toy", transformer), ("wan-toy-i2v", WanTransformer3DModel(**I2V))):
        state = {
            f"model.diffusion_model.{_original(k)}": v.contiguous() for k, v in module.state_dict().items()
        }
        save_file(state, root / "models" / "diffusion_models" / f"{name}.safetensors")
    text = seeded(2, lambda: UMT5EncoderModel(UMT5Config(**TEXT)))
    text_state = {k: v for k, v in text.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(text_state, root / "models" / "text_encoders" / "umt5-toy.safetensors")
    vae = seeded(3, lambda: AutoencoderKLWan(**TINY_VAE_CONFIG))
    save_file(vae.state_dict(), root / "models" / "vae" / "wan-toy-vae.safetensors",
              metadata={CONFIG_METADATA_KEY: json.dumps({"vae": TINY_VAE_CONFIG})})  # fmt: skip
    tiny_tokenizer().save_pretrained(root / "tokenizer")
    return root, transformer, text, vae


def test_the_split_files_load_by_name_with_configs_from_their_shapes(comfy):
    root, transformer, text, vae = comfy
    bundle = load_wan(
        "wan-toy", field_name="videomodel.model", models_dir=root, device="cpu", text_encoder="umt5-toy",
        vae="wan-toy-vae", tokenizer=str(root / "tokenizer"),
    )  # fmt: skip
    assert bundle.source == "single_file" and not bundle.takes_images
    assert all(bundle.transformer.config[k] == v for k, v in TRANSFORMER.items())
    for ours, theirs in ((bundle.transformer, transformer), (bundle.text_encoder, text), (bundle.vae, vae)):
        expected = theirs.state_dict()
        assert all(torch.equal(tensor, expected[key]) for key, tensor in ours.state_dict().items())
    ids = torch.tensor([bundle.tokenizer("a cat").input_ids])
    with torch.inference_mode():
        difference = bundle.text_encoder(ids).last_hidden_state - text(ids).last_hidden_state
    assert difference.abs().max() <= 1e-6


def test_a_wan_transformer_file_is_recognised_by_the_registry(comfy):
    from safetensors.torch import load_file

    root = comfy[0]
    state = load_file(root / "models" / "diffusion_models" / "wan-toy.safetensors")
    family = detect_checkpoint(state)
    assert family is not None and family.capability == "video diffusion"


@pytest.mark.parametrize(
    ("missing", "field"),
    [
        ("tokenizer", "videomodel.tokenizer"),
        ("text_encoder", "videomodel.text_encoder"),
        ("vae", "videomodel.vae"),
    ],
)
def test_each_missing_part_is_one_error_naming_what_to_pass(comfy, missing, field):
    root = comfy[0]
    parts = {"text_encoder": "umt5-toy", "vae": "wan-toy-vae", "tokenizer": str(root / "tokenizer")}
    parts[missing] = None
    with pytest.raises(FlipbookError) as error:
        load_wan("wan-toy", field_name="videomodel.model", models_dir=root, device="cpu", **parts)
    assert error.value.field == field


def test_a_spec_renders_from_the_split_files_named_in_the_models_folder(comfy, tmp_path):
    """The mode finds the family from the file's keys and loads the parts by name: the same frames as the
    modules the files were written from."""
    from flipbook.runs.render import render
    from flipbook.spec.load import spec_from_data

    root = comfy[0]
    spec = spec_from_data({
        "model": {"device": "cpu", "models_dir": str(root)}, "sampling": {"steps": 2, "seed": 3},
        "animation": {"mode": "videomodel", "max_frames": 5, "width": 32, "height": 32},
        "videomodel": {"model": "wan-toy", "segment_frames": 5, "max_sequence_length": 16,
                       "text_encoder": "umt5-toy", "vae": "wan-toy-vae", "tokenizer": str(root / "tokenizer")},
        "prompts": {"0": "a cat"}, "output": {"dir": str(tmp_path), "name": "comfy", "formats": ["png"]},
    })  # fmt: skip
    assert len(render(spec).frames) == 5


def test_a_file_that_is_not_really_gguf_is_one_clear_error(comfy, tmp_path):
    path = tmp_path / "wan-q4.gguf"
    path.write_bytes(b"GGUF")
    with pytest.raises(FlipbookError, match="GGUF") as error:
        load_wan(str(path), field_name="videomodel.model", device="cpu")
    assert error.value.field == "videomodel.model"

"""Image-to-video Wan from single files: the I2V transformer (Wan's original layout, image tokens' k_img/v_img)
with its CLIP vision encoder from ``models/clip_vision`` (transformers' layout, config from its shapes); the
frames are diffusers' WanImageToVideoPipeline's with the same parts, and without the encoder it is one error
naming ``videomodel.image_encoder``."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from safetensors.torch import save_file
from test_wan_single_file import TEXT, TRANSFORMER, _original
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, UMT5Config, UMT5EncoderModel

from flipbook.errors import FlipbookError
from flipbook.models.families.wan.loading import TINY_VAE_CONFIG, diffusers_pipeline, load_wan
from flipbook.models.toy_tokenizer import tiny_tokenizer
from flipbook.models.weights import CONFIG_METADATA_KEY, seeded
from flipbook.runs.render import render
from flipbook.sampling.wan import encode_prompt
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")
VISION = {"hidden_size": 128, "intermediate_size": 64, "projection_dim": 32, "num_hidden_layers": 2,
          "num_attention_heads": 2, "patch_size": 4, "image_size": 16, "hidden_act": "gelu"}  # fmt: skip
I2V = {**TRANSFORMER, "in_channels": 36, "image_dim": 128, "added_kv_proj_dim": 256}


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    root = tmp_path_factory.mktemp("ComfyUI")
    for folder in ("diffusion_models", "text_encoders", "vae", "clip_vision"):
        (root / "models" / folder).mkdir(parents=True)
    transformer = seeded(1, lambda: WanTransformer3DModel(**I2V))
    save_file(
        {
            f"model.diffusion_model.{_original(k)}": v.contiguous()
            for k, v in transformer.state_dict().items()
        },
        root / "models" / "diffusion_models" / "wan-toy-i2v.safetensors",
    )
    vision = seeded(4, lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**VISION)))
    save_file(vision.state_dict(), root / "models" / "clip_vision" / "clip-toy.safetensors")
    text = seeded(2, lambda: UMT5EncoderModel(UMT5Config(**TEXT)))
    text_state = {k: v for k, v in text.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(text_state, root / "models" / "text_encoders" / "umt5-toy.safetensors")
    vae = seeded(3, lambda: AutoencoderKLWan(**TINY_VAE_CONFIG))
    save_file(vae.state_dict(), root / "models" / "vae" / "wan-toy-vae.safetensors",
              metadata={CONFIG_METADATA_KEY: json.dumps({"vae": TINY_VAE_CONFIG})})  # fmt: skip
    tiny_tokenizer().save_pretrained(root / "tokenizer")
    return root, vision


PARTS = {"text_encoder": "umt5-toy", "vae": "wan-toy-vae"}


def _picture(size=64):
    rng = np.random.default_rng(0)
    return PIL.Image.fromarray(rng.integers(0, 255, (size, size, 3)).astype(np.uint8))


def test_the_clip_vision_encoder_loads_by_name_with_its_config_from_shapes(comfy):
    root, vision = comfy
    bundle = load_wan(
        "wan-toy-i2v", field_name="videomodel.model", models_dir=root, device="cpu", image_encoder="clip-toy",
        tokenizer=str(root / "tokenizer"), **PARTS,
    )  # fmt: skip
    assert bundle.takes_images and bundle.image_embeddings == 1
    assert all(bundle.image_encoder.config.to_dict()[k] == v for k, v in VISION.items())
    expected = vision.state_dict()
    assert all(torch.equal(t, expected[k]) for k, t in bundle.image_encoder.state_dict().items())


def _open_clip_layout(vision) -> dict[str, torch.Tensor]:
    """transformers' CLIPVisionModelWithProjection tensors as an open_clip checkpoint names them (written here
    from open_clip's VisionTransformer: conv1, class_embedding, positional_embedding, ln_pre, resblocks with a
    fused in_proj, ln_post, proj as width x output), with a text tower's tensors beside them, as a whole
    open_clip checkpoint has them."""
    state = vision.state_dict()
    converted = {
        "visual.conv1.weight": state["vision_model.embeddings.patch_embedding.weight"],
        "visual.class_embedding": state["vision_model.embeddings.class_embedding"],
        "visual.positional_embedding": state["vision_model.embeddings.position_embedding.weight"],
        "visual.proj": state["visual_projection.weight"].t().contiguous(),
    }
    for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for leaf in ("weight", "bias"):
            converted[f"visual.{theirs}.{leaf}"] = state[f"vision_model.{ours}.{leaf}"]
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
             "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}  # fmt: skip
    for n in range(VISION["num_hidden_layers"]):
        ours, theirs = f"vision_model.encoder.layers.{n}", f"visual.transformer.resblocks.{n}"
        for leaf in ("weight", "bias"):
            qkv = [state[f"{ours}.self_attn.{part}_proj.{leaf}"] for part in "qkv"]
            converted[f"{theirs}.attn.in_proj_{leaf}"] = torch.cat(qkv)
            for module, name in names.items():
                converted[f"{theirs}.{name}.{leaf}"] = state[f"{ours}.{module}.{leaf}"]
    text = {"token_embedding.weight": torch.zeros(8, 4), "transformer.resblocks.0.ln_1.weight": torch.ones(4)}
    return {key: value.contiguous() for key, value in (converted | text).items()}


def test_a_clip_vision_file_in_open_clips_layout_is_the_same_encoder(comfy):
    root, vision = comfy
    save_file(_open_clip_layout(vision), root / "models" / "clip_vision" / "clip-toy-open-clip.safetensors")
    bundle = load_wan(
        "wan-toy-i2v", field_name="videomodel.model", models_dir=root, device="cpu",
        image_encoder="clip-toy-open-clip", tokenizer=str(root / "tokenizer"), **PARTS,
    )  # fmt: skip
    assert all(bundle.image_encoder.config.to_dict()[k] == v for k, v in VISION.items())
    expected = vision.state_dict()
    loaded = bundle.image_encoder.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(t, expected[k]) for k, t in loaded.items())


def test_a_spec_renders_image_to_video_from_the_single_files_as_wan_i2v_pipeline(comfy, tmp_path):
    root = comfy[0]
    start = tmp_path / "start.png"
    _picture().save(start)
    spec = spec_from_data({
        "model": {"device": "cpu", "models_dir": str(root)},
        "sampling": {"steps": 2, "seed": 5, "cfg": 4.0},
        "animation": {"mode": "videomodel", "max_frames": 9, "width": 64, "height": 64},
        "init": {"image": str(start)},
        "videomodel": {"model": "wan-toy-i2v", "segment_frames": 9, "image_encoder": "clip-toy",
                       "tokenizer": str(root / "tokenizer"), **PARTS},
        "prompts": {"0": "a cat in the city"},
        "output": {"dir": str(tmp_path), "name": "i2v", "formats": ["png"]},
    })  # fmt: skip
    ours = np.stack([np.asarray(PIL.Image.open(p).convert("RGB")).astype(int) for p in render(spec).frames])
    bundle = load_wan(
        "wan-toy-i2v", field_name="videomodel.model", models_dir=root, device="cpu", image_encoder="clip-toy",
        tokenizer=str(root / "tokenizer"), **PARTS,
    )  # fmt: skip
    theirs = diffusers_pipeline(bundle)(
        image=PIL.Image.open(start).convert("RGB"), prompt_embeds=encode_prompt(bundle, "a cat in the city", 512),
        negative_prompt_embeds=encode_prompt(bundle, "", 512), height=64, width=64, num_frames=9,
        num_inference_steps=2, guidance_scale=4.0, generator=torch.Generator().manual_seed(5), output_type="np",
    ).frames[0]  # fmt: skip
    assert np.abs(ours - (theirs * 255).round().astype(int)).max() <= 1


def test_without_its_image_encoder_an_i2v_file_is_one_error_naming_the_field(comfy):
    root = comfy[0]
    with pytest.raises(FlipbookError) as error:
        load_wan("wan-toy-i2v", field_name="videomodel.model", models_dir=root, device="cpu",
                 tokenizer=str(root / "tokenizer"), **PARTS)  # fmt: skip
    assert error.value.field == "videomodel.image_encoder" and "clip_vision" in error.value.allowed


def test_an_image_encoder_for_a_built_in_is_one_error(comfy):
    with pytest.raises(FlipbookError) as error:
        load_wan("tiny-wan-i2v", field_name="videomodel.model", device="cpu", image_encoder="clip-toy")
    assert error.value.field == "videomodel.image_encoder"

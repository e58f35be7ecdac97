"""LTX-Video from ComfyUI's single file (transformer and VAE in LTX's original layout, as
``ltx-video-2b-v0.9.x.safetensors``) with a T5 text encoder file and a tokenizer named beside it: a tiny file
written here round-trips through diffusers' converters, is told from its keys, renders, and each missing part
is one error naming its field."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel
from diffusers.loaders.single_file_utils import convert_ltx_vae_checkpoint_to_diffusers
from safetensors.torch import save_file
from transformers import T5Config, T5EncoderModel

from flipbook.errors import FlipbookError
from flipbook.models.families import detect_checkpoint
from flipbook.models.families.ltx.loading import TINY_TEXT_CONFIG, TINY_VAE_CONFIG, load_ltx
from flipbook.models.toy_tokenizer import tiny_tokenizer
from flipbook.models.weights import CONFIG_METADATA_KEY, seeded
from flipbook.runs.render import render
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")
TRANSFORMER = {
    "in_channels": 8, "out_channels": 8, "patch_size": 1, "patch_size_t": 1, "num_attention_heads": 32,
    "attention_head_dim": 2, "cross_attention_dim": 64, "num_layers": 2, "caption_channels": 32,
}  # fmt: skip
_TRANSFORMER_BACK = [("proj_in", "patchify_proj"), ("time_embed", "adaln_single"), ("norm_q", "q_norm"),
                     ("norm_k", "k_norm")]  # fmt: skip
# diffusers' VAE block names back to LTX-Video 0.9.0's (the converter's table, reversed; first match wins)
_VAE_BLOCKS_BACK = [
    ("decoder.mid_block.", "decoder.up_blocks.0."), ("decoder.up_blocks.0.", "decoder.up_blocks.1."),
    ("decoder.up_blocks.1.upsamplers.0.", "decoder.up_blocks.2."), ("decoder.up_blocks.1.", "decoder.up_blocks.3."),
    ("decoder.up_blocks.2.conv_in.", "decoder.up_blocks.4."),
    ("decoder.up_blocks.2.upsamplers.0.", "decoder.up_blocks.5."), ("decoder.up_blocks.2.", "decoder.up_blocks.6."),
    ("decoder.up_blocks.3.conv_in.", "decoder.up_blocks.7."),
    ("decoder.up_blocks.3.upsamplers.0.", "decoder.up_blocks.8."), ("decoder.up_blocks.3.", "decoder.up_blocks.9."),
    ("encoder.down_blocks.0.downsamplers.0.", "encoder.down_blocks.1."),
    ("encoder.down_blocks.0.conv_out.", "encoder.down_blocks.2."), ("encoder.down_blocks.0.", "encoder.down_blocks.0."),
    ("encoder.down_blocks.1.downsamplers.0.", "encoder.down_blocks.4."),
    ("encoder.down_blocks.1.conv_out.", "encoder.down_blocks.5."), ("encoder.down_blocks.1.", "encoder.down_blocks.3."),
    ("encoder.down_blocks.2.downsamplers.0.", "encoder.down_blocks.7."), ("encoder.down_blocks.2.", "encoder.down_blocks.6."),
    ("encoder.down_blocks.3.", "encoder.down_blocks.8."), ("encoder.mid_block.", "encoder.down_blocks.9."),
]  # fmt: skip
_VAE_NAMES_BACK = [(".resnets.", ".res_blocks."), ("conv_shortcut.conv", "conv_shortcut"), ("norm3.", "norm3.norm."),
                   ("latents_mean", "per_channel_statistics.mean-of-means"),
                   ("latents_std", "per_channel_statistics.std-of-means")]  # fmt: skip


def _original_transformer(key: str) -> str:
    for new, old in _TRANSFORMER_BACK:
        key = key.replace(new, old)
    return f"model.diffusion_model.{key}"


def _original_vae(key: str) -> str:
    for new, old in _VAE_BLOCKS_BACK:
        if key.startswith(new):
            key = old + key[len(new) :]
            break
    for new, old in _VAE_NAMES_BACK:
        key = key.replace(new, old)
    return f"vae.{key}"


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    root = tmp_path_factory.mktemp("ComfyUI")
    for folder in ("checkpoints", "text_encoders"):
        (root / "models" / folder).mkdir(parents=True)
    transformer = seeded(1, lambda: LTXVideoTransformer3DModel(**TRANSFORMER))
    vae = seeded(2, lambda: AutoencoderKLLTXVideo(**TINY_VAE_CONFIG))
    vae_state = {_original_vae(k): v for k, v in vae.state_dict().items()}
    assert convert_ltx_vae_checkpoint_to_diffusers(dict(vae_state)).keys() == vae.state_dict().keys()
    state = {
        _original_transformer(k): v.contiguous() for k, v in transformer.state_dict().items()
    } | vae_state
    metadata = {CONFIG_METADATA_KEY: json.dumps({"vae": TINY_VAE_CONFIG})}
    save_file(state, root / "models" / "checkpoints" / "ltx-toy.safetensors", metadata=metadata)
    save_file(state, root / "models" / "checkpoints" / "ltx-toy-no-config.safetensors")
    fp8 = {
        k: v.to(torch.float8_e4m3fn) if k.endswith(".weight") and v.ndim == 2 else v for k, v in state.items()
    }
    save_file(fp8, root / "models" / "checkpoints" / "ltx-toy_fp8_e4m3fn.safetensors", metadata=metadata)
    text = seeded(3, lambda: T5EncoderModel(T5Config(**TINY_TEXT_CONFIG)))
    text_state = {k: v for k, v in text.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(text_state, root / "models" / "text_encoders" / "t5-toy.safetensors")
    tiny_tokenizer(max_length=128).save_pretrained(root / "tokenizer")
    return root, transformer, vae, text


def test_the_single_file_round_trips_through_diffusers_converters_with_the_transformer_config_from_shapes(
    comfy,
):
    root, transformer, vae, text = comfy
    bundle = load_ltx(
        "ltx-toy", field_name="videomodel.model", models_dir=root, device="cpu", text_encoder="t5-toy",
        tokenizer=str(root / "tokenizer"),
    )  # fmt: skip
    assert bundle.source == "single_file"
    assert all(bundle.transformer.config[k] == v for k, v in TRANSFORMER.items() if k != "patch_size_t")
    for ours, theirs in ((bundle.transformer, transformer), (bundle.vae, vae), (bundle.text_encoder, text)):
        expected = theirs.state_dict()
        assert ours.state_dict().keys() == expected.keys()
        assert all(torch.equal(tensor, expected[key]) for key, tensor in ours.state_dict().items())


def test_the_file_is_told_from_its_keys_and_a_spec_renders_from_it(comfy, tmp_path):
    from safetensors import safe_open

    root = comfy[0]
    with safe_open(str(root / "models" / "checkpoints" / "ltx-toy.safetensors"), framework="pt") as handle:
        family = detect_checkpoint(dict.fromkeys(handle.keys()))
    assert family is not None and family.title == "LTX-Video"
    spec = spec_from_data({
        "model": {"device": "cpu", "models_dir": str(root)},
        "sampling": {"steps": 2, "seed": 5, "cfg": 4.0},
        "animation": {"mode": "videomodel", "max_frames": 9, "width": 64, "height": 64},
        "videomodel": {"model": "ltx-toy", "segment_frames": 9, "max_sequence_length": 32,
                       "text_encoder": "t5-toy", "tokenizer": str(root / "tokenizer")},
        "prompts": {"0": "a cat in the city"},
        "output": {"dir": str(tmp_path), "name": "ltx", "formats": ["png"]},
    })  # fmt: skip
    result = render(spec)
    assert len(result.frames) == 9
    import PIL.Image

    frames = np.stack([np.asarray(PIL.Image.open(p)) for p in result.frames])
    assert frames.std() > 0


@pytest.mark.parametrize(
    ("parts", "field"),
    [
        ({"tokenizer": "TOKENIZER"}, "videomodel.text_encoder"),
        ({"text_encoder": "t5-toy"}, "videomodel.tokenizer"),
        ({"text_encoder": "t5-toy", "tokenizer": "TOKENIZER", "vae": "some-vae"}, "videomodel.vae"),
    ],
)
def test_each_missing_or_extra_part_is_one_error_naming_its_field(comfy, parts, field):
    root = comfy[0]
    parts = {k: str(root / "tokenizer") if v == "TOKENIZER" else v for k, v in parts.items()}
    with pytest.raises(FlipbookError) as error:
        load_ltx("ltx-toy", field_name="videomodel.model", models_dir=root, device="cpu", **parts)
    assert error.value.field == field


def test_a_vae_that_does_not_fit_the_shipped_configuration_is_one_error(comfy):
    """Without its embedded config the toy VAE's keys are LTX-Video 0.9.0's, its shapes are not."""
    root = comfy[0]
    with pytest.raises(FlipbookError) as error:
        load_ltx(
            "ltx-toy-no-config", field_name="videomodel.model", models_dir=root, device="cpu",
            text_encoder="t5-toy", tokenizer=str(root / "tokenizer"),
        )  # fmt: skip
    assert error.value.field == "videomodel.model" and "shapes do not fit" in error.value.detail


# diffusers' VAE block names back to LTX-Video 0.9.5's (the converter's 0.9.5 table, reversed; first match wins)
_VAE_095_BLOCKS_BACK = [
    ("decoder.mid_block.", "decoder.up_blocks.0."),
    ("decoder.up_blocks.0.upsamplers.0.", "decoder.up_blocks.1."), ("decoder.up_blocks.0.", "decoder.up_blocks.2."),
    ("decoder.up_blocks.1.upsamplers.0.", "decoder.up_blocks.3."), ("decoder.up_blocks.1.", "decoder.up_blocks.4."),
    ("decoder.up_blocks.2.upsamplers.0.", "decoder.up_blocks.5."), ("decoder.up_blocks.2.", "decoder.up_blocks.6."),
    ("encoder.down_blocks.0.downsamplers.0.", "encoder.down_blocks.1."),
    ("encoder.down_blocks.1.downsamplers.0.", "encoder.down_blocks.3."), ("encoder.down_blocks.1.", "encoder.down_blocks.2."),
    ("encoder.down_blocks.2.downsamplers.0.", "encoder.down_blocks.5."), ("encoder.down_blocks.2.", "encoder.down_blocks.4."),
    ("encoder.down_blocks.3.downsamplers.0.", "encoder.down_blocks.7."), ("encoder.down_blocks.3.", "encoder.down_blocks.6."),
    ("encoder.mid_block.", "encoder.down_blocks.8."),
]  # fmt: skip
_VAE_095_NAMES_BACK = [*_VAE_NAMES_BACK, ("decoder.time_embedder.", "decoder.last_time_embedder."),
                       ("decoder.scale_shift_table", "decoder.last_scale_shift_table")]  # fmt: skip


def _original_vae_095(key: str) -> str:
    for new, old in _VAE_095_BLOCKS_BACK:
        if key.startswith(new):
            key = old + key[len(new) :]
            break
    for new, old in _VAE_095_NAMES_BACK:
        key = key.replace(new, old)
    return f"vae.{key}"


def _file_095(blocks: int = 28) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """An LTX-Video 0.9.5-layout single file's tensors on the meta device (shapes only: the real sizes, which
    are what tells the version), from the shipped configuration's VAE written back in the original layout,
    with a transformer's block keys; and the VAE's own state."""
    from flipbook.models.families.ltx.single_file import VAE_095
    from flipbook.models.weights import empty_weights

    vae = empty_weights(lambda: AutoencoderKLLTXVideo(**VAE_095)).state_dict()
    meta = {"device": "meta"}
    state = {_original_vae_095(key): value for key, value in vae.items()}
    state |= {
        "vae.per_channel_statistics.channel": torch.empty(128, **meta),
        "vae.per_channel_statistics.mean-of-stds": torch.empty(128, **meta),
        "model.diffusion_model.patchify_proj.weight": torch.empty(2048, 128, **meta),
        f"model.diffusion_model.transformer_blocks.{blocks - 1}.scale_shift_table": torch.empty(
            6, 2048, **meta
        ),
    }
    return state, vae


@pytest.mark.parametrize(("blocks", "version"), [(28, "0.9.5"), (48, "0.9.7")])
def test_a_vae_of_0_9_5_and_later_gets_the_shipped_configuration_that_its_tensors_fit(comfy, blocks, version):
    """LTX-Video 0.9.5 and later (told as diffusers tells them: 2048 encoder channels, 48 blocks for 0.9.7
    13B): the shipped configuration is chosen, and diffusers' converter turns the file's VAE tensors into
    exactly that configuration's (names and shapes, at full size on the meta device); a decoder without the
    timestep embedder gets a configuration without timestep conditioning."""
    from flipbook.models.families.ltx.single_file import VAE_095, _split, _vae_config

    state, vae = _file_095(blocks)
    path = comfy[0] / f"ltx-video-v{version}.safetensors"
    assert _vae_config(state, "videomodel.model", path) == VAE_095
    _, converted = _split(dict(state), torch.float32)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in vae.items()}
    untimed = {
        k: v for k, v in state.items() if "last_time_embedder" not in k and "last_scale_shift" not in k
    }
    assert _vae_config(untimed, "videomodel.model", path) == {**VAE_095, "timestep_conditioning": False}


def test_an_fp8_single_file_is_upcast_at_load(comfy):
    from safetensors.torch import load_file

    root = comfy[0]
    stored = load_file(root / "models" / "checkpoints" / "ltx-toy_fp8_e4m3fn.safetensors")
    bundle = load_ltx(
        "ltx-toy_fp8_e4m3fn", field_name="videomodel.model", models_dir=root, device="cpu", text_encoder="t5-toy",
        tokenizer=str(root / "tokenizer"),
    )  # fmt: skip
    raw = stored["model.diffusion_model.transformer_blocks.0.attn1.to_q.weight"]
    assert raw.dtype == torch.float8_e4m3fn
    assert torch.equal(bundle.transformer.transformer_blocks[0].attn1.to_q.weight, raw.float())


def test_an_fp8_file_s_transformer_kept_in_fp8_makes_the_frames_of_the_upcast_one(comfy):
    """fp8 storage on (``keep_fp8``): the fp8 file's transformer weights stay fp8 in memory, each dequantised as
    its layer computes, and diffusers' LTXPipeline makes exactly the frames of the model upcast at load."""
    from flipbook.models.families.ltx.loading import reference_frames
    from flipbook.models.fp8_files import holds_fp8
    from flipbook.sampling.segments import SegmentSettings

    root = comfy[0]

    def load(keep):
        return load_ltx(
            "ltx-toy_fp8_e4m3fn", field_name="videomodel.model", models_dir=root, device="cpu",
            text_encoder="t5-toy", tokenizer=str(root / "tokenizer"), keep_fp8=keep,
        )  # fmt: skip

    kept, upcast = load(True), load(False)
    assert holds_fp8(kept.transformer) and not holds_fp8(upcast.transformer)
    layer = kept.transformer.transformer_blocks[0].attn1.to_q
    assert layer.weight.dtype == torch.float8_e4m3fn and layer.bias.dtype == torch.float32
    settings = SegmentSettings(num_frames=9, height=64, width=64, num_inference_steps=2, guidance_scale=3.0,
                               max_sequence_length=32, fps=24)  # fmt: skip
    frames = [reference_frames(bundle, "a cat", "", settings, 3) for bundle in (kept, upcast)]
    assert np.array_equal(frames[0], frames[1])

"""LTX-2's single file in Lightricks' layout (``model.diffusion_model.*`` with the text connectors, ``vae.*``,
``audio_vae.*``, ``vocoder.*``, ``text_embedding_projection.*``): the tiny model's diffusers folder written in
that layout round-trips (told from its keys, every part equal, the same frames and audio as the built-in),
LTX-2.0's shipped configurations take a full-size file's names and shapes (on the meta device), and each part
that is missing or wrong is one error naming its field."""

from __future__ import annotations

import json
import re

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file, save_file

from flipbook.errors import FlipbookError
from flipbook.models.families.ltx2.loading import PARTS, diffusers_pipeline, load_ltx2
from flipbook.models.weights import CONFIG_METADATA_KEY
from flipbook.runs.render import render
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")
_TRANSFORMER_BACK = [
    ("av_cross_attn_video_scale_shift", "av_ca_video_scale_shift_adaln_single"),
    ("av_cross_attn_video_a2v_gate", "av_ca_a2v_gate_adaln_single"),
    ("av_cross_attn_audio_scale_shift", "av_ca_audio_scale_shift_adaln_single"),
    ("av_cross_attn_audio_v2a_gate", "av_ca_v2a_gate_adaln_single"),
    ("video_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_video"),
    ("audio_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_audio"),
    ("norm_q", "q_norm"), ("norm_k", "k_norm"), ("proj_in", "patchify_proj"),
]  # fmt: skip
_CONNECTORS_BACK = [
    ("video_connector.", "video_embeddings_connector."), ("audio_connector.", "audio_embeddings_connector."),
    (".transformer_blocks.", ".transformer_1d_blocks."), (".norm_q.", ".q_norm."), (".norm_k.", ".k_norm."),
]  # fmt: skip
_VOCODER_BACK = {"conv_in": "conv_pre", "conv_out": "conv_post", "upsamplers": "ups", "resnets": "resblocks"}
_STATISTICS = {
    "latents_mean": "per_channel_statistics.mean-of-means",
    "latents_std": "per_channel_statistics.std-of-means",
}


def _transformer_key(key: str) -> str:
    for new, old in _TRANSFORMER_BACK:
        key = key.replace(new, old)
    key = re.sub(r"^(audio_)?time_embed\.", lambda m: f"{m.group(1) or ''}adaln_single.", key)
    return "model.diffusion_model." + key


def _connectors_key(key: str) -> str:
    if key.startswith("text_proj_in."):  # stored at the top level, beside the transformer
        return key.replace("text_proj_in.", "text_embedding_projection.aggregate_embed.")
    for new, old in _CONNECTORS_BACK:
        key = key.replace(new, old)
    return "model.diffusion_model." + key


def _vae_key(key: str) -> str:
    """diffusers' video VAE names -> LTX-2's (encoder: stage i at 2i, its downsampler at 2i+1, the middle at
    8; decoder: the middle at 0, stage i's upsampler at 2i+1 and the rest of it at 2i+2)."""
    key = _STATISTICS.get(key, key)
    stage = re.match(
        r"^(encoder\.down|decoder\.up)_blocks\.(\d+)\.(downsamplers\.0\.|upsamplers\.0\.)?(.*)$", key
    )
    if stage is not None:
        side, index, sampler, rest = stage[1], int(stage[2]), stage[3], stage[4]
        position = 2 * index + (1 if sampler else 0 if side == "encoder.down" else 2)
        key = f"{side}_blocks.{position}.{rest}"
    key = re.sub(r"^decoder\.(time_embedder\.|scale_shift_table$)", r"decoder.last_\1", key)
    key = re.sub(r"^encoder\.mid_block\.", "encoder.down_blocks.8.", key)
    key = re.sub(r"^decoder\.mid_block\.", "decoder.up_blocks.0.", key)
    return "vae." + key.replace(".resnets.", ".res_blocks.")


def _vocoder_key(key: str) -> str:
    module, dot, rest = key.partition(".")
    return "vocoder." + _VOCODER_BACK.get(module, module) + dot + rest


ORIGINAL = {
    "transformer": _transformer_key,
    "connectors": _connectors_key,
    "vae": _vae_key,
    "audio_vae": lambda key: "audio_vae." + _STATISTICS.get(key, key),
    "vocoder": _vocoder_key,
}
"""diffusers' names -> Lightricks' single-file names, per part (the inverse of the loader's mapping)."""


def original_layout(parts) -> dict[str, torch.Tensor]:
    """Every part's tensors under Lightricks' names in one dict; the VAE's unused statistics too."""
    state = {ORIGINAL[name](key): tensor for name, module in parts.items() for key, tensor in module.items()}
    channels = state["vae.per_channel_statistics.mean-of-means"].shape
    state["vae.per_channel_statistics.channel"] = torch.arange(channels[0], dtype=torch.float32)
    state["vae.per_channel_statistics.mean-of-stds"] = torch.ones(channels)
    return state


def _configs(pipe) -> dict:
    configs = {name: dict(getattr(pipe, name).config) for name in (*ORIGINAL, "scheduler")}
    return {name: {k: v for k, v in c.items() if not k.startswith("_")} for name, c in configs.items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tiny model saved as a diffusers folder, then its parts written as one file in Lightricks' layout
    (with flipbook's configs embedded: the tiny sizes are not LTX-2.0's); its Gemma folder and tokenizer."""
    root = tmp_path_factory.mktemp("ltx2")
    bundle = load_ltx2("tiny-ltx2", field_name="videomodel.model", device="cpu")
    pipe = diffusers_pipeline(bundle)
    pipe.save_pretrained(root / "folder", safe_serialization=True)
    parts = {
        name: load_file(root / "folder" / name / "diffusion_pytorch_model.safetensors") for name in ORIGINAL
    }
    state = original_layout(parts)
    (root / "models" / "checkpoints").mkdir(parents=True)
    path = root / "models" / "checkpoints" / "ltx-2-toy.safetensors"
    save_file(state, path, metadata={CONFIG_METADATA_KEY: json.dumps(_configs(pipe))})
    return root, path, bundle, state


def _load(files, path=None, **kwargs):
    root = files[0]
    kwargs.setdefault("text_encoder", str(root / "folder" / "text_encoder"))
    kwargs.setdefault("tokenizer", str(root / "folder" / "tokenizer"))
    return load_ltx2(str(path or files[1]), field_name="videomodel.model", device="cpu", **kwargs)


def test_the_inverse_names_are_what_diffusers_converters_read():
    """The test's own inverse mapping, checked against diffusers' converters for the parts they cover."""
    from diffusers.loaders.single_file_utils import (
        convert_ltx2_audio_vae_to_diffusers,
        convert_ltx2_transformer_to_diffusers,
        convert_ltx2_vae_to_diffusers,
    )

    from flipbook.models.families.ltx2.loading import tiny_ltx2_components

    parts = {name: module.state_dict() for name, module in tiny_ltx2_components().items() if name in ORIGINAL}
    for name, convert in (
        ("transformer", convert_ltx2_transformer_to_diffusers),
        ("vae", convert_ltx2_vae_to_diffusers),
        ("audio_vae", convert_ltx2_audio_vae_to_diffusers),
    ):
        original = {ORIGINAL[name](k): v for k, v in parts[name].items()}
        assert convert(dict(original)).keys() == parts[name].keys()


def test_an_ltx2_single_file_is_told_from_its_keys_not_as_ltx_video(files):
    from flipbook.models.families import detect_checkpoint

    assert detect_checkpoint(dict.fromkeys(files[3])).name == "ltx-2"
    transformer_only = {k: None for k in files[3] if k.startswith("model.diffusion_model.")}
    assert detect_checkpoint(transformer_only).name == "ltx-2"


def test_the_single_file_round_trips_into_every_part(files):
    loaded, bundle = _load(files), files[2]
    assert loaded.source == "single_file"
    for name in PARTS:
        ours, theirs = getattr(loaded, name).state_dict(), getattr(bundle, name).state_dict()
        assert ours.keys() == theirs.keys(), name
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name
    assert loaded.tokenizer("a cat").input_ids == bundle.tokenizer("a cat").input_ids
    config = {k: v for k, v in bundle.scheduler.config.items() if not k.startswith("_")}
    assert {k: v for k, v in loaded.scheduler.config.items() if not k.startswith("_")} == config


def _spec(tmp_path, name, model, **videomodel):
    return spec_from_data({
        "model": {"device": "cpu", "models_dir": str(tmp_path.parent / "models")},
        "sampling": {"steps": 2, "seed": 5, "cfg": 3.0},
        "animation": {"mode": "videomodel", "max_frames": 9, "width": 64, "height": 64, "fps": 25},
        "videomodel": {"model": model, "segment_frames": 9, "max_sequence_length": 32, **videomodel},
        "prompts": {"0": "a cat in the city"},
        "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    })  # fmt: skip


def test_a_render_from_the_single_file_makes_the_built_in_s_frames_and_audio(files, tmp_path):
    from flipbook.modes.videomodel.audio import read_clip

    root = files[0]
    single = render(
        _spec(root / "out", "single", "ltx-2-toy", text_encoder=str(root / "folder" / "text_encoder"),
              tokenizer=str(root / "folder" / "tokenizer")),
    )  # fmt: skip
    builtin = render(_spec(root / "out", "builtin", "tiny-ltx2"))
    for a, b in zip(single.frames, builtin.frames, strict=True):
        assert np.array_equal(np.asarray(PIL.Image.open(a)), np.asarray(PIL.Image.open(b)))
    assert np.array_equal(read_clip(single.outputs["wav"])[0], read_clip(builtin.outputs["wav"])[0])


def test_the_text_encoder_is_named_and_a_comfyui_gemma_file_is_refused(files, tmp_path):
    with pytest.raises(FlipbookError) as error:
        _load(files, text_encoder=None)
    assert error.value.field == "videomodel.text_encoder" and "Gemma 3" in str(error.value)
    gemma = tmp_path / "gemma_3_12B_it.safetensors"
    save_file({"model.layers.0.self_attn.q_norm.weight": torch.ones(2)}, gemma)
    with pytest.raises(FlipbookError) as error:
        _load(files, text_encoder=str(gemma))
    assert error.value.field == "videomodel.text_encoder" and "ComfyUI" in str(error.value)
    with pytest.raises(FlipbookError) as error:
        _load(files, vae="some-vae")
    assert error.value.field == "videomodel.vae"


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (lambda s: s | {"unknown.weight": torch.ones(1)}, "a tensor of no LTX-2 part: 'unknown.weight'"),
        (lambda s: {k: v for k, v in s.items() if not k.startswith("vocoder.")}, "it holds no vocoder"),
        (
            lambda s: {k: v for k, v in s.items() if k != "vocoder.conv_post.weight"},
            "missing 'conv_out.weight'",
        ),
        (lambda s: s | {"text_embedding_projection.video_aggregate_embed.weight": torch.ones(1)}, "LTX-2.3"),
    ],
)
def test_a_file_that_is_not_a_whole_ltx2_0_model_is_one_error(files, tmp_path, change, detail):
    path = tmp_path / "broken.safetensors"
    metadata = {CONFIG_METADATA_KEY: json.dumps(_configs(diffusers_pipeline(files[2])))}
    save_file(change(dict(files[3])), path, metadata=metadata)
    with pytest.raises(FlipbookError) as error:
        _load(files, path)
    assert error.value.field == "videomodel.model" and detail in str(error.value)


def test_ltx2_0_configurations_take_a_full_size_file_s_names_and_shapes():
    """On the meta device: each part built from the shipped LTX-2.0 configuration, written under Lightricks'
    names, comes back through the loader's mapping with exactly the model's names and shapes."""
    from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    from flipbook.models.families.ltx2.single_file import CONFIGS, split_parts
    from flipbook.models.weights import empty_weights

    classes = {"transformer": LTX2VideoTransformer3DModel, "vae": AutoencoderKLLTX2Video,
               "audio_vae": AutoencoderKLLTX2Audio, "vocoder": LTX2Vocoder, "connectors": LTX2TextConnectors}  # fmt: skip
    models = {
        name: empty_weights(lambda c=c, n=name: c.from_config(CONFIGS[n])) for name, c in classes.items()
    }
    assert (
        models["transformer"].config.num_layers == 48
        and models["vocoder"].config.output_sampling_rate == 24000
    )
    state = original_layout({name: model.state_dict() for name, model in models.items()})
    parts = split_parts(state, "videomodel.model", "full-size")
    from diffusers.loaders.single_file_utils import (
        convert_ltx2_audio_vae_to_diffusers,
        convert_ltx2_transformer_to_diffusers,
        convert_ltx2_vae_to_diffusers,
    )

    from flipbook.models.families.ltx2.single_file import connectors_to_diffusers, vocoder_to_diffusers

    converted = {
        "transformer": convert_ltx2_transformer_to_diffusers(dict(parts["transformer"])),
        "vae": convert_ltx2_vae_to_diffusers({f"vae.{k}": v for k, v in parts["vae"].items()}),
        "audio_vae": convert_ltx2_audio_vae_to_diffusers(
            {f"audio_vae.{k}": v for k, v in parts["audio_vae"].items()}
        ),
        "vocoder": vocoder_to_diffusers(parts["vocoder"]),
        "connectors": connectors_to_diffusers(parts["connectors"]),
    }
    for name, model in models.items():
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert {k: tuple(v.shape) for k, v in converted[name].items()} == expected, name


def test_an_fp8_single_file_keeps_its_transformer_in_fp8_with_the_same_frames(files, tmp_path):
    from flipbook.models.families.ltx2.loading import reference_frames
    from flipbook.models.fp8_files import holds_fp8
    from flipbook.sampling.segments import SegmentSettings

    fp8 = {
        k: v.to(torch.float8_e4m3fn) if k.startswith("model.diffusion_model.") and v.ndim == 2 else v
        for k, v in files[3].items()
    }
    path = tmp_path / "ltx-2-toy-fp8.safetensors"
    save_file(fp8, path, metadata={CONFIG_METADATA_KEY: json.dumps(_configs(diffusers_pipeline(files[2])))})
    kept, upcast = _load(files, path, keep_fp8=True), _load(files, path, keep_fp8=False)
    assert holds_fp8(kept.transformer) and not holds_fp8(upcast.transformer)
    assert kept.transformer.transformer_blocks[0].attn1.to_q.weight.dtype == torch.float8_e4m3fn
    settings = SegmentSettings(num_frames=9, height=64, width=64, num_inference_steps=2, guidance_scale=3.0,
                               max_sequence_length=32, fps=25)  # fmt: skip
    frames = [reference_frames(bundle, "a cat", "", settings, 2) for bundle in (kept, upcast)]
    assert np.array_equal(frames[0], frames[1])


def test_a_timestep_conditioned_decoder_is_read_from_its_keys():
    """LTX-2.0's shipped VAE configuration with the decoder's timestep conditioning when the file has its
    embedder (``last_time_embedder``), without it otherwise: names and shapes, at full size on the meta
    device."""
    from pathlib import Path

    from diffusers import AutoencoderKLLTX2Video
    from diffusers.loaders.single_file_utils import convert_ltx2_vae_to_diffusers

    from flipbook.models.families.ltx2.single_file import DECODER_TIME_NAMES, _configs, _renamed
    from flipbook.models.weights import empty_weights

    for timed in (True, False):
        config = _configs(None, Path("ltx-2-19b-dev.safetensors"), timed=timed)["vae"]
        vae = empty_weights(lambda c=config: AutoencoderKLLTX2Video.from_config(c))
        original = {_vae_key(k): v for k, v in vae.state_dict().items()}
        assert any("last_time_embedder" in k for k in original) == timed
        converted = convert_ltx2_vae_to_diffusers(
            {f"vae.{_renamed(k.removeprefix('vae.'), DECODER_TIME_NAMES)}": v for k, v in original.items()}
        )
        assert {k: tuple(v.shape) for k, v in converted.items()} == {
            k: tuple(v.shape) for k, v in vae.state_dict().items()
        }

"""Single-file SD checkpoints: original-layout writing, offline loading, family / prediction-type detection."""

import json
import pickle
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from flipbook.errors import FlipbookError
from flipbook.models.families.sd.builtin import SD15_SCHEDULER_CONFIG, tiny_components
from flipbook.models.families.sd.convert import (
    OPENCLIP_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    clip_original_key,
    openclip_original_key,
    pipeline_to_original_state_dict,
    save_original_checkpoint,
    unet_original_key,
    vae_original_key,
)
from flipbook.models.families.sd.single_file import (
    detect_family,
    infer_text_encoder_config,
    infer_unet_config,
    infer_vae_config,
    load_single_file,
    resolve_prediction_type,
    shipped_config_dir,
    yaml_prediction_type,
)
from flipbook.models.families.sd.tokenizer import clip_tokenizer

TOL = 1e-6
COMPONENTS = ("unet", "vae", "text_encoder")


def _pipe(components, scheduler) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline(
        **components,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sd1_pipe() -> StableDiffusionPipeline:
    return _pipe(tiny_components(0), PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG))


@pytest.fixture(scope="module")
def sd2_pipe() -> StableDiffusionPipeline:
    """A tiny model in SD 2.x layout: linear transformer projections, per-level heads, an OpenCLIP-style (GELU)
    text encoder, v-prediction."""
    components = tiny_components(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        unet = UNet2DConditionModel(
            sample_size=8,
            block_out_channels=(32, 32, 64, 64),
            layers_per_block=1,
            attention_head_dim=(2, 2, 4, 4),
            use_linear_projection=True,
            norm_num_groups=8,
            cross_attention_dim=48,
        ).eval()
        config = CLIPTextConfig(
            hidden_size=48,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=6,
            hidden_act="gelu",
        )
        text_encoder = CLIPTextModel(config).eval()
    components.update(unet=unet, text_encoder=text_encoder, tokenizer=clip_tokenizer("sd2"))
    scheduler = DDIMScheduler.from_config({**SD15_SCHEDULER_CONFIG, "prediction_type": "v_prediction"})
    return _pipe(components, scheduler)


@pytest.fixture(scope="module")
def sd1_images(sd1_pipe) -> np.ndarray:
    return _images(sd1_pipe)


@pytest.fixture()
def no_network(monkeypatch):
    """HF_HUB_OFFLINE=1, and a tripwire on sockets and on every hub download entry point."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hits: list[str] = []

    def tripwire(name):
        def fail(*args, **kwargs):
            hits.append(name)
            raise AssertionError(f"network code path hit: {name}")

        return fail

    monkeypatch.setattr(socket.socket, "connect", tripwire("socket.connect"))
    monkeypatch.setattr(socket, "create_connection", tripwire("socket.create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", tripwire("socket.getaddrinfo"))
    import huggingface_hub

    hub_functions = {huggingface_hub.hf_hub_download, huggingface_hub.snapshot_download}
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", {})
        for name in ("hf_hub_download", "snapshot_download"):
            if namespace.get(name) in hub_functions:
                monkeypatch.setattr(module, name, tripwire(f"{module.__name__}.{name}"))
    yield hits
    assert not hits


def _images(pipe, seed=3):
    return pipe(
        "a lighthouse at dusk",
        negative_prompt="blurry",
        num_inference_steps=2,
        guidance_scale=7.5,
        height=64,
        width=64,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
    ).images


def _assert_same_weights(expected, got):
    for name in COMPONENTS:
        want, have = getattr(expected, name).state_dict(), getattr(got, name).state_dict()
        assert want.keys() == have.keys(), name
        for key in want:
            assert have[key].dtype == want[key].dtype, key
            assert torch.equal(have[key], want[key]), key


def _write_config_folder(pipe, folder: Path) -> Path:
    pipe.save_config(folder)
    pipe.unet.save_config(folder / "unet")
    pipe.vae.save_config(folder / "vae")
    pipe.scheduler.save_config(folder / "scheduler")
    pipe.text_encoder.config.save_pretrained(folder / "text_encoder")
    return folder


# --------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_sd1_round_trip_is_exact(sd1_pipe, sd1_images, tmp_path, no_network, suffix):
    path = save_original_checkpoint(sd1_pipe, tmp_path / f"tiny{suffix}")
    loaded = load_single_file(path)
    loaded.set_progress_bar_config(disable=True)
    _assert_same_weights(sd1_pipe, loaded)
    assert isinstance(loaded.scheduler, PNDMScheduler)
    assert loaded.scheduler.config.prediction_type == "epsilon"
    assert loaded.safety_checker is None
    assert loaded.tokenizer.pad_token == "<|endoftext|>"
    assert np.abs(_images(loaded) - sd1_images).max() <= TOL


def test_sd2_round_trip_is_exact(sd2_pipe, tmp_path, no_network):
    path = save_original_checkpoint(sd2_pipe, tmp_path / "tiny2.safetensors")
    state = pipeline_to_original_state_dict(sd2_pipe)
    assert OPENCLIP_PREFIX + "transformer.resblocks.0.attn.in_proj_weight" in state
    assert OPENCLIP_PREFIX + "transformer.resblocks.3.ln_1.weight" in state  # the unused last block
    loaded = load_single_file(path)
    loaded.set_progress_bar_config(disable=True)
    _assert_same_weights(sd2_pipe, loaded)
    assert loaded.unet.config.use_linear_projection
    assert isinstance(loaded.scheduler, DDIMScheduler)
    assert loaded.scheduler.config.prediction_type == "v_prediction"
    assert loaded.tokenizer.pad_token == "!"
    assert np.abs(_images(loaded) - _images(sd2_pipe)).max() <= TOL


def test_sizes_come_from_tensor_shapes_and_the_rest_from_the_shipped_config(sd1_pipe, tmp_path, no_network):
    path = save_original_checkpoint(sd1_pipe, tmp_path / "bare.safetensors", embed_config=False)
    loaded = load_single_file(path)
    _assert_same_weights(sd1_pipe, loaded)  # every weight found and of the right shape
    unet, vae, text = loaded.unet.config, loaded.vae.config, loaded.text_encoder.config
    assert list(unet.block_out_channels) == [32, 32, 64, 64] and unet.layers_per_block == 2
    assert unet.cross_attention_dim == 32 and not unet.use_linear_projection
    assert list(unet.down_block_types) == list(sd1_pipe.unet.config.down_block_types)
    assert list(unet.up_block_types) == list(sd1_pipe.unet.config.up_block_types)
    assert list(vae.block_out_channels) == [8, 16, 32, 32] and vae.latent_channels == 4
    assert (text.hidden_size, text.num_hidden_layers, text.intermediate_size) == (32, 5, 37)
    # What no shape reveals comes from the shipped SD 1.5 config (made compatible where it must be).
    assert unet.sample_size == 64 and vae.sample_size == 512 and vae.scaling_factor == 0.18215
    assert unet.attention_head_dim == 8 and unet.norm_num_groups == 32
    assert vae.norm_num_groups == 8  # gcd(32, 8, 16, 32)
    assert text.hidden_act == "quick_gelu"
    assert (
        isinstance(loaded.scheduler, PNDMScheduler) and loaded.scheduler.config.prediction_type == "epsilon"
    )


def test_config_folder_supplies_what_shapes_cannot(sd1_pipe, sd1_images, tmp_path, no_network):
    path = save_original_checkpoint(sd1_pipe, tmp_path / "bare.ckpt", embed_config=False)
    folder = _write_config_folder(sd1_pipe, tmp_path / "configs")
    loaded = load_single_file(path, config=folder)
    loaded.set_progress_bar_config(disable=True)
    _assert_same_weights(sd1_pipe, loaded)
    assert loaded.unet.config.norm_num_groups == 8 and loaded.text_encoder.config.num_attention_heads == 4
    assert np.abs(_images(loaded) - sd1_images).max() <= TOL


@pytest.mark.parametrize("which", ["sd1", "sd2"])
def test_diffusers_own_loader_reads_the_written_layout(sd1_pipe, sd2_pipe, tmp_path, no_network, which):
    """An independent reader (diffusers' from_single_file) gets the same weights from our files."""
    source = sd1_pipe if which == "sd1" else sd2_pipe
    path = save_original_checkpoint(source, tmp_path / "m.safetensors")
    folder = _write_config_folder(source, tmp_path / "configs")
    theirs = StableDiffusionPipeline.from_single_file(
        str(path),
        config=str(folder),
        local_files_only=True,
        tokenizer=source.tokenizer,
        safety_checker=None,
        feature_extractor=None,
    )
    _assert_same_weights(source, theirs)


def test_float16_and_nested_ckpt_with_extra_entries(sd1_pipe, tmp_path):
    state = pipeline_to_original_state_dict(sd1_pipe, dtype=torch.float16)
    path = tmp_path / "half.ckpt"
    torch.save({"state_dict": state, "global_step": 470000, "epoch": 6}, path)
    loaded = load_single_file(path, torch_dtype=torch.float16)
    assert {p.dtype for p in loaded.unet.parameters()} == {torch.float16}
    want = sd1_pipe.vae.state_dict()
    for key, value in loaded.vae.state_dict().items():
        assert torch.equal(value, want[key].half()), key


def test_shipped_configs_are_fixed_points_of_size_inference():
    """A real SD 1.5 / 2.1 checkpoint's shapes (meta tensors, no memory) give back exactly the shipped configs,
    and the key map covers every parameter of the full-size models."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL

    for family, prediction, folder in [("sd1", "epsilon", "sd15"), ("sd2", "v_prediction", "sd2")]:
        root = shipped_config_dir(family, prediction)
        assert root.name == folder
        configs = {c: json.loads(root.joinpath(c, "config.json").read_text()) for c in COMPONENTS}
        with init_empty_weights():
            unet = UNet2DConditionModel.from_config(configs["unet"])
            vae = AutoencoderKL.from_config(configs["vae"])
            text = CLIPTextModel(CLIPTextConfig.from_dict(configs["text_encoder"]))
        up = list(unet.config.up_block_types)
        shapes = {
            UNET_PREFIX + unet_original_key(k, layers_per_block=2, up_block_types=up): v
            for k, v in unet.state_dict().items()
        }
        for key, value in vae.state_dict().items():
            shapes[VAE_PREFIX + vae_original_key(key, num_levels=4)] = value
        for key, value in text.state_dict().items():
            if family == "sd1":
                shapes["cond_stage_model.transformer.text_model." + clip_original_key(key)] = value
            else:
                original, part = openclip_original_key(key)
                fused = (3 * value.shape[0], *value.shape[1:])
                shapes[OPENCLIP_PREFIX + original] = (
                    value if part is None else torch.empty(fused, device="meta")
                )
                if ".resblocks.22." in original:  # the 24th OpenCLIP block, unused by SD 2.x
                    shapes[OPENCLIP_PREFIX + original.replace(".22.", ".23.")] = shapes[
                        OPENCLIP_PREFIX + original
                    ]
        assert detect_family(shapes) == family
        unet_config = infer_unet_config(shapes, configs["unet"])
        assert {k: unet_config[k] for k in configs["unet"]} == configs["unet"]
        assert infer_vae_config(shapes, configs["vae"]) == configs["vae"]
        assert infer_text_encoder_config(shapes, configs["text_encoder"]) == configs["text_encoder"]


# ------------------------------------------------------------------------------------------- family

SD1_KEYS = [
    "model.diffusion_model.input_blocks.0.0.weight",
    "first_stage_model.encoder.conv_in.weight",
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
]
SD2_KEYS = [
    "model.diffusion_model.input_blocks.0.0.weight",
    "first_stage_model.encoder.conv_in.weight",
    "cond_stage_model.model.token_embedding.weight",
    "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight",
]
ATTN2 = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


def test_detect_family_from_keys_and_shapes():
    assert detect_family(SD1_KEYS) == "sd1"
    assert detect_family(iter(SD2_KEYS)) == "sd2"
    assert detect_family({ATTN2: (320, 1024), "model.diffusion_model.out.2.weight": (4, 320, 3, 3)}) == "sd2"
    assert detect_family({ATTN2: torch.Size([320, 768])}) == "sd1"
    assert detect_family({ATTN2: torch.empty(320, 768, device="meta")}) == "sd1"
    # SD 2.x whose text encoder was saved in the transformers layout: the UNet's 1024 context decides.
    assert detect_family({SD1_KEYS[2]: (49408, 1024), ATTN2: (320, 1024)}) == "sd2"


@pytest.mark.parametrize(
    "keys",
    [
        ["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight", *SD1_KEYS[:2]],
        {ATTN2: (640, 2048)},
    ],
)
def test_sdxl_is_not_an_sd_checkpoint(keys):
    """SDXL files are the SDXL family's (tests/test_sdxl_loading.py); the SD loader names what it is not."""
    with pytest.raises(FlipbookError, match="no Stable Diffusion 1.x/2.x|SDXL UNet without") as info:
        detect_family(keys, path="/models/xl.safetensors")
    assert info.value.field == "model" and "/models/xl.safetensors" in str(info.value)


@pytest.mark.parametrize(
    "keys",
    [[], ["foo.weight", "bar.bias"], ["down_blocks.0.resnets.0.conv1.weight"], {ATTN2: (320, 32)}],
)
def test_not_an_sd_checkpoint(keys):
    with pytest.raises(FlipbookError) as info:
        detect_family(keys)
    assert info.value.field == "model"


# ---------------------------------------------------------------------------------- prediction type


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        ('model:\n  params:\n    parameterization: "v"\n    linear_start: 0.00085\n', "v_prediction"),
        ("model:\n  params:\n    parameterization: v  # 768-v\n", "v_prediction"),
        ("model:\n  params:\n    parameterization: 'eps'\n", "epsilon"),
        ("model:\n  params:\n    # parameterization: v\n    linear_start: 0.00085\n", "epsilon"),
        ("model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n", "epsilon"),
    ],
)
def test_yaml_parameterization(tmp_path, yaml, expected):
    checkpoint = tmp_path / "model.safetensors"
    (tmp_path / "model.yaml").write_text(yaml)
    assert yaml_prediction_type(checkpoint) == expected
    assert resolve_prediction_type(checkpoint, "sd2") == expected
    assert resolve_prediction_type(checkpoint, "sd2", "epsilon") == "epsilon"  # the argument wins


def test_prediction_type_defaults_and_precedence(tmp_path):
    checkpoint = tmp_path / "model.ckpt"
    assert yaml_prediction_type(checkpoint) is None
    assert resolve_prediction_type(checkpoint, "sd2") == "v_prediction"
    assert resolve_prediction_type(checkpoint, "sd1") == "epsilon"
    assert resolve_prediction_type(checkpoint, "sd2", recorded="epsilon") == "epsilon"
    (tmp_path / "model.ckpt.yaml").write_text("    parameterization: v\n")
    assert resolve_prediction_type(checkpoint, "sd1", recorded="epsilon") == "v_prediction"
    with pytest.raises(FlipbookError) as info:
        resolve_prediction_type(checkpoint, "sd1", "x0")
    assert info.value.field == "prediction_type"
    (tmp_path / "model.ckpt.yaml").write_text("parameterization: x0\n")
    with pytest.raises(FlipbookError, match="model.ckpt.yaml"):
        yaml_prediction_type(checkpoint)


def test_sd2_without_records_follows_the_yaml(sd2_pipe, tmp_path):
    path = save_original_checkpoint(sd2_pipe, tmp_path / "plain.safetensors", embed_config=False)
    loaded = load_single_file(path)
    assert loaded.scheduler.config.prediction_type == "v_prediction"  # SD 2.x default: 768-v
    assert isinstance(loaded.scheduler, DDIMScheduler) and loaded.unet.config.sample_size == 96
    assert (
        loaded.text_encoder.config.num_hidden_layers == 3 and loaded.text_encoder.config.hidden_act == "gelu"
    )
    (tmp_path / "plain.yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    loaded = load_single_file(path)
    assert loaded.scheduler.config.prediction_type == "epsilon"  # 512-base
    assert isinstance(loaded.scheduler, PNDMScheduler) and loaded.unet.config.sample_size == 64
    assert (
        load_single_file(path, prediction_type="v_prediction").scheduler.config.prediction_type
        == "v_prediction"
    )


# ----------------------------------------------------------------------------------------- bad input


class NotAWeight:
    """A class a pickle would have to import: weights-only loading must refuse it."""


class Exploit:
    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _sd1_state(sd1_pipe):
    return pipeline_to_original_state_dict(sd1_pipe)


def _write_bad(kind: str, tmp_path: Path, sd1_pipe) -> Path:
    from safetensors.torch import save_file

    if kind == "missing":
        return tmp_path / "nope.safetensors"
    if kind == "directory":
        (tmp_path / "folder.ckpt").mkdir()
        return tmp_path / "folder.ckpt"
    if kind == "extension":
        path = tmp_path / "model.bin"
        save_file(_sd1_state(sd1_pipe), str(path))
        return path
    if kind == "empty":
        (tmp_path / "empty.safetensors").write_bytes(b"")
        return tmp_path / "empty.safetensors"
    if kind == "truncated-safetensors":
        data = save_original_checkpoint(sd1_pipe, tmp_path / "good.safetensors").read_bytes()
        (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
        return tmp_path / "cut.safetensors"
    if kind == "truncated-ckpt":
        full = save_original_checkpoint(sd1_pipe, tmp_path / "full.ckpt")
        data = full.read_bytes()
        (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
        return tmp_path / "cut.ckpt"
    if kind == "garbage-ckpt":
        (tmp_path / "noise.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
        return tmp_path / "noise.ckpt"
    if kind == "lfs-pointer":
        path = tmp_path / "pointer.safetensors"
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 4265146304\n")
        return path
    if kind == "pickle-with-objects":
        path = tmp_path / "objects.ckpt"
        torch.save({"state_dict": _sd1_state(sd1_pipe), "callbacks": NotAWeight()}, path)
        return path
    if kind == "not-sd":
        path = tmp_path / "other.safetensors"
        save_file({"transformer.blocks.0.weight": torch.zeros(4, 4)}, str(path))
        return path
    if kind == "sdxl":
        path = tmp_path / "xl.safetensors"
        save_file({"conditioner.embedders.1.model.positional_embedding": torch.zeros(77, 8)}, str(path))
        return path
    if kind == "incomplete":
        state = {k: v for k, v in _sd1_state(sd1_pipe).items() if not k.startswith(VAE_PREFIX + "decoder.")}
        path = tmp_path / "novae.safetensors"
        save_file(state, str(path))
        return path
    if kind == "inpainting":
        state = _sd1_state(sd1_pipe)
        state[UNET_PREFIX + "input_blocks.0.0.weight"] = torch.zeros(32, 9, 3, 3)
        path = tmp_path / "inpaint.safetensors"
        save_file(state, str(path))
        return path
    if kind == "wrong-shape":
        state = _sd1_state(sd1_pipe)
        key = UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
        state[key] = torch.zeros(31, 32)
        path = tmp_path / "bent.safetensors"
        save_file(state, str(path))
        return path
    raise AssertionError(kind)


BAD_INPUTS = {
    "missing": "no such file",
    "directory": "not a file",
    "extension": "unsupported file type",
    "empty": "empty",
    "truncated-safetensors": "corrupt",
    "truncated-ckpt": "corrupt",
    "garbage-ckpt": "corrupt",
    "lfs-pointer": "Git LFS",
    "pickle-with-objects": "NotAWeight",
    "not-sd": "no Stable Diffusion",
    "sdxl": "no Stable Diffusion 1.x/2.x",
    "incomplete": "missing",
    "inpainting": "not supported",
    "wrong-shape": "shape",
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_is_one_clear_error(sd1_pipe, tmp_path, kind):
    path = _write_bad(kind, tmp_path, sd1_pipe)
    with pytest.raises(FlipbookError) as info:
        load_single_file(path)
    error = info.value
    assert error.field == "model"
    assert str(path) in str(error)
    assert ".safetensors" in str(error)  # says what is allowed
    assert BAD_INPUTS[kind] in str(error)
    assert "\n" not in str(error)


def test_ckpt_is_never_unpickled_with_code(tmp_path):
    marker = tmp_path / "pwned"
    exploit = Exploit()
    exploit.marker = marker
    path = tmp_path / "exploit.ckpt"
    with path.open("wb") as handle:
        pickle.dump({"state_dict": exploit}, handle, protocol=2)
    with pytest.raises(FlipbookError):
        load_single_file(path)
    assert not marker.exists()


def test_bad_arguments(sd1_pipe, tmp_path):
    path = save_original_checkpoint(sd1_pipe, tmp_path / "m.safetensors")
    with pytest.raises(FlipbookError) as info:
        load_single_file(path, prediction_type="v")
    assert info.value.field == "prediction_type"
    with pytest.raises(FlipbookError) as info:
        load_single_file(path, config=tmp_path / "no-such-folder")
    assert info.value.field == "config"
    with pytest.raises(FlipbookError) as info:
        load_single_file(path, torch_dtype=torch.int8)
    assert info.value.field == "torch_dtype"
    with pytest.raises(FlipbookError) as info:
        save_original_checkpoint(sd1_pipe, tmp_path / "m.pt")
    assert info.value.field == "output"

"""AnimateDiff motion modules (original single files, by name, strict), motion LoRAs, the v3 adapter, presets.

Every file here is built from tiny random models and written in the real layouts (the original AnimateDiff key
names, diffusers', PEFT's, kohya's), then loaded back; merged weights are checked tensor by tensor.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from diffusers import EulerDiscreteScheduler, LCMScheduler, MotionAdapter, UNetMotionModel
from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers
from safetensors.torch import save_file

from flipbook.errors import FlipbookError
from flipbook.models.families.animatediff.architecture import shipped_motion_config
from flipbook.models.families.animatediff.builtin import BUILTIN_MOTION_MODULES, tiny_motion_adapter
from flipbook.models.families.animatediff.detect import detect_motion_module
from flipbook.models.families.animatediff.files import read_weights, save_original_motion_module
from flipbook.models.families.animatediff.keys import (
    motion_adapter_to_original_state_dict,
    motion_original_keys,
)
from flipbook.models.families.animatediff.loading import load_motion_adapter
from flipbook.models.families.animatediff.loras import merge_adapter_lora, merge_motion_loras
from flipbook.models.families.animatediff.presets import PRESETS, preset_scheduler_config
from flipbook.models.families.sd.builtin import SD15_SCHEDULER_CONFIG
from flipbook.models.families.sd.convert import save_original_checkpoint, unet_original_key
from flipbook.models.families.sd.pipeline import builtin_pipeline
from flipbook.models.weights import seeded
from flipbook.samplers.schedulers import make_scheduler

FIELD = "animatediff.motion_module"
VERSIONS = {
    "v1": {"use_motion_mid_block": False, "motion_max_seq_length": 24},
    "v2": {"use_motion_mid_block": True, "motion_max_seq_length": 32},
    "v3": {"use_motion_mid_block": False, "motion_max_seq_length": 32},
}


def _tiny(version: str, seed: int = 1) -> MotionAdapter:
    """A tiny motion module shaped like AnimateDiff ``version`` (mid block, encoding length).

    Every parameter is random (norms included, which start as ones and zeros), so a swapped pair of names
    can never go unnoticed.
    """
    adapter = seeded(
        seed,
        lambda: MotionAdapter(
            block_out_channels=(32, 32, 64, 64),
            motion_layers_per_block=2,
            motion_norm_num_groups=8,
            motion_num_attention_heads=2,
            **VERSIONS[version],
        ),
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in adapter.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return adapter


@pytest.fixture(scope="module")
def adapters() -> dict[str, MotionAdapter]:
    return {version: _tiny(version) for version in VERSIONS}


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype == torch.float32, key
        assert torch.equal(sa[key], sb[key]), key


def _user_config(adapter: MotionAdapter) -> dict:
    return {k: v for k, v in json.loads(json.dumps(dict(adapter.config))).items() if not k.startswith("_")}


# ------------------------------------------------------------------------------------- key layout


def test_original_key_names_follow_animatediff(adapters: dict[str, MotionAdapter]) -> None:
    keys = motion_adapter_to_original_state_dict(adapters["v2"])
    prefix = "down_blocks.0.motion_modules.0.temporal_transformer."
    for name in (
        "norm.weight",
        "proj_in.weight",
        "transformer_blocks.0.attention_blocks.0.to_q.weight",
        "transformer_blocks.0.attention_blocks.1.to_out.0.bias",
        "transformer_blocks.0.attention_blocks.0.pos_encoder.pe",
        "transformer_blocks.0.attention_blocks.1.pos_encoder.pe",
        "transformer_blocks.0.norms.0.weight",
        "transformer_blocks.0.norms.1.bias",
        "transformer_blocks.0.ff.net.0.proj.weight",
        "transformer_blocks.0.ff_norm.weight",
        "proj_out.bias",
    ):
        assert prefix + name in keys
    assert "mid_block.motion_modules.0.temporal_transformer.proj_in.weight" in keys
    assert not any(".attn1." in key or ".norm1." in key or "pos_embed" in key for key in keys)


def test_renaming_agrees_with_diffusers_own_converter(adapters: dict[str, MotionAdapter]) -> None:
    """diffusers' converter, applied to what flipbook writes, gives the adapter's own weights back."""
    original = motion_adapter_to_original_state_dict(adapters["v2"])
    theirs = convert_animatediff_checkpoint_to_diffusers(original)  # drops the positional encodings
    ours = {k: v for k, v in adapters["v2"].state_dict().items() if not k.endswith("pos_embed.pe")}
    assert set(theirs) == set(ours)
    for key, tensor in ours.items():
        assert torch.equal(theirs[key], tensor), key


# ------------------------------------------------------------------------------ round trips, detection


@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize(
    ("name", "embed"), [("mm.safetensors", False), ("mm.ckpt", False), ("mm_flipbook.safetensors", True)]
)
def test_original_single_file_round_trip(
    adapters: dict[str, MotionAdapter], tmp_path: Path, version: str, name: str, embed: bool
) -> None:
    source = adapters[version]
    path = save_original_motion_module(source, tmp_path / name, embed_config=embed)
    if path.suffix == ".ckpt":  # a plain dict of tensors, as AnimateDiff publishes them
        assert set(torch.load(path, weights_only=True)) == set(motion_adapter_to_original_state_dict(source))
    loaded = load_motion_adapter(str(path))
    _assert_same_weights(source, loaded)
    config = _user_config(loaded)
    assert config["use_motion_mid_block"] == (version == "v2")
    assert config["motion_max_seq_length"] == VERSIONS[version]["motion_max_seq_length"]
    assert config["block_out_channels"] == [32, 32, 64, 64]
    if embed:  # the config travels with flipbook's files: heads and groups exactly as written
        assert config == _user_config(source)
    else:  # foreign files: what no shape shows comes from the shipped AnimateDiff config
        assert config["motion_num_attention_heads"] == 8 and config["motion_norm_num_groups"] == 32


@pytest.mark.parametrize("version", list(VERSIONS))
def test_version_detected_from_keys(adapters: dict[str, MotionAdapter], version: str) -> None:
    original = motion_adapter_to_original_state_dict(adapters[version])
    info = detect_motion_module(original)
    assert (info.version, info.layout, info.levels) == (version, "original", 4)
    assert info.max_seq_length == VERSIONS[version]["motion_max_seq_length"]
    assert info.has_mid_block == (version == "v2")
    diffusers = detect_motion_module(adapters[version].state_dict())
    assert (diffusers.version, diffusers.layout) == (version, "diffusers")


def test_embedded_config_is_used_and_output_matches(
    adapters: dict[str, MotionAdapter], tmp_path: Path
) -> None:
    path = save_original_motion_module(adapters["v3"], tmp_path / "v3.ckpt", embed_config=True)
    loaded = load_motion_adapter(str(path))
    assert _user_config(loaded) == _user_config(adapters["v3"])
    block_a = adapters["v3"].down_blocks[1].motion_modules[0]
    block_b = loaded.down_blocks[1].motion_modules[0]
    x = torch.randn(2 * 3, 32, 4, 4, generator=torch.Generator().manual_seed(0))  # (batch * frames, c, h, w)
    with torch.no_grad():
        assert torch.equal(block_a(x, num_frames=3), block_b(x, num_frames=3))


def test_embedded_config_from_an_older_diffusers_loads(
    adapters: dict[str, MotionAdapter], tmp_path: Path
) -> None:
    config = {**_user_config(adapters["v2"]), "motion_activation_fn": "geglu", "motion_attention_bias": False}
    path = tmp_path / "old.safetensors"
    blob = json.dumps({"motion_adapter": config})
    save_file(
        motion_adapter_to_original_state_dict(adapters["v2"]), str(path), metadata={"flipbook_config": blob}
    )
    loaded = load_motion_adapter(str(path))
    assert _user_config(loaded) == _user_config(adapters["v2"])
    _assert_same_weights(adapters["v2"], loaded)


def test_fp16_file_loads_as_float32(adapters: dict[str, MotionAdapter], tmp_path: Path) -> None:
    path = save_original_motion_module(adapters["v2"], tmp_path / "mm_fp16.safetensors", dtype=torch.float16)
    loaded = load_motion_adapter(str(path))
    for key, tensor in loaded.state_dict().items():
        assert tensor.dtype == torch.float32
        assert torch.equal(tensor, adapters["v2"].state_dict()[key].half().float()), key


def test_diffusers_layout_single_file_loads(adapters: dict[str, MotionAdapter], tmp_path: Path) -> None:
    """AnimateDiff-Lightning's ``*_diffusers.safetensors``: a MotionAdapter state dict in one file."""
    path = tmp_path / "animatediff_lightning_4step_diffusers.safetensors"
    save_file({k: v.contiguous() for k, v in adapters["v2"].state_dict().items()}, str(path))
    loaded = load_motion_adapter(str(path))
    _assert_same_weights(adapters["v2"], loaded)


def test_file_without_positional_encodings_loads_like_animatelcm(
    adapters: dict[str, MotionAdapter], tmp_path: Path
) -> None:
    state = motion_adapter_to_original_state_dict(adapters["v2"])
    path = tmp_path / "AnimateLCM_sd15_t2v.ckpt"
    torch.save({k: v for k, v in state.items() if "pos_encoder" not in k}, path)
    loaded = load_motion_adapter(str(path))
    assert loaded.config.motion_max_seq_length == 64
    ours, source = loaded.state_dict(), adapters["v2"].state_dict()
    for key, tensor in source.items():
        if key.endswith("pos_embed.pe"):  # the same sinusoid, longer
            assert torch.allclose(ours[key][:, :32], tensor, atol=1e-6) and ours[key].shape[1] == 64
        else:
            assert torch.equal(ours[key], tensor), key


def test_state_dict_wrapper_and_extra_entries_are_read(
    adapters: dict[str, MotionAdapter], tmp_path: Path
) -> None:
    """v3_sd15_mm.ckpt-style: tensors under ``state_dict`` next to a plain ``animatediff_config`` entry."""
    path = tmp_path / "v3_sd15_mm.ckpt"
    state = motion_adapter_to_original_state_dict(adapters["v3"])
    torch.save({"state_dict": state, "animatediff_config": {"motion_module_kwargs": {"num_layers": 1}}}, path)
    _assert_same_weights(adapters["v3"], load_motion_adapter(str(path)))


def test_random_sd15_has_the_real_sd15_architecture() -> None:
    assert "random-sd15" in BUILTIN_MOTION_MODULES and "tiny" in BUILTIN_MOTION_MODULES
    with torch.device("meta"):
        reference = MotionAdapter()  # diffusers' default: the SD 1.5 v2 motion module
    config = shipped_motion_config("v2")
    assert {k: v for k, v in _user_config(reference).items() if k in config} == json.loads(json.dumps(config))
    shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert shapes["down_blocks.0.motion_modules.0.proj_in.weight"] == (320, 320)
    assert shapes["mid_block.motion_modules.0.transformer_blocks.0.pos_embed.pe"] == (1, 32, 1280)
    assert sum(v.numel() for v in reference.parameters()) == 453_209_280


def test_random_weights_are_initialised_deterministically() -> None:
    """random-sd15's fast initialiser (meta build, then torch's default initialisers), on tiny shapes."""
    from flipbook.models.families.animatediff.builtin import _initialised, random_sd15_motion_adapter

    assert BUILTIN_MOTION_MODULES["random-sd15"] is random_sd15_motion_adapter
    config = {**_user_config(_tiny("v2")), "motion_max_seq_length": 32}
    first, second = (seeded(5, lambda: _initialised(config)) for _ in range(2))
    _assert_same_weights(first, second)
    assert (
        not seeded(6, lambda: _initialised(config))
        .state_dict()["mid_block.motion_modules.0.proj_in.weight"]
        .equal(first.state_dict()["mid_block.motion_modules.0.proj_in.weight"])
    )
    with torch.device("meta"):
        plain = MotionAdapter(**config)
    assert {k: v.shape for k, v in plain.state_dict().items()} == {
        k: v.shape for k, v in first.state_dict().items()
    }
    reference = MotionAdapter(**config).state_dict()
    for key, tensor in first.state_dict().items():
        if key.endswith("pos_embed.pe") or ".norm" in key:  # fixed encodings; norms start at ones / zeros
            assert torch.equal(tensor, reference[key]), key
        else:
            assert torch.isfinite(tensor).all() and tensor.abs().max() < 1, key


def test_shipped_configs_match_the_animatediff_versions() -> None:
    v1, v2, v3 = (shipped_motion_config(v) for v in ("v1", "v2", "v3"))
    assert (v1["use_motion_mid_block"], v1["motion_max_seq_length"]) == (False, 24)
    assert (v2["use_motion_mid_block"], v2["motion_max_seq_length"]) == (True, 32)
    assert (v3["use_motion_mid_block"], v3["motion_max_seq_length"]) == (False, 32)
    assert v1["block_out_channels"] == [320, 640, 1280, 1280] and v2["motion_num_attention_heads"] == 8


# ------------------------------------------------------------------------------------ found by name


def _a1111(root: Path) -> Path:
    (root / "models/Stable-diffusion").mkdir(parents=True)
    (root / "models/Lora").mkdir(parents=True)
    (root / "extensions/sd-webui-animatediff/model").mkdir(parents=True)
    return root


def _comfy(root: Path) -> Path:
    for folder in (
        "models/checkpoints",
        "models/loras",
        "models/animatediff_models",
        "models/animatediff_motion_lora",
        "custom_nodes/ComfyUI-AnimateDiff-Evolved/models",
    ):
        (root / folder).mkdir(parents=True)
    return root


def test_found_by_name_in_a1111_folders(adapters: dict[str, MotionAdapter], tmp_path: Path) -> None:
    webui = _a1111(tmp_path / "webui")
    save_original_motion_module(
        adapters["v3"], webui / "extensions/sd-webui-animatediff/model/mm_sd15_v3.safetensors"
    )
    save_original_motion_module(
        adapters["v1"], webui / "models/AnimateDiff/mm_sd_v15.ckpt", embed_config=False
    )
    for name in ("mm_sd15_v3", "mm_sd15_v3.safetensors"):
        _assert_same_weights(adapters["v3"], load_motion_adapter(name, models_dir=webui))
    _assert_same_weights(adapters["v1"], load_motion_adapter("mm_sd_v15.ckpt", models_dir=webui / "models"))
    save_original_motion_module(adapters["v2"], webui / "models/AnimateDiff/sub/mm_sd15_v2.safetensors")
    _assert_same_weights(adapters["v2"], load_motion_adapter("sub/mm_sd15_v2.safetensors", models_dir=webui))


def test_found_by_name_in_comfyui_folders(
    adapters: dict[str, MotionAdapter], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    comfy = _comfy(tmp_path / "ComfyUI")
    save_original_motion_module(adapters["v2"], comfy / "models/animatediff_models/mm_sd_v15_v2.ckpt")
    evolved = comfy / "custom_nodes/ComfyUI-AnimateDiff-Evolved/models/v3_sd15_mm.ckpt"
    save_original_motion_module(adapters["v3"], evolved, embed_config=False)
    _assert_same_weights(adapters["v2"], load_motion_adapter("mm_sd_v15_v2", models_dir=comfy))
    monkeypatch.setenv("FLIPBOOK_MODELS_DIR", str(comfy))  # the default models folder
    _assert_same_weights(adapters["v3"], load_motion_adapter("v3_sd15_mm"))


def test_unknown_name_lists_what_is_there(adapters: dict[str, MotionAdapter], tmp_path: Path) -> None:
    comfy = _comfy(tmp_path / "ComfyUI")
    save_original_motion_module(adapters["v2"], comfy / "models/animatediff_models/mm_sd_v15_v2.ckpt")
    with pytest.raises(FlipbookError) as info:
        load_motion_adapter("mm_sd15_v9", models_dir=comfy)
    assert info.value.field == FIELD and info.value.value == "mm_sd15_v9"
    assert "mm_sd_v15_v2" in info.value.allowed


def test_a_name_without_models_dir_says_how_to_find_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLIPBOOK_MODELS_DIR", raising=False)
    with pytest.raises(FlipbookError) as info:
        load_motion_adapter("mm_sd15_v3.safetensors")
    assert info.value.field == FIELD and "models_dir" in str(info.value)


# ---------------------------------------------------------------------------------- wrong files


def _write(path: Path, payload: object) -> Path:
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    elif path.suffix == ".safetensors":
        save_file(payload, str(path))  # type: ignore[arg-type]
    else:
        torch.save(payload, path)
    return path


def _wrong_files(tmp_path: Path, v3: MotionAdapter) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase the error must contain)."""
    original = motion_adapter_to_original_state_dict(v3)
    t = torch.zeros(4, 4)
    files: dict[str, tuple[Path, str]] = {}
    sd = save_original_checkpoint(builtin_pipeline("tiny"), tmp_path / "sd15.safetensors")
    files["sd_checkpoint"] = (sd, "Stable Diffusion checkpoint")
    sparse = {
        "controlnet_cond_embedding.conv_in.weight": t,
        "down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": t,
    }
    files["sparsectrl"] = (
        _write(tmp_path / "v3_sd15_sparsectrl_rgb.ckpt", {"controlnet": sparse}),
        "SparseCtrl",
    )
    two_levels = {k: v for k, v in original.items() if k.startswith(("down_blocks.0.", "up_blocks.0."))}
    files["two_levels"] = (_write(tmp_path / "mm_two.safetensors", two_levels), "SD 1.5 has 4, SDXL 3")
    hotshot = {"down_blocks.0.temporal_attentions.0.transformer_blocks.0.attention_blocks.0.to_q.weight": t}
    files["hotshot"] = (_write(tmp_path / "hsxl_temporal_layers.safetensors", hotshot), "no up-block")
    lora = {
        "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.processor.to_q_lora.down.weight": t
    }
    files["motion_lora"] = (_write(tmp_path / "v2_lora_ZoomIn.ckpt", lora), "motion_loras")
    missing = dict(original)
    del missing["up_blocks.2.motion_modules.1.temporal_transformer.proj_out.weight"]
    files["missing_weight"] = (_write(tmp_path / "missing.safetensors", missing), "proj_out.weight' missing")
    extra = {**original, "down_blocks.0.motion_modules.0.temporal_transformer.extra.weight": t}
    files["extra_weight"] = (_write(tmp_path / "extra.safetensors", extra), "extra.weight' has no place")
    third = {
        **original,
        "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.2.to_q.weight": t,
    }
    files["third_attention"] = (_write(tmp_path / "third.safetensors", third), "has no place")
    bad_shape = dict(original)
    bad_shape["down_blocks.1.motion_modules.0.temporal_transformer.proj_out.weight"] = torch.zeros(32, 16)
    files["shape_mismatch"] = (_write(tmp_path / "shape.safetensors", bad_shape), "has shape (32, 16)")
    unsafe = {"state_dict": original, "args": argparse.Namespace(lr=1)}
    files["unsafe_pickle"] = (_write(tmp_path / "unsafe.ckpt", unsafe), "flipbook will not run")
    files["lfs_pointer"] = (
        _write(tmp_path / "lfs.ckpt", b"version https://git-lfs.github.com/spec/v1\n"),
        "LFS",
    )
    files["empty"] = (_write(tmp_path / "empty.safetensors", b""), "empty")
    good = save_original_motion_module(v3, tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:1000])
    files["truncated"] = (truncated, "corrupt")
    files["not_weights"] = (_write(tmp_path / "notes.safetensors", {"some.tensor": t}), "no AnimateDiff")
    return files


def test_wrong_files_are_rejected_naming_the_field(
    adapters: dict[str, MotionAdapter], tmp_path: Path
) -> None:
    for name, (path, phrase) in _wrong_files(tmp_path, adapters["v3"]).items():
        with pytest.raises(FlipbookError) as info:
            load_motion_adapter(str(path))
        error = info.value
        assert error.field == FIELD, name
        assert error.value == str(path), name
        assert "AnimateDiff motion module" in error.allowed, name
        assert phrase in str(error), (name, str(error))


def test_missing_file_and_wrong_extension(tmp_path: Path) -> None:
    with pytest.raises(FlipbookError, match="no such file"):
        load_motion_adapter(str(tmp_path / "nope.safetensors"))
    weights = tmp_path / "mm.bin"
    weights.write_bytes(b"12345678")
    with pytest.raises(FlipbookError, match="unsupported file type '.bin'") as info:
        load_motion_adapter(str(weights), field="animatediff.motion_module")
    assert info.value.field == FIELD


# ------------------------------------------------------------------------------------ motion LoRAs

LORA_MODULES = (  # diffusers names of the layers the synthetic LoRAs change (AnimateDiff v2 LoRAs: q, k, v, out)
    "down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q",
    "down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_out.0",
    "mid_block.motion_modules.0.transformer_blocks.0.attn2.to_k",
    "up_blocks.3.motion_modules.2.transformer_blocks.0.attn2.to_v",
    "up_blocks.0.motion_modules.1.transformer_blocks.0.attn1.to_out.0",
)


def _lora_weights(model: torch.nn.Module, modules: tuple[str, ...], seed: int, rank: int = 4):
    """module -> (down, up), random, sized for ``model``'s weights."""
    generator = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    result = {}
    for module in modules:
        out_features, in_features = params[f"{module}.weight"].shape
        down = torch.randn(rank, in_features, generator=generator)
        up = torch.randn(out_features, rank, generator=generator)
        result[module] = (down, up)
    return result


def _processor_key(attention_path: str, name: str, part: str) -> str:
    return f"{attention_path}.processor.{name}_lora.{part}.weight"


def _split(module: str) -> tuple[str, str]:
    """``...attn1.to_out.0`` -> (``...attn1``, ``to_out``)."""
    module = module.removesuffix(".0")
    attention, _, name = module.rpartition(".")
    return attention, name


def _lora_file(layers: dict, layout: str, alpha: float | None = None) -> dict[str, torch.Tensor]:
    """The LoRA ``layers`` in one of the layouts found in the wild."""
    state: dict[str, torch.Tensor] = {}
    for module, (down, up) in layers.items():
        attention, name = _split(module)
        if layout == "original":  # v2_lora_*.ckpt, and v3_sd15_adapter.ckpt for image layers
            if ".motion_modules." in attention:
                attention = motion_original_keys(f"{attention}.to_q.weight")[0].removesuffix(".to_q.weight")
            for part, tensor in (("down", down), ("up", up)):
                state[_processor_key(attention, name, part)] = tensor
        elif layout == "diffusers":  # diffusers' conversion script: unet. prefix, processor names
            for part, tensor in (("down", down), ("up", up)):
                state["unet." + _processor_key(attention, name, part)] = tensor
        elif layout == "peft":
            state[f"unet.{module}.lora_A.weight"] = down
            state[f"unet.{module}.lora_B.weight"] = up
            if alpha is not None:
                state[f"unet.{module}.alpha"] = torch.tensor(alpha)
        elif layout == "kohya":
            stem = "lora_unet_" + module.replace(".", "_")
            state[f"{stem}.lora_down.weight"] = down
            state[f"{stem}.lora_up.weight"] = up
            if alpha is not None:
                state[f"{stem}.alpha"] = torch.tensor(alpha)
    return state


def _expected(model: torch.nn.Module, merges: list[tuple[dict, float, float]]) -> dict[str, torch.Tensor]:
    """Each weight plus ``weight * scale * up @ down`` of every LoRA touching it, computed the same way."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for layers, weight, scale in merges:
        for module, (down, up) in layers.items():
            target = state[f"{module}.weight"]
            target += ((up.flatten(1) @ down.flatten(1)) * scale).reshape(target.shape) * weight
    return state


def _assert_state(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[key]), key


@pytest.mark.parametrize(
    ("layout", "suffix", "alpha"),
    [
        ("original", ".ckpt", None),
        ("diffusers", ".safetensors", None),
        ("peft", ".safetensors", None),
        ("peft", ".safetensors", 2.0),
        ("kohya", ".safetensors", 8.0),
    ],
)
def test_motion_lora_merge_is_exact(tmp_path: Path, layout: str, suffix: str, alpha: float | None) -> None:
    adapter = _tiny("v2")
    layers = _lora_weights(adapter, LORA_MODULES, seed=3)
    path = _write(tmp_path / f"v2_lora_ZoomIn{suffix}", _lora_file(layers, layout, alpha))
    expected = _expected(adapter, [(layers, 0.8, 1.0 if alpha is None else alpha / 4)])
    merge_motion_loras(adapter, [(path, 0.8)])
    _assert_state(adapter, expected)
    assert not torch.equal(
        adapter.state_dict()[f"{LORA_MODULES[0]}.weight"],
        _tiny("v2").state_dict()[f"{LORA_MODULES[0]}.weight"],
    )


def test_two_motion_loras_add_up_and_names_are_found(tmp_path: Path) -> None:
    comfy = _comfy(tmp_path / "ComfyUI")
    adapter = _tiny("v2")
    zoom = _lora_weights(adapter, LORA_MODULES[:3], seed=4)
    pan = _lora_weights(adapter, LORA_MODULES[1:], seed=5)
    _write(comfy / "models/animatediff_motion_lora/v2_lora_ZoomIn.ckpt", _lora_file(zoom, "original"))
    _write(comfy / "models/loras/v2_lora_PanLeft.safetensors", _lora_file(pan, "diffusers"))
    expected = _expected(adapter, [(zoom, 0.8, 1.0), (pan, -0.5, 1.0)])
    merge_motion_loras(
        adapter, [("v2_lora_ZoomIn", 0.8), ("v2_lora_PanLeft.safetensors", -0.5)], models_dir=comfy
    )
    _assert_state(adapter, expected)


def test_motion_lora_found_in_a1111_lora_folder(tmp_path: Path) -> None:
    webui = _a1111(tmp_path / "webui")
    adapter = _tiny("v3")
    modules = tuple(m for m in LORA_MODULES if not m.startswith("mid_block"))
    layers = _lora_weights(adapter, modules, seed=6)
    _write(webui / "models/Lora/mm_sd15_v2_lora_TiltUp.safetensors", _lora_file(layers, "original"))
    expected = _expected(adapter, [(layers, 1.0, 1.0)])
    merge_motion_loras(adapter, [("mm_sd15_v2_lora_TiltUp", 1.0)], models_dir=webui)
    _assert_state(adapter, expected)


def test_motion_lora_errors_leave_the_adapter_unchanged(tmp_path: Path) -> None:
    adapter = _tiny("v3")  # no mid block
    before = {k: v.clone() for k, v in adapter.state_dict().items()}
    good = _write(
        tmp_path / "good.ckpt", _lora_file(_lora_weights(adapter, LORA_MODULES[:1], seed=7), "original")
    )
    v2_layers = _lora_weights(_tiny("v2"), LORA_MODULES, seed=8)  # includes a mid-block layer
    cases = {
        "mid_block": (_lora_file(v2_layers, "original"), "maps to no weight"),
        "shape": (
            _lora_file({LORA_MODULES[0]: (torch.zeros(4, 64), torch.zeros(32, 4))}, "peft"),
            "does not fit",
        ),
        "half": (
            {
                k: v
                for k, v in _lora_file(_lora_weights(adapter, LORA_MODULES[:1], seed=9), "peft").items()
                if "lora_B" in k
            },
            "has no down weight",
        ),
        "image_lora": (
            {
                "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
                "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4),
            },
            "image-model LoRA",
        ),
        "loha": ({"unet.down_blocks.0.hada_w1_a": torch.zeros(2, 2)}, "LyCORIS"),
        "full_model": (dict(motion_adapter_to_original_state_dict(adapter)), "not a LoRA weight"),
    }
    for index, (name, (state, phrase)) in enumerate(cases.items()):
        bad = _write(tmp_path / f"{name}.safetensors", state)
        with pytest.raises(FlipbookError) as info:
            merge_motion_loras(adapter, [(good, 1.0), (bad, 1.0)])
        assert info.value.field == "animatediff.motion_loras[1]", name
        assert info.value.value == str(bad), (index, name)
        assert phrase in str(info.value), (name, str(info.value))
        _assert_state(adapter, before)
    with pytest.raises(FlipbookError, match="models_dir") as info:
        merge_motion_loras(adapter, [("v2_lora_ZoomIn", 1.0)], field="animatediff.motion_loras")
    assert info.value.field == "animatediff.motion_loras[0]"


# ------------------------------------------------------------------------------------ v3 adapter LoRA

ADAPTER_MODULES = (  # image layers (the v3 adapter trains the attention projections of the image UNet)
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    "down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k",
    "mid_block.attentions.0.transformer_blocks.0.attn1.to_v",
    "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_out.0",
    "up_blocks.3.attentions.0.transformer_blocks.0.attn1.to_out.0",
)


@pytest.fixture
def motion_unet() -> UNetMotionModel:
    return UNetMotionModel.from_unet2d(builtin_pipeline("tiny").unet, tiny_motion_adapter())


def _attention_output(unet: torch.nn.Module) -> torch.Tensor:
    block = unet.down_blocks[0].attentions[0]
    x = torch.randn(2, 32, 4, 4, generator=torch.Generator().manual_seed(0))
    context = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return block(x, encoder_hidden_states=context).sample


def test_v3_adapter_original_layout_merges_exactly(motion_unet: UNetMotionModel, tmp_path: Path) -> None:
    layers = _lora_weights(motion_unet, ADAPTER_MODULES, seed=10)
    state = _lora_file(layers, "original")
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight" in state
    path = tmp_path / "v3_sd15_adapter.ckpt"
    torch.save({**state, "animatediff_config": "adapter"}, path)
    before = _attention_output(motion_unet)
    expected = _expected(motion_unet, [(layers, 0.75, 1.0)])
    merge_adapter_lora(motion_unet, path, 0.75)
    _assert_state(motion_unet, expected)
    assert not torch.allclose(before, _attention_output(motion_unet))


@pytest.mark.parametrize("layout", ["kohya", "kohya_ldm", "peft"])
def test_v3_adapter_other_layouts_on_a_2d_unet(tmp_path: Path, layout: str) -> None:
    unet = builtin_pipeline("tiny").unet
    layers = _lora_weights(unet, ADAPTER_MODULES, seed=11, rank=2)
    if layout == "kohya_ldm":  # kohya keys in the original SD (LDM) module names
        state = {}
        for module, (down, up) in layers.items():
            ldm = unet_original_key(
                f"{module}.weight", layers_per_block=2, up_block_types=unet.config.up_block_types
            ).removesuffix(".weight")
            stem = "lora_unet_" + ldm.replace(".", "_")
            state.update(
                {
                    f"{stem}.lora_down.weight": down,
                    f"{stem}.lora_up.weight": up,
                    f"{stem}.alpha": torch.tensor(1.0),
                }
            )
        assert "lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q.lora_down.weight" in state
    else:
        state = _lora_file(layers, "peft" if layout == "peft" else "kohya", alpha=1.0)
    path = _write(tmp_path / "mm_sd15_v3_adapter.safetensors", state)
    before = _attention_output(unet)
    expected = _expected(unet, [(layers, 1.0, 0.5)])
    merge_adapter_lora(unet, path, 1.0)
    _assert_state(unet, expected)
    assert not torch.allclose(before, _attention_output(unet))


def test_v3_adapter_found_by_name_and_errors(motion_unet: UNetMotionModel, tmp_path: Path) -> None:
    comfy = _comfy(tmp_path / "ComfyUI")
    layers = _lora_weights(motion_unet, ADAPTER_MODULES[:2], seed=12)
    _write(comfy / "models/loras/v3_sd15_adapter.ckpt", _lora_file(layers, "original"))
    expected = _expected(motion_unet, [(layers, 0.8, 1.0)])
    merge_adapter_lora(motion_unet, "v3_sd15_adapter", 0.8, models_dir=comfy)
    _assert_state(motion_unet, expected)
    motion_lora = _write(
        tmp_path / "v2_lora_ZoomIn.ckpt",
        _lora_file(_lora_weights(motion_unet, LORA_MODULES[:1], seed=13), "original"),
    )
    with pytest.raises(FlipbookError, match="motion_loras") as info:
        merge_adapter_lora(motion_unet, motion_lora, 1.0)
    assert info.value.field == "animatediff.adapter_lora"
    with pytest.raises(FlipbookError) as info:
        merge_adapter_lora(motion_unet, "v3_sd15_adapter_missing", 1.0, models_dir=comfy)
    assert info.value.field == "animatediff.adapter_lora" and "v3_sd15_adapter" in info.value.allowed
    _assert_state(motion_unet, expected)


# ---------------------------------------------------------------------------------------- presets


def test_presets_and_their_scheduler_configs() -> None:
    assert set(PRESETS) == {"none", "lcm", "animatelcm", "lightning"}
    base = dict(SD15_SCHEDULER_CONFIG)
    assert preset_scheduler_config("none", base) == base and PRESETS["none"].sampler is None
    for name in ("lcm", "animatelcm"):
        config = preset_scheduler_config(name, base)
        assert config == {**base, "beta_schedule": "linear", "clip_sample": False}
        scheduler = make_scheduler(PRESETS[name].sampler, config)
        assert isinstance(scheduler, LCMScheduler)
        assert scheduler.config.beta_schedule == "linear" and scheduler.config.clip_sample is False
        assert scheduler.config.beta_start == 0.00085 and scheduler.config.beta_end == 0.012
    lightning = preset_scheduler_config("lightning", base)
    assert lightning == {**base, "beta_schedule": "linear", "timestep_spacing": "trailing"}
    scheduler = make_scheduler(PRESETS["lightning"].sampler, lightning)
    assert isinstance(scheduler, EulerDiscreteScheduler)
    assert scheduler.config.use_karras_sigmas is False
    scheduler.set_timesteps(4)
    assert scheduler.timesteps.tolist() == [999.0, 749.0, 499.0, 249.0]  # trailing spacing
    assert PRESETS["lightning"].steps == (1, 2, 4, 8) and PRESETS["lightning"].cfg == (1.0, 1.0)
    assert PRESETS["lightning"].sampler == "Euler" and PRESETS["none"].scheduler == {}
    assert dict(PRESETS["lcm"].scheduler) == {"beta_schedule": "linear", "clip_sample": False}
    assert base == dict(SD15_SCHEDULER_CONFIG)  # not modified in place


def test_unknown_preset_is_an_error() -> None:
    with pytest.raises(FlipbookError) as info:
        preset_scheduler_config("turbo", SD15_SCHEDULER_CONFIG)
    assert info.value.field == "animatediff.preset" and "lightning" in info.value.allowed


def test_read_weights_is_safe(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.ckpt", {"state_dict": {"a": torch.ones(1)}, "cfg": argparse.Namespace()})
    with pytest.raises(FlipbookError, match="argparse.Namespace"):
        read_weights(path, field="f", value="x", allowed="tensors")

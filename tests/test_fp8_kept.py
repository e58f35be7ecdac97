"""fp8 transformer files kept in fp8 in memory (fp8 storage on): the weights are the file's fp8 tensors (no upcast
copy), each layer dequantised (times its scale for ComfyUI's scaled files) as it computes, so the outputs equal
those of the model upcast at load, through every offload; written here from the tiny Wan parts."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from test_wan_loading_fp8 import _cast, comfy  # noqa: F401  (the fixture writes the fp8 files)

from flipbook.errors import FlipbookError
from flipbook.models.families.wan.loading import load_wan
from flipbook.models.fp8_files import FP8, Fp8Layer, cast_layers, dequantise, holds_fp8
from flipbook.runs.render import render
from flipbook.sampling import video_memory
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")
NAMES = ["wan-toy_fp8_e4m3fn", "wan-toy_fp8_scaled"]


def _load(root, name, keep):
    return load_wan(
        name, field_name="videomodel.model", models_dir=root, device="cpu", text_encoder="umt5-toy",
        vae="wan-toy-vae", tokenizer=str(root / "tokenizer"), keep_fp8=keep,
    )  # fmt: skip


def _denoise(transformer):
    """One transformer call on fixed inputs (a 2-latent-frame, 8x8 clip and 6 prompt tokens)."""
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, transformer.config.in_channels, 2, 8, 8, generator=generator)
    text = torch.randn(1, 6, transformer.config.text_dim, generator=generator)
    with torch.no_grad():
        return transformer(latents, torch.tensor([500.0]), text, return_dict=False)[0]


@pytest.mark.parametrize("name", NAMES)
def test_a_kept_fp8_transformer_computes_what_the_upcast_one_does(comfy, name):  # noqa: F811
    kept, upcast = _load(comfy, name, True), _load(comfy, name, False)
    assert holds_fp8(kept.transformer) and not holds_fp8(upcast.transformer)
    assert torch.equal(_denoise(kept.transformer), _denoise(upcast.transformer))
    # between calls every kept weight is fp8 again
    assert kept.transformer.blocks[0].attn1.to_q.weight.dtype == torch.float8_e4m3fn


@pytest.mark.parametrize("name", NAMES)
def test_kept_weights_are_the_file_s_fp8_tensors_with_no_upcast_copy(comfy, name, monkeypatch):  # noqa: F811
    from flipbook.models.families.wan import single_file

    read = single_file.read_checkpoint
    pointers: set[int] = set()

    def recording(*args, **kwargs):
        state, embedded = read(*args, **kwargs)
        pointers.update(t.data_ptr() for t in state.values())
        return state, embedded

    monkeypatch.setattr(single_file, "read_checkpoint", recording)
    kept = _load(comfy, name, True)
    upcast = _load(comfy, name, False)
    transformer = kept.transformer
    fp8 = {n: p for n, p in transformer.named_parameters() if p.dtype in FP8}
    layer = transformer.blocks[0].attn1.to_q
    assert "blocks.0.attn1.to_q.weight" in fp8 and layer.bias.dtype == torch.float32  # biases as the upcast
    assert isinstance(layer._diffusers_hook.get_hook("layerwise_casting"), Fp8Layer)
    assert transformer.dtype == torch.float32  # diffusers sees the compute dtype, as with layerwise casting
    assert all(p.data_ptr() in pointers for p in fp8.values())  # the very tensors read from the file
    # the 2+-dimensional weights of linear/conv layers stay fp8 (one byte each, four in float32): the
    # transformer's parameters take 3 bytes less per kept weight than the upcast model's
    kept_bytes = video_memory.weights_of(kept).bytes["transformer"]
    upcast_bytes = video_memory.weights_of(upcast).bytes["transformer"]
    assert kept_bytes == upcast_bytes - 3 * sum(p.numel() for p in fp8.values())
    # every layer layerwise casting stores in fp8 (the file has all of them in fp8); norms, Wan's condition
    # embedder (its dtype casts the timestep) and proj_out are dequantised at load, as diffusers skips them
    assert set(fp8) == {f"{name}.weight" for name in cast_layers(transformer)}
    assert not any(n.startswith(("condition_embedder.", "proj_out.", "patch_embedding.")) for n in fp8)


@pytest.mark.parametrize("offload", ["model", "leaf", "block"])
def test_kept_fp8_computes_the_same_under_every_offload_and_fp8_storage(comfy, offload):  # noqa: F811
    expected = _denoise(_load(comfy, NAMES[1], False).transformer)
    kept = _load(comfy, NAMES[1], True)
    switches = video_memory.MemorySwitches(
        offload, vae_tiling=False, attention_backend=None, fp8_storage=True
    )
    video_memory.apply(kept, switches)  # fp8 storage casts nothing more on a kept transformer
    assert torch.equal(_denoise(kept.transformer), expected)


def test_dequantise_applies_a_scale_per_row_or_one_scale():
    weight = torch.tensor([[1.0, -2.0], [0.5, 448.0]]).to(torch.float8_e4m3fn)
    rows = torch.tensor([2.0, 0.25])
    assert torch.equal(dequantise(weight, rows, torch.float32), torch.tensor([[2.0, -4.0], [0.125, 112.0]]))
    assert torch.equal(dequantise(weight, torch.tensor(3.0), torch.bfloat16).float(), weight.float() * 3)
    assert torch.equal(dequantise(weight, None, torch.float16).float(), weight.float())


def _spec(root, out, **videomodel):
    return spec_from_data({
        "model": {"device": "cpu", "models_dir": str(root)},
        "sampling": {"steps": 2, "seed": 5, "cfg": 4.0},
        "animation": {"mode": "videomodel", "max_frames": 9, "width": 64, "height": 64},
        "videomodel": {"model": NAMES[1], "segment_frames": 9, "max_sequence_length": 32,
                       "text_encoder": "umt5-toy", "vae": "wan-toy-vae", "tokenizer": str(root / "tokenizer"),
                       **videomodel},
        "prompts": {"0": "a cat in the city"},
        "output": {"dir": str(out), "name": f"r{len(list(out.iterdir()))}", "formats": ["png"]},
    })  # fmt: skip


def test_a_render_keeps_an_fp8_file_in_fp8_by_default_with_the_same_frames(comfy, tmp_path):  # noqa: F811
    kept = render(_spec(comfy, tmp_path))
    upcast = render(_spec(comfy, tmp_path, fp8_storage=False))
    assert "fp8 storage True" in (kept.run_dir / "render.log").read_text()
    assert "fp8 storage False" in (upcast.run_dir / "render.log").read_text()
    for a, b in zip(kept.frames, upcast.frames, strict=True):
        assert np.array_equal(np.asarray(PIL.Image.open(a)), np.asarray(PIL.Image.open(b)))


def test_fused_projections_are_refused_with_weights_kept_in_fp8(comfy, tmp_path):  # noqa: F811
    spec = _spec(comfy, tmp_path).model_copy(deep=True)
    spec = spec_from_data({**spec.model_dump(mode="json"), "performance": {"fuse_qkv": True}})
    with pytest.raises(FlipbookError) as error:
        render(spec)
    assert error.value.field == "performance.fuse_qkv"


def test_a_converter_that_rebuilds_a_scaled_weight_means_upcast_at_load():
    from flipbook.models.fp8_files import scaled_weights

    state = _cast({"a.weight": torch.randn(4, 4), "a.bias": torch.randn(4)}, scaled=True)
    kept = scaled_weights(state, dict)
    assert kept is not None and set(kept[0]) == {"a.weight", "a.bias"} and set(kept[1]) == {"a.weight"}
    assert scaled_weights(state, lambda s: {k: v.clone() for k, v in s.items()}) is None


def test_a_lora_on_a_kept_fp8_transformer_computes_what_it_does_on_the_upcast_one(tmp_path):
    """PEFT makes a LoRA's layers in the dtype its base layer computes in (``compute_dtype``), not fp8."""
    from diffusers import WanPipeline
    from test_wan_loading_loras import wan_lora
    from test_wan_single_file import _original

    from flipbook.models.families.wan.single_file import transformer_from_state

    tiny = load_wan("tiny-wan", field_name="m", device="cpu").transformer
    config = {k: v for k, v in tiny.config.items() if not k.startswith("_")}
    state = _cast(
        {f"model.diffusion_model.{_original(k)}": v for k, v in tiny.state_dict().items()}, scaled=True
    )
    lora = WanPipeline.lora_state_dict(str(wan_lora(tmp_path / "lora.safetensors")))
    outputs = []
    for keep in (True, False):
        transformer = transformer_from_state(dict(state), config, torch.float32, keep_fp8=keep)
        transformer.load_lora_adapter(dict(lora), adapter_name="a", prefix="transformer")
        assert transformer.blocks[0].attn1.to_q.lora_A["a"].weight.dtype == torch.float32
        outputs.append(_denoise(transformer))
    assert torch.equal(*outputs) and holds_fp8(transformer) is False


_PEAK = """
import json, sys, torch
# everything the load imports is imported before the baseline: only the load is measured
import diffusers.loaders.single_file_utils, diffusers.hooks.layerwise_casting, flipbook.models.fp8_files
from diffusers import WanTransformer3DModel
from flipbook.models.families.wan.single_file import transformer_from_state
from flipbook.models.weights import read_checkpoint

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field))

path, keep, config = sys.argv[1], sys.argv[2] == "1", json.loads(sys.argv[3])
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the peak (VmHWM) starts again from the present size
before = status("VmRSS:")
state, _ = read_checkpoint(path, suffixes=(".safetensors",))
model = transformer_from_state(state, config, torch.float32, keep_fp8=keep)
del state
print(json.dumps([status("VmHWM:") - before, sum(p.numel() * p.element_size() for p in model.parameters())]))
"""


def test_loading_keeps_the_peak_near_the_file_s_fp8_bytes(tmp_path):
    """A 4-block Wan transformer (1024 wide, 76 MB in fp8): loaded kept in fp8, the process's peak memory
    grows by about its parameters' bytes (the fp8 weights and the small float32 rest); upcast at load, by
    several times that (every weight in float32, and the fp8 copy read beside it)."""
    import json
    import os
    import subprocess
    import sys

    from diffusers import WanTransformer3DModel
    from safetensors.torch import save_file

    from flipbook.models.weights import empty_weights

    config = {"patch_size": [1, 2, 2], "num_attention_heads": 8, "attention_head_dim": 128, "in_channels": 16,
              "out_channels": 16, "text_dim": 64, "freq_dim": 32, "ffn_dim": 4096, "num_layers": 4,
              "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6}  # fmt: skip
    shapes = empty_weights(lambda: WanTransformer3DModel(**config)).state_dict()
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, meta in shapes.items():
        value = torch.randn(meta.shape, generator=generator) * 0.02
        state[key] = value.to(FP8[0] if meta.ndim >= 2 and key.endswith(".weight") else torch.bfloat16)
    save_file(state, tmp_path / "big_fp8_e4m3fn.safetensors")
    fp8_bytes = sum(t.numel() for t in state.values() if t.dtype in FP8)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    measured = {}
    for keep in (True, False):
        run = subprocess.run(
            [sys.executable, "-c", _PEAK, str(tmp_path / "big_fp8_e4m3fn.safetensors"), str(int(keep)),
             json.dumps(config)], capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
        measured[keep] = json.loads(run.stdout.strip().splitlines()[-1])
    (kept_peak, kept_bytes), (upcast_peak, upcast_bytes) = measured[True], measured[False]
    assert fp8_bytes > 70 * 10**6 and upcast_bytes > 2.5 * kept_bytes  # (skipped layers upcast in both)
    assert kept_peak < 1.3 * kept_bytes, measured  # no upcast copy of the fp8 weights at any moment
    assert upcast_peak > 2.5 * kept_peak, measured

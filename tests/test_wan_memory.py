"""The memory and speed switches of video diffusion models: what ``auto`` means from the device's memory and
the model's weights, and the switches set on a loaded model: offloading (model, group offload by blocks or
leaf layers) and the attention backend and VAE tiling leave its frames unchanged on the CPU, fp8 storage keeps
them within a stated tolerance."""

from __future__ import annotations

import dataclasses

import numpy as np
import PIL.Image
import pytest
import torch

from flipbook.errors import FlipbookError
from flipbook.models.families.wan.loading import load_wan
from flipbook.runs.render import render
from flipbook.sampling.video_memory import MemorySwitches, Weights, apply, memory_switches, weights_of
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")
GIB = 2**30


WAN_14B = Weights(  # Wan 2.1 14B in bf16: transformer, UMT5-XXL, VAE
    bytes={"transformer": 28 * 10**9, "text_encoder": 11_400_000_000, "vae": 254_000_000},
    params={"transformer": 14 * 10**9, "text_encoder": 5_700_000_000, "vae": 127_000_000},
)
AUTO = {"offload": "auto", "vae_tiling": None, "attention_backend": "auto"}


@pytest.mark.parametrize(
    ("memory", "options", "expected"),
    [
        (80 * GIB, {}, MemorySwitches("none", False, None)),  # all 37 GiB fit in 64
        (40 * GIB, {}, MemorySwitches("model", False, None)),  # the 26 GiB transformer fits in 32
        (24 * GIB, {}, MemorySwitches("model", False, None, fp8_storage=True)),  # 13 GiB in fp8 fits 18
        (24 * GIB, {"fp8_storage": False}, MemorySwitches("block", False, None)),
        (12 * GIB, {}, MemorySwitches("block", True, None)),  # nothing whole fits in 6
        (None, {}, MemorySwitches("none", False, None)),  # the CPU: nothing to offload to
        (None, {"offload": "leaf", "fp8_storage": True}, MemorySwitches("leaf", False, None, fp8_storage=True)),
        (80 * GIB, {"offload": "model", "vae_tiling": True}, MemorySwitches("model", True, None)),
        (16 * GIB, {"offload": "none", "vae_tiling": False, "attention_backend": "flash"},
         MemorySwitches("none", False, "flash")),
    ],
)  # fmt: skip
def test_auto_switches_come_from_the_device_memory_and_the_weights(memory, options, expected):
    assert memory_switches(memory, **(AUTO | options), weights=WAN_14B) == expected


def test_the_weights_are_measured_on_the_bundle():
    weights = weights_of(load_wan("tiny-wan", field_name="m", device="cpu"))
    assert set(weights.bytes) == {"transformer", "text_encoder", "vae"}
    assert weights.bytes["transformer"] == 4 * weights.params["transformer"]  # float32 on the CPU
    assert weights.sizes(True)["transformer"] == weights.params["transformer"]


def test_switches_are_set_on_the_model():
    bundle = apply(load_wan("tiny-wan", field_name="m", device="cpu"), MemorySwitches("none", True, "native"))
    assert bundle.vae.use_tiling


def _spec(tmp_path, name, frames=5, **videomodel):
    return spec_from_data({
        "model": {"device": "cpu"}, "sampling": {"steps": 2, "seed": 5},
        "animation": {"mode": "videomodel", "max_frames": frames, "width": 64, "height": 64},
        "videomodel": {"model": "tiny-wan", "segment_frames": frames, "max_sequence_length": 32, **videomodel},
        "prompts": {"0": "a cat"}, "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    })  # fmt: skip


def test_native_attention_and_tiling_give_the_same_frames(tmp_path):
    plain = render(_spec(tmp_path, "plain"))
    switched = render(_spec(tmp_path, "switched", attention_backend="native", vae_tiling=True))
    for a, b in zip(plain.frames, switched.frames, strict=True):
        assert np.array_equal(np.asarray(PIL.Image.open(a)), np.asarray(PIL.Image.open(b)))


def _frames(result):
    return np.stack([np.asarray(PIL.Image.open(p).convert("RGB")).astype(int) for p in result.frames])


@pytest.mark.parametrize("offload", ["block", "leaf", "model"])
@pytest.mark.parametrize("model", ["tiny-wan", "tiny-ltx"])
def test_offloading_gives_the_same_frames(tmp_path, model, offload):
    """Group offload (blocks or leaf layers) and model offload move weights, never change them: on the CPU
    (onload and offload device the same) the hooks run and the frames are identical to the plain run's."""
    options = {"model": model} | ({"segment_frames": 9} if model == "tiny-ltx" else {})
    frames = 9 if model == "tiny-ltx" else 5
    plain = render(_spec(tmp_path, "plain", frames, **options))
    offloaded = render(_spec(tmp_path, offload, frames, offload=offload, **options))
    assert np.array_equal(_frames(plain), _frames(offloaded))


def test_fp8_storage_stays_close_to_the_plain_run(tmp_path):
    """Weights stored in float8_e4m3fn (3 mantissa bits), each layer computed in float32: on tiny-wan the
    frames differ from the plain run's by at most 1 level of 255 on average, and 99% of the values by at most 8
    (measured: 0.31 on average, 6 at the 99th percentile; a few pixels more)."""
    plain = _frames(render(_spec(tmp_path, "plain")))
    fp8 = _frames(render(_spec(tmp_path, "fp8", fp8_storage=True)))
    difference = np.abs(plain - fp8)
    assert 0 < difference.mean() <= 1 and np.percentile(difference, 99) <= 8


def test_a_backend_the_machine_lacks_is_one_error_naming_the_field(tmp_path):
    with pytest.raises(FlipbookError) as error:
        render(_spec(tmp_path, "sage", attention_backend="sage"))
    assert error.value.field == "videomodel.attention_backend"


def _loader(family: str):
    import importlib

    return importlib.import_module(f"flipbook.models.families.{family}.loading")


def _parameter_devices(bundle) -> set[str]:
    from flipbook.sampling.video_memory import MODULES

    modules = [getattr(bundle, name, None) for name in MODULES]
    return {p.device.type for m in modules if m is not None for p in m.parameters()}


@pytest.mark.parametrize(
    ("family", "model"), [("wan", "tiny-wan"), ("ltx", "tiny-ltx"), ("ltx2", "tiny-ltx2")]
)
@pytest.mark.parametrize("offload", ["model", "block", "leaf"])
def test_offloaded_weights_never_reach_the_device_before_their_hooks(monkeypatch, family, model, offload):
    """A model larger than the GPU must load with offload: its modules stay on the CPU until the offload hooks
    move them. A fake execution device (meta: any tensor moved there loses its values) tells the two apart on
    the CPU: after load every weight is still on the CPU, and after the switches too, each module with its hook
    (group offload's on the CPU as onload device); without offload the modules move to the device."""
    loading = _loader(family)
    monkeypatch.setattr(loading, "pick_device", lambda name: torch.device("meta"))
    load = getattr(loading, f"load_{family}")
    bundle = load(model, field_name="m", device="cpu", dtype="fp32", on_cpu=True)
    assert bundle.device.type == "meta" and _parameter_devices(bundle) == {"cpu"}
    if offload != "model":  # group offload asks torch for the device's module (torch.cuda), which meta lacks
        bundle = dataclasses.replace(bundle, device=torch.device("cpu"))
    apply(bundle, MemorySwitches(offload, False, None))
    assert _parameter_devices(bundle) == {"cpu"}
    hooked = "_hf_hook" if offload == "model" else "_diffusers_hook"
    assert all(
        any(hasattr(m, hooked) for m in module.modules()) for module in (bundle.transformer, bundle.vae)
    )
    placed = apply(load(model, field_name="m", device="cpu", dtype="fp32", on_cpu=True),
                   MemorySwitches("none", False, None))  # fmt: skip
    assert _parameter_devices(placed) == {"meta"}


class _Asked(Exception):
    pass


def test_the_mode_loads_on_the_cpu_when_it_offloads(tmp_path, monkeypatch):
    """The videomodel mode asks for the modules on the CPU whenever something may be offloaded (explicitly, or
    ``auto``, which decides from the loaded weights), and on the device with ``offload = "none"``."""
    from flipbook.models.families.wan import loading

    def load_wan(*args, **kwargs):
        raise _Asked(kwargs["on_cpu"])

    monkeypatch.setattr(loading, "load_wan", load_wan)
    for offload, on_cpu in (("auto", True), ("model", True), ("block", True), ("none", False)):
        with pytest.raises(_Asked) as asked:
            render(_spec(tmp_path, offload, offload=offload))
        assert asked.value.args == (on_cpu,)

"""The memory and speed switches of video diffusion models: what ``auto`` means from the device's memory, and
the switches set on a loaded model (the attention backend, VAE tiling) without changing its frames on the CPU."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from flipbook.errors import FlipbookError
from flipbook.models.families.wan.loading import load_wan
from flipbook.runs.render import render
from flipbook.sampling.video_memory import MemorySwitches, apply, memory_switches
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")
GIB = 2**30


@pytest.mark.parametrize(
    ("memory", "options", "expected"),
    [
        (16 * GIB, {}, MemorySwitches(True, True, None)),
        (80 * GIB, {}, MemorySwitches(False, False, None)),
        (None, {}, MemorySwitches(False, False, None)),  # the CPU: nothing to offload to
        (80 * GIB, {"offload": "model", "vae_tiling": True}, MemorySwitches(True, True, None)),
        (16 * GIB, {"offload": "none", "vae_tiling": False, "attention_backend": "flash"},
         MemorySwitches(False, False, "flash")),
    ],
)  # fmt: skip
def test_auto_switches_come_from_the_device_memory(memory, options, expected):
    values = {"offload": "auto", "vae_tiling": None, "attention_backend": "auto"} | options
    assert memory_switches(memory, **values) == expected


def test_switches_are_set_on_the_model():
    bundle = apply(load_wan("tiny-wan", field_name="m", device="cpu"), MemorySwitches(False, True, "native"))
    assert bundle.vae.use_tiling


def _spec(tmp_path, name, **videomodel):
    return spec_from_data({
        "model": {"device": "cpu"}, "sampling": {"steps": 2, "seed": 5},
        "animation": {"mode": "videomodel", "max_frames": 5, "width": 64, "height": 64},
        "videomodel": {"model": "tiny-wan", "segment_frames": 5, "max_sequence_length": 32, **videomodel},
        "prompts": {"0": "a cat"}, "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    })  # fmt: skip


def test_native_attention_and_tiling_give_the_same_frames(tmp_path):
    plain = render(_spec(tmp_path, "plain"))
    switched = render(_spec(tmp_path, "switched", attention_backend="native", vae_tiling=True))
    for a, b in zip(plain.frames, switched.frames, strict=True):
        assert np.array_equal(np.asarray(PIL.Image.open(a)), np.asarray(PIL.Image.open(b)))


def test_a_backend_the_machine_lacks_is_one_error_naming_the_field(tmp_path):
    with pytest.raises(FlipbookError) as error:
        render(_spec(tmp_path, "sage", attention_backend="sage"))
    assert error.value.field == "videomodel.attention_backend"

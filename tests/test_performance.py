"""The ``[performance]`` switches: typed and validated in the spec, set on a loaded model by one helper, and
giving the same frames as without them (within float rounding) where they are exact; the step caches are
close to exact, skip work, and start afresh with every run."""

from __future__ import annotations

import numpy as np
import pytest

from flipbook.errors import SpecError
from flipbook.models.loading import load_model
from flipbook.models.performance import KernelChoice, Performance, prepare
from flipbook.models.step_cache import deep_blocks
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest
from flipbook.spec.load import spec_from_data
from flipbook.spec.model import PerformanceSection

pytestmark = pytest.mark.usefixtures("one_thread")

EXACT = 1e-4  # the eager frames' float32 rounding: equal switches may reorder sums, no more


def _frames(bundle, steps=2, seeds=(1,), **options) -> np.ndarray:
    requests = [
        FrameRequest(
            "a red fox in snow",
            "blurry",
            seed=seed,
            num_inference_steps=steps,
            guidance_scale=7.0,
            sampler=options.get("sampler", "Euler"),
            width=64,
            height=64,
        )  # fmt: skip
        for seed in seeds
    ]
    return np.stack(SamplingCore(bundle).generate(requests, output_type="np", batch_size=len(seeds)))


def _load(**switches) -> object:
    return load_model("tiny", device="cpu", dtype="fp32", performance=Performance(**switches))


def test_the_spec_section_is_typed_and_its_errors_name_the_field():
    assert spec_from_data({"prompts": {"0": "a"}}).performance == PerformanceSection()
    for field, value in [("compile", "fast"), ("attention_backend", "sage"), ("cache_interval", 1),
                         ("unet_cache", "first-block"), ("channels_last", 1)]:  # fmt: skip
        with pytest.raises(SpecError) as error:
            spec_from_data({"prompts": {"0": "a"}, "performance": {field: value}})
        assert error.value.field == f"performance.{field}"


def test_the_helpers_switches_are_the_spec_sections_fields():
    assert Performance.of(PerformanceSection()) == Performance()
    assert set(PerformanceSection.model_fields) == set(Performance.__dataclass_fields__)


def test_exact_switches_give_the_same_frames(tiny_model):
    eager = _frames(tiny_model, seeds=(1, 2))
    switched = _load(fuse_qkv=True, channels_last=True, attention_backend="math")
    processors = switched.unet.attn_processors.values()
    assert all(isinstance(p, KernelChoice) for p in processors)
    assert all(type(p.processor).__name__ == "FusedAttnProcessor2_0" for p in processors)
    assert switched.unet.conv_in.weight.is_contiguous(memory_format=__import__("torch").channels_last)
    assert np.abs(_frames(switched, seeds=(1, 2)) - eager).max() <= EXACT


def test_deepcache_skips_the_deep_blocks_between_full_steps_and_stays_close(tiny_model):
    exact = _frames(tiny_model, steps=6)
    cached = _load(unet_cache="deepcache", cache_interval=3)
    calls = {"mid": 0, "unet": 0}
    cached.unet.mid_block.resnets[0].register_forward_hook(
        lambda *_: calls.__setitem__("mid", calls["mid"] + 1)
    )
    cached.unet.conv_in.register_forward_hook(lambda *_: calls.__setitem__("unet", calls["unet"] + 1))
    first = _frames(cached, steps=6)
    assert calls == {"unet": 6, "mid": 2}  # steps 0 and 3 in full
    difference = np.abs(first - exact)
    assert 0 < difference.mean() < 0.05
    # a second run starts afresh: the same frames, the same full steps
    assert np.array_equal(_frames(cached, steps=6), first)
    assert calls == {"unet": 12, "mid": 4}


def test_deepcache_batches_equal_one_by_one(tiny_model):
    cached = _load(unet_cache="deepcache", cache_interval=2)
    batch = _frames(cached, steps=4, seeds=(3, 4))
    alone = np.concatenate([_frames(cached, steps=4, seeds=(3,)), _frames(cached, steps=4, seeds=(4,))])
    assert np.abs(batch - alone).max() <= EXACT


def test_deep_blocks_leave_the_shallow_path(tiny_model):
    unet = tiny_model.unet
    blocks = deep_blocks(unet)
    assert unet.down_blocks[0] not in blocks and unet.up_blocks[-1] not in blocks
    assert unet.mid_block in blocks and len(blocks) == len(unet.down_blocks) + len(unet.up_blocks) - 1


def test_everything_off_changes_nothing(tiny_model):
    assert prepare(tiny_model, Performance()) is tiny_model
    assert not any(isinstance(p, KernelChoice) for p in tiny_model.unet.attn_processors.values())


@pytest.mark.slow
def test_compiled_frames_equal_eager(tiny_model):
    eager = _frames(tiny_model)
    compiled = _load(compile="default")
    assert np.abs(_frames(compiled) - eager).max() <= 1e-3  # inductor fuses and reorders float32 sums


@pytest.mark.parametrize(
    "where", [{"model": {"loras": [{"name": "x.safetensors"}]}}, {"prompts": {"0": "a <lora:x:0.5>"}}]
)
def test_fused_projections_with_loras_are_refused(where):
    data = {"prompts": {"0": "a"}, "performance": {"fuse_qkv": True}} | where
    with pytest.raises(SpecError) as error:
        spec_from_data(data)
    assert error.value.field == "performance.fuse_qkv"


def test_the_web_ui_offers_every_switch():
    from flipbook.server.ui import shared_paths

    assert {f"performance.{name}" for name in PerformanceSection.model_fields} <= set(shared_paths())


def test_motion_modules_refuse_fused_projections():
    from flipbook.errors import FlipbookError
    from flipbook.models.families.animatediff.builtin import tiny_motion_adapter
    from flipbook.sampling.animatediff import motion_pipeline

    with pytest.raises(FlipbookError) as error:
        motion_pipeline(_load(fuse_qkv=True), tiny_motion_adapter())
    assert error.value.field == "performance.fuse_qkv"

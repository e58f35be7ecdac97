"""diffusers' step caches on a video diffusion transformer (tiny-wan), through ``[performance]``: each skips
transformer blocks, stays close to the exact frames, and a render gives the same frames every time."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from flipbook.runs.render import render
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")


def _frames(tmp_path, name, **performance) -> np.ndarray:
    spec = spec_from_data({
        "model": {"device": "cpu"}, "sampling": {"steps": 6, "seed": 5, "cfg": 5.0},
        "animation": {"mode": "videomodel", "max_frames": 5, "width": 64, "height": 64},
        "videomodel": {"model": "tiny-wan", "segment_frames": 5, "max_sequence_length": 32},
        "performance": performance,
        "prompts": {"0": "a cat"}, "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    })  # fmt: skip
    result = render(spec)
    return np.stack([np.asarray(PIL.Image.open(f), dtype=np.float64) / 255 for f in result.frames])


@pytest.fixture(scope="module")
def exact(tmp_path_factory):
    return _frames(tmp_path_factory.mktemp("exact"), "exact")


@pytest.mark.parametrize(
    "performance",
    [{"transformer_cache": "first-block", "cache_threshold": 1.0}, {"transformer_cache": "pyramid"},
     {"transformer_cache": "faster-cache"}],
)  # fmt: skip
def test_transformer_caches_stay_close_and_repeat(tmp_path, exact, performance):
    cached = _frames(tmp_path, "a", **performance)
    assert np.abs(cached - exact).mean() < 0.05
    assert np.array_equal(_frames(tmp_path, "b", **performance), cached)


def test_first_block_cache_skips_blocks(tmp_path, exact, monkeypatch):
    from diffusers.models.transformers.transformer_wan import WanTransformerBlock

    calls = []
    original = WanTransformerBlock.forward
    monkeypatch.setattr(
        WanTransformerBlock, "forward", lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
    )
    _frames(tmp_path, "plain")
    plain = len(calls)
    calls.clear()
    cached = _frames(tmp_path, "cached", transformer_cache="first-block", cache_threshold=1.0)
    assert len(calls) < plain
    assert not np.array_equal(cached, exact)

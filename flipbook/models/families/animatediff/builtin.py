"""The built-in motion modules: ``tiny`` and ``random-sd15``, with deterministic random weights."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from diffusers import MotionAdapter

from flipbook.models.families.animatediff.architecture import _computed_encodings, shipped_motion_config
from flipbook.models.weights import seeded


def tiny_motion_adapter(seed: int = 0) -> MotionAdapter:
    """A tiny random MotionAdapter that fits the built-in ``tiny`` image model (channels 32, 32, 64, 64)."""
    return seeded(
        seed,
        lambda: MotionAdapter(
            block_out_channels=(32, 32, 64, 64),
            motion_layers_per_block=2,
            motion_norm_num_groups=8,
            motion_num_attention_heads=2,
            motion_max_seq_length=32,
        ),
    )


def random_sd15_motion_adapter(seed: int = 0) -> MotionAdapter:
    """SD 1.5's motion module architecture (diffusers' default MotionAdapter: v2, with a mid block, 32 frames)
    with deterministic random weights; fits the built-in ``random-sd15`` image model.

    Built on the meta device and then initialised layer by layer with torch's default initialisers (the
    distributions a plain ``MotionAdapter()`` gets), which takes a quarter of the time of a plain build.
    """
    return seeded(seed, lambda: _initialised(shipped_motion_config("v2")))


def _initialised(config: Mapping[str, Any]) -> MotionAdapter:
    with torch.device("meta"):
        adapter = MotionAdapter(**config)
    adapter = adapter.to_empty(device="cpu")
    for name, module in adapter.named_modules():
        if next(module.parameters(recurse=False), None) is None:
            continue
        if not hasattr(module, "reset_parameters"):
            raise RuntimeError(f"no initialiser for {name} ({type(module).__name__})")
        module.reset_parameters()
    encodings = _computed_encodings(adapter)
    if set(encodings) != {name for name, _ in adapter.named_buffers()}:
        raise RuntimeError("MotionAdapter has buffers other than positional encodings")
    adapter.load_state_dict(encodings, strict=False)
    return adapter


BUILTIN_MOTION_MODULES: dict[str, Callable[[int], MotionAdapter]] = {
    "tiny": tiny_motion_adapter,
    "random-sd15": random_sd15_motion_adapter,
}

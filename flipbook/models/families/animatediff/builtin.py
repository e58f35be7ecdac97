"""The built-in motion modules, with deterministic random weights: for SD 1.5 ``tiny`` and ``random-sd15``, for
SDXL ``tiny`` and ``random-sdxl``. ``tiny`` is the one that fits the loaded checkpoint's family's tiny model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from diffusers import MotionAdapter

from flipbook.errors import FlipbookError
from flipbook.models.families.animatediff import FAMILIES, FAMILY, SDXL_FAMILY
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


def tiny_xl_motion_adapter(seed: int = 0) -> MotionAdapter:
    """A tiny random SDXL-layout MotionAdapter (no mid block, as ``mm_sdxl_v10_beta``) that fits the built-in
    ``tiny-xl`` image model (channels 32, 64)."""
    return seeded(
        seed,
        lambda: MotionAdapter(
            block_out_channels=(32, 64),
            motion_layers_per_block=2,
            motion_norm_num_groups=8,
            motion_num_attention_heads=2,
            motion_max_seq_length=32,
            use_motion_mid_block=False,
        ),
    )


def random_sdxl_motion_adapter(seed: int = 0) -> MotionAdapter:
    """AnimateDiff SDXL's motion module architecture (``mm_sdxl_v10_beta``: three levels, no mid block, 32
    frames) with deterministic random weights; fits the built-in ``random-sdxl`` image model."""
    return seeded(seed, lambda: _initialised(shipped_motion_config("sdxl-beta")))


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
"""SD 1.5's built-in motion modules."""
BUILTIN_SDXL_MOTION_MODULES: dict[str, Callable[[int], MotionAdapter]] = {
    "tiny": tiny_xl_motion_adapter,
    "random-sdxl": random_sdxl_motion_adapter,
}
"""SDXL's built-in motion modules."""
_BUILDERS = {FAMILY.name: BUILTIN_MOTION_MODULES, SDXL_FAMILY.name: BUILTIN_SDXL_MOTION_MODULES}
BUILTIN_NAMES = frozenset(name for family in FAMILIES for name in family.builtins)
"""Every built-in motion module's name, whatever family it fits."""


def builtin_motion_adapter(
    name: str, seed: int = 0, image_family: str | None = None, *, field: str = "animatediff.motion_module"
) -> MotionAdapter:
    """The built-in motion module ``name`` for a checkpoint of ``image_family`` (the family a loaded model
    records; None: the first motion family that has ``name``, SD 1.5's). A name the checkpoint's family has no
    built-in of is one FlipbookError naming the ones it has."""
    fitting = [f for f in FAMILIES if image_family is None or image_family in f.attaches_to]
    family = next((f for f in fitting if name in f.builtins), None)
    if family is None:
        allowed = "; ".join(f"{', '.join(f.builtins)} for {f.title}" for f in fitting) or "none"
        raise FlipbookError(
            field, name, f"a built-in motion module that fits the checkpoint: {allowed}",
            detail=f"{name!r} is built for another model family",
        )  # fmt: skip
    return _BUILDERS[family.name][name](seed)

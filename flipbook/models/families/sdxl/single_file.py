"""SDXL single files as A1111 and ComfyUI users keep them, read offline."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
CLIP_G_PREFIX = "conditioner.embedders.1.model."


def is_sdxl(keys_or_shapes: Mapping[str, Any] | Iterable[str]) -> bool:
    """The ``sdxl`` family's detector: both SDXL text encoders' keys (``conditioner.embedders.0`` OpenAI CLIP,
    ``.1`` OpenCLIP bigG) next to a UNet with an added (label) embedding."""
    keys = list(keys_or_shapes)
    return (
        any(key.startswith(CLIP_L_PREFIX) for key in keys)
        and any(key.startswith(CLIP_G_PREFIX) for key in keys)
        and any(key.startswith("model.diffusion_model.label_emb.") for key in keys)
    )

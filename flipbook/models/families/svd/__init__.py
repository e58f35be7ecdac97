"""Stable Video Diffusion (image to video): ``loading.py`` loads its parts (built-ins ``tiny`` and
``random-svd``, diffusers folders, hub ids; single files are refused, as diffusers has no loader for them) and
reads a model's frames per clip from its config alone."""

from __future__ import annotations

from flipbook.models.families.family import Family, Hook

FAMILY = Family(
    name="svd-img2vid",
    title="Stable Video Diffusion",
    capability="video",
    builtins=("tiny", "random-svd"),
    default_size=(1024, 576),
    prediction_type="v_prediction",
    detect_folder=Hook("flipbook.models.families.svd.loading", "is_svd_folder"),
    load=Hook("flipbook.models.families.svd.loading", "load_svd"),
)

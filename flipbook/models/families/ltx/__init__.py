"""LTX-Video (0.9.x; text to video, and conditioning on images at any frames): ``loading.py`` loads its parts
(built-in ``tiny-ltx``, diffusers folders, hub ids, ComfyUI's single files: ``single_file.py``); its sampler
is ``sampling/ltx.py``. The tiny model's toy
T5 tokenizer is ``models/toy_tokenizer.py``'s."""

from __future__ import annotations

from flipbook.models.families.family import Family, Hook

_LOADING = "flipbook.models.families.ltx.loading"

FAMILY = Family(
    name="ltx-video",
    title="LTX-Video",
    capability="video diffusion",
    builtins=("tiny-ltx",),
    default_size=(768, 512),
    prediction_type="flow_prediction",
    frame_step=8,
    side_multiple=32,
    min_steps=2,  # its shifted schedule of one step is empty (diffusers 0.42 fails on it)
    detect_checkpoint=Hook("flipbook.models.families.ltx.single_file", "is_ltx_checkpoint"),
    detect_folder=Hook(_LOADING, "is_ltx_folder"),
    load=Hook(_LOADING, "load_ltx"),
    encoder=Hook("flipbook.sampling.ltx", "encode_prompt"),
    sample=Hook("flipbook.sampling.ltx", "sample_segment"),
    reference=Hook(_LOADING, "reference_frames"),
    conditioning=Hook(_LOADING, "conditioning"),
    lora_problem=Hook(_LOADING, "lora_problem"),
)

"""Wan 2.x (text/image to video, first-last-frame; 2.2's two experts): ``loading.py`` loads its parts
(built-ins ``tiny-wan``, ``tiny-wan-i2v``, ``tiny-wan-flf2v`` and ``random-wan-1.3b``, diffusers folders, hub ids, and the split
single files ComfyUI users keep, found by name in the models folder: ``single_file.py``); the tiny models' toy
UMT5 tokenizer is ``models/toy_tokenizer.py``'s."""

from __future__ import annotations

from flipbook.models.families.family import Family, Hook

FAMILY = Family(
    name="wan",
    title="Wan 2.x",
    capability="video diffusion",
    builtins=("tiny-wan", "tiny-wan-i2v", "tiny-wan-flf2v", "random-wan-1.3b"),
    default_size=(832, 480),
    prediction_type="flow_prediction",
    frame_step=4,
    side_multiple=16,
    detect_checkpoint=Hook("flipbook.models.families.wan.single_file", "is_wan_transformer"),
    detect_folder=Hook("flipbook.models.families.wan.loading", "is_wan_folder"),
    load=Hook("flipbook.models.families.wan.loading", "load_wan"),
    encoder=Hook("flipbook.sampling.wan", "encode_prompt"),
    sample=Hook("flipbook.sampling.wan", "sample_segment"),
    reference=Hook("flipbook.models.families.wan.loading", "reference_frames"),
    conditioning=Hook("flipbook.models.families.wan.loading", "conditioning"),
    lora_problem=Hook("flipbook.models.families.wan.loading", "lora_problem"),
)

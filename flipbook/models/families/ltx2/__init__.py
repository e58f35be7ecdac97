"""LTX-2 (Lightricks' audio-video model; text to video, images at any frames, and the audio it makes with the
video): ``loading.py`` loads its parts (built-in ``tiny-ltx2``, diffusers folders, hub ids, single files:
``single_file.py``); its sampler is
``sampling/ltx2.py``; ``placement.py`` says where in a segment it takes images (pure). The tiny model's toy Gemma
tokenizer is built in ``loading.py``."""

from __future__ import annotations

from flipbook.models.families.family import Family, Hook

_LOADING = "flipbook.models.families.ltx2.loading"

FAMILY = Family(
    name="ltx-2",
    title="LTX-2",
    capability="video diffusion",
    builtins=("tiny-ltx2",),
    default_size=(768, 512),
    prediction_type="flow_prediction",
    frame_step=8,
    side_multiple=32,
    min_steps=2,
    detect_checkpoint=Hook("flipbook.models.families.ltx2.single_file", "is_ltx2_checkpoint"),
    detect_folder=Hook(_LOADING, "is_ltx2_folder"),
    load=Hook(_LOADING, "load_ltx2"),
    encoder=Hook("flipbook.sampling.ltx2", "encode_prompt"),
    sample=Hook("flipbook.sampling.ltx2", "sample_segment"),
    sample_with_audio=Hook("flipbook.sampling.ltx2", "sample_with_audio"),
    known_problem=Hook("flipbook.models.families.ltx2.placement", "known_problem"),
    reference=Hook(_LOADING, "reference_frames"),
    conditioning=Hook(_LOADING, "conditioning"),
)
"""LTX-2 models: the built-in ``tiny-ltx2`` (random weights, the real structures at toy size, its toy Gemma
tokenizer built in code), or a diffusers folder / hub id of ``LTX2Pipeline``, ``LTX2ImageToVideoPipeline`` or
``LTX2ConditionPipeline`` (one model serves text to video, a start image and images at latent frames). The
audio it makes comes with the frames from ``sampling/ltx2.py``'s ``sample_with_audio``; the videomodel mode
makes it the video's soundtrack. Images go where LTX-2 can place them (``placement.py``), checked before any
model loads. LTX-2's single file (Lightricks' layout: transformer, text connectors, video and audio VAEs,
vocoder) loads with its Gemma 3 text encoder named beside it (``single_file.py``), told from its keys."""

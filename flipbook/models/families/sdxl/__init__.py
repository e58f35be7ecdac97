"""Stable Diffusion XL and its descendants (Pony, Illustrious, NoobAI, Turbo/Lightning/Hyper fine-tunes).

SDXL conditions a three-level UNet on two text encoders (OpenAI CLIP ViT-L and OpenCLIP ViT-bigG, their
penultimate hidden states side by side) plus the second's pooled output and the image's size numbers
(``text_time`` added embedding); it was trained at 1024x1024 (and buckets of about as many pixels):

- ``pipeline.py``: a :class:`~flipbook.models.source.ModelSource` to a diffusers ``StableDiffusionXLPipeline``
  (built-ins, diffusers folders and hub ids, single files), separate VAEs, the folder detector;
- ``single_file.py`` + ``convert.py``: A1111/ComfyUI single files (``conditioner.embedders.0/1``), offline,
  detected from their keys, and the writer of that layout;
- ``builtin.py``: ``tiny-xl`` and ``random-sdxl``, SDXL's tokenisers (offline);
- ``encoder.py``: the prompt encoder the sampling loops get (both encoders, A1111 weights and chunks, pooled
  embeddings and size conditioning);
- ``buckets.py``: SDXL's training resolutions, for the nearest-bucket warning;
- ``refiner.py``: the ``sdxl-refiner`` family (SDXL's refiner, a second denoiser for the end of an SDXL model's
  schedule: ``tiny-xl-refiner``, single files, folders, hub ids, its one-encoder prompt encoder with the
  aesthetic score).
"""

from __future__ import annotations

from flipbook.models.families.family import Family, Hook

_PACKAGE = "flipbook.models.families.sdxl"

FAMILY = Family(
    name="sdxl",
    title="Stable Diffusion XL",
    capability="image",
    builtins=("tiny-xl", "random-sdxl"),
    default_size=(1024, 1024),
    builtin_sizes=(("tiny-xl", (64, 64)),),  # a test model: fast at 64x64 on a CPU (builtin.py)
    prediction_type="epsilon",
    detect_checkpoint=Hook(f"{_PACKAGE}.single_file", "is_sdxl"),
    checkpoint_problem=Hook(f"{_PACKAGE}.single_file", "checkpoint_problem"),
    detect_folder=Hook(f"{_PACKAGE}.pipeline", "is_sdxl_folder"),
    load=Hook(f"{_PACKAGE}.pipeline", "load"),
    load_vae=Hook(f"{_PACKAGE}.pipeline", "load_vae"),
    encoder=Hook(f"{_PACKAGE}.encoder", "prompt_encoder"),
    size_note=Hook(f"{_PACKAGE}.buckets", "size_note"),
)

REFINER = Family(
    name="sdxl-refiner",
    title="Stable Diffusion XL refiner",
    capability="refiner",
    builtins=("tiny-xl-refiner",),
    attaches_to=(FAMILY.name,),
    prediction_type="epsilon",
    detect_checkpoint=Hook(f"{_PACKAGE}.single_file", "is_sdxl_refiner"),
    detect_folder=Hook(f"{_PACKAGE}.refiner", "is_refiner_folder"),
    load=Hook(f"{_PACKAGE}.refiner", "load"),
    encoder=Hook(f"{_PACKAGE}.refiner", "prompt_encoder"),
)

FAMILIES = (FAMILY, REFINER)

"""Stable Diffusion 1.x and 2.x: one architecture, two families, because their text encoders differ.

``sd1`` conditions on OpenAI's CLIP ViT-L/14 (768 wide, trained at 512x512, epsilon prediction); ``sd2`` on
OpenCLIP ViT-H/14 (1024 wide; the 768-v models predict v at 768x768, the 512 "base" ones epsilon). Both
come from the same code, and a flipbook-written checkpoint records which one it is:

- ``pipeline.py``: a :class:`~flipbook.models.source.ModelSource` to a diffusers ``StableDiffusionPipeline``
  (built-ins, diffusers folders and hub ids, single files), separate VAEs, the folder detectors;
- ``single_file.py`` + ``configs/`` + ``convert.py``: original-layout single files, offline (detection from
  the keys, sizes from the tensor shapes, the shipped diffusers configs, the key map both ways);
- ``builtin.py``: ``tiny``, ``random-sd15`` and the trained ``shapes``; ``tokenizer.py`` + ``data/``: CLIP's tokenisers, offline;
- ``encoder.py``: the prompt encoder the sampling loops get (one CLIP, A1111 weights, 75-token chunks).
"""

from __future__ import annotations

from flipbook.models.families.family import Family, Hook

_PACKAGE = "flipbook.models.families.sd"


def _family(
    name: str, title: str, size: tuple[int, int], prediction: str, builtins=(), builtin_sizes=()
) -> Family:
    return Family(
        name=name,
        title=title,
        capability="image",
        builtins=builtins,
        default_size=size,
        builtin_sizes=builtin_sizes,
        prediction_type=prediction,
        detect_checkpoint=Hook(f"{_PACKAGE}.single_file", f"is_{name}"),
        checkpoint_problem=Hook(f"{_PACKAGE}.single_file", "checkpoint_problem"),
        detect_folder=Hook(f"{_PACKAGE}.pipeline", f"is_{name}_folder"),
        load=Hook(f"{_PACKAGE}.pipeline", "load"),
        load_vae=Hook(f"{_PACKAGE}.pipeline", "load_vae"),
        encoder=Hook(f"{_PACKAGE}.encoder", "prompt_encoder"),
    )


SD1 = _family(
    "sd1",
    "Stable Diffusion 1.x",
    (512, 512),
    "epsilon",
    builtins=("tiny", "random-sd15", "shapes"),
    # test and demo models: fast at 64x64 on a CPU (builtin.py)
    builtin_sizes=(("tiny", (64, 64)), ("shapes", (64, 64))),
)
SD2 = _family("sd2", "Stable Diffusion 2.x", (768, 768), "v_prediction")
FAMILIES = (SD1, SD2)

"""Model families, registered in one place.

A family is a package under ``models/families/`` whose ``__init__`` declares a :class:`Family`: pure data and
:class:`Hook` s (a module and a function name, imported on first call), so this registry, and the spec that
reads built-in names from it, never import torch. What a family declares:

- ``capability``: what its models do, which decides the modes it serves and the spec field that names them
  (:data:`REFERENCE_KINDS`): ``image`` families (checkpoints: every mode built on txt2img/img2img/inpaint),
  ``video`` (image-to-video models: the ``svd`` mode), ``video diffusion`` (text/image-to-video transformers: the
  ``videomodel`` mode), ``motion`` (motion modules that attach to the image
  families named in ``attaches_to``: the ``animatediff`` mode), ``refiner`` (a second denoiser that takes over
  the last part of an image family's schedule, for the families in ``attaches_to``: SDXL's refiner);
- ``builtins``: names of models built in code (their builders are the package's, imported lazily);
- ``default_size`` (width, height it was trained at), ``builtin_sizes`` (built-ins made for another size: the
  CPU-sized test models) and ``prediction_type`` (its samplers' default);
- for video diffusion families, ``frame_step`` (a clip has ``k * frame_step + 1`` frames: the VAE's temporal
  factor) and ``side_multiple`` (width and height are multiples of it: the VAE's spatial factor times the
  transformer's patch size) and ``min_steps`` (the fewest sampling steps its scheduler takes), checked before any
  model loads;
- hooks: ``detect_checkpoint(state) -> bool`` (a single file's keys, or keys with tensors/shapes),
  ``checkpoint_problem(state) -> str | None`` (why a file no family claims is recognisably unusable),
  ``detect_folder(model_index, unet_config) -> bool`` (a diffusers folder or hub id's configs), and for image
  families ``load(source, prediction_type=, seed=)`` (a :class:`~flipbook.models.source.ModelSource` to a
  diffusers pipeline), ``load_vae(vae, folders)`` and ``encoder(bundle, clip_skip)`` (the prompt encoder the
  sampling loops call: :class:`~flipbook.sampling.conditioning.PromptConditioner`). Video diffusion families
  declare ``load(ref, field_name=, models_dir=, device=, dtype=, seed=, text_encoder=, vae=, tokenizer=,
  image_encoder=)`` (a bundle with ``conditioning``, ``scale_temporal``, ``side_multiple``, ``text_length``),
  ``encoder(bundle,
  text, max_sequence_length)`` (a prompt's states, as the family's sampler takes them), ``sample(bundle,
  embeds, negative, settings, *, generator, known, events, frames)`` (one segment's frames conditioned on the
  images ``known`` at positions: frames x H x W x 3 in [0, 1]), for families whose models make audio with the
  video ``sample_with_audio`` (the same arguments; the frames and the audio, channels x samples at the
  bundle's ``audio_rate``: the mode keeps it as the video's soundtrack), where the family's models take
  images at some positions of a segment only ``known_problem(positions, frame_step) -> (misplaced, allowed)
  | None`` (pure: the segment positions they cannot be conditioned on and what they can; the mode checks
  every segment before any model loads), and ``conditioning(ref, models_dir, field_name)`` ("none": text only, "optional": images at chosen frames, "required": a start image, from
  configs alone; None where that needs a load), and ``reference(bundle, prompt, negative, settings, seed)``
  (the same text-to-video segment made by diffusers' own pipeline: benchmarks compare with it), and
  ``lora_problem(path) -> str | None`` (why a LoRA file is not one for the family's transformer, read before
  any model loads; a loaded bundle's ``loras`` switches them). Optionally
  ``size_note(width, height) -> str | None``, a warning for an image size the family's models render badly
  (SDXL: far from its training buckets), which the sampling core logs once per size.

:func:`flipbook.models.loading.load_model` finds a model's family through :func:`detect_checkpoint`,
:func:`detect_folder` and :func:`builtin_family`, and calls only its hooks. Adding a family means writing its
package and adding it to :data:`FAMILIES`; nothing outside the package names it (a test checks that no family
name appears outside its package, so family names differ from mode names).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flipbook.errors import FlipbookError
from flipbook.models.families.family import REFERENCE_KINDS, Capability, Family, Hook

__all__ = [
    "FAMILIES",
    "REFERENCE_KINDS",
    "Capability",
    "Family",
    "Hook",
    "builtin_family",
    "builtin_names",
    "checkpoint_problem",
    "detect_checkpoint",
    "detect_folder",
    "get_family",
    "with_capability",
]


def _registry(families: Iterable[Family]) -> dict[str, Family]:
    registered: dict[str, Family] = {}
    for family in families:
        if family.name in registered:
            raise ValueError(f"model family {family.name!r} is registered twice")
        registered[family.name] = family
    return registered


def _declared() -> tuple[Family, ...]:
    from flipbook.models.families import animatediff, ltx, ltx2, sd, sdxl, svd, wan

    return (
        *sd.FAMILIES,
        *sdxl.FAMILIES,
        svd.FAMILY,
        *animatediff.FAMILIES,
        wan.FAMILY,
        ltx.FAMILY,
        ltx2.FAMILY,
    )


FAMILIES: Mapping[str, Family] = _registry(_declared())
"""Every model family by name, in the order detection asks them."""


def get_family(name: str) -> Family:
    """The family called ``name`` (as a loaded model records it)."""
    if name not in FAMILIES:
        raise FlipbookError("family", name, f"one of: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def with_capability(capability: Capability) -> tuple[Family, ...]:
    """The families whose models have ``capability``, in registration order."""
    return tuple(family for family in FAMILIES.values() if family.capability == capability)


def builtin_names(reference_kind: str) -> tuple[str, ...] | None:
    """Built-in model names for a spec field of ``reference_kind`` (every family of that kind, in order), or
    None when no family serves that kind (its names are not models of a family: ControlNets, depth models)."""
    served = [family for family in FAMILIES.values() if family.reference_kind == reference_kind]
    if not served:
        return None
    return tuple(dict.fromkeys(name for family in served for name in family.builtins))


def builtin_family(name: str, capability: Capability) -> Family | None:
    """The family of ``capability`` that builds the built-in model ``name``, or None."""
    return next((family for family in with_capability(capability) if name in family.builtins), None)


def detect_checkpoint(state: Mapping[str, Any]) -> Family | None:
    """The first family whose checkpoint detector claims a single file's keys (or keys with tensors)."""
    return next(
        (f for f in FAMILIES.values() if f.detect_checkpoint is not None and f.detect_checkpoint(state)), None
    )


def checkpoint_problem(state: Mapping[str, Any]) -> str | None:
    """Why a file no family claims is recognisably unusable (the first family that recognises it says)."""
    for family in FAMILIES.values():
        if family.checkpoint_problem is not None and (problem := family.checkpoint_problem(state)):
            return problem
    return None


def detect_folder(model_index: Mapping[str, Any], unet_config: Mapping[str, Any]) -> Family | None:
    """The first family whose folder detector claims a diffusers folder (its ``model_index.json`` and
    ``unet/config.json``; the latter empty when the folder has none)."""
    return next(
        (
            family
            for family in FAMILIES.values()
            if family.detect_folder is not None and family.detect_folder(model_index, unet_config)
        ),
        None,
    )

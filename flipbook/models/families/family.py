"""The descriptor a model family's package declares (see :mod:`flipbook.models.families`). Pure: no torch."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

Capability = Literal["image", "video", "motion", "video diffusion", "refiner"]
REFERENCE_KINDS: dict[str, str] = {
    "image": "checkpoint",
    "video": "video model",
    "motion": "motion module",
    "video diffusion": "video diffusion model",
    "refiner": "refiner",
}
"""Capability -> the kind of :class:`~flipbook.spec.references.ModelReference` whose names its models are."""


@dataclass(frozen=True)
class Hook:
    """A function of a family's package, named by module and attribute and imported when first called."""

    module: str
    name: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.name)(*args, **kwargs)


@dataclass(frozen=True)
class Family:
    """What flipbook knows about one model family (see the module docstring for each field)."""

    name: str
    title: str
    capability: Capability
    builtins: tuple[str, ...] = ()
    default_size: tuple[int, int] | None = None
    builtin_sizes: tuple[tuple[str, tuple[int, int]], ...] = ()
    prediction_type: str | None = None
    frame_step: int | None = None
    side_multiple: int | None = None
    min_steps: int = 1
    attaches_to: tuple[str, ...] = ()
    detect_checkpoint: Hook | None = None
    checkpoint_problem: Hook | None = None
    detect_folder: Hook | None = None
    load: Hook | None = None
    load_vae: Hook | None = None
    encoder: Hook | None = None
    size_note: Hook | None = None
    sample: Hook | None = None
    sample_with_audio: Hook | None = None
    known_problem: Hook | None = None
    conditioning: Hook | None = None
    reference: Hook | None = None
    lora_problem: Hook | None = None

    def size_of(self, name: str) -> tuple[int, int] | None:
        """The size (width, height) a model of this family is made for: a built-in's own (``builtin_sizes``:
        the CPU-sized test models), else ``default_size``."""
        return dict(self.builtin_sizes).get(name, self.default_size)

    @property
    def reference_kind(self) -> str:
        """The spec's name for models of this family ("checkpoint", "video model", "motion module")."""
        return REFERENCE_KINDS[self.capability]

"""One sampling core per checkpoint, loaded when a frame first needs it.

A checkpoint schedule (``model.name = '0:("a.safetensors"), 60:("b.safetensors")'``) switches models
mid-animation. Only one model is held at a time: switching releases the previous one before loading the
next, so a schedule never needs memory for two models.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from flipbook.events import Events
from flipbook.models.controlnet import ControlNets
from flipbook.models.extra_networks import ExtraNetworks
from flipbook.models.loading import REFINER_FIELD, file_hash, load_model
from flipbook.models.performance import Performance
from flipbook.sampling.core import SamplingCore
from flipbook.spec.model import ModelSection


class Cores:
    """``cores[checkpoint]`` gives the :class:`SamplingCore` for that checkpoint, loading it on first use."""

    def __init__(
        self,
        section: ModelSection,
        events: Events,
        networks: ExtraNetworks,
        prompts: list[str],
        performance: Performance | None = None,
        loader: Callable[..., Any] | None = None,
    ) -> None:
        self._section = section
        self._performance = performance
        self._loader = loader  # None: load_model; or a cache in front of it (a farm actor keeps its models)
        self._events = events
        self._networks = networks
        self._prompts = prompts
        self._name: str | None = None
        self._core: SamplingCore | None = None
        self.loads = 0
        self._hashes: dict[str, str | None] = {}  # checkpoint -> A1111's model hash
        self._refiner_hash: tuple[str | None] | None = None  # (the refiner's hash,) once known
        # ControlNets load on first use and stay for the whole run, across checkpoint switches
        self.controlnets = ControlNets(section.models_dir)

    def __getitem__(self, checkpoint: str) -> SamplingCore:
        if checkpoint != self._name or self._core is None:
            self.release()
            self._core = self._load(checkpoint)
            self._name = checkpoint
        return self._core

    def _load(self, checkpoint: str) -> SamplingCore:
        m = self._section
        model = (self._loader or load_model)(
            checkpoint, models_dir=m.models_dir, device=m.device, dtype=m.dtype, vae=m.vae,
            prediction_type=m.prediction_type, zero_terminal_snr=m.zero_terminal_snr, vae_slicing=m.vae_slicing,
            vae_tiling=m.vae_tiling, performance=self._performance, refiner=m.refiner,
        )  # fmt: skip
        self._networks.load_embeddings_for(model.pipe, self._prompts)
        self.loads += 1
        self._hashes[checkpoint] = model.hash
        self._refiner_hash = (model.refiner.hash if model.refiner is not None else None,)
        return SamplingCore(model, self._events, controlnets=self.controlnets)

    def hash_of(self, checkpoint: str) -> str | None:
        """A1111's model hash of ``checkpoint``: the loaded model's, else its file's, read without loading it
        (frames made from stored parts, as the variations a resume or a farm's last task reuses, still name
        their model's hash)."""
        if checkpoint not in self._hashes:
            self._hashes[checkpoint] = file_hash(checkpoint, self._section.models_dir)
        return self._hashes[checkpoint]

    @property
    def refiner_hash(self) -> str | None:
        """The refiner's (``model.refiner``) model hash, as :meth:`hash_of`; None without a refiner."""
        if self._refiner_hash is None:
            refiner, folder = self._section.refiner, self._section.models_dir
            found = file_hash(refiner, folder, capability="refiner", field=REFINER_FIELD) if refiner else None
            self._refiner_hash = (found,)
        return self._refiner_hash[0]

    def release(self) -> None:
        """Free the loaded model (a mode that goes on with another model, as svd after its txt2img frame 0,
        calls this so the two never share the device's memory); the next ``cores[...]`` loads again."""
        if self._core is None:
            return
        device = self._core.model.device
        self._core = None
        self._name = None
        gc.collect()
        if device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

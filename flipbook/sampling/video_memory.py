"""Memory and speed switches for video diffusion models: offloading (whole models, or diffusers' group offload of
blocks or leaf layers), layerwise fp8 storage, VAE tiling, the attention backend.

:func:`memory_switches` (pure) says what ``auto`` means on a device, from its memory and the model's weights
(:class:`Weights`, measured on the loaded bundle). On a GPU with ``total`` bytes, ``budget = total -
max(HEADROOM_BYTES, HEADROOM_SHARE * total)`` is what the weights may take (the rest is for activations, the
VAE's decode and CUDA's own):

1. every module's weights together fit the budget: nothing is offloaded;
2. the largest module fits: ``model`` offload (each whole module on the GPU only while it runs);
3. the transformer stored in fp8 fits (``fp8_storage`` left to ``auto``): ``model`` offload and fp8 storage;
4. else ``block``: diffusers' group offload, one transformer block on the GPU at a time, the next one copied
   on a CUDA stream while the current one runs.

``fp8_storage`` left to ``auto`` is on only in case 3 (it changes the pictures slightly; an explicit offload
keeps it off). VAE tiling defaults to on for GPUs under :data:`SMALL_DEVICE_BYTES`. Not a GPU (the CPU):
``auto`` is nothing; an explicit switch is still applied (the CPU tests run every one).

:func:`apply` sets them on a loaded bundle (its modules by the pipelines' names, loaded on the CPU with the
loaders' ``on_cpu`` where something is offloaded: the hooks below need the modules there, and a module moved
to the GPU first would not fit if it is larger; ``none`` moves them to the device): ``model`` chains accelerate's
``cpu_offload_with_hook`` through every module in ``MODULES`` order, as diffusers' ``enable_model_cpu_offload``
does; ``block`` and ``leaf`` are diffusers' ``enable_group_offload`` on the
transformer(s) (``block_level`` one block per group, or ``leaf_level``; streams on CUDA) and
``apply_group_offloading`` at leaf level on the other modules (encoders, LTX-2's connectors, the VAEs, the
vocoder); fp8 storage is ``enable_layerwise_casting`` (weights stored as ``float8_e4m3fn``, each layer computed
in the model's dtype; norms and embeddings kept as the model's ``_skip_layerwise_casting_patterns`` say) on the
transformer(s) and LTX-2's connectors (``FP8_MODULES``), except a transformer loaded from an fp8 file with its
weights kept in fp8 (:mod:`flipbook.models.fp8_files`: the file's fp8 weights stay as stored, dequantised per
layer with their scales; nothing else is cast, and the loaders ask for it unless ``fp8_storage`` is false); ``vae.enable_tiling``;
``set_attention_backend`` on the same modules (diffusers' attention dispatcher: flash, sage, flex, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

SMALL_DEVICE_BYTES = 24 * 2**30
HEADROOM_BYTES = 6 * 2**30
HEADROOM_SHARE = 0.2
MODULES = (
    "text_encoder",
    "connectors",
    "image_encoder",
    "transformer",
    "transformer_2",
    "vae",
    "audio_vae",
    "vocoder",
)
"""A bundle's modules in the order a segment uses them (the offload chain's order): Wan's and LTX-Video's
(text encoder, image encoder, transformer(s), VAE), LTX-2's too (its text connectors after the text encoder;
its audio VAE and vocoder, which decode the audio after the video)."""
TRANSFORMERS = ("transformer", "transformer_2")
FP8_MODULES = (*TRANSFORMERS, "connectors")
"""The modules fp8 storage casts and the attention backend is set on: the transformer(s) and LTX-2's text
connectors (transformer blocks too, with diffusers' attention). The encoders and decoders (text and image
encoders, VAEs, the vocoder) keep their dtype: they are small next to the transformer, and their outputs (the
prompt's states, pixels, sound) would carry fp8's rounding unfiltered."""
OFFLOADS = ("none", "model", "block", "leaf")


@dataclass(frozen=True)
class MemorySwitches:
    offload: str  # one of OFFLOADS
    vae_tiling: bool
    attention_backend: str | None  # None: diffusers' default
    fp8_storage: bool = False


@dataclass(frozen=True)
class Weights:
    """A model's weights per module: bytes as loaded, and parameter count (bytes in fp8)."""

    bytes: Mapping[str, int]
    params: Mapping[str, int]

    def sizes(self, fp8: bool) -> dict[str, int]:
        """Bytes per module, those fp8 storage casts (``FP8_MODULES``) at one byte a parameter when ``fp8``."""
        return {
            name: self.params[name] if fp8 and name in FP8_MODULES else size
            for name, size in self.bytes.items()
        }


def weights_of(bundle) -> Weights:
    """The weights of a loaded bundle's modules."""
    found = {name: getattr(bundle, name, None) for name in MODULES}
    modules = {name: module for name, module in found.items() if module is not None}
    return Weights(
        bytes={n: sum(p.numel() * p.element_size() for p in m.parameters()) for n, m in modules.items()},
        params={n: sum(p.numel() for p in m.parameters()) for n, m in modules.items()},
    )


def device_memory(device: torch.device) -> int | None:
    """Total memory of a CUDA device in bytes; None for other devices."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.get_device_properties(device).total_memory)


def weight_budget(total_memory: int) -> int:
    """The bytes weights may take on a GPU of ``total_memory`` (the rest: activations, decode, CUDA)."""
    return total_memory - max(HEADROOM_BYTES, int(HEADROOM_SHARE * total_memory))


def memory_switches(
    total_memory: int | None,
    *,
    offload: str,
    vae_tiling: bool | None,
    attention_backend: str,
    fp8_storage: bool | None = None,
    weights: Weights | None = None,
) -> MemorySwitches:
    """What ``auto`` (and None) means on a device with ``total_memory`` bytes (None: not a GPU) for a model
    with ``weights`` (see the module docstring for the rule)."""
    small = total_memory is not None and total_memory < SMALL_DEVICE_BYTES
    fp8 = fp8_storage
    if offload == "auto":
        offload, fp8 = _auto_offload(total_memory, weights, fp8_storage)
    return MemorySwitches(
        offload=offload,
        vae_tiling=small if vae_tiling is None else vae_tiling,
        attention_backend=None if attention_backend == "auto" else attention_backend,
        fp8_storage=bool(fp8),
    )


def _auto_offload(total_memory: int | None, weights: Weights | None, fp8: bool | None) -> tuple[str, bool]:
    """``auto`` offload (and fp8 storage where ``fp8`` is None) by the rule in the module docstring."""
    if total_memory is None or weights is None or not weights.bytes:
        return "none", bool(fp8)
    budget = weight_budget(total_memory)
    sizes = weights.sizes(bool(fp8))
    if sum(sizes.values()) <= budget:
        return "none", bool(fp8)
    if max(sizes.values()) <= budget:
        return "model", bool(fp8)
    if fp8 is None and max(weights.sizes(True).values()) <= budget:
        return "model", True
    return "block", bool(fp8)


def apply(bundle, switches: MemorySwitches):
    """The bundle with the switches set (offloaded modules wait on the CPU; the bundle's device stays the
    execution device). The bundle may come with its modules on the CPU (loaded with ``on_cpu``): the offload
    hooks then move them, and no module is on the GPU before its hook is there, so weights larger than the
    GPU load; without offload they are moved to the device here, after fp8 storage cast them. Raises
    ValueError when diffusers refuses the attention backend on this machine."""
    blocks = [m for m in (getattr(bundle, n, None) for n in FP8_MODULES) if m is not None]
    if switches.attention_backend is not None:
        for module in blocks:
            try:
                module.set_attention_backend(switches.attention_backend)
            except (ImportError, RuntimeError, ValueError) as error:  # its library is missing or unusable
                text = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
                raise ValueError(text) from None
    if switches.vae_tiling:
        bundle.vae.enable_tiling()
    if switches.fp8_storage:
        from flipbook.models.fp8_files import holds_fp8

        for module in blocks:
            if not holds_fp8(module):  # a file's fp8 weights are kept as it stores them, nothing more cast
                module.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=bundle.dtype)
    if switches.offload == "none":
        _place(bundle)
    elif switches.offload == "model":
        _model_offload(bundle)
    elif switches.offload in ("block", "leaf"):
        _group_offload(bundle, switches.offload)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return bundle


def _place(bundle) -> None:
    """Every module on the bundle's device (a no-op for those already there)."""
    for name in MODULES:
        module = getattr(bundle, name, None)
        if module is not None:
            module.to(bundle.device)


def _model_offload(bundle) -> None:
    from accelerate import cpu_offload_with_hook

    hook = None
    for name in MODULES:
        module = getattr(bundle, name, None)
        if module is not None:
            module.to("cpu")
            _, hook = cpu_offload_with_hook(module, bundle.device, prev_module_hook=hook)


def _group_offload(bundle, level: str) -> None:
    """diffusers' group offload: the transformers by blocks (one per group) or leaf layers, the other modules
    by leaf layers; on CUDA the next group is copied on a side stream while the current one runs."""
    from diffusers.hooks import apply_group_offloading

    stream = bundle.device.type == "cuda"
    for name in MODULES:
        module = getattr(bundle, name, None)
        if module is None:
            continue
        module.to("cpu")
        kind = "block_level" if level == "block" and name in TRANSFORMERS else "leaf_level"
        apply_group_offloading(
            module, onload_device=bundle.device, offload_device=torch.device("cpu"), offload_type=kind,
            num_blocks_per_group=1 if kind == "block_level" else None, use_stream=stream,
        )  # fmt: skip

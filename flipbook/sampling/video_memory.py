"""Memory and speed switches for video diffusion models: model CPU offload, VAE tiling, the attention backend.

:func:`memory_switches` (pure) picks what ``auto`` means from the device's memory: below
:data:`SMALL_DEVICE_BYTES` (24 GiB: a Wan 14B or LTX 13B in bf16 does not fit beside its text encoder) the
models are offloaded to the CPU between uses and the VAE decodes in tiles; above it nothing is offloaded.
:func:`apply` sets them on a loaded bundle (its modules by the pipelines' names): accelerate's
``cpu_offload_with_hook`` chained through text encoder, image encoder, transformer(s) and VAE, as diffusers'
``enable_model_cpu_offload`` does it, so each module is on the GPU only while it runs; ``vae.enable_tiling``;
``transformer.set_attention_backend`` (diffusers' attention dispatcher: flash, sage, flex, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SMALL_DEVICE_BYTES = 24 * 2**30
MODULES = ("text_encoder", "image_encoder", "transformer", "transformer_2", "vae")
"""A bundle's modules in the order a segment uses them (the offload chain's order)."""


@dataclass(frozen=True)
class MemorySwitches:
    offload: bool
    vae_tiling: bool
    attention_backend: str | None  # None: diffusers' default


def device_memory(device: torch.device) -> int | None:
    """Total memory of a CUDA device in bytes; None for other devices (nothing is offloaded from them)."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.get_device_properties(device).total_memory)


def memory_switches(
    total_memory: int | None, *, offload: str, vae_tiling: bool | None, attention_backend: str
) -> MemorySwitches:
    """What ``auto`` means on a device with ``total_memory`` bytes (None: not a GPU)."""
    small = total_memory is not None and total_memory < SMALL_DEVICE_BYTES
    return MemorySwitches(
        offload=(small if offload == "auto" else offload == "model") and total_memory is not None,
        vae_tiling=small if vae_tiling is None else vae_tiling,
        attention_backend=None if attention_backend == "auto" else attention_backend,
    )


def apply(bundle, switches: MemorySwitches):
    """The bundle with the switches set (offloaded modules wait on the CPU; the bundle's device stays the
    execution device). Raises ValueError when diffusers refuses the attention backend on this machine."""
    if switches.attention_backend is not None:
        for name in ("transformer", "transformer_2"):
            module = getattr(bundle, name, None)
            if module is not None:
                try:
                    module.set_attention_backend(switches.attention_backend)
                except (ImportError, RuntimeError, ValueError) as error:  # its library is missing or unusable
                    text = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
                    raise ValueError(text) from None
    if switches.vae_tiling:
        bundle.vae.enable_tiling()
    if switches.offload:
        from accelerate import cpu_offload_with_hook

        hook = None
        for name in MODULES:
            module = getattr(bundle, name, None)
            if module is not None:
                module.to("cpu")
                _, hook = cpu_offload_with_hook(module, bundle.device, prev_module_hook=hook)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return bundle

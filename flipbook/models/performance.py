"""Speed switches applied to a loaded model, whatever its family: the one place models are prepared after
loading (:func:`prepare`, called by ``load_model`` for image families and by the modes that load video models).

Each switch is diffusers' or PyTorch's own mechanism, applied to the bundle's nets by their pipeline names
(``unet``, ``transformer``, ``transformer_2``; ``vae``), so no family is named here:

- ``fuse_qkv``: ``fuse_qkv_projections()`` on every net that has it (diffusers' UNets and VAEs): one matrix
  multiply for query, key and value;
- ``attention_backend``: every attention processor wrapped in :class:`KernelChoice`, which runs it inside
  ``torch.nn.attention.sdpa_kernel`` with the chosen backend (math, efficient, flash, cudnn);
- ``channels_last``: the UNet and the VAE (4-D convolutions) in channels-last layout;
- step caches (:mod:`flipbook.models.step_cache`): DeepCache on UNets, diffusers' first-block cache,
  FasterCache or pyramid attention broadcast on transformers;
- ``compile``: ``torch.compile`` in place (``nn.Module.compile``: the object, its config and its attributes
  stay as they are, so LoRA loading and every loop keep working) of the nets and, with ``compile_vae``, the
  VAE's decoder, in the chosen mode (``reduce-overhead``: CUDA graphs).

The order matters and is fixed: fuse, then the kernel choice (it wraps the fused processors), then the memory
layout, then the caches (hooks), compile last (it traces what the others set up).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

NETS = ("unet", "transformer", "transformer_2")
"""The denoising nets of a bundle, by the attribute names diffusers' pipelines give them."""

SDPA_BACKENDS = {
    "math": "MATH",
    "efficient": "EFFICIENT_ATTENTION",
    "flash": "FLASH_ATTENTION",
    "cudnn": "CUDNN_ATTENTION",
}
"""``performance.attention_backend`` -> the ``torch.nn.attention.SDPBackend`` member it chooses."""


@dataclass(frozen=True)
class Performance:
    """The switches (the spec's ``[performance]`` section, whose field names these are)."""

    compile: str = "none"
    compile_vae: bool = True
    channels_last: bool = False
    fuse_qkv: bool = False
    attention_backend: str = "auto"
    unet_cache: str = "none"
    cache_interval: int = 3
    transformer_cache: str = "none"
    cache_threshold: float = 0.05
    tiny_vae: str | None = None
    tiny_vae_decode: bool = False

    @classmethod
    def of(cls, section: Any) -> Performance:
        """The switches of a ``[performance]`` section (any object with these attributes)."""
        return cls(**{f.name: getattr(section, f.name) for f in fields(cls)})

    @property
    def active(self) -> bool:
        return self != Performance()


class KernelChoice:
    """An attention processor run inside ``sdpa_kernel(backend)``: every ``scaled_dot_product_attention`` it
    calls uses that backend (PyTorch raises when the backend can't run the inputs, rather than falling back)."""

    def __init__(self, processor: Any, backend: str) -> None:
        self.processor = processor
        self.backend = backend

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):  # fmt: skip
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(getattr(SDPBackend, SDPA_BACKENDS[self.backend])):
            return self.processor(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args,
                                  **kwargs)  # fmt: skip


def prepare(bundle: Any, performance: Performance) -> Any:
    """``bundle`` (anything with ``unet``/``transformer``/``transformer_2``/``vae`` attributes) with the switches
    set on its nets, in place; returned for chaining. Nothing changes when every switch is off."""
    if not performance.active:
        return bundle
    nets = [net for name in NETS if (net := getattr(bundle, name, None)) is not None]
    vae = getattr(bundle, "vae", None)
    if performance.fuse_qkv:
        for module in [*nets, vae]:
            if module is not None and hasattr(module, "fuse_qkv_projections"):
                module.fuse_qkv_projections()
    if performance.attention_backend != "auto":
        for net in nets:
            choose_kernel(net, performance.attention_backend)
    if performance.channels_last:
        import torch

        for module in [*nets, vae]:
            if module is not None and _convolutional(module):
                module.to(memory_format=torch.channels_last)
    if performance.unet_cache != "none" or performance.transformer_cache != "none":
        from flipbook.models.step_cache import apply_step_cache

        for net in nets:
            apply_step_cache(net, performance)
    if performance.compile != "none":
        for net in nets:
            net.compile(mode=_compile_mode(performance.compile))
        if performance.compile_vae and vae is not None:
            vae.decoder.compile(mode=_compile_mode(performance.compile))
    return bundle


def choose_kernel(net: torch.nn.Module, backend: str) -> None:
    """Every attention processor of ``net`` run with the SDPA ``backend`` (nets without diffusers' attention
    processors are left as they are)."""
    if not hasattr(net, "attn_processors"):
        return
    processors = {
        name: processor if isinstance(processor, KernelChoice) else KernelChoice(processor, backend)
        for name, processor in net.attn_processors.items()
    }
    net.set_attn_processor(processors)


def _convolutional(module: torch.nn.Module) -> bool:
    """Whether ``module``'s convolutions are 2-D (channels-last is a layout of 4-D tensors)."""
    import torch

    return any(isinstance(m, torch.nn.Conv2d) for m in module.modules()) and not any(
        isinstance(m, torch.nn.Conv3d) for m in module.modules()
    )


def _compile_mode(mode: str) -> str | None:
    return None if mode == "default" else mode

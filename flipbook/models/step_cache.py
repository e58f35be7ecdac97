"""Step caches: work a denoising net skips on some steps by reusing what it computed on an earlier one.

**DeepCache for UNets** (Ma et al., 2023): between neighbouring steps the deep features of a UNet barely change,
while the shallow ones carry the detail. Every ``interval`` steps the UNet runs in full and the outputs of its
deep blocks (every down block but the first, the mid block, every up block but the last) are kept; on the steps
between, those blocks are not run at all (each returns its kept output) and only the shallow path runs: the
input convolution, the first down block, and the last up block, fed the kept deep features and fresh skip
connections. The blocks are hooked through diffusers' hook registry (a hook's ``new_forward`` replaces the
block's forward), so any UNet with ``down_blocks``/``mid_block``/``up_blocks`` takes it (SD 1.x/2.x, SDXL,
AnimateDiff's, SVD's), and the loops that call it don't know.

**diffusers' caches for transformers** (``transformer.enable_cache``): first-block cache (the other blocks are
skipped while the first block's output changes less than a threshold), FasterCache, pyramid attention broadcast.
They keep state per "cache context"; diffusers' pipelines name them in their loops (``cache_context("cond")``).
Here an outer hook on the transformer names them instead: the n-th call within one timestep is context
``pass<n>`` (a guided step calls the transformer for the prompt, then for the negative), and it records the
timestep the pyramid broadcast and FasterCache ask for.

Both start afresh with every denoising run: a call whose timestep is above the previous call's (the schedule
starts again) or whose input has another shape is the first step of a new run, so batches, segments and
resumed renders never reuse features from another run (same spec and seed, same frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook

DEEPCACHE = "flipbook_deepcache"
RUN_TRACKER = "flipbook_step_tracker"


@dataclass
class RunState:
    """Where the net is in its denoising run: steps begun since the run began, the current timestep and the
    calls made at it, the input's shape."""

    step: int = -1
    calls_at_step: int = 0
    timestep: float | None = None
    shape: tuple[int, ...] | None = None

    def advance(self, timestep: float, shape: tuple[int, ...]) -> bool:
        """Note one call; True when it starts a new run (the timestep went up, or the input changed shape)."""
        new_run = self.timestep is None or timestep > self.timestep or shape != self.shape
        if new_run:
            self.step, self.calls_at_step = 0, 0
        elif timestep == self.timestep:
            self.calls_at_step += 1
        else:
            self.step, self.calls_at_step = self.step + 1, 0
        self.timestep, self.shape = timestep, shape
        return new_run


def _timestep_of(args: tuple, kwargs: dict) -> float:
    """The call's timestep as one number (the first, where a net takes one per sample or per token)."""
    t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
    return float(torch.as_tensor(t).flatten()[0]) if t is not None else 0.0


def _sample_of(args: tuple, kwargs: dict) -> torch.Tensor:
    for name in ("sample", "hidden_states"):
        if name in kwargs:
            return kwargs[name]
    return args[0]


# ---- DeepCache ---------------------------------------------------------------------------------------------


class _Schedule(ModelHook):
    """On the UNet: decides per call whether this step runs in full (every ``interval``-th step of a run)."""

    def __init__(self, interval: int) -> None:
        super().__init__()
        self.interval = interval
        self.run = RunState()
        self.full = True

    def pre_forward(self, module, *args, **kwargs):
        self.run.advance(_timestep_of(args, kwargs), tuple(_sample_of(args, kwargs).shape))
        # a step with several calls (Heun's second evaluation) counts once, as the schedule's steps do
        self.full = self.run.step % self.interval == 0
        return args, kwargs

    def reset_state(self, module):
        self.run = RunState()
        return module


class _ReuseDeep(ModelHook):
    """On a deep block: runs it and keeps its output on full steps, returns the kept output on the others."""

    def __init__(self, schedule: _Schedule) -> None:
        super().__init__()
        self.schedule = schedule
        self.kept: Any = None

    def new_forward(self, module, *args, **kwargs):
        if self.schedule.full or self.kept is None:
            self.kept = self.fn_ref.original_forward(*args, **kwargs)
        return self.kept


def deep_blocks(unet: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks DeepCache skips: every down block but the first, the mid block, every up block but the last."""
    blocks = [*list(unet.down_blocks)[1:], *list(unet.up_blocks)[:-1]]
    if getattr(unet, "mid_block", None) is not None:
        blocks.insert(len(unet.down_blocks) - 1, unet.mid_block)
    return blocks


def apply_deepcache(unet: torch.nn.Module, interval: int) -> None:
    """Hook DeepCache into ``unet`` (full steps every ``interval`` steps)."""
    schedule = _Schedule(interval)
    for block in deep_blocks(unet):
        HookRegistry.check_if_exists_or_initialize(block).register_hook(_ReuseDeep(schedule), DEEPCACHE)
    HookRegistry.check_if_exists_or_initialize(unet).register_hook(schedule, DEEPCACHE)


# ---- diffusers' transformer caches -------------------------------------------------------------------------


class _Contexts(ModelHook):
    """Outermost hook on a cached transformer: a new run resets the caches; each call gets its context
    (``pass0`` for the first call at a timestep, ``pass1`` for the second, ...) and the timestep is noted."""

    def __init__(self) -> None:
        super().__init__()
        self.run = RunState()

    def pre_forward(self, module, *args, **kwargs):
        from diffusers.hooks.hooks import CacheContext, _set_cache_context

        timestep = _timestep_of(args, kwargs)
        if self.run.advance(timestep, tuple(_sample_of(args, kwargs).shape)):
            module._reset_stateful_cache()
        _set_cache_context(
            module, CacheContext(f"pass{self.run.calls_at_step}", step_index=self.run.step, timestep=timestep)
        )
        return args, kwargs

    def current_timestep(self) -> float:
        return self.run.timestep if self.run.timestep is not None else 0.0


def transformer_cache_config(kind: str, threshold: float, timestep: Any):
    """diffusers' config for ``kind`` (first-block, faster-cache, pyramid) with flipbook's settings:
    ``timestep`` gives the current timestep (the pyramid broadcast and FasterCache skip only in a range)."""
    from diffusers.hooks import FasterCacheConfig, FirstBlockCacheConfig, PyramidAttentionBroadcastConfig

    if kind == "first-block":
        return FirstBlockCacheConfig(threshold=threshold)
    if kind == "faster-cache":
        # each call is one guidance branch (flipbook's loops call the prompt and the negative apart), so no
        # batch is split into unconditional and conditional halves
        return FasterCacheConfig(
            spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(-1, 681),
            current_timestep_callback=timestep, attention_weight_callback=lambda _: 0.3,
            tensor_format="BCFHW", is_guidance_distilled=True,
        )  # fmt: skip
    return PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(100, 800),
        current_timestep_callback=timestep,
    )  # fmt: skip


def apply_transformer_cache(transformer: torch.nn.Module, kind: str, threshold: float) -> None:
    """Enable diffusers' ``kind`` cache on ``transformer``, with the contexts named by an outer hook."""
    contexts = _Contexts()
    transformer.enable_cache(transformer_cache_config(kind, threshold, contexts.current_timestep))
    HookRegistry.check_if_exists_or_initialize(transformer).register_hook(contexts, RUN_TRACKER)


def apply_step_cache(net: torch.nn.Module, performance: Any) -> None:
    """The cache ``performance`` asks for on this kind of net: DeepCache on a UNet (a net with up blocks),
    diffusers' cache on a transformer (a net with ``enable_cache``); a net of neither kind is left as is."""
    if hasattr(net, "up_blocks") and performance.unet_cache == "deepcache":
        apply_deepcache(net, performance.cache_interval)
    elif hasattr(net, "enable_cache") and performance.transformer_cache != "none":
        apply_transformer_cache(net, performance.transformer_cache, performance.cache_threshold)

"""AnimateDiff motion modules, motion LoRAs, the v3 domain adapter and scheduler presets, from whatever the user has.

Motion modules (:func:`load_motion_adapter`) -- ``ref`` may be:

* a built-in: ``tiny`` (random weights, fits the built-in tiny image model) or ``random-sd15`` (SD 1.5's real
  motion-module architecture, the v2 layout diffusers' ``MotionAdapter()`` builds, with deterministic random
  weights: for speed and memory measurements);
* an original single-file motion module as A1111 / ComfyUI users have them (``mm_sd_v14.ckpt``,
  ``mm_sd_v15.ckpt``, ``mm_sd_v15_v2.ckpt``, ``v3_sd15_mm.ckpt``, ``mm_sd15_v3.safetensors``, AnimateDiff-
  Lightning's ``*_comfyui.safetensors``, AnimateLCM's ``AnimateLCM_sd15_t2v.ckpt``) or a diffusers-layout
  single file (Lightning's ``*_diffusers.safetensors``), as a path or as a name in the models folder
  (A1111 ``extensions/sd-webui-animatediff/model``, ``models/AnimateDiff``; ComfyUI
  ``models/animatediff_models``, ``custom_nodes/ComfyUI-AnimateDiff-Evolved/models``);
* a diffusers MotionAdapter folder, or a hub id in the local Hugging Face cache.

Single files load fully offline, like :mod:`flipbook.models.single_file` loads SD checkpoints: read safely
(safetensors, or ``torch.load(weights_only=True)``), keys renamed from the original layout
(``...motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight``) to
diffusers' (``...motion_modules.0.transformer_blocks.0.attn1.to_q.weight``, the renaming of diffusers'
``convert_animatediff_checkpoint_to_diffusers``), every size taken from the tensor shapes over a template
config (the one a flipbook-written file embeds, else the shipped ``configs/animatediff/v1|v2|v3``, copies of
guoyww's ``animatediff-motion-adapter-v1-4`` / ``-v1-5-2`` / ``-v1-5-3`` configs), and loaded strictly: a
missing or unexpected weight is a :class:`FlipbookError` naming the field. The version is told from the keys
as the A1111 extension and AnimateDiff-Evolved tell it: a mid block means v2; without one a positional
encoding of 24 frames means v1, of 32 frames v3. Unlike diffusers' converter, the positional encodings are
read from the file (they are fixed sinusoids, so this only matters for their length, the longest context the
module accepts); AnimateLCM's files store none, and get 64 frames as in AnimateDiff-Evolved.

Motion LoRAs (:func:`merge_motion_loras`) and the v3 domain adapter (:func:`merge_adapter_lora`) are fused
into the weights (``W += weight * up @ down``, times ``alpha / rank`` when the file stores an alpha), which
is what AnimateDiff's own ``load_diffusers_lora`` does with both. Accepted key layouts: the original
attention-processor layout (``...attention_blocks.0.processor.to_q_lora.down.weight``; the v2 motion LoRAs
``v2_lora_ZoomIn.ckpt``..., and ``v3_sd15_adapter.ckpt`` with diffusers' UNet names
``down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight``), the same converted
by diffusers' script (``unet.`` prefix; the guoyww/animatediff-motion-lora-* files), PEFT
(``...to_q.lora_A.weight``) and kohya (``lora_unet_..._to_q.lora_down.weight`` + ``.alpha``, diffusers or
LDM module names). Every key must land on a weight of the right shape, or nothing is merged.

Scheduler presets for distilled checkpoints are :data:`PRESETS` and :func:`preset_scheduler_config`.
"""

from __future__ import annotations

import inspect
import json
import os
import pickle
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from diffusers import MotionAdapter

from flipbook.errors import FlipbookError
from flipbook.models.builtin import _seeded
from flipbook.models.convert import CONFIG_METADATA_KEY, UNET_PREFIX, unet_original_key
from flipbook.models.folders import ModelsDir, models_dir_from_env

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MOTION_MODULE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
LORA_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
ALLOWED_MOTION_MODULES = (
    "the built-in tiny or random-sd15, an AnimateDiff SD 1.5 motion module file (v1 mm_sd_v14/v15, v2 "
    "mm_sd15_v2, v3 mm_sd15_v3 / v3_sd15_mm, AnimateLCM, AnimateDiff-Lightning; .safetensors or .ckpt) as a "
    "path or a name in model.models_dir, a diffusers MotionAdapter folder, or a hub id (org/name) in the local "
    "Hugging Face cache"
)
ALLOWED_MOTION_LORAS = (
    "an AnimateDiff motion LoRA (v2_lora_ZoomIn.ckpt ...; original, diffusers, PEFT or kohya layout) as a "
    "path or a name in model.models_dir, matching the motion module"
)
ALLOWED_ADAPTER_LORA = (
    "the AnimateDiff v3 domain adapter (v3_sd15_adapter.ckpt, or a .safetensors conversion of it; original, "
    "diffusers, PEFT or kohya layout) as a path or a LoRA name in model.models_dir"
)
# AnimateDiff-Evolved's length for AnimateLCM files, which store no positional encoding.
NO_ENCODING_MAX_LENGTH = 64
_CONFIG_ENTRY = "motion_adapter"  # key of the MotionAdapter config in the embedded flipbook_config JSON


# ----------------------------------------------------------------------------------------------- builtins


def tiny_motion_adapter(seed: int = 0) -> MotionAdapter:
    """A tiny random MotionAdapter that fits the built-in ``tiny`` image model (channels 32, 32, 64, 64)."""
    return _seeded(
        seed,
        lambda: MotionAdapter(
            block_out_channels=(32, 32, 64, 64),
            motion_layers_per_block=2,
            motion_norm_num_groups=8,
            motion_num_attention_heads=2,
            motion_max_seq_length=32,
        ),
    )


def random_sd15_motion_adapter(seed: int = 0) -> MotionAdapter:
    """SD 1.5's motion module architecture (diffusers' default MotionAdapter: v2, with a mid block, 32 frames)
    with deterministic random weights; fits the built-in ``random-sd15`` image model.

    Built on the meta device and then initialised layer by layer with torch's default initialisers (the
    distributions a plain ``MotionAdapter()`` gets), which takes a quarter of the time of a plain build.
    """
    return _seeded(seed, lambda: _initialised(shipped_motion_config("v2")))


def _initialised(config: Mapping[str, Any]) -> MotionAdapter:
    with torch.device("meta"):
        adapter = MotionAdapter(**config)
    adapter = adapter.to_empty(device="cpu")
    for name, module in adapter.named_modules():
        if next(module.parameters(recurse=False), None) is None:
            continue
        if not hasattr(module, "reset_parameters"):
            raise RuntimeError(f"no initialiser for {name} ({type(module).__name__})")
        module.reset_parameters()
    encodings = _computed_encodings(adapter)
    if set(encodings) != {name for name, _ in adapter.named_buffers()}:
        raise RuntimeError("MotionAdapter has buffers other than positional encodings")
    adapter.load_state_dict(encodings, strict=False)
    return adapter


BUILTIN_MOTION_MODULES: dict[str, Callable[[int], MotionAdapter]] = {
    "tiny": tiny_motion_adapter,
    "random-sd15": random_sd15_motion_adapter,
}


def shipped_motion_config(version: str) -> dict[str, Any]:
    """The shipped MotionAdapter config of AnimateDiff SD 1.5 ``version`` (v1, v2 or v3), without ``_`` keys."""
    source = resources.files("flipbook.models").joinpath("configs", "animatediff", version, "config.json")
    data = json.loads(source.read_text(encoding="utf-8"))
    return {key: value for key, value in data.items() if not key.startswith("_")}


# ------------------------------------------------------------------------------------------- key layout

_MOTION_KEY = re.compile(r"((?:down_blocks|up_blocks)\.\d+|mid_block)\.motion_modules\.(\d+)\.(.+)")
_ORIGINAL_MOTION_KEY = re.compile(
    r"((?:down_blocks|up_blocks)\.\d+|mid_block)\.motion_modules\.(\d+)\.temporal_transformer\.(.+)"
)
_BLOCK_PART = re.compile(r"transformer_blocks\.(\d+)\.(attn1|attn2|norm1|norm2|norm3|pos_embed)\.(.+)")
_ORIGINAL_BLOCK_PART = re.compile(
    r"transformer_blocks\.(\d+)\.(attention_blocks\.\d+|norms\.\d+|ff_norm)\.(.+)"
)
_TO_ORIGINAL = {
    "attn1": "attention_blocks.0",
    "attn2": "attention_blocks.1",
    "norm1": "norms.0",
    "norm2": "norms.1",
    "norm3": "ff_norm",
}
_FROM_ORIGINAL = {value: key for key, value in _TO_ORIGINAL.items()}


def motion_original_keys(key: str) -> tuple[str, ...]:
    """The original (AnimateDiff) names of MotionAdapter state-dict entry ``key``.

    One name, except for a transformer block's positional encoding: diffusers keeps one per block, the
    original layout one per attention block (two, always equal).
    """
    m = _MOTION_KEY.fullmatch(key)
    if m is None:
        raise KeyError(f"MotionAdapter entry {key!r} has no place in the original AnimateDiff layout")
    prefix, rest = f"{m[1]}.motion_modules.{m[2]}.temporal_transformer.", m[3]
    part = _BLOCK_PART.fullmatch(rest)
    if part is None:
        return (prefix + rest,)
    block, module, leaf = part.groups()
    if module == "pos_embed":
        return tuple(
            f"{prefix}transformer_blocks.{block}.attention_blocks.{i}.pos_encoder.{leaf}" for i in (0, 1)
        )
    return (f"{prefix}transformer_blocks.{block}.{_TO_ORIGINAL[module]}.{leaf}",)


def motion_diffusers_key(original: str) -> str | None:
    """The diffusers MotionAdapter name of an original-layout key, or None when it has no counterpart."""
    m = _ORIGINAL_MOTION_KEY.fullmatch(original)
    if m is None:
        return None
    prefix, rest = f"{m[1]}.motion_modules.{m[2]}.", m[3]
    part = _ORIGINAL_BLOCK_PART.fullmatch(rest)
    if part is None:
        return None if "attention_blocks." in rest or "norms." in rest else prefix + rest
    block, module, leaf = part.groups()
    if module.startswith("attention_blocks.") and leaf.startswith("pos_encoder."):
        if module not in ("attention_blocks.0", "attention_blocks.1"):
            return None
        return f"{prefix}transformer_blocks.{block}.pos_embed.{leaf.removeprefix('pos_encoder.')}"
    if module not in _FROM_ORIGINAL:
        return None
    return f"{prefix}transformer_blocks.{block}.{_FROM_ORIGINAL[module]}.{leaf}"


def plain_config(adapter: MotionAdapter) -> dict[str, Any]:
    """The adapter's config as plain JSON-able values, without diffusers' ``_`` bookkeeping keys."""
    config = {key: value for key, value in dict(adapter.config).items() if not key.startswith("_")}
    return json.loads(json.dumps(config))


def motion_adapter_to_original_state_dict(
    adapter: MotionAdapter, *, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """The adapter's weights in the original AnimateDiff key layout (as in ``mm_sd15_v2.ckpt``)."""
    state: dict[str, torch.Tensor] = {}
    for key, tensor in adapter.state_dict().items():
        value = tensor.detach().to("cpu", dtype or tensor.dtype)
        for original in motion_original_keys(key):
            state[original] = value.clone().contiguous()  # safetensors refuses tensors sharing memory
    return state


def save_original_motion_module(
    adapter: MotionAdapter,
    path: str | Path,
    *,
    embed_config: bool = True,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``adapter`` as an original-layout single file: ``.safetensors``, else a pickle of tensors.

    With ``embed_config`` the adapter's config goes along (the safetensors header metadata, or an entry next
    to ``state_dict``), so the few values no shape reveals (attention heads, GroupNorm groups) load back
    exactly; without it, a ``.ckpt`` is a plain dict of tensors, like the files AnimateDiff publishes.
    """
    path = Path(path)
    state = motion_adapter_to_original_state_dict(adapter, dtype=dtype)
    blob = json.dumps({_CONFIG_ENTRY: plain_config(adapter)})
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={CONFIG_METADATA_KEY: blob} if embed_config else None)
    else:
        torch.save({"state_dict": state, CONFIG_METADATA_KEY: blob} if embed_config else state, path)
    return path


# -------------------------------------------------------------------------------------------- reading


def _sniff(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
    except OSError as error:
        return f"the file could not be read ({error.strerror or error})"
    if not head:
        return "the file is empty"
    if head.startswith(b"version https://git-lfs"):
        return "this is a Git LFS pointer file, not the weights (run `git lfs pull`)"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


@dataclass
class _Weights:
    """A weights file's tensors, the flipbook config it embeds, and the container they were found under."""

    state: dict[str, torch.Tensor]
    embedded: dict[str, Any] | None = None
    wrapper: str | None = None


def _parse_embedded(blob: object) -> dict[str, Any] | None:
    try:
        parsed = json.loads(blob) if isinstance(blob, str) else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def read_weights(
    path: str | Path, *, field: str, value: object, allowed: str, suffixes: tuple[str, ...] = LORA_SUFFIXES
) -> _Weights:
    """A weights file's tensors, read without running pickled code; every problem a FlipbookError on ``field``.

    ``.safetensors`` with safetensors; anything else with ``torch.load(weights_only=True)``, unwrapping the
    containers these files use (``state_dict``, ``module``, SparseCtrl's ``controlnet``) and ignoring
    non-tensor entries (``animatediff_config``, ``epoch``...).
    """
    path = Path(path)

    def fail(detail: str) -> FlipbookError:
        return FlipbookError(field, value, allowed, detail=detail)

    if not path.is_file():
        raise fail(f"no such file: {path}" if not path.exists() else f"not a file: {path}")
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise fail(f"unsupported file type {suffix or '(none)'!r}; use {', '.join(suffixes)}")
    if (problem := _sniff(path)) is not None:
        raise fail(problem)
    if suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                metadata = handle.metadata() or {}
                state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except Exception as error:  # safetensors raises its own error type for every kind of damage
            raise fail(f"truncated or corrupt safetensors file ({_first_line(error)})") from error
        embedded = _parse_embedded(metadata.get(CONFIG_METADATA_KEY))
        return _Weights(state, embedded.get(_CONFIG_ENTRY) if embedded else None)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        if "Unsupported global" in text or "Unsupported class" in text:
            found = re.search(r"(?:GLOBAL|class) ([\w.]+)", text)
            needs = found[1] if found else "arbitrary Python objects"
            detail = (
                f"the pickle needs {needs}, not just tensors; it is refused because loading it could run code "
                "(convert it to .safetensors with a tool you trust)"
            )
            if "omegaconf" in needs:
                detail = (
                    "an early download that stores its training config as an OmegaConf object, which is refused "
                    "because loading it could run code; the current file of guoyww/animatediff holds only "
                    "tensors: download it again, or convert this one to .safetensors with a tool you trust"
                )
            raise fail(detail) from error
        raise fail(f"truncated or corrupt {suffix} file ({_first_line(error)})") from error
    except Exception as error:  # torch.load reports damage as RuntimeError, EOFError, ValueError, ...
        raise fail(f"truncated or corrupt {suffix} file ({_first_line(error)})") from error
    embedded, wrapper = None, None
    while isinstance(loaded, dict):
        if isinstance(loaded.get(CONFIG_METADATA_KEY), str):
            embedded = _parse_embedded(loaded[CONFIG_METADATA_KEY])
        inner = next(
            (name for name in ("state_dict", "module", "controlnet") if isinstance(loaded.get(name), dict)),
            None,
        )
        if inner is None:
            break
        wrapper = inner if wrapper is None or inner == "controlnet" else wrapper
        loaded = loaded[inner]
    if not isinstance(loaded, dict):
        raise fail(f"the file holds a {type(loaded).__name__}, not a state dict")
    state = {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    return _Weights(state, embedded.get(_CONFIG_ENTRY) if embedded else None, wrapper)


# -------------------------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class MotionModuleInfo:
    """What a motion-module file is.

    ``version``: "v1" (no mid block, 24 frames: mm_sd_v14 / mm_sd_v15), "v2" (mid block: mm_sd15_v2,
    Lightning), "v3" (no mid block, 32 frames: v3_sd15_mm). ``layout``: "original" (AnimateDiff's key names)
    or "diffusers" (MotionAdapter's). ``max_seq_length``: the frames its positional encoding covers (None when
    the file stores no encoding, as AnimateLCM's). ``levels``: UNet levels (4 for SD 1.5).
    """

    version: str
    layout: str
    max_seq_length: int | None
    has_mid_block: bool
    levels: int

    @property
    def positional_encoding(self) -> bool:
        return self.max_seq_length is not None


_LORA_KEY_MARKERS = ("_lora.", ".lora_A.", ".lora_B.", ".lora_down.", ".lora_up.", ".lora.down.", ".lora.up.")
_DIFFUSERS_MOTION = re.compile(r"(?:^|\.)motion_modules\.\d+\.transformer_blocks\.")
_LEVEL = re.compile(r"^down_blocks\.(\d+)\.motion_modules\.")


def _what_else(keys: Iterable[str], wrapper: str | None) -> str | None:
    """Why a state dict is not an SD 1.5 motion module, when it is recognisably something else."""
    keys = list(keys)
    if any(marker in key for key in keys for marker in _LORA_KEY_MARKERS) or any(
        key.startswith(("lora_unet_", "lora_te")) for key in keys
    ):
        return (
            "this is a LoRA, not a motion module: motion LoRAs go in animatediff.motion_loras, the v3 adapter "
            "(v3_sd15_adapter) in animatediff.adapter_lora"
        )
    if wrapper == "controlnet" or any(
        key.startswith(("controlnet_cond_embedding.", "controlnet_down_blocks.", "controlnet_mid_block."))
        for key in keys
    ):
        return (
            "this is a SparseCtrl / ControlNet model, not a motion module (SparseCtrl is not supported yet)"
        )
    if any(key.startswith(UNET_PREFIX) or key.startswith("cond_stage_model.") for key in keys):
        return "this is a Stable Diffusion checkpoint, not a motion module: give it as model.name"
    if any(".temporal_attentions." in key or key.startswith("temporal_attentions.") for key in keys):
        return "this is a HotShot-XL (SDXL) motion module; only SD 1.5 motion modules are supported"
    if any(key.startswith("conv_in.") for key in keys):
        return "this motion module has its own conv_in (PIA / FancyVideo), which is not supported"
    if any(key.startswith(("img_encoder.", "fps_embedding.", "motion_embedding.")) for key in keys):
        return "this motion module has extra encoders (AnimateLCM-I2V / FancyVideo), which are not supported"
    return None


def detect_motion_module(
    state: Mapping[str, Any],
    *,
    field: str = "animatediff.motion_module",
    value: object = "<state dict>",
    wrapper: str | None = None,
) -> MotionModuleInfo:
    """The version and layout of a motion-module state dict, or a FlipbookError saying what it is instead."""

    def fail(detail: str) -> FlipbookError:
        return FlipbookError(field, value, ALLOWED_MOTION_MODULES, detail=detail)

    if not state:
        raise fail("the file holds no tensors")
    if (other := _what_else(state, wrapper)) is not None:
        raise fail(other)
    original = any(".temporal_transformer." in key for key in state)
    diffusers = any(_DIFFUSERS_MOTION.search(key) for key in state)
    if not original and not diffusers:
        raise fail("no AnimateDiff motion-module weights (motion_modules.N.temporal_transformer...) found")
    if original and diffusers:
        raise fail("it mixes the original and the diffusers key layout")
    levels = sorted({int(m[1]) for key in state if (m := _LEVEL.match(key))})
    if not levels:
        raise fail("it has no down-block motion modules (a SparseCtrl or partial file?)")
    if not any(key.startswith("up_blocks.") for key in state):
        raise fail("it has no up-block motion modules (SparseCtrl's motion modules are not supported)")
    if len(levels) == 3:
        raise fail("this is an SDXL motion module (3 UNet levels); only SD 1.5 motion modules are supported")
    if len(levels) != 4:
        raise fail(f"it has motion modules for {len(levels)} UNet levels; SD 1.5 has 4")
    pe = next(
        (tensor for key, tensor in state.items() if key.endswith(("pos_encoder.pe", "pos_embed.pe"))), None
    )
    max_len = int(pe.shape[1]) if pe is not None and getattr(pe, "ndim", 0) == 3 else None
    mid = any(key.startswith("mid_block.") for key in state)
    version = "v2" if mid else ("v1" if max_len is not None and max_len < 32 else "v3")
    return MotionModuleInfo(version, "original" if original else "diffusers", max_len, mid, len(levels))


# ---------------------------------------------------------------------------------------------- loading


def _to_diffusers(
    state: Mapping[str, torch.Tensor], info: MotionModuleInfo, fail: Callable[[str], FlipbookError]
) -> dict[str, torch.Tensor]:
    """Original-layout keys renamed to diffusers'; the two encodings of a block must agree (diffusers keeps one)."""
    if info.layout == "diffusers":
        return dict(state)
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        new = motion_diffusers_key(key)
        if new is None:
            raise fail(f"weight {key!r} has no place in a motion module")
        if new in converted:
            if not torch.equal(converted[new], tensor):
                raise fail(
                    f"the two positional encodings of {key.rsplit('.attention_blocks.', 1)[0]!r} differ"
                )
            continue
        converted[new] = tensor
    return converted


def _indices(state: Iterable[str], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m[1]) for key in state if (m := regex.match(key))})


def _largest_divisor(template: int, widths: list[int]) -> int:
    """``template`` when it divides every width, else the largest smaller value that does."""
    for candidate in range(template, 0, -1):
        if all(width % candidate == 0 for width in widths):
            return candidate
    return 1


def infer_motion_config(
    state: Mapping[str, torch.Tensor],
    template: Mapping[str, Any],
    fail: Callable[[str], FlipbookError],
) -> dict[str, Any]:
    """``template`` with every size the (diffusers-layout) tensors reveal replaced by the real one."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise fail(f"weight {key!r} missing")
        return tuple(state[key].shape)

    levels = _indices(state, r"down_blocks\.(\d+)\.motion_modules\.")
    widths = [shape(f"down_blocks.{level}.motion_modules.0.proj_in.weight")[1] for level in levels]
    layers = [len(_indices(state, rf"down_blocks\.{level}\.motion_modules\.(\d+)\.")) for level in levels]
    transformer_layers = [
        len(_indices(state, rf"down_blocks\.{level}\.motion_modules\.0\.transformer_blocks\.(\d+)\."))
        for level in levels
    ]
    accepted = inspect.signature(MotionAdapter.__init__).parameters
    config = {key: value for key, value in template.items() if key in accepted}  # older configs: extra keys
    config.update(
        block_out_channels=widths,
        motion_layers_per_block=layers[0] if len(set(layers)) == 1 else layers,
        motion_transformer_layers_per_block=(
            transformer_layers[0] if len(set(transformer_layers)) == 1 else transformer_layers
        ),
        use_motion_mid_block=any(key.startswith("mid_block.") for key in state),
        conv_in_channels=None,
    )
    if config["use_motion_mid_block"]:
        mid_layers = _indices(state, r"mid_block\.motion_modules\.(\d+)\.")
        config["motion_mid_block_layers_per_block"] = len(mid_layers)
        mid_transformer_layers = [
            len(_indices(state, rf"mid_block\.motion_modules\.{i}\.transformer_blocks\.(\d+)\."))
            for i in mid_layers
        ]
        config["motion_transformer_layers_per_mid_block"] = (
            mid_transformer_layers[0] if len(set(mid_transformer_layers)) == 1 else mid_transformer_layers
        )
    pe = next((state[key] for key in state if key.endswith("pos_embed.pe")), None)
    config["motion_max_seq_length"] = int(pe.shape[1]) if pe is not None else NO_ENCODING_MAX_LENGTH
    heads = template.get("motion_num_attention_heads", 8)
    per_level = list(heads) if isinstance(heads, (list, tuple)) else [heads] * len(widths)
    if len(per_level) != len(widths) or any(w % h for w, h in zip(widths, per_level, strict=False)):
        config["motion_num_attention_heads"] = _largest_divisor(max(per_level), widths)
    config["motion_norm_num_groups"] = _largest_divisor(
        int(template.get("motion_norm_num_groups", 32)), widths
    )
    return config


def _build(config: Mapping[str, Any], fail: Callable[[str], FlipbookError]) -> MotionAdapter:
    try:
        with torch.device("meta"):
            return MotionAdapter(**config)
    except (TypeError, ValueError) as error:
        raise fail(f"its shapes make no motion module ({_first_line(error)})") from error


def _computed_encodings(adapter: MotionAdapter) -> dict[str, torch.Tensor]:
    """Fresh sinusoidal encodings for every block (files without stored ones, as AnimateLCM's)."""
    from diffusers.models.embeddings import SinusoidalPositionalEmbedding

    encodings = {}
    for key, tensor in adapter.state_dict().items():
        if key.endswith("pos_embed.pe"):
            encodings[key] = SinusoidalPositionalEmbedding(tensor.shape[2], tensor.shape[1]).pe
    return encodings


def load_motion_module_file(
    path: str | Path, *, field: str = "animatediff.motion_module", value: object = None
) -> MotionAdapter:
    """A MotionAdapter from a single original- or diffusers-layout motion-module file, offline and strictly."""
    path = Path(path)
    value = str(path) if value is None else value

    def fail(detail: str) -> FlipbookError:
        return FlipbookError(field, value, ALLOWED_MOTION_MODULES, detail=detail)

    weights = read_weights(
        path, field=field, value=value, allowed=ALLOWED_MOTION_MODULES, suffixes=MOTION_MODULE_SUFFIXES
    )
    raw = weights.state
    if raw and all(key.startswith("module.") for key in raw):
        raw = {key.removeprefix("module."): tensor for key, tensor in raw.items()}
    info = detect_motion_module(raw, field=field, value=value, wrapper=weights.wrapper)
    state = _to_diffusers(raw, info, fail)
    template = weights.embedded if isinstance(weights.embedded, dict) else shipped_motion_config(info.version)
    adapter = _build(infer_motion_config(state, template, fail), fail)
    expected = adapter.state_dict()
    encodings = [key for key in expected if key.endswith("pos_embed.pe")]
    if not any(key in state for key in encodings):  # AnimateLCM: no stored encodings at all
        state.update(_computed_encodings(adapter))

    def shown(key: str) -> str:
        return (
            motion_original_keys(key)[0] if info.layout == "original" and _MOTION_KEY.fullmatch(key) else key
        )

    missing = [key for key in expected if key not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise fail(f"not a complete {info.version} motion module: weight {shown(missing[0])!r} missing{more}")
    unexpected = [key for key in state if key not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise fail(f"weight {shown(unexpected[0])!r} has no place in a {info.version} motion module{more}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise fail(
                f"weight {shown(key)!r} has shape {tuple(state[key].shape)}, the module needs {tuple(tensor.shape)}"
            )
    state = {key: tensor.to(torch.float32) for key, tensor in state.items()}
    adapter.load_state_dict(state, strict=True, assign=True)
    return adapter.eval()


def _as_models_dir(models_dir: ModelsDir | str | Path | None) -> ModelsDir | None:
    if models_dir is None:
        return models_dir_from_env()
    return models_dir if isinstance(models_dir, ModelsDir) else ModelsDir(models_dir)


def load_motion_adapter(
    ref: str,
    *,
    models_dir: ModelsDir | str | Path | None = None,
    field: str = "animatediff.motion_module",
    seed: int = 0,
) -> MotionAdapter:
    """The motion module ``ref`` names, on the CPU in float32 (the caller moves the assembled UNet).

    ``ref``: a built-in (``tiny``, ``random-sd15``), a motion-module file or diffusers MotionAdapter folder,
    a motion-module name in ``models_dir`` (default ``FLIPBOOK_MODELS_DIR``; with or without extension), or a
    hub id in the local Hugging Face cache. See the module docstring for the files that load.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise FlipbookError(field, ref, ALLOWED_MOTION_MODULES)
    if ref in BUILTIN_MOTION_MODULES:
        return BUILTIN_MOTION_MODULES[ref](seed)
    path = Path(ref).expanduser()
    if path.is_dir():
        return _from_pretrained(str(path), ref, field, local_files_only=True)
    if path.is_file():
        return load_motion_module_file(path, field=field, value=ref)
    hub_like = bool(_HUB_ID.match(ref))
    if path.is_absolute() or ref.startswith(("./", "../", "~", ".\\", "..\\")):
        raise FlipbookError(field, ref, ALLOWED_MOTION_MODULES, detail="no such file or folder")
    folders = _as_models_dir(models_dir)
    if folders is not None:
        try:
            found = folders.find("motion_module", ref)
        except FlipbookError as error:
            if not hub_like or "ambiguous" in (error.detail or ""):
                raise FlipbookError(field, ref, error.allowed, detail=error.detail) from None
        else:
            if found.is_dir():
                return _from_pretrained(str(found), ref, field, local_files_only=True)
            return load_motion_module_file(found, field=field, value=ref)
    if hub_like and path.suffix.lower() not in MOTION_MODULE_SUFFIXES:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        return _from_pretrained(ref, ref, field, local_files_only=offline)
    detail = "no such file or folder" + (
        "" if folders else "; set model.models_dir to find motion modules by name"
    )
    raise FlipbookError(field, ref, ALLOWED_MOTION_MODULES, detail=detail)


def _from_pretrained(source: str, ref: str, field: str, *, local_files_only: bool) -> MotionAdapter:
    try:
        adapter = MotionAdapter.from_pretrained(source, local_files_only=local_files_only)
    except (OSError, ValueError) as error:
        detail = "not in the local Hugging Face cache and the hub can't be reached"
        if Path(source).exists():
            detail = f"the folder could not be loaded: {str(error).strip().splitlines()[0][:200]}"
        raise FlipbookError(field, ref, ALLOWED_MOTION_MODULES, detail=detail) from None
    missing = [name for name, tensor in adapter.state_dict().items() if tensor.is_meta]
    if missing:
        raise FlipbookError(field, ref, ALLOWED_MOTION_MODULES, detail=f"weight {missing[0]!r} missing")
    return adapter.to(torch.float32)


# ------------------------------------------------------------------------------------------------- LoRAs

# (pattern, how the module path is rebuilt); the part group is down/up (lora_A/lora_B) or alpha.
_LORA_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (
        re.compile(r"(?P<m>.+)\.processor\.(?P<n>to_q|to_k|to_v|to_out)_lora\.(?P<p>down|up)\.weight"),
        lambda m: f"{m['m']}.{m['n']}",
    ),
    (re.compile(r"(?P<m>.+)\.(?P<p>lora_A|lora_B)(?:\.[A-Za-z_]\w*)?\.weight"), lambda m: m["m"]),
    (re.compile(r"(?P<m>.+)\.lora\.(?P<p>down|up)\.weight"), lambda m: m["m"]),
    (re.compile(r"(?P<m>.+)\.lora_(?P<p>down|up)\.weight"), lambda m: m["m"]),
    (re.compile(r"(?P<m>.+)_lora\.(?P<p>down|up)\.weight"), lambda m: m["m"]),
    (re.compile(r"(?P<m>.+)\.(?P<p>alpha)"), lambda m: m["m"]),
)
_PARTS = {"down": "down", "lora_A": "down", "up": "up", "lora_B": "up", "alpha": "alpha"}
_STRIP_PREFIXES = ("unet.", "base_model.model.", "model.diffusion_model.", "diffusion_model.")


def _split_lora_key(key: str) -> tuple[str, str] | None:
    """``(module path as written, "down" | "up" | "alpha")`` for one LoRA key, or None when it is none."""
    for pattern, module in _LORA_PATTERNS:
        if m := pattern.fullmatch(key):
            return module(m), _PARTS[m["p"]]
    return None


def _diffusers_module(raw: str) -> str:
    """A dotted module path in any of the accepted namings, in diffusers' naming (without any prefix)."""
    for prefix in _STRIP_PREFIXES:
        raw = raw.removeprefix(prefix)
    if m := _ORIGINAL_MOTION_KEY.fullmatch(raw):  # original motion naming
        converted = motion_diffusers_key(raw + ".weight")
        if converted is not None:
            raw = converted.removesuffix(".weight")
        else:
            raw = f"{m[1]}.motion_modules.{m[2]}.{m[3]}"
    if raw.endswith(".to_out"):
        raw += ".0"
    return raw


@dataclass(frozen=True)
class _Target:
    """What a LoRA can land on: module name -> 2-D/4-D weight, and kohya's underscore names -> module name."""

    weights: Mapping[str, torch.Tensor]
    underscored: Mapping[str, str]
    original: Mapping[str, str]  # LDM (original SD) module name -> diffusers module name


def _target(model: torch.nn.Module) -> _Target:
    weights: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.ndim in (2, 4) and name:
            weights[name] = weight
    original: dict[str, str] = {}
    config = getattr(model, "config", None)
    layers = getattr(config, "layers_per_block", None) if config is not None else None
    ups = getattr(config, "up_block_types", None) if config is not None else None
    if isinstance(layers, int) and ups:
        for name in weights:
            try:
                original[unet_original_key(f"{name}.weight", layers_per_block=layers, up_block_types=ups)] = (
                    name
                )
            except KeyError:
                continue
        original = {key.removesuffix(".weight"): name for key, name in original.items()}
    underscored = {name.replace(".", "_"): name for name in weights}
    underscored.update({key.replace(".", "_"): name for key, name in original.items()})
    return _Target(weights, underscored, original)


def _resolve_module(raw: str, target: _Target) -> str | None:
    if raw.startswith("lora_unet_"):
        return target.underscored.get(raw.removeprefix("lora_unet_"))
    name = _diffusers_module(raw)
    if name in target.weights:
        return name
    return target.original.get(name)


@dataclass(frozen=True)
class LoraDelta:
    """One layer of a LoRA file: the module it changes and ``scale * up @ down`` (scale = alpha / rank or 1)."""

    module: str
    down: torch.Tensor
    up: torch.Tensor
    scale: float
    key: str

    def delta(self, shape: torch.Size) -> torch.Tensor:
        """The weight change at LoRA weight 1, in float32, shaped like the target weight."""
        product = self.up.float().flatten(1) @ self.down.float().flatten(1)
        return (product * self.scale).reshape(shape)


def lora_deltas(
    state: Mapping[str, torch.Tensor],
    model: torch.nn.Module,
    *,
    field: str,
    value: object,
    allowed: str,
    accept: Callable[[str], str | None] = lambda module: None,
) -> list[LoraDelta]:
    """Every layer of a LoRA state dict, each checked to land on a weight of ``model`` with the right shape.

    ``accept(module)`` may return a reason to refuse a module that exists but is the wrong kind of layer.
    Nothing is skipped: an unknown key, a layer with no target, a missing half or a shape that does not fit
    raises a FlipbookError on ``field``.
    """

    def fail(detail: str) -> FlipbookError:
        return FlipbookError(field, value, allowed, detail=detail)

    if not state:
        raise fail("the file holds no tensors")
    target = _target(model)
    groups: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    for key, tensor in state.items():
        split = _split_lora_key(key)
        if split is None:
            if any(marker in key for marker in ("hada_", "lokr_", "lora_mid", ".dora_scale")):
                raise fail(
                    f"{key!r} is a LyCORIS (LoHa / LoKr / LoCon-mid / DoRA) layer, which is not supported"
                )
            raise fail(f"{key!r} is not a LoRA weight (a full model file?)")
        raw, part = split
        groups.setdefault(raw, {})[part] = (key, tensor)
    deltas = []
    for raw, parts in groups.items():
        first_key = next(iter(parts.values()))[0]
        if "down" not in parts or "up" not in parts:
            half = "down" if "down" not in parts else "up"
            raise fail(f"layer {raw!r} has no {half} weight")
        module = _resolve_module(raw, target)
        if module is None:
            image = (
                ".attentions." in raw or "_attentions_" in raw or raw.startswith(("lora_te", "text_encoder"))
            )
            hint = " (it is an image-model LoRA layer)" if image and ".motion_modules." not in raw else ""
            raise fail(f"{first_key!r} maps to no weight of the {type(model).__name__}{hint}")
        if (reason := accept(module)) is not None:
            raise fail(f"{first_key!r} {reason}")
        (down_key, down), (_, up) = parts["down"], parts["up"]
        weight = target.weights[module]
        rank = down.shape[0]
        if up.ndim < 2 or up.flatten(1).shape[1] != rank or up.shape[0] != weight.shape[0]:
            raise fail(f"{down_key!r}: up {tuple(up.shape)} and down {tuple(down.shape)} do not fit together")
        if down.flatten(1).shape[1] != weight[0].numel():
            raise fail(
                f"{down_key!r}: a rank-{rank} update of shape ({up.shape[0]}, {down.flatten(1).shape[1]}) does "
                f"not fit {module} {tuple(weight.shape)}"
            )
        scale = 1.0
        if "alpha" in parts:
            alpha = parts["alpha"][1]
            if alpha.numel() != 1:
                raise fail(f"{parts['alpha'][0]!r} is not a single number")
            scale = float(alpha.float().item()) / rank
        deltas.append(LoraDelta(module, down, up, scale, down_key))
    return deltas


def _apply(model: torch.nn.Module, deltas: Sequence[tuple[LoraDelta, float]]) -> None:
    weights = _target(model).weights
    with torch.no_grad():
        for delta, weight in deltas:
            target = weights[delta.module]
            target += (delta.delta(target.shape) * weight).to(target.device, target.dtype)


def _resolve_file(
    ref: str | Path,
    kinds: Sequence[str],
    models_dir: ModelsDir | str | Path | None,
    *,
    field: str,
    allowed: str,
) -> Path:
    """A LoRA file: an existing path (a folder holding one weights file counts), or a name in the models folder."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        files = [p for p in sorted(path.iterdir()) if p.is_file() and p.suffix.lower() in LORA_SUFFIXES]
        if len(files) == 1:
            return files[0]
        raise FlipbookError(
            field, str(ref), allowed, detail=f"the folder holds {len(files)} weights files, not one"
        )
    folders = _as_models_dir(models_dir)
    if folders is None or path.is_absolute():
        raise FlipbookError(
            field, str(ref), allowed, detail="no such file; set model.models_dir to find it by name"
        )
    first: FlipbookError | None = None  # the main kind's error lists what the user most likely meant
    for kind in kinds:
        try:
            return folders.find(kind, str(ref))
        except FlipbookError as error:
            if "ambiguous" in (error.detail or ""):
                raise FlipbookError(field, str(ref), error.allowed, detail=error.detail) from None
            first = first or error
    assert first is not None
    raise FlipbookError(field, str(ref), first.allowed, detail=first.detail) from None


def _refuse_image_layers(module: str) -> str | None:
    return None if ".motion_modules." in module else "maps to an image layer, not a motion module"


def merge_motion_loras(
    adapter: MotionAdapter,
    loras: Sequence[tuple[str | Path, float]],
    *,
    models_dir: ModelsDir | str | Path | None = None,
    field: str = "animatediff.motion_loras",
) -> None:
    """Fuse motion LoRAs into ``adapter``'s weights in place: ``W += weight * scale * up @ down`` per layer.

    Files are paths or names in the models folder (ComfyUI ``models/animatediff_motion_lora``, AnimateDiff-
    Evolved's ``motion_lora``; A1111 keeps them with the other LoRAs in ``models/Lora``). Every file is read
    and checked before any weight changes, so a bad file leaves the adapter as it was. The error's field is
    ``field[i]`` for the i-th entry.
    """
    planned: list[tuple[LoraDelta, float]] = []
    for index, (ref, weight) in enumerate(loras):
        where = f"{field}[{index}]"
        path = _resolve_file(
            ref, ("motion_lora", "lora"), models_dir, field=where, allowed=ALLOWED_MOTION_LORAS
        )
        weights = read_weights(path, field=where, value=str(ref), allowed=ALLOWED_MOTION_LORAS)
        deltas = lora_deltas(
            weights.state,
            adapter,
            field=where,
            value=str(ref),
            allowed=ALLOWED_MOTION_LORAS,
            accept=_refuse_image_layers,
        )
        planned.extend((delta, float(weight)) for delta in deltas)
    _apply(adapter, planned)


def _refuse_motion_layers(module: str) -> str | None:
    if ".motion_modules." in module:
        return "maps to a motion module: this is a motion LoRA; give it in animatediff.motion_loras"
    return None


def merge_adapter_lora(
    unet: torch.nn.Module,
    ref: str | Path,
    weight: float,
    *,
    models_dir: ModelsDir | str | Path | None = None,
    field: str = "animatediff.adapter_lora",
) -> None:
    """Fuse the v3 domain adapter into the image layers of ``unet`` in place (``W += weight * up @ down``).

    ``unet`` is a diffusers ``UNetMotionModel`` or ``UNet2DConditionModel`` (the image layers have the same
    names). ``ref`` is a path or a LoRA name in the models folder (A1111 ``models/Lora``, ComfyUI
    ``models/loras``). The file is checked completely before anything changes.
    """
    path = _resolve_file(ref, ("lora", "motion_lora"), models_dir, field=field, allowed=ALLOWED_ADAPTER_LORA)
    weights = read_weights(path, field=field, value=str(ref), allowed=ALLOWED_ADAPTER_LORA)
    deltas = lora_deltas(
        weights.state,
        unet,
        field=field,
        value=str(ref),
        allowed=ALLOWED_ADAPTER_LORA,
        accept=_refuse_motion_layers,
    )
    _apply(unet, [(delta, float(weight)) for delta in deltas])


# ----------------------------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class MotionPreset:
    """Scheduler settings for a distilled AnimateDiff setup (``animatediff.preset``).

    ``scheduler`` overrides the model's scheduler config; ``sampler`` is the sampler the preset needs (None:
    keep the spec's). ``steps`` and ``cfg`` are the recommended ranges (documented, not enforced).
    """

    name: str
    sampler: str | None
    scheduler: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    steps: tuple[int, ...] = ()
    cfg: tuple[float, float] | None = None
    checkpoints: str = ""


PRESETS: Mapping[str, MotionPreset] = MappingProxyType(
    {
        "none": MotionPreset("none", None, checkpoints="any motion module; the spec's sampler and config"),
        # LCM-LoRA (latent-consistency/lcm-lora-sdv1-5) on the image model with a regular motion module.
        # LCM sampler: the LCM-LoRA card and diffusers' "Inference with LCM" guide (LCMScheduler, 4-8 steps,
        # guidance 1-2). Linear betas: AnimateDiff's motion modules were trained with them (AnimateDiff's
        # inference configs; the A1111 extension's set_ddim_alpha switches every SD 1.5 run to linear betas).
        # clip_sample False: SD's own value; LCMScheduler's default (True) would clip the x0 estimate.
        "lcm": MotionPreset(
            "lcm",
            "LCM",
            MappingProxyType({"beta_schedule": "linear", "clip_sample": False}),
            steps=(4, 5, 6, 7, 8),
            cfg=(1.0, 2.0),
            checkpoints="LCM-LoRA (lcm-lora-sdv1-5) or an LCM-distilled SD 1.5 model, with any motion module",
        ),
        # AnimateLCM (wangfuyun/AnimateLCM: AnimateLCM_sd15_t2v motion module + AnimateLCM_sd15_t2v_lora at
        # ~0.8). Model card / diffusers docs: LCMScheduler.from_config(config, beta_schedule="linear"),
        # guidance 2.0, 6 steps. AnimateLCM README tips: 4 steps work, 6-8 are better, CFG 1-2 (1.5 preferred),
        # 16 frames.
        "animatelcm": MotionPreset(
            "animatelcm",
            "LCM",
            MappingProxyType({"beta_schedule": "linear", "clip_sample": False}),
            steps=(4, 5, 6, 7, 8),
            cfg=(1.0, 2.0),
            checkpoints="AnimateLCM_sd15_t2v motion module with the AnimateLCM_sd15_t2v_lora LoRA",
        ),
        # AnimateDiff-Lightning (ByteDance/AnimateDiff-Lightning, animatediff_lightning_{1,2,4,8}step_*):
        # model card: EulerDiscreteScheduler.from_config(config, timestep_spacing="trailing",
        # beta_schedule="linear"), guidance_scale=1.0, num_inference_steps = the checkpoint's step count
        # (the 1-step model is for research only). The card's ComfyUI workflow: Euler, sgm_uniform, CFG 1.
        "lightning": MotionPreset(
            "lightning",
            "Euler",
            MappingProxyType({"beta_schedule": "linear", "timestep_spacing": "trailing"}),
            steps=(1, 2, 4, 8),
            cfg=(1.0, 1.0),
            checkpoints="AnimateDiff-Lightning 1/2/4/8-step motion modules (steps = the checkpoint's)",
        ),
    }
)


def preset_scheduler_config(preset: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The model's scheduler ``config`` with ``preset``'s overrides applied (a new dict; ``config`` unchanged)."""
    if preset not in PRESETS:
        raise FlipbookError("animatediff.preset", preset, f"one of: {', '.join(PRESETS)}")
    result = dict(config)
    result.update(PRESETS[preset].scheduler)
    return result


__all__ = [
    "ALLOWED_ADAPTER_LORA",
    "ALLOWED_MOTION_LORAS",
    "ALLOWED_MOTION_MODULES",
    "BUILTIN_MOTION_MODULES",
    "PRESETS",
    "LoraDelta",
    "MotionModuleInfo",
    "MotionPreset",
    "detect_motion_module",
    "infer_motion_config",
    "load_motion_adapter",
    "load_motion_module_file",
    "lora_deltas",
    "merge_adapter_lora",
    "merge_motion_loras",
    "motion_adapter_to_original_state_dict",
    "motion_diffusers_key",
    "motion_original_keys",
    "preset_scheduler_config",
    "random_sd15_motion_adapter",
    "read_weights",
    "save_original_motion_module",
    "shipped_motion_config",
    "tiny_motion_adapter",
]

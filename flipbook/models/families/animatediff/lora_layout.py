"""LoRA key layouts (original, diffusers, PEFT, kohya) and the per-layer updates a LoRA file makes."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from flipbook.errors import FlipbookError
from flipbook.models.families.animatediff.keys import _ORIGINAL_MOTION_KEY, motion_diffusers_key
from flipbook.models.families.sd.convert import unet_original_key

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

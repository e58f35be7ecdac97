"""Load ControlNet models from whatever the user has, and keep each one loaded for a whole run.

``name_or_path`` may be:

* ``tiny``: a small random ControlNet built in code to fit the model's UNet (tests and demos; no download);
* a diffusers ControlNet folder (``config.json`` + ``diffusion_pytorch_model.safetensors``), or a whole
  diffusers folder with a ``controlnet/`` subfolder;
* a single file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``, ``.ckpt``) in the original ControlNet layout
  (``control_model.input_blocks...``, lllyasviel's ``control_v11p_sd15_*.pth``, with or without the prefix;
  SDXL's with ``label_emb``) or in diffusers' layout (a renamed ``diffusion_pytorch_model.safetensors``, as
  most SDXL ControlNet files are, union ones included: ``ControlNetUnionModel``, told by ``task_embedding``);
* a ControlNet name in the models folder (A1111 ``models/ControlNet``, the sd-webui-controlnet extension's
  ``extensions/sd-webui-controlnet/models``, ComfyUI ``models/controlnet``);
* a hub id (``lllyasviel/control_v11p_sd15_canny``), from the local cache when ``HF_HUB_OFFLINE`` is set.

Single files load fully offline the way :mod:`flipbook.models.families.sd.single_file` loads checkpoints: read safely
(safetensors, or ``torch.load(weights_only=True)``), original keys renamed with diffusers' own converter,
the architecture taken from the tensor shapes over SD 1.5's / SD 2's / SDXL base's UNet config (the few values no
shape reveals -- GroupNorm groups, attention heads -- come from that template, or from a config a
flipbook-written file embeds), weights loaded strictly. diffusers' ``ControlNetModel.from_single_file`` is not
used because it fetches a config from the hub for every file, which fails offline.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from flipbook.errors import FlipbookError, first_line
from flipbook.models.folders import ModelsDir
from flipbook.models.pickles import refused_pickle

if TYPE_CHECKING:
    from diffusers import ControlNetModel

    from flipbook.models.bundle import ModelBundle

FIELD = "controlnet.model"
BUILTIN_CONTROLNETS = ("tiny",)
CONTROLNET_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
ALLOWED_CONTROLNETS = (
    "tiny (built-in, random weights), a diffusers ControlNet folder, a .safetensors/.pth/.bin ControlNet "
    "file, a ControlNet name in model.models_dir, or a hub id (org/name) in the local Hugging Face cache"
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ORIGINAL_PREFIX = "control_model."
_LABEL_EMB = {"0": "add_embedding.linear_1", "2": "add_embedding.linear_2"}
"""An SDXL ControlNet's original ``label_emb.0.N`` (the added size/pooled embedding's MLP) in diffusers' names."""
_GLOBAL_POOLING = re.compile(r"^\s*global_average_pooling\s*:\s*(true|True|TRUE)\b", re.MULTILINE)


# ---- where a ControlNet comes from -------------------------------------------------------------------


def locate_controlnet(
    name: str, *, models_dir: str | Path | None = None, field: str = FIELD
) -> tuple[str, str]:
    """``(kind, where)`` for ``name`` without loading anything: kind is builtin, folder, file or hub.

    Used before any model loads, so a typo in a unit's model fails at once, naming the unit's field.
    """
    if not isinstance(name, str) or not name.strip():
        raise FlipbookError(field, name, ALLOWED_CONTROLNETS)
    if name in BUILTIN_CONTROLNETS:
        return "builtin", name
    path = Path(name).expanduser()
    if path.exists():
        return ("folder" if path.is_dir() else "file"), str(path)
    hub_like = bool(_HUB_ID.match(name))
    if path.suffix.lower() in CONTROLNET_SUFFIXES or (os.sep in name and not hub_like) or path.is_absolute():
        raise FlipbookError(field, name, ALLOWED_CONTROLNETS, detail="no such file or folder")
    if models_dir is not None:
        folders = ModelsDir(models_dir)  # a bad models_dir is its own error, on model.models_dir
        try:
            found = folders.find("controlnet", name)
            return ("folder" if found.is_dir() else "file"), str(found)
        except FlipbookError as error:
            if not hub_like:
                raise FlipbookError(field, name, error.allowed, detail=error.detail) from None
    if hub_like:
        return "hub", name
    raise FlipbookError(field, name, ALLOWED_CONTROLNETS)


def is_union(kind: str, where: str) -> bool | None:
    """Whether a located ControlNet (:func:`locate_controlnet`) is a union model, from its folder's config alone;
    None where that needs its weights (a file, a hub id): the sampling core checks those once loaded."""
    if kind == "builtin":
        return False
    if kind != "folder":
        return None
    for config in (Path(where) / "config.json", Path(where) / "controlnet" / "config.json"):
        if config.is_file():
            try:
                return (
                    json.loads(config.read_text(encoding="utf-8")).get("_class_name")
                    == "ControlNetUnionModel"
                )
            except (OSError, ValueError, AttributeError):
                return None
    return None


def load_controlnet(
    name_or_path: str,
    *,
    models_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    unet_config: Mapping[str, Any] | None = None,
    field: str = FIELD,
) -> ControlNetModel:
    """A ``ControlNetModel`` in eval mode on ``device`` / ``dtype`` (float32 when None); see the module
    docstring for what ``name_or_path`` may be. ``unet_config`` is the UNet a ``tiny`` ControlNet is built
    to fit (default: the built-in tiny model's). Every problem with the input is a FlipbookError on ``field``.
    """
    kind, where = locate_controlnet(name_or_path, models_dir=models_dir, field=field)
    if kind == "builtin":
        controlnet = tiny_controlnet(unet_config if unet_config is not None else _builtin_tiny_unet_config())
    elif kind == "file":
        controlnet = load_controlnet_file(where, field=field)
    else:
        controlnet = _from_pretrained(where, local_files_only=kind == "folder" or _hub_offline(), field=field)
    return controlnet.to(torch.device(device), dtype or torch.float32).eval()


def _builtin_tiny_unet_config() -> Mapping[str, Any]:
    from flipbook.models.families.sd.builtin import tiny_components

    return tiny_components()["unet"].config


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


# ---- tiny ------------------------------------------------------------------------------------------------


def tiny_controlnet(unet_config: Mapping[str, Any], seed: int = 0) -> ControlNetModel:
    """A random ControlNet that fits a UNet with ``unet_config`` (same blocks, widths, cross-attention size).

    Built with ``ControlNetModel.from_unet`` from the config alone, then the convolutions ControlNet starts at
    zero (``controlnet_cond_embedding.conv_out``, the zero convs, the mid-block conv) get small random
    weights: a freshly initialised ControlNet adds nothing, and a test ControlNet must visibly steer. Same
    seed, same weights; the global torch RNG is left untouched.
    """
    from diffusers import ControlNetModel, UNet2DConditionModel

    from flipbook.models.weights import empty_weights

    shape_only = empty_weights(lambda: UNet2DConditionModel.from_config(dict(unet_config)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        controlnet = ControlNetModel.from_unet(shape_only, load_weights_from_unet=False)
        zero_started = [
            controlnet.controlnet_cond_embedding.conv_out,
            controlnet.controlnet_mid_block,
            *controlnet.controlnet_down_blocks,
        ]
        for conv in zero_started:
            torch.nn.init.normal_(conv.weight, std=0.05)
            torch.nn.init.normal_(conv.bias, std=0.05)
    return controlnet.eval()


# ---- folders and hub ids -------------------------------------------------------------------------------


def _from_pretrained(ref: str, *, local_files_only: bool, field: str) -> ControlNetModel:
    """A diffusers ControlNet folder (or a pipeline folder's ``controlnet/``), or a hub id; a union ControlNet
    (``ControlNetUnionModel`` in its config) loads as one."""
    from diffusers import ControlNetModel, ControlNetUnionModel

    subfolder = "controlnet" if (Path(ref) / "controlnet" / "config.json").is_file() else None
    try:
        config = ControlNetModel.load_config(ref, subfolder=subfolder, local_files_only=local_files_only)
        cls = ControlNetUnionModel if config.get("_class_name") == "ControlNetUnionModel" else ControlNetModel
        controlnet = cls.from_pretrained(ref, subfolder=subfolder, local_files_only=local_files_only)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
        if Path(ref).exists():
            detail = refused_pickle(error) or f"the folder could not be loaded: {first_line(error)}"
        elif local_files_only:
            detail = "not in the local Hugging Face cache (HF_HUB_OFFLINE is set)"
        else:
            detail = f"not in the local Hugging Face cache and the hub can't be reached: {first_line(error)}"
        raise FlipbookError(field, ref, ALLOWED_CONTROLNETS, detail=detail) from None
    missing = [name for name, tensor in controlnet.state_dict().items() if tensor.is_meta]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FlipbookError(field, ref, ALLOWED_CONTROLNETS, detail=f"weight {missing[0]!r} missing{more}")
    return controlnet


# ---- single files --------------------------------------------------------------------------------------


def load_controlnet_file(path: str | Path, *, field: str = FIELD) -> ControlNetModel:
    """A single-file ControlNet, offline, in the original or the diffusers layout (see the module docstring).

    A file flipbook wrote may embed its config (``{"controlnet": {...}}`` under the
    ``flipbook_config`` metadata key, as checkpoints do); it is then the template for the values shapes hide.
    """
    from flipbook.models.weights import read_checkpoint

    path = Path(path)
    try:
        state, embedded = read_checkpoint(path, suffixes=CONTROLNET_SUFFIXES)
    except FlipbookError as error:
        raise FlipbookError(field, str(path), ALLOWED_CONTROLNETS, detail=error.detail) from None
    state = diffusers_controlnet_state(state, path=path, field=field)
    template = embedded.get("controlnet") if isinstance(embedded, dict) else None
    config = infer_controlnet_config(state, template, path=path, field=field)
    if _yaml_says_global_pooling(path):
        config["global_pool_conditions"] = True
    try:
        return _build(state, config)
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        raise FlipbookError(
            field,
            str(path),
            ALLOWED_CONTROLNETS,
            detail=f"the weights do not form a ControlNet: {first_line(error)}",
        ) from None


def diffusers_controlnet_state(
    state: Mapping[str, torch.Tensor], *, path: object = "<state dict>", field: str = FIELD
) -> dict[str, torch.Tensor]:
    """A ControlNet state dict in diffusers' key layout, whatever layout the file used.

    Original files (``control_model.*``, or the same keys without the prefix as lllyasviel's ``.pth`` files
    have them) are renamed with diffusers' ``convert_controlnet_checkpoint``; diffusers-layout files pass as
    they are. SDXL ControlNets (``label_emb``: the added size/pooled embedding) are read the same way, their
    ``label_emb.0.{0,2}`` renamed to diffusers' ``add_embedding.linear_{1,2}`` (which diffusers' converter
    leaves out). Anything else (an SD checkpoint, a ControlNet-LoRA) is a FlipbookError.
    """
    if "controlnet_cond_embedding.conv_in.weight" in state:
        return dict(state)
    if any(key.startswith(_ORIGINAL_PREFIX) for key in state):
        state = {
            k.removeprefix(_ORIGINAL_PREFIX): v for k, v in state.items() if k.startswith(_ORIGINAL_PREFIX)
        }
    if "input_hint_block.0.weight" not in state:
        lora = any("lora" in key for key in state)
        detail = (
            "a ControlNet-LoRA, which is not supported yet"
            if lora
            else "no ControlNet weights (input_hint_block / controlnet_cond_embedding) found"
        )
        raise _not_supported(path, field, detail)
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    blocks = sorted({int(m[1]) for key in state if (m := re.match(r"input_blocks\.(\d+)\.", key))})
    downsamples = [i for i in blocks if f"input_blocks.{i}.0.op.weight" in state]
    layers = downsamples[0] - 1 if downsamples else len(blocks) - 1
    added = {
        _LABEL_EMB[m[1]] + m[2]: value
        for key, value in state.items()
        if (m := re.fullmatch(r"label_emb\.0\.([02])(\..+)", key))
    }
    converted = convert_controlnet_checkpoint(dict(state), {"layers_per_block": layers})
    return {key: value for key, value in {**converted, **added}.items() if value is not None}


def _not_supported(path: object, field: str, detail: str) -> FlipbookError:
    return FlipbookError(field, str(path), ALLOWED_CONTROLNETS, detail=detail)


def infer_controlnet_config(
    state: Mapping[str, torch.Tensor],
    template: Mapping[str, Any] | None = None,
    *,
    path: object = "<state dict>",
    field: str = FIELD,
) -> dict[str, Any]:
    """A ControlNetModel config from a diffusers-layout state dict: every size from the tensor shapes, the
    rest (GroupNorm groups, attention heads) from ``template`` (a ControlNet config), else from SD 1.5's or
    SD 2's shipped UNet config by cross-attention width, adjusted where the widths demand it."""
    from flipbook.models.weights import head_counts, norm_groups

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise FlipbookError(field, str(path), ALLOWED_CONTROLNETS, detail=f"weight {key!r} missing")
        return tuple(state[key].shape)

    levels = sorted({int(m[1]) for key in state if (m := re.match(r"down_blocks\.(\d+)\.", key))})
    if not levels:
        raise _not_supported(path, field, "no down blocks found")
    widths = [shape(f"down_blocks.{level}.resnets.0.conv2.weight")[0] for level in levels]
    layers = len({m[1] for key in state if (m := re.match(r"down_blocks\.0\.resnets\.(\d+)\.", key))})
    attention = [any(k.startswith(f"down_blocks.{level}.attentions.") for k in state) for level in levels]
    to_k = next((k for k in state if k.endswith("attn2.to_k.weight")), None)
    context = int(state[to_k].shape[-1]) if to_k is not None else 768
    base = dict(template) if template else _shipped_unet_config(context)
    config = {
        key: base[key]
        for key in ("attention_head_dim", "num_attention_heads", "norm_num_groups", "norm_eps", "act_fn")
        if key in base
    }
    embedding = [shape("controlnet_cond_embedding.conv_in.weight")[0]]
    blocks = sorted(
        {int(m[1]) for k in state if (m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.", k))}
    )
    embedding += [shape(f"controlnet_cond_embedding.blocks.{b}.weight")[0] for b in blocks if b % 2 == 1]
    config.update(
        in_channels=shape("conv_in.weight")[1],
        conditioning_channels=shape("controlnet_cond_embedding.conv_in.weight")[1],
        conditioning_embedding_out_channels=embedding,
        block_out_channels=widths,
        layers_per_block=layers,
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        cross_attention_dim=context,
        norm_num_groups=norm_groups(widths, int(config.get("norm_num_groups", 32))),
    )
    if template and "global_pool_conditions" in template:
        config["global_pool_conditions"] = bool(template["global_pool_conditions"])
    proj_in = next((k for k in state if k.endswith(".proj_in.weight")), None)
    if proj_in is not None:
        depths = [
            _transformer_depth(state, level) if a else 1 for level, a in zip(levels, attention, strict=True)
        ]
        config.update(
            use_linear_projection=state[proj_in].ndim == 2,
            transformer_layers_per_block=depths[0] if len(set(depths)) == 1 else depths,
        )
    if _UNION_KEY in state:
        config.update(_union_config(state, template or {}, shape))
    if "add_embedding.linear_1.weight" in state:  # SDXL: pooled text embedding + 6 size numbers
        config.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=config.get(
                "addition_time_embed_dim", base.get("addition_time_embed_dim", 256)
            ),
            projection_class_embeddings_input_dim=shape("add_embedding.linear_1.weight")[1],
        )
    if not template:
        config["attention_head_dim"] = head_counts(widths, config.get("attention_head_dim", 8))
        if config.get("num_attention_heads") is not None:
            config["num_attention_heads"] = head_counts(widths, config["num_attention_heads"])
    return config


_UNION_KEY = "task_embedding"
"""A union ControlNet (``ControlNetUnionModel``, xinsir's controlnet-union-sdxl) has, besides a ControlNet's
weights, a control-type embedding and a small transformer over the controls."""


def _union_config(state: Mapping[str, torch.Tensor], template: Mapping[str, Any], shape) -> dict[str, Any]:
    """A union ControlNet's own sizes from its shapes: control types and transformer width from
    ``task_embedding``, layers from ``transformer_layes.N``, the projection from ``spatial_ch_projs``; the
    control-type time embedding's width is ``control_add_embedding``'s input over the control types. Heads (no
    shape shows them) from ``template``, else 8 as in every published union model."""
    types, channels = shape(_UNION_KEY)
    layers = {m[1] for key in state if (m := re.match(r"transformer_layes\.(\d+)\.", key))}
    return {
        "num_control_type": types,
        "num_trans_channel": channels,
        "num_trans_layer": len(layers),
        "num_trans_head": int(template.get("num_trans_head", 8)),
        "num_proj_channel": shape("spatial_ch_projs.weight")[0],
        "addition_time_embed_dim": shape("control_add_embedding.linear_1.weight")[1] // types,
    }


def _transformer_depth(state: Mapping[str, torch.Tensor], level: int) -> int:
    """Transformer blocks in the first attention of down level ``level`` (SDXL: 2 and 10)."""
    pattern = re.compile(rf"down_blocks\.{level}\.attentions\.0\.transformer_blocks\.(\d+)\.")
    return max(len({m[1] for key in state if (m := pattern.match(key))}), 1)


def _shipped_unet_config(cross_attention_dim: int) -> dict[str, Any]:
    """SD 1.5's UNet config for 768-wide text, SD 2's (base) for 1024, SDXL base's for 2048: the template for
    what shapes hide."""
    from flipbook.models.families.sd.single_file import unet_template
    from flipbook.models.families.sdxl.builtin import SDXL_UNET_CONFIG

    if cross_attention_dim == SDXL_UNET_CONFIG["cross_attention_dim"]:
        return dict(SDXL_UNET_CONFIG)
    return unet_template(cross_attention_dim)


def _yaml_says_global_pooling(path: Path) -> bool:
    """sd-webui-controlnet keeps a ``<model>.yaml`` next to each file; shuffle models set
    ``global_average_pooling: True`` there, which diffusers calls ``global_pool_conditions``."""
    yaml = path.with_suffix(".yaml")
    try:
        return bool(_GLOBAL_POOLING.search(yaml.read_text(encoding="utf-8")))
    except OSError:
        return False


def _build(state: Mapping[str, torch.Tensor], config: dict[str, Any]) -> ControlNetModel:
    """The model on the meta device, then every parameter from ``state``, strictly (extra keys ignored)."""
    from diffusers import ControlNetModel, ControlNetUnionModel

    from flipbook.models.weights import empty_weights

    cls = ControlNetUnionModel if _UNION_KEY in state else ControlNetModel
    controlnet = empty_weights(lambda: cls.from_config(config))
    weights: dict[str, torch.Tensor] = {}
    for key, target in controlnet.state_dict().items():
        tensor = state.get(key)
        if tensor is None:
            raise KeyError(f"weight {key!r} missing")
        if tensor.shape != target.shape:
            if tensor.numel() != target.numel():
                raise ValueError(
                    f"weight {key!r} has shape {tuple(tensor.shape)}, needs {tuple(target.shape)}"
                )
            tensor = tensor.reshape(target.shape)  # a 1x1 conv stored as a linear weight, or the reverse
        weights[key] = (tensor.float() if tensor.is_floating_point() else tensor).contiguous()
    controlnet.load_state_dict(weights, strict=True, assign=True)
    return controlnet.eval()


# ---- one run's ControlNets -----------------------------------------------------------------------------


class ControlNets:
    """The ControlNets of one run, by name: each is loaded on first use, on the model's device and dtype, and
    kept until the run ends (one instance per run, owned by whoever owns the run's models; nothing global).

    ``fields`` maps a name to the spec field that names it (``controlnet[1].model``) for error messages.
    """

    def __init__(self, models_dir: str | Path | None = None, fields: Mapping[str, str] | None = None) -> None:
        self.models_dir = models_dir
        self.fields = dict(fields or {})
        self._loaded: dict[tuple, ControlNetModel] = {}
        self.loads = 0

    def get(self, name: str, model: ModelBundle) -> ControlNetModel:
        """The ControlNet ``name`` for ``model`` (loaded now if this run has not loaded it yet)."""
        unet = model.unet
        key = (name, str(model.device), unet.dtype, tuple(unet.config.block_out_channels))
        if key not in self._loaded:
            field = self.fields.get(name, FIELD)
            controlnet = load_controlnet(
                name, models_dir=self.models_dir, device=model.device, dtype=unet.dtype,
                unet_config=unet.config, field=field,
            )  # fmt: skip
            check_fits(controlnet, unet, name, field=field)
            self._loaded[key] = controlnet
            self.loads += 1
        return self._loaded[key]


def check_fits(controlnet: ControlNetModel, unet: torch.nn.Module, name: str, *, field: str = FIELD) -> None:
    """A ControlNet adds its outputs to the UNet's skip connections: the two must share text width, block
    widths and depth, which is what "made for this model family" means in practice."""
    for key in ("cross_attention_dim", "block_out_channels", "layers_per_block", "in_channels"):
        have, want = controlnet.config.get(key), unet.config.get(key)
        if key == "in_channels":
            want = (
                4 if want == 9 else want
            )  # an inpainting UNet's ControlNets see the plain 4-channel latents
        if _plain(have) != _plain(want):
            raise FlipbookError(
                field,
                name,
                "a ControlNet made for this model's family "
                "(SD 1.x ControlNets for SD 1.x, SD 2.x for 2.x, SDXL for SDXL)",
                detail=f"its {key} is {_plain(have)}, the model's is {_plain(want)}",
            )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value

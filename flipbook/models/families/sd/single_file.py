"""Load single-file Stable Diffusion 1.x / 2.x checkpoints (``.safetensors``, ``.ckpt``) fully offline.

How a file becomes a :class:`~diffusers.StableDiffusionPipeline`, with no hub access on any code path:

1. **Read safely.** ``.safetensors`` with safetensors; ``.ckpt`` only with ``torch.load(weights_only=True)``
   (no mmap: the weights are copied into memory; :mod:`flipbook.models.pickles`), so a pickle that needs
   anything beyond tensors and plain containers is refused instead of executed. Missing files, unknown extensions, truncated or corrupt files,
   Git LFS pointers and files that are not SD checkpoints each raise one :class:`FlipbookError` on field
   ``"model"`` naming the path.
2. **Family** (:func:`detect_family`): OpenCLIP text-encoder keys (``cond_stage_model.model.*``) or a
   cross-attention width of 1024 mean SD 2.x; OpenAI CLIP keys or a width of 768 mean SD 1.x. SDXL
   (``conditioner.embedders.*``) is left to the SDXL family.
3. **Prediction type** (:func:`resolve_prediction_type`): the explicit argument, else an A1111-style
   ``<checkpoint>.yaml`` next to the file (``parameterization: "v"`` -> ``v_prediction``; a yaml without it
   -> ``epsilon``), else what a flipbook-written file records, else ``v_prediction`` for SD 2.x (most SD 2.x
   checkpoints in use are 768-v) and ``epsilon`` for SD 1.x.
4. **Architecture: a template, then sizes from the tensors.** Each component starts from a template config:
   the ``config=`` folder's, else the configs a flipbook-written file embeds (see
   :func:`flipbook.models.families.sd.convert.save_original_checkpoint`), else the shipped diffusers config of the family
   (``configs/sd15``, ``configs/sd2`` for 768-v, ``configs/sd2-base`` for 512 epsilon). Then every size that
   a tensor shape reveals overrides the template: UNet ``block_out_channels``, ``layers_per_block``, block
   types, ``in/out_channels``, ``cross_attention_dim``, ``use_linear_projection``,
   ``transformer_layers_per_block``; VAE ``block_out_channels``, ``layers_per_block``, ``latent_channels``;
   text encoder ``hidden_size``, ``intermediate_size``, ``num_hidden_layers``, ``vocab_size``,
   ``max_position_embeddings``. Shapes are the ground truth, so a fine-tune, a pruned model or a tiny test
   model in SD block layout loads without any config; and a template can never disagree with the weights.

   Why not infer everything: a few hyperparameters leave no trace in any shape -- GroupNorm group counts,
   attention head counts (UNet and text encoder) and the default sample size. They come from the template:
   for real SD 1.x/2.x checkpoints the shipped values are the right ones. When the inferred widths are not
   divisible by the template's value (a non-standard model), a compatible value is chosen (the gcd for
   groups; 64-channel heads) so the model still builds and all weights load exactly, but its outputs are
   only exact if those guesses are right -- which is why flipbook embeds its configs in the files it writes,
   and why ``config=`` exists for foreign non-standard models.
5. **Weights.** Models are built on the meta device (no random init, so SD 1.5 builds in well under a
   second), and every parameter is taken from the checkpoint through the same key map that
   :mod:`flipbook.models.families.sd.convert` writes with (q/k/v split out of OpenCLIP's fused ``in_proj``; the VAE's 1x1
   conv attention reshaped to linear), then loaded with ``strict=True``. A missing weight or a shape that
   does not fit is an error, never a silently random layer. Extra keys (EMA copies, ``position_ids``, the
   OpenCLIP layer SD 2.x does not use) are ignored.

The tokenizer comes from :func:`flipbook.models.families.sd.tokenizer.clip_tokenizer`; no safety checker is loaded.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from flipbook.errors import FlipbookError, first_line
from flipbook.models import weights
from flipbook.models.families import get_family
from flipbook.models.families.sd.convert import (
    CLIP_PREFIX,
    OPENCLIP_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    clip_original_key,
    openclip_original_key,
    unet_original_key,
    vae_original_key,
)
from flipbook.models.weights import empty_weights, head_counts, norm_groups

if TYPE_CHECKING:
    from diffusers import AutoencoderKL

logger = logging.getLogger(__name__)

Family = Literal["sd1", "sd2"]
SUPPORTED_SUFFIXES = (".safetensors", ".ckpt")
PREDICTION_TYPES = ("epsilon", "v_prediction")
COMPONENT_FILES = {
    "unet": "unet/config.json",
    "vae": "vae/config.json",
    "text_encoder": "text_encoder/config.json",
    "scheduler": "scheduler/scheduler_config.json",
}
ALLOWED_MODEL = (
    "a Stable Diffusion 1.x or 2.x single-file checkpoint (.safetensors, or a .ckpt holding only tensors)"
)
ALLOWED_CONFIG = (
    "a folder in diffusers layout with any of unet/config.json, vae/config.json, text_encoder/config.json, "
    "scheduler/scheduler_config.json"
)
VAE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")
ALLOWED_VAE = (
    "a Stable Diffusion VAE file (.safetensors, .ckpt, .pt or .bin; original or diffusers layout) "
    "or a diffusers VAE folder"
)
_CLIP_ANY_PREFIX = "cond_stage_model.transformer."
_SDXL_PREFIX = "conditioner.embedders."
_YAML_PARAMETERIZATION = re.compile(r"""^\s*parameterization\s*:\s*["']?([A-Za-z0-9_]+)["']?\s*(?:#.*)?$""")
# Attention names of diffusers < 0.14 VAE files, still found in older ``diffusion_pytorch_model.bin`` files.
_LEGACY_VAE_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_YAML_VALUES = {"v": "v_prediction", "eps": "epsilon", "epsilon": "epsilon", "v_prediction": "v_prediction"}


def _model_error(path: object, detail: str) -> FlipbookError:
    return FlipbookError("model", str(path), ALLOWED_MODEL, detail=detail)


# ----------------------------------------------------------------------------------------------- family


def _as_shapes(keys_or_shapes: Mapping[str, Any] | Iterable[str]) -> dict[str, tuple[int, ...] | None]:
    if isinstance(keys_or_shapes, Mapping):
        shapes: dict[str, tuple[int, ...] | None] = {}
        for key, value in keys_or_shapes.items():
            if hasattr(value, "shape"):
                shapes[key] = tuple(value.shape)
            elif isinstance(value, (tuple, list, torch.Size)):
                shapes[key] = tuple(int(d) for d in value)
            else:
                shapes[key] = None
        return shapes
    return dict.fromkeys(keys_or_shapes)


def _context_dim(shapes: Mapping[str, tuple[int, ...] | None]) -> int | None:
    for key, shape in shapes.items():
        if key.startswith(UNET_PREFIX) and key.endswith("attn2.to_k.weight") and shape:
            return shape[-1]
    return None


def sd_variant(keys_or_shapes: Mapping[str, Any] | Iterable[str]) -> Family | None:
    """``"sd1"`` or ``"sd2"`` when a checkpoint's keys (or keys with tensors/shapes) are an SD 1.x/2.x
    single-file checkpoint, else None. Never raises: the registry asks every family in turn."""
    shapes = _as_shapes(keys_or_shapes)
    context = _context_dim(shapes)
    if any(key.startswith(_SDXL_PREFIX) for key in shapes) or context == 2048:
        return None
    # OpenCLIP keys, or SD 2.x's 1024-wide cross-attention with a text encoder saved in the transformers layout.
    if any(key.startswith(OPENCLIP_PREFIX) for key in shapes) or context == 1024:
        return "sd2"
    has_unet = any(key.startswith(UNET_PREFIX) for key in shapes)
    if any(key.startswith(_CLIP_ANY_PREFIX) for key in shapes) or (has_unet and context == 768):
        return "sd1"
    return None


def is_sd1(keys_or_shapes: Mapping[str, Any] | Iterable[str]) -> bool:
    """The ``sd1`` family's checkpoint detector (see :func:`sd_variant`)."""
    return sd_variant(keys_or_shapes) == "sd1"


def is_sd2(keys_or_shapes: Mapping[str, Any] | Iterable[str]) -> bool:
    """The ``sd2`` family's checkpoint detector (see :func:`sd_variant`)."""
    return sd_variant(keys_or_shapes) == "sd2"


def checkpoint_problem(keys_or_shapes: Mapping[str, Any] | Iterable[str]) -> str | None:
    """Why a checkpoint no family claims is still recognisable, in words (an SDXL checkpoint, one diffusers
    component's weights), or None when it is nothing this package knows."""
    shapes = _as_shapes(keys_or_shapes)
    if any(key.startswith(_SDXL_PREFIX) for key in shapes):
        return None  # SDXL's layout: the SDXL family says what is wrong with such a file
    if _context_dim(shapes) == 2048:
        return "an SDXL UNet without SDXL's two text encoders"
    if any(key.startswith(("down_blocks.", "text_model.", "encoder.down_blocks.")) for key in shapes):
        return "this looks like one diffusers component's weights, not a full single-file checkpoint"
    return None


def detect_family(keys_or_shapes: Mapping[str, Any] | Iterable[str], *, path: object = None) -> Family:
    """``"sd1"`` or ``"sd2"`` from a checkpoint's keys (an iterable) or keys with tensors/shapes (a mapping).

    Raises :class:`FlipbookError` for SDXL (another family's) and for anything that is not an SD 1.x/2.x
    checkpoint. ``path`` only names the source in the error.
    """
    if not isinstance(keys_or_shapes, Mapping):
        keys_or_shapes = list(keys_or_shapes)
    variant = sd_variant(keys_or_shapes)
    if variant is not None:
        return variant
    detail = (
        checkpoint_problem(keys_or_shapes)
        or "no Stable Diffusion 1.x/2.x UNet and text encoder weights found"
    )
    raise _model_error(path if path is not None else "<state dict>", detail)


# ------------------------------------------------------------------------------------- prediction type


def yaml_prediction_type(checkpoint: str | Path) -> str | None:
    """The prediction type an A1111-style yaml next to ``checkpoint`` declares, or None without a yaml.

    Looks for ``model.yaml`` (A1111's convention) and ``model.safetensors.yaml`` next to
    ``model.safetensors``; reads ``parameterization`` with a line scan (no YAML library needed). A yaml
    without ``parameterization`` means epsilon, LDM's default.
    """
    checkpoint = Path(checkpoint)
    for candidate in (checkpoint.with_suffix(".yaml"), checkpoint.with_name(checkpoint.name + ".yaml")):
        if not candidate.is_file():
            continue
        try:
            text = candidate.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise FlipbookError("model", str(candidate), "a readable yaml file", detail=str(exc)) from exc
        for line in text.splitlines():
            if match := _YAML_PARAMETERIZATION.match(line):
                value = match[1]
                if value not in _YAML_VALUES:
                    raise FlipbookError(
                        "model", str(candidate), "a yaml whose parameterization is 'eps' or 'v'", detail=value
                    )
                return _YAML_VALUES[value]
        return "epsilon"
    return None


def resolve_prediction_type(
    path: str | Path | None, family: Family, explicit: str | None = None, recorded: str | None = None
) -> str:
    """Explicit argument > ``<checkpoint>.yaml`` > ``recorded`` (a stored scheduler config) > family default."""
    if explicit is not None:
        if explicit not in PREDICTION_TYPES:
            raise FlipbookError("prediction_type", explicit, "one of " + ", ".join(PREDICTION_TYPES))
        return explicit
    if path is not None and (from_yaml := yaml_prediction_type(path)) is not None:
        return from_yaml
    if recorded in PREDICTION_TYPES:
        return recorded
    return get_family(family).prediction_type


# ------------------------------------------------------------------------------------------- reading


def read_checkpoint(
    path: str | Path, *, suffixes: tuple[str, ...] = SUPPORTED_SUFFIXES
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """:func:`flipbook.models.weights.read_checkpoint` with this module's wording of what is allowed."""
    return weights.read_checkpoint(path, suffixes=suffixes, allowed=ALLOWED_MODEL)


# ------------------------------------------------------------------------------- configs and templates


def shipped_config_dir(family: Family, prediction_type: str) -> Traversable:
    """The diffusers config folder shipped for ``family``: sd15, sd2 (768-v) or sd2-base (512, epsilon)."""
    name = "sd15" if family == "sd1" else ("sd2" if prediction_type == "v_prediction" else "sd2-base")
    return resources.files("flipbook.models.families.sd").joinpath("configs", name)


def unet_template(cross_attention_dim: int) -> dict[str, Any]:
    """The shipped UNet config of the family whose text is ``cross_attention_dim`` wide (SD 2's 512 base for
    1024, else SD 1.5's): a template for the values no tensor shape reveals (ControlNets use it)."""
    family: Family = "sd2" if cross_attention_dim == 1024 else "sd1"
    return _read_json(shipped_config_dir(family, "epsilon").joinpath("unet", "config.json"), "model")


def _read_json(source: Traversable | Path, field: str) -> dict[str, Any]:
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FlipbookError(
            field, str(source), "a readable JSON config", detail=first_line(exc, with_type=True)
        ) from exc
    if not isinstance(data, dict):
        raise FlipbookError(field, str(source), "a JSON object")
    return data


def _config_folder(config: str | Path | None) -> Path | None:
    if config is None:
        return None
    folder = Path(config)
    if not folder.is_dir():
        raise FlipbookError("config", str(config), ALLOWED_CONFIG, detail="not a folder")
    if not any((folder / name).is_file() for name in COMPONENT_FILES.values()):
        raise FlipbookError("config", str(config), ALLOWED_CONFIG, detail="no component config found")
    return folder


def _templates(
    family: Family,
    prediction_type: Callable[[str | None], str],
    folder: Path | None,
    embedded: dict[str, Any] | None,
) -> tuple[dict[str, dict[str, Any]], str]:
    """Per-component template configs (config folder > embedded > shipped) and the resolved prediction type."""
    chosen: dict[str, dict[str, Any]] = {}
    for component, name in COMPONENT_FILES.items():
        if folder is not None and (folder / name).is_file():
            chosen[component] = _read_json(folder / name, "config")
        elif embedded is not None and isinstance(embedded.get(component), dict):
            chosen[component] = dict(embedded[component])
    recorded = chosen.get("scheduler", {}).get("prediction_type")
    resolved = prediction_type(recorded)
    shipped = shipped_config_dir(family, resolved)
    for component, name in COMPONENT_FILES.items():
        if component not in chosen:
            chosen[component] = _read_json(shipped.joinpath(*name.split("/")), "model")
    return chosen, resolved


def _indices(state: Mapping[str, Any], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m[1]) for key in state if (m := regex.match(key))})


class _Shapes:
    """Shape lookups under one key prefix, with a clear error for what is missing."""

    def __init__(self, state: Mapping[str, torch.Tensor], prefix: str, component: str, path: object):
        self.state, self.prefix, self.component, self.path = state, prefix, component, path

    def has(self, key: str) -> bool:
        return self.prefix + key in self.state

    def __call__(self, key: str) -> tuple[int, ...]:
        tensor = self.state.get(self.prefix + key)
        if tensor is None:
            raise _model_error(
                self.path, f"not a complete SD checkpoint: {self.component} weight {key!r} missing"
            )
        return tuple(tensor.shape)


def infer_unet_config(
    state: Mapping[str, torch.Tensor], template: Mapping[str, Any], *, path: object = None
) -> dict[str, Any]:
    """``template`` with every UNet size that the checkpoint's tensor shapes reveal replaced by the real one."""
    shape = _Shapes(state, UNET_PREFIX, "UNet", path or "<state dict>")
    conv_in = shape("input_blocks.0.0.weight")
    if shape.has("label_emb.0.0.weight") or shape.has("label_emb.weight"):
        raise _model_error(
            shape.path, "class-conditioned UNets (unCLIP, upscalers, SDXL) are not supported yet"
        )
    if conv_in[1] != 4:
        raise _model_error(
            shape.path,
            f"UNet takes {conv_in[1]} input channels: inpainting / instruct-pix2pix / upscaler checkpoints "
            "are not supported yet",
        )
    prefix = re.escape(UNET_PREFIX)
    inputs = _indices(state, rf"{prefix}input_blocks\.(\d+)\.")
    downsamples = [i for i in inputs if shape.has(f"input_blocks.{i}.0.op.weight")]
    layers = downsamples[0] - 1 if downsamples else len(inputs) - 1
    levels = len(downsamples) + 1
    if layers < 1:
        raise _model_error(shape.path, "the UNet's input blocks are not in SD block layout")
    widths, down, up = [], [], []
    for level in range(levels):
        first = 1 + level * (layers + 1)
        widths.append(shape(f"input_blocks.{first}.0.out_layers.3.weight")[0])
        attention = shape.has(f"input_blocks.{first}.1.proj_in.weight")
        down.append("CrossAttnDownBlock2D" if attention else "DownBlock2D")
        attention = shape.has(f"output_blocks.{level * (layers + 1)}.1.proj_in.weight")
        up.append("CrossAttnUpBlock2D" if attention else "UpBlock2D")
    config = dict(template)
    config.update(
        in_channels=conv_in[1],
        out_channels=shape("out.2.weight")[0],
        block_out_channels=widths,
        layers_per_block=layers,
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=norm_groups(widths, int(template.get("norm_num_groups", 32))),
    )
    proj_in = next((k for k in state if k.startswith(UNET_PREFIX) and k.endswith(".proj_in.weight")), None)
    if proj_in is not None:
        attention_prefix = proj_in.removesuffix("proj_in.weight")
        blocks = _indices(state, rf"{re.escape(attention_prefix)}transformer_blocks\.(\d+)\.")
        config.update(
            use_linear_projection=state[proj_in].ndim == 2,
            transformer_layers_per_block=max(len(blocks), 1),
        )
        context = next(
            (k for k in state if k.startswith(attention_prefix) and k.endswith("attn2.to_k.weight")), None
        )
        if context is not None:
            config["cross_attention_dim"] = int(state[context].shape[-1])
    config["attention_head_dim"] = head_counts(widths, template.get("attention_head_dim", 8))
    if template.get("num_attention_heads") is not None:
        config["num_attention_heads"] = head_counts(widths, template["num_attention_heads"])
    return config


def infer_vae_config(
    state: Mapping[str, torch.Tensor], template: Mapping[str, Any], *, path: object = None
) -> dict[str, Any]:
    """``template`` with every VAE size that the checkpoint's tensor shapes reveal replaced by the real one."""
    shape = _Shapes(state, VAE_PREFIX, "VAE", path or "<state dict>")
    conv_in = shape("encoder.conv_in.weight")
    prefix = re.escape(VAE_PREFIX)
    levels = len(_indices(state, rf"{prefix}encoder\.down\.(\d+)\."))
    layers = len(_indices(state, rf"{prefix}encoder\.down\.0\.block\.(\d+)\."))
    if levels < 1 or layers < 1:
        raise _model_error(shape.path, "the VAE is not in SD block layout")
    widths = [shape(f"encoder.down.{level}.block.0.conv1.weight")[0] for level in range(levels)]
    config = dict(template)
    config.update(
        in_channels=conv_in[1],
        out_channels=shape("decoder.conv_out.weight")[0],
        block_out_channels=widths,
        layers_per_block=layers,
        latent_channels=shape("decoder.conv_in.weight")[1],
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
        norm_num_groups=norm_groups(widths, int(template.get("norm_num_groups", 32))),
    )
    return config


def _is_openclip(state: Mapping[str, Any]) -> bool:
    """Whether the text encoder is stored in OpenCLIP's layout (SD 2.x as trained) or the transformers one."""
    return any(key.startswith(OPENCLIP_PREFIX) for key in state)


def _clip_prefix(state: Mapping[str, Any]) -> str:
    """Transformers-layout text-encoder prefix: with ``text_model.`` (usual) or without (old transformers)."""
    if any(key.startswith(CLIP_PREFIX) for key in state):
        return CLIP_PREFIX
    return _CLIP_ANY_PREFIX


def infer_text_encoder_config(
    state: Mapping[str, torch.Tensor], template: Mapping[str, Any], *, path: object = None
) -> dict[str, Any]:
    """``template`` with every text-encoder size that the tensor shapes reveal replaced by the real one.

    The text encoder may be stored in OpenCLIP's layout (SD 2.x as trained) or the transformers one (SD 1.x,
    and some SD 2.x conversions). SD 2.x uses OpenCLIP's penultimate layer, so the diffusers model has one
    layer fewer than the file's ``resblocks`` (24 -> 23); a file that already holds exactly the template's
    layer count (as diffusers' own converter writes) is taken as is. The activation (GELU for OpenCLIP,
    quick GELU for OpenAI CLIP) comes from the template of the detected family.
    """
    where = path or "<state dict>"
    if _is_openclip(state):
        shape = _Shapes(state, OPENCLIP_PREFIX, "text encoder", where)
        vocab, hidden = shape("token_embedding.weight")
        positions = shape("positional_embedding")[0]
        intermediate = shape("transformer.resblocks.0.mlp.c_fc.weight")[0]
        blocks = len(_indices(state, rf"{re.escape(OPENCLIP_PREFIX)}transformer\.resblocks\.(\d+)\."))
        layers = blocks if blocks == template.get("num_hidden_layers") else blocks - 1
    else:
        prefix = _clip_prefix(state)
        shape = _Shapes(state, prefix, "text encoder", where)
        vocab, hidden = shape("embeddings.token_embedding.weight")
        positions = shape("embeddings.position_embedding.weight")[0]
        intermediate = shape("encoder.layers.0.mlp.fc1.weight")[0]
        layers = len(_indices(state, rf"{re.escape(prefix)}encoder\.layers\.(\d+)\."))
    if layers < 1:
        raise _model_error(where, "the text encoder has no layers")
    heads = int(template.get("num_attention_heads", 12))
    if hidden % heads:
        heads = hidden // 64 if hidden % 64 == 0 else 1
    config = dict(template)
    config.update(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        max_position_embeddings=positions,
        num_attention_heads=heads,
    )
    return config


# ------------------------------------------------------------------------------------------- weights


def _fits(have: torch.Size, want: torch.Size) -> bool:
    """Same shape up to trailing singleton dims (a 1x1 conv weight vs a linear weight)."""
    return [d for d in have if d != 1] == [d for d in want if d != 1] and have.numel() == want.numel()


def _load_weights(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    locate: Callable[[str], tuple[str, int | None]],
    dtype: torch.dtype,
    component: str,
    path: object,
) -> None:
    """Fill ``model`` (built on the meta device) from ``state``; every parameter must be found and fit."""
    weights: dict[str, torch.Tensor] = {}
    for key, target in model.state_dict().items():
        original, part = locate(key)
        tensor = state.get(original)
        if tensor is None:
            raise _model_error(path, f"not a complete SD checkpoint: {component} weight {original!r} missing")
        if part is not None:
            if tensor.shape[0] % 3:
                raise _model_error(path, f"{component} weight {original!r} is not a fused q/k/v projection")
            tensor = tensor.chunk(3, dim=0)[part].clone()
        if tensor.shape != target.shape:
            if not _fits(tensor.shape, target.shape):
                raise _model_error(
                    path,
                    f"{component} weight {original!r} has shape {tuple(tensor.shape)}, "
                    f"the model needs {tuple(target.shape)}",
                )
            tensor = tensor.reshape(target.shape)
        if tensor.is_floating_point():
            tensor = tensor.to(dtype)
        weights[key] = tensor.contiguous()
    model.load_state_dict(weights, strict=True, assign=True)
    if any(p.is_meta for p in model.parameters()) or any(b.is_meta for b in model.buffers()):
        raise _model_error(path, f"{component} weights are incomplete")
    model.eval()


def _build_unet(state: Mapping[str, torch.Tensor], config: dict, dtype: torch.dtype, path: object):
    from diffusers import UNet2DConditionModel

    unet = empty_weights(lambda: UNet2DConditionModel.from_config(config))
    layers, up = int(unet.config.layers_per_block), list(unet.config.up_block_types)

    def locate(key: str) -> tuple[str, int | None]:
        return UNET_PREFIX + unet_original_key(key, layers_per_block=layers, up_block_types=up), None

    _load_weights(unet, state, locate, dtype, "UNet", path)
    return unet


def _build_vae(state: Mapping[str, torch.Tensor], config: dict, dtype: torch.dtype, path: object):
    from diffusers import AutoencoderKL

    vae = empty_weights(lambda: AutoencoderKL.from_config(config))
    levels = len(vae.config.block_out_channels)

    def locate(key: str) -> tuple[str, int | None]:
        return VAE_PREFIX + vae_original_key(key, num_levels=levels), None

    _load_weights(vae, state, locate, dtype, "VAE", path)
    return vae


def _build_text_encoder(state: Mapping[str, torch.Tensor], config: dict, dtype: torch.dtype, path: object):
    from transformers import CLIPTextConfig, CLIPTextModel

    text_config = CLIPTextConfig.from_dict({k: v for k, v in config.items() if not k.startswith("_")})
    text_encoder = empty_weights(lambda: CLIPTextModel(text_config))
    if _is_openclip(state):

        def locate(key: str) -> tuple[str, int | None]:
            original, part = openclip_original_key(key)
            return OPENCLIP_PREFIX + original, part

    else:
        prefix = _clip_prefix(state)

        def locate(key: str) -> tuple[str, int | None]:
            return prefix + clip_original_key(key), None

    _load_weights(text_encoder, state, locate, dtype, "text encoder", path)
    return text_encoder


def _build_scheduler(config: Mapping[str, Any], prediction_type: str, source: object):
    import diffusers
    from diffusers import SchedulerMixin

    name = config.get("_class_name", "PNDMScheduler")
    cls = getattr(diffusers, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise FlipbookError(
            "config", str(source), "a scheduler config naming a diffusers scheduler", detail=name
        )
    return cls.from_config(dict(config), prediction_type=prediction_type)


# ------------------------------------------------------------------------------------------- public


def load_single_file(
    path: str | Path,
    *,
    prediction_type: str | None = None,
    torch_dtype: torch.dtype = torch.float32,
    config: str | Path | None = None,
):
    """A :class:`~diffusers.StableDiffusionPipeline` from an SD 1.x/2.x ``.safetensors`` or ``.ckpt`` file.

    Fully offline: nothing on this path talks to the hub. ``prediction_type`` ("epsilon" or "v_prediction")
    overrides what the file, its yaml or its family imply. ``config`` optionally names a diffusers-layout
    folder whose component configs are used as templates (see the module docstring); sizes always come from
    the tensors. Every problem with the input raises :class:`FlipbookError`.
    """
    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        raise FlipbookError("torch_dtype", torch_dtype, "a floating-point torch dtype such as torch.float16")
    if prediction_type is not None and prediction_type not in PREDICTION_TYPES:
        raise FlipbookError("prediction_type", prediction_type, "one of " + ", ".join(PREDICTION_TYPES))
    folder = _config_folder(config)
    path = Path(path)
    state, embedded = read_checkpoint(path)
    return pipeline_from_checkpoint(
        state, embedded, path, prediction_type=prediction_type, torch_dtype=torch_dtype, config_folder=folder
    )


def pipeline_from_checkpoint(
    state: Mapping[str, torch.Tensor],
    embedded: dict[str, Any] | None,
    path: Path,
    *,
    prediction_type: str | None = None,
    torch_dtype: torch.dtype = torch.float32,
    config_folder: Path | None = None,
):
    """The pipeline from a checkpoint's tensors and embedded configs, already read from ``path`` (which names
    it in errors and locates its yaml); the rest of :func:`load_single_file`."""
    from diffusers import StableDiffusionPipeline

    from flipbook.models.families.sd.tokenizer import clip_tokenizer

    if prediction_type is not None and prediction_type not in PREDICTION_TYPES:
        raise FlipbookError("prediction_type", prediction_type, "one of " + ", ".join(PREDICTION_TYPES))
    folder = config_folder
    family = detect_family(state, path=path)
    if embedded is not None and embedded.get("family") != family:
        logger.warning("%s: ignoring embedded configs written for %s", path, embedded.get("family"))
        embedded = None

    templates, resolved = _templates(
        family,
        lambda recorded: resolve_prediction_type(path, family, prediction_type, recorded),
        folder,
        embedded,
    )
    unet_config = infer_unet_config(state, templates["unet"], path=path)
    vae_config = infer_vae_config(state, templates["vae"], path=path)
    text_config = infer_text_encoder_config(state, templates["text_encoder"], path=path)
    try:
        unet = _build_unet(state, unet_config, torch_dtype, path)
        vae = _build_vae(state, vae_config, torch_dtype, path)
        text_encoder = _build_text_encoder(state, text_config, torch_dtype, path)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        # A layout the size inference accepted but the models cannot be built from or loaded with.
        raise _model_error(
            path, f"the weights do not form an SD {family[-1]}.x model ({first_line(exc, with_type=True)})"
        ) from exc
    scheduler = _build_scheduler(templates["scheduler"], resolved, folder or path)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(family),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _vae_state(state: Mapping[str, torch.Tensor], path: object) -> dict[str, torch.Tensor]:
    """A standalone VAE's tensors under full-checkpoint names (``first_stage_model.`` + original key).

    Standalone VAEs come three ways: original keys (A1111's ``vae-ft-mse-840000-ema-pruned``), the same with
    the ``first_stage_model.`` prefix (cut out of a checkpoint), or diffusers keys (a
    ``diffusion_pytorch_model`` file). Renaming them all to what a full checkpoint holds lets the checkpoint
    path's size inference and strict loading do the rest, so both paths read VAEs identically.
    """
    if any(key.startswith(VAE_PREFIX) for key in state):
        return {key: value for key, value in state.items() if key.startswith(VAE_PREFIX)}
    if any(key.startswith("encoder.down_blocks.") for key in state):
        return _diffusers_vae_state(state)
    if any(key.startswith(("encoder.down.", "decoder.up.")) for key in state):
        return {VAE_PREFIX + key: value for key, value in state.items()}
    raise _model_error(path, "no VAE weights (encoder.*, decoder.*) found")


def _diffusers_vae_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Diffusers VAE keys renamed to the original layout; keys that are no VAE parameter are dropped."""
    levels = len(_indices(state, r"encoder\.down_blocks\.(\d+)\."))
    legacy = re.compile(r"(mid_block\.attentions\.0\.)(query|key|value|proj_attn)\.")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = legacy.sub(lambda m: f"{m[1]}{_LEGACY_VAE_ATTENTION[m[2]]}.", key)
        try:
            out[VAE_PREFIX + vae_original_key(key, num_levels=levels)] = value
        except KeyError:
            continue  # a missing parameter is still reported by the strict load
    return out


def _vae_template(embedded: dict[str, Any] | None) -> dict[str, Any]:
    """The VAE config a flipbook-written file embeds, else SD 1.5's (SD 1.x and 2.x VAEs share it)."""
    if embedded is not None and isinstance(embedded.get("vae"), dict):
        return dict(embedded["vae"])
    shipped = shipped_config_dir("sd1", "epsilon").joinpath("vae", "config.json")
    return _read_json(shipped, "vae")


def _read_vae(path: Path, torch_dtype: torch.dtype) -> AutoencoderKL:
    state, embedded = read_checkpoint(path, suffixes=VAE_SUFFIXES)
    state = _vae_state(state, path)
    config = infer_vae_config(state, _vae_template(embedded), path=path)
    try:
        return _build_vae(state, config, torch_dtype, path)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise _model_error(
            path, f"the weights do not form an SD VAE ({first_line(exc, with_type=True)})"
        ) from exc


def load_vae_file(path: str | Path, *, torch_dtype: torch.dtype = torch.float32) -> AutoencoderKL:
    """A standalone SD VAE file (``.safetensors``, ``.ckpt``, ``.pt``, ``.bin``) as an ``AutoencoderKL``.

    Accepts the original layout with or without the ``first_stage_model.`` prefix, and diffusers' layout.
    Sizes come from the tensor shapes and weights load strictly, exactly as for a full checkpoint (see the
    module docstring), so a fine-tuned or small VAE loads without a config and a misfit is never silently
    random. Offline. Every problem with the file raises :class:`FlipbookError` on field ``"vae"``.
    """
    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        raise FlipbookError("torch_dtype", torch_dtype, "a floating-point torch dtype such as torch.float16")
    path = Path(path)
    try:
        return _read_vae(path, torch_dtype)
    except FlipbookError as error:
        raise FlipbookError("vae", str(path), ALLOWED_VAE, detail=error.detail) from error

"""Monocular depth for 3D camera animation (Deforum's ``animation_mode: 3D``).

Depth-estimation models such as DPT/MiDaS and Depth Anything predict *relative inverse depth* (disparity): large
for near pixels, small for far ones, with an unknown scale and shift. :class:`DepthEstimator` returns it
normalised per image to ``[0, 1]``, **1 = the nearest pixel, 0 = the farthest**. A constant prediction (the
``flat`` estimator, or a degenerate model) is all ones: everything at the near plane.

The 3D warp needs *scene depth*: :func:`depth_from_disparity` maps disparity onto ``[near, far]`` so that
``1 / depth`` is linear in disparity (disparity 1 -> ``near``, 0 -> ``far``), which is how inverse depth
behaves. Models that predict metric depth instead (``depth_estimation_type: metric``, ZoeDepth, GLPN,
DepthPro) are inverted first, so every estimator speaks disparity.

Accepted model names: ``flat`` (no model), ``tiny`` (a random-weight DPT built in code, for tests and demos),
a depth-estimation model folder, its name in the models folder (the ``depth`` kind of
:mod:`flipbook.models.folders`: Deforum's ``models/Deforum``, ComfyUI's ``models/depthanything``), or a hub id
in the local Hugging Face cache (``HF_HUB_OFFLINE`` honoured).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from flipbook.errors import FlipbookError
from flipbook.io.atomic import atomic_target
from flipbook.models.device import pick_device, pick_dtype
from flipbook.models.pickles import refused_pickle

ALLOWED_DEPTH_MODELS = (
    "'flat', 'tiny', a depth-estimation model folder (DPT / Depth Anything), its name in the models folder, "
    "or a cached hub id"
)
TINY_IMAGE_SIZE = 32
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_FIELD = "camera.depth_model"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_METRIC_MODEL_TYPES = frozenset({"zoedepth", "glpn", "depth_pro"})


class DepthEstimator:
    """Image -> normalised disparity (``H x W`` float32 in ``[0, 1]``, 1 = nearest); see the module docstring."""

    def __init__(
        self,
        name: str,
        model: torch.nn.Module | None = None,
        processor: Any = None,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        self.name = name
        self.model = model
        self.processor = processor
        self.device = device or torch.device("cpu")
        self.dtype = dtype
        if model is not None:
            model.to(self.device, self.dtype).eval()

    @classmethod
    def load(
        cls,
        name: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        models_dir: str | Path | None = None,
        folders: tuple[str, ...] = ("depth",),
    ) -> DepthEstimator:
        """``flat``, ``tiny``, a model folder, a folder's name among the ``folders`` kinds of the models folder
        ``models_dir`` (an A1111 or ComfyUI install) or a hub id, on the chosen device and dtype."""
        torch_device = pick_device(device)
        torch_dtype = pick_dtype(dtype, torch_device)
        if name == "flat":
            return cls(name, device=torch_device, dtype=torch_dtype)
        if name == "tiny":
            model, processor = tiny_depth_model()
        else:
            model, processor = _load_pretrained(name, models_dir, folders)
        return cls(name, model, processor, device=torch_device, dtype=torch_dtype)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Normalised disparity of a uint8 RGB ``H x W x 3`` image, at the image's size."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 H x W x 3 RGB image, got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        if self.model is None:
            return np.ones((height, width), dtype=np.float32)
        with torch.inference_mode():
            prediction = self._predict(image)
            prediction = F.interpolate(prediction, size=(height, width), mode="bilinear", align_corners=False)
        return normalise_disparity(prediction[0, 0].float().cpu().numpy())

    def _predict(self, image: np.ndarray) -> torch.Tensor:
        """The model's raw disparity as a ``1 x 1 x h x w`` float32 tensor (metric depth is inverted)."""
        inputs = self.processor(images=image, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.dtype)
        predicted = self.model(pixel_values=pixels).predicted_depth.float()
        predicted = predicted.reshape(1, 1, *predicted.shape[-2:])
        if predicts_metric_depth(self.model.config):
            predicted = 1.0 / predicted.clamp_min(1e-6)
        return predicted

    def __repr__(self) -> str:
        kind = "flat" if self.model is None else type(self.model).__name__
        dtype = str(self.dtype).removeprefix("torch.")
        return (
            f"DepthEstimator(name={self.name!r}, model={kind}, device={self.device.type!r}, dtype={dtype!r})"
        )


def normalise_disparity(disparity: np.ndarray) -> np.ndarray:
    """Min/max-normalise to float32 ``[0, 1]``; a constant (or non-finite) range gives all ones."""
    low, high = float(np.min(disparity)), float(np.max(disparity))
    span = high - low
    if not np.isfinite(span) or span <= 1e-12 * max(abs(high), abs(low), 1.0):
        return np.ones(disparity.shape, dtype=np.float32)
    return ((disparity - low) / span).astype(np.float32)


def depth_from_disparity(disparity: np.ndarray, near: float, far: float) -> np.ndarray:
    """Scene depth in ``[near, far]`` with ``1/depth = disparity * (1/near - 1/far) + 1/far``.

    Disparity 1 is ``near``, 0 is ``far``; inverse depth is linear in disparity, so depth grows quickly
    towards the far plane, as it does for a real camera.
    """
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
    inverse = np.asarray(disparity, dtype=np.float32) * (1.0 / near - 1.0 / far) + 1.0 / far
    return (1.0 / inverse).astype(np.float32)


def save_depth_map(depth: np.ndarray, path: Path) -> Path:
    """Write scene depth as a 16-bit grayscale PNG, near = bright, atomically; returns ``path``.

    Brightness is the min/max-normalised inverse depth, so a map made with :func:`depth_from_disparity`
    saves exactly as the estimator's disparity, whatever ``near``/``far`` were. Constant depth is all white.
    Depth must be positive and finite (pass scene depth, not disparity, which is 0 at the far plane).
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2 or not np.all(np.isfinite(depth)) or np.any(depth <= 0):
        raise ValueError("depth must be an H x W array of positive, finite scene depths")
    brightness = normalise_disparity(1.0 / depth).astype(np.float64)
    pixels = np.round(brightness * 65535).astype(np.uint16)
    path = Path(path)
    with atomic_target(path) as tmp:
        PIL.Image.fromarray(pixels).save(tmp, format="PNG")
    return path


def predicts_metric_depth(config: Any) -> bool:
    """Whether a model's output is metric depth (far = large) rather than disparity."""
    if getattr(config, "depth_estimation_type", None) == "metric":
        return True
    return getattr(config, "model_type", None) in _METRIC_MODEL_TYPES


def tiny_depth_model(seed: int = 0) -> tuple[torch.nn.Module, Any]:
    """The built-in ``tiny`` model: a random-weight DPT (hidden 32, 2 layers, 32 px) and its processor.

    The same seed always builds the same weights, and the global torch RNG is left untouched. A wider weight
    init than DPT's default (0.2 vs 0.02) keeps the random output from collapsing to ~0 through the final ReLU.
    """
    from transformers import DPTConfig, DPTForDepthEstimation

    config = DPTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=TINY_IMAGE_SIZE,
        patch_size=8,
        backbone_out_indices=[0, 1],
        reassemble_factors=[2, 1],
        neck_hidden_sizes=[8, 16],
        fusion_hidden_size=16,
        initializer_range=0.2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DPTForDepthEstimation(config).eval()
    return model, tiny_processor()


def tiny_processor() -> Any:
    """A DPT image processor for the tiny model: squash to 32 x 32, ImageNet mean/std (built offline)."""
    try:  # transformers >= 5 names the torchvision-free processor explicitly
        from transformers import DPTImageProcessorPil as Processor
    except ImportError:
        from transformers import DPTImageProcessor as Processor

    return Processor(
        size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
        keep_aspect_ratio=False,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )


def _load_pretrained(
    name: str, models_dir: str | Path | None, folders: tuple[str, ...]
) -> tuple[torch.nn.Module, Any]:
    """A model folder, a name in the models folder or a hub id (in that order) through transformers' Auto
    classes; every failure is one FlipbookError."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FlipbookError(_FIELD, name, ALLOWED_DEPTH_MODELS, detail="a file, not a model folder")
        return _from_pretrained(str(path), local_files_only=True, is_folder=True)
    hub_like = bool(_HUB_ID.match(name))
    found = _in_models_dir(name, models_dir, folders, must_find=not hub_like)
    if found is not None:
        return _from_pretrained(str(found), local_files_only=True, is_folder=True)
    if not hub_like:
        raise FlipbookError(_FIELD, name, ALLOWED_DEPTH_MODELS, detail="no such folder")
    return _from_pretrained(name, local_files_only=_hub_offline(), is_folder=False)


def _in_models_dir(
    name: str, models_dir: str | Path | None, folders: tuple[str, ...], *, must_find: bool
) -> Path | None:
    """The model folder ``name`` names in the first of ``folders`` (models-folder kinds) that has it; None
    without a models folder, or when not found and the name may still be a hub id (else the models folder's
    error: what it holds)."""
    if models_dir is None:
        return None
    from flipbook.models.folders import ModelsDir

    install = ModelsDir(models_dir)  # a bad models_dir is its own error, on model.models_dir
    misses: list[tuple[str, FlipbookError]] = []
    for kind in folders:
        try:
            return install.find(kind, name)
        except FlipbookError as error:
            misses.append((kind, error))
    if must_find and misses:
        there = "; ".join(f"{kind} models: {error.allowed}" for kind, error in misses)
        detail = next((error.detail for _, error in misses if error.detail), None)  # an ambiguous name
        raise FlipbookError(
            _FIELD, name, f"{ALLOWED_DEPTH_MODELS}; in the models folder, {there}", detail=detail
        )
    return None


def _from_pretrained(ref: str, *, local_files_only: bool, is_folder: bool) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    try:
        model, info = AutoModelForDepthEstimation.from_pretrained(
            ref,
            local_files_only=local_files_only,
            # transformers 5 looks for a PEFT adapter config without passing local_files_only on: pass it here
            adapter_kwargs={"local_files_only": local_files_only},
            output_loading_info=True,
        )
        processor = AutoImageProcessor.from_pretrained(ref, local_files_only=local_files_only)
    except Exception as error:  # any loading failure comes from the user's input: report it in one line
        raise FlipbookError(_FIELD, ref, ALLOWED_DEPTH_MODELS, detail=_why(error, is_folder)) from None
    missing = info.get("missing_keys") or []
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        detail = f"weight {sorted(missing)[0]!r} missing{more}"
        raise FlipbookError(_FIELD, ref, ALLOWED_DEPTH_MODELS, detail=detail)
    return model.eval(), processor


def _why(error: BaseException, is_folder: bool) -> str:
    refusal = refused_pickle(error)
    if refusal is not None:
        return refusal
    if is_folder:
        return f"the folder could not be loaded: {_first_line(error)}"
    where = (
        "the local Hugging Face cache (HF_HUB_OFFLINE is set)" if _hub_offline() else "the cache or the hub"
    )
    return f"could not be loaded from {where}: {_first_line(error)}"


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__

"""Upscale finished frames: Pillow Lanczos, or an ESRGAN-family model (any SR model spandrel can load).

Images go in and come out as :class:`PIL.Image.Image` (RGB, or RGBA/LA whose alpha is resized with Lanczos).

Models are the ``.safetensors`` / ``.pth`` / ``.pt`` files users already keep for AUTOMATIC1111
(``models/ESRGAN``, ``models/RealESRGAN``) or ComfyUI (``models/upscale_models``), named as those tools show
them (see :mod:`flipbook.models.folders`). Files are read without running pickled code (safetensors, or
``torch.load(weights_only=True)``); spandrel only sees the resulting tensors and detects the architecture and
scale from their names and shapes.

Large frames are upscaled in overlapping tiles, so the model's (GPU) memory is bounded by the tile size
whatever the frame size; the output is assembled on the CPU, where overlaps are blended with a linear feather
so tile seams do not show. Models are loaded per call, never cached here:
callers that upscale many batches load once with :func:`load_upscaler` and pass the :class:`Upscaler` on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import PIL.Image
import torch

from flipbook.errors import FlipbookError, first_line
from flipbook.models.device import pick_device
from flipbook.models.folders import ModelsDir, models_dir_from_env
from flipbook.models.pickles import load_torch_file

if TYPE_CHECKING:
    from spandrel import ImageModelDescriptor

MODEL_SUFFIXES = (".safetensors", ".pth", ".pt")
MODEL_FIELD = "upscale.model"
ALLOWED_MODEL = "a model loadable by spandrel"
ALLOWED_PURPOSES = ("SR", "Restoration")  # Restoration models (1x: denoise, de-JPEG) always have scale 1
SPANDREL_MISSING = "spandrel needs torch and torchvision installed: pip install spandrel torchvision"


def check_scale(scale: float, field: str = "upscale.scale") -> float:
    """``scale`` as a float if it is a finite number > 0; ``field`` lets the CLI name its own flag."""
    if isinstance(scale, bool) or not isinstance(scale, Real) or not math.isfinite(scale) or scale <= 0:
        raise FlipbookError(field, scale, "a number > 0 (2 doubles width and height)")
    return float(scale)


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(round(w*scale), round(h*scale)), never below 1x1 so tiny scales still give an image."""
    width, height = size
    return max(1, round(width * scale)), max(1, round(height * scale))


def upscale_lanczos(images: Sequence[PIL.Image.Image], scale: float) -> list[PIL.Image.Image]:
    """Resize every image by ``scale`` with Pillow's Lanczos filter (no model, any scale, also < 1)."""
    scale = check_scale(scale)
    return [image.resize(scaled_size(image.size, scale), PIL.Image.Resampling.LANCZOS) for image in images]


# ----------------------------------------------------------------------------------------- loading models


def _import_spandrel() -> ModuleType:
    """spandrel, imported only when a model is loaded: it is optional, and it imports torchvision."""
    try:
        import spandrel
    except ImportError as error:
        raise FlipbookError(MODEL_FIELD, None, ALLOWED_MODEL, detail=f"{SPANDREL_MISSING}; {error}") from None
    return spandrel


def resolve_upscaler_path(name_or_path: str | Path, models_dir: ModelsDir | str | Path | None = None) -> Path:
    """An existing model file, or a name looked up in ``models_dir`` (default: ``FLIPBOOK_MODELS_DIR``)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    folders = models_dir_from_env() if models_dir is None else _as_models_dir(models_dir)
    if folders is None:
        raise FlipbookError(
            MODEL_FIELD,
            str(name_or_path),
            "a .safetensors/.pth/.pt upscaler file, or a model name with --models-dir or FLIPBOOK_MODELS_DIR",
            detail="no such file",
        )
    try:
        return folders.find("upscaler", str(name_or_path))
    except FlipbookError as error:  # ModelsDir names the kind; users know the field
        raise FlipbookError(MODEL_FIELD, error.value, error.allowed, detail=error.detail) from None


def _as_models_dir(models_dir: ModelsDir | str | Path) -> ModelsDir:
    return models_dir if isinstance(models_dir, ModelsDir) else ModelsDir(models_dir)


def read_state_dict(path: Path) -> dict:
    """The file's tensors without running pickled code: safetensors, or ``torch.load(weights_only=True)``.

    spandrel's own loader unpickles ``.pth`` with a restricted unpickler and runs ``.pt`` files as TorchScript;
    reading the file here keeps one safe rule for every model file flipbook opens.
    """
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise FlipbookError(
            MODEL_FIELD, str(path), f"a {'/'.join(MODEL_SUFFIXES)} file", detail=f"unsupported type {suffix}"
        )
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as error:
            # safetensors raises its own error type for every kind of damage
            raise _model_error(path, f"truncated or corrupt safetensors file ({first_line(error)})") from None
    loaded = load_torch_file(path, lambda detail: _model_error(path, detail))
    if not isinstance(loaded, dict):
        raise _model_error(path, f"the file holds a {type(loaded).__name__}, not a state dict")
    return loaded


def _model_error(path: Path, detail: str) -> FlipbookError:
    return FlipbookError(MODEL_FIELD, str(path), ALLOWED_MODEL, detail=detail)


def _descriptor_from_state_dict(state_dict: dict, path: Path) -> ImageModelDescriptor:
    """spandrel's model for ``state_dict``, refused unless it maps an image to a (bigger) image."""
    spandrel = _import_spandrel()
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError:
        raise _model_error(path, "spandrel does not recognise this architecture") from None
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError, AssertionError) as error:
        raise _model_error(path, f"spandrel could not build the model ({first_line(error)})") from None
    if (
        not isinstance(descriptor, spandrel.ImageModelDescriptor)
        or descriptor.purpose not in ALLOWED_PURPOSES
    ):
        purpose = getattr(descriptor, "purpose", type(descriptor).__name__)
        raise _model_error(
            path, f"a {descriptor.architecture.name} {purpose} model, not an upscaler (SR or 1x restoration)"
        )
    if descriptor.input_channels not in (1, 3) or descriptor.output_channels != descriptor.input_channels:
        channels = f"{descriptor.input_channels} -> {descriptor.output_channels}"
        raise _model_error(path, f"the model maps {channels} channels; only RGB or grey models are supported")
    return descriptor


def _model_dtype(descriptor: ImageModelDescriptor, device: torch.device) -> torch.dtype:
    """fp16 on CUDA when the architecture supports it (half the memory, tensor cores), else fp32."""
    return torch.float16 if device.type == "cuda" and descriptor.supports_half else torch.float32


def load_upscaler(
    name_or_path: str | Path,
    *,
    models_dir: ModelsDir | str | Path | None = None,
    device: str | torch.device | None = None,
) -> Upscaler:
    """Load an upscaling model from a file path or a name in ``models_dir`` (A1111 or ComfyUI install).

    ``device`` is ``auto`` (CUDA, then MPS, then CPU) unless given. The model runs in fp16 on CUDA when the
    architecture supports half precision and in fp32 elsewhere.
    """
    path = resolve_upscaler_path(name_or_path, models_dir)
    descriptor = _descriptor_from_state_dict(read_state_dict(path), path)
    target = device if isinstance(device, torch.device) else pick_device(device or "auto")
    descriptor.to(device=target, dtype=_model_dtype(descriptor, target)).eval()
    return Upscaler(descriptor, path=path)


# ----------------------------------------------------------------------------------------- tiled inference


def tile_starts(size: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size``, neighbours overlapping by >= ``overlap``.

    Every tile but possibly the last is full length (the model sees as much context at the border as inside)
    and the spare room is spread evenly, so all overlaps along an axis are about equal and every seam gets the
    same feather. Starts are multiples of ``align`` (the model's ``multiple_of``): pixel-unshuffle models
    such as Real-ESRGAN x2 group pixels in blocks, and a tile starting off the block grid would be computed on
    differently grouped pixels than the whole frame. Tile and overlap are rounded to ``align`` for that.
    """
    units = math.ceil(size / align)
    tile_units = max(1, tile // align)
    overlap_units = min(math.ceil(overlap / align), tile_units - 1)
    if units <= tile_units:
        return [0]
    count = math.ceil((units - overlap_units) / (tile_units - overlap_units))
    return [align * round(i * (units - tile_units) / (count - 1)) for i in range(count)]


def feather(length: int, before: int, after: int) -> torch.Tensor:
    """1-D blend weights for a tile of ``length`` pixels overlapping its neighbours by ``before`` / ``after``.

    Across an overlap of n pixels the weight is 0 over the outer quarter (those pixels sat near the tile's
    edge, where the model saw zero padding instead of the picture), rises linearly over the middle half, and
    is 1 over the inner quarter. The ramps use pixel centres, so the two tiles' weights sum to exactly 1 at
    every pixel of their overlap. A floor of 1e-4 keeps every weight the tile covers positive, so the
    normalising division is safe even where odd tile layouts put several ramps on top of each other.
    """
    weights = torch.ones(length)
    if before > 0:
        weights[:before] *= _ramp(before)
    if after > 0:
        weights[length - after :] *= _ramp(after).flip(0)
    return weights.clamp_(min=1e-4)


def _ramp(size: int) -> torch.Tensor:
    """0 for the first quarter, linear over the middle half (pixel centres), 1 for the last quarter."""
    margin = size // 4
    middle = size - 2 * margin
    ramp = torch.zeros(size)
    ramp[margin : margin + middle] = (torch.arange(middle) + 0.5) / middle
    ramp[margin + middle :] = 1
    return ramp


def _axis_tiles(size: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int, int, int]]:
    """(start, end, overlap with previous, overlap with next) for each tile along one axis."""
    starts = tile_starts(size, tile, overlap, align)
    length = max(align, tile // align * align)
    ends = [min(start + length, size) for start in starts]
    tiles = []
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        before = ends[i - 1] - start if i > 0 else 0
        after = end - starts[i + 1] if i + 1 < len(starts) else 0
        tiles.append((start, end, before, after))
    return tiles


def _check_tiling(tile: int, overlap: int) -> None:
    if not isinstance(tile, int) or isinstance(tile, bool):
        raise FlipbookError("upscale.tile", tile, "an integer tile size in pixels (0 or less: no tiling)")
    if tile > 0 and (not isinstance(overlap, int) or not 0 <= overlap < tile):
        raise FlipbookError("upscale.overlap", overlap, f"an integer >= 0 and < the tile size ({tile})")


class Upscaler:
    """A loaded upscaling model; :meth:`upscale` runs it on one image at a time, tiled."""

    def __init__(self, descriptor: ImageModelDescriptor, *, path: Path | None = None):
        self.descriptor = descriptor
        self.path = path

    def __repr__(self) -> str:
        name = self.path.name if self.path else self.descriptor.architecture.name
        return f"Upscaler({name!r}, scale={self.scale}, device={self.device}, dtype={self.dtype})"

    @property
    def scale(self) -> int:
        """The model's native scale (4 for a 4x ESRGAN), detected by spandrel from the weights."""
        return self.descriptor.scale

    @property
    def device(self) -> torch.device:
        return self.descriptor.device

    @property
    def dtype(self) -> torch.dtype:
        return self.descriptor.dtype

    def upscale(
        self, image: PIL.Image.Image, *, tile: int = 512, overlap: int = 32, outscale: float | None = None
    ) -> PIL.Image.Image:
        """``image`` upscaled by the model, tile by tile (``tile`` <= 0: the whole image at once).

        ``overlap`` is in input pixels. The result is the input size times the model's scale, or, with an
        ``outscale`` other than that, Lanczos-resized to round(size * outscale) (Real-ESRGAN's --outscale).
        """
        _check_tiling(tile, overlap)
        if outscale is not None:
            outscale = check_scale(outscale, "upscale.outscale")
        alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
        mode = "L" if self.descriptor.input_channels == 1 else "RGB"
        pixels = self._to_tensor(image.convert(mode))
        result = self._from_tensor(self._run_tiled(pixels, tile, overlap), mode)
        if alpha is not None:
            result = _with_alpha(result, alpha)
        if outscale is not None and outscale != self.scale:
            result = result.resize(scaled_size(image.size, outscale), PIL.Image.Resampling.LANCZOS)
        return result

    @staticmethod
    def _to_tensor(image: PIL.Image.Image) -> torch.Tensor:
        """1xCxHxW float in [0, 1] on the CPU; tiles move to the model's device one at a time."""
        array = np.asarray(image, dtype=np.uint8)
        array = array[:, :, None] if array.ndim == 2 else array
        return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float().div_(255)

    @staticmethod
    def _from_tensor(pixels: torch.Tensor, mode: str) -> PIL.Image.Image:
        array = pixels[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return PIL.Image.fromarray(array[:, :, 0] if mode == "L" else array, mode)

    @torch.inference_mode()
    def _run(self, pixels: torch.Tensor) -> torch.Tensor:
        """The model on one tile, in its dtype on its device; the result comes back as float32 on the CPU.

        spandrel pads the tile to the architecture's size requirements (minimum, multiple-of, square) and crops
        the output back to tile size x scale.
        """
        output = self.descriptor(pixels.to(self.device, self.dtype))
        return output.float().cpu()

    def _run_tiled(self, pixels: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
        """Run the model per overlapping tile; blend the outputs with feathered weights (a weighted mean)."""
        _, channels, height, width = pixels.shape
        if tile <= 0 or (height <= tile and width <= tile):
            return self._run(pixels)
        scale, align = self.scale, self.descriptor.size_requirements.multiple_of
        out = torch.zeros(1, channels, height * scale, width * scale)
        total = torch.zeros(1, 1, height * scale, width * scale)
        for y0, y1, top, bottom in _axis_tiles(height, tile, overlap, align):
            weight_y = feather((y1 - y0) * scale, top * scale, bottom * scale)
            for x0, x1, left, right in _axis_tiles(width, tile, overlap, align):
                weight_x = feather((x1 - x0) * scale, left * scale, right * scale)
                weight = weight_y[:, None] * weight_x[None, :]
                window = (..., slice(y0 * scale, y1 * scale), slice(x0 * scale, x1 * scale))
                out[window] += self._run(pixels[..., y0:y1, x0:x1]) * weight
                total[window] += weight
        return out / total


def _with_alpha(image: PIL.Image.Image, alpha: PIL.Image.Image) -> PIL.Image.Image:
    """``image`` with ``alpha`` resized to match (Lanczos): models only see colour."""
    result = image.convert("RGBA" if image.mode == "RGB" else "LA")
    result.putalpha(alpha.resize(image.size, PIL.Image.Resampling.LANCZOS))
    return result


# ----------------------------------------------------------------------------------------- frames


def upscale_frames(
    frames: Sequence[PIL.Image.Image],
    *,
    scale: float,
    model: str | Path | Upscaler | None = None,
    models_dir: ModelsDir | str | Path | None = None,
    tile: int = 512,
    overlap: int = 32,
    device: str | None = None,
) -> list[PIL.Image.Image]:
    """Every frame upscaled by ``scale``: Lanczos without ``model``, else the model, Lanczos-finished when
    ``scale`` differs from the model's own (a 4x model at scale 2 runs at 4x, then halves).

    ``model`` is a file, a name in ``models_dir`` or an already loaded :class:`Upscaler` (load once when
    calling this for many batches).
    """
    scale = check_scale(scale)
    if model is None:
        return upscale_lanczos(frames, scale)
    _check_tiling(tile, overlap)
    upscaler = (
        model if isinstance(model, Upscaler) else load_upscaler(model, models_dir=models_dir, device=device)
    )
    return [upscaler.upscale(frame, tile=tile, overlap=overlap, outscale=scale) for frame in frames]


# ----------------------------------------------------------------------------------------- named upscalers

RESIZERS: dict[str, PIL.Image.Resampling] = {
    "None": PIL.Image.Resampling.LANCZOS,  # A1111's "None" upscaler only resizes, with Lanczos
    "Lanczos": PIL.Image.Resampling.LANCZOS,
    "Nearest": PIL.Image.Resampling.NEAREST,
}
"""A1111's upscalers without a model: name -> Pillow's resampling filter."""


def upscale_to(
    image: PIL.Image.Image,
    size: tuple[int, int],
    upscaler: str | Upscaler,
    *,
    models_dir: ModelsDir | str | Path | None = None,
    device: str | torch.device | None = None,
) -> PIL.Image.Image:
    """``image`` at ``size`` as A1111's ``resize_image`` upscales with a named upscaler: a resizer of
    :data:`RESIZERS` resizes directly; a model (a name in ``models_dir`` or a loaded :class:`Upscaler`) runs
    at its own scale until the picture covers ``size`` (at most 3 times, as A1111 does), then Lanczos gives
    exactly ``size``."""
    if isinstance(upscaler, str) and upscaler in RESIZERS:
        return image.resize(size, RESIZERS[upscaler])
    model = (
        upscaler
        if isinstance(upscaler, Upscaler)
        else load_upscaler(upscaler, models_dir=models_dir, device=device)
    )
    for _ in range(3):
        if image.width >= size[0] and image.height >= size[1]:
            break
        image = model.upscale(image)
    return image.resize(size, PIL.Image.Resampling.LANCZOS)

"""ControlNet preprocessors: pure functions from an image to the control image a ControlNet was trained on.

Every function takes a PIL image (any mode) and returns an RGB PIL image of the same size; none downloads
anything. ``canny``, ``lineart``, ``tile`` and ``shuffle`` need no weights at all; ``depth`` runs a
:class:`~flipbook.imaging.depth.DepthEstimator` the caller loaded; ``openpose`` needs the ``controlnet_aux``
package and its annotator weights, which are the user's to install.

Conventions follow the ControlNet 1.1 annotators (and sd-webui-controlnet, where most users meet them): edge
and line maps are white on black, depth is near = white.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import PIL.Image

from flipbook.errors import FlipbookError

if TYPE_CHECKING:
    from flipbook.imaging.depth import DepthEstimator

PREPROCESSORS: tuple[str, ...] = ("none", "canny", "lineart", "tile", "shuffle", "depth", "openpose")
"""What ``[[controlnet]] preprocessor`` accepts ("none" passes the image through unchanged)."""

OPENPOSE_WEIGHTS = "lllyasviel/Annotators"
"""Where controlnet_aux's OpenPose weights come from by default: this hub repo (comfyui_controlnet_aux keeps a copy
under ``ckpts/lllyasviel/Annotators``, which the models folder finds by this name)."""
OPENPOSE_INSTALL = (
    "the controlnet_aux package with its annotator weights "
    "(pip install controlnet_aux; OpenPose weights from the lllyasviel/Annotators hub repo or a local copy)"
)


def _rgb(image: PIL.Image.Image | np.ndarray) -> np.ndarray:
    """A uint8 ``H x W x 3`` RGB array from a PIL image or an array (grey or RGBA are converted)."""
    if isinstance(image, PIL.Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (array.astype(np.float32) * 255).round().clip(0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


def _to_image(gray_or_rgb: np.ndarray) -> PIL.Image.Image:
    """Single-channel maps become three equal channels: ControlNets take RGB conditioning images."""
    if gray_or_rgb.ndim == 2:
        gray_or_rgb = np.repeat(gray_or_rgb[..., None], 3, axis=2)
    return PIL.Image.fromarray(np.ascontiguousarray(gray_or_rgb))


def canny(image: PIL.Image.Image, low_threshold: int = 100, high_threshold: int = 200) -> PIL.Image.Image:
    """OpenCV Canny edges, white on black, on the RGB image as the ControlNet canny annotator runs it."""
    if not 0 <= low_threshold <= high_threshold:
        raise FlipbookError(
            "low_threshold", low_threshold, f"a number from 0 to high_threshold ({high_threshold})"
        )
    return _to_image(cv2.Canny(_rgb(image), low_threshold, high_threshold))


def lineart(image: PIL.Image.Image, sigma: float = 6.0) -> PIL.Image.Image:
    """sd-webui-controlnet's weight-free "lineart_standard": how much darker each pixel is than its blurred
    surroundings, scaled by the median line strength, so dark lines on a light ground come out white on black
    (what ControlNet lineart models expect)."""
    x = _rgb(image).astype(np.float32)
    blurred = cv2.GaussianBlur(x, (0, 0), sigma)
    intensity = np.min(blurred - x, axis=2).clip(0, 255)
    lines = intensity[intensity > 8]
    scale = max(16.0, float(np.median(lines))) if lines.size else 16.0
    return _to_image((intensity / scale * 127).clip(0, 255).astype(np.uint8))


def tile(image: PIL.Image.Image, downscale: float = 4.0) -> PIL.Image.Image:
    """A blurred copy at the same size: area-downscaled by ``downscale`` and scaled back up bicubically, the
    low-detail picture a tile ControlNet fills with new detail."""
    if not downscale >= 1.0:
        raise FlipbookError("tile_downscale", downscale, "a factor of at least 1")
    rgb = _rgb(image)
    height, width = rgb.shape[:2]
    small = (max(1, round(width / downscale)), max(1, round(height / downscale)))
    reduced = cv2.resize(rgb, small, interpolation=cv2.INTER_AREA)
    return _to_image(cv2.resize(reduced, (width, height), interpolation=cv2.INTER_CUBIC))


def shuffle(image: PIL.Image.Image, seed: int = 0) -> PIL.Image.Image:
    """ControlNet 1.1's content shuffle: every pixel is taken from a place given by a smooth random field, so
    colours and textures survive while the layout is scrambled. The field comes from ``seed`` alone (the
    frame's seed), so the same frame always shuffles the same way. Nearest-pixel sampling: every output pixel
    is a pixel of the input."""
    rgb = _rgb(image)
    height, width = rgb.shape[:2]
    rng = np.random.default_rng(seed % 2**64)
    cell = max(8, round(256 * min(height, width) / 512))  # the annotator's 256 px at 512, scaled
    x = _noise_disk(rng, height, width, cell) * float(width - 1)
    y = _noise_disk(rng, height, width, cell) * float(height - 1)
    return _to_image(cv2.remap(rgb, x, y, cv2.INTER_NEAREST))


def _noise_disk(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Smooth noise in ``[0, 1]``: a coarse uniform grid upscaled bicubically, as the annotator makes it."""
    coarse = rng.uniform(0.0, 1.0, size=(height // cell + 2, width // cell + 2)).astype(np.float32)
    noise = cv2.resize(coarse, (width + 2 * cell, height + 2 * cell), interpolation=cv2.INTER_CUBIC)
    noise = noise[cell : cell + height, cell : cell + width]
    noise -= noise.min()
    return (noise / max(float(noise.max()), 1e-6)).astype(np.float32)


def depth(image: PIL.Image.Image, estimator: DepthEstimator) -> PIL.Image.Image:
    """A depth map, near = white, from the estimator's normalised disparity (what depth ControlNets saw)."""
    disparity = estimator(_rgb(image))
    return _to_image((disparity * 255.0).round().clip(0, 255).astype(np.uint8))


def openpose(image: PIL.Image.Image, annotator: Any) -> PIL.Image.Image:
    """Pose skeletons from controlnet_aux's ``OpenposeDetector`` (see :func:`load_openpose`)."""
    size = image.size
    result = annotator(image.convert("RGB"), detect_resolution=min(size), image_resolution=min(size))
    return result.convert("RGB").resize(size, PIL.Image.BILINEAR)


def load_openpose(source: str | None = None) -> Any:
    """controlnet_aux's OpenPose detector from ``source`` (its weights folder or hub id; default the
    :data:`OPENPOSE_WEIGHTS` repo, from the local cache when offline). Without the package, a FlipbookError
    saying what to install."""
    try:
        from controlnet_aux import OpenposeDetector
    except ImportError:
        raise FlipbookError(
            "preprocessor", "openpose", OPENPOSE_INSTALL, detail="controlnet_aux is not installed"
        ) from None
    name = source or OPENPOSE_WEIGHTS
    try:
        return OpenposeDetector.from_pretrained(name)
    except Exception as error:  # any loading failure is the user's setup: one line saying so
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise FlipbookError("preprocessor_model", name, OPENPOSE_INSTALL, detail=first) from None


def preprocess(
    name: str,
    image: PIL.Image.Image,
    *,
    seed: int = 0,
    low_threshold: int = 100,
    high_threshold: int = 200,
    tile_downscale: float = 4.0,
    model: Any = None,
) -> PIL.Image.Image:
    """Run preprocessor ``name`` on ``image``; ``model`` is the depth estimator or OpenPose detector the
    caller loaded once (preprocessors never load models themselves, so a render loads each one once)."""
    if name == "none":
        return image.convert("RGB")
    if name == "canny":
        return canny(image, low_threshold, high_threshold)
    if name == "lineart":
        return lineart(image)
    if name == "tile":
        return tile(image, tile_downscale)
    if name == "shuffle":
        return shuffle(image, seed)
    if name == "depth":
        return depth(image, model)
    if name == "openpose":
        return openpose(image, model if model is not None else load_openpose())
    raise FlipbookError("preprocessor", name, f"one of: {', '.join(PREPROCESSORS)}")

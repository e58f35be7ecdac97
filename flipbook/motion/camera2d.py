"""Deforum-style 2D camera: one 3x3 homography per frame, applied with OpenCV.

Conventions: images are numpy arrays H x W x C (RGB, uint8 or float32) or torch tensors where stated;
pixel coordinates x right, y down, pixel centres at integer coordinates. **Positive values move the
picture right / down / counter-clockwise / closer, in 2D and 3D alike**: positive translation_x moves the
picture right (the camera left); positive translation_y moves the picture down (the camera up); positive
``angle`` (2D) and ``rotation_z`` (3D) rotate the picture counter-clockwise as seen on screen; zoom > 1 and
positive translation_z make the picture grow (the camera moves forward). In 3D, positive rotation_y turns
the camera left so the picture moves right, positive rotation_x tilts the camera up so the picture moves
down (consistent with translation). Rotations are in degrees per frame.

A matrix maps *source* pixel coordinates to *destination* coordinates (homogeneous column vectors):
``(x', y', w') = M @ (x, y, 1)``, the destination pixel is ``(x'/w', y'/w')``. The exception to the sign
conventions above is :class:`PerspectiveFlip`, which keeps Deforum's own signs so imported settings look
the same (see its docstring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F

Border = Literal["replicate", "wrap", "reflect", "zeros"]

_BORDERS: dict[str, int] = {
    "replicate": cv2.BORDER_REPLICATE,
    "wrap": cv2.BORDER_WRAP,
    "reflect": cv2.BORDER_REFLECT_101,
    "zeros": cv2.BORDER_CONSTANT,
}


@dataclass(frozen=True)
class PerspectiveFlip:
    """Deforum's ``flip_2d_perspective``: the picture, as a card facing the camera, turned in 3D.

    Follows Deforum's ``warpMatrix`` (its code, not its argument names): the card is rotated by
    ``R = Rx(phi) @ Ry(gamma) @ Rz(theta)`` about its centre, at the distance where it exactly fills a
    ``fv``-degree view of its diagonal, then projected. So ``theta`` rolls the picture in the image plane
    (positive = clockwise on screen, the opposite of ``angle``), ``phi`` tilts it about the horizontal
    axis (positive brings the bottom edge closer), ``gamma`` pans it about the vertical axis (positive
    brings the left edge closer). All angles and ``fv`` are in degrees; a smaller ``fv`` means a
    stronger perspective. Unlike Deforum, the pivot is the true image centre and zero angles give exactly
    the identity (Deforum's projection matrix keeps a stray 1 in its w row, a slight zoom-out each frame).
    """

    theta: float = 0.0
    phi: float = 0.0
    gamma: float = 0.0
    fv: float = 53.0


def matrix_2d(
    *,
    width: int,
    height: int,
    angle: float = 0.0,
    zoom: float = 1.0,
    translation_x: float = 0.0,
    translation_y: float = 0.0,
    transform_center_x: float = 0.5,
    transform_center_y: float = 0.5,
    perspective_flip: PerspectiveFlip | None = None,
) -> np.ndarray:
    """One frame's 3x3 float64 homography from source to destination pixel coordinates.

    Applied in order: rotation by ``angle`` degrees (counter-clockwise on screen) and scaling by ``zoom``
    about the transform centre, then translation by (``translation_x``, ``translation_y``) pixels, then
    (if given) ``perspective_flip`` about the image centre. The transform centre is
    ``(transform_center_x * (width - 1), transform_center_y * (height - 1))``: fractions of the image
    like Deforum's, with 0 and 1 at the centres of the first and last pixels (0.5 is the exact centre).
    Unlike Deforum, the translation is kept when a perspective flip is given. ``zoom = 0`` is Deforum's
    degenerate warp (``cv2.getRotationMatrix2D(centre, angle, 0)``): every pixel goes to the transform centre,
    a singular matrix that ``warp_2d`` renders as Deforum's OpenCV call does (a flat frame).
    """
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be positive, got {width} x {height}")
    if zoom < 0 or not math.isfinite(zoom):
        raise ValueError(f"zoom must be a number >= 0, got {zoom!r}")
    centre = (transform_center_x * (width - 1), transform_center_y * (height - 1))
    matrix = compose(
        _rotation_zoom(angle, zoom, centre),
        _translation(translation_x, translation_y),
    )
    if perspective_flip is not None:
        matrix = compose(matrix, _perspective_flip(perspective_flip, width, height))
    return matrix


def warp_2d(image: np.ndarray, matrix: np.ndarray, border: Border = "replicate") -> np.ndarray:
    """``image`` (H x W x C or H x W) moved by ``matrix`` (source -> destination), same shape and dtype.

    Bilinear ``cv2.warpPerspective``; uncovered pixels come from ``border``: "replicate" repeats the edge
    pixels, "wrap" tiles the image, "reflect" mirrors it without repeating the edge pixel
    (``BORDER_REFLECT_101``), "zeros" is black.
    """
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {', '.join(map(repr, _BORDERS))}; got {border!r}")
    matrix = _as_matrix(matrix, 3)
    height, width = image.shape[:2]
    warped = cv2.warpPerspective(
        np.ascontiguousarray(image),
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=_BORDERS[border],
        borderValue=0,
    )
    return warped.reshape(image.shape).astype(image.dtype, copy=False)


# grid_sample's padding per border mode; "wrap" pads the image with its own first row and column instead
_PADDING: dict[str, str] = {
    "replicate": "border",
    "reflect": "reflection",
    "zeros": "zeros",
    "wrap": "border",
}
TENSOR_WARP_TOLERANCE = (
    2  # max difference (0-255 levels) of warp_2d_tensor from warp_2d (OpenCV's fixed point)
)


def warp_2d_tensor(image: torch.Tensor, matrix: np.ndarray, border: Border = "replicate") -> torch.Tensor:
    """:func:`warp_2d` of a uint8 H x W x C tensor on its device, same kind out.

    On a GPU (any device but the CPU) :func:`grid_sample_warp`: each destination pixel samples the source
    bilinearly at ``matrix``'s inverse applied to it, as ``cv2.warpPerspective`` does; OpenCV's fixed-point
    arithmetic (1/32-pixel positions, 15-bit weights) is not copied, so values may differ by
    :data:`TENSOR_WARP_TOLERANCE` levels. On the CPU OpenCV's own kernel runs on the tensor's memory (it is
    several times faster there than ``grid_sample``), as does a singular matrix (``zoom = 0``), whose OpenCV
    call defines what Deforum shows then. Border modes as in :func:`warp_2d`.
    """
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {', '.join(map(repr, _BORDERS))}; got {border!r}")
    matrix = _as_matrix(matrix, 3)
    singular = not np.isfinite(matrix).all() or abs(np.linalg.det(matrix)) < 1e-12
    if singular or image.device.type == "cpu":  # on the CPU OpenCV's kernel is the faster one, on a view
        return torch.from_numpy(warp_2d(image.cpu().numpy(), matrix, border)).to(image.device)
    return grid_sample_warp(image, matrix, border)


def grid_sample_warp(image: torch.Tensor, matrix: np.ndarray, border: Border = "replicate") -> torch.Tensor:
    """:func:`warp_2d_tensor`'s kernel off the CPU (an invertible ``matrix``): bilinear ``grid_sample``."""
    height, width, channels = image.shape
    inverse = torch.tensor(np.linalg.inv(matrix), dtype=torch.float64, device=image.device)
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64, device=image.device),
        torch.arange(width, dtype=torch.float64, device=image.device),
        indexing="ij",
    )
    source = inverse[:, 0, None, None] * xs + inverse[:, 1, None, None] * ys + inverse[:, 2, None, None]
    x, y = source[0] / source[2], source[1] / source[2]
    planes = image.permute(2, 0, 1)[None].to(torch.float32)
    if border == "wrap":  # one more row and column, the first ones, so the last pixels blend into them
        x, y = torch.remainder(x, width), torch.remainder(y, height)
        planes = torch.cat([planes, planes[..., :1, :]], dim=2)
        planes = torch.cat([planes, planes[..., :1]], dim=3)
        height, width = height + 1, width + 1
    grid = torch.stack([x * (2 / max(width - 1, 1)) - 1, y * (2 / max(height - 1, 1)) - 1], dim=-1)
    warped = F.grid_sample(
        planes,
        grid[None].to(torch.float32),
        mode="bilinear",
        padding_mode=_PADDING[border],
        align_corners=True,
    )
    return (
        warped[0]
        .permute(1, 2, 0)
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
        .reshape(image.shape[0], -1, channels)
    )


def compose(*matrices: np.ndarray) -> np.ndarray:
    """The single 3x3 matrix that applies ``matrices`` in order (the first argument first)."""
    result = np.eye(3)
    for matrix in matrices:
        result = _as_matrix(matrix, 3) @ result
    return result


def invert(matrix: np.ndarray) -> np.ndarray:
    """The inverse homography (destination -> source), scaled so its bottom-right entry is 1 when possible."""
    inverse = np.linalg.inv(_as_matrix(matrix, 3))
    return inverse / inverse[2, 2] if abs(inverse[2, 2]) > 1e-12 else inverse


def _as_matrix(matrix: np.ndarray, size: int) -> np.ndarray:
    """``matrix`` as a float64 ``size`` x ``size`` array, or a ValueError."""
    array = np.asarray(matrix, dtype=np.float64)
    if array.shape != (size, size):
        raise ValueError(f"expected a {size}x{size} matrix, got shape {array.shape}")
    return array


def _rotation_zoom(angle: float, zoom: float, centre: tuple[float, float]) -> np.ndarray:
    """Counter-clockwise (on screen, y down) rotation by ``angle`` degrees and scaling about ``centre``.

    The same matrix as ``cv2.getRotationMatrix2D(centre, angle, zoom)``.
    """
    alpha = zoom * math.cos(math.radians(angle))
    beta = zoom * math.sin(math.radians(angle))
    cx, cy = centre
    return np.array(
        [
            [alpha, beta, (1 - alpha) * cx - beta * cy],
            [-beta, alpha, beta * cx + (1 - alpha) * cy],
            [0.0, 0.0, 1.0],
        ]
    )


def _translation(dx: float, dy: float) -> np.ndarray:
    """Translation by (dx, dy) pixels."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _perspective_flip(flip: PerspectiveFlip, width: int, height: int) -> np.ndarray:
    """The homography of ``flip`` about the image centre (Deforum's ``warpMatrix``, re-centred).

    The card (x, y, 0), centred on the image centre, is rotated by R, pushed to distance h along the
    viewing axis and projected with focal length h, so that with no rotation the map is the identity.
    """
    if not 0 < flip.fv < 180:
        raise ValueError(f"perspective flip fv must be between 0 and 180 degrees, got {flip.fv!r}")
    half_fov = math.radians(flip.fv / 2)
    distance = math.hypot(width, height) / (2 * math.sin(half_fov))
    rotation = _rotation_x(flip.phi) @ _rotation_y(flip.gamma) @ _rotation_z(flip.theta)
    card = np.array(
        [
            [rotation[0, 0], rotation[0, 1], 0.0],
            [rotation[1, 0], rotation[1, 1], 0.0],
            [-rotation[2, 0] / distance, -rotation[2, 1] / distance, 1.0],
        ]
    )
    centre = ((width - 1) / 2, (height - 1) / 2)
    return compose(_translation(-centre[0], -centre[1]), card, _translation(*centre))


def _rotation_x(degrees: float) -> np.ndarray:
    """Deforum's rotation about x (3x3)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rotation_y(degrees: float) -> np.ndarray:
    """Deforum's rotation about y (3x3)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rotation_z(degrees: float) -> np.ndarray:
    """Deforum's rotation about z (3x3)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

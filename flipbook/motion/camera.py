"""A camera path over frames: warp an image by the motion of a run of frames, composed into one warp.

``values[i]`` holds frame i's camera schedule values (the plan's ``FramePlan.camera``). ``warp(image, at,
frames)`` moves an image shown at frame ``at`` through the motion of ``frames`` (consecutive, each frame's
motion applied in turn) with one resampling; ``warp_back`` undoes that motion, bringing an image from the end
of ``frames`` back to the frame before them. 2D composes 3x3 homographies; 3D composes rigid camera motions
and warps with the depth of the image being moved. :func:`camera_for` makes either from the per-frame values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np
import torch

from flipbook.imaging.depth import depth_from_disparity
from flipbook.motion.camera2d import PerspectiveFlip, compose, invert, matrix_2d, warp_2d, warp_2d_tensor
from flipbook.motion.camera3d import camera_motion, compose_motions, invert_motion, warp_3d

Values = Sequence[Mapping[str, float]]
Image = np.ndarray | torch.Tensor  # uint8 H x W x 3: numpy, or a tensor on the render's device


class Camera(Protocol):
    """Warps take a numpy image or a uint8 tensor and give back the same kind (a tensor on its device)."""

    def warp(self, image: Image, at: int, frames: range) -> Image: ...

    def warp_back(self, image: Image, at: int, frames: range) -> Image: ...


class Camera2D:
    """Deforum's 2D motion: angle, zoom, translation about a centre, optional perspective flip."""

    def __init__(self, values: Values, *, width: int, height: int, border: str, flip: bool) -> None:
        self.values, self.width, self.height, self.border, self.flip = values, width, height, border, flip

    def matrix(self, index: int) -> np.ndarray:
        v = self.values[index]
        flip = None
        if self.flip:
            flip = PerspectiveFlip(
                theta=v["perspective_flip_theta"],
                phi=v["perspective_flip_phi"],
                gamma=v["perspective_flip_gamma"],
                fv=v["perspective_flip_fv"],
            )
        return matrix_2d(
            width=self.width,
            height=self.height,
            angle=v["angle"],
            zoom=v["zoom"],
            translation_x=v["translation_x"],
            translation_y=v["translation_y"],
            transform_center_x=v["transform_center_x"],
            transform_center_y=v["transform_center_y"],
            perspective_flip=flip,
        )

    def path(self, frames: range) -> np.ndarray:
        return compose(np.eye(3), *(self.matrix(i) for i in frames))

    def _warp(self, image: Image, matrix: np.ndarray) -> Image:
        """A numpy image with OpenCV, a tensor on its device with ``grid_sample``."""
        if torch.is_tensor(image):
            return warp_2d_tensor(image, matrix, self.border)
        return warp_2d(image, matrix, self.border)

    def warp(self, image: Image, at: int, frames: range) -> Image:
        return self._warp(image, self.path(frames)) if len(frames) else image

    def warp_back(self, image: Image, at: int, frames: range) -> Image:
        """The inverse path; a zoom-0 frame (a collapse to one point) can't be undone, so across one the
        image is left as it is."""
        if not len(frames) or any(self.values[i]["zoom"] == 0 for i in frames):
            return image
        return self._warp(image, invert(self.path(frames)))


class Camera3D:
    """Deforum's 3D motion: the image lifted to 3D with its depth (scaled to the frame's near..far), moved
    by the camera's translation and rotation, and projected with the frame's field of view."""

    def __init__(
        self,
        values: Values,
        *,
        disparity: Callable[[np.ndarray], np.ndarray],
        padding_mode: str,
        sampling_mode: str,
        on_depth: Callable[[int, np.ndarray], None] | None = None,
    ) -> None:
        self.values = values
        self.disparity = disparity
        self.padding_mode, self.sampling_mode = padding_mode, sampling_mode
        self.on_depth = on_depth
        self._depths: dict[int, np.ndarray] = {}

    def motion(self, index: int) -> np.ndarray:
        v = self.values[index]
        return camera_motion(
            translation_x=v["translation_x"],
            translation_y=v["translation_y"],
            translation_z=v["translation_z"],
            rotation_x=v["rotation_3d_x"],
            rotation_y=v["rotation_3d_y"],
            rotation_z=v["rotation_3d_z"],
        )

    def depth(self, image: Image, at: int) -> np.ndarray:
        """Scene depth of ``image``, the picture shown at frame ``at`` (one per frame in a render), estimated
        once; the two most recent frames' depths are kept (a diffused frame is warped back, then forward)."""
        if at not in self._depths:
            v = self.values[at]
            pixels = image.cpu().numpy() if torch.is_tensor(image) else image
            depth = depth_from_disparity(self.disparity(pixels), v["near"], v["far"])
            if self.on_depth is not None:
                self.on_depth(at, depth)
            if len(self._depths) >= 2:
                del self._depths[min(self._depths)]
            self._depths[at] = depth
        return self._depths[at]

    def warp(self, image: Image, at: int, frames: range) -> Image:
        if not len(frames):
            return image
        motion = compose_motions(*(self.motion(i) for i in frames))
        return self._warp(image, self.depth(image, at), motion, fov=self.values[frames[-1]]["fov"])

    def warp_back(self, image: Image, at: int, frames: range) -> Image:
        if not len(frames):
            return image
        motion = invert_motion(compose_motions(*(self.motion(i) for i in frames)))
        return self._warp(image, self.depth(image, at), motion, fov=self.values[frames[0] - 1]["fov"])

    def _warp(self, image: Image, depth: np.ndarray, motion: np.ndarray, *, fov: float) -> Image:
        on_device = torch.is_tensor(image)
        pixels = image if on_device else torch.from_numpy(np.array(image))
        tensor = pixels.permute(2, 0, 1).float() / 255.0
        out = warp_3d(
            tensor,
            torch.from_numpy(depth).float().to(tensor.device),
            motion,
            fov=fov,
            padding_mode=self.padding_mode,
            sampling_mode=self.sampling_mode,
        )
        pixels = (out.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous()
        return pixels if on_device else pixels.numpy()


def camera_for(
    values: Values,
    *,
    depth: bool,
    width: int,
    height: int,
    border: str = "replicate",
    flip: bool = False,
    padding_mode: str = "border",
    sampling_mode: str = "bicubic",
    disparity: Callable[[np.ndarray], np.ndarray] | None = None,
    on_depth: Callable[[int, np.ndarray], None] | None = None,
    size: tuple[int, int] | None = None,
) -> Camera:
    """The camera path over per-frame ``values`` for pictures of ``width`` x ``height``: 2D (homographies), or
    with ``depth`` 3D (rigid motions, the image lifted with its ``disparity``; without one a flat scene at
    ``near``, as the motion preview uses: no depth model is loaded). ``size`` (width, height) other than the
    picture's scales 2D pixel translations to match (the preview renders small); 3D motion doesn't depend on
    the picture's size."""
    if not depth:
        shown_width, shown_height = size or (width, height)
        if (shown_width, shown_height) != (width, height):
            values = [_scaled_translation(v, shown_width / width, shown_height / height) for v in values]
        return Camera2D(values, width=shown_width, height=shown_height, border=border, flip=flip)
    return Camera3D(
        values,
        disparity=disparity or flat_disparity,
        padding_mode=padding_mode,
        sampling_mode=sampling_mode,
        on_depth=on_depth,
    )


def _scaled_translation(values: Mapping[str, float], sx: float, sy: float) -> dict[str, float]:
    return {
        **values,
        "translation_x": values["translation_x"] * sx,
        "translation_y": values["translation_y"] * sy,
    }


def flat_disparity(image: np.ndarray) -> np.ndarray:
    """A flat scene: the same disparity everywhere (every pixel at ``near``)."""
    return np.ones(image.shape[:2], np.float32)

"""``2d`` and ``3d``: Deforum's keyframed camera animation, rendered.

Each diffused frame is the previous diffused frame moved by the camera, then partly re-diffused, in Deforum's
order::

    warp by this frame's motion -> [hybrid video: composite "before_motion" -> motion -> composite "normal"]
    -> match colours -> contrast -> anti-blur (unsharp mask) -> add noise
    -> img2img (this frame's prompt, negative, cfg, steps, sampler, seed, strength, checkpoint)
    -> [hybrid video: composite "after_generation"] -> keep masked-out pixels still

Colours are matched to frame 0 (or ``color_coherence_image``), or with ``color_coherence = "video"`` to the
hybrid video's frame, a new one every ``color_coherence_video_every_n`` frames; in that mode frame 0 itself is
matched to the video's frame 0 after img2img, as Deforum does for its "Video Input" colour coherence.

With ``cadence = N`` only frames 0, N, 2N, ... (and the last frame) are diffused. The diffused frame b is made
from the previous diffused frame a warped by the camera motion of frames a+1..b composed into one warp (one
resampling, not N). Each in-between frame j is a cross-fade of a warped forward to j and b warped back to j,
weighted by where j lies between them, so in-betweens sit on the camera path and no frame lags behind it (in
Deforum the in-betweens trail the diffused frames). With ``optical_flow_cadence = "dis"`` the in-betweens
follow the optical flow between a and b instead.

The warp and the treatment before img2img run as torch ops on the render's device (``imaging/color_torch.py``,
``imaging/filters_torch.py``, ``motion/camera2d.py`` ``warp_2d_tensor``); a frame's noise field is numpy's draw
for its seed, masked and scaled by its amount on a helper thread while the frame before it is diffused.

Everything a frame needs comes from the plan (its schedules' values and seed) and from the images of earlier
diffused frames as written to the run folder, so a resumed run continues from the last diffused frame on disk
and produces the same frames as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import PIL.Image
import torch

from flipbook.imaging.color import VIDEO_COLOR_SPACE, match_colors, video_color_frame
from flipbook.imaging.color_torch import ColorReference
from flipbook.imaging.filters_torch import (
    add_scaled_noise,
    adjust_contrast,
    noise_field,
    scaled_noise,
    to_grayscale,
    to_uint8,
    unsharp_mask,
)
from flipbook.modes.camera.rules import camera_for, diffused_frames
from flipbook.modes.camera.settings import TWO_D
from flipbook.modes.frame import (
    Frame,
    ModeContext,
    animation_mask,
    first_frame_request,
    frame_request,
    frames_at_size,
    keep_still,
    still_image,
)
from flipbook.motion.camera import Camera
from flipbook.motion.flow import flow_tween
from flipbook.spec.fields import DEPTH_MODEL
from flipbook.spec.model import Spec
from flipbook.spec.plan import FramePlan

if TYPE_CHECKING:
    from flipbook.imaging.depth import DepthEstimator


def resume_every(spec: Spec) -> int:
    """In-betweens need the diffused frames on both sides, so a resume continues from a diffused frame."""
    return spec.camera.cadence


def check_inputs(spec: Spec) -> None:
    """The colour reference image and the hybrid video, opened before any model loads."""
    if spec.camera.color_coherence_image is not None:
        from flipbook.io.images import open_image

        open_image(spec.camera.color_coherence_image, "camera.color_coherence_image")
    if spec.camera.hybrid_video is not None:
        hybrid_frames(spec)


@dataclass(frozen=True)
class _Keyframe:
    """A diffused frame and its image (uint8 RGB), the anchor in-betweens are made from."""

    index: int
    image: np.ndarray


def render(ctx: ModeContext) -> Iterator[Frame]:
    """The frames after ``ctx.start``; each diffused frame's noise is drawn and scaled on a helper thread
    while the frame before it is diffused (it needs only its seed, amount and the mask)."""
    with ThreadPoolExecutor(1, thread_name_prefix="flipbook-noise") as pool:
        mask = animation_mask(ctx.spec)
        yield from _render(ctx, mask, _NoiseAhead(ctx, pool, mask))


def _render(ctx: ModeContext, mask: np.ndarray | None, noise: _NoiseAhead) -> Iterator[Frame]:
    spec = ctx.spec
    camera = make_camera(ctx)
    schedule = diffused_frames(spec.animation.max_frames, spec.camera.cadence)
    hybrid = _Hybrid(ctx) if spec.camera.hybrid_video is not None else None

    # 1. Frame 0 (or, when resuming, the last diffused frame on disk) anchors everything after it
    if ctx.start >= 0:
        previous = _Keyframe(ctx.start, np.asarray(ctx.run.load(ctx.start)))
        still = still_image(ctx)
        reference = _color_reference(ctx, np.asarray(ctx.run.load(0)), hybrid, schedule)
    else:
        request = first_frame_request(ctx)
        image = ctx.cores[ctx.plan[0].checkpoint].generate([request])[0]
        if spec.camera.color_coherence == "video" and hybrid is not None:
            # Deforum matches frame 0 to the video's frame 0 after generation ("Video Input", legacy or not)
            image = PIL.Image.fromarray(match_colors(np.asarray(image), hybrid.frames[0], VIDEO_COLOR_SPACE))
        still = still_image(ctx, image)
        image = keep_still(image, still, mask)
        yield Frame(0, image, request)
        previous = _Keyframe(0, np.asarray(image))
        reference = _color_reference(ctx, previous.image, hybrid, schedule)

    # 2. Each diffused frame from the one before; then the in-betweens that need both
    todo = [i for i in schedule if i > previous.index]
    device = ctx.cores[ctx.plan[todo[0]].checkpoint].model.device if todo else torch.device("cpu")
    colors = _ColorReferences(ctx, device)
    noise.ahead(todo[:1])
    for position, index in enumerate(todo):
        frame = ctx.plan[index]
        span = range(previous.index + 1, index + 1)
        warped = camera.warp(_tensor(previous.image, device), previous.index, span)
        if hybrid is not None:
            warped = _tensor(hybrid.before_generation(warped.cpu().numpy(), previous.index, index), device)
        frame_noise = noise.take(index, device)
        noise.ahead(todo[position + 1 : position + 2])  # drawn while this frame is diffused
        prepared = _prepare(ctx, frame, warped, colors(reference(index)), frame_noise)
        request = frame_request(
            ctx, frame, _init_image(ctx, prepared), noise_multiplier=frame.camera["noise_multiplier"]
        )
        image = ctx.cores[frame.checkpoint].generate([request])[0]
        if hybrid is not None:
            image = hybrid.after_generation(image, index)
        image = keep_still(image, still, mask)
        current = _Keyframe(index, np.asarray(image))
        for j in range(previous.index + 1, index):
            yield Frame(j, PIL.Image.fromarray(_in_between(ctx, camera, previous, current, j, device)))
        yield Frame(index, image, request)
        previous = current


class _Hybrid:
    """Deforum's hybrid video: the warped frame is moved the way the hybrid video moved between the two
    diffused frames, and the video's frame is blended in (alpha and mask from ``[camera]``) where
    ``hybrid_composite`` says: before or after that motion, or into the generated image (render.py's order)."""

    def __init__(self, ctx: ModeContext) -> None:
        self.spec, self.plan = ctx.spec, ctx.plan
        self.frames = hybrid_frames(ctx.spec)
        self.depth = None
        if ctx.spec.camera.hybrid_composite != "none" and ctx.spec.camera.hybrid_comp_mask_type == "depth":
            self.depth = depth_estimator(ctx.spec)

    def before_generation(self, image: np.ndarray, before: int, index: int) -> np.ndarray:
        """The camera-warped frame ``image`` (diffused frame ``before`` brought to ``index``) moved like the
        video from ``before`` to ``index``, with the video frame blended in before ("before_motion") or after
        ("normal") that motion."""
        from flipbook.motion.hybrid import apply_hybrid_motion

        c, values = self.spec.camera, self.plan[index].camera
        if c.hybrid_composite == "before_motion":
            image = self._composite(image, index)
        image = apply_hybrid_motion(
            image, self.frames[before], self.frames[index], c.hybrid_motion, flow_method=c.hybrid_flow_method,
            flow_factor=values["hybrid_flow_factor"], border=c.border,
        )  # fmt: skip
        if c.hybrid_composite == "normal":
            image = self._composite(image, index)
        return image

    def after_generation(self, image: PIL.Image.Image, index: int) -> PIL.Image.Image:
        """Diffused frame ``index`` as generated, with the video frame blended in for "after_generation"."""
        if self.spec.camera.hybrid_composite != "after_generation":
            return image
        return PIL.Image.fromarray(self._composite(np.asarray(image.convert("RGB")), index))

    def _composite(self, image: np.ndarray, index: int) -> np.ndarray:
        from flipbook.motion.hybrid import composite, composite_mask

        c, values = self.spec.camera, self.plan[index].camera
        source = self.frames[index]
        depth = self.depth(source) if self.depth is not None else None
        mask = composite_mask(image, source, c.hybrid_comp_mask_type, depth=depth)
        return composite(image, source, values["hybrid_comp_alpha"], mask, invert=c.hybrid_comp_mask_inverse)


def hybrid_frames(spec: Spec) -> list[np.ndarray]:
    """The hybrid video's frames at the animation size, one per animation frame."""
    return frames_at_size(spec, spec.camera.hybrid_video, "camera.hybrid_video")


def depth_estimator(spec: Spec) -> DepthEstimator:
    """``camera.depth_model`` loaded on the model section's device and dtype: a built-in, a folder, a name in
    ``model.models_dir`` (the folders its type names) or a hub id."""
    from flipbook.imaging.depth import DepthEstimator

    m = spec.model
    return DepthEstimator.load(
        spec.camera.depth_model, device=m.device, dtype=m.dtype, models_dir=m.models_dir,
        folders=DEPTH_MODEL.folders,
    )  # fmt: skip


def make_camera(ctx: ModeContext) -> Camera:
    """The render's 2D or 3D camera; 3D loads its depth model here and saves depth maps when asked."""
    c = ctx.spec.camera
    if ctx.spec.animation.mode == TWO_D:
        return camera_for(ctx.spec, ctx.plan)
    from flipbook.imaging.depth import save_depth_map

    estimator = depth_estimator(ctx.spec)

    def on_depth(index: int, depth: np.ndarray) -> None:
        if c.save_depth_maps:
            save_depth_map(depth, ctx.run.depth_path(index))

    return camera_for(ctx.spec, ctx.plan, disparity=estimator, on_depth=on_depth)


class _NoiseAhead:
    """Each diffused frame's noise (numpy's draws for its seed, as :func:`flipbook.imaging.filters.add_noise`
    makes them, times the animation mask and the frame's amount), made on ``pool``'s thread ahead of its
    frame."""

    def __init__(self, ctx: ModeContext, pool: ThreadPoolExecutor, mask: np.ndarray | None) -> None:
        self.ctx, self.pool = ctx, pool
        self.mask = torch.from_numpy(mask) if mask is not None else None
        self.pending: dict[int, Future] = {}

    def ahead(self, indices: Sequence[int]) -> None:
        """Start drawing the noise of frames ``indices`` (those with noise) on the helper thread."""
        c, a = self.ctx.spec.camera, self.ctx.spec.animation
        for index in indices:
            frame = self.ctx.plan[index]
            if frame.camera["noise"] != 0 and index not in self.pending:
                self.pending[index] = self.pool.submit(
                    _frame_noise, a.height, a.width, frame.camera["noise"], self.mask, seed=frame.seed,
                    noise_type=c.noise_type, octaves=c.perlin_octaves, persistence=c.perlin_persistence,
                )  # fmt: skip

    def take(self, index: int, device: torch.device) -> torch.Tensor | None:
        """Frame ``index``'s noise levels on ``device`` (None when it adds none)."""
        self.ahead([index])
        future = self.pending.pop(index, None)
        return None if future is None else future.result().to(device)


def _frame_noise(
    height: int, width: int, amount: float, mask: torch.Tensor | None, **field: object
) -> torch.Tensor:
    """The levels a frame's noise adds (:func:`scaled_noise` of its unit field)."""
    return scaled_noise(torch.from_numpy(noise_field(height, width, 3, **field)), amount, mask)


class _ColorReferences:
    """The colour reference of each diffused frame as a :class:`ColorReference` on the render's device, made
    once per reference image (frame 0, the colour image, or each sampled video frame)."""

    def __init__(self, ctx: ModeContext, device: torch.device) -> None:
        c = ctx.spec.camera
        self.space = VIDEO_COLOR_SPACE if c.color_coherence == "video" else c.color_coherence
        self.device = device
        self.last: tuple[np.ndarray, ColorReference] | None = None

    def __call__(self, reference: np.ndarray | None) -> ColorReference | None:
        if reference is None:
            return None
        if self.last is None or self.last[0] is not reference:
            self.last = (reference, ColorReference.of(_tensor(reference, self.device), self.space))
        return self.last[1]


def _tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """A uint8 H x W x 3 image as a tensor on ``device`` (a copy: frames from PIL are read-only)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).to(device)


def _prepare(
    ctx: ModeContext,
    frame: FramePlan,
    warped: torch.Tensor,
    reference: ColorReference | None,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """Deforum's treatment of the warped frame before img2img, on the render's device: colours, contrast,
    anti-blur, noise (``noise``: the levels the frame's noise adds, masked and scaled; None when none)."""
    c, v = ctx.spec.camera, frame.camera
    image = warped
    if reference is not None:
        image = reference.match(image)
    if c.color_force_grayscale:
        image = to_grayscale(image)
    image = adjust_contrast(image, v["contrast"])
    image = unsharp_mask(
        image,
        amount=v["antiblur_amount"],
        kernel_size=int(v["antiblur_kernel"]),
        sigma=v["antiblur_sigma"],
        threshold=v["antiblur_threshold"],
    )
    return image if noise is None else add_scaled_noise(image, noise)


def _init_image(ctx: ModeContext, prepared: torch.Tensor) -> torch.Tensor | PIL.Image.Image:
    """The prepared frame as img2img's init image: the tensor itself (the sampling core normalises it where it
    is, no picture made and read back), or a picture when ControlNet units take their control image from it
    (their preprocessors read pictures)."""
    return prepared if ctx.controls is None else PIL.Image.fromarray(prepared.cpu().numpy())


def _in_between(
    ctx: ModeContext, camera: Camera, before: _Keyframe, after: _Keyframe, index: int, device: torch.device
) -> np.ndarray:
    """Frame ``index`` between two diffused frames: both brought to it and cross-faded."""
    weight = (index - before.index) / (after.index - before.index)
    if ctx.spec.camera.optical_flow_cadence == "dis":
        factor = ctx.plan[index].camera["cadence_flow_factor"]
        return flow_tween(before.image, after.image, weight, flow_factor=factor)
    forward = camera.warp(_tensor(before.image, device), before.index, range(before.index + 1, index + 1))
    backward = camera.warp_back(_tensor(after.image, device), after.index, range(index + 1, after.index + 1))
    blend = forward.to(torch.float32) * (1.0 - weight) + backward.to(torch.float32) * weight
    return to_uint8(blend).cpu().numpy()


def _color_reference(
    ctx: ModeContext, first: np.ndarray, hybrid: _Hybrid | None, diffused: Sequence[int]
) -> Callable[[int], np.ndarray | None]:
    """The image each diffused frame's colours are matched to: the hybrid video's frame sampled every
    ``color_coherence_video_every_n`` diffused frames for "video", else ``color_coherence_image`` if set, else
    frame 0; None when off."""
    c = ctx.spec.camera
    if c.color_coherence == "none":
        return lambda index: None
    if c.color_coherence == "video" and hybrid is not None:
        every_n, frames = c.color_coherence_video_every_n, hybrid.frames
        return lambda index: frames[video_color_frame(index, every_n, diffused)]
    reference = first
    if c.color_coherence_image is not None:
        from flipbook.io.images import open_image

        image = open_image(c.color_coherence_image, "camera.color_coherence_image").convert("RGB")
        reference = np.asarray(image)
    return lambda index: reference

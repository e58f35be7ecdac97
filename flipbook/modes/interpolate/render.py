"""``interpolate``: the latent walk between keyframed prompts (GIFfusion, stable-diffusion-videos).

Every prompt keyframe k has a noise latent (from the seed at frame k, or one fixed latent) and a text
embedding. Frame i between keyframes a and b sits at the eased weight w (``interpolate.easing``, in the plan's
``blend``) and is sampled from ``slerp(w, noise_a, noise_b)`` with the prompt embeddings mixed at the same w
(``animation.prompt_interpolation``: lerp by default, slerp, or hold; composable prompts mix in the noise
prediction). Keyframes themselves are plain txt2img with their own seed's noise.

With ``init.image`` or ``init.video`` each frame starts from that image (the video's frame i) through img2img
at the ``animation.strength`` schedule (share of the init kept), the walk's noise being what img2img adds; with
``interpolate.motion`` the init is first moved by the [camera] 2D schedules accumulated from frame 0.

No frame depends on another, so frames render ``interpolate.batch_size`` at a time, one UNet call per step for
the whole batch, and a resumed render continues at any frame. Batches are aligned to multiples of the batch
size from frame 0.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import PIL.Image
import torch

from flipbook.modes.base import Split
from flipbook.modes.frame import (
    Frame,
    ModeContext,
    animation_mask,
    frame_request,
    frames_at_size,
    independent_frames,
    init_image,
    keep_still,
    latent_shape,
    still_image,
)
from flipbook.motion.camera2d import compose, warp_2d
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.noise import KeyframeWalk
from flipbook.sampling.requests import FrameRequest
from flipbook.spec.model import Spec
from flipbook.spec.plan import FramePlan, Plan


def resume_every(spec: Spec) -> int:
    """Frames are independent: a resume continues right after the last frame on disk."""
    return 1


def split(spec: Spec, plan: Plan) -> Split | None:
    """Frames are independent: a job splits at multiples of the batch size, so every frame is made in the
    same batch as in one uninterrupted render (batching can move a pixel by one level) (without a mask: a masked
    run keeps frame 0's pixels outside it, read from disk)."""
    return None if spec.init.mask is not None else Split(spec.interpolate.batch_size)


def check_inputs(spec: Spec) -> None:
    """The init video must exist, be readable and have a frame for every animation frame."""
    if spec.init.video is not None:
        _video_frames(spec)


def render(ctx: ModeContext) -> Iterator[Frame]:
    spec, plan = ctx.spec, ctx.plan
    fixed = spec.interpolate.noise == "fixed"  # one noise latent, frame 0's, for every keyframe
    walk = KeyframeWalk((f.prompt_key for f in plan.frames), lambda key: plan[0 if fixed else key].seed)
    inits = _InitFrames(ctx) if spec.init.image is not None or spec.init.video is not None else None
    mask = animation_mask(spec)
    still = still_image(ctx) if mask is not None and ctx.start >= 0 else None

    def request(core: SamplingCore, frame: FramePlan) -> FrameRequest:
        noise = walk.noise(frame.index, frame.prompt_key, frame.blend, latent_shape(core, spec))
        return _request(ctx, frame, noise, inits)

    frames = range(ctx.start + 1, len(plan))
    for frame, request_made, image in independent_frames(ctx, frames, spec.interpolate.batch_size, request):
        if mask is not None:
            still = still if still is not None else still_image(ctx, image)
            image = keep_still(image, still, mask)
        yield Frame(frame.index, image, request_made)


def _request(
    ctx: ModeContext, frame: FramePlan, noise: torch.Tensor, inits: _InitFrames | None
) -> FrameRequest:
    if inits is None:
        return frame_request(ctx, frame, latents=noise)
    return frame_request(ctx, frame, inits.image(frame.index), latents=noise)


# ---- init image / video with motion ------------------------------------------------------------------


class _InitFrames:
    """The init image (or the init video's frame i) at the animation size, moved by the camera when
    ``interpolate.motion`` is on: frame i sees the 2D motion of frames 1..i composed into one warp."""

    def __init__(self, ctx: ModeContext) -> None:
        spec = ctx.spec
        self.video = _video_frames(spec) if spec.init.video is not None else None
        self.still = init_image(spec) if self.video is None else None
        self.camera = None
        if spec.interpolate.motion:
            from flipbook.modes.camera.rules import camera_for

            self.camera = camera_for(spec, ctx.plan)
        self.border = spec.camera.border
        self._path = (0, np.eye(3))  # (frame, composed motion of frames 1..frame)

    def image(self, index: int) -> PIL.Image.Image:
        image = self.video[index] if self.video is not None else self.still
        if self.camera is None or index == 0:
            return image
        warped = warp_2d(np.asarray(image), self._motion(index), self.border)
        return PIL.Image.fromarray(warped)

    def _motion(self, index: int) -> np.ndarray:
        """Composed incrementally: frames arrive in order, so each frame adds one matrix (a resume restarts)."""
        done, path = self._path
        if index < done:
            done, path = 0, np.eye(3)
        for i in range(done + 1, index + 1):
            path = compose(path, self.camera.matrix(i))
        self._path = (index, path)
        return path


def _video_frames(spec: Spec) -> list[PIL.Image.Image]:
    """Every init-video frame resized to the animation size; it must cover every animation frame."""
    return [PIL.Image.fromarray(f) for f in frames_at_size(spec, spec.init.video, "init.video")]

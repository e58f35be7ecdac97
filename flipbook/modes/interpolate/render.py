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

from flipbook.modes.frame import (
    Frame,
    ModeContext,
    aligned_batches,
    animation_mask,
    by_checkpoint,
    frame_request,
    frames_at_size,
    init_image,
    keep_still,
    still_image,
)
from flipbook.motion.camera2d import compose, warp_2d
from flipbook.sampling.noise import keyframe_noise, slerp
from flipbook.sampling.requests import FrameRequest
from flipbook.spec.model import Spec
from flipbook.spec.plan import FramePlan, Plan


def resume_every(spec: Spec) -> int:
    """Frames are independent: a resume continues right after the last frame on disk."""
    return 1


def check_inputs(spec: Spec) -> None:
    """The init video must exist, be readable and have a frame for every animation frame."""
    if spec.init.video is not None:
        _video_frames(spec)


def render(ctx: ModeContext) -> Iterator[Frame]:
    spec, plan = ctx.spec, ctx.plan
    walk = _Walk(plan, spec.interpolate.noise)
    inits = _InitFrames(ctx) if spec.init.image is not None or spec.init.video is not None else None
    mask = animation_mask(spec)
    still = still_image(ctx) if mask is not None and ctx.start >= 0 else None
    for batch in aligned_batches(range(ctx.start + 1, len(plan)), spec.interpolate.batch_size):
        frames = [plan[i] for i in batch]
        for checkpoint, group in by_checkpoint(frames):
            core = ctx.cores[checkpoint]
            shape = _latent_shape(core, spec)
            requests = [_request(ctx, frame, walk.noise(frame, shape), inits) for frame in group]
            images = core.generate(requests, batch_size=len(requests))
            for frame, request, image in zip(group, requests, images, strict=True):
                if mask is not None:
                    still = still if still is not None else still_image(ctx, image)
                    image = keep_still(image, still, mask)
                yield Frame(frame.index, image, request)


# ---- the walk ------------------------------------------------------------------------------------------


class _Walk:
    """The noise of every frame: its keyframe's noise slerped toward the next keyframe's at the frame's w."""

    def __init__(self, plan: Plan, noise: str) -> None:
        self.plan = plan
        self.keys = sorted({frame.prompt_key for frame in plan.frames})
        self.fixed = noise == "fixed"
        self._cache: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}

    def noise(self, frame: FramePlan, shape: tuple[int, ...]) -> torch.Tensor:
        start = self._key_noise(frame.prompt_key, shape)
        after = self._next_key(frame)
        if after is None or frame.blend == 0.0:
            return start
        return slerp(start, self._key_noise(after, shape), frame.blend)

    def _next_key(self, frame: FramePlan) -> int | None:
        if frame.index < frame.prompt_key:  # before the first keyframe: it holds
            return None
        later = [k for k in self.keys if k > frame.prompt_key]
        return later[0] if later else None

    def _key_noise(self, key: int, shape: tuple[int, ...]) -> torch.Tensor:
        seed = self.plan[0 if self.fixed else key].seed
        if (seed, shape) not in self._cache:
            self._cache[(seed, shape)] = keyframe_noise(seed, shape)
        return self._cache[(seed, shape)]


def _request(
    ctx: ModeContext, frame: FramePlan, noise: torch.Tensor, inits: _InitFrames | None
) -> FrameRequest:
    if inits is None:
        return frame_request(ctx, frame, latents=noise)
    return frame_request(ctx, frame, inits.image(frame.index), latents=noise)


def _latent_shape(core, spec: Spec) -> tuple[int, ...]:
    model = core.model
    scale = model.vae_scale_factor
    channels = model.vae.config.latent_channels
    return (1, channels, spec.animation.height // scale, spec.animation.width // scale)


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

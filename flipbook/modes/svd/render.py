"""``svd``: Stable Video Diffusion, image to video.

Frame 0 is the start image: ``init.image`` resized to the animation size, else an image made by txt2img from
frame 0's prompt on ``model.name`` (text to image to video in one spec). SVD has no text conditioning, so the
prompts only make that image; a prompt schedule that changes later is refused rather than silently ignored.

A clip of ``svd.num_frames`` (F) frames is sampled from the start image; SVD's own copy of its start frame is
dropped, so each clip adds F - 1 frames. Longer animations chain clips: clip k starts from the last frame of
clip k - 1 (as written to disk), so frame ``k * (F - 1)`` is the start of clip k and clip k makes frames
``k * (F - 1) + 1 .. (k + 1) * (F - 1)``; the last clip is trimmed at ``animation.max_frames``. Clip k is
seeded with the plan's seed at its start frame (clip 0 with ``sampling.seed``). A resumed render restarts at
a clip start (``resume_every`` = F - 1) from the frame on disk, so it gives the same frames as an
uninterrupted one.

With ``init.mask`` (the motion brush; white = animated) latents outside the mask are held to the start image
while sampling and the decoded frames are composited with frame 0 outside it, so those pixels never move.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from flipbook.modes.frame import (
    Frame,
    ModeContext,
    animation_mask,
    first_frame_request,
    init_image,
    keep_still,
    still_image,
)
from flipbook.spec.model import Spec


def resolve_spec(spec: Spec) -> Spec:
    """Fill ``svd.num_frames`` from the model's UNet config (14 for svd, 25 for svd-xt; config only, no
    weights) and, when the spec doesn't set ``animation.max_frames``, make the animation one clip long, so
    the plan and the recorded spec are right before any model loads."""
    from flipbook.models.families.svd.loading import svd_num_frames

    if spec.svd.num_frames is None:
        frames = svd_num_frames(spec.svd.model, models_dir=spec.model.models_dir)
        spec = spec.model_copy(update={"svd": spec.svd.model_copy(update={"num_frames": frames})})
    if "max_frames" not in spec.animation.model_fields_set:
        animation = spec.animation.model_copy(update={"max_frames": spec.svd.num_frames})
        spec = spec.model_copy(update={"animation": animation})
    return spec


def resume_every(spec: Spec) -> int:
    """Clips start every F - 1 frames: a resume restarts at the last clip start on disk."""
    return clip_step(spec)


def clip_step(spec: Spec) -> int:
    """Frames each clip adds (F - 1): SVD's own frame 0 repeats the start image and is dropped."""
    return _num_frames(spec) - 1


def check_inputs(spec: Spec) -> None:
    """What can be checked without weights: the SVD model is there (its config is read); guidance, ControlNet
    and the prompt are refused with the plan (``flipbook.spec.plan.check_mode``), so nothing fails after frame
    0 was made."""
    from flipbook.models.families.svd.loading import svd_num_frames

    svd_num_frames(spec.svd.model, models_dir=spec.model.models_dir)


def render(ctx: ModeContext) -> Iterator[Frame]:
    spec = ctx.spec
    n, step = spec.animation.max_frames, clip_step(spec)
    mask = animation_mask(spec)
    if ctx.start < 0:
        first = _first_frame(ctx)
        yield first
        start, image = 0, first.image
    else:
        start, image = ctx.start, ctx.run.load(ctx.start)
    if start >= n - 1:
        return
    still = still_image(ctx, image if start == 0 else None) if mask is not None else None
    ctx.cores.release()  # the image model made frame 0; SVD needs the memory now
    bundle = _load(spec)
    for clip_start in range(start, n - 1, step):
        for frame in _clip(ctx, bundle, image, clip_start, mask, still):
            image = frame.image
            yield frame


# ---- pieces ---------------------------------------------------------------------------------------------


def _num_frames(spec: Spec) -> int:
    """Frames per clip; ``resolve_spec`` fills it before a render, this reads the model config otherwise."""
    return spec.svd.num_frames if spec.svd.num_frames is not None else resolve_spec(spec).svd.num_frames


def _first_frame(ctx: ModeContext) -> Frame:
    """Frame 0: the init image as given (resized), or txt2img from frame 0's prompt on ``model.name``."""
    spec = ctx.spec
    if spec.init.image is not None:
        return Frame(0, init_image(spec), None, {"Start image": spec.init.image.name})
    request = first_frame_request(ctx)
    image = ctx.cores[ctx.plan[0].checkpoint].generate([request])[0]
    return Frame(0, image, request)


def _load(spec: Spec):
    from flipbook.models.families.svd.loading import load_svd
    from flipbook.models.performance import Performance, prepare

    m = spec.model
    bundle = load_svd(spec.svd.model, models_dir=m.models_dir, device=m.device, dtype=m.dtype)
    return prepare(bundle, Performance.of(spec.performance))


def _settings(spec: Spec):
    from flipbook.sampling.svd import SvdSettings

    svd = spec.svd
    return SvdSettings(
        num_frames=_num_frames(spec),
        num_inference_steps=svd.num_inference_steps,
        fps=spec.animation.fps,
        motion_bucket_id=svd.motion_bucket_id,
        noise_aug_strength=svd.noise_aug_strength,
        min_guidance_scale=svd.min_guidance_scale,
        max_guidance_scale=svd.max_guidance_scale,
        decode_chunk_size=svd.decode_chunk_size,
    )


def _clip(ctx: ModeContext, bundle, image, clip_start: int, mask, still) -> Iterator[Frame]:
    """The frames after ``clip_start`` made by one clip sampled from ``image`` (trimmed at max_frames)."""
    from flipbook.sampling.svd import sample_clip, to_images

    spec = ctx.spec
    settings = _settings(spec)
    last = min(clip_start + settings.num_frames - 1, spec.animation.max_frames - 1)
    indices = range(clip_start + 1, last + 1)
    seed = ctx.plan[clip_start].seed
    frames = sample_clip(
        bundle, image, settings, generator=torch.Generator("cpu").manual_seed(seed), events=ctx.events,
        frames=tuple(indices), mask=mask,
    )  # fmt: skip
    images = to_images(frames)
    parameters = _parameters(spec, clip_start // clip_step(spec), seed)
    for index in indices:
        yield Frame(index, keep_still(images[index - clip_start], still, mask), None, parameters)


def _parameters(spec: Spec, clip: int, seed: int) -> dict[str, str]:
    """A1111-style keys saying how an SVD frame was made (the start image's own keys are frame 0's)."""
    svd = spec.svd
    return {
        "Video model": f"svd {svd.model}",
        "Clip": str(clip),
        "Clip frames": str(_num_frames(spec)),
        "Video seed": str(seed),
        "Video steps": str(svd.num_inference_steps),
        "Video fps": f"{spec.animation.fps:g}",
        "Motion bucket": str(svd.motion_bucket_id),
        "Noise aug": f"{svd.noise_aug_strength:g}",
        "Video guidance": f"{svd.min_guidance_scale:g}-{svd.max_guidance_scale:g}",
        "Decode chunk": str(svd.decode_chunk_size or _num_frames(spec)),
    }

"""What every mode shares: the frame it yields, the context it renders in, and requests built from the plan."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import PIL.Image

from flipbook.control import ControlUnits
from flipbook.errors import FlipbookError
from flipbook.imaging.masks import composite, feather, load_mask
from flipbook.io.images import open_image
from flipbook.sampling.requests import FrameRequest
from flipbook.spec.model import Spec
from flipbook.spec.plan import FramePlan, Plan, denoise_for

if TYPE_CHECKING:
    from flipbook.events import Events
    from flipbook.runs.cores import Cores
    from flipbook.runs.run_dir import RunDir
    from flipbook.sampling.core import SamplingCore


@dataclass(frozen=True)
class Frame:
    """A finished frame; ``request`` is None for frames not made by the image model's sampling core (cadence
    in-betweens, or a video model's frames: those say how they were made in ``parameters``, extra A1111-style
    keys such as ``{"Video model": "svd", ...}``)."""

    index: int
    image: PIL.Image.Image
    request: FrameRequest | None = None
    parameters: dict[str, str] | None = None


ResolvedPrompts = dict[str, tuple[str, tuple[tuple[Path, float, float | None], ...]]]
"""prompt text as planned -> (the prompt without LoRA tags, the LoRAs its tags name)"""


@dataclass(frozen=True)
class ModeContext:
    """Everything a mode renders with. ``start`` is the frame to continue from when resuming (its image is in
    ``run``), -1 for a fresh render; a mode yields only the frames after it. ``controls`` holds the spec's
    ControlNet units for the render (made from the spec when not given)."""

    spec: Spec
    plan: Plan
    cores: Cores
    events: Events
    prompts: ResolvedPrompts
    run: RunDir
    start: int = -1
    controls: ControlUnits | None = None

    def __post_init__(self) -> None:
        """The units are set up once per render: images opened, weights resolved, preprocessors cached."""
        if self.controls is None and self.spec.controlnet:
            object.__setattr__(self, "controls", ControlUnits(self.spec, self.plan.variables))


def frame_request(
    ctx: ModeContext, frame: FramePlan, image: PIL.Image.Image | None = None, **extra: object
) -> FrameRequest:
    """The request for one frame: txt2img without ``image``, otherwise img2img at the frame's denoise.

    With ``animation.prompt_interpolation`` lerp or slerp the request also carries the next keyframe's prompt
    and negative and the frame's blend weight from the plan; LoRAs follow the keyframe in force (its
    ``<lora:...>`` tags; the next prompt's tags only take over at its keyframe). The spec's ControlNet units
    are attached to every request, controlling with their own image or else with ``image``.
    """
    spec = ctx.spec
    strength = extra.pop("strength", frame.denoise)
    if "controls" not in extra and ctx.controls is not None:
        extra["controls"] = ctx.controls.controls(frame, image)
    prompt, loras = ctx.prompts[frame.prompt]
    interpolation = spec.animation.text_interpolation()
    if interpolation != "hold":
        extra = {
            "blend_prompt": ctx.prompts[frame.next_prompt][0],
            "blend_negative_prompt": ctx.prompts[frame.next_negative_prompt][0],
            "blend_weight": frame.blend,
            "blend_mode": interpolation,
            **extra,
        }
    common = dict(
        prompt=prompt,
        negative_prompt=ctx.prompts[frame.negative_prompt][0],
        seed=frame.seed,
        num_inference_steps=frame.steps,
        guidance_scale=frame.cfg,
        sampler=frame.sampler,
        width=spec.animation.width,
        height=spec.animation.height,
        clip_skip=spec.sampling.clip_skip,
        loras=loras,
        refiner_switch_at=spec.model.refiner_switch_at if spec.model.refiner else None,
        **extra,
    )
    if image is None:
        return FrameRequest(**common)
    return FrameRequest(**common, image=image, strength=strength)


def first_frame_request(ctx: ModeContext) -> FrameRequest:
    """Frame 0: txt2img, or the init image through img2img at ``init.strength`` (Deforum's convention: the
    share of the init image kept; at least one denoising step, as in A1111)."""
    frame, init = ctx.plan[0], ctx.spec.init
    if init.image is None:
        return frame_request(ctx, frame)
    denoise = float(denoise_for(init.strength, frame.steps))
    return frame_request(ctx, frame, init_image(ctx.spec), strength=denoise)


def init_image(spec: Spec) -> PIL.Image.Image:
    size = (spec.animation.width, spec.animation.height)
    return open_image(spec.init.image, "init.image").convert("RGB").resize(size, PIL.Image.LANCZOS)


def animation_mask(spec: Spec) -> np.ndarray | None:
    """The float mask (1 = animated) from ``init.mask``, inverted and feathered as asked; None without one."""
    init = spec.init
    if init.mask is None:
        return None
    size = (spec.animation.width, spec.animation.height)
    try:
        mask = load_mask(init.mask, size, use_alpha=init.mask_use_alpha, invert=init.mask_invert)
    except (OSError, ValueError, PIL.UnidentifiedImageError) as error:
        allowed = "an image with an alpha channel" if init.mask_use_alpha else "an existing image file"
        raise FlipbookError("init.mask", str(init.mask), allowed, detail=str(error)) from None
    return feather(mask, init.mask_feather)


def keep_still(image: PIL.Image.Image, still: PIL.Image.Image, mask: np.ndarray | None) -> PIL.Image.Image:
    """Pixels outside the mask come from ``still`` (the init image or frame 0), so they never move."""
    if mask is None:
        return image
    return PIL.Image.fromarray(composite(np.asarray(image), np.asarray(still), mask))


def still_image(ctx: ModeContext, first: PIL.Image.Image | None = None) -> PIL.Image.Image:
    """What masked-out pixels show: the init image, else frame 0 (``first``, or frame 0 from the run folder)."""
    if ctx.spec.init.image is not None:
        return init_image(ctx.spec)
    return first if first is not None else ctx.run.load(0)


def latent_shape(core: SamplingCore, spec: Spec) -> tuple[int, ...]:
    """The shape of one frame's initial latents on ``core``'s model at the animation's size (a walk draws its
    keyframes' noise in it)."""
    model = core.model
    scale = model.vae_scale_factor
    channels = model.vae.config.latent_channels
    return (1, channels, spec.animation.height // scale, spec.animation.width // scale)


def independent_frames(
    ctx: ModeContext,
    frames: range,
    batch_size: int,
    request: Callable[[SamplingCore, FramePlan], FrameRequest],
) -> Iterator[tuple[FramePlan, FrameRequest, PIL.Image.Image]]:
    """Frames that depend on no other frame (a latent walk's), made ``batch_size`` per UNet call: batches
    aligned to multiples of the batch size (:func:`aligned_batches`, so a resume batches as the first run
    did) and always that long (``fixed_batch``: a frame's numbers never depend on where a render starts or
    ends), split where the checkpoint changes; ``request(core, frame)`` makes each frame's request on its
    checkpoint's core. Yields each frame's plan, request and image in order."""
    for batch in aligned_batches(frames, batch_size):
        for checkpoint, group in by_checkpoint([ctx.plan[i] for i in batch]):
            core = ctx.cores[checkpoint]
            requests = [request(core, frame) for frame in group]
            images = core.generate(requests, batch_size=batch_size, fixed_batch=True)
            yield from zip(group, requests, images, strict=True)


def aligned_batches(frames: range, size: int) -> Iterator[list[int]]:
    """Consecutive frames grouped by ``index // size``, so a resumed render batches as the first run did."""
    batch: list[int] = []
    for i in frames:
        if batch and i // size != batch[0] // size:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def by_checkpoint(frames: Sequence[FramePlan]) -> Iterator[tuple[str, list[FramePlan]]]:
    """Runs of consecutive frames on one checkpoint (a model schedule may switch mid-batch)."""
    group: list[FramePlan] = []
    for frame in frames:
        if group and frame.checkpoint != group[0].checkpoint:
            yield group[0].checkpoint, group
            group = []
        group.append(frame)
    if group:
        yield group[0].checkpoint, group


def frames_at_size(spec: Spec, path: Path, field: str) -> list[np.ndarray]:
    """Every frame of the video (or GIF, frame folder) at ``path``, resized to the animation size; it must
    cover every animation frame (a SpecError naming ``field`` otherwise). Used for init videos, mask videos
    and hybrid videos alike."""
    from flipbook.errors import SpecError
    from flipbook.io.readers import read_frames

    source = read_frames(path, field=field)
    n = spec.animation.max_frames
    if len(source.frames) < n:
        raise SpecError(
            field, str(path), f"a video with at least animation.max_frames = {n} frames",
            detail=f"it has {len(source.frames)}",
        )  # fmt: skip
    size = (spec.animation.width, spec.animation.height)
    return [np.asarray(PIL.Image.fromarray(f).resize(size, PIL.Image.LANCZOS)) for f in source.frames[:n]]

"""``animatediff``: every frame denoised together by the checkpoint's UNet with AnimateDiff motion modules.

The motion module (``animatediff.motion_module``) is added to a copy of ``model.name``'s UNet; motion LoRAs
are merged into it, the v3 adapter LoRA and the spec's LoRAs (``model.loras``, ``<lora:...>`` tags) into the
copy. Animations longer than ``animatediff.context_length`` are denoised in overlapping context windows
(:mod:`flipbook.clips.windows`), closed into a loop as ``closed_loop`` says. Prompts travel per frame:
each frame's prompt embedding is blended toward the next keyframe's (``animation.prompt_interpolation``,
lerp by default), and with ``closed_loop`` R+P or A the last keyframe travels back to the first.

Starts: txt2img; ``init.image`` (and ``animatediff.end_image``) held in the initial latents with the A1111
extension's latent power and scale, then img2img at ``init.strength`` (the share kept); ``init.video`` frame i
under frame i at ``animation.strength``. ControlNet units control every frame, from their own image or the
frame's start image. ``init.mask`` keeps the pixels outside the mask still, as in the other modes.

All frames come from one sampling run, so sampler, steps, checkpoint, strength and the LoRA set are one value
for the whole animation, and a resumed render renders every frame again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import PIL.Image

from flipbook.clips.windows import ContextOptions
from flipbook.errors import SpecError
from flipbook.io.images import open_image
from flipbook.modes.frame import (
    Frame,
    ModeContext,
    animation_mask,
    frame_request,
    frames_at_size,
    init_image,
    keep_still,
)
from flipbook.spec.model import Spec
from flipbook.spec.plan import Plan, denoise_for


def resume_every(spec: Spec) -> int:
    """All frames are made together: a resume renders the whole animation again."""
    return spec.animation.max_frames


def check_inputs(spec: Spec) -> None:
    """Open the end image and the init video, and check the motion module names something, before any model
    loads (what one sampling run can't do is refused with the plan: ``flipbook.spec.plan.check_mode``)."""
    settings = spec.animatediff
    if settings.end_image is not None:
        end_image(spec)
    if spec.init.video is not None:
        video_frames(spec)
    _check_motion_module(settings.motion_module)


def render(ctx: ModeContext) -> Iterator[Frame]:
    spec, plan = ctx.spec, ctx.plan
    clip = check_plan(spec, plan, ctx.prompts)
    images = _sample(ctx, clip)
    mask = animation_mask(spec)
    if mask is not None:
        still = init_image(spec) if spec.init.image is not None else images[0]
        images = [keep_still(image, still, mask) for image in images]
    parameters = _parameters(spec)
    starts = _start_images(spec)
    for frame, image in zip(plan.frames, images, strict=True):
        if frame.index <= ctx.start:
            continue
        start = starts[frame.index] if starts is not None else None
        extra = {"strength": clip.denoise} if start is not None else {}
        request = frame_request(ctx, frame, start, controls=(), **extra)
        yield Frame(frame.index, image, request, parameters=_frame_parameters(parameters, request))


# ---- checks ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipSettings:
    """What must be one value for the whole animation, taken from the plan once it is checked; ``denoise`` is
    the img2img strength the clip starts from its images at (1 for txt2img)."""

    checkpoint: str
    steps: int
    sampler: str
    denoise: float
    loras: tuple


def check_plan(spec: Spec, plan: Plan, prompts: dict | None = None) -> ClipSettings:
    """The clip's one checkpoint, step count, sampler and denoise, from a plan that already holds them for
    every frame (``flipbook.spec.plan.check_mode``); different LoRA sets per keyframe are refused here.
    ``prompts`` is the render's resolved prompts (text -> (text without LoRA tags, LoRAs)); LoRAs are only
    checked with it."""
    frames = plan.frames
    loras: tuple = ()
    if prompts is not None:
        sets = {prompts[f.prompt][1] for f in frames}
        if len(sets) > 1:
            raise SpecError(
                "prompts", "<lora:...> tags that differ between keyframes",
                "one LoRA set for the whole animation in animatediff mode (every frame is sampled together)",
            )  # fmt: skip
        loras = sets.pop()
    first = frames[0]
    if spec.init.video is not None:
        denoise = first.denoise
    elif spec.init.image is not None:
        denoise = float(denoise_for(spec.init.strength, first.steps))
    else:
        denoise = 1.0
    return ClipSettings(first.checkpoint, first.steps, first.sampler, denoise, loras)


def _check_motion_module(ref: str) -> None:
    """A reference written as a path (absolute, ``./``, ``../``, ``~``) must exist; built-ins, names in the
    models folder and hub ids are resolved when the render loads the module (reading its weights waits)."""
    from flipbook.models.families.animatediff.builtin import BUILTIN_NAMES
    from flipbook.models.families.animatediff.detect import ALLOWED_MOTION_MODULES

    if ref in BUILTIN_NAMES:
        return
    path = Path(ref).expanduser()
    written_as_path = path.is_absolute() or ref.startswith(("./", "../", "~", ".\\", "..\\"))
    if written_as_path and not path.exists():
        raise SpecError(
            "animatediff.motion_module", ref, ALLOWED_MOTION_MODULES, detail="no such file or folder"
        )


# ---- inputs ----------------------------------------------------------------------------------------------


def end_image(spec: Spec) -> PIL.Image.Image:
    size = (spec.animation.width, spec.animation.height)
    image = open_image(spec.animatediff.end_image, "animatediff.end_image").convert("RGB")
    return image.resize(size, PIL.Image.LANCZOS)


def video_frames(spec: Spec) -> list[PIL.Image.Image]:
    """Every init-video frame resized to the animation size; it must cover every animation frame."""
    return [PIL.Image.fromarray(f) for f in frames_at_size(spec, spec.init.video, "init.video")]


def _start_images(spec: Spec) -> list[PIL.Image.Image] | None:
    """What each frame starts from (for its parameters and for ControlNet units without an image)."""
    if spec.init.video is not None:
        return video_frames(spec)
    if spec.init.image is not None:
        return [init_image(spec)] * spec.animation.max_frames
    return None


def context_options(spec: Spec) -> ContextOptions:
    """The ``[animatediff]`` context settings as the window scheduler takes them."""

    a = spec.animatediff
    return ContextOptions(
        length=a.context_length, overlap=a.overlap(), stride=a.context_stride, schedule=a.context_schedule,
        closed_loop=a.closed_loop, fuse=a.fuse_method,
    )  # fmt: skip


# ---- sampling --------------------------------------------------------------------------------------------


def _sample(ctx: ModeContext, clip: ClipSettings) -> list[PIL.Image.Image]:
    """Assemble the motion UNet on the checkpoint, activate the LoRAs, sample every frame, and put the shared
    parts (text encoder, prompt cache) back as they were."""
    from flipbook.models.lora import LoraSet
    from flipbook.sampling.animatediff import AnimateDiffSampler, motion_pipeline

    spec = ctx.spec
    core = ctx.cores[clip.checkpoint]
    pipe = motion_pipeline(core.model, load_adapter(spec, core.model.family))
    _merge_adapter_lora(spec, pipe.unet)
    encoder = core.encoder(spec.sampling.clip_skip)
    loras = LoraSet(pipe)
    try:
        loras.activate(list(clip.loras))
        encoder.clear()  # a LoRA changes the text encoder the core's encoder shares
        sampler_name, config = scheduler_settings(spec, clip.sampler, core.model.scheduler_config)
        sampler = AnimateDiffSampler(pipe.unet, pipe.vae, encoder, config, ctx.events)
        request = clip_request(ctx, clip, sampler, sampler_name)
        return sampler.sample(request)
    finally:
        loras.clear()
        encoder.clear()


def load_adapter(spec: Spec, image_family: str | None = None):
    """The motion module with the spec's motion LoRAs merged into it; a built-in name means the one for the
    checkpoint's family (``image_family``)."""
    from flipbook.models.families.animatediff.loading import load_motion_adapter

    settings = spec.animatediff
    adapter = load_motion_adapter(
        settings.motion_module, models_dir=spec.model.models_dir, image_family=image_family
    )
    if settings.motion_loras:
        from flipbook.models.families.animatediff.loras import merge_motion_loras

        pairs = [(lora.name, lora.weight) for lora in settings.motion_loras]
        merge_motion_loras(adapter, pairs, models_dir=spec.model.models_dir)
    return adapter


def _merge_adapter_lora(spec: Spec, unet) -> None:
    lora = spec.animatediff.adapter_lora
    if lora is None:
        return
    from flipbook.models.families.animatediff.loras import merge_adapter_lora

    merge_adapter_lora(unet, lora.name, lora.weight, models_dir=spec.model.models_dir)


def scheduler_settings(spec: Spec, sampler: str, config: dict) -> tuple[str, dict]:
    """The sampler and scheduler config: the plan's, with ``animatediff.preset``'s overrides for distilled
    motion models (LCM, AnimateLCM, Lightning: their sampler and config entries such as linear betas)."""
    from flipbook.models.families.animatediff.presets import PRESETS, preset_scheduler_config

    preset = spec.animatediff.preset
    return PRESETS[preset].sampler or sampler, preset_scheduler_config(preset, config)


def clip_request(ctx: ModeContext, clip: ClipSettings, sampler, sampler_name: str):
    """The :class:`~flipbook.sampling.animatediff.ClipRequest` for the plan: per-frame prompts (as the
    render resolved them, without LoRA tags), blends, guidance and seeds, and the clip-wide settings."""
    from flipbook.sampling.animatediff import ClipRequest, FramePrompt, ImageHold

    spec, plan = ctx.spec, ctx.plan
    text = {planned: resolved for planned, (resolved, _) in ctx.prompts.items()}
    interpolation = spec.animation.text_interpolation()
    prompts = tuple(
        FramePrompt(
            prompt=text[f.prompt],
            negative_prompt=text[f.negative_prompt],
            blend_prompt=text[f.next_prompt],
            blend_negative_prompt=text[f.next_negative_prompt],
            blend_weight=f.blend if interpolation != "hold" else 0.0,
            guidance_scale=f.cfg,
        )  # fmt: skip
        for f in plan.frames
    )
    a = spec.animatediff
    hold = None
    if spec.init.image is not None or a.end_image is not None:
        hold = ImageHold(
            start=init_image(spec) if spec.init.image is not None else None,
            end=end_image(spec) if a.end_image is not None else None,
            power=a.latent_power, scale=a.latent_scale, power_last=a.latent_power_last,
            scale_last=a.latent_scale_last,
        )  # fmt: skip
    video = tuple(video_frames(spec)) if spec.init.video is not None else None
    return ClipRequest(
        prompts=prompts, seeds=tuple(f.seed for f in plan.frames), steps=clip.steps, sampler=sampler_name,
        width=spec.animation.width, height=spec.animation.height,
        blend_mode=interpolation if interpolation != "hold" else "lerp", context=context_options(spec),
        strength=clip.denoise, video=video, hold=hold,
        free_init_iterations=a.free_init_iterations if a.free_init else 1, free_init_method=a.free_init_method,
        free_noise=a.free_noise, controls=_controls(ctx, clip, sampler, video or _hold_sources(hold, plan)),
    )  # fmt: skip


def _hold_sources(hold, plan: Plan) -> tuple | None:
    """Image to video: ControlNet units without their own image see the start image on every frame."""
    if hold is None or hold.start is None:
        return None
    return (hold.start,) * len(plan)


def _controls(ctx: ModeContext, clip: ClipSettings, sampler, sources) -> tuple:
    """Each ControlNet unit as one :class:`ControlFrames`: its control image per frame (preprocessed per
    frame as the other modes do), its per-frame weight, loaded once per run by the sampling core's
    ControlNets."""
    if ctx.controls is None:
        return ()
    from flipbook.sampling.animatediff import ControlFrames

    spec, plan = ctx.spec, ctx.plan
    per_frame = [ctx.controls.controls(f, sources[f.index] if sources else None) for f in plan.frames]
    core = ctx.cores[clip.checkpoint]
    units = []
    for j, first in enumerate(per_frame[0]):
        images = sampler.control_images(
            [c[j].image for c in per_frame], spec.animation.width, spec.animation.height
        )
        units.append(
            ControlFrames(
                controlnet=core.controlnets.get(first.model, core.model),
                images=images,
                scales=tuple(float(c[j].conditioning_scale) for c in per_frame),
                guidance_start=first.guidance_start,
                guidance_end=first.guidance_end,
            )  # fmt: skip
        )
    return tuple(units)


# ---- parameters ------------------------------------------------------------------------------------------


def _parameters(spec: Spec) -> dict[str, str]:
    """The A1111-style keys every frame's PNG gets, as the A1111 extension names its settings."""
    a = spec.animatediff
    parameters = {
        "Motion module": a.motion_module,
        "Context": context_options(spec).describe(),
        "Fuse": a.fuse_method,
        "Frames": str(spec.animation.max_frames),
    }
    if a.motion_loras:
        parameters["Motion LoRAs"] = ", ".join(f"{m.name}:{m.weight:g}" for m in a.motion_loras)
    if a.adapter_lora is not None:
        parameters["Adapter LoRA"] = f"{a.adapter_lora.name}:{a.adapter_lora.weight:g}"
    if a.preset != "none":
        parameters["Preset"] = a.preset
    if a.free_init:
        parameters["FreeInit"] = f"{a.free_init_iterations} x {a.free_init_method}"
    if a.free_noise:
        parameters["FreeNoise"] = "shuffle"
    if spec.init.image is not None or a.end_image is not None:
        parameters["Latent power"] = f"{a.latent_power:g}/{a.latent_power_last:g}"
        parameters["Latent scale"] = f"{a.latent_scale:g}/{a.latent_scale_last:g}"
    return parameters


def _frame_parameters(parameters: dict[str, str], request) -> dict[str, str]:
    """The shared keys plus this frame's prompt blend (render only adds it for frames without parameters)."""
    if request.blend_weight <= 0:
        return parameters
    blend = f"{request.blend_mode} {request.blend_weight:.4g} toward: {request.blend_prompt}"
    return {**parameters, "Prompt blend": blend}

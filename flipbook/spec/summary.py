"""A readable summary of a validated spec: what will be rendered, before any GPU time is spent."""

from __future__ import annotations

from flipbook.spec.model import CameraSection, Spec
from flipbook.spec.plan import Plan, build_plan


def summarize(spec: Spec) -> str:
    """Summarise ``spec``; building its plan also checks every schedule's values at every frame."""
    a, s, m = spec.animation, spec.sampling, spec.model
    random_seed = s.seed == -1
    plan = build_plan(spec.with_seed() if random_seed else spec)
    seed = "random (chosen and recorded at render)" if random_seed else str(s.seed)
    timing = f"at {a.fps:g} fps ({a.max_frames / a.fps:.2f} s)"
    if a.mode == "video" and "fps" not in a.model_fields_set:
        timing = "at the source's frame rate"
    count = f"{a.max_frames} frames {timing}"
    if a.mode == "svd" and "max_frames" not in a.model_fields_set:
        count = f"one clip of the model's frame count (read at render) at {a.fps:g} fps"
    lines = [
        f"ok: {a.mode} animation, {count}, {a.width}x{a.height}",
        f"model: {_names(plan, 'checkpoint')}" + (f" (models dir {m.models_dir})" if m.models_dir else ""),
        f"sampling: {_names(plan, 'sampler')}, {_span(plan, 'steps')} steps, cfg {_span(plan, 'cfg')}, "
        f"seed {seed}, clip skip {s.clip_skip}",
    ]
    if a.mode in ("2d", "3d"):
        lines.append(_camera_line(spec, plan))
    if a.mode == "interpolate":
        lines.append(_walk_line(spec, plan))
    if a.mode == "video":
        lines.append(_video_line(spec))
    if a.mode == "variations":
        v = spec.variations
        lines.append(
            f"inpaint loop: {a.max_frames} variations of init.image inside init.mask at denoise {v.denoise:g}, "
            f"ordered as a {v.order}, {v.batch_size} per batch"
        )
    if a.mode == "animatediff":
        lines.append(_animatediff_line(spec))
    if a.mode == "svd":
        lines.append(_svd_line(spec))
    if a.mode in ("travel", "2d", "3d") and a.max_frames > 1:
        feedback = plan.frames[1:]
        fewest = min(int(round(f.steps * f.denoise, 6)) for f in feedback)
        lines.append(
            f"img2img feedback: strength {_span(plan, 'strength', start=1)}; "
            f"denoising steps per frame after the first: at least {fewest}"
        )
    lines.append("prompts (frame: prompt | negative, as at the keyframe):")
    for frame in plan.frames:
        if frame.index == 0 or frame.prompt_key == frame.index:
            negative = f" | {frame.negative_prompt}" if frame.negative_prompt else ""
            lines.append(f"  {frame.index:>5}: {frame.prompt}{negative}")
    if spec.audio.file is not None:
        soundtrack = ", soundtrack of video outputs" if spec.audio.soundtrack else ""
        lines.append(f"audio: {spec.audio.file} from {spec.audio.offset:g} s (beat, bpm, amp){soundtrack}")
    lines.append(
        f"output: {spec.output.dir}/{spec.output.name or 'flipbook'}/ as {', '.join(spec.output.formats)}"
    )
    lines += [f"warning: {warning}" for warning in plan.warnings]
    return "\n".join(lines)


def _video_line(spec: Spec) -> str:
    """Where the frames come from and what keeps them steady (the source is read at render time)."""
    v = spec.video
    pick = (
        f"resampled to {v.fps:g} fps"
        if v.fps
        else f"every {v.every_nth}"
        if v.every_nth > 1
        else "every frame"
    )
    end = f" to {v.end_frame}" if v.end_frame is not None else ""
    steady = [f"feedback {v.feedback}" if v.feedback != 0 else "", f"colour coherence {v.color_coherence}"]
    mask = " masked" if spec.init.mask or v.mask_video else ""
    return (
        f"video: {spec.init.video}, {pick} from frame {v.start_frame}{end}, {v.resize_mode}{mask}; "
        + ", ".join(x for x in steady if x and not x.endswith("none"))
        + ("; source audio kept" if v.keep_audio else "")
    ).replace("; ;", ";")


def _animatediff_line(spec: Spec) -> str:
    """The motion module, the context windows and the loop, and what the clip starts from."""
    d = spec.animatediff
    frames = spec.animation.max_frames
    windows = (
        "one window"
        if frames <= d.context_length
        else f"windows of {d.context_length} overlapping {d.overlap()}, stride {d.context_stride}, "
        f"{d.context_schedule}, {d.fuse_method} fusing"
    )
    extras = [name for name, on in (("FreeInit", d.free_init), ("FreeNoise", d.free_noise)) if on]
    start = "txt2img"
    if spec.init.video is not None:
        start = f"the init video {spec.init.video}"
    elif spec.init.image is not None:
        start = f"init image {spec.init.image}" + (f" to end image {d.end_image}" if d.end_image else "")
    preset = f", preset {d.preset}" if d.preset != "none" else ""
    return (
        f"animatediff: motion module {d.motion_module}{preset}; {windows}; closed loop {d.closed_loop}; "
        f"text {spec.animation.text_interpolation()}"
        + (f"; {', '.join(extras)}" if extras else "")
        + f"; frames are {start}"
    )


def _svd_line(spec: Spec) -> str:
    """The video model, clip length and conditioning; frame 0 is the init image or txt2img."""
    v = spec.svd
    clip = f"{v.num_frames} frames per clip" if v.num_frames else "the model's frames per clip"
    start = f"the init image {spec.init.image}" if spec.init.image else "made by txt2img from the prompt"
    brush = "; motion brush init.mask" if spec.init.mask else ""
    return (
        f"svd: {v.model}, {clip} (chained until max_frames), {v.num_inference_steps} steps, motion bucket "
        f"{v.motion_bucket_id}, noise aug {v.noise_aug_strength:g}, guidance {v.min_guidance_scale:g} to "
        f"{v.max_guidance_scale:g}; frame 0 is {start}{brush}"
    )


def _walk_line(spec: Spec, plan: Plan) -> str:
    """The latent walk: noise, easing, text blending, batching, and what each frame starts from."""
    w = spec.interpolate
    easing = w.easing if isinstance(w.easing, str) else ", ".join(w.easing)
    init = "txt2img"
    if spec.init.image is not None or spec.init.video is not None:
        source = f"init video {spec.init.video}" if spec.init.video else f"init image {spec.init.image}"
        motion = " moved by the camera" if w.motion else ""
        init = f"img2img from the {source}{motion}, strength {_span(plan, 'strength')}"
    return (
        f"latent walk: {w.noise} noise, easing {easing}, text {spec.animation.text_interpolation()}, "
        f"{w.batch_size} frames per batch; frames are {init}"
    )


def _span(plan: Plan, field: str, start: int = 0) -> str:
    values = [getattr(f, field) for f in plan.frames[start:]]
    low, high = min(values), max(values)
    return f"{low:g}" if low == high else f"{low:g} to {high:g} (scheduled)"


def _names(plan: Plan, field: str) -> str:
    names = list(dict.fromkeys(getattr(f, field) for f in plan.frames))
    return names[0] if len(names) == 1 else " then ".join(names) + " (scheduled)"


def _camera_line(spec: Spec, plan: Plan) -> str:
    """The camera schedules that move (the rest keep their defaults), and how frames are made."""
    c = spec.camera
    moving = [
        name
        for name in plan.frames[0].camera
        if len({f.camera[name] for f in plan.frames}) > 1 or plan.frames[0].camera[name] != _DEFAULTS[name]
    ]
    shown = ", ".join(f"{name} {_camera_span(plan, name)}" for name in moving) or "no camera motion"
    depth = f"; depth {c.depth_model}" if spec.animation.mode == "3d" else ""
    return f"camera: {shown}; cadence {c.cadence}; colour coherence {c.color_coherence}{depth}"


def _camera_span(plan: Plan, name: str) -> str:
    values = [f.camera[name] for f in plan.frames]
    low, high = min(values), max(values)
    return f"{low:.4g}" if low == high else f"{low:.4g} to {high:.4g}"


_DEFAULTS = {
    name: float(field.default)
    for name, field in CameraSection.model_fields.items()
    if isinstance(field.default, int | float) and not isinstance(field.default, bool)
}

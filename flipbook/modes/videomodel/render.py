"""``videomodel``: a video diffusion model makes the video in segments (see ``rules.py`` for the layout).

Segment 0 is text to video, or image to video from ``init.image`` or a keyframe image at frame 0. Segment k
(border ``b = k * S``) is conditioned on the ``overlap`` frames up to and including ``b`` (from memory, or
from disk when resuming: the same uint8 images either way), on each keyframe image it makes (at its place in
the segment: first-last-frame when the keyframe is its last frame), and for the last segment of a loop on
frame 0 placed one frame after the last. It yields the frames after ``b`` up to the next border. Its prompt,
negative prompt, cfg, steps, seed and shift are the plan's at ``b + 1`` (segment 0: at frame 0). A segment
is as long as it needs to be (the model's frame rule, at most ``segment_frames``), so the last one is shorter
when the video ends before it.

With ``init.video`` (video to video) frame ``i`` restyles source frame ``i``: each segment's initial latents
are its source frames' noised to the segment's ``strength`` (diffusers' WanVideoToVideoPipeline; LTX-Video's
LTXConditionPipeline editing its source latents), conditioned as above where the model takes images (a
text-to-video model restyles each segment on its own, its border faded by ``blend_frames``); the output keeps
the source's frame rate and audio.

A resumed render restarts at the last segment border on disk (``resume_every`` = S) and gives the same frames.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from flipbook.errors import FlipbookError, SpecError
from flipbook.io.images import open_image
from flipbook.models.families.family import Family
from flipbook.modes.base import Split
from flipbook.modes.frame import Frame, ModeContext, init_image
from flipbook.modes.videomodel.rules import (
    CAPABILITY,
    LOOP_END,
    OVERLAP,
    check_frame_rules,
    check_placement,
    check_positions,
    check_source_length,
    check_steps,
    family_of,
    known_positions,
    segment_begin,
    segment_starts,
    segment_step,
    source_frames_needed,
)
from flipbook.runs.run_dir import RunDir
from flipbook.spec.model import Spec
from flipbook.spec.plan import Plan

FIELD = "videomodel.model"
ALLOWED = (
    "a built-in video diffusion model, a diffusers folder, a name in model.models_dir (a diffusers folder or a "
    "transformer file), or a hub id in the local Hugging Face cache"
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resume_every(spec: Spec) -> int:
    """Segments start every S frames: a resume restarts at the last segment border on disk."""
    return segment_step(spec)


def split(spec: Spec, plan: Plan) -> Split | None:
    """Segments that depend on no other: a source video restyled by a text-to-video model (each segment
    from its own source frames, conditioned on nothing) without ``blend_frames`` (which fades from the frame
    the segment before wrote). A job then splits at segment starts (frame 0, then each border + 1). Every
    other segment is conditioned on frames the one before made (even where a keyframe image is its last
    frame, the next segment continues from the frames as made), so such a clip is one task."""
    v = spec.videomodel
    if spec.init.video is None or v.blend_frames:
        return None
    family = family_of_model(spec)
    if family.conditioning(v.model, spec.model.models_dir, FIELD) != "none":
        return None  # takes images (or unknown until loaded): later segments continue from earlier ones
    step = segment_step(spec)
    return Split(step, offset=step + 1)


def check_inputs(spec: Spec) -> None:
    """Open every keyframe image, find the model's family and, where its configs say it (built-ins, folders),
    check what it can be conditioned on, before any model loads."""
    for index, keyframe in enumerate(spec.videomodel.keyframes):
        open_image(keyframe.image, f"videomodel.keyframes[{index}].image")
    family = family_of_model(spec)
    check_placement(spec, family)
    conditioning = family.conditioning(spec.videomodel.model, spec.model.models_dir, FIELD)
    if conditioning is not None:
        _check_conditioning(spec, conditioning, spec.videomodel.model)
    builtin = family_of(spec)
    if spec.init.video is not None and builtin is not None:
        check_source_length(spec, len(_source_times(spec)), builtin.frame_step or 1, builtin.title)


def resolve_spec(spec: Spec) -> Spec:
    """With ``init.video`` and no ``animation.fps`` the output keeps the source's frame rate (frame for frame,
    so its audio stays in step), recorded in the run's spec."""
    if spec.init.video is None or "fps" in spec.animation.model_fields_set:
        return spec
    from flipbook.io.readers import source_rate

    fps = round(source_rate(_source_times(spec)), 6)
    return spec.model_copy(update={"animation": spec.animation.model_copy(update={"fps": fps})})


def soundtrack(spec: Spec, run_dir: Path) -> tuple[Path, float] | None:
    """The source's audio from its first frame (video to video with ``keep_audio``), when it has any; else the
    audio the model made with the frames (LTX-2), its segments' joined into the run folder's ``NAME.wav``."""
    from flipbook.io.readers import has_audio

    video = spec.init.video
    if video is not None:
        return (Path(video), 0.0) if spec.videomodel.keep_audio and has_audio(video) else None
    if family_of_model(spec).sample_with_audio is None:
        return None
    return _joined_audio(spec, RunDir(run_dir))


def _joined_audio(spec: Spec, run: RunDir) -> tuple[Path, float] | None:
    """The segments' audio on disk joined into ``NAME.wav`` (see ``audio.py``); None when none is there."""
    from flipbook.modes.videomodel import audio

    paths = [(segment_begin(spec, b), run.audio_path(segment_begin(spec, b))) for b in segment_starts(spec)]
    clips = [(first, *audio.read_clip(path)) for first, path in paths if path.is_file()]
    if not clips:
        return None
    rate = clips[0][2]
    joined = audio.join_segments([(first, samples) for first, samples, _ in clips], rate, spec.animation.fps,
                                 spec.animation.max_frames)  # fmt: skip
    return audio.write_clip(run.soundtrack_path(), joined, rate), 0.0


def source_frames(spec: Spec) -> list[np.ndarray] | None:
    """The source frames restyled (the consistency score's baseline); None without ``init.video``."""
    if spec.init.video is None:
        return None
    return [np.asarray(image) for image in _source_video(spec, spec.animation.max_frames)]


def family_of_model(spec: Spec) -> Family:
    """The video diffusion family of ``videomodel.model``: a built-in's, a diffusers folder's or hub id's (its
    ``model_index.json``), a single file's (its keys), as the registry says."""
    from flipbook.models import families

    ref, models_dir = spec.videomodel.model, spec.model.models_dir
    family = families.builtin_family(ref, CAPABILITY)
    if family is None:
        family = _detect(_where(ref, models_dir), ref)
    if family.capability != CAPABILITY:
        raise FlipbookError(FIELD, ref, ALLOWED, detail=f"this is a {family.reference_kind} ({family.title})")
    return family


def render(ctx: ModeContext) -> Iterator[Frame]:
    spec = ctx.spec
    ctx.cores.release()  # the image model is never used here; keep the device's memory for the video model
    family = family_of_model(spec)
    check_steps(spec, ctx.plan.frames, family)
    loras = _lora_files(family, ctx.prompts)
    _check_lora_experts(spec, loras)
    _check_second_expert(spec)
    bundle = _load(spec, family)
    _check_second_expert(spec, bundle)
    # before the memory switches: group offload moves only the layers it saw
    bundle.loras.load(loras, experts={entry.name: entry.expert for entry in spec.videomodel.lora_experts})
    bundle = _switched(spec, bundle, ctx.run.log)
    _check_bundle(spec, bundle)
    source = None
    if spec.init.video is not None:
        v = spec.videomodel
        count = source_frames_needed(
            spec.animation.max_frames, v.segment_frames, v.overlap, bundle.scale_temporal
        )
        source = _source_video(spec, count)
    keyframes = _keyframe_images(spec)
    made: dict[int, PIL.Image.Image] = {}

    def frame_image(index: int) -> PIL.Image.Image:
        if index not in made:
            made[index] = ctx.run.load(index)
        return made[index]

    step = segment_step(spec)
    encode = _prompt_encoder(family, bundle, spec.videomodel.max_sequence_length)
    for border in segment_starts(spec):
        if ctx.start >= 0 and border + step <= ctx.start:
            continue
        known = _known(spec, border, keyframes, frame_image, bundle.conditioning != "none")
        seam = frame_image(border) if border > 0 and spec.videomodel.blend_frames else None
        for frame in _segment(ctx, family, bundle, encode, border, known, source, seam):
            made[frame.index] = frame.image
            if frame.index > ctx.start:
                yield frame


# ---- pieces ---------------------------------------------------------------------------------------------


def _load(spec: Spec, family: Family):
    """The model loaded with its modules on the CPU unless ``offload`` is ``none``: offload hooks move them
    (``auto`` decides from the loaded weights), so a model larger than the GPU loads; ``_switched`` moves them
    to the device where nothing is offloaded. An fp8 transformer file's weights stay fp8 in memory unless
    ``fp8_storage`` is false (keeping them changes no picture: each layer computes with the weight the upcast
    would have given it)."""
    m, v = spec.model, spec.videomodel
    return family.load(
        v.model, field_name=FIELD, models_dir=m.models_dir, device=m.device, dtype=m.dtype, seed=0,
        text_encoder=v.text_encoder, vae=v.vae, tokenizer=v.tokenizer, image_encoder=v.image_encoder,
        on_cpu=v.offload != "none", keep_fp8=v.fp8_storage is not False,
    )  # fmt: skip


def _lora_files(family: Family, prompts) -> list[Path]:
    """The LoRA files of ``model.loras`` and the prompts' ``<lora:...>`` tags, checked to be the family's
    before it loads."""
    from flipbook.models.video_loras import check_loras

    files = sorted({entry[0] for _, loras in prompts.values() for entry in loras})
    check_loras(family, files)
    return files


def _check_lora_experts(spec: Spec, files: list[Path]) -> None:
    """Every name in ``videomodel.lora_experts`` is one of the LoRAs the spec uses (by file stem), once."""
    used = sorted({Path(file).stem for file in files})
    named = [entry.name for entry in spec.videomodel.lora_experts]
    for name in {name for name in named if named.count(name) > 1}:
        raise FlipbookError("videomodel.lora_experts", name, "each LoRA once (high_noise, low_noise or both)")
    for entry in spec.videomodel.lora_experts:
        if entry.name not in used:
            raise FlipbookError(
                "videomodel.lora_experts", entry.name, "the name of a LoRA the spec uses (model.loras or a "
                f"<lora:NAME:w> tag): {', '.join(used) if used else 'it uses none'}",
            )  # fmt: skip


def _check_second_expert(spec: Spec, bundle=None) -> None:
    """A LoRA sent to the low-noise expert needs a model that has one (Wan 2.2 A14B's ``transformer_2``): from
    the loaded ``bundle``, or before loading from what a built-in or a folder's ``model_index.json`` says."""
    has_one = _second_expert(spec) if bundle is None else getattr(bundle, "transformer_2", None) is not None
    if has_one is not False:  # None: only the load tells
        return
    for entry in spec.videomodel.lora_experts:
        if entry.expert != "high_noise":
            raise FlipbookError(
                "videomodel.lora_experts", f"{entry.name} = {entry.expert}", "high_noise: this model has one "
                "transformer (only Wan 2.2 A14B has a low-noise expert)",
            )  # fmt: skip


def _second_expert(spec: Spec) -> bool | None:
    """Whether the model has a second (low-noise) transformer, where its configuration tells without loading
    (no built-in has one; a folder's ``model_index.json`` lists it); None where only a load can tell."""
    from flipbook.models import families

    ref, models_dir = spec.videomodel.model, spec.model.models_dir
    if families.builtin_family(ref, CAPABILITY) is not None:
        return False
    where = _where(ref, models_dir)
    index = Path(where) / "model_index.json" if isinstance(where, Path) else None
    if index is None or not index.is_file():
        return None
    try:
        entry = json.loads(index.read_text(encoding="utf-8")).get("transformer_2")
    except (OSError, ValueError):
        return None  # the load says what is wrong with the folder
    return isinstance(entry, list) and entry[0] is not None


def _switched(spec: Spec, bundle, log=None):
    """The memory and speed switches set on the loaded model (``auto`` from the device's memory and the
    model's weights: sampling/video_memory.py); ``log`` is told which were chosen."""
    from flipbook.models.performance import Performance, prepare
    from flipbook.sampling import video_memory

    v = spec.videomodel
    fp8_storage = _fp8_storage(v.fp8_storage, bundle)
    if fp8_storage and spec.performance.fuse_qkv:
        raise FlipbookError(
            "performance.fuse_qkv", True, "false with fp8 storage (videomodel.fp8_storage, on for a transformer "
            "file in fp8 unless it is false)", detail="fusing would join weights stored in fp8 outside their layers",
        )  # fmt: skip
    switches = video_memory.memory_switches(
        video_memory.device_memory(bundle.device), offload=v.offload, vae_tiling=v.vae_tiling,
        attention_backend=v.attention_backend, fp8_storage=fp8_storage, weights=video_memory.weights_of(bundle),
    )  # fmt: skip
    if log is not None:
        log(
            f"video model switches: offload {switches.offload}, fp8 storage {switches.fp8_storage}, "
            f"VAE tiling {switches.vae_tiling}, attention {switches.attention_backend or 'default'}"
        )
    try:
        bundle = video_memory.apply(bundle, switches)
    except ValueError as error:
        raise FlipbookError(
            "videomodel.attention_backend", v.attention_backend, "a backend this machine has (auto, native)",
            detail=str(error),
        ) from None  # fmt: skip
    return prepare(bundle, Performance.of(spec.performance))


def _fp8_storage(asked: bool | None, bundle) -> bool | None:
    """fp8 storage as asked, on where the loader kept an fp8 file's weights in fp8, but never for a transformer
    that is already quantised (a GGUF file): casting its packed weights to fp8 would destroy them, so ``auto``
    leaves it off and an explicit ``true`` is an error."""
    from flipbook.models.fp8_files import holds_fp8

    transformers = [getattr(bundle, name, None) for name in ("transformer", "transformer_2")]
    if any(module is not None and holds_fp8(module) for module in transformers):
        return True
    quantised = any(getattr(module, "is_quantized", False) for module in transformers)
    if not quantised:
        return asked
    if asked:
        raise FlipbookError(
            "videomodel.fp8_storage", True, "false or auto for a quantised (GGUF) transformer",
            detail="its weights are already stored quantised",
        )  # fmt: skip
    return False


def _where(ref: str, models_dir) -> Path | str:
    """A path for a file or folder (as given, or found by name in the models folder), else the hub id."""
    path = Path(ref).expanduser()
    if path.exists():
        return path
    if models_dir:
        from flipbook.models.folders import MODEL_KINDS, ModelsDir

        folders = ModelsDir(Path(models_dir))
        for kind in MODEL_KINDS:
            try:
                return folders.find(kind, ref)
            except FlipbookError:
                continue
    if not _HUB_ID.match(ref):
        raise FlipbookError(FIELD, ref, ALLOWED, detail="no such file, folder or model name")
    return ref


def _detect(where: Path | str, ref: str) -> Family:
    """The family whose detector claims a folder's or hub id's ``model_index.json`` or a file's keys."""
    from flipbook.models import families

    if isinstance(where, Path) and where.is_file():
        if where.suffix.lower() == ".gguf":  # GGUF-quantised transformers (ComfyUI-GGUF's)
            from flipbook.models.gguf_files import tensor_names

            keys = dict.fromkeys(tensor_names(where))
        elif where.suffix.lower() != ".safetensors":
            raise FlipbookError(
                FIELD, ref, ALLOWED, detail=f"{where.suffix} files are not loaded: a .safetensors or a "
                "GGUF-quantised .gguf transformer file",
            )  # fmt: skip
        else:
            from safetensors import safe_open

            with safe_open(str(where), framework="pt") as handle:
                keys = dict.fromkeys(handle.keys())
        family = families.detect_checkpoint(keys)
    else:
        family = families.detect_folder(_model_index(where, ref), {})
    if family is None:
        raise FlipbookError(FIELD, ref, ALLOWED, detail="no video diffusion family flipbook knows claims it")
    return family


def _model_index(where: Path | str, ref: str) -> dict:
    import json

    if isinstance(where, Path):
        index = where / "model_index.json"
    else:
        from huggingface_hub import hf_hub_download

        try:
            index = Path(hf_hub_download(where, "model_index.json", local_files_only=_offline()))
        except Exception:  # huggingface_hub raises several unrelated types for "not there"
            raise FlipbookError(FIELD, ref, ALLOWED, detail="not in the local Hugging Face cache") from None
    try:
        return json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FlipbookError(FIELD, ref, ALLOWED, detail=f"model_index.json: {error}") from None


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _check_bundle(spec: Spec, bundle) -> None:
    """The loaded model's own frame rules (built-ins were checked with the spec) and what it can condition
    on: a text-to-video model makes one segment from the prompt, nothing else."""
    title = f"this model ({bundle.name})"
    check_frame_rules(spec, bundle.scale_temporal, bundle.side_multiple, title)
    if spec.init.video is not None:
        check_source_length(spec, len(_source_times(spec)), bundle.scale_temporal, title)
    length = spec.videomodel.max_sequence_length
    if bundle.text_length is not None and length != bundle.text_length:
        raise SpecError(
            "videomodel.max_sequence_length", length, f"{bundle.text_length} for this model ({bundle.name}: its "
            "image attention assumes that many prompt tokens)",
        )  # fmt: skip
    _check_conditioning(spec, bundle.conditioning, bundle.name)
    known_problem = getattr(bundle, "known_problem", None)  # where this model takes images (Wan 2.2 TI2V)
    if known_problem is not None:
        check_positions(spec, known_problem, title)


def _check_conditioning(spec: Spec, conditioning: str, name: str) -> None:
    """An image-to-video model needs a start image; a text-to-video one makes one segment from the prompt (or
    restyles a source video, each segment on its own)."""
    if conditioning == "optional":
        return
    if conditioning == "required":
        if spec.init.image is None and not any(k.frame == 0 for k in spec.videomodel.keyframes):
            raise FlipbookError(
                "init.image", None, "a start image (init.image, or a keyframe image at frame 0) for an "
                f"image-to-video model ({name})",
            )  # fmt: skip
        return
    v = spec.videomodel
    needs = (
        ("videomodel.keyframes", [k.frame for k in v.keyframes]) if v.keyframes else None,
        ("videomodel.loop", True) if v.loop else None,
        ("init.image", str(spec.init.image)) if spec.init.image is not None else None,
        ("animation.max_frames", spec.animation.max_frames)
        if len(segment_starts(spec)) > 1 and spec.init.video is None
        else None,
    )
    for need in needs:
        if need is not None:
            raise SpecError(
                need[0], need[1], f"an image-to-video model in videomodel.model for this ({name} is "
                "text to video: it makes one segment from the prompt, "
                f"at most videomodel.segment_frames = {v.segment_frames} frames)",
            )  # fmt: skip


def _keyframe_images(spec: Spec) -> dict[int, PIL.Image.Image]:
    """Keyframe images (and ``init.image`` as frame 0's) at the animation size."""
    size = (spec.animation.width, spec.animation.height)
    images = {
        k.frame: open_image(k.image, f"videomodel.keyframes[{i}].image")
        .convert("RGB")
        .resize(size, PIL.Image.LANCZOS)
        for i, k in enumerate(spec.videomodel.keyframes)
        if k.frame < spec.animation.max_frames  # later ones are past the end (the summary says so)
    }
    if spec.init.image is not None:
        images[0] = init_image(spec)
    return images


def _source_times(spec: Spec) -> list[float]:
    from flipbook.io.readers import frame_times

    return frame_times(spec.init.video, field="init.video")


def _source_video(spec: Spec, count: int) -> list[PIL.Image.Image]:
    """The first ``count`` frames of ``init.video`` at the animation size."""
    from flipbook.io.readers import read_frames

    size = (spec.animation.width, spec.animation.height)
    frames = read_frames(spec.init.video, field="init.video", limit=count).frames
    if len(frames) < count:  # the packets counted more frames than decode: a damaged file
        raise FlipbookError(
            "init.video", str(spec.init.video), f"a video with at least {count} frames",
            detail=f"{len(frames)} decode",
        )  # fmt: skip
    return [PIL.Image.fromarray(frame).convert("RGB").resize(size, PIL.Image.LANCZOS) for frame in frames]


def _known(
    spec: Spec, border: int, keyframes: Mapping[int, PIL.Image.Image], frame_image, takes_images: bool = True
) -> dict[int, PIL.Image.Image]:
    """Segment positions -> the images they are conditioned on (see the module docstring); none for a model
    that takes no images (a text-to-video model restyling a source)."""
    if not takes_images:
        return {}
    begin = segment_begin(spec, border)
    known: dict[int, PIL.Image.Image] = {}
    for position, field in known_positions(spec, border).items():
        if field == OVERLAP:
            known[position] = frame_image(begin + position)
        elif field == LOOP_END:
            # frame 0 as written; a one-segment loop has not written it yet: its start image (Wan FLF2V's use)
            known[position] = frame_image(0) if border > 0 else keyframes[0]
        else:
            known[position] = keyframes[begin + position]
    return known


def _segment_length(spec: Spec, bundle, border: int, known: Mapping[int, PIL.Image.Image]) -> int:
    """The fewest frames (the model's rule) that reach the last frame this segment yields or is conditioned on."""
    begin = segment_begin(spec, border)
    last = min(border + segment_step(spec), spec.animation.max_frames - 1) - begin
    needed = max([last, *known]) + 1
    t = bundle.scale_temporal
    return min(spec.videomodel.segment_frames, (needed - 1 + t - 1) // t * t + 1)


def _prompt_encoder(family: Family, bundle, max_sequence_length: int):
    @cache
    def encode(text: str):
        return family.encoder(bundle, text, max_sequence_length)

    return encode


def _segment(
    ctx: ModeContext, family: Family, bundle, encode, border: int, known, source=None, seam=None
) -> Iterator[Frame]:
    """The frames of the segment at ``border``: frame 0 (segment 0) and the frames after the border up to
    the next one, trimmed at max_frames; restyled from ``source`` (the source video's frames) when given.
    ``seam``: the border frame as written, which the frames after it fade from (``blend_frames``)."""
    from flipbook.sampling.segments import SegmentSettings

    spec = ctx.spec
    v, a = spec.videomodel, spec.animation
    begin = segment_begin(spec, border)
    plan = ctx.plan[0 if border == 0 else border + 1]
    shift = plan.schedules.get("videomodel.shift", 0.0)
    strength = plan.schedules.get("videomodel.strength", 1.0) if source is not None else 1.0
    settings = SegmentSettings(
        num_frames=_segment_length(spec, bundle, border, known), height=a.height, width=a.width,
        num_inference_steps=plan.steps, guidance_scale=plan.cfg, guidance_scale_2=v.guidance_scale_2,
        shift=shift or None, max_sequence_length=v.max_sequence_length, fps=a.fps, strength=strength,
    )  # fmt: skip
    video = None if source is None else source[begin : begin + settings.num_frames]
    last = min(border + segment_step(spec), a.max_frames - 1)
    first = 0 if border == 0 else border + 1
    indices = tuple(range(first, last + 1))
    prompt, loras = ctx.prompts[plan.prompt]  # its <lora:...> tags (and model.loras) are this segment's
    bundle.loras.activate(loras)
    negative = encode(ctx.prompts[plan.negative_prompt][0]) if settings.guided else None
    generator = torch.Generator("cpu").manual_seed(plan.seed)
    frames, sound = _sample(
        family, bundle, encode(prompt), negative, settings, generator=generator, known=known, events=ctx.events,
        frames=indices, video=video,
    )  # fmt: skip
    if sound is not None:  # the model's audio, kept for the soundtrack (audio.py)
        from flipbook.modes.videomodel.audio import write_clip

        write_clip(ctx.run.audio_path(begin), sound.numpy(), bundle.audio_rate)
    if seam is not None:
        from flipbook.sampling.segments import fade_seam

        written = torch.from_numpy(np.asarray(seam, dtype=np.float32) / 255)
        frames = fade_seam(frames, border - begin, written, v.blend_frames)
    pixels = (frames * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    parameters = _parameters(spec, bundle, border, plan, settings)
    for index in indices:
        yield Frame(index, PIL.Image.fromarray(pixels[index - begin]), None, parameters)


def _sample(family: Family, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A segment's frames and the audio the model made with them (None for models that make none)."""
    if family.sample_with_audio is not None:
        return family.sample_with_audio(*args, **kwargs)
    return family.sample(*args, **kwargs), None


def _parameters(spec: Spec, bundle, border: int, plan, settings) -> dict[str, str]:
    """A1111-style keys saying how a frame was made."""
    return {
        "Video model": spec.videomodel.model,
        "Segment": str(border // segment_step(spec)),
        "Segment frames": str(settings.num_frames),
        "Video prompt": plan.prompt,
        "Video negative prompt": plan.negative_prompt,
        "Video seed": str(plan.seed),
        "Video steps": str(plan.steps),
        "Video cfg": f"{plan.cfg:g}",
        "Video shift": f"{settings.shift:g}" if settings.shift else "model's",
    } | ({"Video strength": f"{settings.strength:g}"} if spec.init.video is not None else {})

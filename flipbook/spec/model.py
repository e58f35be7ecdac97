"""The animation spec: one versioned, nested pydantic model that every face of flipbook accepts.

The core sections are here: model, sampling, animation, prompts, ControlNet units, init, audio, post, output.
Each registered mode adds its own (``[camera]``, ``[interpolate]``, ``[video]``, ...: see
:mod:`flipbook.modes`), so :class:`Spec` is assembled from both; ``animation.mode`` is one of the registered
modes' names. Numeric settings that change over the animation (``animation.strength``, ``sampling.cfg``) take
a number, a per-frame list, or a Deforum schedule string (``"0:(0.65), 30:(0.4)"``, math in ``t`` allowed),
optionally as a table with an interpolation (the types are in :mod:`flipbook.spec.fields`). Schedules are
parsed here, so a typo is reported with a caret before anything runs; ``spec/plan.py`` resolves them per frame.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    WrapValidator,
    create_model,
    field_validator,
    model_validator,
)

from flipbook.errors import FlipbookError, SpecError
from flipbook.modes import DEFAULT_MODE, MODES, get_mode, mode_only_inputs, section_owners, sections
from flipbook.samplers.names import SAMPLER_NAMES
from flipbook.sampling.presets import PRESET_NAMES, PRESETS
from flipbook.spec.fields import (
    AUDIO_NAMES,
    CHECKPOINT,
    PROMPT_LORAS,
    REFINER,
    AudioFile,
    Checkpoint,
    ControlNetModel,
    FilmModel,
    ImageFile,
    LoraRef,
    MaskFile,
    PreprocessorModel,
    PromptText,
    Range,
    Refiner,
    RifeModel,
    ScheduleTable,
    ScheduleValue,
    Section,
    StepsValue,
    TinyVae,
    Unit,
    Upscaler,
    Vae,
    VideoFile,
    error_path,
    is_string_schedule,
    string_schedule_values,
)
from flipbook.spec.references import ServerOwned
from flipbook.spec.sweep import MAX_RUNS, SweepValues, check_sweep

SPEC_VERSION = 1


class ModelSection(Section):
    name: Checkpoint = Field(
        "tiny",
        description="built-in (tiny, random-sd15, shapes, tiny-xl, random-sdxl), folder, .safetensors/.ckpt, models-dir "
        'name or hub id; or a checkpoint schedule 0:("a.safetensors"), 60:("b.safetensors") that switches '
        "models mid-animation",
    )
    models_dir: Annotated[Path | None, ServerOwned("--models-dir")] = Field(
        None, description="A1111 or ComfyUI install (or its models/ folder)"
    )
    vae: Vae = None

    @field_validator("name")
    @classmethod
    def _checkpoint_schedule(cls, value: str) -> str:
        if is_string_schedule(value):
            string_schedule_values(value)
        return value

    loras: list[LoraRef] = Field(default_factory=list)
    prediction_type: Literal["epsilon", "v_prediction"] | None = None
    zero_terminal_snr: bool = Field(
        False,
        description="rescale the noise schedule to zero terminal SNR (v-prediction models trained so, as NoobAI's "
        "v-pred releases; files that carry a ztsnr key turn it on themselves)",
    )
    device: str = "auto"
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    vae_slicing: bool = False
    vae_tiling: bool = False
    refiner: Refiner = Field(
        None,
        description="SDXL refiner (tiny-xl-refiner, file, folder, models-dir name or hub id "
        "stabilityai/stable-diffusion-xl-refiner-1.0): denoises the last part of every frame's schedule",
    )
    refiner_switch_at: float = Field(
        0.8, gt=0, lt=1, description="with a refiner: the share of the steps after which it takes over"
    )

    def check_in(self, spec: Any) -> None:
        """A refiner's switch set only with a refiner; a refiner that refines the (built-in) checkpoints' family,
        and no checkpoint named as the refiner (files are checked when read, before any model loads)."""
        if self.refiner is None:
            default = type(self).model_fields["refiner_switch_at"].default
            if self.refiner_switch_at != default:  # the default is written into every saved spec
                raise SpecError(
                    "model.refiner_switch_at",
                    self.refiner_switch_at,
                    f"{default:g} (unused) without model.refiner",
                )
            return
        from flipbook.models.families import builtin_family

        refiner = builtin_family(self.refiner, "refiner")
        if refiner is None and (other := builtin_family(self.refiner, "image")) is not None:
            raise SpecError(
                "model.refiner", self.refiner, f"a refiner (built-in: {', '.join(REFINER.builtins)})",
                detail=f"{self.refiner} is a checkpoint ({other.title})",
            )  # fmt: skip
        for name in CHECKPOINT.names(self.name):
            base = builtin_family(name, "image")
            if refiner is not None and base is not None and base.name not in refiner.attaches_to:
                raise SpecError(
                    "model.refiner", self.refiner, f"none with {name}: no refiner refines {base.title} models",
                    detail=f"{self.refiner} is a {refiner.title}",
                )  # fmt: skip


class PerformanceSection(Section):
    """``[performance]``: speed switches diffusers users know, applied to every model a render loads (the
    UNet or transformer and the VAE) right after loading (:mod:`flipbook.models.performance`). All are off by
    default; none changes what a spec means, only how fast (compile, channels-last, fused QKV and the attention
    kernel give the same frames within float rounding; the step caches trade a small difference for speed)."""

    compile: Literal["none", "default", "max-autotune", "reduce-overhead"] = Field(
        "none",
        description="torch.compile the UNet/transformer and the VAE decoder: default, max-autotune (slow to "
        "compile, fastest kernels), reduce-overhead (CUDA graphs: best where sizes and batches stay the same)",
    )
    compile_vae: bool = Field(True, description="with compile: compile the VAE's decoder too")
    channels_last: bool = Field(
        False, description="UNet and VAE in the channels-last memory layout (faster convolutions on GPUs)"
    )
    fuse_qkv: bool = Field(
        False, description="fuse each attention's query, key and value projections into one matrix multiply"
    )
    attention_backend: Literal["auto", "math", "efficient", "flash", "cudnn"] = Field(
        "auto",
        description="PyTorch's scaled-dot-product attention kernel for UNets (auto: PyTorch picks; video "
        "diffusion transformers have videomodel.attention_backend)",
    )
    unet_cache: Literal["none", "deepcache"] = Field(
        "none",
        description="reuse a UNet's deep features between steps (DeepCache): faster, frames differ slightly",
    )
    cache_interval: int = Field(
        3, ge=2, le=10, description="deepcache: the full UNet runs every this many steps, the rest reuse it"
    )
    transformer_cache: Literal["none", "first-block", "faster-cache", "pyramid"] = Field(
        "none",
        description="diffusers' step caches for video diffusion transformers: first-block cache, FasterCache, "
        "pyramid attention broadcast; faster, frames differ slightly",
    )
    cache_threshold: float = Field(
        0.05, gt=0, le=1, description="first-block: the relative change of the first block's output below "
        "which the other blocks are skipped (higher: faster, less exact)",
    )  # fmt: skip
    tiny_vae: TinyVae = Field(
        None,
        description="a tiny autoencoder (TAESD: madebyollin/taesd, madebyollin/taesdxl for SDXL, a folder, or "
        "taesd_decoder.pth in models/VAE-approx) for live previews every step",
    )
    tiny_vae_decode: bool = Field(
        False, description="decode the frames with tiny_vae too: much faster, slightly softer frames"
    )

    def check_in(self, spec: Any) -> None:
        """Fused projections replace the query, key and value layers a LoRA patches: not both."""
        if self.fuse_qkv and (spec.model.loras or _prompt_loras(spec)):
            raise SpecError(
                "performance.fuse_qkv", True, "false when the spec uses LoRAs (model.loras or <lora:...> tags)",
                detail="a LoRA patches the separate query, key and value layers that fused projections replace",
            )  # fmt: skip
        if self.tiny_vae_decode and self.tiny_vae is None:
            raise SpecError(
                "performance.tiny_vae_decode", True, "false unless performance.tiny_vae names one"
            )


def _prompt_loras(spec: Any) -> bool:
    """Whether any prompt of ``spec`` has a LoRA tag (tags that don't parse are the prompts' own error)."""
    from flipbook.prompting.grammar import extract_loras

    prompts = spec.prompts if isinstance(spec.prompts, str) else " ".join(spec.prompts.values())
    try:
        return bool(extract_loras(" ".join([prompts, spec.positive_prompt, spec.negative_prompt]))[1])
    except FlipbookError:
        return False


def _checkpoint_default_size(name: str) -> tuple[int, ...]:
    """The default (width, height) of a built-in checkpoint's family, or () when the name is no built-in (a
    file's family is known only once it is read: a size far from what it was trained at is warned about)."""
    from flipbook.models.families import builtin_family

    family = builtin_family(name, "image")
    return family.default_size if family is not None and family.default_size else ()


class SamplingSection(Section):
    sampler: str = Field(
        "Euler a",
        description='A1111 sampler name, or a schedule: 0:("Euler a"), 30:("DDIM")',
        examples=list(SAMPLER_NAMES),
    )
    steps: StepsValue = Field(
        20, description='sampling steps 1-1000; a number or a schedule such as "0:(25), 60:(40)"'
    )
    cfg: Annotated[ScheduleValue, Range(0.0, 100.0, "a guidance scale from 0 to 100")] = Field(
        7.0, description="guidance scale 0-100; a number or a schedule"
    )
    seed: int = Field(-1, ge=-1, lt=2**32, description="-1 picks a random seed; the chosen one is recorded")
    seed_behavior: Literal["iter", "fixed", "random", "ladder", "alternate", "schedule"] = Field(
        "iter", description="how the seed changes from frame to frame, as in Deforum"
    )
    seed_iter_n: int = Field(1, ge=1, description="iter: frames per seed step (Deforum's seed_iter_N)")
    seed_schedule: ScheduleValue | None = Field(
        None, description='seed_behavior "schedule": e.g. "0:(s), 1:(-1)" (-1 = random at that frame)'
    )
    clip_skip: int = Field(1, ge=1, le=12)
    preset: Literal[PRESET_NAMES] = Field(  # type: ignore[valid-type]
        "none",
        description="distilled models: turbo (SDXL-/SD-Turbo), lightning (SDXL-Lightning), hyper (Hyper-SD), lcm "
        "(LCM-LoRA): sets steps, cfg and sampler as the model card says, where the spec leaves them unset",
    )
    _preset_set: dict[str, object] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _preset_settings(self) -> SamplingSection:
        """The preset's steps/cfg/sampler where the spec leaves them unset; what the spec writes is kept."""
        if self.preset != "none":
            for name, value in PRESETS[self.preset].settings().items():
                if name not in self.model_fields_set:  # set as a default is: the field stays "unset"
                    self.__dict__[name] = value
                    self._preset_set[name] = value
        return self

    @property
    def preset_settings(self) -> dict[str, object]:
        """What the preset set (the fields the spec left unset), for ``flipbook validate``."""
        return dict(self._preset_set)

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 1000:
            raise ValueError("an integer from 1 to 1000, or a schedule")
        return value

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        """A name, or a Deforum sampler schedule ``0:("Euler a"), 30:("DDIM")``; every name must be known."""
        from flipbook.samplers.names import resolve_sampler

        names = string_schedule_values(value) if is_string_schedule(value) else [value]
        for name in names:
            try:
                resolve_sampler(name)
            except FlipbookError as error:
                raise ValueError(f"{name!r} is not a sampler; {error.allowed}") from None
        return value


UNION_CONTROL_TYPES = ("openpose", "depth", "softedge", "canny", "normal", "segment", "tile", "inpaint")
"""The control types of a union ControlNet, in the order its task embeddings are indexed (xinsir's
controlnet-union-sdxl-1.0 / ProMax and diffusers' ``control_mode``: 0 openpose ... 7 inpaint/repaint;
softedge covers hed/pidi/scribble, canny covers lineart and mlsd)."""


class ControlNetUnit(Section):
    """``[[controlnet]]``: one ControlNet unit, applied to every diffused frame. Its control image is ``image``
    or, without one, the frame's own input image (the init image at frame 0, then the image each frame starts
    from: the previous frame, the warped frame, the source video frame), run through ``preprocessor`` per frame.
    Problems are reported as ``controlnet[i].field``."""

    model: ControlNetModel = Field(
        description="tiny (built-in, random weights), a diffusers ControlNet folder, a .safetensors/.pth file, "
        "a name in model.models_dir's ControlNet folders, or a hub id in the local Hugging Face cache"
    )
    preprocessor: Literal["none", "canny", "lineart", "tile", "shuffle", "depth", "openpose"] = Field(
        "none",
        description="none: the image as is; canny: edges; lineart: white lines on black; tile: a blurred copy; "
        "shuffle: content shuffle (from the frame seed); depth: a depth map (preprocessor_model); openpose: "
        "pose skeletons (needs controlnet_aux)",
    )
    image: ImageFile = Field(None, description="the control image; default: each frame's input image")
    video: VideoFile = Field(
        None,
        description="a video (or animated image, or folder of frames) whose frame N is the control image of "
        "frame N, from its first frame, every frame; past its end each frame's own input image (as "
        "sd-webui-controlnet uses the img2img input when a unit has no image); not together with image",
    )
    weight: ScheduleValue = Field(1.0, description="conditioning scale 0-10; a number or a schedule")
    guidance_start: float = Field(0.0, ge=0, lt=1, description="share of the steps before the unit starts")
    guidance_end: float = Field(1.0, gt=0, le=1, description="share of the steps after which it stops")
    low_threshold: int = Field(100, ge=0, le=255, description="canny: lower hysteresis threshold")
    high_threshold: int = Field(200, ge=0, le=255, description="canny: upper hysteresis threshold")
    tile_downscale: float = Field(4.0, ge=1, le=64, description="tile: how far the image is scaled down")
    control_type: Literal[UNION_CONTROL_TYPES] | None = Field(  # type: ignore[valid-type]
        None,
        description="a union ControlNet (one model, many controls: controlnet-union-sdxl-1.0): which control "
        "this unit's image is; required for a union model, refused for any other",
    )
    preprocessor_model: PreprocessorModel = Field(
        None,
        description='depth: a depth model as for camera.depth_model (default "tiny", random: name a real one, '
        "e.g. depth-anything/Depth-Anything-V2-Small-hf); openpose: controlnet_aux's annotator folder or hub id "
        "(default lllyasviel/Annotators); either may be a folder's name in model.models_dir's preprocessor or "
        "depth folders",
    )

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: ScheduleValue) -> ScheduleValue:
        if isinstance(value, (int, float)) and not 0 <= value <= 10:
            raise ValueError("a conditioning scale from 0 to 10, or a schedule")
        return value

    @model_validator(mode="after")
    def _ranges(self) -> ControlNetUnit:
        """Cross-field rules raise SpecError naming the field (pydantic would name only the unit)."""
        if self.guidance_start >= self.guidance_end:
            raise SpecError(
                "guidance_start", self.guidance_start, f"less than guidance_end ({self.guidance_end:g})"
            )
        if self.low_threshold > self.high_threshold:
            raise SpecError(
                "low_threshold", self.low_threshold, f"at most high_threshold ({self.high_threshold})"
            )
        if self.image is not None and self.video is not None:
            raise SpecError(
                "video", str(self.video), "no video when the unit has an image (one or the other)"
            )
        return self

    @staticmethod
    def validate_units(value: object, handler) -> list[ControlNetUnit]:
        """The ``controlnet`` list, unit by unit, so every problem is named ``controlnet[i].field``."""
        if not isinstance(value, list):
            return handler(value)
        units = []
        for index, item in enumerate(value):
            name = f"controlnet[{index}]"
            try:
                unit = item if isinstance(item, ControlNetUnit) else ControlNetUnit.model_validate(item)
            except SpecError as error:
                raise SpecError(f"{name}.{error.field}", error.value, error.allowed) from None
            except ValidationError as error:
                raise _unit_error(name, error) from None
            units.append(unit)
        return handler(units)


def _unit_error(name: str, error: ValidationError) -> SpecError:
    """pydantic's problems in one unit as one SpecError, each line naming ``controlnet[i].field``."""
    problems = [
        (error_path((name, *e["loc"])), e.get("input"), e["msg"].removeprefix("Value error, "))
        for e in error.errors()
    ]
    message = "\n".join(
        f"{where}: {msg}" + ("" if isinstance(got, dict) or "\n" in msg else f" (got {got!r})")
        for where, got, msg in problems
    )
    field, value, allowed = problems[0]
    return SpecError(field, value, allowed, message=message)


ControlNetUnits = Annotated[list[ControlNetUnit], WrapValidator(ControlNetUnit.validate_units)]


class InitSection(Section):
    """``[init]``: an init image for frame 0 and a mask that keeps part of the picture still."""

    image: ImageFile = Field(None, description="frame 0 is this image through img2img")
    strength: float = Field(
        0.65,
        ge=0,
        le=1,
        description="Deforum strength for frame 0: share of the init image kept (1: one denoising step, as A1111)",
    )
    mask: MaskFile = Field(None, description="white = animated, black = stays as the init image (or frame 0)")
    mask_invert: bool = Field(False, description="animate the black part instead")
    mask_use_alpha: bool = Field(False, description="take the mask from the image's alpha channel")
    mask_feather: float = Field(0.0, ge=0, le=256, description="soften the mask edge (pixels)")
    video: VideoFile = Field(
        None,
        description="a video file, GIF or folder of frames: the source of video mode; in interpolate mode frame "
        "i starts from its frame i at the animation.strength schedule (GIFfusion's video init)",
    )


ModeName = Literal[tuple(MODES)]  # type: ignore[valid-type]
"""The registered modes' names (an enum in the JSON Schema)."""


def _mode_schema(schema: dict[str, Any]) -> None:
    """Each mode's one-paragraph description with its name (editors show them while completing), and the
    section that holds its settings."""
    schema["enumDescriptions"] = [mode.description for mode in MODES.values()]
    schema["x-flipbook"] = {
        "modes": {
            name: {"section": mode.section, "inputs": list(mode.inputs)} for name, mode in MODES.items()
        }
    }


def _interpolation_defaults() -> str:
    """The modes' ``prompt_interpolation`` defaults in words: "lerp in interpolate and animatediff modes, hold in
    the others"."""
    by_default: dict[str, list[str]] = {}
    for mode in MODES.values():
        by_default.setdefault(mode.prompt_interpolation, []).append(mode.name)
    others = by_default.pop("hold", [])
    words = [f"{value} in {' and '.join(names)} modes" for value, names in by_default.items()]
    return ", ".join([*words, "hold in the others"] if others else words)


class AnimationSection(Section):
    mode: ModeName = Field(
        DEFAULT_MODE,
        description="how the frames are made: "
        + ", ".join(MODES)
        + " (each mode's own settings are in its section, named in x-flipbook)",
        json_schema_extra=_mode_schema,
    )
    max_frames: int = Field(24, ge=1, le=100_000)
    fps: float = Field(12, gt=0, le=240)
    width: int = Field(512, ge=8, le=8192, json_schema_extra={"multipleOf": 8})  # checked in _multiple_of_8
    height: int = Field(512, ge=8, le=8192, json_schema_extra={"multipleOf": 8})
    strength: Annotated[
        ScheduleValue,
        Range(0.0, 1.0, "a strength in [0, 1]"),
        Unit("share of the previous frame"),
    ] = Field(
        0.65,
        description="Deforum strength in [0, 1]: share of the previous frame kept (denoise = 1 - strength, at "
        "least one step: 1 runs one step, as A1111 does); a number or a schedule",
    )
    prompt_interpolation: Literal["hold", "lerp", "slerp"] | None = Field(
        None,
        description="in-between frames' text conditioning: hold keeps each keyframe's prompt until the next "
        "keyframe (Deforum); lerp and slerp move the prompt (and negative) embeddings linearly or spherically "
        "toward the next keyframe's, as latent-walk tools and AnimateDiff prompt travel do; composable prompts "
        "(AND, |) blend in the noise prediction instead. LoRAs follow the keyframe in force. Default: "
        + _interpolation_defaults(),
    )

    def text_interpolation(self) -> Literal["hold", "lerp", "slerp"]:
        """``prompt_interpolation`` with the mode's default filled in."""
        if self.prompt_interpolation is not None:
            return self.prompt_interpolation
        return get_mode(self.mode).prompt_interpolation

    @field_validator("mode", mode="before")
    @classmethod
    def _known_mode(cls, value: object) -> object:
        if not isinstance(value, str) or value not in MODES:
            raise ValueError(f"one of: {', '.join(MODES)}")
        return value

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError("must be a multiple of 8")
        return value


OutputFormat = Literal["png", "gif", "mp4", "mp4-h265", "webm", "webp", "apng", "contact"]


class OutputSection(Section):
    """``[output]``: where the animation goes and how each format is encoded. Every file carries the spec
    (and A1111 parameters) where the format allows, so ``flipbook render FILE`` re-renders it."""

    dir: Annotated[Path, ServerOwned("the job's run folder is RUNS/<job id>")] = Path("out")
    formats: list[OutputFormat] = Field(
        default_factory=lambda: ["png", "gif", "mp4"],
        description="png (frames folder), gif, mp4 (H.264), mp4-h265, webm (VP9), webp, apng, contact "
        "(a contact sheet PNG)",
    )
    name: Annotated[str | None, ServerOwned("the job id")] = Field(
        None, description="file stem; defaults to the spec file's stem"
    )
    gif_loop: int = Field(0, ge=0, le=65535, description="0 loops forever")
    gif_palette: Literal["per_scene", "global", "per_frame"] = Field(
        "per_scene",
        description="per_scene: one palette per scene, chosen from all its frames (no shimmer); global: one "
        "for the clip; per_frame: one per frame, each started from the last",
    )
    gif_dither: Literal["none", "ordered", "floyd-steinberg"] = Field(
        "none",
        description="ordered: a Bayer pattern fixed in place (smooth gradients, still where the picture is "
        "still); floyd-steinberg: error diffusion",
    )
    gif_colors: int = Field(255, ge=2, le=255, description="colours per palette")
    gif_lossy: int = Field(
        0, ge=0, le=200, description="gifsicle lossy LZW level (0: off; 30-80 is typical): smaller, noisier"
    )
    gif_max_mb: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="fit the GIF in this many MB (10^6 bytes, e.g. 10 for Discord): smaller frames, fewer "
        "colours, lossy; the choice is logged",
    )
    gif_optimize: bool = Field(True, description="store only the pixels that change from frame to frame")
    mp4_crf: int = Field(18, ge=0, le=51, description="H.264 quality: lower is better and bigger")
    mp4_preset: Literal[
        "ultrafast",
        "superfast",
        "veryfast",
        "faster",
        "fast",
        "medium",
        "slow",
        "slower",
        "veryslow",
        "placebo",
    ] = "faster"
    h265_crf: int = Field(23, ge=0, le=51)
    webm_crf: int = Field(32, ge=0, le=63)
    webp_quality: int = Field(90, ge=0, le=100)
    webp_lossless: bool = False
    webp_max_mb: float | None = Field(
        None, gt=0, le=100_000, description="fit the WebP in this many MB: lower quality, then smaller frames"
    )
    apng_colors: int = Field(
        0, ge=0, le=256, description="0: every colour (lossless); 2-256: one palette, several times smaller"
    )
    apng_max_mb: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="fit the APNG in this many MB: a palette, smaller frames, fewer colours",
    )
    max_mb_allow_fps: bool = Field(
        False,
        description="size targets may also keep every 2nd, 3rd or 4th frame (a lower frame rate, reported); "
        "off: frames are never dropped",
    )
    loop: int = Field(0, ge=0, le=65535, description="WebP/APNG loop count, 0 loops forever")
    ping_pong: bool = Field(False, description="play forward then backward (0 1 2 3 2 1)")

    @field_validator("apng_colors")
    @classmethod
    def _apng_colors_are_a_palette(cls, value: int) -> int:
        if value == 1:
            raise ValueError("0 (every colour) or 2-256 colours, not 1")
        return value

    def encode_options(self) -> dict[str, object]:
        """The encoder settings, named as :class:`flipbook.io.writers.EncodeOptions` names them."""
        return self.model_dump(exclude={"dir", "formats", "name"})


class PostSection(Section):
    """``[post]``: what happens to the finished frames before encoding (the frames folder keeps the
    originals): optical-flow frame interpolation, then upscaling."""

    interpolate: int = Field(1, ge=1, le=16, description="x N frames by frame interpolation (1: off)")
    interpolate_method: Literal["flow", "blend", "film", "rife"] = Field(
        "flow",
        description="flow: OpenCV DIS optical flow, no weights; blend: cross-fade; film: FILM model; "
        "rife: RIFE 4.6 model",
    )
    film_model: FilmModel = Field(
        None,
        description="interpolate_method film: a TorchScript film_net file, or its name in model.models_dir's "
        "FILM folders",
    )
    rife_model: RifeModel = Field(
        None,
        description="interpolate_method rife: RIFE 4.6 weights (flownet.pkl, .pth or .safetensors), or their "
        "name in model.models_dir's RIFE folders",
    )
    slowmo: bool = Field(False, description="keep the fps, so motion is N times slower (else fps x N)")
    loop: bool = Field(False, description="the animation loops: interpolate the last -> first seam too")
    upscale: float = Field(1.0, gt=0, le=16, description="size factor (1: off)")
    upscale_model: Upscaler = Field(
        None, description="ESRGAN-family model file or name in the models folder; none: Lanczos"
    )
    upscale_tile: int = Field(512, ge=0, le=8192, description="tile size in pixels (0: whole frame)")

    @model_validator(mode="after")
    def _film_needs_a_model(self) -> PostSection:
        if self.interpolate_method == "film" and self.film_model is None:
            raise ValueError("interpolate_method film needs film_model (a TorchScript film_net file)")
        return self

    @model_validator(mode="after")
    def _rife_needs_a_model(self) -> PostSection:
        if self.interpolate_method == "rife" and self.rife_model is None:
            raise ValueError("interpolate_method rife needs rife_model (RIFE 4.6 flownet.pkl weights)")
        return self


class AudioSection(Section):
    """``[audio]``: a music file that drives schedules (``beat``, ``bpm``, ``amp``), the interpolate mode's
    ``audio`` easing, and the soundtrack of video outputs."""

    file: AudioFile = Field(None, description="wav, flac, ogg or mp3")
    offset: float = Field(0.0, ge=0, le=86_400, description="seconds into the file where frame 0 starts")
    soundtrack: bool = Field(True, description="mux the audio into MP4/WebM outputs, trimmed to the video")


def _mode_sections() -> dict[str, Any]:
    """Each registered mode's section as a field (``camera``: ``[camera]``), described with the modes it
    belongs to."""
    fields: dict[str, Any] = {}
    for key, model in sections().items():
        owners = " and ".join(section_owners(key))
        description = f"[{key}]: the settings of the {owners} mode{'s' if ' and ' in owners else ''}"
        fields[key] = (model, Field(default_factory=model, description=description))
    return fields


_SpecFields = create_model(
    "_SpecFields",
    __base__=Section,
    __module__=__name__,
    version=(int, SPEC_VERSION),
    model=(ModelSection, Field(default_factory=ModelSection)),
    sampling=(SamplingSection, Field(default_factory=SamplingSection)),
    animation=(AnimationSection, Field(default_factory=AnimationSection)),
    prompts=(
        Annotated[dict[str, str] | str, PROMPT_LORAS],
        Field(
            description='Deforum keyframes {"0" = "a forest", "max_f-10" = "a city --neg fog"} (keys may be '
            'expressions in max_f and s; " --neg " starts the negative), or AnimateDiff lines: head lines, '
            '"N: prompt" lines, tail lines. Backtick math such as (cherry:`1+t/max_f`) is evaluated per frame.'
        ),
    ),
    positive_prompt=(
        PromptText,
        Field("", description="added before every prompt (Deforum's prompts_positive)"),
    ),
    negative_prompt=(
        PromptText,
        Field("", description="added after every prompt's negative (Deforum's prompts_negative)"),
    ),
    controlnet=(
        ControlNetUnits,
        Field(
            default_factory=list,
            description="ControlNet units ([[controlnet]] tables), applied to every frame",
        ),
    ),
    init=(InitSection, Field(default_factory=InitSection)),
    sweep=(
        SweepValues,
        Field(
            default_factory=dict,
            description='a grid of runs: values per field by dotted path ("sampling.seed" = [1, 2, 3]), every '
            f"combination rendered as a run of its own with a contact sheet of them (at most {MAX_RUNS} runs)",
        ),
    ),
    **_mode_sections(),
    performance=(PerformanceSection, Field(default_factory=PerformanceSection)),
    audio=(AudioSection, Field(default_factory=AudioSection)),
    post=(PostSection, Field(default_factory=PostSection)),
    output=(OutputSection, Field(default_factory=OutputSection)),
)


class Spec(_SpecFields):
    """A flipbook spec: the core sections and the sections of the modes (``animation.mode``)."""

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != SPEC_VERSION:
            raise ValueError(f"only version {SPEC_VERSION} is known")
        return value

    @field_validator("prompts")
    @classmethod
    def _prompt_syntax(cls, value: dict[str, str] | str) -> dict[str, str] | str:
        """Check line syntax and backtick math now; keys that depend on max_f are checked in the plan."""
        from flipbook.spec.prompt_keyframes import (
            check_keyframe_count,
            compile_prompt_math,
            parse_prompt_lines,
        )

        try:
            if isinstance(value, str):
                parse_prompt_lines(value, field="prompts")
                texts = [value]
            elif not value:
                raise ValueError("at least one keyframe prompt is needed")
            else:
                check_keyframe_count(len(value))
                texts = list(value.values())
            for text in texts:
                compile_prompt_math(text, field="prompts")
        except FlipbookError as error:
            detail = f" ({error.detail})" if error.detail else ""
            raise ValueError(f"{error.allowed}{detail}") from None
        return value

    @model_validator(mode="after")
    def _mode_defaults(self) -> Spec:
        """The ``animation`` defaults the mode's users expect, where the spec leaves them unset (the mode's
        ``defaults``: AnimateDiff 8 fps, SVD 1024x576, ...), then the size a built-in checkpoint's family was
        trained at (SDXL's 1024x1024) where neither sets it; values the spec sets are kept as written. Then
        the mode's own cross-field rules (``check_spec``)."""
        mode = get_mode(self.animation.mode)
        animation, unset = self.animation, self.animation.model_fields_set
        for name, value in (mode.defaults(self) if mode.defaults else {}).items():
            if name not in unset:
                setattr(animation, name, value)
        for name, value in zip(("width", "height"), _checkpoint_default_size(self.model.name), strict=False):
            if name not in animation.model_fields_set:  # neither the spec nor the mode sets it
                setattr(animation, name, value)
        if mode.check_spec is not None:
            mode.check_spec(self)
        return self

    @model_validator(mode="after")
    def _mode_inputs(self) -> Spec:
        """Each section's rules with the rest of the spec; inputs only some modes read are errors elsewhere,
        not silently ignored."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Section):
                value.check_in(self)
        mode = self.animation.mode
        for field, readers in mode_only_inputs().items():
            value = _value_at(self, field)
            if value is not None and mode not in readers:
                raise SpecError(field, str(value), f"only with animation.mode {' or '.join(readers)}")
        fps = self.animation.fps * (1 if self.post.slowmo else self.post.interpolate)
        if "gif" in self.output.formats and fps > 100:
            raise SpecError(
                "post.interpolate",
                self.post.interpolate,
                "an output frame rate of at most 100 fps for GIF (its delays are whole centiseconds)",
                detail=f"{self.animation.fps:g} fps x {self.post.interpolate} = {fps:g} fps",
            )
        return self

    @model_validator(mode="after")
    def _output_size(self) -> Spec:
        """The finished animation is bounded as its factors are: a frame after ``post.upscale`` at most as large
        as ``animation.width``/``height`` may be, and no more frames after ``post.interpolate`` than
        ``animation.max_frames`` may be (each factor alone within its range could still ask for a 131072-pixel
        frame or 1.6 million frames)."""
        animation, post = self.animation, self.post
        side = _upper_bound(AnimationSection, "width")
        for name in ("width", "height"):
            size = round(getattr(animation, name) * post.upscale)
            if size > side:
                raise SpecError(
                    "post.upscale", post.upscale, f"a factor that keeps the upscaled frame at most {side} "
                    f"pixels on a side", detail=f"animation.{name} {getattr(animation, name)} x {post.upscale:g}"
                    f" = {size}",
                )  # fmt: skip
        frames, most = animation.max_frames * post.interpolate, _upper_bound(AnimationSection, "max_frames")
        if frames > most:
            raise SpecError(
                "post.interpolate", post.interpolate, f"at most {most} output frames",
                detail=f"animation.max_frames {animation.max_frames} x {post.interpolate} = {frames}",
            )  # fmt: skip
        return self

    @model_validator(mode="after")
    def _sweep(self) -> Spec:
        """Every swept value is one its field takes and the grid is bounded (``flipbook.spec.sweep``)."""
        if self.sweep:
            check_sweep(self)
        return self

    def with_seed(self) -> Spec:
        """The spec with seed -1 replaced by a random seed (recorded, so the render can be repeated)."""
        if self.sampling.seed != -1:
            return self
        seed = random.SystemRandom().randrange(2**32)
        return self.model_copy(update={"sampling": self.sampling.model_copy(update={"seed": seed})})


def _upper_bound(model: type[BaseModel], name: str) -> int:
    """A field's ``le`` bound, read from its definition (one number, kept where the field is)."""
    return next(int(m.le) for m in model.model_fields[name].metadata if getattr(m, "le", None) is not None)


def _value_at(spec: Spec, field: str) -> Any:
    """The value of a dotted field path (``init.video``)."""
    value: Any = spec
    for part in field.split("."):
        value = getattr(value, part)
    return value


__all__ = [
    "AUDIO_NAMES",
    "CHECKPOINT",
    "AnimationSection",
    "AudioSection",
    "ControlNetUnit",
    "InitSection",
    "ModelSection",
    "OutputFormat",
    "OutputSection",
    "PerformanceSection",
    "PostSection",
    "SamplingSection",
    "ScheduleTable",
    "ScheduleValue",
    "Spec",
    "StepsValue",
    "error_path",
    "is_string_schedule",
    "string_schedule_values",
]

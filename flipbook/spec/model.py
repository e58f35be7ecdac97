"""The animation spec: one versioned, nested pydantic model that every face of flipbook accepts.

Sections: model, sampling, animation, prompts, output. Numeric settings that change over the animation
(``animation.strength``, ``sampling.cfg``) take a number, a per-frame list, or a Deforum schedule string
(``"0:(0.65), 30:(0.4)"``, math in ``t`` allowed), optionally as a table with an interpolation. Schedules are
parsed here, so a typo is reported with a caret before anything runs; ``spec/plan.py`` resolves them per frame.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictFloat,
    Tag,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    field_validator,
    model_validator,
)

from flipbook.errors import FlipbookError, SpecError
from flipbook.spec.references import InputFile, ModelReference, ServerOwned

SPEC_VERSION = 1
AUDIO_NAMES = ("beat", "bpm", "amp")
"""Schedule variables that follow ``audio.file`` (per frame: 1 on a beat, the tempo, the loudness 0..1)."""


# What the fields that name models and files hold (see flipbook.spec.references; shown by `flipbook schema`).
CHECKPOINT = ModelReference(
    "checkpoint", builtins=("tiny", "random-sd15"), folders=("checkpoint",), hub=True, form="schedule"
)
LORA = ModelReference("LoRA", folders=("lora", "motion_lora"))
PROMPT_LORAS = ModelReference("LoRA", folders=("lora",), form="prompt_tags")
DEPTH_MODEL = ModelReference("depth model", builtins=("flat", "tiny"), hub=True)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_true_false_for_numbers(cls, value: object, info: ValidationInfo) -> object:
        """true/false in a field that takes only numbers is a mistake, not 1 and 0 (pydantic's lax mode would
        read it so). Fields that take a boolean, a choice or a schedule decide for themselves."""
        annotation = cls.model_fields[info.field_name].annotation
        if get_origin(annotation) is list:
            if isinstance(value, list) and any(isinstance(v, bool) for v in value) and _numbers(annotation):
                raise ValueError("numbers, not true or false")
        elif isinstance(value, bool) and _numbers(annotation):
            raise ValueError("a number, not true or false")
        return value


def _numbers(annotation: object) -> bool:
    """Whether a field's type takes numbers and nothing else: ``int``, ``float | None``, ``list[int]``."""
    origin = get_origin(annotation)
    members = get_args(annotation) if origin in (Union, UnionType, list) else (annotation,)
    members = tuple(m for m in members if m is not type(None))
    return bool(members) and all(m in (int, float) for m in members)


def _check_schedule_text(value: object) -> object:
    """Parse a schedule string now (syntax, allowed names and functions); values are checked in the plan."""
    if isinstance(value, str):
        from flipbook.spec.expressions import caret
        from flipbook.spec.schedules import Schedule, ScheduleError

        try:
            Schedule.parse(value, AUDIO_NAMES)
        except ScheduleError as error:
            pointer = f"\n    {caret(value, error.position).replace(chr(10), chr(10) + '    ')}"
            raise ValueError(f"{error}{pointer if error.position is not None else ''}") from None
    return value


# A value that changes over the animation is a union whose member is picked from the input's type (pydantic's
# discriminated union), so a problem is reported by that member alone: a table's own error (its schedule's
# caret, its interpolation) instead of "Input should be a valid number" for the number member first. true and
# false fit no member: they are not numbers here, though pydantic would otherwise read them as 1.0 and 0.0.
NUMBER, TEXT, LIST, TABLE = "<number>", "<schedule string>", "<per-frame list>", "<table>"
UNION_TAGS = frozenset((NUMBER, TEXT, LIST, TABLE))
"""The union members' tags, which pydantic puts in an error's location; :func:`error_path` leaves them out."""


def _value_kind(value: object) -> str | None:
    """The member an input is meant for, from its type; None (an error naming what is allowed) for others."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return NUMBER
    if isinstance(value, str):
        return TEXT
    if isinstance(value, list | tuple):
        return LIST
    if isinstance(value, dict | ScheduleTable):
        return TABLE
    return None


def _by_kind(allowed: str) -> Discriminator:
    return Discriminator(_value_kind, custom_error_type="schedule_value", custom_error_message=allowed)


def error_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the spec's dotted field path, without the union members' tags."""
    return ".".join(str(part) for part in loc if part not in UNION_TAGS)


PlainSchedule = Annotated[
    Annotated[float, Tag(NUMBER)] | Annotated[str, Tag(TEXT)] | Annotated[list[StrictFloat], Tag(LIST)],
    _by_kind("a number, a per-frame list or a schedule string"),
]
"""What a table's ``schedule`` holds: a number, a per-frame list (numbers, not true/false) or a schedule string."""


class ScheduleTable(_Section):
    """A schedule with its interpolation: ``{ schedule = "0:(1), 30:(2)", interpolation = "cubic" }``."""

    schedule: PlainSchedule
    interpolation: Literal["linear", "cubic", "step"] = "linear"

    @field_validator("schedule")
    @classmethod
    def _parse(cls, value: float | str | list[float]) -> float | str | list[float]:
        return _check_schedule_text(value)


ScheduleValue = Annotated[
    Annotated[float, Tag(NUMBER)]
    | Annotated[str, Tag(TEXT)]
    | Annotated[list[StrictFloat], Tag(LIST)]
    | Annotated[ScheduleTable, Tag(TABLE)],
    _by_kind("a number, a per-frame list, a schedule string or a table"),
]
"""A number (constant), a per-frame list, a Deforum schedule string, or a table with an interpolation."""

StepsValue = Annotated[
    Annotated[int, Tag(NUMBER)] | Annotated[str, Tag(TEXT)],
    _by_kind("an integer from 1 to 1000, or a schedule string"),
]
"""Sampling steps: a whole number or a schedule string."""


class LoraRef(_Section):
    name: Annotated[str, LORA] = Field(description="LoRA file or name in the models folder's LoRA directory")
    weight: float = Field(1.0, ge=-10, le=10)


class ModelSection(_Section):
    name: Annotated[str, CHECKPOINT] = Field(
        "tiny",
        description="built-in (tiny, random-sd15), folder, .safetensors/.ckpt, models-dir name or hub id; "
        'or a checkpoint schedule 0:("a.safetensors"), 60:("b.safetensors") that switches models mid-animation',
    )
    models_dir: Annotated[Path | None, ServerOwned("--models-dir")] = Field(
        None, description="A1111 or ComfyUI install (or its models/ folder)"
    )
    vae: Annotated[str | None, ModelReference("VAE", folders=("vae",))] = None

    @field_validator("name")
    @classmethod
    def _checkpoint_schedule(cls, value: str) -> str:
        if is_string_schedule(value):
            string_schedule_values(value)
        return value

    loras: list[LoraRef] = Field(default_factory=list)
    prediction_type: Literal["epsilon", "v_prediction"] | None = None
    device: str = "auto"
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    vae_slicing: bool = False
    vae_tiling: bool = False


class SamplingSection(_Section):
    sampler: str = Field(
        "Euler a", description='A1111 sampler name, or a schedule: 0:("Euler a"), 30:("DDIM")'
    )
    steps: StepsValue = Field(
        20, description='sampling steps 1-1000; a number or a schedule such as "0:(25), 60:(40)"'
    )
    cfg: ScheduleValue = Field(7.0, description="guidance scale 0-100; a number or a schedule")
    seed: int = Field(-1, ge=-1, lt=2**32, description="-1 picks a random seed; the chosen one is recorded")
    seed_behavior: Literal["iter", "fixed", "random", "ladder", "alternate", "schedule"] = Field(
        "iter", description="how the seed changes from frame to frame, as in Deforum"
    )
    seed_iter_n: int = Field(1, ge=1, description="iter: frames per seed step (Deforum's seed_iter_N)")
    seed_schedule: ScheduleValue | None = Field(
        None, description='seed_behavior "schedule": e.g. "0:(s), 1:(-1)" (-1 = random at that frame)'
    )
    clip_skip: int = Field(1, ge=1, le=12)

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 1000:
            raise ValueError("an integer from 1 to 1000, or a schedule")
        return _check_schedule_text(value)

    @field_validator("cfg", "seed_schedule")
    @classmethod
    def _schedule_text(cls, value: ScheduleValue) -> ScheduleValue:
        return _check_schedule_text(value)

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        """A name, or a Deforum sampler schedule ``0:("Euler a"), 30:("DDIM")``; every name must be known."""
        from flipbook.models.sampler_names import resolve_sampler

        names = string_schedule_values(value) if is_string_schedule(value) else [value]
        for name in names:
            try:
                resolve_sampler(name)
            except FlipbookError as error:
                raise ValueError(f"{name!r} is not a sampler; {error.allowed}") from None
        return value


def is_string_schedule(value: str) -> bool:
    """``0:("Euler a"), 30:("DDIM")`` rather than a plain name (names never contain ``:(``)."""
    return bool(re.search(r":\s*\(", value))


def string_schedule_values(value: str) -> list[str]:
    """The names in a string schedule (sampler, checkpoint), quotes removed; a syntax error as ValueError."""
    from flipbook.spec.schedules import ScheduleError, parse_schedule

    try:
        return [keyframe.value.strip().strip("\"'") for keyframe in parse_schedule(value)]
    except ScheduleError as error:
        raise ValueError(str(error)) from None


class CameraSection(_Section):
    """``[camera]``: the ``2d`` and ``3d`` modes (Deforum's keyframes tab). Every number here is a schedule.

    Direction convention, the same in 2D and 3D: positive values move the picture right / down /
    counter-clockwise / closer. ``translation_x > 0`` slides the picture right (the camera moves left),
    ``translation_y > 0`` slides it down, ``angle`` and ``rotation_3d_z > 0`` turn it counter-clockwise,
    ``zoom > 1`` and ``translation_z > 0`` make it grow; ``rotation_3d_y > 0`` pans the camera left (the picture
    moves right) and ``rotation_3d_x > 0`` tilts it up (the picture moves down).
    """

    # 2D and 3D
    translation_x: ScheduleValue = Field(0.0, description="2D: pixels per frame; 3D: scene units per frame")
    translation_y: ScheduleValue = 0.0
    border: Literal["replicate", "wrap", "reflect", "zeros"] = Field(
        "replicate", description="2D: how pixels that come into view are filled"
    )
    # 2D
    angle: ScheduleValue = Field(0.0, description="2D: degrees per frame, counter-clockwise")
    zoom: ScheduleValue = Field(1.0, description="2D: scale per frame (1.02 = 2% closer each frame)")
    transform_center_x: ScheduleValue = Field(0.5, description="2D: rotation/zoom centre, share of width")
    transform_center_y: ScheduleValue = Field(0.5, description="2D: rotation/zoom centre, share of height")
    perspective_flip: bool = Field(False, description="2D: apply the perspective_flip_* schedules")
    perspective_flip_theta: ScheduleValue = Field(0.0, description="2D: degrees about the x axis")
    perspective_flip_phi: ScheduleValue = Field(0.0, description="2D: degrees about the y axis")
    perspective_flip_gamma: ScheduleValue = Field(0.0, description="2D: degrees about the z axis")
    perspective_flip_fv: ScheduleValue = Field(53.0, description="2D: field of view of the flip, degrees")
    # 3D
    translation_z: ScheduleValue = Field(0.0, description="3D: scene units per frame toward the scene")
    rotation_3d_x: ScheduleValue = Field(0.0, description="3D: degrees per frame (tilt)")
    rotation_3d_y: ScheduleValue = Field(0.0, description="3D: degrees per frame (pan)")
    rotation_3d_z: ScheduleValue = Field(0.0, description="3D: degrees per frame (roll)")
    fov: ScheduleValue = Field(40.0, description="3D: vertical field of view in degrees")
    near: ScheduleValue = Field(200.0, description="3D: scene depth of the nearest pixel")
    far: ScheduleValue = Field(10000.0, description="3D: scene depth of the farthest pixel")
    depth_model: Annotated[str, DEPTH_MODEL] = Field(
        "depth-anything/Depth-Anything-V2-Small-hf",
        description='3D: "flat" (a plane at `near`), "tiny" (built-in, random) or a DPT / Depth Anything '
        "folder or hub id",
    )
    save_depth_maps: bool = Field(False, description="3D: write depth/depth_NNNNN.png per diffused frame")
    padding_mode: Literal["border", "reflection", "zeros"] = Field(
        "border", description="3D: how pixels that come into view are filled"
    )
    sampling_mode: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    # every frame
    cadence: int = Field(1, ge=1, le=100, description="diffuse every Nth frame; warp and cross-fade between")
    optical_flow_cadence: Literal["none", "dis"] = Field(
        "none", description="in-between frames from optical flow (OpenCV DIS) instead of camera warps"
    )
    cadence_flow_factor: ScheduleValue = Field(1.0, description="scales the optical-flow cadence's flow")
    color_coherence: Literal["none", "rgb", "hsv", "lab", "video"] = Field(
        "lab",
        description="match each frame's colours (histograms) to the reference; video: LAB against the hybrid "
        "video's frame (Deforum's Video Input; needs hybrid_video), refreshed every color_coherence_video_every_n "
        "frames",
    )
    color_coherence_image: Annotated[Path | None, InputFile("image")] = Field(
        None, description="the colour reference; default: frame 0"
    )
    color_coherence_video_every_n: int = Field(
        1, ge=1, le=100000, description="video colour coherence: take a new video frame every N frames"
    )
    color_force_grayscale: bool = False
    contrast: ScheduleValue = Field(1.0, description="pixel values are multiplied by this before diffusion")
    antiblur_amount: ScheduleValue = Field(0.1, description="unsharp-mask amount (0 = off)")
    antiblur_kernel: ScheduleValue = Field(5, description="unsharp-mask kernel size, odd (0 = from sigma)")
    antiblur_sigma: ScheduleValue = Field(1.0, description="unsharp-mask Gaussian sigma")
    antiblur_threshold: ScheduleValue = Field(0.0, description="unsharp-mask threshold in pixel values")
    noise: ScheduleValue = Field(0.065, description="noise added to the warped frame (share of full range)")
    noise_type: Literal["gaussian", "perlin"] = "gaussian"
    perlin_octaves: int = Field(4, ge=1, le=8)
    perlin_persistence: float = Field(0.5, gt=0, le=1)
    noise_multiplier: ScheduleValue = Field(
        1.0, description="scales the sampler's initial img2img noise (A1111's initial noise multiplier)"
    )
    hybrid_video: Annotated[Path | None, InputFile("video")] = Field(
        None,
        description="hybrid video: a video (or GIF, frame folder) whose motion and frames feed the animation",
    )
    hybrid_motion: Literal["none", "optical_flow", "affine", "perspective"] = Field(
        "none",
        description="move each frame the way the hybrid video moves: dense optical flow, or a camera move "
        "(affine / perspective) fitted with RANSAC to feature matches",
    )
    hybrid_flow_method: Literal["dis", "farneback"] = "dis"
    hybrid_flow_factor: ScheduleValue = Field(1.0, description="scales the hybrid optical flow")
    hybrid_composite: Literal["none", "normal", "before_motion", "after_generation"] = Field(
        "none",
        description="blend the hybrid video's frame into each diffused frame after frame 0 (Deforum's "
        "hybrid_composite): normal after the hybrid motion, before_motion between the camera warp and the hybrid "
        "motion, after_generation into the generated image; true/false are read as normal/none",
    )
    hybrid_comp_alpha: ScheduleValue = Field(0.5, description="share of the video frame blended in (0..1)")
    hybrid_comp_mask_type: Literal["none", "difference", "blend", "depth"] = Field(
        "none",
        description="where the video frame is blended in: everywhere, where frame and video differ, by the "
        "brightness of their mix, or by the video frame's depth (camera.depth_model)",
    )
    hybrid_comp_mask_inverse: bool = False

    @field_validator("hybrid_composite", mode="before")
    @classmethod
    def _composite_switch(cls, value: object) -> object:
        """The earlier on/off switch: true is "normal" (the blend after the hybrid motion), false "none"."""
        return {True: "normal", False: "none"}.get(value, value) if isinstance(value, bool) else value

    @field_validator(
        "translation_x", "translation_y", "angle", "zoom", "transform_center_x", "transform_center_y",
        "perspective_flip_theta", "perspective_flip_phi", "perspective_flip_gamma", "perspective_flip_fv",
        "translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z", "fov", "near", "far",
        "cadence_flow_factor", "contrast", "antiblur_amount", "antiblur_kernel", "antiblur_sigma",
        "antiblur_threshold", "noise", "noise_multiplier", "hybrid_flow_factor", "hybrid_comp_alpha",
    )  # fmt: skip
    @classmethod
    def _schedule_text(cls, value: ScheduleValue) -> ScheduleValue:
        return _check_schedule_text(value)


class ControlNetUnit(_Section):
    """``[[controlnet]]``: one ControlNet unit, applied to every diffused frame. Its control image is ``image``
    or, without one, the frame's own input image (the init image at frame 0, then the image each frame starts
    from: the previous frame, the warped frame, the source video frame), run through ``preprocessor`` per frame.
    Problems are reported as ``controlnet[i].field``."""

    model: Annotated[
        str, ModelReference("ControlNet", builtins=("tiny",), folders=("controlnet",), hub=True)
    ] = Field(
        description="tiny (built-in, random weights), a diffusers ControlNet folder, a .safetensors/.pth file, "
        "a name in model.models_dir's ControlNet folders, or a hub id in the local Hugging Face cache"
    )
    preprocessor: Literal["none", "canny", "lineart", "tile", "shuffle", "depth", "openpose"] = Field(
        "none",
        description="none: the image as is; canny: edges; lineart: white lines on black; tile: a blurred copy; "
        "shuffle: content shuffle (from the frame seed); depth: a depth map (preprocessor_model); openpose: "
        "pose skeletons (needs controlnet_aux)",
    )
    image: Annotated[Path | None, InputFile("image")] = Field(
        None, description="the control image; default: each frame's input image"
    )
    weight: ScheduleValue = Field(1.0, description="conditioning scale 0-10; a number or a schedule")
    guidance_start: float = Field(0.0, ge=0, lt=1, description="share of the steps before the unit starts")
    guidance_end: float = Field(1.0, gt=0, le=1, description="share of the steps after which it stops")
    low_threshold: int = Field(100, ge=0, le=255, description="canny: lower hysteresis threshold")
    high_threshold: int = Field(200, ge=0, le=255, description="canny: upper hysteresis threshold")
    tile_downscale: float = Field(4.0, ge=1, le=64, description="tile: how far the image is scaled down")
    preprocessor_model: Annotated[
        str | None, ModelReference("preprocessor model", builtins=("flat", "tiny"), hub=True)
    ] = Field(
        None,
        description='depth: a depth model as for camera.depth_model (default "tiny", random: name a real one, '
        "e.g. depth-anything/Depth-Anything-V2-Small-hf); openpose: controlnet_aux's annotator folder or hub id "
        "(default lllyasviel/Annotators)",
    )

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: ScheduleValue) -> ScheduleValue:
        if isinstance(value, (int, float)) and not 0 <= value <= 10:
            raise ValueError("a conditioning scale from 0 to 10, or a schedule")
        return _check_schedule_text(value)

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


class InitSection(_Section):
    """``[init]``: an init image for frame 0 and a mask that keeps part of the picture still."""

    image: Annotated[Path | None, InputFile("image")] = Field(
        None, description="frame 0 is this image through img2img"
    )
    strength: float = Field(
        0.65,
        ge=0,
        le=1,
        description="Deforum strength for frame 0: share of the init image kept (1: one denoising step, as A1111)",
    )
    mask: Annotated[Path | None, InputFile("image")] = Field(
        None, description="white = animated, black = stays as the init image (or frame 0)"
    )
    mask_invert: bool = Field(False, description="animate the black part instead")
    mask_use_alpha: bool = Field(False, description="take the mask from the image's alpha channel")
    mask_feather: float = Field(0.0, ge=0, le=256, description="soften the mask edge (pixels)")
    video: Annotated[Path | None, InputFile("video")] = Field(
        None,
        description="a video file, GIF or folder of frames: the source of video mode; in interpolate mode frame "
        "i starts from its frame i at the animation.strength schedule (GIFfusion's video init)",
    )


class AnimationSection(_Section):
    mode: str = "travel"
    max_frames: int = Field(24, ge=1, le=100_000)
    fps: float = Field(12, gt=0, le=240)
    width: int = Field(512, ge=8, le=8192)
    height: int = Field(512, ge=8, le=8192)
    strength: ScheduleValue = Field(
        0.65,
        description="Deforum strength in [0, 1]: share of the previous frame kept (denoise = 1 - strength, at "
        "least one step: 1 runs one step, as A1111 does); a number or a schedule",
    )
    prompt_interpolation: Literal["hold", "lerp", "slerp"] | None = Field(
        None,
        description="in-between frames' text conditioning: hold keeps each keyframe's prompt until the next "
        "keyframe (Deforum); lerp and slerp move the prompt (and negative) embeddings linearly or spherically "
        "toward the next keyframe's, as latent-walk tools and AnimateDiff prompt travel do; composable prompts "
        "(AND, |) blend in the noise prediction instead. LoRAs follow the keyframe in force. Default: lerp in "
        "interpolate and animatediff modes, hold in the others",
    )

    def text_interpolation(self) -> Literal["hold", "lerp", "slerp"]:
        """``prompt_interpolation`` with the mode's default filled in."""
        if self.prompt_interpolation is not None:
            return self.prompt_interpolation
        return "lerp" if self.mode in ("interpolate", "animatediff") else "hold"

    @field_validator("strength")
    @classmethod
    def _strength_schedule(cls, value: ScheduleValue) -> ScheduleValue:
        return _check_schedule_text(value)

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, value: str) -> str:
        from flipbook.modes import MODES

        if value not in MODES:
            raise ValueError(f"one of: {', '.join(MODES)}")
        return value

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError("must be a multiple of 8")
        return value


OutputFormat = Literal["png", "gif", "mp4", "mp4-h265", "webm", "webp", "apng", "contact"]


class OutputSection(_Section):
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
    gif_palette: Literal["global", "per_frame"] = Field(
        "global", description="global: one palette, no shimmer; per_frame: better colour when scenes change"
    )
    gif_dither: Literal["none", "floyd-steinberg"] = "none"
    gif_optimize: bool = Field(True, description="gifsicle -O3 when installed, else Pillow's optimiser")
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
    loop: int = Field(0, ge=0, le=65535, description="WebP/APNG loop count, 0 loops forever")
    ping_pong: bool = Field(False, description="play forward then backward (0 1 2 3 2 1)")

    def encode_options(self) -> dict[str, object]:
        """The encoder settings, named as :class:`flipbook.io.writers.EncodeOptions` names them."""
        return self.model_dump(exclude={"dir", "formats", "name"})


class PostSection(_Section):
    """``[post]``: what happens to the finished frames before encoding (the frames folder keeps the
    originals): optical-flow frame interpolation, then upscaling."""

    interpolate: int = Field(1, ge=1, le=16, description="x N frames by frame interpolation (1: off)")
    interpolate_method: Literal["flow", "blend", "film", "rife"] = Field(
        "flow",
        description="flow: OpenCV DIS optical flow, no weights; blend: cross-fade; film: FILM model; "
        "rife: RIFE 4.6 model",
    )
    film_model: Annotated[Path | None, ModelReference("FILM model")] = Field(
        None, description="interpolate_method film: a TorchScript film_net file"
    )
    rife_model: Annotated[Path | None, ModelReference("RIFE model")] = Field(
        None, description="interpolate_method rife: RIFE 4.6 weights (flownet.pkl, .pth or .safetensors)"
    )
    slowmo: bool = Field(False, description="keep the fps, so motion is N times slower (else fps x N)")
    loop: bool = Field(False, description="the animation loops: interpolate the last -> first seam too")
    upscale: float = Field(1.0, gt=0, le=16, description="size factor (1: off)")
    upscale_model: Annotated[str | None, ModelReference("upscaler", folders=("upscaler",))] = Field(
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


class VideoSection(_Section):
    """``[video]``: restyle a video (mov2mov, Deforum Video Input): every chosen frame of ``init.video``
    through img2img at the ``animation.strength`` schedule (share of the source frame kept)."""

    every_nth: int = Field(1, ge=1, le=1000, description="use every nth source frame")
    start_frame: int = Field(0, ge=0, description="first source frame used")
    end_frame: int | None = Field(None, ge=1, description="source frame to stop before; none: the end")
    fps: float | None = Field(
        None, gt=0, le=240, description="resample the source to this rate (nearest frame); not with every_nth"
    )
    resize_mode: Literal["just_resize", "crop_and_resize", "resize_and_fill"] = Field(
        "just_resize",
        description="A1111's: stretch to the size; scale to cover and crop the centre; scale to fit and fill "
        "the borders with the edge pixels",
    )
    noise_multiplier: ScheduleValue = Field(1.0, description="A1111's initial noise multiplier, per frame")
    color_coherence: Literal["none", "rgb", "hsv", "lab"] = Field(
        "none", description="match each output frame's colours to its source frame"
    )
    feedback: ScheduleValue = Field(
        0.0,
        description="share (0..1) of the previous stylised frame, moved by the source's optical flow, blended "
        "into each source frame before img2img: steadier texture, frames no longer independent",
    )
    mask_video: Annotated[Path | None, InputFile("video")] = Field(
        None, description="restyle only where this video is white (or use init.mask for a still mask)"
    )
    keep_audio: bool = Field(True, description="the source's audio becomes the soundtrack of video outputs")
    batch_size: int = Field(4, ge=1, le=256, description="frames per UNet call when feedback is 0")

    @field_validator("noise_multiplier", "feedback")
    @classmethod
    def _schedule(cls, value: ScheduleValue) -> ScheduleValue:
        return _check_schedule_text(value)

    @model_validator(mode="after")
    def _one_way_to_pick_frames(self) -> VideoSection:
        if self.fps is not None and self.every_nth != 1:
            raise ValueError("either fps (resampling) or every_nth, not both")
        if self.end_frame is not None and self.end_frame <= self.start_frame:
            raise ValueError(f"end_frame must be after start_frame ({self.start_frame})")
        return self


class AudioSection(_Section):
    """``[audio]``: a music file that drives schedules (``beat``, ``bpm``, ``amp``), the interpolate mode's
    ``audio`` easing, and the soundtrack of video outputs."""

    file: Annotated[Path | None, InputFile("audio")] = Field(None, description="wav, flac, ogg or mp3")
    offset: float = Field(0.0, ge=0, le=86_400, description="seconds into the file where frame 0 starts")
    soundtrack: bool = Field(True, description="mux the audio into MP4/WebM outputs, trimmed to the video")


Easing = Literal["linear", "sine", "audio"] | str


class InterpolateSection(_Section):
    """``[interpolate]``: the latent walk (GIFfusion, stable-diffusion-videos). Each keyframe of ``prompts`` has
    its own noise latent and text embedding; frame i between keyframes a and b is txt2img from
    ``slerp(w, noise_a, noise_b)`` with the embeddings mixed by ``animation.prompt_interpolation`` at weight w,
    where w eases from 0 at a to 1 at b. Frames are independent, so they render ``batch_size`` at a time."""

    batch_size: int = Field(4, ge=1, le=256, description="frames per UNet call (same frames as one by one)")
    noise: Literal["keyframe", "fixed"] = Field(
        "keyframe",
        description="keyframe: each keyframe's noise comes from its own seed (the sampling seed schedule at "
        "that frame); fixed: one noise latent (frame 0's seed) for the whole animation, only the prompt moves",
    )
    easing: Easing | list[Easing] = Field(
        "linear",
        description='w over each segment: "linear"; "sine" (the morph moves in sine_frequencies smooth '
        'pulses); "audio" (faster where audio.file hits: cumulative percussive energy); or a schedule '
        "string over the animation's frames giving w in [0, 1] (u is the linear position in the segment, "
        'e.g. "0:(u**2)"). A list gives one easing per segment',
    )
    sine_frequencies: list[int] = Field(
        default_factory=lambda: [1],
        min_length=1,
        max_length=16,
        description="sine easing: pulses per segment (whole numbers >= 1; several are averaged)",
    )
    motion: bool = Field(
        False,
        description="apply the [camera] 2D schedules (zoom, angle, translation_x/y, ...) to the init image or "
        "video frames before diffusion, accumulated from frame 0 (needs init.image or init.video)",
    )

    @field_validator("easing")
    @classmethod
    def _easing(cls, value: Easing | list[Easing]) -> Easing | list[Easing]:
        for item in value if isinstance(value, list) else [value]:
            if item not in ("linear", "sine", "audio"):
                from flipbook.spec.schedules import Schedule, ScheduleError

                try:
                    Schedule.parse(item, ("u", *AUDIO_NAMES))
                except ScheduleError as error:
                    raise ValueError(f'"linear", "sine", "audio" or a schedule string ({error})') from None
        return value

    @field_validator("sine_frequencies")
    @classmethod
    def _whole_pulses(cls, value: list[int]) -> list[int]:
        if any(f < 1 or f > 64 for f in value):
            raise ValueError("whole numbers from 1 to 64 (each pulse starts and ends at rest)")
        return value


class VariationsSection(_Section):
    """``[variations]``: inpaint loops. From ``init.image`` and ``init.mask``, ``animation.max_frames``
    inpainted variations of the masked part (the plan's seed and prompt at frame k for variation k), put in
    the order with the smallest changes between neighbours and played as a loop; outside the mask nothing
    moves."""

    denoise: float = Field(
        0.3,
        gt=0,
        le=1,
        description="share of the schedule re-run on the masked part (0.2-0.35): low keeps every variation "
        "close to the init image, so neighbours differ a little (motion), not wholesale (flicker)",
    )
    order: Literal["loop", "path", "seed"] = Field(
        "loop",
        description="loop: a closed tour, the last variation also close to the first; path: an open path, for "
        "output.ping_pong; seed: generation order",
    )
    masked_content: Literal["original", "fill", "latent_noise", "latent_nothing"] = Field(
        "original", description="what the masked part starts from, as A1111's inpainting"
    )
    mask_blur: float = Field(0.0, ge=0, le=64, description="blur of the inpainting mask (pixels)")
    batch_size: int = Field(4, ge=1, le=256, description="variations per UNet call")


class AnimateDiffSection(_Section):
    """``[animatediff]``: a motion module (AnimateDiff) attached to the SD 1.5 checkpoint of ``model.name``;
    all frames are denoised together, in overlapping context windows when there are more frames than
    ``context_length``. Prompts travel per frame (``animation.prompt_interpolation``, lerp by default);
    ``init.image`` (and ``end_image``) start from images, ``init.video`` restyles a video."""

    motion_module: Annotated[
        str,
        ModelReference(
            "motion module", builtins=("tiny", "random-sd15"), folders=("motion_module",), hub=True
        ),
    ] = Field(
        "tiny",
        description="built-in tiny, a diffusers MotionAdapter folder or hub id, or an original motion module "
        "checkpoint (mm_sd15_v2.safetensors, mm_sd15_v3.ckpt, ...) as a path or a name in the models folder",
    )
    motion_loras: list[LoraRef] = Field(
        default_factory=list, description="motion LoRAs (v2: zoom, pan, tilt, roll) with weights"
    )
    adapter_lora: LoraRef | None = Field(
        None, description="the v3 domain adapter LoRA (v3_sd15_adapter.ckpt) on the image model, with weight"
    )
    preset: Literal["none", "lcm", "animatelcm", "lightning"] = Field(
        "none",
        description="scheduler settings for distilled checkpoints: lcm/animatelcm (LCM sampler, linear "
        "betas), lightning (Euler, trailing spacing, linear betas); see README for steps and cfg",
    )
    context_length: int = Field(16, ge=1, le=64, description="frames the motion module sees at once")
    context_overlap: int | None = Field(
        None, ge=0, description="frames shared by neighbouring windows; default context_length // 4"
    )
    context_stride: int = Field(1, ge=1, le=8, description="1 = contiguous windows; 2+ adds strided windows")
    context_schedule: Literal["uniform", "static"] = Field(
        "uniform",
        description="uniform: windows wrap around the animation and their offsets rotate every step; "
        "static: the same windows every step",
    )
    fuse_method: Literal["flat", "pyramid"] = Field(
        "pyramid",
        description="how overlapping windows are averaged: flat (equal weights) or pyramid (window centre "
        "weighs more)",
    )
    closed_loop: Literal["N", "R-P", "R+P", "A"] = Field(
        "R-P",
        description="N: no loop; R-P: some windows wrap from the last frames to the first, prompts don't; "
        "R+P: the same and prompts travel back to the first keyframe; A: every window wraps (strongest loop). "
        "Not ping-pong: for that set output.ping_pong",
    )
    free_init: bool = Field(False, description="FreeInit: re-noise the low frequencies and sample again")
    free_init_iterations: int = Field(3, ge=1, le=10, description="FreeInit sampling passes")
    free_init_method: Literal["butterworth", "gaussian", "ideal", "box"] = "butterworth"
    free_noise: bool = Field(
        False, description="FreeNoise: later windows reuse the first window's noise, shuffled (steadier)"
    )
    end_image: Annotated[Path | None, InputFile("image")] = Field(
        None, description="image to video: the last frame leans to this image"
    )
    latent_power: float = Field(1.0, ge=0, le=10, description="how fast the start image's hold decays")
    latent_scale: float = Field(32.0, gt=0, le=1000, description="how far the start image's hold reaches")
    latent_power_last: float = Field(1.0, ge=0, le=10, description="as latent_power, for end_image")
    latent_scale_last: float = Field(32.0, gt=0, le=1000, description="as latent_scale, for end_image")

    @model_validator(mode="after")
    def _overlap_below_length(self) -> AnimateDiffSection:
        if self.context_overlap is not None and self.context_overlap >= self.context_length:
            raise ValueError(f"context_overlap must be less than context_length ({self.context_length})")
        return self

    def overlap(self) -> int:
        """``context_overlap`` with its default (a quarter of the window) filled in."""
        return self.context_length // 4 if self.context_overlap is None else self.context_overlap


class SvdSection(_Section):
    """``[svd]``: Stable Video Diffusion, image to video. The start image is ``init.image``, else frame 0 made
    by txt2img from the prompts on ``model.name``. Clips of ``num_frames`` are chained until
    ``animation.max_frames``: each clip starts from the last frame of the one before (not repeated). With
    ``init.mask`` (the motion brush) pixels outside the mask are held to the first frame while sampling.
    The conditioning fps is ``animation.fps``."""

    model: Annotated[
        str,
        ModelReference("video model", builtins=("tiny", "random-svd"), folders=("checkpoint",), hub=True),
    ] = Field(
        "tiny",
        description="built-in tiny, a diffusers folder or hub id "
        "(stabilityai/stable-video-diffusion-img2vid-xt), or a single-file checkpoint",
    )
    num_frames: int | None = Field(
        None, ge=2, le=128, description="frames per clip; default the model's (14 for svd, 25 for svd-xt)"
    )
    num_inference_steps: int = Field(25, ge=1, le=1000)
    motion_bucket_id: int = Field(127, ge=1, le=255, description="more motion when higher")
    noise_aug_strength: float = Field(
        0.02, ge=0, le=10, description="noise added to the start image: more motion, less likeness"
    )
    min_guidance_scale: float = Field(1.0, ge=0, le=100, description="guidance at the first frame")
    max_guidance_scale: float = Field(3.0, ge=0, le=100, description="guidance at the last frame (linear)")
    decode_chunk_size: int | None = Field(
        None, ge=1, le=128, description="frames decoded at once: less memory, more flicker; default all"
    )


class Spec(_Section):
    version: int = SPEC_VERSION
    model: ModelSection = Field(default_factory=ModelSection)
    sampling: SamplingSection = Field(default_factory=SamplingSection)
    animation: AnimationSection = Field(default_factory=AnimationSection)
    prompts: Annotated[dict[str, str] | str, PROMPT_LORAS] = Field(
        description='Deforum keyframes {"0" = "a forest", "max_f-10" = "a city --neg fog"} (keys may be '
        'expressions in max_f and s; " --neg " starts the negative), or AnimateDiff lines: head lines, '
        '"N: prompt" lines, tail lines. Backtick math such as (cherry:`1+t/max_f`) is evaluated per frame.'
    )
    positive_prompt: Annotated[str, PROMPT_LORAS] = Field(
        "", description="added before every prompt (Deforum's prompts_positive)"
    )
    negative_prompt: Annotated[str, PROMPT_LORAS] = Field(
        "", description="added after every prompt's negative (Deforum's prompts_negative)"
    )
    controlnet: ControlNetUnits = Field(
        default_factory=list, description="ControlNet units ([[controlnet]] tables), applied to every frame"
    )
    init: InitSection = Field(default_factory=InitSection)
    camera: CameraSection = Field(default_factory=CameraSection)
    interpolate: InterpolateSection = Field(default_factory=InterpolateSection)
    variations: VariationsSection = Field(default_factory=VariationsSection)
    animatediff: AnimateDiffSection = Field(default_factory=AnimateDiffSection)
    svd: SvdSection = Field(default_factory=SvdSection)
    video: VideoSection = Field(default_factory=VideoSection)
    audio: AudioSection = Field(default_factory=AudioSection)
    post: PostSection = Field(default_factory=PostSection)
    output: OutputSection = Field(default_factory=OutputSection)

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
        from flipbook.spec.travel import check_keyframe_count, compile_prompt_math, parse_prompt_lines

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
        """Defaults users of the motion models expect, where the spec leaves them unset: AnimateDiff 8 fps and
        as many frames as one context window; SVD 1024x576 at 7 fps and one clip (``svd.num_frames``; when
        that is unset too, the model's count, see ``modes/svd.py``). Values the spec sets are kept as written."""
        animation, unset = self.animation, self.animation.model_fields_set
        defaults: dict[str, object] = {}
        if animation.mode == "animatediff":
            defaults = {"fps": 8.0, "max_frames": self.animatediff.context_length}
        elif animation.mode == "svd":
            defaults = {"fps": 7.0, "width": 1024, "height": 576}
            if self.svd.num_frames is not None:  # else the model's count, filled in at render
                defaults["max_frames"] = self.svd.num_frames
        for name, value in defaults.items():
            if name not in unset:
                setattr(animation, name, value)
        if animation.mode == "svd":
            for name in ("width", "height"):
                if getattr(animation, name) % 64:
                    raise SpecError(
                        f"animation.{name}", getattr(animation, name), "a multiple of 64 for svd mode"
                    )
        return self

    @model_validator(mode="after")
    def _mode_inputs(self) -> Spec:
        """Inputs only some modes read are errors elsewhere, not silently ignored."""
        from flipbook.modes import VIDEO_INIT_MODES

        mode = self.animation.mode
        c = self.camera
        if (c.hybrid_motion != "none" or c.hybrid_composite != "none") and c.hybrid_video is None:
            raise SpecError(
                "camera.hybrid_video", None, "a video when hybrid_motion or hybrid_composite is on"
            )
        if c.color_coherence == "video" and c.hybrid_video is None:
            raise SpecError(
                "camera.color_coherence", "video", "a mode with a reference: video needs camera.hybrid_video"
            )
        if c.hybrid_video is not None and mode not in ("2d", "3d"):
            raise SpecError("camera.hybrid_video", str(c.hybrid_video), "only with animation.mode 2d or 3d")
        if mode == "video" and self.init.video is None:
            raise SpecError(
                "init.video", None, "the source video for video mode (a video, GIF or frame folder)"
            )
        if self.init.video is not None and mode not in VIDEO_INIT_MODES:
            raise SpecError(
                "init.video",
                str(self.init.video),
                f"only with animation.mode {' or '.join(VIDEO_INIT_MODES)}",
            )
        if self.interpolate.motion and self.init.image is None and self.init.video is None:
            raise SpecError("interpolate.motion", True, "true only with init.image or init.video to move")
        fps = self.animation.fps * (1 if self.post.slowmo else self.post.interpolate)
        if "gif" in self.output.formats and fps > 100:
            raise SpecError(
                "post.interpolate",
                self.post.interpolate,
                "an output frame rate of at most 100 fps for GIF (its delays are whole centiseconds)",
                detail=f"{self.animation.fps:g} fps x {self.post.interpolate} = {fps:g} fps",
            )
        return self

    def with_seed(self) -> Spec:
        """The spec with seed -1 replaced by a random seed (recorded, so the render can be repeated)."""
        if self.sampling.seed != -1:
            return self
        seed = random.SystemRandom().randrange(2**32)
        return self.model_copy(update={"sampling": self.sampling.model_copy(update={"seed": seed})})

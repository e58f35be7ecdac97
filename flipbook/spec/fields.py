"""The field types every spec section is built from: sections, schedules with their range and unit, and the
fields that name models and input files, one type per kind.

Modes' sections (``flipbook/modes/<name>/settings.py``) and the core sections (``flipbook/spec/model.py``)
both use these, and nothing here imports a mode, so the spec can be assembled from the registered modes'
sections. What a field means is in its type, so that validation, the plan's range checks, the models-folder
lookup, the server's path policy, the web UI's widgets and ``flipbook schema`` all read it from one place:

- :data:`ScheduleValue`: a number, per-frame list, Deforum schedule string or table; its text is parsed when the
  spec is validated (a typo is reported with a caret). ``Annotated[ScheduleValue, Range(0, 1, ...), Unit(...)]``
  adds the range every frame's value must stay in, checked by the plan, and the unit of its numbers
  (``x-flipbook: {"range": ..., "unit": ...}``).
- The model kinds (:data:`CHECKPOINT`, :data:`VAE`, :data:`LORA`, ...) and their field types
  (:data:`Checkpoint`, :data:`MotionModule`, ...): :class:`~flipbook.spec.references.ModelReference` markers.
- The input files (:data:`ImageFile`, :data:`MaskFile`, :data:`VideoFile`, :data:`AudioFile`):
  :class:`~flipbook.spec.references.InputFile` markers.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictFloat,
    Tag,
    ValidationInfo,
    field_validator,
)

from flipbook.errors import SpecError
from flipbook.spec.references import InputFile, ModelReference

if TYPE_CHECKING:
    import numpy as np

AUDIO_NAMES = ("beat", "bpm", "amp")
"""Schedule variables that follow ``audio.file`` (per frame: 1 on a beat, the tempo, the loudness 0..1)."""


class Section(BaseModel):
    """A spec section: unknown keys are errors, true/false is not a number. Hooks a section may override:
    :meth:`check_in` (rules that need the rest of the spec) and :meth:`check_frames` (rules on its planned
    per-frame values); ``planned_in_every_mode`` resolves all its schedules in every mode (frames.csv shows
    them), not only where a mode reads them."""

    model_config = ConfigDict(extra="forbid")
    planned_in_every_mode: ClassVar[bool] = False

    @field_validator("*", mode="before")
    @classmethod
    def _no_lax_readings(cls, value: object, info: ValidationInfo) -> object:
        """What pydantic's lax mode would quietly read as something else is a mistake: true/false in a field
        that takes only numbers (not 1 and 0), 0/1/"yes" in a field that takes only true/false, empty text for
        an input file (not the current folder). Fields that take a choice or a schedule decide for themselves."""
        field = cls.model_fields[info.field_name]
        annotation = field.annotation
        if get_origin(annotation) is list:
            if isinstance(value, list) and any(isinstance(v, bool) for v in value) and _numbers(annotation):
                raise ValueError("numbers, not true or false")
        elif isinstance(value, bool) and _numbers(annotation):
            raise ValueError("a number, not true or false")
        elif value is not None and not isinstance(value, bool) and _only_bool(annotation):
            raise ValueError("true or false")
        elif isinstance(value, str) and not value.strip() and _input_file(field.metadata):
            raise ValueError("a file path, not empty text (leave the field out for none)")
        return value

    def check_in(self, spec: Any) -> None:
        """Rules between this section and the rest of the validated ``spec`` (SpecError naming the field)."""

    @classmethod
    def check_frames(cls, values: dict[str, np.ndarray]) -> None:
        """Rules on this section's planned values (name -> per frame) where a mode reads them; may round values
        in place (what the render will use)."""


def _only_bool(annotation: object) -> bool:
    """Whether a field's type takes true/false and nothing else: ``bool`` or ``bool | None``."""
    members = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    members = tuple(m for m in members if m is not type(None))
    return members == (bool,)


def _input_file(metadata: list[object]) -> bool:
    """Whether a field's metadata marks it as an input file (:class:`~flipbook.spec.references.InputFile`)."""
    return any(isinstance(item, InputFile) for item in metadata)


def _numbers(annotation: object) -> bool:
    """Whether a field's type takes numbers and nothing else: ``int``, ``float | None``, ``list[int]``."""
    origin = get_origin(annotation)
    members = get_args(annotation) if origin in (Union, UnionType, list) else (annotation,)
    members = tuple(m for m in members if m is not type(None))
    return bool(members) and all(m in (int, float) for m in members)


def check_schedule_text(value: object) -> object:
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


# ---- schedules -------------------------------------------------------------------------------------------

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


class ScheduleTable(Section):
    """A schedule with its interpolation: ``{ schedule = "0:(1), 30:(2)", interpolation = "cubic" }``."""

    schedule: PlainSchedule
    interpolation: Literal["linear", "cubic", "step"] = "linear"

    @field_validator("schedule")
    @classmethod
    def _parse(cls, value: float | str | list[float]) -> float | str | list[float]:
        return check_schedule_text(value)


ScheduleValue = Annotated[
    Annotated[float, Tag(NUMBER)]
    | Annotated[str, Tag(TEXT)]
    | Annotated[list[StrictFloat], Tag(LIST)]
    | Annotated[ScheduleTable, Tag(TABLE)],
    _by_kind("a number, a per-frame list, a schedule string or a table"),
    AfterValidator(check_schedule_text),
]
"""A number (constant), a per-frame list, a Deforum schedule string, or a table with an interpolation; a string's
syntax is checked when the spec is validated, its values per frame by the plan."""


@dataclass(frozen=True)
class Range:
    """The values a schedule may take at every frame, ``low`` to ``high`` (``high`` itself excluded with
    ``open_high``), ``allowed`` saying so in errors. The plan checks it where the mode reads the schedule;
    ``flipbook schema`` shows it (``x-flipbook: {"range": ...}``), and the web UI's slider bounds come from it."""

    low: float
    high: float
    allowed: str
    open_high: bool = False

    def check(self, field: str, values: np.ndarray) -> None:
        """SpecError naming ``field`` and the first frame whose value is out of range."""
        import numpy as np

        above = values >= self.high if self.open_high else values > self.high
        bad = np.flatnonzero((values < self.low) | above)
        if bad.size:
            frame = int(bad[0])
            raise SpecError(field, float(values[frame]), self.allowed, detail=f"at frame {frame}")

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        entry: dict[str, Any] = {"min": self.low, "max": self.high} | (
            {"max_exclusive": True} if self.open_high else {}
        )
        schema["x-flipbook"] = {**schema.get("x-flipbook", {}), "range": entry}
        return schema


@dataclass(frozen=True)
class Unit:
    """What a number's unit is (``degrees per frame``, ``share``): shown by ``flipbook schema`` and the web UI."""

    name: str

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        schema["x-flipbook"] = {**schema.get("x-flipbook", {}), "unit": self.name}
        return schema


StepsValue = Annotated[
    Annotated[int, Tag(NUMBER)] | Annotated[str, Tag(TEXT)],
    _by_kind("an integer from 1 to 1000, or a schedule string"),
    AfterValidator(check_schedule_text),
    Range(1, 1000, "a step count from 1 to 1000"),
]
"""Sampling steps: a whole number or a schedule string."""


def takes_schedule(annotation: object) -> bool:
    """Whether ``ScheduleTable`` appears anywhere in the annotation (unions, Optional, Annotated)."""
    if annotation is ScheduleTable:
        return True
    return any(takes_schedule(arg) for arg in typing.get_args(annotation))


def schedule_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """A section's schedule fields (those that take a :class:`ScheduleTable`), from its annotations."""
    return tuple(name for name, info in model.model_fields.items() if takes_schedule(info.annotation))


def range_of(model: type[BaseModel], name: str) -> Range | None:
    """The :class:`Range` in field ``name``'s type, or None (any finite number)."""
    return next((item for item in model.model_fields[name].metadata if isinstance(item, Range)), None)


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


# ---- models, one kind each (see flipbook.spec.references.ModelReference) ---------------------------------

CHECKPOINT = ModelReference("checkpoint", folders=("checkpoint",), hub=True, form="schedule")
VAE = ModelReference("VAE", folders=("vae",))
TINY_VAE = ModelReference("tiny VAE", builtins=("tiny",), folders=("vae_approx",), hub=True)
LORA = ModelReference("LoRA", folders=("lora", "motion_lora"))
PROMPT_LORAS = ModelReference("LoRA", folders=("lora",), form="prompt_tags")
CONTROLNET = ModelReference("ControlNet", builtins=("tiny",), folders=("controlnet",), hub=True)
PREPROCESSOR_MODEL = ModelReference(
    "preprocessor model", builtins=("flat", "tiny"), folders=("annotator", "depth"), hub=True
)
DEPTH_MODEL = ModelReference("depth model", builtins=("flat", "tiny"), folders=("depth",), hub=True)
# checkpoints, motion modules, video models and refiners take their built-in names from the model-family registry
MOTION_MODULE = ModelReference("motion module", folders=("motion_module",), hub=True)
VIDEO_MODEL = ModelReference("video model", folders=("checkpoint",), hub=True)
REFINER = ModelReference("refiner", folders=("checkpoint",), hub=True)
VIDEO_DIFFUSION_MODEL = ModelReference(
    "video diffusion model", folders=("checkpoint", "diffusion_model"), hub=True
)
TEXT_ENCODER = ModelReference("text encoder", folders=("text_encoder",))
TOKENIZER = ModelReference("tokenizer", folders=("text_encoder",), hub=True)
IMAGE_ENCODER = ModelReference("image encoder", folders=("clip_vision",))
UPSCALER = ModelReference("upscaler", folders=("upscaler",))
FILM_MODEL = ModelReference("FILM model", folders=("film",))
RIFE_MODEL = ModelReference("RIFE model", folders=("rife",))

Checkpoint = Annotated[str, CHECKPOINT]
Vae = Annotated[str | None, VAE]
Refiner = Annotated[str | None, REFINER]
TinyVae = Annotated[str | None, TINY_VAE]
LoraName = Annotated[str, LORA]
PromptText = Annotated[str, PROMPT_LORAS]
ControlNetModel = Annotated[str, CONTROLNET]
PreprocessorModel = Annotated[str | None, PREPROCESSOR_MODEL]
DepthModel = Annotated[str, DEPTH_MODEL]
MotionModule = Annotated[str, MOTION_MODULE]
VideoModel = Annotated[str, VIDEO_MODEL]
VideoDiffusionModel = Annotated[str, VIDEO_DIFFUSION_MODEL]
TextEncoder = Annotated[str | None, TEXT_ENCODER]
Tokenizer = Annotated[str | None, TOKENIZER]
ImageEncoder = Annotated[str | None, IMAGE_ENCODER]
Upscaler = Annotated[str | None, UPSCALER]
FilmModel = Annotated[Path | None, FILM_MODEL]
RifeModel = Annotated[Path | None, RIFE_MODEL]

# ---- input files, one kind each (see flipbook.spec.references.InputFile) ----------------------------------

ImageFile = Annotated[Path | None, InputFile("image")]
MaskFile = Annotated[Path | None, InputFile("mask")]
VideoFile = Annotated[Path | None, InputFile("video")]
AudioFile = Annotated[Path | None, InputFile("audio")]


class LoraRef(Section):
    name: LoraName = Field(description="LoRA file or name in the models folder's LoRA directory")
    weight: float = Field(1.0, ge=-10, le=10)

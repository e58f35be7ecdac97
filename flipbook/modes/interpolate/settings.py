"""``[interpolate]``: the settings of the latent walk (the ``interpolate`` mode). Pure pydantic: no torch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from flipbook.errors import SpecError
from flipbook.spec.fields import AUDIO_NAMES, Section

Easing = Literal["linear", "sine", "audio"] | str


class InterpolateSection(Section):
    """``[interpolate]``: the latent walk (GIFfusion, stable-diffusion-videos). Each keyframe of ``prompts`` has
    its own noise latent and text embedding; frame i between keyframes a and b is txt2img from
    ``slerp(w, noise_a, noise_b)`` with the embeddings mixed by ``animation.prompt_interpolation`` at weight w,
    where w eases from 0 at a to 1 at b. Frames are independent, so they render ``batch_size`` at a time."""

    batch_size: int = Field(
        4,
        ge=1,
        le=256,
        description="frames per UNet call (a short last batch is filled up: see the README's Batches)",
    )
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

    def check_in(self, spec: Any) -> None:
        """The motion moves the init image or video, so one must be given (in every mode: a stray
        ``motion = true`` is a mistake, not silently ignored)."""
        if self.motion and spec.init.image is None and spec.init.video is None:
            raise SpecError("interpolate.motion", True, "true only with init.image or init.video to move")

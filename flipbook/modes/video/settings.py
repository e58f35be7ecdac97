"""``[video]``: the settings of the ``video`` mode (mov2mov, Deforum's Video Input). Pure pydantic: no torch."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from flipbook.spec.fields import Range, ScheduleValue, Section, Unit, VideoFile

SHARE = Range(0.0, 1.0, "a share from 0 to 1")
MULTIPLIER = Range(0.0, 10.0, "a multiplier from 0 to 10")


class VideoSection(Section):
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
    noise_multiplier: Annotated[ScheduleValue, MULTIPLIER, Unit("factor")] = Field(
        1.0, description="A1111's initial noise multiplier, per frame"
    )
    color_coherence: Literal["none", "rgb", "hsv", "lab"] = Field(
        "none", description="match each output frame's colours to its source frame"
    )
    feedback: Annotated[ScheduleValue, SHARE, Unit("share")] = Field(
        0.0,
        description="share (0..1) of the previous stylised frame, moved by the source's optical flow, blended "
        "into each source frame before img2img: steadier texture, frames no longer independent",
    )
    mask_video: VideoFile = Field(
        None, description="restyle only where this video is white (or use init.mask for a still mask)"
    )
    keep_audio: bool = Field(True, description="the source's audio becomes the soundtrack of video outputs")
    batch_size: int = Field(
        4,
        ge=1,
        le=256,
        description="frames per UNet call when feedback is 0; with stream_batch the frames of one stream (a "
        "resume restarts at a multiple of it)",
    )
    stream_batch: bool = Field(
        False,
        description="StreamDiffusion's stream batch: one UNet call advances several frames, each at its own "
        "denoising step (up to one per step); frames equal the unpipelined ones; needs feedback 0",
    )
    residual_cfg: bool = Field(
        False,
        description="StreamDiffusion's residual guidance (self-negative) with stream_batch: cfg without the "
        "negative prompt's UNet row (half the rows; an approximation, epsilon-prediction models)",
    )

    @model_validator(mode="after")
    def _one_way_to_pick_frames(self) -> VideoSection:
        if self.fps is not None and self.every_nth != 1:
            raise ValueError("either fps (resampling) or every_nth, not both")
        if self.end_frame is not None and self.end_frame <= self.start_frame:
            raise ValueError(f"end_frame must be after start_frame ({self.start_frame})")
        if self.stream_batch and self.feedback != 0:
            raise ValueError(
                "stream_batch needs feedback = 0 (with feedback each frame waits for the previous output)"
            )
        if self.residual_cfg and not self.stream_batch:
            raise ValueError("residual_cfg works inside stream_batch: set stream_batch = true")
        return self

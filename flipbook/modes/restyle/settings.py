"""``[restyle]``: the settings of the ``restyle`` mode (stylise keyframes, propagate them: the EbSynth
workflow). Pure pydantic: no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from flipbook.spec.fields import Section, VideoFile


class RestyleSection(Section):
    """``[restyle]``: restyle ``init.video`` without flicker. Only keyframes go through img2img (all with frame
    0's seed, the ControlNet units applied to each, optionally diffused together as one grid image); every
    other frame is made from the stylised keyframes before and after it, carried along the source's optical
    flow (occlusions found by forward-backward consistency) and blended across the span."""

    start_frame: int = Field(0, ge=0, description="first source frame used")
    every_nth: int = Field(1, ge=1, le=1000, description="use every nth source frame")
    keyframes: Literal["every", "auto", "list"] = Field(
        "every",
        description="how keyframes are chosen: every keyframe_every frames; auto, where the source has "
        "changed by more than threshold since the last keyframe (min_gap to max_gap frames apart); or the "
        "frames in keyframe_list. Frame 0 and every scene cut are keyframes whatever the choice",
    )
    keyframe_every: int = Field(
        10, ge=1, le=100000, description="keyframes = every: frames between keyframes"
    )
    keyframe_list: list[int] = Field(
        [0], description="keyframes = list: the keyframes' frame numbers, from 0 (frame 0 always is one)"
    )
    threshold: float = Field(
        0.15,
        gt=0.0,
        le=1.0,
        description="keyframes = auto: how much the source must change since the last keyframe (a share: "
        "colour histogram and edge change) for a new one",
    )
    min_gap: int = Field(4, ge=1, le=100000, description="keyframes = auto: fewest frames between keyframes")
    max_gap: int = Field(30, ge=1, le=100000, description="keyframes = auto: most frames between keyframes")
    scene_cut: float = Field(
        0.4,
        gt=0.0,
        le=1.0,
        description="a frame that differs from the one before by more than this (a share) is a scene cut and "
        "a keyframe, and no style is carried across it; 1 finds no cuts",
    )
    grid: int = Field(
        1,
        ge=1,
        le=4,
        description="keyframes diffused together, grid x grid tiles in one image (the multi-frame trick: "
        "keyframes agree with each other); 1: each keyframe alone",
    )
    blend: Literal["histogram", "linear"] = Field(
        "histogram",
        description="how the two keyframes' propagations mix: histogram keeps the texture's contrast where "
        "they disagree (a linear mix would wash it out mid-span); linear is a plain weighted mean",
    )
    batch_size: int = Field(4, ge=1, le=256, description="keyframes (or grids) per UNet call")
    mask_video: VideoFile = Field(
        None,
        description="restyle only where this video is white, frame by frame (or init.mask for a still mask); "
        "elsewhere the source shows",
    )
    keep_audio: bool = Field(True, description="the source's audio becomes the soundtrack of video outputs")

    @field_validator("keyframe_list")
    @classmethod
    def _frame_numbers(cls, frames: list[int]) -> list[int]:
        negative = [frame for frame in frames if frame < 0]
        if negative:
            raise ValueError(f"frame numbers from 0, not {negative[0]}")
        return frames

    @field_validator("max_gap")
    @classmethod
    def _gaps(cls, max_gap: int, info: ValidationInfo) -> int:
        min_gap = info.data.get("min_gap")
        if min_gap is not None and max_gap < min_gap:
            raise ValueError(f"at least min_gap ({min_gap})")
        return max_gap

"""``[camera]``: the settings of the ``2d`` and ``3d`` modes (Deforum's keyframes tab), which the camera package
owns; ``interpolate`` reads its 2D schedules with ``interpolate.motion``. Pure pydantic: no torch.

Every schedule is planned in every mode (frames.csv shows each camera value); only those the mode reads are
range-checked: a field marked :data:`ONLY_2D` or :data:`ONLY_3D` is read by that camera alone, the others by
both (:func:`camera_schedules`); the web UI's tab of each camera shows the fields it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator

from flipbook.errors import SpecError
from flipbook.spec.fields import (
    DepthModel,
    ImageFile,
    Range,
    ScheduleValue,
    Section,
    Unit,
    VideoFile,
    schedule_fields,
)

if TYPE_CHECKING:
    import numpy as np

TWO_D, THREE_D = "2d", "3d"


@dataclass(frozen=True)
class Only:
    """A ``[camera]`` field that only one of the cameras reads (``2d`` or ``3d``); fields without one are read
    by both. ``flipbook schema`` shows it as ``x-flipbook: {"only_in": ...}``."""

    camera: str

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        schema["x-flipbook"] = {**schema.get("x-flipbook", {}), "only_in": self.camera}
        return schema


ONLY_2D, ONLY_3D = Only(TWO_D), Only(THREE_D)
FIELD_OF_VIEW = Range(1.0, 179.0, "a field of view from 1 to 179 degrees")
DEPTH = Range(1e-3, 1e9, "a positive depth")
MULTIPLIER = Range(0.0, 10.0, "a multiplier from 0 to 10")
SHARE = Range(0.0, 1.0, "a share from 0 to 1")


class CameraSection(Section):
    """``[camera]``: the ``2d`` and ``3d`` modes (Deforum's keyframes tab). Every number here is a schedule.

    Direction convention, the same in 2D and 3D: positive values move the picture right / down /
    counter-clockwise / closer. ``translation_x > 0`` slides the picture right (the camera moves left),
    ``translation_y > 0`` slides it down, ``angle`` and ``rotation_3d_z > 0`` turn it counter-clockwise,
    ``zoom > 1`` and ``translation_z > 0`` make it grow; ``rotation_3d_y > 0`` pans the camera left (the picture
    moves right) and ``rotation_3d_x > 0`` tilts it up (the picture moves down).
    """

    planned_in_every_mode: ClassVar[bool] = True  # frames.csv shows every camera value, in every mode

    # 2D and 3D
    translation_x: Annotated[ScheduleValue, Unit("pixels (2D) or scene units (3D) per frame")] = Field(
        0.0, description="2D: pixels per frame; 3D: scene units per frame"
    )
    translation_y: Annotated[ScheduleValue, Unit("pixels (2D) or scene units (3D) per frame")] = 0.0
    border: Annotated[Literal["replicate", "wrap", "reflect", "zeros"], ONLY_2D] = Field(
        "replicate", description="2D: how pixels that come into view are filled"
    )
    # 2D
    angle: Annotated[ScheduleValue, ONLY_2D, Unit("degrees per frame")] = Field(
        0.0, description="2D: degrees per frame, counter-clockwise"
    )
    zoom: Annotated[
        ScheduleValue, ONLY_2D, Range(0.0, 1e3, "a scale factor from 0 to 1000"), Unit("scale per frame")
    ] = Field(1.0, description="2D: scale per frame (1.02 = 2% closer each frame)")
    transform_center_x: Annotated[ScheduleValue, ONLY_2D, Unit("share of the width")] = Field(
        0.5, description="2D: rotation/zoom centre, share of width"
    )
    transform_center_y: Annotated[ScheduleValue, ONLY_2D, Unit("share of the height")] = Field(
        0.5, description="2D: rotation/zoom centre, share of height"
    )
    perspective_flip: Annotated[bool, ONLY_2D] = Field(
        False, description="2D: apply the perspective_flip_* schedules"
    )
    perspective_flip_theta: Annotated[ScheduleValue, ONLY_2D, Unit("degrees")] = Field(
        0.0, description="2D: degrees about the x axis"
    )
    perspective_flip_phi: Annotated[ScheduleValue, ONLY_2D, Unit("degrees")] = Field(
        0.0, description="2D: degrees about the y axis"
    )
    perspective_flip_gamma: Annotated[ScheduleValue, ONLY_2D, Unit("degrees")] = Field(
        0.0, description="2D: degrees about the z axis"
    )
    perspective_flip_fv: Annotated[ScheduleValue, ONLY_2D, FIELD_OF_VIEW, Unit("degrees")] = Field(
        53.0, description="2D: field of view of the flip, degrees"
    )
    # 3D
    translation_z: Annotated[ScheduleValue, ONLY_3D, Unit("scene units per frame")] = Field(
        0.0, description="3D: scene units per frame toward the scene"
    )
    rotation_3d_x: Annotated[ScheduleValue, ONLY_3D, Unit("degrees per frame")] = Field(
        0.0, description="3D: degrees per frame (tilt)"
    )
    rotation_3d_y: Annotated[ScheduleValue, ONLY_3D, Unit("degrees per frame")] = Field(
        0.0, description="3D: degrees per frame (pan)"
    )
    rotation_3d_z: Annotated[ScheduleValue, ONLY_3D, Unit("degrees per frame")] = Field(
        0.0, description="3D: degrees per frame (roll)"
    )
    fov: Annotated[ScheduleValue, ONLY_3D, FIELD_OF_VIEW, Unit("degrees")] = Field(
        40.0, description="3D: vertical field of view in degrees"
    )
    near: Annotated[ScheduleValue, ONLY_3D, DEPTH, Unit("scene units")] = Field(
        200.0, description="3D: scene depth of the nearest pixel"
    )
    far: Annotated[ScheduleValue, ONLY_3D, DEPTH, Unit("scene units")] = Field(
        10000.0, description="3D: scene depth of the farthest pixel"
    )
    depth_model: DepthModel = Field(
        "depth-anything/Depth-Anything-V2-Small-hf",
        description='3D: "flat" (a plane at `near`), "tiny" (built-in, random) or a DPT / Depth Anything '
        "folder, its name in model.models_dir's depth folders, or a hub id",
    )
    save_depth_maps: Annotated[bool, ONLY_3D] = Field(
        False, description="3D: write depth/depth_NNNNN.png per diffused frame"
    )
    padding_mode: Annotated[Literal["border", "reflection", "zeros"], ONLY_3D] = Field(
        "border", description="3D: how pixels that come into view are filled"
    )
    sampling_mode: Annotated[Literal["bicubic", "bilinear", "nearest"], ONLY_3D] = Field(
        "bicubic", description="3D: how the moved picture is resampled"
    )
    # every frame
    cadence: int = Field(1, ge=1, le=100, description="diffuse every Nth frame; warp and cross-fade between")
    optical_flow_cadence: Literal["none", "dis"] = Field(
        "none", description="in-between frames from optical flow (OpenCV DIS) instead of camera warps"
    )
    cadence_flow_factor: Annotated[ScheduleValue, Unit("factor")] = Field(
        1.0, description="scales the optical-flow cadence's flow"
    )
    color_coherence: Literal["none", "rgb", "hsv", "lab", "video"] = Field(
        "lab",
        description="match each frame's colours (histograms) to the reference; video: LAB against the hybrid "
        "video's frame (Deforum's Video Input; needs hybrid_video), refreshed every color_coherence_video_every_n "
        "frames",
    )
    color_coherence_image: ImageFile = Field(None, description="the colour reference; default: frame 0")
    color_coherence_video_every_n: int = Field(
        1, ge=1, le=100000, description="video colour coherence: take a new video frame every N frames"
    )
    color_force_grayscale: bool = False
    contrast: Annotated[ScheduleValue, Range(0.0, 10.0, "a factor from 0 to 10"), Unit("factor")] = Field(
        1.0, description="pixel values are multiplied by this before diffusion"
    )
    antiblur_amount: Annotated[ScheduleValue, Range(0.0, 100.0, "an amount from 0 to 100")] = Field(
        0.1, description="unsharp-mask amount (0 = off)"
    )
    antiblur_kernel: Annotated[
        ScheduleValue, Range(0.0, 255.0, "0 or an odd kernel size up to 255"), Unit("pixels")
    ] = Field(5, description="unsharp-mask kernel size, odd (0 = from sigma)")
    antiblur_sigma: Annotated[ScheduleValue, Range(0.0, 100.0, "a sigma from 0 to 100"), Unit("pixels")] = (
        Field(1.0, description="unsharp-mask Gaussian sigma")
    )
    antiblur_threshold: Annotated[
        ScheduleValue, Range(0.0, 255.0, "a threshold from 0 to 255"), Unit("pixel values")
    ] = Field(0.0, description="unsharp-mask threshold in pixel values")
    noise: Annotated[
        ScheduleValue, Range(0.0, 10.0, "a noise amount from 0 to 10"), Unit("share of the full range")
    ] = Field(0.065, description="noise added to the warped frame (share of full range)")
    noise_type: Literal["gaussian", "perlin"] = "gaussian"
    perlin_octaves: int = Field(4, ge=1, le=8)
    perlin_persistence: float = Field(0.5, gt=0, le=1)
    noise_multiplier: Annotated[ScheduleValue, MULTIPLIER, Unit("factor")] = Field(
        1.0, description="scales the sampler's initial img2img noise (A1111's initial noise multiplier)"
    )
    hybrid_video: VideoFile = Field(
        None,
        description="hybrid video: a video (or GIF, frame folder) whose motion and frames feed the animation",
    )
    hybrid_motion: Literal["none", "optical_flow", "affine", "perspective"] = Field(
        "none",
        description="move each frame the way the hybrid video moves: dense optical flow, or a camera move "
        "(affine / perspective) fitted with RANSAC to feature matches",
    )
    hybrid_flow_method: Literal["dis", "farneback"] = "dis"
    hybrid_flow_factor: Annotated[ScheduleValue, Unit("factor")] = Field(
        1.0, description="scales the hybrid optical flow"
    )
    hybrid_composite: Literal["none", "normal", "before_motion", "after_generation"] = Field(
        "none",
        description="blend the hybrid video's frame into each diffused frame after frame 0 (Deforum's "
        "hybrid_composite): normal after the hybrid motion, before_motion between the camera warp and the hybrid "
        "motion, after_generation into the generated image; true/false are read as normal/none",
    )
    hybrid_comp_alpha: Annotated[ScheduleValue, SHARE, Unit("share")] = Field(
        0.5, description="share of the video frame blended in (0..1)"
    )
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

    def check_in(self, spec: Any) -> None:
        """Hybrid video settings need the hybrid video, in every mode (a travel spec with hybrid_motion on is a
        mistake, not silently ignored); which modes read the video itself, their descriptors say."""
        if (self.hybrid_motion != "none" or self.hybrid_composite != "none") and self.hybrid_video is None:
            raise SpecError(
                "camera.hybrid_video", None, "a video when hybrid_motion or hybrid_composite is on"
            )
        if self.color_coherence == "video" and self.hybrid_video is None:
            raise SpecError(
                "camera.color_coherence", "video", "a mode with a reference: video needs camera.hybrid_video"
            )

    @classmethod
    def check_frames(cls, values: dict[str, np.ndarray]) -> None:
        """What single ranges can't say: antiblur kernels are odd (rounded here), far lies beyond near."""
        import numpy as np

        kernel = np.round(values["antiblur_kernel"])
        even = np.flatnonzero((kernel > 0) & (kernel % 2 == 0))
        if even.size:
            frame = int(even[0])
            raise SpecError(
                "camera.antiblur_kernel",
                float(kernel[frame]),
                "0 or an odd kernel size",
                detail=f"at frame {frame}",
            )
        values["antiblur_kernel"] = kernel
        crossed = np.flatnonzero(values["far"] <= values["near"])
        if crossed.size:
            frame = int(crossed[0])
            raise SpecError(
                "camera.far", float(values["far"][frame]), f"more than camera.near ({values['near'][frame]:g})",
                detail=f"at frame {frame}",
            )  # fmt: skip


def camera_schedules(camera: str) -> frozenset[str]:
    """The ``[camera]`` schedules the ``camera`` (``2d`` or ``3d``) reads: those not marked for the other."""
    fields = CameraSection.model_fields
    return frozenset(
        name
        for name in schedule_fields(CameraSection)
        if all(item.camera == camera for item in fields[name].metadata if isinstance(item, Only))
    )


DEFAULTS: dict[str, float] = {
    name: float(info.default)
    for name, info in CameraSection.model_fields.items()
    if isinstance(info.default, int | float) and not isinstance(info.default, bool)
}
"""Every number field's default (what the summary leaves out as "not moving")."""

"""What the ``video`` mode checks and says with only the spec (no torch; the source is read at render)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flipbook.errors import SpecError

if TYPE_CHECKING:
    from flipbook.spec.model import Spec
    from flipbook.spec.plan import Plan


def check(spec: Spec) -> None:
    """A source video, and stream batching only where its frames can share a pipeline."""
    if spec.init.video is None:
        raise SpecError("init.video", None, "the source video for video mode (a video, GIF or frame folder)")
    if spec.video.stream_batch and spec.controlnet:
        raise SpecError(
            "video.stream_batch", True, "no ControlNet units (their weights follow each frame's own step)"
        )
    if spec.video.stream_batch and spec.model.refiner:
        raise SpecError(
            "video.stream_batch", True, "no refiner (model.refiner): frames stream through one UNet"
        )


def frame_count(spec: Spec) -> str | None:
    """Without ``animation.fps`` the output keeps the source's timing, read at render."""
    a = spec.animation
    return None if "fps" in a.model_fields_set else f"{a.max_frames} frames at the source's frame rate"


def describe(spec: Spec, plan: Plan) -> list[str]:
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
    if v.stream_batch:
        steady.append("stream batched" + (" with residual guidance" if v.residual_cfg else ""))
    mask = " masked" if spec.init.mask or v.mask_video else ""
    line = (
        f"video: {spec.init.video}, {pick} from frame {v.start_frame}{end}, {v.resize_mode}{mask}; "
        + ", ".join(x for x in steady if x and not x.endswith("none"))
        + ("; source audio kept" if v.keep_audio else "")
    ).replace("; ;", ";")
    return [line]

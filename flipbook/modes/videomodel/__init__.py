"""``videomodel``: video diffusion transformers (Wan 2.x, LTX-Video): text and image to video, keyframe
images, long videos in segments chained on the last frames, seamless loops, video-to-video restyles. Settings in ``settings.py``, defaults, rules and
summary in ``rules.py``, the rendering in ``render.py``."""

from __future__ import annotations

from flipbook.modes.base import FormField, Mode
from flipbook.modes.videomodel.rules import check_plan, check_spec, defaults, describe
from flipbook.modes.videomodel.settings import KeyframeImage, VideoModelSection

VIDEOMODEL = Mode(
    name="videomodel",
    description="A video diffusion model (Wan 2.x) makes the video in segments: text or image to video, "
    "each later segment continuing from the last frames so far, prompts travelling from segment to segment, "
    "keyframe images at chosen frames, optionally looped; or a restyle of a source video (init.video), its sound "
    "kept.",
    render_module="flipbook.modes.videomodel.render",
    section="videomodel",
    settings=VideoModelSection,
    inputs=("init.video",),
    defaults=defaults,
    check_spec=check_spec,
    check_plan=check_plan,
    describe=describe,
    bench="flipbook.modes.videomodel.bench",
    form=(
        FormField("videomodel_model", "videomodel.model", "Video model (tiny-wan, folder or hub id)"),
        FormField("segment_frames", "videomodel.segment_frames", "Frames per segment"),
        FormField("image", "init.image", "Start image (optional: image-to-video models)"),
        FormField("video", "init.video", "Source video to restyle (optional: video to video)"),
    ),
)

__all__ = ["VIDEOMODEL", "KeyframeImage", "VideoModelSection"]

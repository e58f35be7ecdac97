"""``video``: restyle a video (mov2mov, Deforum's Video Input): settings in ``settings.py``, the summary in
``rules.py``, the rendering in ``render.py``."""

from __future__ import annotations

from flipbook.modes.base import FormField, Mode
from flipbook.modes.video.rules import check, describe, frame_count
from flipbook.modes.video.settings import VideoSection

VIDEO = Mode(
    name="video",
    description="Video restyling (mov2mov, Deforum's Video Input): every chosen frame of init.video through "
    "img2img, its sound kept.",
    render_module="flipbook.modes.video.render",
    section="video",
    settings=VideoSection,
    inputs=("init.video",),
    deforum_modes=("Video Input",),
    check_spec=check,
    frame_count=frame_count,
    describe=describe,
    form=(
        FormField("video", "init.video", "Source video (MP4, MOV, WebM, GIF)"),
        FormField("every_nth", "video.every_nth", "Every nth frame"),
    ),
    bench="flipbook.modes.video.bench",
)

__all__ = ["VIDEO", "VideoSection"]

"""``restyle``: flicker-free video restyling, EbSynth's workflow without the binary: settings in
``settings.py``, the keyframe choice, plan columns and summary in ``rules.py``, the rendering in
``render.py``; the propagation itself is :mod:`flipbook.propagation`."""

from __future__ import annotations

from flipbook.modes.base import FormField, Mode
from flipbook.modes.restyle.rules import check_spec, columns, describe, frame_count
from flipbook.modes.restyle.settings import RestyleSection

RESTYLE = Mode(
    name="restyle",
    description="Flicker-free video restyling (the EbSynth workflow): keyframes of init.video through img2img "
    "with one seed, every other frame carried from the keyframes around it along the source's motion, "
    "its sound kept.",
    render_module="flipbook.modes.restyle.render",
    section="restyle",
    settings=RestyleSection,
    inputs=("init.video",),
    check_spec=check_spec,
    columns=columns,
    frame_count=frame_count,
    describe=describe,
    form=(
        FormField("video", "init.video", "Source video (MP4, MOV, WebM, GIF)"),
        FormField("keyframes", "restyle.keyframes", "Keyframes"),
        FormField("keyframe_every", "restyle.keyframe_every", "Every n frames"),
    ),
)

__all__ = ["RESTYLE", "RestyleSection"]

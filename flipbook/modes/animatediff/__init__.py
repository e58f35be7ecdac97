"""``animatediff``: every frame denoised together with a motion module, in context windows: settings in
``settings.py``, its defaults, rules and summary in ``rules.py``, the rendering in ``render.py``."""

from __future__ import annotations

from flipbook.modes.animatediff.rules import check_plan, defaults, describe, prompts_loop
from flipbook.modes.animatediff.settings import AnimateDiffSection
from flipbook.modes.base import FormField, Mode

ANIMATEDIFF = Mode(
    name="animatediff",
    description="AnimateDiff: every frame denoised together with a motion module, in context windows for any "
    "length, with closed loops, prompt travel and image or video to video.",
    render_module="flipbook.modes.animatediff.render",
    section="animatediff",
    settings=AnimateDiffSection,
    inputs=("init.video",),
    prompt_interpolation="lerp",
    defaults=defaults,
    check_plan=check_plan,
    prompt_loop=prompts_loop,
    describe=describe,
    form=(
        FormField(
            "motion_module", "animatediff.motion_module", "Motion module (tiny, file, folder or hub id)"
        ),
        FormField("context_length", "animatediff.context_length", "Context"),
        FormField("closed_loop", "animatediff.closed_loop", "Closed loop"),
        FormField("image", "init.image", "Start image (optional)"),
        FormField("video", "init.video", "Source video (optional)"),
    ),
    bench="flipbook.bench.animatediff",
)

__all__ = ["ANIMATEDIFF", "AnimateDiffSection"]

"""``travel``: prompt travel through img2img feedback, the simplest Deforum-style animation (``render.py``).

It has no section of its own: the prompts, ``[sampling]`` and ``animation.strength`` drive it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flipbook.modes.base import FormField, Mode

if TYPE_CHECKING:
    from flipbook.spec.model import Spec
    from flipbook.spec.plan import Plan


def describe(spec: Spec, plan: Plan) -> list[str]:
    """The img2img feedback every frame after the first goes through."""
    from flipbook.spec.summary import feedback_lines

    return feedback_lines(plan)


TRAVEL = Mode(
    name="travel",
    description="Prompt travel: frame 0 from the first prompt (or the init image), then each frame is the "
    "previous one through img2img with the prompt in force (prompts hold until the next keyframe, as in "
    "Deforum 2D/3D).",
    render_module="flipbook.modes.travel.render",
    deforum_modes=("None",),
    describe=describe,
    form=(  # its web UI tab: the optional init image frame 0 starts from
        FormField("image", "init.image", "Init image (optional: frame 0 from it)"),
        FormField("init_strength", "init.strength", "Init strength"),
    ),
)

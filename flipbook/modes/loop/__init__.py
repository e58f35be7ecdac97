"""``loop``: a seamless loop, the latent walk closed into a circle: settings in ``settings.py``, the closed walk,
its rules and summary in ``rules.py``, the rendering in ``render.py``. It is built from shared pieces only (the
keyframe walk, the easing, the batching of independent frames) and registered with one line in
``flipbook/modes/__init__.py``; nothing else in flipbook names it."""

from __future__ import annotations

from flipbook.modes.base import Mode
from flipbook.modes.loop.rules import closes_the_loop, describe, no_init_image, two_keyframes, walk
from flipbook.modes.loop.settings import LoopSection

LOOP = Mode(
    name="loop",
    description="Seamless loop: a latent walk (txt2img from noise and text slerped/lerped between the prompt "
    "keyframes) that heads from the last keyframe back to the first, so the last frame leads into the first; "
    "frames are independent and render in batches.",
    render_module="flipbook.modes.loop.render",
    section="loop",
    settings=LoopSection,
    prompt_interpolation="lerp",
    check_spec=no_init_image,
    check_plan=two_keyframes,
    prompt_loop=closes_the_loop,
    walk=walk,
    describe=describe,
)

__all__ = ["LOOP", "LoopSection"]

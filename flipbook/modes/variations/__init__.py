"""``variations``: inpaint loops, the masked part of the init image varied and ordered into a loop: settings
in ``settings.py``, its rules and summary in ``rules.py``, the rendering in ``render.py``."""

from __future__ import annotations

from flipbook.modes.base import FormField, Mode
from flipbook.modes.variations.rules import describe, needs_image_and_mask
from flipbook.modes.variations.settings import VariationsSection

VARIATIONS = Mode(
    name="variations",
    description="Inpaint loop: the init image inpainted inside the mask at a low denoise, one seed per frame, "
    "ordered so neighbours differ least; outside the mask nothing moves.",
    render_module="flipbook.modes.variations.render",
    section="variations",
    settings=VariationsSection,
    check_plan=needs_image_and_mask,
    describe=describe,
    form=(
        FormField("image", "init.image", "Init image"),
        FormField("mask", "init.mask", "Mask (white = varies)"),
        FormField("denoise", "variations.denoise", "Denoise"),
        FormField("order", "variations.order", "Order"),
    ),
)

__all__ = ["VARIATIONS", "VariationsSection"]

"""What the ``variations`` mode checks and says with only the spec and its plan (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from flipbook.errors import SpecError

if TYPE_CHECKING:
    from flipbook.spec.model import Spec
    from flipbook.spec.plan import FramePlan, Plan


def needs_image_and_mask(spec: Spec, frames: Sequence[FramePlan]) -> None:
    """The mode inpaints the init image inside the mask, so both must be given (render opens both files)."""
    for name in ("image", "mask"):
        if getattr(spec.init, name) is None:
            raise SpecError(
                f"init.{name}",
                None,
                "an image file: variations mode inpaints init.image where init.mask is white",
            )


def describe(spec: Spec, plan: Plan) -> list[str]:
    v, a = spec.variations, spec.animation
    return [
        f"inpaint loop: {a.max_frames} variations of init.image inside init.mask at denoise {v.denoise:g}, "
        f"ordered as a {v.order}, {v.batch_size} per batch"
    ]

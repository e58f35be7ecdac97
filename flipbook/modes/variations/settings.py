"""``[variations]``: the settings of the inpaint loop (the ``variations`` mode). Pure pydantic: no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from flipbook.spec.fields import Section


class VariationsSection(Section):
    """``[variations]``: inpaint loops. From ``init.image`` and ``init.mask``, ``animation.max_frames``
    inpainted variations of the masked part (the plan's seed and prompt at frame k for variation k), put in
    the order with the smallest changes between neighbours and played as a loop; outside the mask nothing
    moves."""

    denoise: float = Field(
        0.3,
        gt=0,
        le=1,
        description="share of the schedule re-run on the masked part (0.2-0.35): low keeps every variation "
        "close to the init image, so neighbours differ a little (motion), not wholesale (flicker)",
    )
    order: Literal["loop", "path", "seed"] = Field(
        "loop",
        description="loop: a closed tour, the last variation also close to the first; path: an open path, for "
        "output.ping_pong; seed: generation order",
    )
    masked_content: Literal["original", "fill", "latent_noise", "latent_nothing"] = Field(
        "original", description="what the masked part starts from, as A1111's inpainting"
    )
    mask_blur: float = Field(0.0, ge=0, le=64, description="blur of the inpainting mask (pixels)")
    batch_size: int = Field(4, ge=1, le=256, description="variations per UNet call")

"""``[loop]``: the settings of the seamless-loop latent walk (the ``loop`` mode). Pure pydantic: no torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from flipbook.spec.fields import Section


class LoopSection(Section):
    """``[loop]``: a latent walk around a closed path. Each prompt keyframe has its own noise latent and text
    embedding; frame i between keyframes a and b is txt2img from ``slerp(w, noise_a, noise_b)`` with the
    embeddings mixed at w, and from the last keyframe the walk heads back to the first, reaching it at frame
    ``max_frames`` (frame 0 of the next time round), so the animation loops without a seam. Frames are
    independent, so they render ``batch_size`` at a time."""

    batch_size: int = Field(
        4,
        ge=1,
        le=256,
        description="frames per UNet call (a short last batch is filled up: see the README's Batches)",
    )
    noise: Literal["keyframe", "fixed"] = Field(
        "keyframe",
        description="keyframe: each keyframe's noise comes from its own seed (the sampling seed schedule at "
        "that frame); fixed: one noise latent (frame 0's) all the way round, only the prompt moves",
    )
    easing: Literal["linear", "sine"] = Field(
        "linear",
        description="w over each segment, the one back to the first keyframe too: linear (steady), or sine "
        "(eases out of and into every keyframe, lingering on each)",
    )

"""``[svd]``: the settings of the ``svd`` mode (Stable Video Diffusion, image to video). Pure pydantic: no
torch."""

from __future__ import annotations

from pydantic import Field

from flipbook.spec.fields import Section, VideoModel


class SvdSection(Section):
    """``[svd]``: Stable Video Diffusion, image to video. The start image is ``init.image``, else frame 0 made
    by txt2img from the prompts on ``model.name``. Clips of ``num_frames`` are chained until
    ``animation.max_frames``: each clip starts from the last frame of the one before (not repeated). With
    ``init.mask`` (the motion brush) pixels outside the mask are held to the first frame while sampling.
    The conditioning fps is ``animation.fps``."""

    model: VideoModel = Field(
        "tiny",
        description="built-in tiny, a diffusers folder or hub id "
        "(stabilityai/stable-video-diffusion-img2vid-xt), or a single-file checkpoint",
    )
    num_frames: int | None = Field(
        None, ge=2, le=128, description="frames per clip; default the model's (14 for svd, 25 for svd-xt)"
    )
    num_inference_steps: int = Field(25, ge=1, le=1000)
    motion_bucket_id: int = Field(127, ge=1, le=255, description="more motion when higher")
    noise_aug_strength: float = Field(
        0.02, ge=0, le=10, description="noise added to the start image: more motion, less likeness"
    )
    min_guidance_scale: float = Field(1.0, ge=0, le=100, description="guidance at the first frame")
    max_guidance_scale: float = Field(3.0, ge=0, le=100, description="guidance at the last frame (linear)")
    decode_chunk_size: int | None = Field(
        None, ge=1, le=128, description="frames decoded at once: less memory, more flicker; default all"
    )

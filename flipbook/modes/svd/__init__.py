"""``svd``: Stable Video Diffusion, image to video, clips chained: settings in ``settings.py``, its defaults,
rules and summary in ``rules.py``, the rendering in ``render.py``."""

from __future__ import annotations

from flipbook.modes.base import FormField, Mode
from flipbook.modes.svd.rules import check_plan, defaults, describe, frame_count, sizes_of_64
from flipbook.modes.svd.settings import SvdSection

SVD = Mode(
    name="svd",
    description="Stable Video Diffusion: an image (init.image, or frame 0 from txt2img) animated, clips chained "
    "for longer videos, init.mask as a motion brush.",
    render_module="flipbook.modes.svd.render",
    section="svd",
    settings=SvdSection,
    defaults=defaults,
    check_spec=sizes_of_64,
    check_plan=check_plan,
    frame_count=frame_count,
    describe=describe,
    form=(
        FormField("svd_model", "svd.model", "Video model (tiny, folder or hub id)"),
        FormField("motion_bucket_id", "svd.motion_bucket_id", "Motion bucket"),
        FormField("noise_aug_strength", "svd.noise_aug_strength", "Noise augmentation"),
        FormField("image", "init.image", "Start image (optional: else frame 0 from the prompts)"),
    ),
    bench="flipbook.bench.svd",
)

__all__ = ["SVD", "SvdSection"]

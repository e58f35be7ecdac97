"""``interpolate``: the latent walk between keyframed prompts (GIFfusion, stable-diffusion-videos): settings in
``settings.py``, the walk's plan and summary in ``rules.py``, the rendering in ``render.py``."""

from __future__ import annotations

from flipbook.modes.base import FormField, Mode
from flipbook.modes.interpolate.rules import describe, reads, walk, wants_audio_energy
from flipbook.modes.interpolate.settings import InterpolateSection

INTERPOLATE = Mode(
    name="interpolate",
    description="Latent walk: txt2img from noise and text slerped/lerped between the prompt keyframes, eased; "
    "frames are independent and render in batches (with an init image or video: img2img from it).",
    render_module="flipbook.modes.interpolate.render",
    section="interpolate",
    settings=InterpolateSection,
    inputs=("init.video",),
    prompt_interpolation="lerp",
    schedules=reads,
    walk=walk,
    audio_energy=wants_audio_energy,
    describe=describe,
    form=(
        FormField(
            "easing", "interpolate.easing", "Easing (linear, sine, audio or a schedule in u)", live=True
        ),
        FormField("noise", "interpolate.noise", "Noise"),
        FormField("batch_size", "interpolate.batch_size", "Batch size"),
    ),
    bench="flipbook.modes.interpolate.bench",
)

__all__ = ["INTERPOLATE", "InterpolateSection"]

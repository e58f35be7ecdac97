"""What every video diffusion family's segment sampler takes: :class:`SegmentSettings` (the sampling parameters
of one segment, with the pipelines' defaults where the spec has none). The samplers themselves are the
families' (``Family.sample``: ``sampling/wan.py``, ``sampling/ltx.py``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SegmentSettings:
    """One segment's sampling parameters. ``shift`` None: the model's scheduler's own; ``guidance_scale_2``:
    a second expert's cfg (Wan 2.2 A14B); ``fps``: the frame rate the model is told (LTX-Video's rope scale)."""

    num_frames: int
    height: int
    width: int
    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    guidance_scale_2: float | None = None
    shift: float | None = None
    max_sequence_length: int = 512
    fps: float = 16.0

    @property
    def guided(self) -> bool:
        """Classifier-free guidance (an unconditional pass per step) only when the scale is above 1."""
        return self.guidance_scale > 1.0

"""What every video diffusion family's segment sampler takes: :class:`SegmentSettings` (the sampling parameters
of one segment, with the pipelines' defaults where the spec has none). The samplers themselves are the
families' (``Family.sample``: ``sampling/wan.py``, ``sampling/ltx.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SegmentSettings:
    """One segment's sampling parameters. ``shift`` None: the model's scheduler's own; ``guidance_scale_2``:
    a second expert's cfg (Wan 2.2 A14B); ``fps``: the frame rate the model is told (LTX-Video's rope scale);
    ``strength``: with a source video (video to video), the share of the steps run from its latents noised to
    that point (diffusers' rule: ``int(steps * strength)`` steps), unread without one."""

    num_frames: int
    height: int
    width: int
    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    guidance_scale_2: float | None = None
    shift: float | None = None
    max_sequence_length: int = 512
    fps: float = 16.0
    strength: float = 1.0

    @property
    def guided(self) -> bool:
        """Classifier-free guidance (an unconditional pass per step) only when the scale is above 1."""
        return self.guidance_scale > 1.0

    @property
    def skipped_steps(self) -> int:
        """The steps a video-to-video segment leaves out at the start (its source is noised to the next one)."""
        steps = self.num_inference_steps
        return steps - min(int(steps * self.strength), steps)


def fade_seam(frames: torch.Tensor, border: int, written: torch.Tensor, count: int) -> torch.Tensor:
    """Blend a segment's frames after its ``border`` position back toward the video as written.

    A later segment re-draws its overlap frames; where its border frame comes out differently from the frame
    already written (``written``, H x W x 3 in [0, 1]), every frame after it would jump by that difference.
    The difference is added back to the ``count`` frames after the border with weights falling linearly
    (``count / (count + 1)`` down to ``1 / (count + 1)``), so the jump fades out instead. ``frames``: the
    segment's (frames x H x W x 3 in [0, 1]); a copy is returned, clipped to [0, 1].
    """
    out = frames.clone()
    offset = written - frames[border]
    for j in range(1, min(count, frames.shape[0] - 1 - border) + 1):
        out[border + j] = (out[border + j] + offset * (1 - j / (count + 1))).clamp(0, 1)
    return out

"""Where LTX-2 takes images in a segment (pure: no torch, so the spec's checks can ask before any model loads).

LTX-2 places image conditions at latent frames, whose first pixel frames are 0 and ``k * t + 1`` (``t``: the
VAE's temporal factor, 8): the frames known from position 0 on (a segment's overlap with the one before) become
one condition at latent frame 0 (``k * t + 1`` of them, as ``LTX2ConditionPipeline`` keeps), every other known
frame one at its latent frame. A known frame anywhere else cannot be placed (moving it would put the image
where the spec did not)."""

from __future__ import annotations

from collections.abc import Iterable


def latent_frames(positions: Iterable[int], scale_temporal: int) -> tuple[dict[int, list[int]], list[int]]:
    """Known segment positions as LTX-2's conditions: (latent frame -> the positions it starts with, in order;
    the positions no latent frame can take)."""
    ordered = sorted(positions)
    run = next((n for n in range(len(ordered)) if ordered[n] != n), len(ordered))
    start = (run - 1) // scale_temporal * scale_temporal + 1 if run else 0
    placed = {0: ordered[:start]} if start else {}
    rest = ordered[start:]
    placed |= {(p - 1) // scale_temporal + 1: [p] for p in rest if (p - 1) % scale_temporal == 0}
    return placed, [p for p in rest if (p - 1) % scale_temporal]


def known_problem(positions: Iterable[int], frame_step: int) -> tuple[list[int], str] | None:
    """The family's ``known_problem`` hook: the segment positions LTX-2 cannot condition on and what it can,
    or None when it takes them all."""
    misplaced = latent_frames(positions, frame_step)[1]
    if not misplaced:
        return None
    return misplaced, (
        f"a frame LTX-2 can condition on: a segment's first {frame_step}k+1 frames (videomodel.overlap: 1, 2, "
        f"{frame_step + 1}, {frame_step + 2}, ...) or a frame {frame_step}k+1 after the segment's first frame "
        "(keyframes, a loop's end)"
    )

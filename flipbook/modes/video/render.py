"""``video``: restyle a video frame by frame (mov2mov, Deforum's Video Input mode).

The chosen source frames (``[video]``: every nth, a start/end range, or resampled to an fps) are resized to the
animation size (A1111's resize modes) and each goes through img2img with the plan's prompt, seed, cfg, steps,
sampler and strength (Deforum's: the share of the source frame kept). Steadiness, all optional:

- ``video.feedback``: the previous stylised frame, moved by the source's optical flow (OpenCV DIS) from the
  previous source frame to this one, is blended into the source frame before img2img, so texture follows the
  motion instead of boiling; frames then depend on each other and render one at a time.
- ``video.color_coherence``: each output's colours are matched to its source frame.
- a mask (``init.mask``, or ``video.mask_video`` frame by frame): only the white part is restyled; elsewhere the
  source frame shows through, feathered by ``init.mask_feather``.

Without feedback, frames are independent and render ``video.batch_size`` at a time, or, with
``video.stream_batch``, stream through a pipeline where each UNet call advances several frames at different
steps (StreamDiffusion's stream batch, :mod:`flipbook.sampling.stream`). The source's audio becomes
the outputs' soundtrack (``video.keep_audio``; mov2mov drops it), and unless ``animation.fps`` is given the
output keeps the source's timing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import PIL.Image

from flipbook.errors import SpecError
from flipbook.imaging.color import match_colors
from flipbook.imaging.masks import composite, feather
from flipbook.modes.base import Split
from flipbook.modes.frame import (
    Frame,
    ModeContext,
    aligned_batches,
    by_checkpoint,
    frame_request,
    frames_at_size,
)
from flipbook.motion.flow import optical_flow, warp_by_flow
from flipbook.spec.model import Spec
from flipbook.spec.plan import Plan


@dataclass(frozen=True)
class Source:
    """The chosen source frames at the animation size, their rate and where they start in the file."""

    frames: list[np.ndarray]
    fps: float
    start_seconds: float


def resume_every(spec: Spec) -> int:
    """Each frame needs at most the previous output (feedback), which is on disk: resume anywhere; stream
    batched frames restart at a stream's first frame, so the UNet sees the same batches as the first run."""
    return spec.video.batch_size if spec.video.stream_batch else 1


def split(spec: Spec, plan: Plan) -> Split | None:
    """Without feedback every frame is made from its own source frame alone (colour coherence matches it to
    that source frame, a mask video's frame is its own), so a job splits at multiples of the batch size (a
    batch, or a stream, is never cut); with feedback on any frame, each frame depends on the one before."""
    if _feeds_back(plan):
        return None
    return Split(spec.video.batch_size)


def check_inputs(spec: Spec) -> None:
    """The source must cover every animation frame; a mask video too."""
    source = read_source(spec)
    if spec.video.mask_video is not None:
        _mask_frames(spec, len(source.frames))


def resolve_spec(spec: Spec) -> Spec:
    """Without an explicit ``animation.fps`` the output keeps the source's timing (its rate after every_nth,
    or ``video.fps``), recorded in the run's spec."""
    if "fps" in spec.animation.model_fields_set:
        return spec
    fps = spec.video.fps or _source_timing(spec)[0] / spec.video.every_nth
    return spec.model_copy(update={"animation": spec.animation.model_copy(update={"fps": round(fps, 6)})})


def soundtrack(spec: Spec, run_dir: Path) -> tuple[Path, float] | None:
    """The source's own audio from the first chosen frame, when it has any and ``keep_audio`` is on (the run
    folder holds none of it)."""
    from flipbook.io.readers import has_audio

    if not spec.video.keep_audio or not has_audio(spec.init.video):
        return None
    return Path(spec.init.video), _source_timing(spec)[1]


def source_frames(spec: Spec) -> list[np.ndarray]:
    """The source frames the animation restyles (for the consistency score next to the output's)."""
    return read_source(spec).frames


def render(ctx: ModeContext) -> Iterator[Frame]:
    spec = ctx.spec
    source = read_source(spec)
    n = spec.animation.max_frames
    feedback = [frame.schedules["video.feedback"] for frame in ctx.plan.frames]  # resolved and checked there
    masks = _masks(spec, n)
    if not _feeds_back(ctx.plan):
        for batch in aligned_batches(range(ctx.start + 1, n), spec.video.batch_size):
            if spec.video.stream_batch:
                yield from _stream_batch(ctx, source, masks, batch)
            else:
                yield from _render_batch(ctx, source, masks, batch, batch_size=spec.video.batch_size)
        return
    previous = np.asarray(ctx.run.load(ctx.start)) if ctx.start >= 0 else None
    for index in range(ctx.start + 1, n):
        start = source.frames[index]
        if previous is not None and feedback[index] > 0:
            flow = optical_flow(source.frames[index - 1], start)
            moved = warp_by_flow(previous, flow)
            start = _blend(start, moved, feedback[index])
        (frame,) = _render_batch(ctx, source, masks, [index], inputs={index: start})
        previous = np.asarray(frame.image)
        yield frame


def _feeds_back(plan: Plan) -> bool:
    """Whether any frame after the first blends in the previous output (``video.feedback`` above 0)."""
    return any(frame.schedules["video.feedback"] > 0 for frame in plan.frames[1:])


def _render_batch(
    ctx, source: Source, masks, batch: Sequence[int], inputs=None, batch_size: int = 1
) -> list[Frame]:
    """img2img of the frames in ``batch`` (one checkpoint at a time), ``batch_size`` rows per UNet call
    (``fixed_batch``: the same frames whatever batch a resume starts in), then colour match and mask."""
    frames: list[Frame] = []
    for checkpoint, group in by_checkpoint([ctx.plan[i] for i in batch]):
        requests = _requests(ctx, source, group, inputs or {})
        images = ctx.cores[checkpoint].generate(requests, batch_size=batch_size, fixed_batch=True)
        for f, request, image in zip(group, requests, images, strict=True):
            frames.append(_frame(ctx.spec, f.index, request, image, source, masks))
    return frames


def _stream_batch(ctx, source: Source, masks, batch: Sequence[int]) -> Iterator[Frame]:
    """The frames of ``batch`` through one stream (:mod:`flipbook.sampling.stream`), each as it finishes."""
    from flipbook.sampling.stream import stream_generate

    for checkpoint, group in by_checkpoint([ctx.plan[i] for i in batch]):
        requests = _requests(ctx, source, group, {})
        stream = stream_generate(ctx.cores[checkpoint], requests, residual_cfg=ctx.spec.video.residual_cfg)
        for position, image in stream:
            yield _frame(ctx.spec, group[position].index, requests[position], image, source, masks)


def _requests(ctx, source: Source, group, inputs: dict) -> list:
    """img2img of each planned frame from its source frame (or the frame ``inputs`` gives for it)."""
    return [
        frame_request(
            ctx,
            f,
            PIL.Image.fromarray(inputs.get(f.index, source.frames[f.index])),
            noise_multiplier=f.schedules["video.noise_multiplier"],
        )
        for f in group
    ]


def _frame(spec: Spec, index: int, request, image, source: Source, masks) -> Frame:
    result = _finish(spec, np.asarray(image), source.frames[index], masks, index)
    return Frame(index, PIL.Image.fromarray(result), request)


def _finish(spec: Spec, image: np.ndarray, source: np.ndarray, masks, index: int) -> np.ndarray:
    if spec.video.color_coherence != "none":
        image = match_colors(image, source, spec.video.color_coherence)
    if masks is not None:
        image = composite(image, source, masks(index))
    return image


def _blend(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    mixed = (1.0 - weight) * a.astype(np.float32) + weight * b.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


# ---- the source ------------------------------------------------------------------------------------------


def read_source(spec: Spec) -> Source:
    """Decode ``init.video``, choose frames as ``[video]`` says, resize them; errors name the field."""
    from flipbook.io.readers import select_frames, source_rate, video_frames_with_times

    v = spec.video
    decoded, times = video_frames_with_times(spec.init.video, field="init.video")
    chosen = select_frames(times, every_nth=v.every_nth, start=v.start_frame, end=v.end_frame, fps=v.fps)
    n = spec.animation.max_frames
    if len(chosen) < n:
        raise SpecError(
            "animation.max_frames",
            n,
            f"at most the {len(chosen)} frames chosen from init.video (video.every_nth, start_frame, "
            "end_frame, fps)",
            detail=f"the source has {len(decoded)} frames",
        )
    size = (spec.animation.width, spec.animation.height)
    frames = [resize(decoded[i], size, v.resize_mode) for i in chosen[:n]]
    fps = v.fps or source_rate(times) / v.every_nth
    return Source(frames, fps, times[chosen[0]])


def _source_timing(spec: Spec) -> tuple[float, float]:
    """(source fps, seconds of the first chosen frame), from timestamps alone (no decoding)."""
    from flipbook.io.readers import frame_times, source_rate

    times = frame_times(spec.init.video, field="init.video")
    start = min(spec.video.start_frame, len(times) - 1)
    return source_rate(times), times[start]


def resize(frame: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """A1111's resize modes: stretch (just_resize), cover and centre-crop (crop_and_resize), or fit and fill the
    borders with the edge pixels (resize_and_fill)."""
    width, height = size
    h, w = frame.shape[:2]
    if mode == "just_resize":
        return _scaled(frame, width, height)
    cover = mode == "crop_and_resize"
    scale = max(width / w, height / h) if cover else min(width / w, height / h)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    scaled = _scaled(frame, sw, sh)
    if cover:
        top, left = (sh - height) // 2, (sw - width) // 2
        return np.ascontiguousarray(scaled[top : top + height, left : left + width])
    top, left = (height - sh) // 2, (width - sw) // 2
    return cv2.copyMakeBorder(scaled, top, height - sh - top, left, width - sw - left, cv2.BORDER_REPLICATE)


def _scaled(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    image = PIL.Image.fromarray(np.ascontiguousarray(frame)).resize((width, height), PIL.Image.LANCZOS)
    return np.asarray(image)


# ---- masks -----------------------------------------------------------------------------------------------


def _masks(spec: Spec, n: int):
    """A function frame -> float mask (1 = restyled), from ``video.mask_video`` or ``init.mask``; None."""
    from flipbook.modes.frame import animation_mask

    if spec.video.mask_video is not None:
        frames = _mask_frames(spec, n)
        return lambda index: frames[index]
    still = animation_mask(spec)
    return None if still is None else (lambda index: still)


def _mask_frames(spec: Spec, n: int) -> list[np.ndarray]:
    """The mask video's frames as float masks (1 = restyled), inverted and feathered as ``init`` says."""
    masks = []
    for frame in frames_at_size(spec, spec.video.mask_video, "video.mask_video")[:n]:
        mask = np.asarray(PIL.Image.fromarray(frame).convert("L"), dtype=np.float32) / 255.0
        masks.append(feather(1.0 - mask if spec.init.mask_invert else mask, spec.init.mask_feather))
    return masks

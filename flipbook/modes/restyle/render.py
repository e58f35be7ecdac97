"""``restyle``: flicker-free video restyling (the EbSynth workflow): stylise keyframes, carry them along.

The keyframes are in the plan (``restyle.keyframe``, chosen in ``rules.py`` from the source). Each keyframe's
source frame goes through img2img with the plan's prompt, cfg, steps, sampler and strength but one seed for
all of them (frame 0's), with the spec's ControlNet units (controlling with the source frame unless a unit
has its own image), ``restyle.batch_size`` per UNet call; with ``restyle.grid`` > 1 keyframes are tiled
grid x grid into one image (with the prompt and strength of its first keyframe), diffused together and cut
back (the multi-frame trick: one image agrees with itself). Every other frame is made by :func:`flipbook.propagation.span.propagate_span` from the keyframes
before and after it (only the one before when the next is a scene cut or there is none), so frames at
keyframes are exactly the stylised keyframes.

Frames come out in order, each span after its keyframes are stylised. A frame depends only on the source
and its span's two keyframes, which are on disk or made again identically (same seed, same group), so a
resume continues from any frame. The source's audio becomes the soundtrack (``restyle.keep_audio``), and
unless ``animation.fps`` is given the output keeps the source's timing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import PIL.Image

from flipbook.modes.frame import Frame, ModeContext, by_checkpoint, frame_request
from flipbook.modes.restyle.rules import keyframes_of, read_source
from flipbook.propagation.span import propagate_span
from flipbook.sampling.requests import FrameRequest
from flipbook.spec.model import Spec


def resume_every(spec: Spec) -> int:
    """Any frame: a span's frames are remade from the source and its keyframes."""
    return 1


def check_inputs(spec: Spec) -> None:
    """The source must cover every animation frame (read when the plan is built too); a mask video too."""
    read_source(spec)
    _masks(spec)


def resolve_spec(spec: Spec) -> Spec:
    """Without an explicit ``animation.fps`` the output keeps the source's timing (its rate after
    every_nth), recorded in the run's spec."""
    if "fps" in spec.animation.model_fields_set:
        return spec
    fps = _source_timing(spec)[0] / spec.restyle.every_nth
    return spec.model_copy(update={"animation": spec.animation.model_copy(update={"fps": round(fps, 6)})})


def soundtrack(spec: Spec, run_dir: Path) -> tuple[Path, float] | None:
    """The source's own audio from the first chosen frame, when it has any and ``keep_audio`` is on (the run
    folder holds none of it)."""
    from flipbook.io.readers import has_audio

    if not spec.restyle.keep_audio or not has_audio(spec.init.video):
        return None
    return Path(spec.init.video), _source_timing(spec)[1]


def source_frames(spec: Spec) -> list[np.ndarray]:
    """The chosen source frames at the animation size (the consistency score's baseline, too)."""
    size = (spec.animation.width, spec.animation.height)
    return [
        np.asarray(PIL.Image.fromarray(frame).resize(size, PIL.Image.LANCZOS))
        for frame in read_source(spec)[0]
    ]


def render(ctx: ModeContext) -> Iterator[Frame]:
    spec, n = ctx.spec, ctx.spec.animation.max_frames
    source = source_frames(spec)
    masks = _masks(spec)
    keys, cuts = keyframes_of(ctx.plan)
    spans = list(zip(keys, [*keys[1:], None], strict=True))
    needed = set()
    for a, b in spans:
        if a > ctx.start:
            needed.add(a)
        if max(a, ctx.start) + 1 < (n if b is None else b):  # frames of this span to make
            needed |= {a} if b is None or b in cuts else {a, b}
    styled = _stylised(ctx, source, keys, needed, masks)
    device = _device(spec)
    for a, b in spans:
        if a > ctx.start:
            image, request, parameters = styled[a]
            yield Frame(a, PIL.Image.fromarray(image), request, parameters)
        end = n if b is None else b
        wanted = range(max(a + 1, ctx.start + 1), end)
        if not wanted:
            continue
        carried_to = None if b is None or b in cuts else b
        frames = source[a : (carried_to if carried_to is not None else end - 1) + 1]
        made = propagate_span(
            frames,
            styled[a][0],
            None if carried_to is None else styled[carried_to][0],
            blend=spec.restyle.blend,
            wanted=[j - a for j in wanted],
            device=device,
        )
        from_keys = f"{a} and {carried_to}" if carried_to is not None else f"{a}"
        for j in wanted:
            image = _masked(made[j - a], source[j], masks, j)
            yield Frame(j, PIL.Image.fromarray(image), None, {"Propagated from keyframes": from_keys})


def _stylised(
    ctx: ModeContext, source: list[np.ndarray], keys: list[int], needed: set[int], masks=None
) -> dict[int, tuple[np.ndarray, FrameRequest | None, dict[str, str] | None]]:
    """Each needed keyframe's stylised image (uint8, masked as its frame is) with its request: those before
    the resume point read from disk, the others diffused (alone or in their grid group, groups fixed by the
    keyframe list)."""
    styled: dict[int, tuple[np.ndarray, FrameRequest | None, dict[str, str] | None]] = {}
    for k in sorted(k for k in needed if k <= ctx.start):
        styled[k] = (np.asarray(ctx.run.load(k)), None, {"Stylised keyframe": "yes (read back on resume)"})
    to_make = sorted(k for k in needed if k > ctx.start)
    if not to_make:
        return styled
    tiles = ctx.spec.restyle.grid**2
    groups = [keys[i : i + tiles] for i in range(0, len(keys), tiles)]
    batch = min(ctx.spec.restyle.batch_size, len(groups))  # every call this long (fixed_batch), none longer
    groups = [group for group in groups if set(group) & set(to_make)]
    seed = ctx.plan[keys[0]].seed
    for start in range(0, len(groups), batch):
        chunk = groups[start : start + batch]
        planned = [dataclasses.replace(ctx.plan[group[0]], seed=seed) for group in chunk]
        for checkpoint, plans in by_checkpoint(planned):
            members = [chunk[planned.index(p)] for p in plans]
            requests = [
                _request(ctx, p, [source[k] for k in group]) for p, group in zip(plans, members, strict=True)
            ]
            images = ctx.cores[checkpoint].generate(requests, batch_size=batch, fixed_batch=True)
            for group, request, image in zip(members, requests, images, strict=True):
                tiles_of = _cut(np.asarray(image.convert("RGB")), len(group), ctx.spec)
                grid = {
                    "Keyframe grid": f"{'x'.join(map(str, _layout(len(group), ctx.spec)))} of keyframes "
                    + " ".join(map(str, group))
                }
                for k, tile in zip(group, tiles_of, strict=True):
                    image = _masked(tile, source[k], masks, k)
                    styled.setdefault(k, (image, request, grid if len(group) > 1 else None))
    return styled


def _request(ctx: ModeContext, planned, frames: Sequence[np.ndarray]) -> FrameRequest:
    """img2img of one keyframe, or of a grid of them (tiled as :func:`_tile` does, at the grid's size)."""
    grid = _tile(frames, ctx.spec)
    request = frame_request(ctx, planned, PIL.Image.fromarray(grid))
    if len(frames) == 1:
        return request
    return dataclasses.replace(request, width=grid.shape[1], height=grid.shape[0])


def _layout(count: int, spec: Spec) -> tuple[int, int]:
    """(columns, rows) of a grid of ``count`` keyframes: up to ``restyle.grid`` columns."""
    columns = min(count, spec.restyle.grid)
    return columns, math.ceil(count / columns)


def _tile(frames: Sequence[np.ndarray], spec: Spec) -> np.ndarray:
    """Frames side by side, row by row; empty places hold the last frame again."""
    columns, rows = _layout(len(frames), spec)
    places = [*frames, *[frames[-1]] * (columns * rows - len(frames))]
    return np.concatenate(
        [np.concatenate(places[r * columns : (r + 1) * columns], axis=1) for r in range(rows)], axis=0
    )


def _cut(grid: np.ndarray, count: int, spec: Spec) -> list[np.ndarray]:
    """The first ``count`` tiles of a grid image, row by row."""
    width, height = spec.animation.width, spec.animation.height
    columns, _ = _layout(count, spec)
    return [
        np.ascontiguousarray(grid[(i // columns) * height : (i // columns + 1) * height,
                                  (i % columns) * width : (i % columns + 1) * width])
        for i in range(count)
    ]  # fmt: skip


def _masks(spec: Spec):
    """A function frame -> float mask (1 = restyled), from ``restyle.mask_video`` (inverted and feathered as
    ``init`` says) or ``init.mask``; None without either."""
    from flipbook.imaging.masks import feather
    from flipbook.modes.frame import animation_mask, frames_at_size

    if spec.restyle.mask_video is None:
        still = animation_mask(spec)
        return None if still is None else (lambda index: still)
    masks = []
    for frame in frames_at_size(spec, spec.restyle.mask_video, "restyle.mask_video"):
        mask = np.asarray(PIL.Image.fromarray(frame).convert("L"), dtype=np.float32) / 255.0
        masks.append(feather(1.0 - mask if spec.init.mask_invert else mask, spec.init.mask_feather))
    return lambda index: masks[index]


def _masked(image: np.ndarray, source: np.ndarray, masks, index: int) -> np.ndarray:
    """The restyled image where the mask is white, the source frame elsewhere."""
    from flipbook.imaging.masks import composite

    return image if masks is None else composite(image, source, masks(index))


def _device(spec: Spec):
    from flipbook.models.device import pick_device

    return pick_device(spec.model.device)


def _source_timing(spec: Spec) -> tuple[float, float]:
    """(source fps, seconds of the first chosen frame), from timestamps alone (no decoding)."""
    from flipbook.io.readers import frame_times, source_rate

    times = frame_times(spec.init.video, field="init.video")
    start = min(spec.restyle.start_frame, len(times) - 1)
    return source_rate(times), times[start]

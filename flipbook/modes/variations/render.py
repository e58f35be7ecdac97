"""``variations``: inpaint loops. One still picture, only its masked part (sky, fire, water) moving.

Variation k inpaints ``init.image`` where ``init.mask`` is white, at the low ``variations.denoise``, with the
plan's seed, prompt, cfg, steps and sampler at frame k; ``animation.max_frames`` is the number of variations.
They don't depend on each other, so they render ``variations.batch_size`` at a time. Once all exist they are
ordered so neighbours differ least (``flipbook.imaging.ordering``: a closed tour for "loop", an open path for
"path", generation order for "seed") and frame i is the variation at position i of that order, with every
pixel outside the mask the init image's.

No frame can be written before every variation exists, so each variation is kept in ``RUN/variations/``
(``var_00000.png``, written atomically, stamped with a fingerprint of what made it). A resumed render reuses
the ones whose fingerprint matches and makes only the missing ones; a fresh render into the same folder with a
changed spec makes them again. Batches are aligned to multiples of the batch size from variation 0 and a batch
with any variation missing is made whole, so every variation comes from the same batch as in an uninterrupted
render (batching can move a pixel by one level). On the render farm the variations are made in runs by
several actors (``split``/``make_parts``: each run stored as above), and one last task orders them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import PIL.Image
from PIL.PngImagePlugin import PngInfo

from flipbook.imaging.ordering import distance_matrix, order_for, route_length
from flipbook.io.atomic import atomic_target
from flipbook.modes.base import Split
from flipbook.modes.frame import (
    Frame,
    ModeContext,
    aligned_batches,
    animation_mask,
    by_checkpoint,
    frame_request,
    init_image,
    keep_still,
)
from flipbook.runs.run_dir import RunDir
from flipbook.sampling.requests import FrameRequest
from flipbook.spec.model import Spec
from flipbook.spec.plan import FramePlan, Plan, denoise_for

FINGERPRINT_KEY = "flipbook-variation"
"""PNG text chunk holding the fingerprint of the request (and model settings) a stored variation came from."""


def resume_every(spec: Spec) -> int:
    """Any frame: a resume reloads the stored variations (the same seeds made them) and orders them again,
    which gives the same order because ordering is a pure function of those lossless files."""
    return 1


def split(spec: Spec, plan: Plan) -> Split:
    """The variations are independent, but no frame can be made before all exist: a job splits into runs of
    variations (at multiples of the batch size, so each is made in the same batch as in one render), each
    stored in the run folder (:func:`make_parts`), and one last task orders them and makes the frames."""
    return Split(spec.variations.batch_size, parts=True)


def make_parts(ctx: ModeContext, units: range) -> None:
    """Variations ``units`` made (or reused, when stored with the same fingerprint) and stored in
    ``RUN/variations/``."""
    mask = animation_mask(ctx.spec)
    still = init_image(ctx.spec)
    _variations(ctx, {k: _request(ctx, ctx.plan[k], still, mask) for k in units})


def check_inputs(spec: Spec) -> None:
    """Nothing of its own: init.image and init.mask are required with the plan
    (``flipbook.spec.plan.check_mode``) and opened with every mode's inputs."""


def render(ctx: ModeContext) -> Iterator[Frame]:
    count = len(ctx.plan)
    if ctx.start >= count - 1:
        return
    mask = animation_mask(ctx.spec)
    still = init_image(ctx.spec)
    requests = [_request(ctx, frame, still, mask) for frame in ctx.plan.frames]
    made = _variations(ctx, dict(enumerate(requests)))
    images = [made[k] for k in range(count)]
    order = _order(ctx, images, mask)
    for i in range(ctx.start + 1, count):
        yield Frame(i, keep_still(images[order[i]], still, mask), requests[order[i]])


def variation_path(run_path: Path, index: int) -> Path:
    return RunDir(Path(run_path)).variation_path(index)


# ---- requests ----------------------------------------------------------------------------------------


def _request(ctx: ModeContext, frame: FramePlan, still: PIL.Image.Image, mask: np.ndarray) -> FrameRequest:
    """Inpainting of the init image at ``variations.denoise`` (at least one sampling step, as A1111) with the
    frame's seed and prompt; the overlay puts the init pixels back outside the mask."""
    section = ctx.spec.variations
    strength = float(denoise_for(1.0 - section.denoise, frame.steps))
    return frame_request(
        ctx,
        frame,
        still,
        strength=strength,
        mask_image=PIL.Image.fromarray(np.rint(mask * 255).astype(np.uint8), mode="L"),
        masked_content=section.masked_content,
        mask_blur=section.mask_blur,
        inpaint_overlay=True,
    )


# ---- generating and storing --------------------------------------------------------------------------


def _variations(ctx: ModeContext, requests: Mapping[int, FrameRequest]) -> dict[int, PIL.Image.Image]:
    """The variations ``requests`` names (a run of them): from the run folder where a stored one matches, else
    made, batch by aligned batch."""
    plan, run = ctx.plan, ctx.run.path
    keys = {k: _fingerprint(ctx, plan[k], request) for k, request in requests.items()}
    images = {k: _load(variation_path(run, k), key) for k, key in keys.items()}
    ctx.run.log(f"variations: {sum(image is not None for image in images.values())} of {len(images)} reused")
    for batch in aligned_batches(range(min(requests), max(requests) + 1), ctx.spec.variations.batch_size):
        if all(images[k] is not None for k in batch):
            continue
        for checkpoint, group in by_checkpoint([plan[k] for k in batch]):
            indices = [frame.index for frame in group]
            made = ctx.cores[checkpoint].generate(
                [requests[k] for k in indices], batch_size=ctx.spec.variations.batch_size, fixed_batch=True
            )
            for k, image in zip(indices, made, strict=True):
                if images[k] is None:  # one already on disk stays: a later resume reads that file
                    _save(image, variation_path(run, k), keys[k])
                    images[k] = image
                    ctx.run.log(f"variation {k}")
    return images


def _fingerprint(ctx: ModeContext, frame: FramePlan, request: FrameRequest) -> str:
    """What decides a variation's pixels: the request's fields, the init and mask pixels, the checkpoint and
    the model settings. A stored variation is reused only when this matches."""
    digest = hashlib.sha256()
    pictures = ("image", "mask_image", "latents")
    fields = [
        (f.name, getattr(request, f.name)) for f in dataclasses.fields(request) if f.name not in pictures
    ]
    digest.update(repr(fields).encode())
    digest.update(frame.checkpoint.encode() + ctx.spec.model.model_dump_json().encode())
    for picture in (request.image, request.mask_image):
        digest.update(np.asarray(picture).tobytes())
    return digest.hexdigest()


def _save(image: PIL.Image.Image, path: Path, key: str) -> None:
    """Write atomically, so a variation file that exists is complete whenever the render died."""
    info = PngInfo()
    info.add_text(FINGERPRINT_KEY, key)
    with atomic_target(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)


def _load(path: Path, key: str) -> PIL.Image.Image | None:
    """The stored variation when it exists and was made from the same fingerprint, else None."""
    if not path.is_file():
        return None
    try:
        with PIL.Image.open(path) as image:
            if image.info.get(FINGERPRINT_KEY) != key:
                return None
            return image.convert("RGB")
    except (OSError, PIL.UnidentifiedImageError):
        return None


# ---- ordering ------------------------------------------------------------------------------------------


def _order(ctx: ModeContext, images: Sequence[PIL.Image.Image], mask: np.ndarray) -> list[int]:
    """The play order (see ``flipbook.imaging.ordering``), logged with its summed change so runs compare."""
    how = ctx.spec.variations.order
    distances = distance_matrix([np.asarray(image) for image in images], mask)
    order = order_for(distances, how)
    change = route_length(distances, order, closed=how == "loop")
    ctx.run.log(f"order ({how}): {' '.join(map(str, order))}; summed change {change:.2f}")
    return order

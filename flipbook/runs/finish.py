"""The end of a render: post-processing of the finished frames, then every output format.

Post-processing (``[post]``) works on copies: the run's ``frames/`` folder always keeps the frames as
rendered, so a resume or a re-encode starts from them. Frame interpolation runs first (on the rendered size,
where optical flow is cheapest), then upscaling. Every output carries the resolved spec and the A1111 parameters
of frame 0 where its format allows (see :mod:`flipbook.io.metadata`), so ``flipbook render FILE`` re-renders it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import PIL.Image

from flipbook.errors import FlipbookError, SpecError
from flipbook.io.gif import check_lossy
from flipbook.io.writers import VIDEO_FORMATS, Soundtrack, check_h265_size, write_outputs
from flipbook.spec.model import Spec

MODEL_FIELDS = {"film": "film_model", "rife": "rife_model"}
"""The ``[post]`` field naming the weights of each ``post.interpolate_method`` that needs them."""


def output_fps(spec: Spec) -> float:
    """The frame rate of the outputs: ``animation.fps``, times ``post.interpolate`` unless ``post.slowmo``."""
    post = spec.post
    return spec.animation.fps * (1 if post.slowmo else post.interpolate)


def check_post_inputs(spec: Spec) -> None:
    """Find what post-processing will read (the FILM or RIFE model file, the upscaler) before any model loads:
    a file, or a name in ``model.models_dir``."""
    post = spec.post
    field = MODEL_FIELDS.get(post.interpolate_method)
    if post.interpolate > 1 and field is not None:
        from flipbook.post.frame_interpolation import check_method

        try:
            check_method(post.interpolate_method, getattr(post, field), spec.model.models_dir)
        except FlipbookError as error:
            raise SpecError(f"post.{field}", error.value, error.allowed, detail=error.detail) from None
    if post.upscale != 1 and post.upscale_model is not None:
        from flipbook.post.upscale import resolve_upscaler_path

        try:
            resolve_upscaler_path(post.upscale_model, spec.model.models_dir)
        except FlipbookError as error:
            raise SpecError(
                "post.upscale_model", post.upscale_model, error.allowed, detail=error.detail
            ) from None


def _interpolation_model(spec: Spec) -> Path | None:
    """The ``[post]`` value naming the weights ``post.interpolate_method`` needs (None for flow and blend)."""
    field = MODEL_FIELDS.get(spec.post.interpolate_method)
    return None if field is None else getattr(spec.post, field)


def check_output_size(spec: Spec) -> None:
    """Refuse an output the encoders cannot make before any model loads, rather than after the last frame:
    mp4-h265 needs at least 64x16 (the final frame size, after ``post.upscale``, padded to even), and a lossy
    GIF needs gifsicle."""
    if "gif" in spec.output.formats:
        check_lossy(spec.output.gif_lossy)
    if "mp4-h265" not in spec.output.formats:
        return
    width, height = spec.animation.width, spec.animation.height
    if spec.post.upscale != 1:
        from flipbook.post.upscale import scaled_size

        width, height = scaled_size((width, height), spec.post.upscale)
    check_h265_size(width + width % 2, height + height % 2)


def post_process(spec: Spec, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``[post]`` on the rendered frames: frame interpolation x N, then upscaling; unchanged when both are off."""
    post = spec.post
    arrays = list(frames)
    if post.interpolate > 1:
        from flipbook.post.frame_interpolation import interpolate_frames

        arrays = interpolate_frames(
            arrays,
            factor=post.interpolate,
            loop=post.loop,
            method=post.interpolate_method,
            model_path=_interpolation_model(spec),
            device=spec.model.device,
            models_dir=spec.model.models_dir,
        )
    if post.upscale != 1:
        from flipbook.post.upscale import upscale_frames

        images = [PIL.Image.fromarray(a) for a in arrays]
        upscaled = upscale_frames(
            images,
            scale=post.upscale,
            model=post.upscale_model,
            models_dir=spec.model.models_dir,
            tile=post.upscale_tile,
            device=spec.model.device,
        )
        arrays = [np.asarray(image.convert("RGB")) for image in upscaled]
    return arrays


def write_animation(
    spec: Spec,
    frames: Sequence[np.ndarray],
    run_dir: Path,
    parameters: str,
    *,
    soundtrack: tuple[Path, float] | None = None,
    report: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Post-process and encode ``frames`` (uint8 RGB arrays) into ``run_dir``; returns ``{format: path}``. Without post-processing the
    ``png`` output is the run's own ``frames/`` folder (nothing is copied). ``soundtrack`` (a file and an
    offset) is the mode's own audio, used when ``audio.file`` is not set (a video's sound). ``report`` gets
    one line per size target (``output.*_max_mb``): what the encoder chose, or that nothing fits."""
    out = spec.output
    formats = list(out.formats)
    outputs: dict[str, Path] = {}
    processed = spec.post.interpolate > 1 or spec.post.upscale != 1
    if "png" in formats and not processed:
        outputs["png"] = run_dir / "frames"
        formats.remove("png")
    if not formats:
        return outputs
    arrays = post_process(spec, frames)
    outputs.update(
        write_outputs(
            arrays,
            run_dir,
            stem=out.name or "flipbook",
            fps=output_fps(spec),
            formats=formats,
            parameters=parameters,
            spec=spec.model_dump(mode="json"),
            options=out.encode_options(),
            audio=_soundtrack(spec, formats, soundtrack),
            report=report,
        )
    )
    return outputs


def _soundtrack(
    spec: Spec, formats: Sequence[str], from_mode: tuple[Path, float] | None
) -> Soundtrack | None:
    audio = spec.audio
    if not set(formats) & set(VIDEO_FORMATS):
        return None
    if audio.file is not None:
        return Soundtrack(audio.file, audio.offset) if audio.soundtrack else None
    return Soundtrack(*from_mode) if from_mode is not None else None

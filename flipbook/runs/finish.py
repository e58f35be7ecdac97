"""The end of a render: post-processing of the finished frames, then every output format.

Post-processing (``[post]``) works on copies: the run's ``frames/`` folder always keeps the frames as
rendered, so a resume or a re-encode starts from them. Frame interpolation runs first (on the rendered size,
where optical flow is cheapest), then upscaling. Every output carries the resolved spec and the A1111 parameters
of frame 0 where its format allows (see :mod:`flipbook.io.metadata`), so ``flipbook render FILE`` re-renders it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import PIL.Image

from flipbook.errors import FlipbookError, SpecError
from flipbook.io.frames import save_frames
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
    """``[post]`` on the rendered frames: frame interpolation x N, then upscaling; unchanged when both are off.
    As a list: :func:`post_processed` gives the frames one at a time."""
    return list(post_processed(spec, frames))


def post_processed(spec: Spec, frames: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    """``[post]`` one frame at a time: in-betweens as each pair of frames is read (frames on disk are read in
    order, once), each frame upscaled as it comes; a model (FILM, RIFE, an upscaler) is loaded once, before
    the first frame."""
    post = spec.post
    stream: Iterable[np.ndarray] = frames
    if post.interpolate > 1:
        from flipbook.post.frame_interpolation import interpolated_frames

        stream = interpolated_frames(
            frames,
            factor=post.interpolate,
            loop=post.loop,
            method=post.interpolate_method,
            model_path=_interpolation_model(spec),
            device=spec.model.device,
            models_dir=spec.model.models_dir,
        )
    if post.upscale != 1:
        stream = _upscaled(spec, stream)
    return iter(stream)


def _upscaled(spec: Spec, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Each frame upscaled by ``post.upscale`` (Lanczos, or ``post.upscale_model`` loaded here, once)."""
    from flipbook.post.upscale import load_upscaler, upscale_frames

    post = spec.post
    model = post.upscale_model
    if model is not None:
        model = load_upscaler(model, models_dir=spec.model.models_dir, device=spec.model.device)
    return (
        np.asarray(
            upscale_frames([PIL.Image.fromarray(a)], scale=post.upscale, model=model, tile=post.upscale_tile)[
                0
            ].convert("RGB")
        )
        for a in frames
    )


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
    offset) is the mode's own audio, used when ``audio.file`` is not set (a video's sound); audio the render
    made is an output too (:func:`made_audio`). ``report`` gets one line per size target
    (``output.*_max_mb``): what the encoder chose, or that nothing fits."""
    out = spec.output
    formats = list(out.formats)
    outputs: dict[str, Path] = made_audio(soundtrack, run_dir)
    processed = spec.post.interpolate > 1 or spec.post.upscale != 1
    if "png" in formats and not processed:
        outputs["png"] = run_dir / "frames"
        formats.remove("png")
    if not formats:
        return outputs
    if not processed:
        outputs.update(_encode(spec, frames, run_dir, formats, parameters, soundtrack, report))
        return outputs
    # Post-processed frames go to a scratch folder in the run folder as they are made: the encoders read
    # them from there (several passes, several formats) without the clip being held in memory.
    with tempfile.TemporaryDirectory(prefix=".post-", dir=run_dir) as scratch:
        processed_frames = save_frames(post_processed(spec, frames), Path(scratch))
        outputs.update(_encode(spec, processed_frames, run_dir, formats, parameters, soundtrack, report))
    return outputs


def made_audio(soundtrack: tuple[Path, float] | None, run_dir: Path) -> dict[str, Path]:
    """The audio the render made, as an output keyed by its format (``{"wav": NAME.wav}``): a mode's
    soundtrack written in the run folder, such as the audio LTX-2 makes with its frames joined over the
    segments. It is an output whatever the formats (the soundtrack of MP4/WebM, the audio beside frames-only
    outputs). A source's audio (a file outside the run folder, read from there) is not one."""
    if soundtrack is None:
        return {}
    path = Path(soundtrack[0])
    if not path.is_file() or not path.resolve().is_relative_to(Path(run_dir).resolve()):
        return {}
    return {path.suffix.lower().removeprefix("."): path}


def _encode(
    spec: Spec,
    frames: Sequence[np.ndarray],
    run_dir: Path,
    formats: list[str],
    parameters: str,
    soundtrack: tuple[Path, float] | None,
    report: Callable[[str], None] | None,
) -> dict[str, Path]:
    out = spec.output
    return write_outputs(
        frames,
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


def _soundtrack(
    spec: Spec, formats: Sequence[str], from_mode: tuple[Path, float] | None
) -> Soundtrack | None:
    audio = spec.audio
    if not set(formats) & set(VIDEO_FORMATS):
        return None
    if audio.file is not None:
        return Soundtrack(audio.file, audio.offset) if audio.soundtrack else None
    return Soundtrack(*from_mode) if from_mode is not None else None

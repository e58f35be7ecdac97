"""Benchmark ``propagation``: the ``restyle`` mode's keyframe propagation against the ideal and against
restyling every frame.

The source is synthetic (:func:`flipbook.bench.frame_interpolation.scene_frames`: a textured square moving
right over a textured background panning left), and the "style" is a fixed per-pixel colour transform
(:func:`style`), so the ideal restyled video is known: the style applied to every source frame. Three
measurements:

1. **Fidelity** at 512x512: keyframes every 4, 8 and 16 frames are styled ideally, the frames between them
   propagated (:func:`flipbook.propagation.span.propagate_span`, as the mode does); PSNR of the propagated
   frames against the ideal ones (mean and worst frame), and the temporal error
   (:func:`flipbook.motion.consistency.temporal_error`) of the result next to the ideal video's.
2. **Speed** at 512x512 on the device picked (``--device``; the CPU here): propagated frames per second over
   the whole clip with keyframes every 8, optical flow included (the flow's share reported apart), the median
   of ``runs`` runs after a warm-up.
3. **Flicker against per-frame restyling**: the same source at 256x256 through the real renders of the
   ``video`` mode (every frame through img2img, one fixed seed) and of ``restyle`` (keyframes every 8, the
   rest propagated), with a stand-in for the image model (:func:`stand_in`: the known style plus fine detail
   that changes with every input image, as a diffusion model's hallucinated detail does; the built-in tiny
   model has random weights and all but ignores its input image, so it shows no flicker to remove). PSNR of
   each output against the ideal, the temporal error of each and their ratio (the issue's target: restyle's
   at most half of video's).
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import PIL.Image

from flipbook.bench.frame_interpolation import scene_frames
from flipbook.bench.report import write_report
from flipbook.errors import FlipbookError
from flipbook.io.writers import write_mp4
from flipbook.motion.consistency import temporal_error
from flipbook.propagation.keyframes import every_nth
from flipbook.propagation.span import propagate_span, source_flows

SIZE = 512
FLICKER_SIZE = 256
DETAIL = 12.0  # levels (0-255): the stand-in's per-image detail
DETAIL_SIGMA = 1.0
SPACINGS = (4, 8, 16)
TIMED_SPACING = 8
COLOR_MATRIX = np.array([[0.39, 0.77, 0.19], [0.35, 0.69, 0.17], [0.27, 0.53, 0.13]], np.float32)  # sepia
PROMPT = "an oil painting of a garden, thick brush strokes"
SEED = 1234


def style(frame: np.ndarray) -> np.ndarray:
    """The known per-pixel style: a sepia colour matrix with the contrast raised."""
    toned = frame.astype(np.float32) @ COLOR_MATRIX.T
    return np.clip(1.3 * (toned - 128) + 128, 0, 255).astype(np.uint8)


def run(*, out: Path, frames: int = 33, runs: int = 3, device: str = "auto", **ignored) -> str:
    """Measure fidelity, speed and flicker (see the module); write ``propagation-<device>.json`` and ``.md``
    under ``out`` and return the markdown."""
    if frames < 2 * TIMED_SPACING + 1:
        raise FlipbookError("frames", frames, f"at least {2 * TIMED_SPACING + 1} (two spans of keyframes)")
    import torch

    from flipbook.bench.timing import machine
    from flipbook.models.device import pick_device

    torch_device = pick_device(device)
    source = scene_frames(frames, SIZE, SIZE)
    result = {
        "case": "propagation",
        "frames": frames,
        "size": f"{SIZE}x{SIZE}",
        "device": torch_device.type,
        "machine": machine(torch_device),
        "torch_threads": torch.get_num_threads(),
        "fidelity": [fidelity(source, spacing, torch_device) for spacing in SPACINGS],
        "speed": speed(source, runs, torch_device),
        "flicker": flicker(frames, device),
    }
    return write_report(result, Path(out), f"propagation-{torch_device.type}", _markdown(result))


def propagate(
    source: list[np.ndarray], keys: list[int], styled: dict[int, np.ndarray], device
) -> list[np.ndarray]:
    """The whole clip from its styled keyframes, span by span as the ``restyle`` mode makes it."""
    frames = {k: styled[k] for k in keys}
    for a, b in zip(keys, [*keys[1:], None], strict=True):
        end = len(source) if b is None else b + 1
        made = propagate_span(source[a:end], styled[a], None if b is None else styled[b], device=device)
        frames.update({a + j: image for j, image in made.items()})
    return [frames[i] for i in range(len(source))]


def fidelity(source: list[np.ndarray], spacing: int, device) -> dict:
    ideal = [style(frame) for frame in source]
    keys = every_nth(len(source), spacing)
    result = propagate(source, keys, {k: ideal[k] for k in keys}, device)
    scores = [_psnr(result[i], ideal[i]) for i in range(len(source)) if i not in keys]
    return {
        "keyframe_every": spacing,
        "keyframes": len(keys),
        "psnr_mean_db": float(np.mean(scores)),
        "psnr_worst_db": float(np.min(scores)),
        "temporal_error": temporal_error(result),
        "ideal_temporal_error": temporal_error(ideal),
    }


def speed(source: list[np.ndarray], runs: int, device) -> dict:
    keys = every_nth(len(source), TIMED_SPACING)
    styled = {k: style(source[k]) for k in keys}
    propagate(source[: TIMED_SPACING + 1], keys[:2], styled, device)  # warm-up
    totals, flows = [], []
    for _ in range(runs):
        started = time.perf_counter()
        source_flows(source)
        flows.append(time.perf_counter() - started)
        started = time.perf_counter()
        propagate(source, keys, styled, device)
        totals.append(time.perf_counter() - started)
    made = len(source) - len(keys)
    seconds = statistics.median(totals)
    return {
        "keyframe_every": TIMED_SPACING,
        "propagated_frames": made,
        "frames_per_s": made / seconds,
        "ms_per_frame": 1000 * seconds / made,
        "flow_share": statistics.median(flows) / seconds,
        "times_s": totals,
    }


def stand_in(image: np.ndarray, seed: int) -> np.ndarray:
    """The image model's stand-in: :func:`style` plus fine detail (blurred noise, DETAIL levels) drawn from the
    seed and the input image's content, so every different input gets different detail."""
    digest = int.from_bytes(hashlib.blake2b(image.tobytes(), digest_size=8).digest(), "little")
    rng = np.random.default_rng([seed, digest])
    detail = cv2.GaussianBlur(rng.standard_normal(image.shape).astype(np.float32), (0, 0), DETAIL_SIGMA)
    detail *= DETAIL / detail.std()
    return np.clip(style(image) + detail, 0, 255).astype(np.uint8)


def _stand_in_generate(core, requests, *, batch_size: int = 1, output_type: str = "pil") -> list:
    return [PIL.Image.fromarray(stand_in(np.asarray(r.image.convert("RGB")), r.seed)) for r in requests]


def flicker(frames: int, device: str) -> dict:
    """Temporal error and PSNR against the ideal of the real ``video`` and ``restyle`` renders of one synthetic
    source, the image model replaced by :func:`stand_in`."""
    from flipbook.modes.restyle import RESTYLE
    from flipbook.modes.video import VIDEO
    from flipbook.runs.render import render
    from flipbook.sampling.core import SamplingCore
    from flipbook.spec.model import Spec

    clip = scene_frames(frames, FLICKER_SIZE, FLICKER_SIZE)
    ideal = [style(frame) for frame in clip]
    results = {}
    with (
        tempfile.TemporaryDirectory(prefix="flipbook-bench-propagation-") as folder,
        mock.patch.object(SamplingCore, "generate", _stand_in_generate),
    ):
        video = write_mp4(clip, Path(folder) / "source.mp4", fps=12, crf=0)
        for mode, section in (
            (VIDEO.name, {}),
            (RESTYLE.name, {"restyle": {"keyframe_every": TIMED_SPACING}}),
        ):
            spec = Spec(
                model={"name": "tiny", "device": device},
                sampling={"steps": 1, "seed": SEED, "seed_behavior": "fixed"},
                animation={
                    "mode": mode, "max_frames": frames, "width": FLICKER_SIZE, "height": FLICKER_SIZE,
                },
                prompts={"0": PROMPT},
                init={"video": video},
                output={"dir": folder, "name": mode, "formats": ["png"]},
                **section,
            )  # fmt: skip
            rendered = render(spec)
            made = [np.asarray(PIL.Image.open(path).convert("RGB")) for path in rendered.frames]
            results[mode] = {
                "temporal_error": rendered.metrics["output"],
                "psnr_mean_db": float(np.mean([_psnr(a, b) for a, b in zip(made, ideal, strict=True)])),
                "source_temporal_error": rendered.metrics["source"],
            }
    per_frame, restyled = results[VIDEO.name], results[RESTYLE.name]
    return {
        "size": f"{FLICKER_SIZE}x{FLICKER_SIZE}",
        "keyframe_every": TIMED_SPACING,
        "detail_levels": DETAIL,
        "source_temporal_error": per_frame["source_temporal_error"],
        "ideal_temporal_error": temporal_error(ideal),
        "per_frame": per_frame,
        "propagated": restyled,
        "ratio": restyled["temporal_error"] / per_frame["temporal_error"],
    }


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-10))


def _markdown(r: dict) -> str:
    rows = [
        f"Propagation on {r['machine']} ({r['device']}, {r['torch_threads']} torch threads), {r['frames']} "
        f"frames of a synthetic {r['size']} clip.",
        "",
        "| keyframe every | keyframes | PSNR vs ideal (mean) | worst frame | temporal error | ideal's |",
        "|---|---|---|---|---|---|",
        *(
            f"| {f['keyframe_every']} | {f['keyframes']} | {f['psnr_mean_db']:.2f} dB | {f['psnr_worst_db']:.2f} dB "
            f"| {f['temporal_error']:.2f} | {f['ideal_temporal_error']:.2f} |"
            for f in r["fidelity"]
        ),
        "",
    ]
    s, c = r["speed"], r["flicker"]
    rows += [
        "| size | keyframe every | propagated frames/s | ms per frame | optical flow share |",
        "|---|---|---|---|---|",
        f"| {r['size']} | {s['keyframe_every']} | {s['frames_per_s']:.2f} | {s['ms_per_frame']:.1f} "
        f"| {100 * s['flow_share']:.0f}% |",
        "",
        f"Flicker at {c['size']}, image model replaced by the stand-in (style + {c['detail_levels']:g} levels of "
        "per-image detail); temporal error of the source "
        f"{c['source_temporal_error']:.2f}, of the ideal {c['ideal_temporal_error']:.2f}:",
        "",
        "| render | temporal error | PSNR vs ideal |",
        "|---|---|---|",
        f"| video mode (every frame through the model) | {c['per_frame']['temporal_error']:.2f} "
        f"| {c['per_frame']['psnr_mean_db']:.2f} dB |",
        f"| restyle (keyframe every {c['keyframe_every']}) | {c['propagated']['temporal_error']:.2f} "
        f"| {c['propagated']['psnr_mean_db']:.2f} dB |",
        f"| restyle / video | {c['ratio']:.2f} | |",
    ]
    return "\n".join(rows)

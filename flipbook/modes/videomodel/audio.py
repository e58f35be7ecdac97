"""The audio a video diffusion model makes with its frames (LTX-2), kept per segment and joined into the video's
soundtrack. numpy and soundfile only.

Each segment's audio is written to the run folder as soon as the segment is made (``audio/audio_NNNNN.wav``,
NNNNN its first frame, float32 WAV at the model's rate), so a resumed render finds the audio of the segments it
does not make again, exactly as it finds their frames. When every frame is made the clips are joined on the
video's timeline (:func:`join_segments`): segment ``k`` covers frames ``begin_k ..`` from time
``begin_k / fps``; where it overlaps the segment before (``videomodel.overlap`` frames, whose audio both made,
each afresh: the conditions are images only) the two are crossfaded linearly, so the border does not click;
after it the later segment's audio alone. The whole is cut at the last frame's end (a loop's last segment runs
past it) and written as ``NAME.wav`` in the run folder: the soundtrack muxed into MP4/WebM outputs, and the
audio next to the frames for frames-only outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile

from flipbook.io.atomic import atomic_target


def write_clip(path: Path, samples: np.ndarray, rate: int) -> Path:
    """``samples`` (channels x n, float) as a float32 WAV at ``rate``, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as tmp:
        soundfile.write(tmp, np.asarray(samples, np.float32).T, rate, subtype="FLOAT", format="WAV")
    return path


def read_clip(path: Path) -> tuple[np.ndarray, int]:
    """A WAV as (channels x n float32, rate)."""
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return np.ascontiguousarray(samples.T), int(rate)


def join_segments(clips: Sequence[tuple[int, np.ndarray]], rate: int, fps: float, frames: int) -> np.ndarray:
    """Segments' audio ``(first frame, channels x n)``, in order, on one timeline of ``frames`` frames at
    ``fps``: each placed at its first frame's time, crossfaded with the one before where both have audio
    (their overlap), then alone; cut at the end of the last frame (a missing end stays silent)."""
    channels = max(clip.shape[0] for _, clip in clips)
    total = round(frames * rate / fps)
    joined = np.zeros((channels, total), np.float32)
    written = 0  # samples the segments so far cover
    for first, clip in clips:
        start = round(first * rate / fps)
        clip = np.broadcast_to(clip, (channels, clip.shape[1]))[:, : max(0, total - start)]
        end = start + clip.shape[1]
        fade = max(0, min(written, end) - start)
        if fade:
            rising = (np.arange(1, fade + 1, dtype=np.float32) / (fade + 1))[None]
            joined[:, start : start + fade] *= 1 - rising
            joined[:, start : start + fade] += rising * clip[:, :fade]
        joined[:, start + fade : end] = clip[:, fade:]
        written = max(written, end)
    return joined

"""Song → per-video-frame numbers: onset keyframes, feature curves, interpolation easing, expression variables.

Everything here is a pure function of ``(samples, sample rate)`` plus the video frame rate; librosa does the
signal processing (HPSS, onset detection, beat tracking, RMS, STFT, mel spectrogram). What this module adds is
the alignment to video frames, done one way everywhere:

- Video frame ``k`` is shown at ``k / fps`` and stands for the audio nearest that instant, the span
  ``[(k - 1/2) / fps, (k + 1/2) / fps)``. An event at ``s`` seconds belongs to frame ``floor(s * fps + 1/2)``
  (:func:`video_frame`), so onset keyframes, beat marks and curves agree on which frame a hit lands on.
- Curves average the librosa analysis frames whose centres fall in a video frame's span, so the result does not
  depend on librosa's hop length; a video frame no analysis frame falls in (frame rates above ``sr / hop``,
  about 43 fps at 22050 Hz) is linearly interpolated instead, and frames past the end of the audio are 0.

Inputs a user chose (file, fps, feature, component) raise :class:`~flipbook.errors.FlipbookError` naming the
field; a malformed sample array is a programming error and raises :class:`ValueError`.
"""

from __future__ import annotations

import math
import re
import warnings
from os import PathLike

import librosa
import numpy as np

from flipbook.errors import FlipbookError

HOP_LENGTH = 512
"""Samples between librosa analysis frames (23 ms at 22050 Hz): finer than any video frame rate below 43 fps."""
N_FFT = 2048
"""STFT window (93 ms at 22050 Hz), librosa's default; bins are ``sr / N_FFT`` (10.8 Hz) apart."""
COMPONENTS: tuple[str, ...] = ("percussive", "harmonic", "both")
FEATURES: tuple[str, ...] = ("onsets", "rms", "beats", "band")

MAX_AUDIO_SECONDS = 3600
"""The most audio one analysis decodes (an hour: about 1 GB of samples and spectra at 22050 Hz). The span is
set by the animation (``max_frames / fps`` from ``audio.offset``), and a few kilobytes of compressed silence
can hold days of audio, so without a bound a small upload could ask for any amount of memory."""
_AUDIO_FORMATS = "a readable audio file (wav, flac, ogg, mp3)"
_FEATURE_FORMS = "onsets, rms, beats or band:LOW-HIGH in Hz with 0 <= LOW < HIGH (e.g. band:20-200)"
_BAND = re.compile(r"band:\s*(\S+?)\s*-\s*(\S+)")


# ------------------------------------------------------------------------------------------------ loading
def load_audio(
    path: str | PathLike[str], *, offset: float = 0.0, duration: float | None = None, sr: int = 22050
) -> tuple[np.ndarray, int]:
    """Mono float32 samples resampled to ``sr``, starting ``offset`` seconds in, at most ``duration`` long.

    Any failure to decode (missing file, unknown format, no backend for mp3) becomes one FlipbookError, because
    the user only needs to know this file can't be used and why; an offset past the end is the same error. So
    is a span of more than :data:`MAX_AUDIO_SECONDS` of actual audio: no more than that is ever decoded.
    """
    if not (math.isfinite(offset) and offset >= 0):
        raise FlipbookError("audio.offset", offset, "seconds from the start of the file, >= 0")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise FlipbookError("audio.duration", duration, "seconds of audio to use, > 0")
    if not (isinstance(sr, int) and sr > 0):
        raise FlipbookError("audio.sr", sr, "a sample rate in Hz, a whole number > 0")
    try:
        with warnings.catch_warnings():
            # librosa warns before falling back from soundfile to audioread; the outcome is what matters.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            # one second past the bound tells a longer span from one that just reaches it
            limit = MAX_AUDIO_SECONDS + 1.0 if duration is None else min(duration, MAX_AUDIO_SECONDS + 1.0)
            y, rate = librosa.load(path, sr=sr, mono=True, offset=offset, duration=limit, dtype=np.float32)
    except Exception as error:  # soundfile, audioread and the OS raise many unrelated types
        raise FlipbookError(
            "audio.file", str(path), _AUDIO_FORMATS, detail=f"{type(error).__name__}: {error}"
        ) from error
    if y.size > MAX_AUDIO_SECONDS * rate:
        wanted = "the whole file" if duration is None else f"{duration:g} s (animation.max_frames / fps)"
        raise FlipbookError(
            "audio.file", str(path), f"at most {MAX_AUDIO_SECONDS} s of audio from audio.offset",
            detail=f"{wanted} would be analysed; use fewer frames, a higher fps or a shorter file",
        )  # fmt: skip
    if y.size == 0:
        raise FlipbookError("audio.file", str(path), _AUDIO_FORMATS, detail=f"no audio after {offset:g} s")
    return y, int(rate)


# ---------------------------------------------------------------------------------------- frame alignment
def frame_count(y: np.ndarray, sr: int, fps: float) -> int:
    """Video frames needed to cover the audio: ``ceil(duration * fps)``, so the last sound gets a frame.

    The product is rounded to 6 decimals first so that 3 s at 12 fps is 36 frames, not 37 from float noise.
    """
    _check_rates(sr, fps)
    return math.ceil(round(len(y) * fps / sr, 6))


def video_frame(seconds: float | np.ndarray, fps: float) -> np.ndarray:
    """The video frame an instant belongs to: the nearest frame time ``k / fps``, halves going up."""
    return np.floor(np.asarray(seconds, dtype=np.float64) * fps + 0.5).astype(np.int64)


def _check_rates(sr: int, fps: float) -> None:
    """Both rates must be positive: they divide everything downstream."""
    if not (isinstance(sr, int | np.integer) and sr > 0):
        raise ValueError(f"sample rate must be a whole number > 0, not {sr!r}")
    if isinstance(fps, bool) or not (
        isinstance(fps, int | float | np.integer | np.floating) and math.isfinite(fps) and fps > 0
    ):
        raise FlipbookError("fps", fps, "video frames per second, a number > 0")


def _signal(y: np.ndarray) -> np.ndarray:
    """Samples as the 1-D float32 array librosa expects."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected mono samples (a 1-D array), got shape {y.shape}")
    return y


def _frames_wanted(y: np.ndarray, sr: int, fps: float, n_frames: int | None) -> int:
    """``n_frames`` checked, or the number of frames the audio covers when not given."""
    if n_frames is None:
        return frame_count(y, sr, fps)
    _check_rates(sr, fps)
    if isinstance(n_frames, bool) or not isinstance(n_frames, int | np.integer) or n_frames < 0:
        raise FlipbookError("frames", n_frames, "a whole number of video frames, >= 0")
    return int(n_frames)


def _to_video_frames(values: np.ndarray, sr: int, fps: float, n_frames: int, duration: float) -> np.ndarray:
    """Average the analysis frames in each video frame's span (see the module docstring), interpolating video
    frames that no analysis frame falls in and leaving frames past the end of the audio at 0."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64))
    times = librosa.frames_to_time(np.arange(values.size), sr=sr, hop_length=HOP_LENGTH)
    bins = video_frame(times, fps)
    inside = bins < n_frames
    sums = np.bincount(bins[inside], weights=values[inside], minlength=n_frames)[:n_frames]
    counts = np.bincount(bins[inside], minlength=n_frames)[:n_frames]
    frame_times = np.arange(n_frames) / fps
    curve = np.interp(frame_times, times, values) if values.size else np.zeros(n_frames)
    curve[frame_times > duration] = 0.0
    filled = counts > 0
    curve[filled] = sums[filled] / counts[filled]
    return curve


def _marks(seconds: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """1.0 on the video frames holding an event (the max of an indicator over each frame's span), else 0.0;
    done on the event times directly so no event is lost between analysis frames at high frame rates."""
    frames = video_frame(seconds, fps)
    curve = np.zeros(n_frames)
    curve[frames[(frames >= 0) & (frames < n_frames)]] = 1.0
    return curve


def _normalise(curve: np.ndarray) -> np.ndarray:
    """Divide by the peak so curves are 0..1 whatever the loudness; a silent curve stays all zeros."""
    peak = float(curve.max()) if curve.size else 0.0
    if not peak > 0:
        return np.zeros_like(curve)
    return np.clip(curve / peak, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------- separation
def component(y: np.ndarray, name: str) -> np.ndarray:
    """The part of the song to analyse: ``percussive`` (drums, for hits), ``harmonic`` (tones, for chord and
    melody changes) via librosa's HPSS, or ``both`` (the signal unchanged)."""
    return _separate(_signal(y), name)


def _separate(y: np.ndarray, name: str, *, margin: float = 1.0) -> np.ndarray:
    """:func:`component` with the HPSS margin (larger: stricter separation, more left in neither part)."""
    if name not in COMPONENTS:
        raise FlipbookError("component", name, "percussive, harmonic or both")
    if name == "both" or not y.any():
        return y
    harmonic, percussive = librosa.effects.hpss(y, margin=margin)
    return percussive if name == "percussive" else harmonic


# ----------------------------------------------------------------------------------------------- keyframes
def onset_keyframes(
    y: np.ndarray, sr: int, fps: float, *, component: str = "percussive"
) -> list[tuple[int, float]]:
    """``(video frame, seconds)`` of each onset in the chosen component, sorted; onsets landing on the same
    frame are merged, keeping the earliest time. Backtracking stays off so the time is the hit itself (the
    energy peak), not the quiet moment before it, which is what a cut or prompt change should land on."""
    _check_rates(sr, fps)
    signal = _separate(_signal(y), component)
    if not signal.any():
        return []
    frames = librosa.onset.onset_detect(y=signal, sr=sr, hop_length=HOP_LENGTH, backtrack=False)
    times = np.sort(librosa.frames_to_time(frames, sr=sr, hop_length=HOP_LENGTH))
    keyframes: dict[int, float] = {}
    for frame, seconds in zip(video_frame(times, fps).tolist(), times.tolist(), strict=True):
        keyframes.setdefault(frame, float(seconds))
    return sorted(keyframes.items())


# ------------------------------------------------------------------------------------------------- curves
def parse_feature(text: str) -> tuple[str, tuple[float, float] | None]:
    """``onsets``/``rms``/``beats`` → ``(name, None)``; ``band:LOW-HIGH`` → ``("band", (LOW, HIGH))`` in Hz.

    The Nyquist limit needs the sample rate, so :func:`feature_curve` checks HIGH against it.
    """
    if not isinstance(text, str):
        raise FlipbookError("feature", text, _FEATURE_FORMS)
    cleaned = text.strip().lower()
    if cleaned in FEATURES and cleaned != "band":
        return cleaned, None
    match = _BAND.fullmatch(cleaned)
    if match is None:
        raise FlipbookError("feature", text, _FEATURE_FORMS)
    try:
        low, high = float(match.group(1)), float(match.group(2))
    except ValueError:
        raise FlipbookError("feature", text, _FEATURE_FORMS, detail="LOW and HIGH must be numbers") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0:
        raise FlipbookError("feature", text, _FEATURE_FORMS, detail="LOW and HIGH must be >= 0")
    if low >= high:
        raise FlipbookError("feature", text, _FEATURE_FORMS, detail="LOW must be below HIGH")
    return "band", (low, high)


def feature_curve(
    y: np.ndarray, sr: int, fps: float, feature: str, n_frames: int | None = None
) -> np.ndarray:
    """One value per video frame, 0..1 (divided by the peak), of a feature that can drive a schedule:

    - ``onsets``: onset strength (spectral flux), high where something new starts;
    - ``rms``: loudness;
    - ``beats``: 1.0 on frames holding a tracked beat, else 0.0;
    - ``band:LOW-HIGH``: STFT power between LOW and HIGH Hz (``band:20-200`` for kick and bass). A band
      narrower than one STFT bin uses the bin nearest its centre.

    ``n_frames`` defaults to :func:`frame_count`; frames past the end of the audio are 0.
    """
    name, band = parse_feature(feature)
    y = _signal(y)
    n = _frames_wanted(y, sr, fps, n_frames)
    if band is not None and band[1] > sr / 2:
        raise FlipbookError(
            "feature", feature, _FEATURE_FORMS, detail=f"HIGH is above the Nyquist frequency {sr / 2:g} Hz"
        )
    if not y.any():
        return np.zeros(n)
    if name == "beats":
        return _marks(_beats(y, sr)[1], fps, n)
    values = _analysis_values(y, sr, name, band)
    return _normalise(_to_video_frames(values, sr, fps, n, len(y) / sr))


def _analysis_values(y: np.ndarray, sr: int, name: str, band: tuple[float, float] | None) -> np.ndarray:
    """The feature per librosa analysis frame (``HOP_LENGTH`` apart, centred), before alignment."""
    if name == "onsets":
        return librosa.onset.onset_strength(y=y, sr=sr, hop_length=HOP_LENGTH)
    if name == "rms":
        return librosa.feature.rms(y=y, frame_length=N_FFT, hop_length=HOP_LENGTH)[0]
    if band is None:
        raise ValueError(f"unknown feature {name!r}")
    power = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP_LENGTH)) ** 2
    freqs = librosa.fft_frequencies(sr=sr, n_fft=N_FFT)
    rows = (freqs >= band[0]) & (freqs <= band[1])
    if not rows.any():
        rows[np.argmin(np.abs(freqs - (band[0] + band[1]) / 2))] = True
    return power[rows].sum(axis=0)


def _beats(y: np.ndarray, sr: int) -> tuple[float, np.ndarray]:
    """librosa's global tempo (BPM) and the tracked beat times in seconds; silence has neither."""
    if not y.any():
        return 0.0, np.zeros(0)
    tempo, frames = librosa.beat.beat_track(y=y, sr=sr, hop_length=HOP_LENGTH)
    bpm = float(np.atleast_1d(tempo)[0])
    return bpm, librosa.frames_to_time(frames, sr=sr, hop_length=HOP_LENGTH)


# ------------------------------------------------------------------------------------- easing and variables
def percussive_energy(
    y: np.ndarray, sr: int, fps: float, n_frames: int | None = None, *, margin: float = 1.0
) -> np.ndarray:
    """Per-video-frame energy (>= 0) of the percussive part, the speed signal stable-diffusion-videos uses for
    audio-driven interpolation: the loudest mel band of the HPSS percussive spectrogram, measured from the
    quietest frame up (as it min-normalises), so a steady background doesn't move the morph, only hits do."""
    if not (math.isfinite(margin) and margin >= 1):
        raise FlipbookError("margin", margin, "the HPSS separation margin, a number >= 1")
    y = _signal(y)
    n = _frames_wanted(y, sr, fps, n_frames)
    if not y.any():
        return np.zeros(n)
    spectrum = librosa.stft(y, n_fft=N_FFT, hop_length=HOP_LENGTH)
    _, percussive = librosa.decompose.hpss(spectrum, margin=margin)
    mel = librosa.feature.melspectrogram(S=np.abs(percussive) ** 2, sr=sr, n_fft=N_FFT, hop_length=HOP_LENGTH)
    energy = _to_video_frames(mel.max(axis=0), sr, fps, n, len(y) / sr)
    audible = energy[: frame_count(y, sr, fps)]
    floor = float(audible.min()) if audible.size else 0.0
    return np.clip(energy - floor, 0.0, None)


def expression_variables(y: np.ndarray, sr: int, fps: float, n_frames: int) -> dict[str, np.ndarray]:
    """Per-frame arrays for schedule expressions: ``beat`` (1.0 on beat frames), ``bpm`` (the global tempo,
    the same at every frame, held past the end of the audio) and ``amp`` (RMS 0..1, 0 past the end)."""
    y = _signal(y)
    n = _frames_wanted(y, sr, fps, n_frames)
    bpm, beat_times = _beats(y, sr)
    return {
        "beat": _marks(beat_times, fps, n),
        "bpm": np.full(n, bpm),
        "amp": feature_curve(y, sr, fps, "rms", n),
    }

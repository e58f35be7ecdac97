"""Frame interpolation: make N times as many frames by inserting in-betweens, with or without model weights.

Four methods behind one interface, :func:`interpolate_frames`:

- ``"flow"`` (default, no weights): a FILM/RIFE-style synthesis from classical optical flow. For neighbours
  A (time 0) and B (time 1), OpenCV's DIS flow is computed both ways, A->B and B->A, once per pair. For an
  in-between at time ``s``, the flows from time ``s`` back to each neighbour are estimated (Super SloMo's
  linear combination of the two flows, refined by a fixed-point step), both neighbours are warped to time
  ``s`` with ``cv2.remap``, and the two warps are blended with occlusion-aware weights from forward-backward
  consistency (see :func:`occlusion` and :func:`blend_weights`). Flow in occluded bands is repaired and the
  more visible of two flow candidates is chosen per pixel, which is what makes the occlusion weights pay
  off at moving edges (:func:`fill_occluded_flow`, :func:`prefer_visible`).
- ``"blend"``: the plain cross-fade ``(1 - s) * A + s * B``, for comparison.
- ``"film"``: Google's FILM network from a TorchScript file the user provides (see :func:`load_film`).
- ``"rife"``: RIFE 4.6's IFNet from a state dict the user provides (``flownet.pkl``; see
  :mod:`flipbook.post.rife`), one network call per pair and in-between time.

Every method keeps the input frames as they are (the same arrays, not re-synthesised); only in-betweens are
made. A flow is float32 H x W x 2 holding (dx, dy), as in :mod:`flipbook.motion.flow`; warps sample backwards
(output pixel q takes the image at ``q + flow[q]``).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from flipbook.errors import FlipbookError

METHODS = ("flow", "blend", "film", "rife")
METHOD_FIELD = "interpolate.method"
MODEL_FIELD = "interpolate.model"
ALLOWED_MODEL = "a FILM TorchScript file (film_net_fp32.pt from the FILM repo or ComfyUI-Frame-Interpolation)"
ALLOWED_RIFE_MODEL = (
    "a RIFE 4.6 (or 4.5) state dict: flownet.pkl from Practical-RIFE, rife46.pth or a .safetensors copy"
)
MODEL_KINDS: dict[str, tuple[str, str]] = {
    "film": ("film", f"{ALLOWED_MODEL}, or its name in the models folder"),
    "rife": ("rife", f"{ALLOWED_RIFE_MODEL}, or its name in the models folder"),
}
"""The methods that need weights: their models-folder kind and what the model may be."""

# DIS preset MEDIUM. Measured on textured squares moving 6-48 px over a textured background (96x128 to
# 512x512, x2 and x4), the in-between error near the object relative to a cross-fade's was 0.31 with MEDIUM,
# 0.70 with FAST and 0.82 with ULTRAFAST: FAST and ULTRAFAST stop at 1/4 of the flow's resolution and lose
# small moving objects. MEDIUM costs ~3.5 ms per flow at 256x256 on 2 cores, well within the budget.
DIS_PRESET = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
# Flow is computed at half resolution for frames whose short side is at least FLOW_HALF_RES_MIN pixels, then
# upscaled. Measured at 512x512: 17 ms per pair (x2) instead of 58 ms, which is what keeps 512x512 above 30
# in-betweens/s on 2 cores; the price is a wider smear of flow across moving edges (relative error 0.17-0.47
# instead of 0.09-0.28 on the scenes above; object interiors are as exact either way). Smaller frames keep
# full resolution, where a halved image leaves DIS too little texture.
FLOW_HALF_RES_MIN = 256
# Fixed-point steps refining the flow from time s to each neighbour: F_s0(q) = -s * F_01(q + F_s0(q)).
FLOW_REFINE_STEPS = 2
# Forward-backward consistency: an error of OCCLUSION_TOLERANCE px (plus OCCLUSION_RELATIVE of the flow's
# length, as long flows are less exact) counts as consistent; twice that counts as fully occluded.
OCCLUSION_TOLERANCE = 1.0
OCCLUSION_RELATIVE = 0.05
# How much less occluded the other side's flow candidate's source must be to replace a pixel's own flow to a
# neighbour (see prefer_visible); measured on moving-object scenes, 0 to 0.5 gave the same error.
PREFER_MARGIN = 0.25
# Weight kept by an occluded sample, so that where both neighbours look occluded the blend falls back to the
# plain cross-fade (1 - s, s) instead of dividing by zero.
FALLBACK_WEIGHT = 1e-3
FILM_ALIGN = 64  # FILM's pyramid needs sizes divisible by 64
# In-betweens per FILM call: one batch holds the pair's images once per in-between, so x8 at 1080p in one
# call would need several GB of activations; 4 keeps memory bounded and still batches x2 to x5 whole.
FILM_MAX_BATCH = 4
# Pairs per flow thread handed out at a time: enough to keep the threads busy, few enough that the frames in
# flight stay a handful however long the clip.
FLOW_BATCH = 2


# --- public API ---------------------------------------------------------------------------------------------


def interpolate_frames(
    frames: Sequence[np.ndarray],
    *,
    factor: int = 2,
    loop: bool = False,
    method: str = "flow",
    model_path: str | Path | None = None,
    device: str = "auto",
    models_dir: str | Path | None = None,
) -> list[np.ndarray]:
    """``factor`` times as many frames: ``factor - 1`` in-betweens at ``s = k / factor`` after every frame.

    Returns ``(n - 1) * factor + 1`` frames, or ``n * factor`` with ``loop``, where the in-betweens after the
    last frame lead back to the first, so a looping GIF has no jump at its seam. The input frames (HxWx3
    uint8, one size) appear unchanged at every ``factor``-th place. ``method`` is ``"flow"``, ``"blend"``,
    ``"film"`` or ``"rife"`` (then ``model_path`` names the FILM TorchScript file or the RIFE state dict, a
    file or a name in the models folder ``models_dir``, and ``device`` where it runs: auto, cpu, cuda, mps).
    The frames as a list: :func:`interpolated_frames` gives them one at a time.
    """
    return list(
        interpolated_frames(
            frames,
            factor=factor,
            loop=loop,
            method=method,
            model_path=model_path,
            device=device,
            models_dir=models_dir,
        )
    )


def interpolated_frames(
    frames: Sequence[np.ndarray],
    *,
    factor: int = 2,
    loop: bool = False,
    method: str = "flow",
    model_path: str | Path | None = None,
    device: str = "auto",
    models_dir: str | Path | None = None,
) -> Iterator[np.ndarray]:
    """The frames of :func:`interpolate_frames`, made and handed out one pair at a time (the pairs' in-betweens
    in small batches, for flow's threads): with frames on disk (a
    :class:`~flipbook.io.frames.FrameSequence`, read in order) memory does not grow with the clip's length.
    Every argument is checked, and a FILM or RIFE model loaded, before the first frame is handed out."""
    frames = _check_frames(frames)
    factor = _check_factor(factor)
    model_path = check_method(method, model_path, models_dir)
    times = [k / factor for k in range(1, factor)]
    tweens = _tween_maker(method, model_path, device) if times else None
    return _interleaved(frames, loop, times, tweens)


def _interleaved(
    frames: Sequence[np.ndarray], loop: bool, times: list[float], tweens: _Tweens | None
) -> Iterator[np.ndarray]:
    """Each frame followed by its in-betweens towards the next (the first, after the last, with ``loop``)."""
    pairs = _pairs(frames, loop)
    made = tweens(pairs, times) if tweens is not None else ((pair, []) for pair in pairs)
    for (first, _), between in made:
        yield first
        yield from between
    if not loop:
        yield frames[-1]


def _pairs(frames: Sequence[np.ndarray], loop: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Consecutive frames, each read once, and with ``loop`` the last with the first."""
    items = iter(frames)
    first = previous = next(items)
    for frame in items:
        yield previous, frame
        previous = frame
    if loop:
        yield previous, first


_Pair = tuple[np.ndarray, np.ndarray]
_Tweens = Callable[[Iterable[_Pair], list[float]], Iterator[tuple[_Pair, list[np.ndarray]]]]


def slow_motion(
    frames: Sequence[np.ndarray],
    *,
    factor: int = 2,
    method: str = "flow",
    model_path: str | Path | None = None,
    device: str = "auto",
) -> list[np.ndarray]:
    """Motion ``factor`` times slower: the frames of :func:`interpolate_frames`, meant to be played at the
    input's frame rate (see :func:`output_fps`) rather than ``factor`` times faster."""
    return interpolate_frames(frames, factor=factor, method=method, model_path=model_path, device=device)


def output_fps(input_fps: float | None, factor: int, *, slowmo: bool = False) -> float | None:
    """The frame rate that keeps the input's speed (``input_fps * factor``), or with ``slowmo`` the input's
    rate, so motion plays ``factor`` times slower; None when the input has no rate (a folder of images)."""
    if input_fps is None:
        return None
    return float(input_fps) if slowmo else float(input_fps) * factor


def cross_fade(first: np.ndarray, second: np.ndarray, s: float) -> np.ndarray:
    """``(1 - s) * first + s * second`` rounded to uint8; float64, so results are exact and reproducible."""
    mixed = first.astype(np.float64) * (1.0 - s) + second.astype(np.float64) * s
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


# --- argument checks ----------------------------------------------------------------------------------------


def _check_frames(frames: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
    """The frames as a list of HxWx3 uint8 arrays of one size; why: every method indexes them as such. Frames
    on disk (a :class:`~flipbook.io.frames.FrameSequence`, checked when it was made) stay there."""
    from flipbook.io.frames import FrameSequence

    if isinstance(frames, FrameSequence) and len(frames):
        return frames
    frames = list(frames)
    if not frames:
        raise FlipbookError("interpolate.frames", [], "at least one frame")
    shape = frames[0].shape if isinstance(frames[0], np.ndarray) else None
    for index, frame in enumerate(frames):
        if (
            not isinstance(frame, np.ndarray)
            or frame.dtype != np.uint8
            or frame.ndim != 3
            or frame.shape[2] != 3
        ):
            described = f"{type(frame).__name__} {getattr(frame, 'shape', '')} {getattr(frame, 'dtype', '')}"
            raise FlipbookError(f"interpolate.frames[{index}]", described.strip(), "an HxWx3 uint8 array")
        if frame.shape != shape:
            raise FlipbookError(
                f"interpolate.frames[{index}]", frame.shape, f"the shape of frames[0], {shape}"
            )
    return frames


def _check_factor(factor: int) -> int:
    """An integer >= 1 (1 returns the frames unchanged)."""
    if isinstance(factor, bool) or not isinstance(factor, int | np.integer) or factor < 1:
        raise FlipbookError("interpolate.factor", factor, "an integer >= 1 (2 doubles the frame count)")
    return int(factor)


def check_method(
    method: str, model_path: str | Path | None, models_dir: str | Path | None = None
) -> Path | None:
    """Fail early on an unknown or unsupported method, or FILM or RIFE without a model file; why public: the
    CLI checks its flags before reading and interpolating frames. Returns the model file (None for the
    methods without one): see :func:`model_file`."""
    if method not in METHODS:
        raise FlipbookError(METHOD_FIELD, method, f"one of: {', '.join(METHODS)}")
    return model_file(method, model_path, models_dir) if method in MODEL_KINDS else None


def model_file(method: str, model_path: str | Path | None, models_dir: str | Path | None = None) -> Path:
    """The FILM or RIFE weights ``model_path`` names: an existing file, or a name found among the method's
    folders of the A1111 or ComfyUI install ``models_dir`` (``film``: Deforum's
    ``models/Deforum/film_interpolation``, ComfyUI-Frame-Interpolation's ``ckpts/film``; ``rife``:
    ``models/Deforum``, ``ckpts/rife``; see :mod:`flipbook.models.folders`). FlipbookError naming
    ``interpolate.model`` otherwise."""
    kind, allowed = MODEL_KINDS[method]
    if model_path is None:
        raise FlipbookError(MODEL_FIELD, None, allowed, detail=f"method {method!r} needs a model file")
    path = Path(model_path).expanduser()
    if path.is_file():
        return path
    if models_dir is None:
        raise FlipbookError(MODEL_FIELD, str(model_path), allowed, detail="no such file")
    from flipbook.models.folders import ModelsDir

    try:
        return ModelsDir(models_dir).find(kind, str(model_path))
    except FlipbookError as error:  # ModelsDir names the kind; users know the field
        raise FlipbookError(MODEL_FIELD, error.value, error.allowed, detail=error.detail) from None


def _tween_maker(method: str, model_path: str | Path | None, device: str) -> _Tweens:
    """What makes the in-betweens of a stream of pairs: each pair with its in-betweens at ``times``, in order.
    A FILM or RIFE model is loaded here, once for all pairs."""
    if method == "flow":
        return _flow_tweens
    if method == "blend":
        return lambda pairs, times: ((p, [cross_fade(p[0], p[1], s) for s in times]) for p in pairs)
    from flipbook.models.device import pick_device

    target = pick_device(device)
    if method == "rife":
        from flipbook.post.rife import RifeInterpolator, load_rife

        model = RifeInterpolator(load_rife(model_path, device=target), target)
    else:
        model = FilmInterpolator(load_film(model_path, device=str(target)), target)
    return lambda pairs, times: ((p, model.tweens(p[0], p[1], times)) for p in pairs)


def _flow_tweens(pairs: Iterable[_Pair], times: list[float]) -> Iterator[tuple[_Pair, list[np.ndarray]]]:
    """Flow in-betweens with pairs spread over one thread per core, FLOW_BATCH pairs per thread at a time (so
    the frames in flight stay few), each thread with its own :class:`FlowInterpolator` (a DIS object is not
    thread-safe). Why threads: OpenCV releases the GIL, and its own parallel loops gain little at these
    sizes; measured at 512x512 on 2 cores, 17 ms per pair with one thread, 12 ms with two."""
    local = threading.local()

    def tweens(pair: _Pair) -> list[np.ndarray]:
        if not hasattr(local, "interpolator"):
            local.interpolator = FlowInterpolator()
        return local.interpolator.tweens(pair[0], pair[1], times)

    workers = _cores()
    if workers <= 1:
        yield from ((pair, tweens(pair)) for pair in pairs)
        return
    with ThreadPoolExecutor(workers) as pool:
        for batch in _batches(pairs, workers * FLOW_BATCH):
            yield from zip(batch, pool.map(tweens, batch), strict=True)
            batch.clear()  # let these frames go before the next batch is read


def _batches(items: Iterable[_Pair], size: int) -> Iterator[list[_Pair]]:
    """Consecutive lists of at most ``size`` items."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _cores() -> int:
    """CPU cores this process may run on (the affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


# --- flow interpolation: the math (pure functions) ----------------------------------------------------------


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 x and y coordinates of every pixel, the identity map for ``cv2.remap``."""
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def sample(image: np.ndarray, flow: np.ndarray, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``image`` read at ``q + flow[q]`` for every pixel q (bilinear, borders replicated)."""
    map_x = cv2.add(grid[0], flow[..., 0])
    map_y = cv2.add(grid[1], flow[..., 1])
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def occlusion(flow_ab: np.ndarray, flow_ba: np.ndarray, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """How occluded in B each pixel of A is, 0 (visible) .. 1 (hidden), by forward-backward consistency.

    A pixel p of A visible in B moves to ``p + flow_ab[p]``, and the flow from B there leads back to p:
    ``flow_ab[p] + flow_ba[p + flow_ab[p]] ~ 0``. A pixel covered in B has no true match, so its round trip
    lands elsewhere. Why soft: a hard threshold would make the blend weights, and the in-betweens, flicker.
    """
    returned = sample(flow_ba, flow_ab, grid)
    error = cv2.magnitude(*cv2.split(cv2.add(flow_ab, returned)))
    length = cv2.magnitude(flow_ab[..., 0], flow_ab[..., 1])
    tolerance = OCCLUSION_TOLERANCE + OCCLUSION_RELATIVE * length
    return np.clip(error / tolerance - 1.0, 0.0, 1.0)


def fill_occluded_flow(
    flow: np.ndarray, occluded: np.ndarray, grid: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """``flow`` with its occluded pixels given the flow found one flow-vector further on.

    Why: a pixel hidden in the other frame has no match, so DIS fills in the flow of its neighbour, usually
    the occluder moving over it. But the band a moving object uncovers or covers is exactly as wide as the
    object's displacement, so jumping ``flow[p]`` (the occluder's motion) from p lands past the band on the
    background the pixel belongs to, and its flow there is the right one.
    """
    jumped = sample(flow, flow, grid)
    return flow + occluded[..., None] * (jumped - flow)


def intermediate_flows(
    flow_01: np.ndarray, flow_10: np.ndarray, s: float, grid: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Flows from time ``s`` to frame 0 and to frame 1, each at the in-between's pixels.

    Start from Super SloMo's linear estimate, ``F_s0 = -(1-s) s F_01 + s^2 F_10`` and ``F_s1 = (1-s)^2 F_01
    - s(1-s) F_10`` (exact for uniform motion), then refine with the fixed point ``F_s0(q) = -s F_01(q +
    F_s0(q))``: the content at q came from ``q + F_s0(q)`` in frame 0 and moves along the flow found *there*,
    which puts a moving object's flow where the object is at time s instead of where it was in frame 0.
    """
    flow_s0 = -(1 - s) * s * flow_01 + s * s * flow_10
    flow_s1 = (1 - s) * (1 - s) * flow_01 - s * (1 - s) * flow_10
    for _ in range(FLOW_REFINE_STEPS):
        flow_s0 = -s * sample(flow_01, flow_s0, grid)
        flow_s1 = -(1 - s) * sample(flow_10, flow_s1, grid)
    return flow_s0, flow_s1


def prefer_visible(
    flows: tuple[np.ndarray, np.ndarray],
    occluded: tuple[np.ndarray, np.ndarray],
    s: float,
    grid: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel, the better of two flows to each neighbour, and the occlusion of the chosen source pixels.

    At a moving object's front edge the fixed point of :func:`intermediate_flows` has two solutions, the
    object's and the background's; frame 0's own flow may pick the background, which at time s is already
    covered. Along a straight path the flow to frame 1 gives a second candidate, ``F_s0' = -s/(1-s) F_s1``
    (and ``F_s1' = -(1-s)/s F_s0``). Where the candidate's source pixel is clearly less occluded
    (by PREFER_MARGIN) it is taken: the occluder is in front, so the visible solution is the right one.
    Returns ``(flow_s0, flow_s1, occluded_s0, occluded_s1)``, the occlusions warped to time s.
    """
    results = []
    for side, (own, other) in enumerate((flows, flows[::-1])):
        ratio = s / (1 - s) if side == 0 else (1 - s) / s
        candidate = other * np.float32(-ratio)
        own_occluded = sample(occluded[side], own, grid)
        candidate_occluded = sample(occluded[side], candidate, grid)
        better = candidate_occluded < own_occluded - PREFER_MARGIN
        results.append(
            (np.where(better[..., None], candidate, own), np.where(better, candidate_occluded, own_occluded))
        )
    (flow_s0, occluded_s0), (flow_s1, occluded_s1) = results
    return flow_s0, flow_s1, occluded_s0, occluded_s1


def blend_weights(occluded_0: np.ndarray, occluded_1: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised weights of the warped frame 0 and frame 1 at each in-between pixel.

    ``occluded_0`` says the pixel's content in frame 0 is hidden in frame 1 (so frame 1's sample there shows
    something else: trust frame 0), ``occluded_1`` the reverse, both already warped to time s. Visible in
    both, the weights are the cross-fade's ``1 - s`` and ``s``; occluded in both, a small equal share of each
    remains, which falls back to the plain cross-fade once normalised.
    """
    weight_0 = (1 - s) * (1.0 - occluded_1 + FALLBACK_WEIGHT)
    weight_1 = s * (1.0 - occluded_0 + FALLBACK_WEIGHT)
    return weight_0, weight_1


# --- flow interpolation: per-pair state ---------------------------------------------------------------------


@dataclass(frozen=True)
class PairFlows:
    """Everything an in-between of one pair needs, computed once per pair at flow resolution."""

    flow_01: np.ndarray
    flow_10: np.ndarray
    occluded_0: np.ndarray  # frame 0's pixels hidden in frame 1
    occluded_1: np.ndarray  # frame 1's pixels hidden in frame 0


class FlowInterpolator:
    """In-betweens by DIS flow, warping and occlusion-aware blending, for one thread at a time: it holds a DIS
    object and the pixel grids of one frame size, so nothing is rebuilt from pair to pair."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESET)
        self._size: tuple[int, int] | None = None
        self._grid: tuple[np.ndarray, np.ndarray] | None = None
        self._flow_grid: tuple[np.ndarray, np.ndarray] | None = None
        self._scale = 1.0

    def tweens(self, first: np.ndarray, second: np.ndarray, times: Sequence[float]) -> list[np.ndarray]:
        """The in-betweens of one pair at ``times`` (each in (0, 1)); the two flows are computed once."""
        self._prepare(first.shape[0], first.shape[1])
        pair = self.pair_flows(first, second)
        return [self.synthesize(first, second, pair, s) for s in times]

    def _prepare(self, height: int, width: int) -> None:
        """Grids and flow scale for this frame size (kept while the size stays the same)."""
        if self._size == (height, width):
            return
        self._size = (height, width)
        self._scale = 0.5 if min(height, width) >= FLOW_HALF_RES_MIN else 1.0
        self._grid = pixel_grid(height, width)
        flow_h, flow_w = self._flow_shape()
        self._flow_grid = pixel_grid(flow_h, flow_w)

    def _flow_shape(self) -> tuple[int, int]:
        height, width = self._size
        return max(1, round(height * self._scale)), max(1, round(width * self._scale))

    def _gray(self, frame: np.ndarray) -> np.ndarray:
        """Grayscale at flow resolution (area filter, so no aliasing feeds DIS)."""
        gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        if self._scale == 1.0:
            return gray
        flow_h, flow_w = self._flow_shape()
        return cv2.resize(gray, (flow_w, flow_h), interpolation=cv2.INTER_AREA)

    def pair_flows(self, first: np.ndarray, second: np.ndarray) -> PairFlows:
        """Flows both ways and the occlusion masks of one pair, at flow resolution (in its pixels)."""
        gray_0, gray_1 = self._gray(first), self._gray(second)
        flow_01 = self._dis.calc(gray_0, gray_1, None)
        flow_10 = self._dis.calc(gray_1, gray_0, None)
        grid = self._flow_grid
        occluded_0 = occlusion(flow_01, flow_10, grid)
        occluded_1 = occlusion(flow_10, flow_01, grid)
        return PairFlows(
            fill_occluded_flow(flow_01, occluded_0, grid),
            fill_occluded_flow(flow_10, occluded_1, grid),
            occluded_0,
            occluded_1,
        )

    def synthesize(self, first: np.ndarray, second: np.ndarray, pair: PairFlows, s: float) -> np.ndarray:
        """The in-between at time ``s``: both frames warped to s, blended by visibility (uint8)."""
        grid = self._flow_grid
        flows = intermediate_flows(pair.flow_01, pair.flow_10, s, grid)
        flow_s0, flow_s1, occluded_s0, occluded_s1 = prefer_visible(
            flows, (pair.occluded_0, pair.occluded_1), s, grid
        )
        weight_0, weight_1 = blend_weights(occluded_s0, occluded_s1, s)
        if self._scale != 1.0:
            flow_s0, flow_s1 = self._upscale_flow(flow_s0), self._upscale_flow(flow_s1)
            weight_0, weight_1 = self._upscale(weight_0), self._upscale(weight_1)
        warped_0 = sample(np.ascontiguousarray(first), flow_s0, self._grid)
        warped_1 = sample(np.ascontiguousarray(second), flow_s1, self._grid)
        return cv2.blendLinear(warped_0, warped_1, weight_0, weight_1)

    def _upscale(self, field: np.ndarray) -> np.ndarray:
        height, width = self._size
        return cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)

    def _upscale_flow(self, flow: np.ndarray) -> np.ndarray:
        """A flow at frame resolution: resized, and its vectors scaled from flow pixels to frame pixels."""
        return self._upscale(flow) * np.float32(1.0 / self._scale)


# --- FILM ---------------------------------------------------------------------------------------------------


def load_film(path: str | Path, *, device: str = "auto"):
    """Load a FILM ``film_net`` TorchScript file with ``torch.jit.load``, in eval mode on ``device``.

    TorchScript is the format FILM ships in for PyTorch: the FILM repo's PyTorch export and the
    ``film_net_fp32.pt`` / ``film_net_fp16.pt`` files ComfyUI-Frame-Interpolation downloads. It is not a
    pickle: ``torch.jit.load`` reads the saved TorchScript code and tensors with its own loader and never
    imports or runs Python objects from the file (the model's code runs in the TorchScript interpreter). A
    missing file or anything that is not TorchScript (a text file, a ``torch.save`` checkpoint) raises
    FlipbookError naming ``interpolate.model``.
    """
    import torch

    from flipbook.models.device import pick_device

    path = Path(path)
    if not path.is_file():
        raise FlipbookError(MODEL_FIELD, str(path), ALLOWED_MODEL, detail="no such file")
    target = pick_device(device)
    try:
        model = torch.jit.load(str(path), map_location=target)
    except (RuntimeError, ValueError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FlipbookError(
            MODEL_FIELD, str(path), ALLOWED_MODEL, detail=f"not TorchScript: {first_line}"
        ) from None
    return model.eval()


class FilmInterpolator:
    """In-betweens from a loaded FILM TorchScript module, called as ``model(img0, img1, batch_dt)``: images
    B x 3 x H x W in [0, 1] (H and W padded to multiples of FILM_ALIGN), ``batch_dt`` the B x 1 times."""

    def __init__(self, model, device) -> None:
        import torch

        self.model = model
        self.device = torch.device(device)
        parameter = next(iter(model.parameters()), None)  # film_net_fp16.pt wants half-precision input
        self.dtype = parameter.dtype if parameter is not None else torch.float32

    def tweens(self, first: np.ndarray, second: np.ndarray, times: Sequence[float]) -> list[np.ndarray]:
        """The in-betweens of one pair, FILM_MAX_BATCH times per model call (the images repeated)."""
        images: list[np.ndarray] = []
        for start in range(0, len(times), FILM_MAX_BATCH):
            images.extend(self._batch(first, second, times[start : start + FILM_MAX_BATCH]))
        return images

    def _batch(self, first: np.ndarray, second: np.ndarray, times: Sequence[float]) -> list[np.ndarray]:
        """One model call; the output is checked, cropped back to the frame and rounded to uint8."""
        import torch

        height, width = first.shape[:2]
        img_0, (top, left) = self._tensor(first, len(times))
        img_1, _ = self._tensor(second, len(times))
        batch_dt = torch.tensor(list(times), dtype=self.dtype, device=self.device).reshape(-1, 1)
        with torch.inference_mode():
            result = self.model(img_0, img_1, batch_dt)
        if not isinstance(result, torch.Tensor) or result.shape != img_0.shape:
            shape = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
            detail = f"it returned {shape} for inputs of shape {tuple(img_0.shape)}"
            raise FlipbookError(MODEL_FIELD, "model output", ALLOWED_MODEL, detail=detail)
        result = result[:, :, top : top + height, left : left + width].float().clamp(0, 1)
        return list((result * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())

    def _tensor(self, frame: np.ndarray, batch: int):
        """The frame as a batch x 3 x H' x W' tensor in [0, 1], padded to multiples of FILM_ALIGN, and the
        (top, left) offset of the frame in it. Why centred replicate padding: FILM's own code centres the
        frame, and replicated edges give its flow estimator no false edge to track."""
        import torch
        import torch.nn.functional as F

        height, width = frame.shape[:2]
        pad_h, pad_w = -height % FILM_ALIGN, -width % FILM_ALIGN
        top, left = pad_h // 2, pad_w // 2
        # a copy: frames read from files are often read-only arrays, which torch.from_numpy warns about
        tensor = torch.from_numpy(np.array(frame, dtype=np.uint8)).to(self.device).permute(2, 0, 1)[None]
        tensor = tensor.float() / 255.0
        if pad_h or pad_w:
            tensor = F.pad(tensor, (left, pad_w - left, top, pad_h - top), mode="replicate")
        return tensor.to(self.dtype).expand(batch, -1, -1, -1).contiguous(), (top, left)

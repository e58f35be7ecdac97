"""Per-frame seeds with Deforum's seed behaviours (``iter``, ``fixed``, ``random``, ``ladder``, ``alternate``,
``schedule``), so a Deforum settings file renders with the seeds Deforum would have used.

What Deforum does (sd-webui-deforum, ``render.py`` + ``seed.py``): frame 0 is generated with the base seed;
after every generated frame ``next_seed`` moves the seed on, keeping a little state (``seed_internal``, 0 at the
start of each run):

- ``iter``: add 1 when ``seed_internal % seed_iter_N == 0``, then count ``seed_internal`` up. Because the counter
  starts at 0, the first step always happens after frame 0, so the base seed is used for one frame only and every
  later seed for ``seed_iter_N`` frames: frame f gets ``seed + ceil(f / N)``.
- ``ladder``: alternately +2 and -1 (``s, s+2, s+1, s+3, s+2, ...``).
- ``alternate``: alternately +1 and -1 (``s, s+1, s, s+1, ...``).
- ``fixed``: the base seed on every frame.
- ``random``: frame 0 uses the base seed, every later frame ``random.randint(0, 2**32 - 1)``.
- ``schedule``: before every frame, frame 0 included, the seed is overwritten with ``int(seed_schedule[f])``
  (``s`` in the schedule is the base seed); a value of -1 is turned into a random seed by A1111's
  ``get_fixed_seed`` (``random.randrange(4294967294)``).

Deforum never wraps seeds: ``iter``/``ladder``/``alternate`` just add, so a base seed within ``max_frames`` of
2**32 gives seeds past 2**32 - 1, which A1111 and torch accept (``torch.Generator.manual_seed`` takes
[0, 2**64)). flipbook does the same. None of the behaviours go below the base seed, so every seed is >= 0.

Where flipbook differs on purpose: Deforum draws random seeds from Python's global ``random`` and cannot repeat
them; flipbook draws them from ``numpy.random.default_rng(rng_seed)`` (``rng_seed`` defaults to the base seed),
so a sequence is reproducible from ``rng_seed`` (the render records the seeds either way) but not equal to
Deforum's. Frame f's random seed is the f-th draw of that stream, so a longer render starts with the same seeds.

Not modelled here (render-loop matters): with a diffusion cadence above 1 Deforum calls ``next_seed`` once per
*diffused* frame, so the k-th diffused frame (frame k * cadence) gets element k of this sequence; a blank-frame
reroll adds 1 to the current seed and that carries on into the following frames; a resumed run restarts the
behaviour from the base seed. ``seed_resize_from_w/h`` don't change seeds (they change how A1111 draws the
initial noise for a seed).
"""

from __future__ import annotations

import math

import numpy as np

from flipbook.errors import SpecError

SEED_BEHAVIORS = ("iter", "fixed", "random", "ladder", "alternate", "schedule")

SEED_LIMIT = 2**32  # seeds the spec accepts and Deforum's random.randint(0, 2**32 - 1) draws: [0, 2**32)
GENERATOR_LIMIT = 2**64  # torch.Generator.manual_seed accepts [0, 2**64); schedule values must fit
WEBUI_RANDOM_LIMIT = 4294967294  # A1111 get_fixed_seed: random.randrange(4294967294) for a seed of -1


def _check_inputs(
    seed: int, max_frames: int, behavior: str, iter_n: int, schedule: np.ndarray | None
) -> np.ndarray | None:
    """Raise FlipbookError for input Deforum would reject or crash on; the schedule comes back as float64."""
    if behavior not in SEED_BEHAVIORS:
        raise SpecError("sampling.seed_behavior", behavior, f"one of {', '.join(SEED_BEHAVIORS)}")
    if not isinstance(seed, (int, np.integer)) or not 0 <= seed < SEED_LIMIT:
        raise SpecError("sampling.seed", seed, "an integer in [0, 2**32) (choose -1 before planning seeds)")
    if not isinstance(max_frames, (int, np.integer)) or max_frames < 0:
        raise SpecError("animation.max_frames", max_frames, "an integer >= 0")
    # seed_iter_N = 0 would divide by zero in Deforum's iter; it is checked for every behaviour to catch typos
    if not isinstance(iter_n, (int, np.integer)) or iter_n < 1:
        raise SpecError("sampling.seed_iter_n", iter_n, "an integer >= 1")
    if behavior != "schedule":
        return None
    if schedule is None:
        raise SpecError("sampling.seed_schedule", None, "a seed schedule when seed_behavior is 'schedule'")
    values = np.asarray(schedule, dtype=np.float64)
    if values.shape != (max_frames,):
        raise SpecError(
            "sampling.seed_schedule",
            f"array of shape {values.shape}",
            f"one value per frame (shape ({max_frames},))",
        )
    if not np.all(np.isfinite(values)):
        raise SpecError("sampling.seed_schedule", "a non-finite value", "finite numbers")
    truncated = np.trunc(values)
    bad = ~((truncated == -1) | ((truncated >= 0) & (truncated < GENERATOR_LIMIT)))
    if bad.any():
        frame = int(np.flatnonzero(bad)[0])
        raise SpecError(
            "sampling.seed_schedule",
            float(values[frame]),
            "-1 (random) or a seed in [0, 2**64)",
            detail=f"at frame {frame}",
        )
    return values


def _random_draws(rng_seed: int, count: int, high: int) -> list[int]:
    """``count`` seeds in [0, high) from one stream, so frame f's draw doesn't depend on the render length."""
    draws = np.random.default_rng(rng_seed).integers(0, high, size=count, dtype=np.int64)
    return [int(d) for d in draws]


def _iter_seed(seed: int, frame: int, iter_n: int) -> int:
    """Deforum's iter: the counter starts at 0, so the first step comes right after frame 0."""
    return seed + math.ceil(frame / iter_n) if frame else seed


def _ladder_seed(seed: int, frame: int) -> int:
    """Deforum's ladder: +2, -1, +2, -1, ... (net +1 every two frames)."""
    return seed + frame // 2 + (2 if frame % 2 else 0)


def _alternate_seed(seed: int, frame: int) -> int:
    """Deforum's alternate: +1, -1, ... (two seeds, base on even frames)."""
    return seed + frame % 2


def _schedule_seeds(values: np.ndarray, rng_seed: int) -> list[int]:
    """``int()`` of each value like Deforum; -1 becomes a random seed like A1111's get_fixed_seed."""
    draws = _random_draws(rng_seed, len(values), WEBUI_RANDOM_LIMIT)
    return [draws[f] if int(v) == -1 else int(v) for f, v in enumerate(values)]


def seed_sequence(
    seed: int,
    max_frames: int,
    behavior: str = "iter",
    *,
    iter_n: int = 1,
    schedule: np.ndarray | None = None,
    rng_seed: int | None = None,
) -> list[int]:
    """The seed of each frame 0..max_frames-1 as Deforum's ``seed_behavior`` would give it (see the module doc).

    ``seed`` is the chosen base seed (``-1`` must already be resolved). ``iter_n`` is Deforum's ``seed_iter_N``.
    ``schedule`` (for ``"schedule"`` only) holds the resolved per-frame values of ``seed_schedule``, with ``s``
    already replaced by ``seed``. ``rng_seed`` seeds the random draws of ``"random"`` and of ``-1`` in a schedule;
    it defaults to ``seed`` so the function stays pure.
    """
    values = _check_inputs(seed, max_frames, behavior, iter_n, schedule)
    seed, max_frames = int(seed), int(max_frames)
    rng_seed = seed if rng_seed is None else rng_seed
    frames = range(max_frames)
    if behavior == "iter":
        return [_iter_seed(seed, f, int(iter_n)) for f in frames]
    if behavior == "fixed":
        return [seed] * max_frames
    if behavior == "ladder":
        return [_ladder_seed(seed, f) for f in frames]
    if behavior == "alternate":
        return [_alternate_seed(seed, f) for f in frames]
    if behavior == "random":
        draws = _random_draws(rng_seed, max_frames, SEED_LIMIT)
        return [seed, *draws[1:]][:max_frames]
    assert values is not None
    return _schedule_seeds(values, rng_seed)

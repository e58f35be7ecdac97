"""Deforum's seed behaviours (flipbook/spec/seeds.py).

The literal sequences below were worked out by hand from sd-webui-deforum: ``render.py`` generates frame 0 with
``args.seed`` and calls ``seed.next_seed(args, root)`` after every frame; ``root.seed_internal`` starts at 0.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flipbook.errors import FlipbookError
from flipbook.spec.schedules import resolve_schedule
from flipbook.spec.seeds import SEED_BEHAVIORS, seed_sequence

BASE = 100


def test_iter_adds_one_per_frame():
    # next_seed 'iter', N=1: internal % 1 == 0 every time, so +1 after every frame
    assert seed_sequence(BASE, 10, "iter") == [100, 101, 102, 103, 104, 105, 106, 107, 108, 109]


def test_iter_n_holds_the_base_seed_for_one_frame_only():
    # next_seed 'iter', N=3: after frame 0 internal=0 -> +1; after frames 1, 2 internal=1, 2 -> no change;
    # after frame 3 internal=3 -> +1; ... so the base seed lasts one frame and later seeds three frames each
    assert seed_sequence(BASE, 10, "iter", iter_n=3) == [100, 101, 101, 101, 102, 102, 102, 103, 103, 103]
    # N=2: +1 after frames 0, 2, 4, ...
    assert seed_sequence(BASE, 10, "iter", iter_n=2) == [100, 101, 101, 102, 102, 103, 103, 104, 104, 105]


def test_fixed_keeps_the_base_seed():
    # next_seed 'fixed': pass
    assert seed_sequence(BASE, 10, "fixed") == [100] * 10


def test_ladder_steps_plus_two_minus_one():
    # next_seed 'ladder': internal 0 -> +2 and internal=1; internal 1 -> -1 and internal=0
    assert seed_sequence(BASE, 10, "ladder") == [100, 102, 101, 103, 102, 104, 103, 105, 104, 106]


def test_alternate_steps_plus_one_minus_one():
    # next_seed 'alternate': internal 0 -> +1 and internal=1; internal 1 -> -1 and internal=0
    assert seed_sequence(BASE, 10, "alternate") == [100, 101, 100, 101, 100, 101, 100, 101, 100, 101]


def test_random_uses_the_base_seed_first_then_reproducible_draws():
    # render.py: frame 0 uses args.seed; next_seed's else-branch draws random.randint(0, 2**32 - 1) after it
    seeds = seed_sequence(BASE, 10, "random", rng_seed=7)
    assert seeds[0] == BASE and len(set(seeds[1:])) == 9
    assert all(0 <= s < 2**32 for s in seeds)
    assert seed_sequence(BASE, 10, "random", rng_seed=7) == seeds
    assert seed_sequence(BASE, 10, "random", rng_seed=8) != seeds
    assert seed_sequence(BASE, 10, "random") == seed_sequence(BASE, 10, "random", rng_seed=BASE)


def test_schedule_truncates_values_and_draws_for_minus_one():
    # render.py: for 'schedule' args.seed = int(seed_schedule_series[frame]) before every frame (frame 0 too);
    # A1111's get_fixed_seed turns -1 into random.randrange(4294967294). int() truncates towards zero.
    values = np.array([100, -1, 150.7, 150.2, -1.5, -0.5, 3, 3, 0, 4294967295.0])
    seeds = seed_sequence(BASE, 10, "schedule", schedule=values, rng_seed=3)
    assert seeds[0] == 100 and seeds[2:4] == [150, 150] and seeds[5:] == [0, 3, 3, 0, 4294967295]
    assert 0 <= seeds[1] < 4294967294 and 0 <= seeds[4] < 4294967294 and seeds[1] != seeds[4]
    assert seed_sequence(BASE, 10, "schedule", schedule=values, rng_seed=3) == seeds


def test_deforum_default_seed_schedule():
    # Deforum's default seed_schedule: '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)'
    values = resolve_schedule(
        '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)',
        max_frames=8,
        fps=10,
        seed=BASE,
        interpolation="linear",
    )
    seeds = seed_sequence(BASE, 8, "schedule", schedule=values, rng_seed=1)
    assert seeds[0] == BASE and seeds[6:] == [BASE, BASE]
    assert len(set(seeds[1:6])) == 5 and BASE not in seeds[1:6]


def test_seeds_do_not_wrap_at_two_to_the_32():
    # Deforum only adds (args.seed += 1); A1111 and torch take seeds past 2**32 - 1 as they are
    top = 2**32 - 1
    assert seed_sequence(top, 3, "iter") == [top, top + 1, top + 2]
    assert seed_sequence(top, 3, "ladder") == [top, top + 2, top + 1]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"behavior": "zigzag"}, "sampling.seed_behavior"),
        ({"behavior": "iter", "iter_n": 0}, "sampling.seed_iter_n"),
        ({"behavior": "schedule"}, "sampling.seed_schedule"),
        ({"behavior": "schedule", "schedule": np.zeros(4)}, "sampling.seed_schedule"),
        ({"behavior": "schedule", "schedule": np.zeros((5, 1))}, "sampling.seed_schedule"),
        ({"behavior": "schedule", "schedule": np.array([0, 1, np.nan, 3, 4])}, "sampling.seed_schedule"),
        ({"behavior": "schedule", "schedule": np.array([0, 1, -2, 3, 4])}, "sampling.seed_schedule"),
        ({"behavior": "schedule", "schedule": np.full(5, 2.0**64)}, "sampling.seed_schedule"),
    ],
)
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(FlipbookError) as error:
        seed_sequence(BASE, 5, **kwargs)
    assert error.value.field == field


def test_bad_base_seed_and_length():
    for seed in (-1, 2**32):
        with pytest.raises(FlipbookError, match="sampling.seed"):
            seed_sequence(seed, 5)
    with pytest.raises(FlipbookError, match="animation.max_frames"):
        seed_sequence(BASE, -1)


def test_empty_render_has_no_seeds():
    assert all(seed_sequence(BASE, 0, b, schedule=np.zeros(0)) == [] for b in SEED_BEHAVIORS)


schedules = st.lists(
    st.one_of(st.just(-1.0), st.floats(min_value=0, max_value=2**32 - 1, allow_nan=False)), max_size=60
)


@given(
    seed=st.integers(0, 2**32 - 1),
    behavior=st.sampled_from(SEED_BEHAVIORS),
    iter_n=st.integers(1, 10),
    values=schedules,
    rng_seed=st.integers(0, 2**64 - 1),
)
def test_seeds_are_non_negative_ints_one_per_frame(seed, behavior, iter_n, values, rng_seed):
    n = len(values)
    seeds = seed_sequence(seed, n, behavior, iter_n=iter_n, schedule=np.array(values), rng_seed=rng_seed)
    assert len(seeds) == n and all(type(s) is int for s in seeds)
    # Deforum never goes below the base seed and never wraps, so seeds only run past 2**32 near the top
    limit = 2**32 if behavior in ("random", "schedule") else seed + n + 2
    assert all(0 <= s < limit for s in seeds)
    if seed + n + 2 <= 2**32:
        assert all(s < 2**32 for s in seeds)


@given(
    seed=st.integers(0, 2**32 - 1),
    behavior=st.sampled_from(SEED_BEHAVIORS),
    iter_n=st.integers(1, 10),
    values=schedules,
    cut=st.integers(0, 60),
)
def test_a_longer_render_starts_with_the_same_seeds(seed, behavior, iter_n, values, cut):
    n, m = len(values), min(cut, len(values))
    full = seed_sequence(seed, n, behavior, iter_n=iter_n, schedule=np.array(values), rng_seed=5)
    short = seed_sequence(seed, m, behavior, iter_n=iter_n, schedule=np.array(values[:m]), rng_seed=5)
    assert full[:m] == short


@given(seed=st.integers(0, 2**32 - 1), iter_n=st.integers(1, 10), n=st.integers(0, 60))
def test_closed_forms_match_a_step_by_step_next_seed(seed, iter_n, n):
    # an independent re-statement of Deforum's loop: use the seed, then step it with the internal counter
    for behavior in ("iter", "ladder", "alternate", "fixed"):
        current, internal, expected = seed, 0, []
        for _ in range(n):
            expected.append(current)
            if behavior == "iter":
                current += 1 if internal % iter_n == 0 else 0
                internal += 1
            elif behavior in ("ladder", "alternate"):
                current += (2 if behavior == "ladder" else 1) if internal == 0 else -1
                internal = 1 - internal
        assert seed_sequence(seed, n, behavior, iter_n=iter_n) == expected

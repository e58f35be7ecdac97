"""Ordering independent frames into a loop or a path with small steps (flipbook.imaging.ordering): pure numpy."""

import numpy as np
import pytest

from flipbook.imaging.ordering import (
    distance_matrix,
    downscale,
    nearest_neighbour,
    order_for,
    order_images,
    route_length,
    shortest_order,
)


def euclidean(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, None] - points[None], axis=-1)


def is_circular(sequence: list[int], n: int) -> bool:
    """Consecutive entries (and last -> first) are neighbours on the circle, all in one direction."""
    steps = {(b - a) % n for a, b in zip(sequence, [*sequence[1:], sequence[0]], strict=True)}
    return steps in ({1}, {n - 1})


def test_a_loop_through_shuffled_points_on_a_circle_goes_round_the_circle():
    n, rng = 16, np.random.default_rng(3)
    shuffle = rng.permutation(n)  # entry i is point shuffle[i] of the circle
    angles = 2 * np.pi * shuffle / n
    points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    order = shortest_order(euclidean(points), closed=True)
    assert sorted(order) == list(range(n)) and order[0] == 0
    assert is_circular([int(shuffle[k]) for k in order], n)


def test_a_path_through_shuffled_points_on_a_line_is_sorted():
    rng = np.random.default_rng(5)
    x = rng.permutation(20).astype(float) * 0.7
    order = shortest_order(np.abs(x[:, None] - x[None]), closed=False)
    steps = np.diff(x[order])
    assert np.all(steps > 0) or np.all(steps < 0)


def crossings(points: np.ndarray, order: list[int]) -> int:
    """How many pairs of edges of the closed tour cross each other."""

    def side(a, b, c):
        return np.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    edges = [(points[a], points[b]) for a, b in zip(order, [*order[1:], order[0]], strict=True)]
    count = 0
    for i in range(len(edges)):
        for j in range(i + 2, len(edges) - (i == 0)):
            (p, q), (r, s) = edges[i], edges[j]
            count += side(p, q, r) * side(p, q, s) < 0 and side(r, s, p) * side(r, s, q) < 0
    return count


def test_two_opt_removes_every_crossing_that_nearest_neighbour_leaves():
    points = np.random.default_rng(11).random((30, 2))
    distances = euclidean(points)
    greedy = nearest_neighbour(distances)
    improved = shortest_order(distances, closed=True)
    assert crossings(points, greedy) > 0  # the case is one where 2-opt has work to do
    assert crossings(points, improved) == 0
    assert route_length(distances, improved, True) < route_length(distances, greedy, True)


def test_ordering_is_deterministic_and_ties_go_to_the_lower_index():
    points = np.random.default_rng(2).random((25, 2))
    distances = euclidean(points)
    for closed in (True, False):
        assert shortest_order(distances, closed) == shortest_order(distances.copy(), closed)
    assert nearest_neighbour(np.ones((4, 4))) == [0, 1, 2, 3]
    assert shortest_order(np.ones((5, 5)), closed=True) == [0, 1, 2, 3, 4]


def phase_images(phases: np.ndarray, height: int = 48, width: int = 96) -> list[np.ndarray]:
    """Horizontal sine gratings: the difference between two grows with their phase difference (mod 2 pi)."""
    x = np.arange(width) * 2 * np.pi / width
    rows = [128 + 100 * np.sin(x + phase) for phase in phases]
    return [np.repeat(np.rint(row)[None, :, None], height, 0).repeat(3, 2).astype(np.uint8) for row in rows]


def test_shuffled_phases_play_back_as_a_loop_and_as_a_path():
    n = 12
    shuffle = np.random.default_rng(7).permutation(n)
    images = phase_images(2 * np.pi * shuffle / n)
    loop = order_images(images, how="loop", size=32)
    assert is_circular([int(shuffle[k]) for k in loop], n)
    path = order_images(images, how="path", size=32)
    along = [int(shuffle[k]) for k in path]
    assert sorted(path) == list(range(n))
    assert sum((b - a) % n in (1, n - 1) for a, b in zip(along, along[1:], strict=False)) == n - 1
    assert order_images(images, how="seed") == list(range(n))


def test_distance_is_measured_inside_the_mask_only():
    base = np.full((40, 60, 3), 100, np.uint8)
    outside, inside = base.copy(), base.copy()
    outside[:, :30] = 200  # changes only the left half
    inside[:, 30:] = 130  # changes only the right half, by 30 levels
    mask = np.zeros((40, 60), np.float32)
    mask[:, 30:] = 1
    d = distance_matrix([base, outside, inside], mask, size=64)
    assert d[0, 1] == 0 and d[0, 2] == pytest.approx(30)
    np.testing.assert_allclose(d, d.T)
    assert np.all(np.diag(d) == 0)
    unmasked = distance_matrix([base, outside], None, size=64)
    assert unmasked[0, 1] == pytest.approx(50)  # half the pixels, 100 levels


def test_downscale_averages_every_pixel_also_on_uneven_sides():
    array = np.random.default_rng(0).random((37, 53))
    small = downscale(array, 8)
    assert max(small.shape) <= 8
    assert downscale(array, 64).shape == (37, 53)
    # the blocks partition the image: weighting each block by its pixel count gives back the total
    factor = -(-53 // 8)
    counts = np.outer(np.diff([*range(0, 37, factor), 37]), np.diff([*range(0, 53, factor), 53]))
    assert (small * counts).sum() == pytest.approx(array.sum())


def test_an_unknown_order_and_a_mismatched_mask_are_errors():
    with pytest.raises(ValueError, match="loop, path, seed"):
        order_for(np.zeros((2, 2)), "random")
    with pytest.raises(ValueError, match="mask shape"):
        distance_matrix([np.zeros((8, 8, 3))], np.ones((4, 4)))

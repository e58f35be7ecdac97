"""Frame ordering for loops: put independent images in the order that makes the smallest jumps between them.

The ``variations`` mode makes N inpainted variations of one picture; played in generation order, every cut is
as large as any other. Ordering them is a travelling-salesman problem on a distance matrix (mean absolute
difference inside the animated mask): a nearest-neighbour tour from frame 0, then 2-opt until no reversal
helps. "loop" closes the tour (the last frame also leads back into the first); "path" leaves it open, which is
what a ping-pong playback wants. Everything is numpy and deterministic: ties go to the lower index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Order = Literal["loop", "path", "seed"]
ORDERS: tuple[str, ...] = ("loop", "path", "seed")
_EPS = 1e-9  # a 2-opt move must shorten the tour by more than this (float noise never loops forever)


def order_images(
    images: Sequence[np.ndarray], mask: np.ndarray | None = None, how: Order = "loop", size: int = 64
) -> list[int]:
    """The play order of ``images`` (a permutation of their indices): ``how`` is "loop" (closed tour),
    "path" (open path) or "seed" (generation order). ``mask`` (H x W, 1 = animated) weights the distance."""
    return order_for(distance_matrix(images, mask, size), how)


def order_for(distances: np.ndarray, how: Order) -> list[int]:
    """The play order from a distance matrix (see :func:`order_images`)."""
    if how not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {how!r}")
    if how == "seed":
        return list(range(len(distances)))
    return shortest_order(distances, closed=how == "loop")


def distance_matrix(
    images: Sequence[np.ndarray], mask: np.ndarray | None = None, size: int = 64
) -> np.ndarray:
    """N x N mean absolute difference (0-255 scale) between images, weighted by ``mask``, on copies at most
    ``size`` pixels on their long side: ordering needs the gist of each image, not every pixel, and the
    matrix costs N^2 comparisons."""
    if not images:
        return np.zeros((0, 0))
    small = np.stack([_as_channels(downscale(np.asarray(image, dtype=np.float32), size)) for image in images])
    weights = _weights(mask, images[0].shape[:2], size)
    flat = small.reshape(len(images), -1, small.shape[-1])  # N x pixels x channels
    w = weights.reshape(-1) / weights.sum()
    distances = np.zeros((len(images), len(images)))
    for i in range(len(images)):
        per_pixel = np.abs(flat[i + 1 :] - flat[i]).mean(axis=-1)  # later images x pixels
        distances[i, i + 1 :] = per_pixel @ w
    return distances + distances.T


def downscale(array: np.ndarray, size: int) -> np.ndarray:
    """Area-average ``array`` (H x W or H x W x C) so that its long side is at most ``size`` pixels; every
    source pixel counts once, also when the sides don't divide evenly."""
    height, width = array.shape[:2]
    factor = max(1, -(-max(height, width) // size))
    if factor == 1:
        return array.astype(np.float64)
    rows = np.arange(0, height, factor)
    cols = np.arange(0, width, factor)
    summed = np.add.reduceat(np.add.reduceat(array.astype(np.float64), rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, height)), np.diff(np.append(cols, width)))
    return summed / (counts if array.ndim == 2 else counts[..., None])


def shortest_order(distances: np.ndarray, closed: bool) -> list[int]:
    """A short tour (``closed``) or path through every index: nearest neighbour from index 0, improved by
    2-opt. A tour starts at 0 and turns toward its smaller neighbour; a path starts at its lower-indexed
    end, so equal inputs always give the same list."""
    n = len(distances)
    if n <= 2:
        return list(range(n))
    order = _two_opt(nearest_neighbour(distances), distances, closed)
    if closed:
        return order if order[1] < order[-1] else [order[0], *order[:0:-1]]
    return order if order[0] < order[-1] else order[::-1]


def nearest_neighbour(distances: np.ndarray) -> list[int]:
    """From index 0, always on to the closest index not yet visited (the lowest index on a tie)."""
    n = len(distances)
    order, visited = [0], np.zeros(n, dtype=bool)
    visited[0] = True
    for _ in range(n - 1):
        row = np.where(visited, np.inf, distances[order[-1]])
        order.append(int(np.argmin(row)))
        visited[order[-1]] = True
    return order


def route_length(distances: np.ndarray, order: Sequence[int], closed: bool) -> float:
    """The summed distance between consecutive entries of ``order`` (and back to the start when ``closed``)."""
    index = np.asarray(order)
    total = float(distances[index[:-1], index[1:]].sum())
    return total + float(distances[index[-1], index[0]]) if closed and len(index) > 1 else total


def _two_opt(order: list[int], distances: np.ndarray, closed: bool) -> list[int]:
    """Reverse the segment ``order[i..j]`` that shortens the route most, until no reversal does. A closed
    tour keeps index 0 in front (every 2-opt move of a tour is reachable without moving it); an open path may
    reverse a segment up to either end, so its ends are free to change."""
    tour = np.asarray(order)
    while True:
        change = _reversal_changes(tour, distances, closed)
        i, j = np.unravel_index(int(np.argmin(change)), change.shape)
        if not change[i, j] < -_EPS:
            return [int(k) for k in tour]
        tour[i : j + 1] = tour[i : j + 1][::-1].copy()


def _reversal_changes(tour: np.ndarray, distances: np.ndarray, closed: bool) -> np.ndarray:
    """n x n: how much the route's length changes when ``tour[i..j]`` is reversed (inf where i..j is not a
    move). Reversing swaps the edge into position i and the edge out of position j for two new ones."""
    n = len(tour)
    before, after = np.roll(tour, 1), np.roll(tour, -1)  # tour[i - 1], tour[(j + 1) % n]
    entering = distances[before[:, None], tour[None, :]] - distances[before, tour][:, None]
    leaving = distances[tour[:, None], after[None, :]] - distances[tour, after][None, :]
    if not closed:  # a path has no edge into its first entry nor out of its last
        entering[0, :] = 0.0
        leaving[:, n - 1] = 0.0
    change = entering + leaving
    i, j = np.indices((n, n))
    invalid = j <= i
    if closed:
        invalid |= i == 0
    change[invalid] = np.inf
    return change


def _weights(mask: np.ndarray | None, shape: tuple[int, ...], size: int) -> np.ndarray:
    """The downscaled mask as per-pixel weights; uniform without a mask or when it is empty."""
    if mask is not None:
        if mask.shape != tuple(shape):
            raise ValueError(f"mask shape {mask.shape} differs from the images' {tuple(shape)}")
        weights = downscale(np.asarray(mask, dtype=np.float32), size)
        if weights.sum() > 0:
            return weights
    height, width = shape
    return np.ones(downscale(np.zeros((height, width), np.float32), size).shape)


def _as_channels(array: np.ndarray) -> np.ndarray:
    """H x W becomes H x W x 1, so grey and colour images share one code path."""
    return array[..., None] if array.ndim == 2 else array

"""Scores a picture against a toy-world caption, in pure numpy.

The background is the median colour of the picture's border in its top half and in its bottom half (a plain
background gives the same colour twice); the shape is every pixel far from both. Then:

- colour: the palette colour nearest the shape's median colour;
- shape: the mask cropped to its bounding box and resampled to 24x24, matched (intersection over union)
  against the same crop of each shape's template;
- position: the named position nearest the mask's centroid;
- size: the named size nearest the mask's area (on a log scale, between the two sizes' template areas).

:func:`judge` answers, per attribute the caption states, whether the picture shows it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from flipbook.toy.world import COLOURS, POSITIONS, SHAPES, SIZE, SIZES, Scene, parse_caption, render

_THRESHOLD = 60.0  # RGB distance from the background that counts as shape
_MIN_AREA = 6  # pixels; less is "no shape"
_GRID = 24
_PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)


@dataclass(frozen=True)
class Seen:
    """What the judge sees in one picture (None where there is no shape)."""

    colour: str | None
    shape: str | None
    size: str | None
    position: str | None
    background: tuple[str, str]
    centroid: tuple[float, float] | None
    area: float

    def attribute(self, name: str) -> object:
        return getattr(self, name)


def background_colours(image: np.ndarray) -> np.ndarray:
    """The median RGB of the border (2 px wide) in the top and bottom halves: shape (2, 3)."""
    pixels = np.asarray(image, dtype=np.float32)
    half = pixels.shape[0] // 2
    ring = np.ones(pixels.shape[:2], dtype=bool)
    ring[2:-2, 2:-2] = False
    top = pixels[:half][ring[:half]]
    bottom = pixels[half:][ring[half:]]
    return np.stack([np.median(top, axis=0), np.median(bottom, axis=0)])


def shape_mask(image: np.ndarray) -> np.ndarray:
    """Pixels whose colour is far from both background colours (a boolean array)."""
    pixels = np.asarray(image, dtype=np.float32)
    background = background_colours(pixels)
    distance = np.linalg.norm(pixels[:, :, None, :] - background[None, None], axis=-1).min(axis=-1)
    return distance > _THRESHOLD


def nearest_colour(rgb: np.ndarray) -> str:
    return list(COLOURS)[int(np.argmin(np.linalg.norm(_PALETTE - rgb, axis=1)))]


def _crop(mask: np.ndarray) -> np.ndarray:
    """The mask's bounding box resampled to _GRID x _GRID (nearest sample at cell centres)."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    rows = (y0 + (np.arange(_GRID) + 0.5) * (y1 - y0) / _GRID).astype(int)
    cols = (x0 + (np.arange(_GRID) + 0.5) * (x1 - x0) / _GRID).astype(int)
    return mask[np.ix_(rows, cols)]


@functools.cache
def _templates() -> dict[str, np.ndarray]:
    """Each shape, drawn large and in the center, cropped like a picture's mask."""
    out = {}
    for shape in SHAPES:
        picture = render(Scene("white", shape, "large", "in the center", ("black",)), size=SIZE * 2)
        out[shape] = _crop(picture.mean(axis=-1) > 127)
    return out


@functools.cache
def _size_threshold() -> float:
    """The area between a small and a large circle's, on a log scale (square pixels)."""
    small, large = (np.pi * radius**2 for radius in SIZES.values())
    return float(np.sqrt(small * large))


def classify_shape(mask: np.ndarray) -> str:
    crop = _crop(mask)
    scores = {
        shape: np.logical_and(crop, template).sum() / max(np.logical_or(crop, template).sum(), 1)
        for shape, template in _templates().items()
    }
    return max(scores, key=scores.get)


def look(image: np.ndarray) -> Seen:
    """What the picture shows."""
    pixels = np.asarray(image)
    scale = SIZE / pixels.shape[1]
    background = background_colours(pixels)
    seen_background = (nearest_colour(background[0]), nearest_colour(background[1]))
    mask = shape_mask(pixels)
    area = float(mask.sum()) * scale**2
    if mask.sum() < _MIN_AREA:
        return Seen(None, None, None, None, seen_background, None, area)
    ys, xs = np.nonzero(mask)
    centroid = (float(xs.mean()) * scale, float(ys.mean()) * scale)
    colour = nearest_colour(np.median(pixels[mask].astype(np.float32), axis=0))
    position = min(POSITIONS, key=lambda name: np.hypot(*np.subtract(POSITIONS[name], centroid)))
    size = "large" if area > _size_threshold() else "small"
    return Seen(colour, classify_shape(mask), size, position, seen_background, centroid, area)


def judge(image: np.ndarray, text: str) -> dict[str, bool]:
    """For each attribute ``text`` states, whether ``image`` shows it."""
    stated = parse_caption(text)
    seen = look(image)
    verdict = {}
    for name, value in stated.items():
        if name == "background":
            wanted = tuple(value) * 2 if len(value) == 1 else tuple(value)
            verdict[name] = seen.background == wanted
        else:
            verdict[name] = seen.attribute(name) == value
    return verdict

"""The toy world: a coloured shape on a plain or two-colour background, its caption, and its picture.

A :class:`Scene` is the ground truth; :func:`caption` says it in a small grammar (any of size, position and
background may be left out), :func:`parse_caption` reads a caption back into the attributes it states, and
:func:`render` draws the scene at 64x64 (anti-aliased by drawing at 4x and averaging). Everything random comes
from a ``numpy.random.Generator`` the caller seeds, so the same seed gives the same scenes and pictures.

Grammar::

    caption    = "a" [size] colour shape [position] ["," background "background"]
    size       = "small" | "large"
    position   = "on the left" | "on the right" | "at the top" | "at the bottom" | "in the center"
    background = colour | colour "and" colour        (two colours: top half, bottom half)
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
_SCALE = 4  # drawn at 4x, averaged down: anti-aliased edges

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (40, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (245, 220, 40),
    "purple": (140, 50, 180),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "star")
SIZES: dict[str, float] = {"small": 7.0, "large": 12.0}
"""Radius in pixels (the circle's; the other shapes are scaled to about the same area)."""
POSITIONS: dict[str, tuple[float, float]] = {
    "on the left": (20.0, 32.0),
    "on the right": (44.0, 32.0),
    "at the top": (32.0, 20.0),
    "at the bottom": (32.0, 44.0),
    "in the center": (32.0, 32.0),
}
"""Centre (x, y) in pixels of a 64x64 picture."""
JITTER = 4.0
"""Pictures place the centre up to this many pixels off its named position (a third of the way to the next
one: positions fill the picture nearly continuously, so a model learns that a shape can sit anywhere and a
camera move is not undone by the next frame's denoising)."""
SIZE_JITTER = 1.5
"""And the radius up to this many pixels off its named size (the sizes stay apart: 5.5-8.5 and 10.5-13.5)."""
ATTRIBUTES = ("colour", "shape", "size", "position", "background")


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    size: str
    position: str
    background: tuple[str, ...]  # one colour, or (top, bottom)
    dx: float = 0.0
    dy: float = 0.0
    dr: float = 0.0

    def key(self) -> tuple[str, ...]:
        """The scene's attributes, without the jitter."""
        return (self.colour, self.shape, self.size, self.position, *self.background)


def is_held_out(scene: Scene, every: int = 10) -> bool:
    """One attribute combination in ``every`` is kept out of training, for the held-out evaluation."""
    return zlib.crc32("|".join(scene.key()).encode()) % every == 0


def sample_scene(rng: np.random.Generator, *, held_out: bool | None = None) -> Scene:
    """A random scene; ``held_out`` True/False draws only from the held-out / training combinations."""
    while True:
        colours = list(COLOURS)
        colour = colours[rng.integers(len(colours))]
        others = [c for c in colours if c != colour]
        if rng.random() < 0.5:
            background: tuple[str, ...] = (others[rng.integers(len(others))],)
        else:
            first, second = rng.choice(len(others), size=2, replace=False)
            background = (others[first], others[second])
        scene = Scene(
            colour=colour,
            shape=SHAPES[rng.integers(len(SHAPES))],
            size=list(SIZES)[rng.integers(len(SIZES))],
            position=list(POSITIONS)[rng.integers(len(POSITIONS))],
            background=background,
            dx=float(rng.uniform(-JITTER, JITTER)),
            dy=float(rng.uniform(-JITTER, JITTER)),
            dr=float(rng.uniform(-SIZE_JITTER, SIZE_JITTER)),
        )
        if held_out is None or is_held_out(scene) == held_out:
            return scene


def caption(scene: Scene, *, size: bool = True, position: bool = True, background: bool = True) -> str:
    """The scene in the grammar; the flags leave attributes out (colour and shape are always said)."""
    words = ["a", *([scene.size] if size else []), scene.colour, scene.shape]
    if position:
        words.append(scene.position)
    text = " ".join(words)
    if background:
        text += ", " + " and ".join(scene.background) + " background"
    return text


def random_caption(scene: Scene, rng: np.random.Generator, drop: float = 0.3) -> str:
    """The scene's caption with each optional attribute left out with probability ``drop``."""
    keep = rng.random(3) >= drop
    return caption(scene, size=bool(keep[0]), position=bool(keep[1]), background=bool(keep[2]))


def _alternatives(words) -> str:
    return "(?:" + "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True)) + ")"


_COLOUR = _alternatives(COLOURS)
_CAPTION = re.compile(
    rf"a (?:(?P<size>{_alternatives(SIZES)}) )?(?P<colour>{_COLOUR}) (?P<shape>{_alternatives(SHAPES)})"
    rf"(?: (?P<position>{_alternatives(POSITIONS)}))?"
    rf"(?:, (?P<background>{_COLOUR}(?: and {_COLOUR})?) background)?"
)


def parse_caption(text: str) -> dict[str, object]:
    """The attributes a caption states: colour and shape always, size/position/background where given.

    Raises ``ValueError`` for text outside the grammar (case and surrounding spaces are ignored).
    """
    match = _CAPTION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"not a caption of the toy grammar: {text!r}")
    found: dict[str, object] = {k: v for k, v in match.groupdict().items() if v is not None}
    if "background" in found:
        found["background"] = tuple(str(found["background"]).split(" and "))
    return found


def scene_from_caption(text: str, rng: np.random.Generator) -> Scene:
    """A scene that fits ``text``: what it leaves out drawn at random."""
    stated = parse_caption(text)
    scene = sample_scene(rng)
    scene = replace(scene, **{k: v for k, v in stated.items() if k not in ("colour", "background")})
    scene = replace(scene, colour=str(stated["colour"]))
    if "background" in stated:
        return replace(scene, background=stated["background"])
    if scene.colour in scene.background:
        others = [c for c in COLOURS if c != scene.colour]
        return replace(scene, background=(others[rng.integers(len(others))],))
    return scene


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """The outline of ``shape`` centred at (cx, cy) with radius ``r`` (a circle as a 64-gon)."""
    if shape == "circle":
        angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        radii = np.full(64, r)
    elif shape == "square":
        half = r * 0.89  # same area as the circle
        return [
            (cx - half, cy - half),
            (cx + half, cy - half),
            (cx + half, cy + half),
            (cx - half, cy + half),
        ]
    elif shape == "triangle":
        angles = np.deg2rad([-90.0, 30.0, 150.0])
        radii = np.full(3, r * 1.35)
        cy += r * 0.15  # optically centred: the triangle's centroid sits near (cx, cy)
    elif shape == "star":
        angles = np.deg2rad(-90.0 + 36.0 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, r * 1.45, r * 1.45 * 0.45)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return [(cx + ra * np.cos(a), cy + ra * np.sin(a)) for a, ra in zip(angles, radii, strict=True)]


def _outline(scene: Scene, size: int) -> list[tuple[float, float]]:
    """The shape's outline in the 4x drawing's pixels."""
    x, y = POSITIONS[scene.position]
    unit = _SCALE * size / SIZE
    r = (SIZES[scene.size] + scene.dr) * unit
    return shape_polygon(scene.shape, (x + scene.dx) * unit, (y + scene.dy) * unit, r)


def render(scene: Scene, size: int = SIZE) -> np.ndarray:
    """The scene as a ``size`` x ``size`` RGB uint8 array."""
    big = size * _SCALE
    image = Image.new("RGB", (big, big), COLOURS[scene.background[0]])
    draw = ImageDraw.Draw(image)
    if len(scene.background) == 2:
        draw.rectangle((0, big // 2, big, big), fill=COLOURS[scene.background[1]])
    draw.polygon(_outline(scene, size), fill=COLOURS[scene.colour])
    return np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def coverage(scene: Scene, size: int = SIZE) -> np.ndarray:
    """How much of each pixel the shape covers, in [0, 1]: a ``size`` x ``size`` float32 array."""
    big = size * _SCALE
    image = Image.new("L", (big, big), 0)
    ImageDraw.Draw(image).polygon(_outline(scene, size), fill=255)
    return np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0

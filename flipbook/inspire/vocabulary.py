"""Vocabularies and the keyframed prompt generator behind ``flipbook inspire``.

A prompt is built as ``subject, scene, detail, detail, style, lighting, palette, camera, quality``, e.g.
``a lone lighthouse, rugged cliffs above crashing surf, sea spray in the air, ..., oil painting with visible
brushstrokes, golden hour, teal and orange, wide angle, highly detailed, masterpiece``.

What stays and what changes along the animation (so that morphs between keyframes stay coherent):

- **fixed for the whole call**: the style/medium (drawn once, or ``style=``), the palette and the two quality
  words;
- **per keyframe**: the subject, scene and first detail come from the keyframe's topic (keyframe ``i`` uses
  ``topics[i % len(topics)]``); the second detail is borrowed from another requested topic half of the time
  (when there are several), which blends the topics; lighting and camera words change too.

Entries are dealt like cards from a shuffled deck per list, so nothing repeats until a list is used up, and
consecutive keyframes never share a subject. Everything is drawn from one ``random.Random(seed)``; the style,
palette and quality words are drawn first whatever ``style=`` says, so the same seed with another ``--style``
changes only the style.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from flipbook.errors import FlipbookError
from flipbook.spec.toml_writer import toml_string

MAX_KEYFRAMES = 1000
"""The most keyframes one call writes."""
NEGATIVE = "blurry, lowres, watermark, text, signature, jpeg artifacts, deformed"
"""The short negative prompt appended after Deforum's ``--neg`` marker when ``negative=True``."""
NEG_MARKER = " --neg "
TOPIC_LISTS = ("subjects", "scenes", "details")
"""The lists every topic folder holds."""
SHARED_LISTS = ("styles", "lighting", "palettes", "camera", "quality")
"""The lists shared by all topics."""
QUALITY_WORDS = 2
BORROW_CHANCE = 0.5
"""How often, with several topics, a keyframe's second detail comes from another topic."""

_ALIASES = {"sea": "ocean", "sciencefiction": "scifi", "scientificfiction": "scifi"}
"""Other spellings, as :func:`_key` reduces them, of a topic's key."""


@dataclass(frozen=True)
class Topic:
    """One topic's vocabulary: who or what is shown, where, and small details to add."""

    name: str
    subjects: tuple[str, ...]
    scenes: tuple[str, ...]
    details: tuple[str, ...]


# ------------------------------------------------------------------------------------------------- loading
def parse_entries(text: str) -> list[str]:
    """The entries of a vocabulary file: one per line, stripped; blank lines and ``#`` comment lines skipped."""
    entries = (line.strip() for line in text.splitlines())
    return [entry for entry in entries if entry and not entry.startswith("#")]


def data_dir() -> Traversable:
    """The folder of vocabulary files shipped in the package."""
    return resources.files("flipbook.inspire").joinpath("data")


@functools.cache
def load_list(*path: str) -> tuple[str, ...]:
    """The entries of ``data/<path...>.txt``: ``load_list("styles")``, ``load_list("topics", "ocean", "scenes")``."""
    *folders, name = path
    return tuple(parse_entries(data_dir().joinpath(*folders, f"{name}.txt").read_text(encoding="utf-8")))


@functools.cache
def _topic_names() -> tuple[str, ...]:
    """The topic folders under ``data/topics``, sorted."""
    return tuple(sorted(entry.name for entry in data_dir().joinpath("topics").iterdir() if entry.is_dir()))


def topics() -> list[str]:
    """The available topic names, sorted (``["architecture", "city", ...]``)."""
    return list(_topic_names())


def load_topic(name: str) -> Topic:
    """The vocabulary of one topic; ``name`` is matched as :func:`resolve_topic` does."""
    canonical = resolve_topic(name)
    return Topic(canonical, *(load_list("topics", canonical, part) for part in TOPIC_LISTS))


# ------------------------------------------------------------------------------------------------- topics
def _key(name: str) -> str:
    """A topic name reduced to lower-case letters and digits: ``" Sci Fi "`` and ``"sci-fi"`` → ``"scifi"``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def resolve_topic(name: str) -> str:
    """The canonical topic for a user's spelling: case, spaces and dashes don't matter (``"SciFi"`` →
    ``"sci-fi"``), nor a plural ``s`` (``"mountain"`` → ``"mountains"``); unknown → FlipbookError."""
    by_key = {_key(topic): topic for topic in _topic_names()}
    key = _key(name) if isinstance(name, str) else ""
    key = _ALIASES.get(key, key)
    for candidate in (key, key.removesuffix("s"), key + "s"):
        if candidate in by_key:
            return by_key[candidate]
    raise FlipbookError("topics", name, "one of: " + ", ".join(_topic_names()))


def parse_topics(text: str) -> list[str]:
    """Topic names from a comma-separated string (``"ocean, city"``), empty items dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _resolve_all(names: Sequence[str]) -> list[str]:
    """Canonical topics in the order given, each once; a bare string is read as a comma-separated list."""
    if isinstance(names, str):
        names = parse_topics(names)
    resolved = list(dict.fromkeys(resolve_topic(name) for name in names))
    if not resolved:
        raise FlipbookError("topics", list(names), "at least one of: " + ", ".join(_topic_names()))
    return resolved


# ------------------------------------------------------------------------------------------------- drawing
class _Deck:
    """Deals a list's entries in shuffled order, reshuffling once all are dealt; never the same entry twice
    in a row (also across a reshuffle), as long as the list has two entries."""

    def __init__(self, entries: Sequence[str], rng: random.Random):
        self._entries = list(entries)
        self._rng = rng
        self._pile: list[str] = []
        self._last: str | None = None

    def draw(self) -> str:
        """The next entry."""
        if not self._pile:
            self._pile = self._entries[:]
            self._rng.shuffle(self._pile)
            if len(self._pile) > 1 and self._pile[-1] == self._last:
                self._pile[0], self._pile[-1] = self._pile[-1], self._pile[0]
        self._last = self._pile.pop()
        return self._last


class _TopicDecks:
    """A deck for each of a topic's lists."""

    def __init__(self, topic: Topic, rng: random.Random):
        self.subjects = _Deck(topic.subjects, rng)
        self.scenes = _Deck(topic.scenes, rng)
        self.details = _Deck(topic.details, rng)


def _check_range(field: str, value: int, low: int, high: int | None = None) -> None:
    """FlipbookError naming ``field`` unless ``value`` is a whole number in ``low..high``."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if not ok or (high is not None and value > high):
        allowed = f"a whole number from {low}" + (f" to {high}" if high is not None else "")
        raise FlipbookError(field, value, allowed)


def _check_style(style: str | None) -> str | None:
    """The stripped style phrase, or None; a blank phrase is an error rather than a silent no-style."""
    if style is None:
        return None
    if not isinstance(style, str) or not style.strip():
        raise FlipbookError("style", style, "a style phrase such as 'watercolor illustration'")
    return style.strip()


def _join(parts: Sequence[str]) -> str:
    """Parts joined with ``", "``, each once, in order."""
    return ", ".join(dict.fromkeys(parts))


def inspire(
    topics: list[str],
    n: int = 8,
    *,
    seed: int = 0,
    every: int = 24,
    start: int = 0,
    style: str | None = None,
    negative: bool = False,
) -> list[str]:
    """``n`` keyframed prompt lines ``"FRAME: prompt"`` at frames ``start, start + every, ...``.

    Keyframe ``i`` takes its subject, scene and first detail from ``topics[i % len(topics)]``, may borrow its
    second detail from another of the topics, and gets its own lighting and camera words; the style (``style``
    or one drawn per call), palette and quality words are the same on every line. The same arguments always
    give the same lines. ``negative`` appends Deforum's ``" --neg "`` and a short negative prompt. Unknown
    topics, ``n`` outside 1..1000, ``every`` < 1 or ``start`` < 0 raise FlipbookError naming the field.
    """
    names = _resolve_all(topics)
    _check_range("n", n, 1, MAX_KEYFRAMES)
    _check_range("every", every, 1)
    _check_range("start", start, 0)
    fixed_style = _check_style(style)
    rng = random.Random(seed)
    drawn_style = rng.choice(load_list("styles"))
    palette = rng.choice(load_list("palettes"))
    quality = _join(rng.sample(load_list("quality"), QUALITY_WORDS))
    decks = [_TopicDecks(load_topic(name), rng) for name in names]
    lighting, camera = _Deck(load_list("lighting"), rng), _Deck(load_list("camera"), rng)
    lines = []
    for i in range(n):
        own = decks[i % len(decks)]
        second = own
        if len(decks) > 1 and rng.random() < BORROW_CHANCE:
            others = [deck for deck in decks if deck is not own]
            second = others[rng.randrange(len(others))]
        parts = [own.subjects.draw(), own.scenes.draw(), own.details.draw(), second.details.draw()]
        parts += [fixed_style or drawn_style, lighting.draw(), palette, camera.draw(), quality]
        prompt = _join(parts) + (NEG_MARKER + NEGATIVE if negative else "")
        lines.append(f"{start + i * every}: {prompt}")
    return lines


# ------------------------------------------------------------------------------------------------- output
def split_line(line: str) -> tuple[int, str]:
    """``"24: a prompt"`` → ``(24, "a prompt")``."""
    frame, sep, prompt = line.partition(": ")
    if not sep or not frame.strip().isdigit():
        raise FlipbookError("line", line, "'FRAME: prompt' with a whole frame number")
    return int(frame), prompt


def prompts_toml(lines: Sequence[str]) -> str:
    """``FRAME: prompt`` lines as a ``[prompts]`` table for a flipbook TOML spec (``"0" = "..."``)."""
    rows = ["[prompts]"]
    for line in lines:
        frame, prompt = split_line(line)
        rows.append(f"{toml_string(str(frame))} = {toml_string(prompt)}")
    return "\n".join(rows) + "\n"

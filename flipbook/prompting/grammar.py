"""Prompt syntax as AUTOMATIC1111's web UI reads it: attention weights, LoRA tags and composable parts.

People paste prompts from A1111 (and from sites that share A1111 prompts), so the same text has to mean the
same thing here. Three pure functions, no torch:

* :func:`parse_attention` -- ``(word)``, ``[word]``, ``(word:1.3)``, escapes and ``BREAK`` into weighted
  pieces;
* :func:`extract_loras` -- ``<lora:NAME:WEIGHT>`` tags out of the prompt;
* :func:`split_composable` -- ``a cat :0.7 AND a dog`` into composable-diffusion parts.

A1111 applies them in the order extract_loras -> split_composable -> (prompt editing) -> parse_attention.
Every problem with the user's text is raised as :class:`FlipbookError`; nothing else escapes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from flipbook.errors import FlipbookError

ROUND_MULTIPLIER = 1.1
"""``(text)`` multiplies the attention of ``text`` by this."""
SQUARE_MULTIPLIER = 1 / 1.1
"""``[text]`` multiplies the attention of ``text`` by this (A1111 computes it as ``1 / 1.1`` too)."""
BREAK_PIECE: tuple[str, float] = ("BREAK", -1.0)
"""The piece :func:`parse_attention` yields for the keyword ``BREAK`` (start a new 75-token chunk)."""

LORA_KINDS = ("lora", "lyco")
"""Extra-network tag kinds read as LoRA; ``lyco`` is the old LyCORIS extension's name, an alias in A1111."""

_ATTENTION_ALLOWED = (
    "a prompt where (text) and [text] add and remove emphasis, (text:WEIGHT) sets it with WEIGHT a number "
    "> 0, and \\( \\) \\[ \\] \\\\ are literal characters"
)
_LORA_ALLOWED = (
    "a prompt with <lora:NAME>, <lora:NAME:WEIGHT> or <lora:NAME:TE_WEIGHT:UNET_WEIGHT> tags "
    "(also te=WEIGHT and unet=WEIGHT; <lyco:...> is the same) where each WEIGHT is a finite number"
)
_COMPOSABLE_ALLOWED = (
    "prompt parts joined by AND or | with text on both sides, each optionally ending in :WEIGHT "
    "with WEIGHT a finite number"
)

# One token of the attention syntax per match. The alternatives are tried in this order, like A1111's
# tokenizer: an escape pair, any other backslash (A1111 drops it), an opening bracket, ":NUMBER)" (closes a
# round bracket with an explicit weight), a closing bracket, a run of plain text, and a lone colon.
_ATTENTION_TOKEN = re.compile(
    r"""
      \\(?P<escaped>[()\[\]\\])
    | (?P<backslash>\\)
    | (?P<open>[(\[])
    | :\s*(?P<weight>[+-]?[.\d]+)\s*\)
    | (?P<close>[)\]])
    | (?P<text>[^\\()\[\]:]+)
    | (?P<colon>:)
    """,
    re.VERBOSE,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.DOTALL)
_EXTRA_NETWORK_TAG = re.compile(r"<(\w+):([^>]+)>")
_AND = re.compile(r"\bAND\b")
_PART_WEIGHT = re.compile(r"(.*?)\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+))\s*", re.DOTALL)


# --- attention ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Piece:
    text: str
    weight: float = 1.0
    is_break: bool = False


def parse_attention(text: str) -> list[tuple[str, float]]:
    """Split ``text`` into ``(piece, weight)`` pairs with A1111's emphasis rules.

    ``(x)`` multiplies by 1.1, ``[x]`` divides by 1.1, ``(x:1.5)`` multiplies by 1.5, and nested brackets
    multiply. Brackets still open at the end are closed there; a closing bracket with nothing to close is
    plain text, as is ``:1.5)`` without an open round bracket. ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are
    the literal characters; any other backslash is dropped (A1111 does the same). Neighbouring pieces of
    equal weight are merged. The word ``BREAK`` (with the white space around it) becomes :data:`BREAK_PIECE`.
    The weights are multiplied in the same order as A1111 does, so they agree to the last bit.

    Two deliberate differences from A1111, both A1111 bugs: a ``BREAK`` inside brackets stays ``("BREAK",
    -1.0)`` (A1111 scales it to e.g. -1.1 and then feeds the word "BREAK" to CLIP), and two ``BREAK`` in a
    row stay two pieces (A1111 merges them into the text "BREAKBREAK"). Empty pieces are left out; empty text
    gives ``[("", 1.0)]``. Weights must end up finite and > 0, so ``(x:0)``, ``(x:-1)``, ``(x:1.2.3)`` and
    absurdly deep nesting are a :class:`FlipbookError`.
    """
    if not isinstance(text, str):
        raise FlipbookError("prompt", text, "a string")
    pieces: list[_Piece] = []
    round_starts: list[int] = []
    square_starts: list[int] = []

    for match in _ATTENTION_TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "escaped":
            pieces.append(_Piece(match["escaped"]))
        elif kind == "backslash":
            continue
        elif kind == "open":
            (round_starts if match["open"] == "(" else square_starts).append(len(pieces))
        elif kind == "weight" and round_starts:
            _scale(pieces, round_starts.pop(), _explicit_weight(text, match["weight"]))
        elif kind == "close" and match["close"] == ")" and round_starts:
            _scale(pieces, round_starts.pop(), ROUND_MULTIPLIER)
        elif kind == "close" and match["close"] == "]" and square_starts:
            _scale(pieces, square_starts.pop(), SQUARE_MULTIPLIER)
        else:
            _append_text(pieces, match.group(0))

    # A1111 closes the still-open round brackets first, then the square ones, each from the outermost.
    for start in round_starts:
        _scale(pieces, start, ROUND_MULTIPLIER)
    for start in square_starts:
        _scale(pieces, start, SQUARE_MULTIPLIER)
    return _merged(text, pieces)


def _append_text(pieces: list[_Piece], chunk: str) -> None:
    """Plain text, with every ``BREAK`` in it turned into a break piece."""
    for index, part in enumerate(_BREAK.split(chunk)):
        if index:
            pieces.append(_Piece(BREAK_PIECE[0], BREAK_PIECE[1], is_break=True))
        pieces.append(_Piece(part))


def _scale(pieces: list[_Piece], start: int, factor: float) -> None:
    """Multiply every piece from ``start`` on; why in place: the float products then match A1111's exactly."""
    for piece in pieces[start:]:
        if not piece.is_break:
            piece.weight *= factor


def _explicit_weight(text: str, raw: str) -> float:
    """The number in ``(x:NUMBER)``; why check: A1111 crashes on ``(x:1.2.3)`` and accepts nonsense like 0."""
    try:
        weight = float(raw)
    except ValueError:
        raise FlipbookError("prompt", text, _ATTENTION_ALLOWED, detail=f"{raw!r} is not a number") from None
    if not math.isfinite(weight) or weight <= 0:
        raise FlipbookError("prompt", text, _ATTENTION_ALLOWED, detail=f"weight {raw!r} is not a number > 0")
    return weight


def _merged(text: str, pieces: list[_Piece]) -> list[tuple[str, float]]:
    """Drop empty pieces, merge neighbours of equal weight, and check every weight is usable."""
    result: list[tuple[str, float]] = []
    previous_break = True  # nothing to merge into yet
    for piece in pieces:
        if piece.is_break:
            result.append(BREAK_PIECE)
            previous_break = True
            continue
        if not piece.text:
            continue
        if not math.isfinite(piece.weight) or piece.weight <= 0:
            detail = "brackets are nested so deeply the weight is unusable"
            raise FlipbookError("prompt", text, _ATTENTION_ALLOWED, detail=detail)
        if not previous_break and result[-1][1] == piece.weight:
            result[-1] = (result[-1][0] + piece.text, piece.weight)
        else:
            result.append((piece.text, piece.weight))
        previous_break = False
    return result or [("", 1.0)]


# --- LoRA tags ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraTag:
    """One ``<lora:...>`` tag: which LoRA, and how strongly it changes the UNet and the text encoder.

    ``weight`` is the UNet multiplier and ``te_weight`` the text encoder's; A1111 lets them differ
    (``<lora:NAME:TE:UNET>``) and uses one number for both otherwise, so ``te_weight`` defaults to ``weight``.
    """

    name: str
    weight: float = 1.0
    te_weight: float | None = None

    def __post_init__(self) -> None:
        if self.te_weight is None:
            object.__setattr__(self, "te_weight", self.weight)


def extract_loras(text: str) -> tuple[str, list[LoraTag]]:
    """Remove the ``<lora:...>`` tags from a prompt and return the rest of the text and the tags, in order.

    Why remove them: the tags are instructions, not words for CLIP. The forms A1111 reads: ``<lora:NAME>``
    (weight 1.0), ``<lora:NAME:W>`` (W for text encoder and UNet), ``<lora:NAME:TE:UNET>``, and named
    ``te=W`` / ``unet=W`` (when only the text encoder weight is given the UNet uses it too). ``<lyco:...>``
    is the same. The text around a tag is kept as it is (A1111 leaves the commas and spaces too). Other tag
    kinds (``<hypernet:...>``), A1111's fourth ``dyn`` argument, an empty name and a weight that is not a
    finite number are a :class:`FlipbookError`; A1111 would skip or crash on them.
    """
    if not isinstance(text, str):
        raise FlipbookError("prompt", text, "a string")
    tags: list[LoraTag] = []

    def take(match: re.Match[str]) -> str:
        kind, arguments = match.group(1), match.group(2)
        if kind not in LORA_KINDS:
            allowed = f"an extra-network tag of kind {' or '.join(LORA_KINDS)}, e.g. <lora:NAME:0.8>"
            raise FlipbookError("prompt", match.group(0), allowed, detail=f"unknown tag kind {kind!r}")
        tags.append(_lora_tag(match.group(0), arguments))
        return ""

    return _EXTRA_NETWORK_TAG.sub(take, text), tags


def _lora_tag(tag: str, arguments: str) -> LoraTag:
    """``NAME[:TE[:UNET]]`` plus ``te=``/``unet=`` into a :class:`LoraTag`, with A1111's defaults."""
    name, *items = arguments.split(":")
    name = name.strip()
    if not name:
        raise FlipbookError("prompt", tag, _LORA_ALLOWED, detail="the LoRA name is empty")
    positional: list[str] = []
    named: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if equals:
            key = key.strip()
            if key not in ("te", "unet"):
                raise FlipbookError("prompt", tag, _LORA_ALLOWED, detail=f"unsupported argument {key!r}")
            named[key] = value
        else:
            positional.append(item)
    if len(positional) > 2:
        raise FlipbookError("prompt", tag, _LORA_ALLOWED, detail="at most two weights (text encoder, UNet)")
    te_weight = _lora_weight(tag, positional[0]) if positional else 1.0
    if "te" in named:
        te_weight = _lora_weight(tag, named["te"])
    unet_weight = _lora_weight(tag, positional[1]) if len(positional) > 1 else te_weight
    if "unet" in named:
        unet_weight = _lora_weight(tag, named["unet"])
    return LoraTag(name=name, weight=unet_weight, te_weight=te_weight)


def _lora_weight(tag: str, raw: str) -> float:
    """A LoRA multiplier; negative is fine (slider LoRAs use it), non-numbers and infinities are not."""
    try:
        weight = float(raw)
    except ValueError:
        raise FlipbookError("prompt", tag, _LORA_ALLOWED, detail=f"weight {raw!r} is not a number") from None
    if not math.isfinite(weight):
        raise FlipbookError("prompt", tag, _LORA_ALLOWED, detail=f"weight {raw!r} is not finite")
    return weight


# --- composable diffusion -----------------------------------------------------------------------------------


def split_composable(text: str) -> list[tuple[str, float]]:
    """Split a prompt into composable-diffusion parts ``(text, weight)``, each part encoded separately.

    Parts are separated by the word ``AND`` (upper case, a whole word, as in A1111) or by ``|``, but only
    outside brackets: inside ``[...]`` a ``|`` is A1111's prompt alternation (``[cat|dog]``) and must stay,
    and an escaped ``\\|`` never splits. Each part may end in ``:WEIGHT`` (``a cat :0.7``); the default is
    1.0 and negative weights are allowed (they push away from that part). ``(word:1.2)`` at the end of a part
    is attention, not a part weight, because the number is not the last thing in the part. White space around
    parts is stripped. Empty parts between separators are a :class:`FlipbookError` (usually a typo).
    """
    if not isinstance(text, str):
        raise FlipbookError("prompt", text, "a string")
    parts = [_weighted_part(text, raw) for raw in _top_level_parts(text)]
    if len(parts) > 1 and any(not part for part, _ in parts):
        raise FlipbookError("prompt", text, _COMPOSABLE_ALLOWED, detail="a part is empty")
    return parts


def _top_level_parts(text: str) -> list[str]:
    """The text between top-level separators (``AND`` and ``|`` outside any bracket)."""
    depths: list[int] = []
    escaped: list[bool] = []
    depth = 0
    after_backslash = False
    for char in text:
        depths.append(depth)
        escaped.append(after_backslash)
        if after_backslash:
            after_backslash = False
        elif char == "\\":
            after_backslash = True
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth = max(0, depth - 1)

    separators = [(i, i + 1) for i, char in enumerate(text) if char == "|" and not (depths[i] or escaped[i])]
    separators += [match.span() for match in _AND.finditer(text) if not depths[match.start()]]
    parts: list[str] = []
    position = 0
    for start, end in sorted(separators):
        parts.append(text[position:start])
        position = end
    parts.append(text[position:])
    return parts


def _weighted_part(prompt: str, raw: str) -> tuple[str, float]:
    """One part's text and its trailing ``:WEIGHT`` (1.0 when there is none)."""
    part = raw.strip()
    match = _PART_WEIGHT.fullmatch(part)
    if match is None:
        return part, 1.0
    weight = float(match.group(2))
    if not math.isfinite(weight):
        detail = f"weight {match.group(2)!r} is too large"
        raise FlipbookError("prompt", prompt, _COMPOSABLE_ALLOWED, detail=detail)
    return match.group(1).strip(), weight

"""A contact sheet: evenly spaced frames of an animation as one PNG grid, each labelled with its frame index.

Why: a GIF or video has to be played to be judged, while a sheet shows the whole animation's drift, colour
and motion at a glance (and in an issue, a chat or a README). At most :data:`MAX_CELLS` frames are shown so
the sheet stays readable for long animations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from flipbook.errors import FlipbookError
from flipbook.io.atomic import atomic_target
from flipbook.io.metadata import png_info
from flipbook.io.writers import PNG_COMPRESS_LEVEL, Frame, normalise_frames

MAX_CELLS = 64
GAP = 4  # pixels between cells and around the grid
BACKGROUND = (24, 24, 24)
LABEL_COLOUR = (255, 255, 255)
LABEL_BOX = (0, 0, 0)
LABEL_PADDING = 2


def contact_indices(n_frames: int, max_cells: int = MAX_CELLS) -> list[int]:
    """Up to ``max_cells`` evenly spaced frame indices, always including the first and the last frame."""
    if n_frames <= max_cells:
        return list(range(n_frames))
    return [int(i) for i in np.unique(np.linspace(0, n_frames - 1, max_cells).round().astype(int))]


def contact_sheet(
    frames: Iterable[Frame],
    *,
    columns: int | None = None,
    thumb_width: int = 256,
    label: bool = True,
    labels: Sequence[str] | None = None,
) -> Image.Image:
    """An RGB image: a grid of thumbnails ``thumb_width`` wide, row by row, with :data:`GAP` pixels between.

    ``columns`` defaults to a near-square grid (``ceil(sqrt(cells))``). Thumbnail height keeps the frames'
    aspect ratio. With ``label`` the frame index is drawn small in each cell's bottom-left corner in Pillow's
    default font on a dark box, so it reads on any picture; ``labels`` (one per frame) replace the indices.
    """
    arrays = normalise_frames(frames)
    indices = contact_indices(len(arrays))
    columns = _check_columns(columns, len(indices))
    _check_thumb_width(thumb_width)
    rows = math.ceil(len(indices) / columns)
    height, width = arrays[0].shape[:2]
    thumb_height = max(1, round(height * thumb_width / width))
    sheet = Image.new(
        "RGB",
        (GAP + columns * (thumb_width + GAP), GAP + rows * (thumb_height + GAP)),
        BACKGROUND,
    )
    font = ImageFont.load_default() if label else None
    for cell, index in enumerate(indices):
        thumb = Image.fromarray(arrays[index]).resize((thumb_width, thumb_height), Image.Resampling.LANCZOS)
        x = GAP + (cell % columns) * (thumb_width + GAP)
        y = GAP + (cell // columns) * (thumb_height + GAP)
        sheet.paste(thumb, (x, y))
        if font is not None:
            text = str(index) if labels is None else labels[index]
            _draw_label(ImageDraw.Draw(sheet), text, (x, y + thumb_height), font)
    return sheet


def write_contact_sheet(
    frames: Iterable[Frame],
    path: Path,
    *,
    columns: int | None = None,
    thumb_width: int = 256,
    label: bool = True,
    labels: Sequence[str] | None = None,
    pnginfo_text: str | None = None,
    spec: dict | None = None,
) -> Path:
    """Save :func:`contact_sheet` as a PNG (atomically) with the ``parameters`` and ``flipbook_spec`` chunks."""
    sheet = contact_sheet(frames, columns=columns, thumb_width=thumb_width, label=label, labels=labels)
    info = png_info(spec, pnginfo_text)
    path = Path(path)
    with atomic_target(path) as tmp:
        sheet.save(tmp, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    return path


def _draw_label(draw: ImageDraw.ImageDraw, text: str, bottom_left: tuple[int, int], font: object) -> None:
    """The text on a dark box whose bottom-left corner is the cell's; why a box: labels must read on white."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x, y = bottom_left[0], bottom_left[1] - (bottom - top) - 2 * LABEL_PADDING
    box = (x, y, x + (right - left) + 2 * LABEL_PADDING, bottom_left[1])
    draw.rectangle(box, fill=LABEL_BOX)
    draw.text((x + LABEL_PADDING - left, y + LABEL_PADDING - top), text, fill=LABEL_COLOUR, font=font)


def _check_columns(columns: int | None, cells: int) -> int:
    if columns is None:
        return math.ceil(math.sqrt(cells))
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise FlipbookError("contact.columns", columns, "an integer >= 1, or None for a near-square grid")
    return min(columns, cells)


def _check_thumb_width(thumb_width: int) -> None:
    if isinstance(thumb_width, bool) or not isinstance(thumb_width, int) or not 8 <= thumb_width <= 4096:
        raise FlipbookError("contact.thumb_width", thumb_width, "an integer from 8 to 4096 (pixels)")

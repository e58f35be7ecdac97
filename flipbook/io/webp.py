"""Animated WebP written frame by frame, so memory stays flat however long the clip.

libwebp's animation encoder (what Pillow's ``save(save_all=True)`` uses) keeps every compressed frame until it
assembles the file at the end. Here each frame is compressed on its own by libwebp's still encoder (through
Pillow: the same ``quality``, ``lossless`` and ``method``) and written at once into the animated WebP
container (RIFF ``VP8X``, ``ANIM``, one ``ANMF`` per frame, then the ``XMP`` packet; the RIFF size is filled
in at the end). Like the animation encoder it merges a frame identical to the one before (adding its duration)
and stores only the rectangle that changed since the frame before (its corner on even pixels, as ``ANMF``
requires), drawn without blending over what was shown. What it does not do is libwebp's search for a smaller
encoding across frames (sub-frames blended over the previous frame's pixels): on content where every pixel
moves (a camera path) the files are the same size, on partly still content they can be larger (see
``benchmarks/RESULTS.md``, ``memory``).

Memory: two raw frames (the frame and the one before it, for the comparison) and one compressed frame (held
until the next frame says whether its duration grows).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from io import BytesIO
from typing import BinaryIO

import numpy as np
from PIL import Image

_ANIMATION, _XMP = 0x02, 0x04  # VP8X flags
_NO_BLEND = 0x02  # ANMF flags: draw the frame's rectangle as it is (disposal: none)
_BITSTREAM = (b"ALPH", b"VP8 ", b"VP8L")  # the chunks of a still WebP that make a frame's image


def write_animated_webp(
    fp: BinaryIO,
    frame: Callable[[int], np.ndarray],
    durations: Sequence[int],
    *,
    quality: int,
    lossless: bool,
    method: int,
    loop: int,
    xmp: bytes = b"",
) -> None:
    """Write frames ``frame(0)`` .. (uint8 H x W x 3, one size), ``durations[i]`` ms each, as an animated
    WebP into ``fp`` (seekable: the RIFF size is written last); ``loop`` 0 repeats forever, ``xmp`` (an XMP
    packet, may be empty) is stored in an ``XMP`` chunk."""
    height, width = frame(0).shape[:2]
    start = fp.tell()
    fp.write(b"RIFF\0\0\0\0WEBP")
    flags = _ANIMATION | (_XMP if xmp else 0)
    _chunk(fp, b"VP8X", struct.pack("<B3x", flags) + _u24(width - 1) + _u24(height - 1))
    _chunk(fp, b"ANIM", struct.pack("<IH", 0, loop))  # background: transparent black, as Pillow's
    pending: list = []  # [box, compressed, duration] of the frame waiting for its duration to be final
    previous: np.ndarray | None = None
    for index, duration in enumerate(durations):
        current = frame(index)
        box = (0, 0, width, height) if previous is None else _changed(previous, current)
        if box is None:  # the same picture: the frame before lasts longer
            pending[2] += duration
            continue
        if pending:
            _frame(fp, *pending)
        left, top, right, bottom = box
        crop = current[top:bottom, left:right]
        pending = [box, _still(crop, quality, lossless, method), duration]
        previous = current
    _frame(fp, *pending)
    if xmp:
        _chunk(fp, b"XMP ", xmp)
    end = fp.tell()
    fp.seek(start + 4)
    fp.write(struct.pack("<I", end - start - 8))
    fp.seek(end)


def _changed(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int] | None:
    """The rectangle (left, top, right, bottom) holding every pixel that differs, its corner moved to even
    coordinates (ANMF stores offsets in 2-pixel units); None when the pictures are equal."""
    differs = np.any(before != after, axis=-1)
    rows, columns = np.flatnonzero(differs.any(axis=1)), np.flatnonzero(differs.any(axis=0))
    if rows.size == 0:
        return None
    return int(columns[0]) & ~1, int(rows[0]) & ~1, int(columns[-1]) + 1, int(rows[-1]) + 1


def _still(array: np.ndarray, quality: int, lossless: bool, method: int) -> bytes:
    """``array`` compressed by libwebp's still encoder: its image chunks (``VP8 `` or ``VP8L``, with
    ``ALPH`` if any), as they go into an ``ANMF``."""
    out = BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(
        out, format="WEBP", quality=quality, lossless=lossless, method=method
    )
    data, chunks, position = out.getvalue(), [], 12
    while position + 8 <= len(data):
        cid, size = data[position : position + 4], struct.unpack("<I", data[position + 4 : position + 8])[0]
        end = position + 8 + size + (size & 1)
        if cid in _BITSTREAM:
            chunks.append(data[position:end])
        position = end
    return b"".join(chunks)


def _frame(fp: BinaryIO, box: tuple[int, int, int, int], compressed: bytes, duration: int) -> None:
    """One ``ANMF``: the rectangle's corner (halved), size, duration, no blending, then its image."""
    left, top, right, bottom = box
    header = _u24(left // 2) + _u24(top // 2) + _u24(right - left - 1) + _u24(bottom - top - 1)
    _chunk(fp, b"ANMF", header + _u24(duration) + bytes((_NO_BLEND,)) + compressed)


def _chunk(fp: BinaryIO, cid: bytes, data: bytes) -> None:
    """A RIFF chunk, padded to an even size."""
    fp.write(cid + struct.pack("<I", len(data)) + data + (b"\0" if len(data) & 1 else b""))


def _u24(value: int) -> bytes:
    return value.to_bytes(3, "little")

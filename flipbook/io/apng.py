"""Animated PNG written frame by frame: the bytes Pillow's ``save(save_all=True)`` writes, without holding the
clip.

Pillow's APNG writer keeps a copy of every frame (and its RGBA conversion for the comparison with the next)
until it has seen them all, because the frame count comes first in the file (``acTL``). Here the frames are
read twice instead, one or two at a time: a first pass finds the frames Pillow keeps (a frame identical to the
one before is merged into it, its duration added) and each kept frame's changed rectangle (Pillow's bounding
box of the difference from the frame before); the second pass writes them. Every chunk is Pillow's own: the
header chunks and frame 0's image data from :func:`PIL.PngImagePlugin.getchunks` of frame 0 (with the text
chunks), every later frame's image data from ``getchunks`` of its changed rectangle, moved into ``fdAT``
chunks (an ``fdAT`` is an ``IDAT`` with a sequence number). ``tests/test_streaming.py`` checks the bytes
against Pillow's ``save``. Only Pillow's defaults are written (dispose none, blend source, no default image).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

from PIL import Image, ImageChops, PngImagePlugin

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DISPOSE_NONE, _BLEND_SOURCE = 0, 0


@dataclass
class _Kept:
    """A frame of the file: its index in the clip, its changed rectangle (None: whole) and its duration (ms)."""

    index: int
    bbox: tuple[int, int, int, int] | None
    duration: Fraction


def kept_frames(image: Callable[[int], Image.Image], count: int, duration: Fraction) -> list[_Kept]:
    """The frames Pillow writes, each ``duration`` ms long: identical consecutive frames merged (durations
    added), each later frame's rectangle that differs from the frame before (compared in RGBA, as Pillow
    compares them). Two frames are alive at a time."""
    kept: list[_Kept] = []
    previous: Image.Image | None = None
    for index in range(count):
        current = image(index)
        bbox = None
        if previous is not None:
            delta = ImageChops.subtract_modulo(current.convert("RGBA"), previous.convert("RGBA"))
            bbox = delta.getbbox(alpha_only=False)
            if not bbox:
                kept[-1].duration += duration
                continue
        kept.append(_Kept(index, bbox, duration))
        previous = current
    return kept


def write_apng(
    fp: BinaryIO,
    image: Callable[[int], Image.Image],
    count: int,
    *,
    delay: Fraction,
    loop: int,
    pnginfo: PngImagePlugin.PngInfo | None,
    compress_level: int,
) -> None:
    """Write to ``fp`` the APNG Pillow writes for ``save(save_all=True, duration=delay * 1000, loop=loop,
    default_image=False, pnginfo=pnginfo, compress_level=compress_level)`` of frames ``image(0)`` ..
    ``image(count - 1)`` (all of one mode and size; each called twice, once per pass). A clip whose frames
    are all the same is a plain PNG, as Pillow writes it."""
    frames = kept_frames(image, count, delay * 1000)
    options = {"compress_level": compress_level, **({"pnginfo": pnginfo} if pnginfo is not None else {})}
    chunks = PngImagePlugin.getchunks(image(0), **options)
    first_data = next(i for i, (cid, _, _) in enumerate(chunks) if cid == b"IDAT")
    last_data = max(i for i, (cid, _, _) in enumerate(chunks) if cid == b"IDAT")
    fp.write(PNG_SIGNATURE)
    for cid, data, crc in chunks[:first_data]:
        _put(fp, cid, data, crc)
    if len(frames) > 1:
        width, height = image(0).size
        _chunk(fp, b"acTL", _o32(len(frames)) + _o32(loop))
        sequence = 0
        for number, frame in enumerate(frames):
            if number == 0:
                parts: Iterator[bytes] = (data for cid, data, _ in chunks[first_data : last_data + 1])
                box = (0, 0, width, height)
            else:
                box = frame.bbox or (0, 0, width, height)
                parts = _image_data(image(frame.index).crop(box), compress_level)
            sequence = _frame_control(fp, sequence, box, frame.duration)
            for data in parts:
                if number == 0:
                    _chunk(fp, b"IDAT", data)
                else:
                    _chunk(fp, b"fdAT", _o32(sequence) + data)
                    sequence += 1
    else:
        for cid, data, crc in chunks[first_data : last_data + 1]:
            _put(fp, cid, data, crc)
    for cid, data, crc in chunks[last_data + 1 :]:
        _put(fp, cid, data, crc)


def _frame_control(fp: BinaryIO, sequence: int, box: tuple[int, int, int, int], duration: Fraction) -> int:
    """A frame's ``fcTL`` (Pillow's delay: the duration in seconds as the nearest 16-bit fraction); the next
    sequence number."""
    delay = Fraction(duration / 1000).limit_denominator(65535)
    if delay.numerator > 65535:
        raise ValueError("cannot write duration")
    left, top, right, bottom = box
    _chunk(
        fp,
        b"fcTL",
        _o32(sequence) + _o32(right - left) + _o32(bottom - top) + _o32(left) + _o32(top)
        + _o16(delay.numerator) + _o16(delay.denominator) + bytes((_DISPOSE_NONE, _BLEND_SOURCE)),
    )  # fmt: skip
    return sequence + 1


def _image_data(image: Image.Image, compress_level: int) -> Iterator[bytes]:
    """The payloads of the ``IDAT`` chunks Pillow writes for ``image`` (what goes into ``fdAT`` chunks)."""
    for cid, data, _ in PngImagePlugin.getchunks(image, compress_level=compress_level):
        if cid == b"IDAT":
            yield data


def _chunk(fp: BinaryIO, cid: bytes, data: bytes) -> None:
    _put(fp, cid, data, _o32(zlib.crc32(data, zlib.crc32(cid))))


def _put(fp: BinaryIO, cid: bytes, data: bytes, crc: bytes) -> None:
    fp.write(_o32(len(data)) + cid + data + crc)


def _o32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def _o16(value: int) -> bytes:
    return value.to_bytes(2, "big")

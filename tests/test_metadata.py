"""Tests for flipbook.io.metadata: the spec and A1111 parameters embedded in every format and read back."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from flipbook.errors import FlipbookError
from flipbook.io.metadata import (
    Embedded,
    embedded_payload,
    parse_payload,
    read_embedded,
    xmp_description,
    xmp_packet,
)
from flipbook.io.pnginfo import parse_parameters, read_png_parameters, save_png
from flipbook.io.writers import FORMATS, write_gif, write_mp4, write_outputs, write_webp

PARAMETERS = (
    "ein Fuchs im Schnee, 雪の中の狐, «ünïcödé» 🦊\n"
    'Negative prompt: blurry, <bad> & "ugly"\n'
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 123, Size: 64x48"
)
SPEC = {
    "prompts": {
        "0": "雪の中の狐 🦊 </rdf:li> ]]> <!-- & \"quotes\" 'single'",
        "24": "a fox\nin snow\tat night",
    },
    "animation": {"fps": 12, "max_frames": 6, "strength": 0.65},
    "output": {"formats": ["gif", "mp4"], "name": None},
}


def frames(n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return [np.roll(base, 4 * i, axis=1) for i in range(n)]


def first_file(path: Path) -> Path:
    """The file to read for an output: the first frame for the ``png`` folder."""
    return sorted(path.glob("*.png"))[0] if path.is_dir() else path


def test_every_format_carries_spec_and_parameters(tmp_path: Path) -> None:
    written = write_outputs(
        frames(), tmp_path, stem="meta", fps=12, formats=list(FORMATS), parameters=PARAMETERS, spec=SPEC
    )
    assert set(written) == set(FORMATS)
    for fmt, path in written.items():
        assert read_embedded(first_file(path)) == Embedded(SPEC, PARAMETERS), fmt


@pytest.mark.parametrize(("spec", "parameters"), [(SPEC, None), (None, PARAMETERS)])
@pytest.mark.parametrize("fmt", ["png", "gif", "webp", "mp4", "webm", "apng"])
def test_either_half_alone(tmp_path: Path, fmt: str, spec: dict | None, parameters: str | None) -> None:
    written = write_outputs(
        frames(3), tmp_path, stem="m", fps=10, formats=[fmt], parameters=parameters, spec=spec
    )
    assert read_embedded(first_file(written[fmt])) == Embedded(spec, parameters)


def test_png_parameters_stay_a1111_compatible(tmp_path: Path) -> None:
    """A1111 readers see only the infotext in ``parameters``; the spec lives in its own compressed chunk."""
    written = write_outputs(
        frames(2), tmp_path, stem="a", fps=10, formats=["png", "apng"], parameters=PARAMETERS, spec=SPEC
    )
    for path in (first_file(written["png"]), written["apng"]):
        assert read_png_parameters(path) == PARAMETERS
        parsed = parse_parameters(read_png_parameters(path))
        assert (parsed.seed, parsed.width, parsed.height) == (123, 64, 48)
        with Image.open(path) as image:
            assert json.loads(image.text["flipbook_spec"]) == SPEC
        raw = path.read_bytes()
        assert b"zTXtflipbook_spec" in raw or b"iTXtflipbook_spec\x00\x01" in raw  # compressed


def test_video_tags_are_where_players_show_them(tmp_path: Path) -> None:
    written = write_outputs(frames(3), tmp_path, stem="v", fps=10, formats=["mp4", "webm"], spec=SPEC)
    with av.open(str(written["mp4"])) as container:
        assert json.loads(container.metadata["comment"]) == {"flipbook_spec": SPEC}
    with av.open(str(written["webm"])) as container:
        assert json.loads(container.metadata["COMMENT"]) == {"flipbook_spec": SPEC}  # the Matroska tag name


def test_xmp_packet_escapes_and_parses() -> None:
    payload = embedded_payload(SPEC, PARAMETERS)
    packet = xmp_packet(payload)
    assert packet.startswith(b"<?xpacket begin=")
    assert b"</rdf:li> ]]>" not in packet  # escaped, not markup
    assert xmp_description(packet) == payload
    assert xmp_description(b"") is None
    assert xmp_description(b"<x:xmpmeta><broken") is None


def test_payload_shape() -> None:
    assert json.loads(embedded_payload(SPEC, PARAMETERS)) == {"flipbook_spec": SPEC, "parameters": PARAMETERS}
    assert embedded_payload(None, "p") == '{"parameters": "p"}'
    assert "🦊" in embedded_payload(SPEC, None)  # readable in exiftool/ffprobe, not \\u-escaped


@pytest.mark.parametrize(
    ("spec", "parameters", "field"),
    [({"x": {1, 2}}, None, "spec"), ([1], None, "spec"), (None, b"bytes", "parameters")],
)
def test_payload_rejects_bad_input(spec: object, parameters: object, field: str) -> None:
    with pytest.raises(FlipbookError, match=field):
        embedded_payload(spec, parameters)  # type: ignore[arg-type]


def test_legacy_and_foreign_comments() -> None:
    """Earlier flipbook files hold the bare infotext, or (render's GIFs) only the spec."""
    assert parse_payload(PARAMETERS) == Embedded(None, PARAMETERS)
    assert parse_payload(json.dumps({"flipbook_spec": SPEC})) == Embedded(SPEC, None)
    assert parse_payload('{"something": "else"}') == Embedded(None, '{"something": "else"}')
    with pytest.raises(FlipbookError, match="path"):
        parse_payload('{"flipbook_spec": [1, 2]}')


def test_files_without_metadata(tmp_path: Path) -> None:
    gif = write_gif(frames(2), tmp_path / "a.gif", fps=10)
    mp4 = write_mp4(frames(2), tmp_path / "a.mp4", fps=10, preset="ultrafast")
    webp = write_webp(frames(2), tmp_path / "a.webp", fps=10)
    png = tmp_path / "plain.png"
    Image.fromarray(frames(1)[0]).save(png)
    for path in (gif, mp4, webp, png):
        assert read_embedded(path) == Embedded(None, None), path.suffix


def test_a1111_png_and_legacy_mp4_comment(tmp_path: Path) -> None:
    a1111 = save_png(Image.fromarray(frames(1)[0]), tmp_path / "a1111.png", PARAMETERS)
    assert read_embedded(a1111) == Embedded(None, PARAMETERS)
    legacy = write_mp4(frames(2), tmp_path / "old.mp4", fps=10, preset="ultrafast", comment=PARAMETERS)
    assert read_embedded(legacy) == Embedded(None, PARAMETERS)


def test_read_embedded_errors(tmp_path: Path) -> None:
    with pytest.raises(FlipbookError, match="path"):
        read_embedded(tmp_path / "missing.png")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(FlipbookError, match="path"):
        read_embedded(text)
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video at all")
    with pytest.raises(FlipbookError, match="path"):
        read_embedded(fake)
    corrupt = tmp_path / "corrupt.png"
    info = PngInfo()
    info.add_text("flipbook_spec", "{not json")
    Image.fromarray(frames(1)[0]).save(corrupt, pnginfo=info)
    with pytest.raises(FlipbookError, match="flipbook_spec"):
        read_embedded(corrupt)

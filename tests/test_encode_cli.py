"""``flipbook encode`` through typer's CliRunner, on an app that only has this command registered."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from flipbook.commands import encode
from flipbook.errors import FlipbookError
from flipbook.io.metadata import Embedded, embedded_payload, read_embedded
from flipbook.io.writers import write_gif

SPEC = {"prompts": {"0": "狐 in the snow"}, "animation": {"fps": 10}}
PARAMETERS = "狐 in the snow\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 64x48"


@pytest.fixture()
def app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    encode.register(app)

    @app.command()
    def other() -> None:  # a second command, so typer keeps "encode" as a subcommand name
        """Unused."""

    return app


def invoke(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, ["encode", *map(str, args)])


def frames(n: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


@pytest.fixture()
def png_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "shot"
    folder.mkdir()
    for i, frame in enumerate(frames()):
        Image.fromarray(frame).save(folder / f"frame_{i}.png")
    return folder


def test_folder_to_gif_mp4_webp(app: typer.Typer, png_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke(app, png_folder, "--to", "gif,mp4,webp", "--fps", 8, "-o", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["shot.gif", "shot.mp4", "shot.webp"]
    assert "8 frames at 8 fps" in result.output
    assert f"gif: {out / 'shot.gif'} (changed pixels only)" in result.output
    with Image.open(out / "shot.gif") as gif:
        assert gif.n_frames == 8
    with Image.open(out / "shot.webp") as webp:
        assert webp.n_frames == 8
    with av.open(str(out / "shot.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 8
        assert len(list(container.decode(stream))) == 8


def test_gif_input_keeps_fps_and_embedded_spec(app: typer.Typer, tmp_path: Path) -> None:
    source = write_gif(frames(6), tmp_path / "anim.gif", fps=10, comment=embedded_payload(SPEC, PARAMETERS))
    result = invoke(app, source, "--to", "mp4,apng", "--name", "again", "--ping-pong")
    assert result.exit_code == 0, result.output
    with av.open(str(tmp_path / "again.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 10
        assert len(list(container.decode(stream))) == 10  # ping-pong: 6 + 4
    for name in ("again.mp4", "again.apng"):
        assert read_embedded(tmp_path / name) == Embedded(SPEC, PARAMETERS)


def test_folder_without_fps_names_fps(app: typer.Typer, png_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke(app, png_folder, "--to", "gif", "-o", out)
    assert result.exit_code != 0
    assert isinstance(result.exception, FlipbookError)
    assert result.exception.field == "--fps"
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--gif-palette", "local"], "--gif-palette"),
        (["--gif-dither", "bayer"], "--gif-dither"),
        (["--gif-colors", "256"], "--gif-colors"),
        (["--gif-lossy", "300"], "--gif-lossy"),
        (["--gif-max-mb", "0"], "--gif-max-mb"),
        (["--webp-max-mb", "-1", "--to", "webp"], "--webp-max-mb"),
        (["--apng-colors", "1", "--to", "apng"], "--apng-colors"),
        (["--apng-max-mb", "nan", "--to", "apng"], "--apng-max-mb"),
        (["--crf", "60"], "--crf"),
        (["--webp-quality", "101", "--to", "webp"], "--webp-quality"),
        (["--to", "gif,avi"], "--to"),
        (["--fps", "0"], "--fps"),
        (["--fps", "500", "--to", "gif"], "--fps"),
        (["--audio-offset", "2"], "--audio-offset"),
        (["--audio", "missing.wav"], "--audio"),
        (["--name", "a/b"], "--name"),
    ],
)
def test_bad_flags_are_named_and_nothing_is_written(
    app: typer.Typer, png_folder: Path, tmp_path: Path, args: list[str], flag: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    base = ["--fps", "8"] if "--fps" not in args else []
    result = invoke(app, png_folder, "-o", out, *base, *args)
    assert result.exit_code != 0
    assert isinstance(result.exception, FlipbookError), result.output
    assert result.exception.field == flag
    assert list(out.iterdir()) == []


def test_size_target_says_what_it_chose(app: typer.Typer, png_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    full = invoke(app, png_folder, "--to", "gif", "--fps", 8, "-o", out, "--name", "full")
    assert full.exit_code == 0, full.output
    budget = 0.6 * (out / "full.gif").stat().st_size / 1e6
    result = invoke(app, png_folder, "--to", "gif", "--fps", 8, "-o", out, "--gif-max-mb", budget)
    assert result.exit_code == 0, result.output
    assert (out / "shot.gif").stat().st_size <= budget * 1e6
    assert f"gif fits {budget:g} MB" in result.output
    assert "colours" in result.output and "8 fps" in result.output


def test_refuses_to_overwrite_the_input(app: typer.Typer, tmp_path: Path) -> None:
    source = write_gif(frames(3), tmp_path / "anim.gif", fps=10)
    before = source.read_bytes()
    result = invoke(app, source, "--to", "gif")
    assert isinstance(result.exception, FlipbookError)
    assert result.exception.field == "--name"
    assert source.read_bytes() == before

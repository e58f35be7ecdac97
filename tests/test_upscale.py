"""Upscaling: Lanczos, spandrel-loaded ESRGAN models (tiled, feathered), safe model files, and the CLI command.

The models are tiny random RRDBNets built here with the key layouts real files use, so spandrel's real
ESRGAN detection and inference run, on the CPU, in well under a second each.
"""

from __future__ import annotations

import math
import os
import sys
import types

import numpy as np
import PIL.Image
import pytest
import torch
import typer
from safetensors.torch import save_file
from typer.testing import CliRunner

from flipbook.commands import upscale as upscale_command
from flipbook.errors import FlipbookError
from flipbook.post.upscale import (
    _axis_tiles,
    feather,
    load_upscaler,
    tile_starts,
    upscale_frames,
    upscale_lanczos,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------- fixtures


def _fake_torchvision() -> dict[str, types.ModuleType]:
    """torchvision, torchvision.transforms and .functional with only the names spandrel imports at module
    level (LaMa: InterpolationMode, rotate; RestoreFormer: normalize); each raises if actually used."""

    def unavailable(*args, **kwargs):
        raise RuntimeError("fake torchvision (tests/test_upscale.py): not available in this environment")

    package = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = types.SimpleNamespace(BILINEAR="bilinear", NEAREST="nearest")
    functional.rotate = functional.normalize = unavailable
    package.transforms, transforms.functional = transforms, functional
    return {
        "torchvision": package,
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional,
    }


def _spandrel_modules() -> set[str]:
    return {name for name in sys.modules if name == "spandrel" or name.startswith("spandrel.")}


@pytest.fixture(scope="module")
def spandrel_importable():
    """Make ``import spandrel`` work in this test module, also where torchvision is not installed.

    With a real torchvision nothing is changed. Without one (the CPU dev machine: no CPU torchvision build
    exists for its torch), a minimal fake torchvision is put into sys.modules for the duration of this module
    only, which is enough for spandrel's two architectures that import it at module level (LaMa,
    RestoreFormer) and never used by the ESRGAN code under test. Module scope, so spandrel (about 2 s to
    import) is imported once per file; at teardown the fake and every spandrel module imported under it are
    removed from sys.modules, so no other test module ever sees either.
    """
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pass
    else:
        yield
        return
    before = _spandrel_modules()
    with pytest.MonkeyPatch.context() as patch:
        for name, module in _fake_torchvision().items():
            patch.setitem(sys.modules, name, module)
        try:
            yield
        finally:
            for name in _spandrel_modules() - before:
                del sys.modules[name]


def tiny_esrgan_state_dict(
    *, num_filters: int = 8, in_channels: int = 3, seed: int = 0, body_gain: float = 0.3
) -> dict:
    """A random 4x RRDBNet in Real-ESRGAN's (basicsr) key layout: 1 RRDB block, ``num_filters`` features.

    Growth channels are 32 because spandrel hard-codes gc=32 for ESRGAN (it does not detect them). He-style
    init keeps activations in range, so the output depends on the picture (and tile seams would show). The
    deep body is scaled by ``body_gain`` so that, as in a trained upscaler, nearby pixels dominate the output:
    at full gain a random net's reach is wider than these tests' small tiles. ``in_channels`` 12 is
    Real-ESRGAN x2's pixel-unshuffle variant: spandrel reports it as 2x with sizes a multiple of 4.
    """
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def conv(name: str, out_ch: int, in_ch: int) -> None:
        std = math.sqrt(2 / (9 * in_ch)) * (body_gain if name.startswith(("body.", "conv_body")) else 1)
        state[f"{name}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=generator) * std
        state[f"{name}.bias"] = torch.randn(out_ch, generator=generator) * 0.01

    growth = 32
    conv("conv_first", num_filters, in_channels)
    for rdb in (1, 2, 3):
        for k in range(1, 6):
            conv(
                f"body.0.rdb{rdb}.conv{k}", num_filters if k == 5 else growth, num_filters + (k - 1) * growth
            )
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(name, num_filters, num_filters)
    conv("conv_last", 3, num_filters)
    return state


@pytest.fixture(scope="module")
def install(tmp_path_factory):
    """A fake AUTOMATIC1111 install: models/ESRGAN/tiny-esrgan.safetensors (4x) and x2-unshuffle.safetensors
    (2x), models/RealESRGAN/tiny-realesrgan.pth (the same 4x weights wrapped in params_ema, as Real-ESRGAN
    ships them)."""
    root = tmp_path_factory.mktemp("webui")
    esrgan, realesrgan = root / "models" / "ESRGAN", root / "models" / "RealESRGAN"
    esrgan.mkdir(parents=True)
    realesrgan.mkdir(parents=True)
    state = tiny_esrgan_state_dict()
    save_file(state, str(esrgan / "tiny-esrgan.safetensors"))
    save_file(tiny_esrgan_state_dict(in_channels=12, seed=1), str(esrgan / "x2-unshuffle.safetensors"))
    torch.save({"params_ema": state}, realesrgan / "tiny-realesrgan.pth")
    return root


def picture(width: int = 64, height: int = 48, seed: int = 0) -> PIL.Image.Image:
    """Gradients plus noise: structure everywhere, so a misplaced or badly blended tile shows."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    array = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1) + rng.normal(0, 20, (height, width, 3))
    return PIL.Image.fromarray(array.clip(0, 255).astype(np.uint8))


def pixels(image: PIL.Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


# ----------------------------------------------------------------------------------------- Lanczos


@pytest.mark.parametrize(("scale", "size"), [(2, (60, 40)), (1.5, (45, 30)), (0.5, (15, 10)), (4, (120, 80))])
def test_lanczos_size_and_constant_colour(scale, size):
    image = PIL.Image.new("RGB", (30, 20), (12, 200, 99))
    (result,) = upscale_lanczos([image], scale)
    assert result.size == size
    assert np.all(np.asarray(result) == (12, 200, 99))


@pytest.mark.parametrize("scale", [0, -2, math.nan, math.inf])
def test_lanczos_rejects_bad_scale(scale):
    with pytest.raises(FlipbookError) as error:
        upscale_lanczos([PIL.Image.new("RGB", (4, 4))], scale)
    assert error.value.field == "upscale.scale"


def test_frames_without_model_use_lanczos():
    frames = [picture(20, 10, seed) for seed in range(2)]
    result = upscale_frames(frames, scale=3)
    assert [r.size for r in result] == [(60, 30)] * 2
    assert pixels(result[1]).tolist() == pixels(upscale_lanczos([frames[1]], 3)[0]).tolist()


# ----------------------------------------------------------------------------------------- tiling


@pytest.mark.parametrize(
    ("size", "tile", "overlap", "align"),
    [
        (64, 32, 8, 1),
        (48, 32, 8, 1),
        (33, 32, 8, 1),
        (100, 16, 4, 1),
        (1000, 512, 32, 1),
        (30, 16, 4, 4),
        (21, 16, 4, 4),
        (101, 18, 5, 4),
    ],
)
def test_tiles_cover_the_axis_and_weights_sum_to_one(size, tile, overlap, align):
    """Tiles start on the ``align`` grid, all but the last are full length, the last ends at the edge,
    neighbours overlap by at least ``overlap``, and the placed feather weights form a weighted mean: they sum
    to 1 (up to the 1e-4 floor) at every pixel."""
    tiles = _axis_tiles(size, tile, overlap, align)
    assert tiles[0][0] == 0 and tiles[-1][1] == size
    assert all(start % align == 0 for start, _, _, _ in tiles)
    assert all(end - start == tile // align * align for start, end, _, _ in tiles[:-1])
    assert all(before >= overlap for _, _, before, _ in tiles[1:])
    total = torch.zeros(size)
    for start, end, before, after in tiles:
        total[start:end] += feather(end - start, before, after)
    assert torch.all(total >= 1 - 1e-6) and torch.all(total <= 1 + 3e-4)


def test_a_small_axis_is_one_tile():
    assert tile_starts(30, 32, 8) == [0]
    assert _axis_tiles(30, 32, 8) == [(0, 30, 0, 0)]


# ----------------------------------------------------------------------------------------- models


@pytest.mark.usefixtures("spandrel_importable")
@pytest.mark.parametrize(
    ("name", "scale", "image", "tile", "overlap"),
    [
        ("tiny-esrgan", 4, (64, 48), 32, 8),
        ("tiny-realesrgan", 4, (64, 48), 32, 8),
        ("x2-unshuffle", 2, (94, 65), 48, 16),  # tiles on the 4-pixel grid; edge tiles padded, then cropped
    ],
)
def test_model_by_name_scale_and_tiled_equals_untiled(install, name, scale, image, tile, overlap):
    upscaler = load_upscaler(name, models_dir=install, device="cpu")
    assert upscaler.scale == scale
    assert upscaler.dtype == torch.float32
    source = picture(*image)
    whole = upscaler.upscale(source, tile=0)
    tiled = upscaler.upscale(source, tile=tile, overlap=overlap)
    assert whole.size == tiled.size == (image[0] * scale, image[1] * scale)
    assert pixels(whole).std() > 10, "the model's output should depend on the picture"
    assert np.abs(pixels(whole) - pixels(tiled)).max() <= 2
    # The check above can fail: tiles without overlap show seams, so the model is not too local to tell.
    seams = upscaler.upscale(source, tile=tile, overlap=0)
    assert np.abs(pixels(whole) - pixels(seams)).max() > 2


@pytest.mark.usefixtures("spandrel_importable")
def test_safetensors_and_pth_hold_the_same_model(install):
    source = picture(24, 16)
    a = load_upscaler("tiny-esrgan", models_dir=install, device="cpu").upscale(source, tile=0)
    b = load_upscaler("tiny-realesrgan", models_dir=install, device="cpu").upscale(source, tile=0)
    assert pixels(a).tolist() == pixels(b).tolist()


@pytest.mark.usefixtures("spandrel_importable")
def test_outscale_finishes_with_lanczos(install):
    upscaler = load_upscaler("tiny-esrgan", models_dir=install, device="cpu")
    source = picture(20, 14)
    assert upscaler.upscale(source, outscale=2).size == (40, 28)
    assert upscaler.upscale(source, outscale=4).size == (80, 56)
    frames = upscale_frames([source, source], scale=2, model="tiny-esrgan", models_dir=install, device="cpu")
    assert [f.size for f in frames] == [(40, 28)] * 2
    assert pixels(frames[0]).tolist() == pixels(upscaler.upscale(source, outscale=2)).tolist()


@pytest.mark.usefixtures("spandrel_importable")
def test_alpha_is_kept(install):
    upscaler = load_upscaler("tiny-esrgan", models_dir=install, device="cpu")
    source = picture(12, 10).convert("RGBA")
    source.putalpha(128)
    result = upscaler.upscale(source)
    assert result.mode == "RGBA" and result.size == (48, 40)
    assert np.all(np.asarray(result.getchannel("A")) == 128)


@pytest.mark.usefixtures("spandrel_importable")
def test_plain_pth_state_dict_loads_by_path(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save(tiny_esrgan_state_dict(), path)
    upscaler = load_upscaler(path, device="cpu")
    assert upscaler.scale == 4
    assert upscaler.upscale(picture(8, 6)).size == (32, 24)


class Tripwire:
    """Unpickling this creates a folder: proof that loading would have run code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.mark.usefixtures("spandrel_importable")
def test_pth_with_pickled_object_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({**tiny_esrgan_state_dict(), "payload": Tripwire(str(marker))}, path)
    with pytest.raises(FlipbookError) as error:
        load_upscaler(path, device="cpu")
    assert error.value.field == "upscale.model"
    assert "flipbook will not run" in str(error.value) and "weights_only" not in str(error.value)
    assert not marker.exists()


@pytest.mark.usefixtures("spandrel_importable")
def test_unknown_name_lists_available_models(install, monkeypatch):
    with pytest.raises(FlipbookError) as error:
        load_upscaler("no-such-upscaler", models_dir=install)
    assert error.value.field == "upscale.model"
    assert "tiny-esrgan" in error.value.allowed and "tiny-realesrgan" in error.value.allowed
    monkeypatch.delenv("FLIPBOOK_MODELS_DIR", raising=False)
    with pytest.raises(FlipbookError) as error:
        load_upscaler("no-such-upscaler")
    assert error.value.field == "upscale.model"


@pytest.mark.usefixtures("spandrel_importable")
def test_unrecognised_state_dict_is_refused(tmp_path):
    path = tmp_path / "mystery.safetensors"
    save_file({"encoder.weight": torch.zeros(4, 4), "decoder.bias": torch.zeros(4)}, str(path))
    with pytest.raises(FlipbookError) as error:
        load_upscaler(path, device="cpu")
    assert error.value.field == "upscale.model"
    assert "does not recognise" in str(error.value)


def test_missing_spandrel_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    save_file(tiny_esrgan_state_dict(), str(path))
    monkeypatch.setitem(sys.modules, "spandrel", None)  # makes `import spandrel` raise ImportError
    with pytest.raises(FlipbookError) as error:
        load_upscaler(path, device="cpu")
    assert error.value.field == "upscale.model"
    assert "pip install spandrel torchvision" in str(error.value)


# ----------------------------------------------------------------------------------------- CLI


@pytest.fixture()
def cli():
    """A small app with only the upscale command registered (a callback keeps it a named subcommand)."""
    app = typer.Typer()
    app.callback()(lambda: None)
    upscale_command.register(app)
    return lambda *args: CliRunner().invoke(app, ["upscale", *map(str, args)])


@pytest.fixture()
def frames_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in (10, 2, 1):
        picture(16, 12, index).save(folder / f"frame_{index}.png")
    (folder / "notes.txt").write_text("not a frame")
    return folder


@pytest.mark.usefixtures("spandrel_importable")
@pytest.mark.parametrize("model", [None, "tiny-esrgan"])
def test_cli_upscales_a_folder_in_natural_order(cli, install, frames_folder, tmp_path, model):
    out = tmp_path / "big"
    args = [frames_folder, "--scale", 2, "-o", out, "--tile", 8, "--overlap", 2]
    result = cli(*args, *(["--model", model, "--models-dir", install, "--device", "cpu"] if model else []))
    assert result.exit_code == 0, result.output
    names = [line.rsplit(os.sep, 1)[-1] for line in result.output.split()]
    assert names == ["frame_1.png", "frame_2.png", "frame_10.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    for path in out.iterdir():
        with PIL.Image.open(path) as image:
            assert image.format == "PNG" and image.size == (32, 24)


def test_cli_one_image_to_a_png(cli, tmp_path):
    source = tmp_path / "in.jpg"
    picture(10, 8).save(source)
    result = cli(source, "--scale", 1.5, "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    with PIL.Image.open(tmp_path / "out.png") as image:
        assert image.size == (15, 12)


@pytest.mark.parametrize("scale", ["0", "-1"])
def test_cli_bad_scale_names_the_flag(cli, frames_folder, tmp_path, scale):
    result = cli(frames_folder, f"--scale={scale}", "-o", tmp_path / "out")
    assert result.exit_code != 0
    assert isinstance(result.exception, FlipbookError)
    assert "--scale" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_cli_upscales_every_frame_of_a_gif(cli, tmp_path):
    from flipbook.io.writers import write_gif

    frames = [np.full((8, 10, 3), 40 * i, np.uint8) for i in range(3)]
    source = write_gif(frames, tmp_path / "anim.gif", fps=10)
    result = cli(source, "--scale", "2", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "out").glob("*.png"))
    assert [p.name for p in written] == [f"frame_{i:05d}.png" for i in range(3)]
    assert all(PIL.Image.open(p).size == (20, 16) for p in written)


def test_cli_animation_needs_an_output_folder(cli, tmp_path):
    from flipbook.io.writers import write_gif

    frames = [np.full((8, 8, 3), v, np.uint8) for v in (0, 200)]
    source = write_gif(frames, tmp_path / "anim.gif", fps=10)
    (tmp_path / "taken.png").write_bytes(b"x")
    result = cli(source, "-o", tmp_path / "taken.png")
    assert isinstance(result.exception, FlipbookError) and result.exception.field == "--out"

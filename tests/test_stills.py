"""One still-image pipeline (flipbook/runs/stills.py) behind the CLI's txt2img/img2img/inpaint and the A1111
API: the same 32-bit seed rule, the same images and the same parameters from both."""

from __future__ import annotations

import base64
import io

import numpy as np
import PIL.Image
import pytest

from flipbook.errors import FlipbookError
from flipbook.events import Events
from flipbook.io.pnginfo import parse_parameters, read_png_parameters
from flipbook.runs.stills import SEEDS, resolve_seed, still_seeds

pytestmark = pytest.mark.usefixtures("one_thread")


def test_seeds_are_32_bit_and_wrap():
    assert SEEDS == 2**32
    assert still_seeds(SEEDS - 2, 3) == (SEEDS - 2, SEEDS - 1, 0)
    assert all(0 <= resolve_seed(-1) < SEEDS for _ in range(20))
    assert resolve_seed(0) == 0 and resolve_seed(SEEDS - 1) == SEEDS - 1
    for bad in (SEEDS, -2, 2**64):
        with pytest.raises(FlipbookError, match="4294967295"):
            resolve_seed(bad, "--seed")


def test_cli_seeds_wrap_at_32_bits_and_a_larger_seed_is_refused(run_cli, tmp_path):
    fast = ["--steps", "1", "--size", "64x64", "--device", "cpu", "--sampler", "Euler"]
    code, out, _ = run_cli(
        "txt2img", "a fox", "--seed", str(SEEDS - 1), "--batch-count", "2", "-o", tmp_path, *fast
    )
    assert code == 0
    seeds = [parse_parameters(read_png_parameters(path)).seed for path in out.split()]
    assert seeds == [SEEDS - 1, 0]
    code, _, err = run_cli("txt2img", "a fox", "--seed", str(SEEDS), "-o", tmp_path / "big", *fast)
    assert code == 2 and err.startswith("error: --seed") and "Traceback" not in err
    assert not (tmp_path / "big").exists()  # refused before anything was made


def _a1111(body: dict, kind: str, run_dir) -> dict:
    """An A1111 request through both halves of the server's still path (checked, then run on a 'worker')."""
    from flipbook.server.stills import ModelCache, run_still, still_from_a1111

    job = still_from_a1111(body, kind, "tiny")
    run_dir.mkdir()
    for name, image in job.images.items():
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(run_dir / name)
    return run_still(job.payload, run_dir, Events(), ModelCache(), None)


def test_cli_and_a1111_api_make_the_same_images_and_parameters(run_cli, tmp_path, init_image):
    settings = {"steps": 2, "cfg_scale": 6.0, "sampler_name": "Euler", "seed": 11, "width": 64, "height": 64}
    body = {"prompt": "a (red:1.2) fox", "negative_prompt": "blurry", "n_iter": 2, **settings}
    served = _a1111(body, "txt2img", tmp_path / "api")
    code, out, _ = run_cli("txt2img", "a (red:1.2) fox", "--negative", "blurry", "--steps", "2", "--cfg", "6",
                           "--sampler", "Euler", "--seed", "11", "--size", "64x64", "--batch-count", "2",
                           "--device", "cpu", "-o", tmp_path / "cli")  # fmt: skip
    assert code == 0
    cli_paths = out.split()
    assert served["seeds"] == [11, 12]
    assert [p.rsplit("/", 1)[-1] for p in cli_paths] == served["images"]
    for cli_path, name, infotext in zip(cli_paths, served["images"], served["infotexts"], strict=True):
        assert read_png_parameters(cli_path) == infotext == read_png_parameters(tmp_path / "api" / name)
        cli_pixels = np.asarray(PIL.Image.open(cli_path).convert("RGB"))
        api_pixels = np.asarray(PIL.Image.open(tmp_path / "api" / name).convert("RGB"))
        np.testing.assert_array_equal(cli_pixels, api_pixels)

    init_image.save(tmp_path / "init.png")
    buffer = io.BytesIO()
    init_image.save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    served = _a1111({"prompt": "a painting", "init_images": [encoded], "denoising_strength": 0.5, **settings},
                    "img2img", tmp_path / "api-i2i")  # fmt: skip
    code, out, _ = run_cli("img2img", "a painting", "--image", tmp_path / "init.png", "--strength", "0.5",
                           "--steps", "2", "--cfg", "6", "--sampler", "Euler", "--seed", "11", "--size", "64x64",
                           "--device", "cpu", "-o", tmp_path / "cli-i2i")  # fmt: skip
    assert code == 0
    assert read_png_parameters(out.strip()) == served["infotexts"][0]
    np.testing.assert_array_equal(
        np.asarray(PIL.Image.open(out.strip()).convert("RGB")),
        np.asarray(PIL.Image.open(tmp_path / "api-i2i" / served["images"][0]).convert("RGB")),
    )

"""Hires fix (flipbook/runs/hires.py) as A1111 runs it: first pass, upscale, img2img second pass."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_upscale import spandrel_importable, tiny_esrgan_state_dict  # noqa: F401 (a fixture)

from flipbook.errors import FlipbookError
from flipbook.events import Events
from flipbook.models.extra_networks import ExtraNetworks
from flipbook.runs.hires import (
    HiresSettings,
    final_size,
    hires_settings,
    infotext_extras,
    second_pass_schedule,
    target_size,
)
from flipbook.runs.stills import StillSettings, make_stills, prepare_stills
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = {"prompt": "a red fox", "model": "tiny", "steps": 3, "cfg_scale": 6.0, "sampler": "Euler", "seed": 7}


def test_target_size_follows_a1111():
    assert target_size(HiresSettings(scale=2), 64, 64) == (128, 128)
    assert target_size(HiresSettings(scale=1.5), 512, 768) == (768, 1152)
    assert target_size(HiresSettings(resize_x=1024), 512, 768) == (1024, 1536)
    assert target_size(HiresSettings(resize_y=1024), 768, 512) == (1536, 1024)
    # both: cover the box, then cut the overhang off in whole latents
    assert target_size(HiresSettings(resize_x=128, resize_y=96), 64, 64) == (128, 128)
    assert final_size(HiresSettings(resize_x=128, resize_y=96), 64, 64) == (128, 96)
    assert final_size(HiresSettings(scale=1.3), 64, 64) == (80, 80)  # int(83.2) = 83 -> 10 latents


def test_the_upscaled_side_has_the_animation_size_bound():
    with pytest.raises(FlipbookError) as error:
        target_size(HiresSettings(scale=16), 1024, 512)
    assert error.value.field == "hires.scale" and "8192" in error.value.allowed
    with pytest.raises(FlipbookError, match="hires.resize_x"):
        hires_settings({"resize_x": 9000})
    with pytest.raises(FlipbookError) as named:
        hires_settings({"scale": 0}, {"scale": "hr_scale"})
    assert named.value.field == "hr_scale"
    with pytest.raises(FlipbookError, match="hires.denoising_strength"):
        second_pass_schedule(HiresSettings(denoising_strength=0.01, steps=50), 20)


@given(steps=st.integers(1, 200), first=st.integers(1, 200), strength=st.floats(0.05, 1.0))
def test_the_second_pass_runs_exactly_the_hires_steps(steps, first, strength):
    """A1111 runs ``hr_second_pass_steps or steps`` real steps whatever the strength."""
    hires = HiresSettings(steps=steps, denoising_strength=strength)
    try:
        schedule, share = second_pass_schedule(hires, first)
    except FlipbookError:
        assert int(steps / min(strength, 0.999)) > 1000
        return
    assert 0 < share <= 1 and min(int(schedule * share), schedule) == steps


def test_infotext_keys_as_a1111_writes_them():
    extras = infotext_extras(HiresSettings(steps=5, sampler="DPM++ 2M"), "Euler", "a", "")
    assert list(extras.items()) == [
        ("Hires sampler", "DPM++ 2M"), ("Hires upscale", "2"), ("Hires steps", "5"), ("Hires upscaler", "Latent"),
    ]  # fmt: skip
    resized = infotext_extras(HiresSettings(resize_x=128, resize_y=96, prompt="b"), "Euler", "a", "")
    assert resized == {"Hires prompt": "b", "Hires resize": "128x96", "Hires upscaler": "Latent"}


def _make(tiny_model, tmp_path, **settings):
    tmp_path.mkdir(parents=True, exist_ok=True)
    prepared = prepare_stills(StillSettings(**{**BASE, **settings}), ExtraNetworks(None))
    made = make_stills(prepared, tiny_model, ExtraNetworks(None), Events(), tmp_path)
    return [np.asarray(PIL.Image.open(s.path).convert("RGB")) for s in made.stills], made


@pytest.fixture(scope="module")
def tiny_xl():
    from flipbook.models.loading import load_model

    return load_model("tiny-xl", device="cpu")


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (nearest-exact)", "Lanczos"])
def test_two_passes_equal_the_passes_by_hand_and_differ_from_a_plain_render(tiny_model, tmp_path, upscaler):
    _two_passes_equal_the_passes_by_hand(tiny_model, tmp_path, upscaler)


@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_hires_fix_on_sdxl_conditions_the_second_pass_on_its_own_size(tiny_xl, tmp_path, upscaler):
    """SDXL's added time ids carry the image size: the second pass at 128 is conditioned on 128x128, exactly
    as an img2img request of that size is."""
    _two_passes_equal_the_passes_by_hand(tiny_xl, tmp_path, upscaler)


def _two_passes_equal_the_passes_by_hand(tiny_model, tmp_path, upscaler):
    hires = HiresSettings(upscaler=upscaler, steps=2, denoising_strength=0.6)
    images, made = _make(tiny_model, tmp_path / "hires", width=64, height=64, hires=hires)
    assert images[0].shape == (128, 128, 3)
    infotext = made.stills[0].infotext
    assert "Size: 64x64" in infotext and "Denoising strength: 0.6" in infotext
    assert f"Hires upscale: 2, Hires steps: 2, Hires upscaler: {upscaler}" in infotext

    # by hand: the first pass at 64, the upscale, an img2img pass at 128 from it with the same seed
    core = SamplingCore(tiny_model, Events())
    first = FrameRequest("a red fox", seed=7, num_inference_steps=3, guidance_scale=6.0, sampler="Euler",
                         width=64, height=64)  # fmt: skip
    schedule, strength = int(2 / 0.6), 2.5 / int(2 / 0.6)
    second = dict(seed=7, num_inference_steps=schedule, guidance_scale=6.0, sampler="Euler", width=128,
                  height=128, strength=strength)  # fmt: skip
    if upscaler == "Lanczos":
        picture = core.generate([first])[0].resize((128, 128), PIL.Image.Resampling.LANCZOS)
        by_hand = core.generate([FrameRequest("a red fox", image=picture, **second)])[0]
    else:
        latents = core.generate([first], output_type="latent")[0]
        mode = "bilinear" if upscaler == "Latent" else "nearest-exact"
        big = torch.nn.functional.interpolate(latents[None].float(), size=(16, 16), mode=mode)
        by_hand = core.generate([FrameRequest("a red fox", init_latents=big, **second)])[0]
    assert np.abs(images[0].astype(int) - np.asarray(by_hand).astype(int)).max() <= 1

    plain, _ = _make(tiny_model, tmp_path / "plain", width=128, height=128)
    assert np.abs(images[0].astype(int) - plain[0].astype(int)).mean() > 2


def test_hires_with_a_batch_keeps_each_seed(tiny_model, tmp_path):
    hires = HiresSettings(steps=1, denoising_strength=0.5, resize_x=96, resize_y=64)
    images, made = _make(tiny_model, tmp_path, width=64, height=64, hires=hires, count=2, batch_size=2)
    assert [image.shape for image in images] == [(64, 96, 3)] * 2
    assert [still.seed for still in made.stills] == [7, 8] and not np.array_equal(images[0], images[1])
    again, _ = _make(tiny_model, tmp_path / "again", width=64, height=64, hires=hires, seed=8)
    assert np.abs(again[0].astype(int) - images[1].astype(int)).max() <= 2


def test_hires_problems_are_one_error_before_any_model_loads(init_image):
    for hires, field in (
        (HiresSettings(sampler="Euler b"), "hires.sampler"),
        (HiresSettings(scale=3), "hires.scale"),
        (HiresSettings(upscaler="4x-Nothing"), "hires.upscaler"),
        (HiresSettings(prompt="a <hypernet:x>"), "hires.prompt"),
    ):
        with pytest.raises(FlipbookError) as error:
            prepare_stills(
                StillSettings(**{**BASE, "width": 4096, "height": 64}, hires=hires), ExtraNetworks(None)
            )
        assert error.value.field == field, (hires, error.value)
    with pytest.raises(FlipbookError, match="hires"):
        prepare_stills(StillSettings(**BASE, inits=(init_image,), hires=HiresSettings()), None)


def test_cli_txt2img_hires_options(run_cli, tmp_path):
    from flipbook.io.pnginfo import parse_parameters, read_png_parameters

    code, out, err = run_cli("txt2img", "a fox", "--steps", "2", "--size", "64x64", "--device", "cpu",
                             "--seed", "3", "--hires-scale", "1.5", "--hires-steps", "1", "--hires-upscaler",
                             "Latent (bicubic)", "-o", tmp_path)  # fmt: skip
    assert code == 0, err
    with PIL.Image.open(out.split()[0]) as image:
        assert image.size == (96, 96)
    parameters = parse_parameters(read_png_parameters(out.split()[0]))
    assert (
        parameters.extra["Hires upscale"] == "1.5"
        and parameters.extra["Hires upscaler"] == "Latent (bicubic)"
    )
    code, _, err = run_cli(
        "txt2img", "a fox", "--size", "64x64", "--hires-scale", "500", "-o", tmp_path / "x"
    )
    assert code == 2 and err.startswith("error: --hires-scale")


def test_the_light_list_of_resizers_is_the_upscale_modules():
    from flipbook.post.upscale import RESIZERS
    from flipbook.runs.hires import PIXEL_UPSCALERS

    assert tuple(RESIZERS) == PIXEL_UPSCALERS


def test_every_hires_setting_has_its_a1111_field():
    from flipbook.server.stills import HIRES_FIELDS

    assert list(HIRES_FIELDS) == list(HiresSettings.model_fields)


@pytest.mark.usefixtures("spandrel_importable")
def test_an_upscaling_model_from_the_models_folder(tiny_model, tmp_path):
    """A pixel upscaler by name (an ESRGAN in models/ESRGAN): the first picture upscaled by the model, then
    the second pass from it, as by hand."""
    from safetensors.torch import save_file

    from flipbook.models.folders import ModelsDir
    from flipbook.post.upscale import load_upscaler, upscale_to

    (tmp_path / "models" / "ESRGAN").mkdir(parents=True)
    save_file(tiny_esrgan_state_dict(), str(tmp_path / "models" / "ESRGAN" / "tiny-esrgan.safetensors"))
    hires = HiresSettings(upscaler="tiny-esrgan", steps=1, denoising_strength=0.5)
    networks = ExtraNetworks(ModelsDir(tmp_path))
    prepared = prepare_stills(StillSettings(**BASE, width=64, height=64, hires=hires), networks)
    (tmp_path / "out").mkdir()
    made = make_stills(prepared, tiny_model, networks, Events(), tmp_path / "out")
    image = PIL.Image.open(made.stills[0].path).convert("RGB")
    assert image.size == (128, 128) and "Hires upscaler: tiny-esrgan" in made.stills[0].infotext

    core = SamplingCore(tiny_model, Events())
    first = core.generate([prepared.requests[0]])[0]
    upscaler = load_upscaler("tiny-esrgan", models_dir=tmp_path, device="cpu")
    by_hand = core.generate([FrameRequest("a red fox", image=upscale_to(first, (128, 128), upscaler), seed=7,
                                          num_inference_steps=2, guidance_scale=6.0, sampler="Euler", width=128,
                                          height=128, strength=0.75)])[0]  # fmt: skip
    assert np.abs(np.asarray(image).astype(int) - np.asarray(by_hand).astype(int)).max() <= 1


def test_controlnet_units_act_in_both_passes(tiny_model, tmp_path):
    """Still ControlNet units (the A1111 API's alwayson_scripts units) apply to the first and second pass."""
    from flipbook.sampling.requests import Control

    picture = PIL.Image.new("RGB", (64, 64), "white")
    controls = (Control("tiny", picture, 2.0),)
    prepared = prepare_stills(StillSettings(**BASE, hires=HiresSettings(steps=1), controls=controls), None)
    assert all(r.controls == controls for r in (*prepared.requests, *prepared.hires_requests))
    plain, _ = _make(tiny_model, tmp_path / "plain", width=64, height=64, hires=HiresSettings(steps=1))
    guided, _ = _make(
        tiny_model, tmp_path / "cn", width=64, height=64, hires=HiresSettings(steps=1), controls=controls
    )
    assert (
        guided[0].shape == (128, 128, 3) and np.abs(guided[0].astype(int) - plain[0].astype(int)).mean() > 1
    )

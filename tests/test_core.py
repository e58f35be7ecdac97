"""Sampling-core behaviour beyond diffusers equivalence: composable prompts, cache, events, validation."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.errors import FlipbookError
from flipbook.events import Events, RenderCancelled
from flipbook.samplers.schedulers import SAMPLER_NAMES, SCHEDULER_CLASS_NAMES, is_stochastic
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest


def request(prompt="a lighthouse", **kwargs):
    defaults = dict(seed=1, num_inference_steps=2, guidance_scale=7.0, sampler="Euler", width=64, height=64)
    return FrameRequest(prompt, **{**defaults, **kwargs})


def images(model, requests, **kwargs):
    return np.stack(SamplingCore(model).generate(requests, output_type="np", **kwargs))


def test_same_seed_same_image_and_different_seed_differs(tiny_model):
    a, b, c = images(tiny_model, [request(seed=1), request(seed=1), request(seed=2)])
    assert np.array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_composable_single_part_weight_one_equals_plain(tiny_model):
    plain, weighted = images(tiny_model, [request("a lighthouse"), request("a lighthouse :1")])
    assert np.abs(plain - weighted).max() <= 1e-5


def test_composable_prompts_combine_parts(tiny_model):
    core = SamplingCore(tiny_model)
    both = np.stack(core.generate([request("a lighthouse AND a storm :0.7")], output_type="np"))
    assert core.stats["unet_rows"] == 2 * 3  # uncond + two parts, per step
    single = images(tiny_model, [request("a lighthouse")])
    assert np.abs(both - single).max() > 1e-3


def test_prompts_are_encoded_once_per_run(tiny_model):
    core = SamplingCore(tiny_model)
    core.generate([request(seed=s) for s in range(4)], batch_size=2)
    assert core.encoder(1).calls == 2  # the prompt and the empty negative


def test_the_nets_dtypes_are_looked_up_once_per_run_not_per_frame(tiny_model, init_image, monkeypatch):
    """diffusers answers ``net.dtype`` by walking every submodule (milliseconds a call on SD 1.5): a feedback
    loop's frames must not pay for it each time."""
    from diffusers.models import modeling_utils

    lookups = []
    original = modeling_utils.get_parameter_dtype
    monkeypatch.setattr(modeling_utils, "get_parameter_dtype", lambda m: lookups.append(m) or original(m))
    core = SamplingCore(tiny_model)
    frame = request(image=init_image, strength=0.5, num_inference_steps=4)
    core.generate([frame], output_type="np")
    first = len(lookups)
    core.generate([frame, frame], output_type="np")
    unet_calls = core.stats["unet_calls"]
    assert len(lookups) - first < unet_calls / 2  # only what the UNet's own forward asks, none per frame


def test_mixed_requests_are_grouped_by_batch_key(tiny_model):
    core = SamplingCore(tiny_model)
    reqs = [request(seed=1), request(seed=2), request(seed=3, num_inference_steps=3), request(seed=4)]
    out = core.generate(reqs, batch_size=4, output_type="np")
    assert len(out) == 4
    assert core.stats["unet_calls"] == 2 + 3 + 2  # three batches: [0,1], [2], [3]


def test_events_report_steps_and_previews(tiny_model):
    steps, previews = [], []
    events = Events(on_step=steps.append, on_preview=previews.append, preview_every=1)
    SamplingCore(tiny_model, events).generate([request(num_inference_steps=3)])
    assert [e.step for e in steps] == [1, 2, 3]
    assert len(previews) == 3 and previews[0].size == (8, 8)


def test_cancel_stops_sampling(tiny_model):
    events = Events()
    events.cancel()
    with pytest.raises(RenderCancelled):
        SamplingCore(tiny_model, events).generate([request()])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"width": 60}, "width"),
        ({"height": 0}, "height"),
        ({"num_inference_steps": 0}, "steps"),
        ({"strength": 0.0}, "strength"),
        ({"sampler": "Euler b"}, "sampler"),
        ({"clip_skip": 0}, "clip_skip"),
    ],
)
def test_bad_requests_name_the_field(tiny_model, kwargs, field):
    with pytest.raises(FlipbookError) as error:
        SamplingCore(tiny_model).generate([request(**kwargs)])
    assert error.value.field == field


def test_too_little_strength_for_the_steps_is_an_error(tiny_model, init_image):
    with pytest.raises(FlipbookError, match="strength"):
        SamplingCore(tiny_model).generate([request(image=init_image, strength=0.2, num_inference_steps=2)])


@pytest.mark.parametrize("content", ["fill", "latent_noise", "latent_nothing"])
def test_masked_content_modes_keep_unmasked_pixels_with_overlay(tiny_model, init_image, mask_image, content):
    out = SamplingCore(tiny_model).generate(
        [request(image=init_image, mask_image=mask_image, masked_content=content, inpaint_overlay=True)]
    )[0]
    original, result = np.asarray(init_image), np.asarray(out)
    outside = np.asarray(mask_image) == 0
    assert np.abs(original[outside].astype(int) - result[outside].astype(int)).max() <= 1


@pytest.mark.parametrize("sampler", ["DPM++ SDE", "Euler a", "DPM++ 2M SDE Karras"])
def test_stochastic_samplers_are_reproducible(tiny_model, sampler):
    a, b = images(tiny_model, [request(sampler=sampler, seed=9), request(sampler=sampler, seed=9)])
    assert np.array_equal(a, b)


STOCHASTIC_SAMPLERS = [name for name in SAMPLER_NAMES + SCHEDULER_CLASS_NAMES if is_stochastic(name)]


@pytest.mark.parametrize("sampler", STOCHASTIC_SAMPLERS)
def test_stochastic_samplers_give_each_frame_its_own_noise_in_a_batch(tiny_model, sampler):
    """A frame must not depend on its neighbours: a batch gives the images of the same requests one by one
    (per-step noise, DPM++ SDE's Brownian tree included, comes from each request's own seed)."""
    reqs = [request(seed=seed, sampler=sampler) for seed in (11, 12)]
    together = images(tiny_model, reqs, batch_size=2)
    one_by_one = images(tiny_model, reqs, batch_size=1)
    assert np.abs(together - one_by_one).max() <= 1e-4
    assert np.abs(together[0] - together[1]).max() > 1e-3


def test_nan_from_the_vae_is_one_error_naming_the_stage_not_a_black_frame(tiny_model, monkeypatch):
    """A VAE that overflows (SDXL's in fp16) gives NaN pixels; they are refused with what to try, as A1111's
    NaN check does, instead of being written as black frames."""
    from flipbook.errors import NumericError

    decode = tiny_model.vae.decode

    def overflowing(latents, *args, **kwargs):
        out = decode(latents, *args, **kwargs)
        out[0][-1] = float("nan")  # the last image of each decode
        return out

    monkeypatch.setattr(tiny_model.vae, "decode", overflowing)
    with pytest.raises(NumericError) as error:
        images(tiny_model, [request(seed=1), request(seed=2)])
    assert "the VAE's decode" in str(error.value) and "1 of " in str(error.value)
    assert "model.dtype" in str(error.value)


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
    bad=st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from([float("nan"), float("inf"), float("-inf")])), max_size=3
    ),  # fmt: skip
    huge=st.booleans(),
)
def test_the_finite_check_counts_exactly_the_images_with_a_bad_value(dtype, bad, huge):
    """One sum per image decides quickly; finite values summing past the float range are not mistaken for bad
    ones, and every image with a NaN or an infinity is counted."""
    from flipbook.errors import NumericError
    from flipbook.sampling.steps import check_finite

    images = torch.randn(3, 4, 8, 8).to(dtype)
    if huge:  # every value near the largest finite one: the sum overflows, no value is bad
        images = torch.full_like(images, torch.finfo(dtype).max)
    for row, value in bad:
        images[row, 1, 2, 3] = value
    affected = {row for row, _ in bad}
    if not affected:
        assert check_finite(images, "x") is images
        return
    with pytest.raises(NumericError) as error:
        check_finite(images, "x")
    assert f"{len(affected)} of 3" in str(error.value)


@pytest.mark.parametrize("kind", ["pil", "array", "tensor"])
def test_an_init_image_is_normalised_as_diffusers_image_processor_does(kind):
    """RGB pictures of the request's size skip the image processor's PIL and numpy copies with the same
    arithmetic: the same values; other sizes and modes still go through it (resized, converted)."""
    import PIL.Image
    from diffusers.image_processor import VaeImageProcessor

    from flipbook.sampling.core import _normalized, _rgb_levels

    levels = np.random.default_rng(3).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    picture = PIL.Image.fromarray(levels)
    expected = VaeImageProcessor(vae_scale_factor=8).preprocess(picture, height=24, width=40)
    given_image = {"pil": picture, "array": levels, "tensor": torch.from_numpy(levels)}[kind]
    assert torch.equal(_normalized(_rgb_levels(given_image, 40, 24)), expected)
    assert _rgb_levels(given_image, 48, 24) is None  # another size: diffusers resizes it
    assert _rgb_levels(picture.convert("RGBA"), 40, 24) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_decoded_images_become_the_pictures_diffusers_image_processor_makes(dtype):
    """The same bytes as the image processor's postprocess to PIL, values past [-1, 1] and ties included."""
    from diffusers.image_processor import VaeImageProcessor

    from flipbook.sampling.core import _rgb_pictures

    images = (torch.randn(2, 3, 24, 40) * 0.8).to(dtype)
    images[0, 0, 0, :4] = torch.tensor([-1.5, 1.5, 3.0 / 255 - 1, 2 * 0.5 / 255 - 1])  # clipped, x.5 levels
    expected = VaeImageProcessor(vae_scale_factor=8).postprocess(images, output_type="pil")
    got = _rgb_pictures(images)
    assert all(np.array_equal(np.asarray(e), g) for e, g in zip(expected, got, strict=True))

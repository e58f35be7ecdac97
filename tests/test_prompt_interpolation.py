"""animation.prompt_interpolation: hold / lerp / slerp of the text conditioning between keyframes."""

import numpy as np
import PIL.Image
import pytest
import torch

from flipbook.errors import FlipbookError
from flipbook.runs.render import render
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.encode import slerp_embeddings
from flipbook.sampling.requests import FrameRequest
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import FramePlan, build_plan

pytestmark = pytest.mark.usefixtures("one_thread")

LONG = "a lighthouse " * 50  # 100 tokens: two 75-token chunks


def plan(interpolation=None, prompts=None, max_frames=7):
    animation = {"max_frames": max_frames}
    if interpolation is not None:
        animation["prompt_interpolation"] = interpolation
    data = {
        "sampling": {"seed": 3},
        "animation": animation,
        "prompts": prompts or {"0": "a forest --neg fog", "4": "a city --neg rain"},
    }
    return build_plan(spec_from_data(data))


# ---- plan ------------------------------------------------------------------------------------------------


def test_hold_is_the_default_and_never_blends():
    held = plan()
    assert held.frames == plan("hold").frames
    assert [f.blend for f in held.frames] == [0.0] * 7
    assert all(f.next_prompt == f.prompt and f.next_negative_prompt == f.negative_prompt for f in held.frames)


@pytest.mark.parametrize("interpolation", ["lerp", "slerp"])
def test_blend_rises_linearly_to_the_next_keyframe_then_holds(interpolation):
    frames = plan(interpolation).frames
    assert [f.blend for f in frames] == [0.0, 0.25, 0.5, 0.75, 0.0, 0.0, 0.0]
    assert [f.prompt for f in frames] == ["a forest"] * 4 + ["a city"] * 3
    assert [f.next_prompt for f in frames] == ["a city"] * 7
    assert [f.next_negative_prompt for f in frames[:4]] == ["rain"] * 4
    after = frames[4:]  # from the last keyframe on: nothing to travel to
    assert all(f.next_prompt == f.prompt and f.next_negative_prompt == f.negative_prompt for f in after)


def test_frames_before_the_first_keyframe_hold_it():
    frames = plan("lerp", {"2": "a", "6": "b"}, max_frames=8).frames
    assert [f.blend for f in frames] == [0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 0.0, 0.0]
    assert frames[0].next_prompt == frames[0].prompt == "a"


def test_backtick_math_in_the_next_prompt_is_evaluated_at_this_frame():
    frames = plan("slerp", {"0": "a (x:`1+t/10`)", "4": "b (y:`t*2`)"}).frames
    assert frames[1].prompt == "a (x:1.1)" and frames[1].next_prompt == "b (y:2)"
    assert frames[3].next_prompt == "b (y:6)" and frames[4].prompt == frames[4].next_prompt == "b (y:8)"


def test_composable_keyframes_blend_too():
    frames = plan("lerp", {"0": "a forest AND a lake", "4": "a city"}).frames
    assert frames[2].blend == 0.5 and frames[2].next_prompt == "a city"


def test_frame_plan_defaults_keep_the_prompt():
    frame = FramePlan(
        index=0, prompt_key=0, prompt="p", negative_prompt="n", seed=1, sampler="Euler", cfg=7.0,
        strength=0.5, denoise=0.5,
    )  # fmt: skip
    assert (frame.next_prompt, frame.next_negative_prompt, frame.blend) == ("p", "n", 0.0)


# ---- requests --------------------------------------------------------------------------------------------


def request(prompt="a lighthouse", **kwargs):
    defaults = dict(seed=1, num_inference_steps=2, guidance_scale=7.0, sampler="Euler", width=64, height=64)
    return FrameRequest(prompt, **{**defaults, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"blend_weight": -0.1}, "blend_weight"),
        ({"blend_weight": 1.5}, "blend_weight"),
        ({"blend_weight": float("nan")}, "blend_weight"),
        ({"blend_mode": "cubic"}, "blend_mode"),
        ({"latents": torch.zeros(1, 4, 4, 4)}, "latents"),
        ({"latents": torch.zeros(2, 4, 8, 8)}, "latents"),
    ],
)
def test_bad_blends_name_the_field(kwargs, field):
    with pytest.raises(FlipbookError) as error:
        request(**kwargs).validate()
    assert error.value.field == field


def test_composable_blends_mix_the_parts_weights():
    parts, others = request(prompt="a AND b :2", blend_prompt="c", blend_weight=0.25).prompt_parts()
    assert others is None
    assert parts == [("a", 0.75), ("b", 1.5), ("c", 0.25)]
    end, _ = request(prompt="a | b", blend_prompt="c", blend_weight=1.0).prompt_parts()
    assert end == [("c", 1.0)]  # parts at weight 0 are left out: w = 1 is exactly the next prompt


def test_composable_blend_equals_the_weighted_composable_prompt(tiny_model):
    """Blending with a composable side is guidance-space mixing: the same as writing the weights out."""
    core = SamplingCore(tiny_model)
    blended = request(prompt="a forest AND a lake", blend_prompt="a city", blend_weight=0.25)
    written = request(prompt="a forest :0.75 AND a lake :0.75 AND a city :0.25")
    a, b = core.generate([blended, written], output_type="np")
    np.testing.assert_array_equal(a, b)


def test_valid_blends_and_batch_key():
    request(prompt="a AND b", blend_prompt="c", blend_weight=0.0).validate()  # weight 0: no blend
    request(prompt="a AND b", blend_prompt="a AND b", blend_weight=0.5).validate()  # same text: no blend
    request(blend_prompt="a city", blend_weight=1.0, blend_mode="slerp").validate()
    plain, blended = request(), request(blend_prompt="a city", blend_weight=0.3, blend_mode="slerp")
    assert plain.batch_key() == blended.batch_key()


# ---- core ------------------------------------------------------------------------------------------------


def conditioning(model, **kwargs):
    """(negative embedding, positive embedding) of one request as the core conditions on them."""
    negative, parts = SamplingCore(model).prompt_embeddings(request(**kwargs))
    assert len(parts) == 1
    return negative, parts[0][0]


def test_weight_zero_or_equal_prompts_equal_no_blend_exactly(tiny_model):
    plain = conditioning(tiny_model, negative_prompt="fog")
    for kwargs in (
        {"blend_prompt": "a city", "blend_negative_prompt": "rain", "blend_weight": 0.0},
        {"blend_prompt": "a lighthouse", "blend_negative_prompt": "fog", "blend_weight": 0.4},
        {
            "blend_prompt": "a lighthouse",
            "blend_negative_prompt": "fog",
            "blend_weight": 0.4,
            "blend_mode": "slerp",
        },
    ):
        blended = conditioning(tiny_model, negative_prompt="fog", **kwargs)
        assert all(torch.equal(a, b) for a, b in zip(plain, blended, strict=True))


@pytest.mark.parametrize("mode", ["lerp", "slerp"])
def test_weight_one_equals_the_blend_prompt(tiny_model, mode):
    target = conditioning(tiny_model, prompt="a city", negative_prompt="rain")
    kwargs = dict(negative_prompt="fog", blend_prompt="a city", blend_negative_prompt="rain", blend_mode=mode)
    blended = conditioning(tiny_model, blend_weight=1.0, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(target, blended, strict=True))


def test_lerp_half_is_the_mean(tiny_model):
    (na, a), (nb, b) = (
        conditioning(tiny_model, negative_prompt="fog"),
        conditioning(tiny_model, prompt="a city", negative_prompt="rain"),
    )
    negative, positive = conditioning(
        tiny_model,
        negative_prompt="fog",
        blend_prompt="a city",
        blend_negative_prompt="rain",
        blend_weight=0.5,
    )
    torch.testing.assert_close(positive, (a + b) / 2)
    torch.testing.assert_close(negative, (na + nb) / 2)


def test_slerp_keeps_token_norms_between_and_differs_from_lerp(tiny_model):
    a = conditioning(tiny_model)[1]
    b = conditioning(tiny_model, prompt="a city at night")[1]
    kwargs = dict(blend_prompt="a city at night", blend_weight=0.5)
    slerped = conditioning(tiny_model, blend_mode="slerp", **kwargs)[1]
    lerped = conditioning(tiny_model, blend_mode="lerp", **kwargs)[1]
    norm_a, norm_b, norm = (x.norm(dim=-1) for x in (a, b, slerped))
    tolerance = 1e-4 * norm_a.max()
    assert bool(
        (
            (norm >= torch.minimum(norm_a, norm_b) - tolerance)
            & (norm <= torch.maximum(norm_a, norm_b) + tolerance)
        ).all()
    )
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    bent = cosine.abs() < 0.99  # tokens whose vectors are clearly not parallel
    assert bool(bent.any())
    assert (slerped - lerped).norm(dim=-1)[bent].min() > 1e-4
    torch.testing.assert_close(slerped[~bent], lerped[~bent], atol=1e-3, rtol=1e-3)


def test_slerp_follows_the_great_circle_and_lerps_the_norm():
    a = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [1.0, 0.0]]])
    b = torch.tensor([[[0.0, 1.0], [0.0, 4.0], [3.0, 0.0]]])  # the last pair is parallel: lerp
    out = slerp_embeddings(a, b, 0.5)
    half = 2**-0.5
    torch.testing.assert_close(out[0, 0], torch.tensor([half, half]))
    torch.testing.assert_close(out[0, 1], torch.tensor([3 * half, 3 * half]))  # norm (2 + 4) / 2
    torch.testing.assert_close(out[0, 2], torch.tensor([2.0, 0.0]))


@pytest.mark.parametrize("mode", ["lerp", "slerp"])
def test_prompts_of_different_chunk_counts_blend(tiny_model, mode):
    short = conditioning(tiny_model)[1]
    long = conditioning(tiny_model, prompt=LONG)[1]
    assert short.shape[1] == 77 and long.shape[1] == 154
    blended = conditioning(tiny_model, blend_prompt=LONG, blend_weight=0.5, blend_mode=mode)[1]
    assert blended.shape == long.shape
    back = conditioning(
        tiny_model, prompt=LONG, blend_prompt="a lighthouse", blend_weight=1.0, blend_mode=mode
    )[1]
    empty_chunk = SamplingCore(tiny_model).encoder(1).empty_chunk()
    assert torch.equal(back, torch.cat([short, empty_chunk], dim=1))  # the short prompt, padded like uncond
    images = SamplingCore(tiny_model).generate(
        [request(blend_prompt=LONG, blend_weight=0.5, blend_mode=mode), request(seed=2)],
        batch_size=2,
        output_type="np",
    )
    assert len(images) == 2 and all(np.isfinite(image).all() for image in images)


def test_blended_and_plain_requests_share_a_batch(tiny_model):
    core = SamplingCore(tiny_model)
    blended = request(blend_prompt="a city", blend_weight=0.5, blend_mode="slerp")
    together = core.generate([request(), blended], batch_size=2, output_type="np")
    assert core.stats["unet_calls"] == 2  # one batch, two steps
    alone = SamplingCore(tiny_model).generate([blended], output_type="np")
    np.testing.assert_allclose(together[1], alone[0], atol=1e-5)
    assert np.abs(together[0] - together[1]).max() > 1e-3


# ---- render ----------------------------------------------------------------------------------------------


def render_frames(tmp_path, interpolation, prompts=None):
    data = {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"steps": 2, "seed": 11},
        "animation": {"max_frames": 3, "width": 64, "height": 64, "prompt_interpolation": interpolation},
        "prompts": prompts or {"0": "a forest --neg fog", "2": "a city at night --neg rain"},
        "output": {"dir": str(tmp_path), "name": interpolation, "formats": ["png"]},
    }
    result = render(spec_from_data(data))
    return [np.asarray(PIL.Image.open(path)) for path in result.frames]


def test_slerp_travel_differs_from_hold_after_frame_0(tmp_path):
    held, slerped = render_frames(tmp_path, "hold"), render_frames(tmp_path, "slerp")
    assert np.array_equal(held[0], slerped[0])  # a keyframe: weight 0
    assert not np.array_equal(held[1], slerped[1])  # halfway to "a city at night"


def test_lerp_between_equal_keyframes_renders_like_hold(tmp_path):
    prompts = {"0": "a forest --neg fog", "2": "a forest --neg fog"}
    held, lerped = render_frames(tmp_path, "hold", prompts), render_frames(tmp_path, "lerp", prompts)
    assert all(np.array_equal(a, b) for a, b in zip(held, lerped, strict=True))

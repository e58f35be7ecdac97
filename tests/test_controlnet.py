"""ControlNet: preprocessors, loading, the core against diffusers' ControlNet pipelines, units in the spec and a
render. Every network is the tiny model with a tiny random ControlNet built in code."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import (
    ControlNetModel,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetPipeline,
)

from flipbook.control import ControlUnits
from flipbook.control.preprocess import PREPROCESSORS, canny, lineart, preprocess, shuffle, tile
from flipbook.errors import FlipbookError, SpecError
from flipbook.models.controlnet import (
    ControlNets,
    check_fits,
    load_controlnet,
    locate_controlnet,
    tiny_controlnet,
)
from flipbook.models.families.sd.convert import unet_original_key
from flipbook.models.weights import CONFIG_METADATA_KEY
from flipbook.runs.render import render
from flipbook.samplers.schedulers import make_scheduler
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import Control, FrameRequest
from flipbook.spec.load import spec_from_data
from flipbook.spec.model import ControlNetUnit
from flipbook.spec.plan import build_plan

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-4  # as tests/test_equivalence.py


def generator(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


@pytest.fixture(scope="module")
def controlnet(tiny_model) -> ControlNetModel:
    return tiny_controlnet(tiny_model.unet.config)


@pytest.fixture(scope="module")
def controlnet_b(tiny_model) -> ControlNetModel:
    return tiny_controlnet(tiny_model.unet.config, seed=1)


@pytest.fixture()
def control_image(init_image) -> PIL.Image.Image:
    return PIL.Image.fromarray(255 - np.asarray(init_image))


def square(size: int = 64, low: int = 16, high: int = 48) -> PIL.Image.Image:
    array = np.zeros((size, size, 3), np.uint8)
    array[low:high, low:high] = 255
    return PIL.Image.fromarray(array)


# ---- preprocessors ---------------------------------------------------------------------------------------


def test_canny_finds_the_edges_of_a_square():
    edges = np.asarray(canny(square(), 100, 200))
    assert edges.shape == (64, 64, 3) and np.array_equal(edges[..., 0], edges[..., 2])
    on = edges[..., 0] > 0
    assert on[15:17, 20:44].any(axis=0).all() and on[47:49, 20:44].any(axis=0).all()  # top and bottom sides
    assert on[20:44, 15:17].any(axis=1).all() and on[20:44, 47:49].any(axis=1).all()  # left and right sides
    assert not on[22:42, 22:42].any() and not on[:10].any() and not on[56:].any()  # nothing inside or away


def test_lineart_is_white_lines_on_black():
    array = np.full((64, 64, 3), 240, np.uint8)
    array[30:33, 8:56] = 10  # a dark horizontal line on a light page
    array[8:56, 12:14] = 10  # and a vertical one
    out = np.asarray(lineart(PIL.Image.fromarray(array)))
    assert out.shape == (64, 64, 3)
    lines = np.concatenate([out[31, 20:50, 0], out[20:28, 12, 0]])
    assert lines.min() >= 100  # light lines (the median line strength maps to 127, as in sd-webui-controlnet)
    assert np.median(out) == 0 and out[:4, 30:].max() == 0 and out[45:, 30:].max() == 0  # on a black page


def test_tile_is_a_blurred_copy_of_the_same_size(init_image):
    noisy = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    out = np.asarray(tile(PIL.Image.fromarray(noisy), 4.0))
    assert out.shape == noisy.shape

    def roughness(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a.astype(np.float32), axis=1)).mean())

    assert roughness(out) < 0.4 * roughness(noisy)
    assert abs(out.astype(np.float32).mean() - noisy.astype(np.float32).mean()) < 3  # same picture, softer
    assert np.array_equal(np.asarray(tile(init_image, 1.0)), np.asarray(init_image))


def test_shuffle_is_a_deterministic_remap_of_the_input():
    y, x = np.mgrid[0:64, 0:64]
    unique = np.stack([x * 4, y * 4, np.full_like(x, 7)], axis=-1).astype(np.uint8)  # every pixel distinct
    image = PIL.Image.fromarray(unique)
    a, again, other = (np.asarray(shuffle(image, seed)) for seed in (5, 5, 6))
    assert np.array_equal(a, again) and not np.array_equal(a, other)
    assert a.shape == unique.shape and not np.array_equal(a, unique)
    source_pixels = {tuple(p) for p in unique.reshape(-1, 3)}
    assert {tuple(p) for p in a.reshape(-1, 3)} <= source_pixels  # only pixels of the input, moved
    assert len({tuple(p) for p in a.reshape(-1, 3)}) > 200  # a remap over the image, not a few pixels copied


def test_depth_map_has_the_image_size(init_image):
    from flipbook.imaging.depth import DepthEstimator

    out = preprocess("depth", init_image.resize((48, 40)), model=DepthEstimator.load("tiny", device="cpu"))
    array = np.asarray(out)
    assert out.size == (48, 40) and array.shape == (40, 48, 3) and array.dtype == np.uint8
    assert array.max() == 255  # normalised: the nearest pixel is white


def test_openpose_without_controlnet_aux_says_what_to_install(init_image):
    try:
        import controlnet_aux  # noqa: F401

        pytest.skip("controlnet_aux is installed here")
    except ImportError:
        pass
    with pytest.raises(FlipbookError) as info:
        preprocess("openpose", init_image)
    assert info.value.field == "preprocessor" and info.value.value == "openpose"
    assert "controlnet_aux" in str(info.value)


def test_spec_preprocessors_are_the_ones_that_exist():
    annotation = ControlNetUnit.model_fields["preprocessor"].annotation
    assert set(typing.get_args(annotation)) == set(PREPROCESSORS)
    with pytest.raises(FlipbookError):
        preprocess("sobel", square())


# ---- loading ---------------------------------------------------------------------------------------------


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_controlnet_fits_the_tiny_model_and_steers(tiny_model, controlnet):
    check_fits(controlnet, tiny_model.unet, "tiny")
    assert _same_weights(controlnet, tiny_controlnet(tiny_model.unet.config))  # seeded: same weights
    assert not _same_weights(controlnet, tiny_controlnet(tiny_model.unet.config, seed=1))
    assert controlnet.controlnet_cond_embedding.conv_out.weight.abs().sum() > 0  # not ControlNet's zero init
    other = tiny_controlnet({**tiny_model.unet.config, "cross_attention_dim": 64})
    with pytest.raises(FlipbookError, match="cross_attention_dim"):
        check_fits(other, tiny_model.unet, "other", field="controlnet[0].model")


def _original_layout(controlnet: ControlNetModel) -> dict[str, torch.Tensor]:
    """The ControlNet under lllyasviel's original keys (``control_model.`` + LDM names), as .pth files have."""
    layers, up = controlnet.config.layers_per_block, ["UpBlock2D"] * 4
    renamed = {}
    for key, value in controlnet.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if key.startswith("controlnet_down_blocks."):
            original = f"zero_convs.{module.split('.')[1]}.0.{leaf}"
        elif module == "controlnet_mid_block":
            original = f"middle_block_out.0.{leaf}"
        elif module == "controlnet_cond_embedding.conv_in":
            original = f"input_hint_block.0.{leaf}"
        elif module == "controlnet_cond_embedding.conv_out":
            original = f"input_hint_block.14.{leaf}"
        elif module.startswith("controlnet_cond_embedding.blocks."):
            original = f"input_hint_block.{2 * (int(module.split('.')[-1]) + 1)}.{leaf}"
        else:
            original = unet_original_key(key, layers_per_block=layers, up_block_types=up)
        renamed["control_model." + original] = value.clone()
    return renamed


def test_single_files_load_offline_in_both_layouts(tmp_path, controlnet):
    from safetensors.torch import save_file

    # diffusers layout, with the config flipbook embeds: the very same network
    embedded = {CONFIG_METADATA_KEY: json.dumps({"controlnet": dict(controlnet.config)})}
    state = {k: v.contiguous() for k, v in controlnet.state_dict().items()}
    save_file(state, tmp_path / "cn.safetensors", metadata=embedded)
    loaded = load_controlnet(str(tmp_path / "cn.safetensors"))
    assert _same_weights(loaded, controlnet) and loaded.config.norm_num_groups == 8
    # lllyasviel's original layout in a .pth (tensors only): every weight lands in its place
    torch.save({"state_dict": _original_layout(controlnet)}, tmp_path / "control_tiny.pth")
    original = load_controlnet(str(tmp_path / "control_tiny.pth"))
    assert _same_weights(original, controlnet)
    assert list(original.config.block_out_channels) == [32, 32, 64, 64]
    # sd-webui-controlnet's yaml marks global-pooling (shuffle) models
    (tmp_path / "control_tiny.yaml").write_text("model:\n  params:\n    global_average_pooling: True\n")
    assert load_controlnet(str(tmp_path / "control_tiny.pth")).config.global_pool_conditions


def test_folders_models_dir_and_bad_names(tmp_path, controlnet):
    webui = tmp_path / "webui"
    controlnet.save_pretrained(webui / "models/ControlNet/tiny-diffusers")
    extension = webui / "extensions/sd-webui-controlnet/models"
    extension.mkdir(parents=True)
    torch.save(_original_layout(controlnet), extension / "control_v11p_tiny.pth")
    assert locate_controlnet("tiny-diffusers", models_dir=webui)[0] == "folder"
    assert _same_weights(load_controlnet("tiny-diffusers", models_dir=webui), controlnet)
    assert _same_weights(load_controlnet("control_v11p_tiny", models_dir=webui), controlnet)
    assert locate_controlnet("lllyasviel/control_v11p_sd15_canny") == (
        "hub",
        "lllyasviel/control_v11p_sd15_canny",
    )
    cases = [
        ("missing.safetensors", None, "no such file"),
        ("nothing-like-it", webui, "one of"),
        ("nobody/not-cached-anywhere", None, "cache"),  # HF_HUB_OFFLINE is set for tests
    ]
    for name, models_dir, says in cases:
        with pytest.raises(FlipbookError, match=says) as info:
            load_controlnet(name, models_dir=models_dir, field="controlnet[1].model")
        assert info.value.field == "controlnet[1].model"
    torch.save({"model.diffusion_model.conv.weight": torch.zeros(1)}, tmp_path / "not_a_controlnet.pth")
    with pytest.raises(FlipbookError, match="no ControlNet weights"):
        load_controlnet(str(tmp_path / "not_a_controlnet.pth"))


def test_a_run_loads_each_controlnet_once(tiny_model, control_image, controlnet):
    controlnets = ControlNets()
    core = SamplingCore(tiny_model, controlnets=controlnets)
    by_name = FrameRequest("a fox", seed=4, num_inference_steps=2, width=64, height=64,
                           controls=(Control("tiny", control_image, 0.9),))  # fmt: skip
    first = core.generate([by_name], output_type="np")[0]
    again = core.generate([by_name], output_type="np")[0]
    assert controlnets.loads == 1 and np.array_equal(first, again)
    given = FrameRequest("a fox", seed=4, num_inference_steps=2, width=64, height=64,
                         controls=(Control("x", control_image, 0.9, controlnet=controlnet),))  # fmt: skip
    assert np.array_equal(first, core.generate([given], output_type="np")[0])


# ---- the core against diffusers ------------------------------------------------------------------------


def controlnet_pipe(cls, model, controlnet, sampler):
    pipe = cls(**model.pipe.components, controlnet=controlnet)
    pipe.scheduler = make_scheduler(sampler, model.scheduler_config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def core_images(model, requests, **kwargs) -> np.ndarray:
    return np.stack(SamplingCore(model).generate(requests, output_type="np", **kwargs))


@pytest.mark.parametrize(
    ("sampler", "start", "end"), [("Euler a", 0.0, 1.0), ("DPM++ 2M Karras", 0.25, 0.75), ("DDIM", 0.0, 0.5)]
)
def test_txt2img_matches_the_controlnet_pipeline(tiny_model, controlnet, control_image, sampler, start, end):
    pipe = controlnet_pipe(StableDiffusionControlNetPipeline, tiny_model, controlnet, sampler)
    expected = pipe(
        "a red fox in the snow", negative_prompt="blurry", image=control_image, num_inference_steps=4,
        guidance_scale=7.5, height=64, width=64, generator=generator(42), output_type="np",
        controlnet_conditioning_scale=0.7, control_guidance_start=start, control_guidance_end=end,
    ).images  # fmt: skip
    request = FrameRequest(
        "a red fox in the snow", "blurry", seed=42, num_inference_steps=4, guidance_scale=7.5, sampler=sampler,
        width=64, height=64, controls=(Control("tiny", control_image, 0.7, start, end, controlnet=controlnet),),
    )  # fmt: skip
    got = core_images(tiny_model, [request])
    assert got.shape == expected.shape == (1, 64, 64, 3)
    assert np.abs(got - expected).max() <= TOL
    plain = core_images(tiny_model, [FrameRequest(**{**request.__dict__, "controls": ()})])
    assert np.abs(got - plain).max() > 0.01  # the ControlNet did steer


def test_img2img_matches_the_controlnet_img2img_pipeline(tiny_model, controlnet, init_image, control_image):
    pipe = controlnet_pipe(StableDiffusionControlNetImg2ImgPipeline, tiny_model, controlnet, "Euler a")
    expected = pipe(
        "an oil painting", image=init_image, control_image=control_image, strength=0.6, num_inference_steps=5,
        guidance_scale=6.0, generator=generator(7), output_type="np", controlnet_conditioning_scale=1.2,
    ).images  # fmt: skip
    request = FrameRequest("an oil painting", seed=7, num_inference_steps=5, guidance_scale=6.0, width=64,
                           height=64, image=init_image, strength=0.6,
                           controls=(Control("tiny", control_image, 1.2, controlnet=controlnet),))  # fmt: skip
    assert np.abs(core_images(tiny_model, [request]) - expected).max() <= TOL


def test_two_units_match_multicontrolnet(tiny_model, controlnet, controlnet_b, init_image, control_image):
    pipe = controlnet_pipe(StableDiffusionControlNetPipeline, tiny_model, [controlnet, controlnet_b], "DDIM")
    expected = pipe(
        "a castle", image=[control_image, init_image], num_inference_steps=5, guidance_scale=6.0, height=64,
        width=64, generator=generator(3), output_type="np", controlnet_conditioning_scale=[0.8, 1.3],
        control_guidance_start=[0.0, 0.2], control_guidance_end=[0.6, 1.0],
    ).images  # fmt: skip
    controls = (
        Control("a", control_image, 0.8, 0.0, 0.6, controlnet=controlnet),
        Control("b", init_image, 1.3, 0.2, 1.0, controlnet=controlnet_b),
    )
    request = FrameRequest("a castle", seed=3, num_inference_steps=5, guidance_scale=6.0, sampler="DDIM",
                           width=64, height=64, controls=controls)  # fmt: skip
    assert np.abs(core_images(tiny_model, [request]) - expected).max() <= TOL


def test_global_pooling_controlnet_matches_guess_mode(tiny_model, control_image):
    """Shuffle-style ControlNets act on the conditional rows only, as the pipeline's forced guess mode does."""
    pooled = tiny_controlnet(tiny_model.unet.config, seed=2)
    pooled.register_to_config(global_pool_conditions=True)
    pipe = controlnet_pipe(StableDiffusionControlNetPipeline, tiny_model, pooled, "Euler")
    expected = pipe(
        "a lake", image=control_image, num_inference_steps=3, height=64, width=64, generator=generator(9),
        output_type="np",
    ).images  # fmt: skip
    request = FrameRequest("a lake", seed=9, num_inference_steps=3, guidance_scale=7.5, sampler="Euler",
                           width=64, height=64, controls=(Control("p", control_image, controlnet=pooled),))  # fmt: skip
    assert np.abs(core_images(tiny_model, [request]) - expected).max() <= TOL


def test_a_batch_with_per_request_images_and_weights_equals_one_by_one(
    tiny_model, controlnet, controlnet_b, init_image, control_image
):
    images = [control_image, init_image, square()]
    settings = [(0.5, 0.0, 1.0), (1.5, 0.25, 1.0), (1.0, 0.0, 0.5)]
    requests = [
        FrameRequest(
            f"a frame {i}", seed=10 + i, num_inference_steps=4, guidance_scale=7.5 if i != 1 else 1.0,
            width=64, height=64, image=init_image, strength=0.75,
            controls=(
                Control("a", image, scale, start, end, controlnet=controlnet),
                Control("b", images[(i + 1) % 3], 0.6, controlnet=controlnet_b),
            ),
        )
        for i, (image, (scale, start, end)) in enumerate(zip(images, settings, strict=True))
    ]  # fmt: skip
    core = SamplingCore(tiny_model)
    batched = np.stack(core.generate(requests, batch_size=3, output_type="np"))
    assert core.stats["unet_calls"] == 3  # one batch (strength 0.75 of 4 steps): one UNet call per step
    one_by_one = core_images(tiny_model, requests, batch_size=1)
    assert np.abs(batched - one_by_one).max() <= 1e-5


def test_weight_zero_is_no_controlnet_and_units_split_batches(
    tiny_model, controlnet, controlnet_b, control_image
):
    base = FrameRequest("a tree", seed=8, num_inference_steps=3, width=64, height=64)
    zero = FrameRequest(
        **{**base.__dict__, "controls": (Control("a", control_image, 0.0, controlnet=controlnet),)}
    )
    core = SamplingCore(tiny_model)
    assert np.array_equal(core_images(tiny_model, [base]), np.stack(core.generate([zero], output_type="np")))
    assert core.stats["controlnet_calls"] == 0  # every row at weight 0: the network is not even run
    other = FrameRequest(
        **{**zero.__dict__, "controls": (Control("b", control_image, controlnet=controlnet_b),)}
    )
    assert zero.batch_key() != other.batch_key() != base.batch_key()
    with pytest.raises(FlipbookError) as info:
        FrameRequest(
            **{**zero.__dict__, "controls": (Control("a", control_image, 1.0, 0.6, 0.4),)}
        ).validate()
    assert info.value.field == "controls[0].guidance_end"


# ---- units in the spec, requests and a render ------------------------------------------------------------

SPEC: dict = {
    "model": {"name": "tiny", "device": "cpu"},
    "sampling": {"steps": 4, "seed": 5},
    "animation": {"mode": "travel", "max_frames": 3, "width": 64, "height": 64, "strength": 0.5},
    "prompts": {"0": "a forest", "2": "a city"},
    "output": {"formats": ["png"]},
}


def make_spec(tmp_path: Path, units: list[dict], name: str, **sections) -> typing.Any:
    return spec_from_data({**SPEC, **sections, "controlnet": units,
                           "output": {**SPEC["output"], "dir": str(tmp_path / "out"), "name": name}})  # fmt: skip


def frames(result) -> list[np.ndarray]:
    return [np.asarray(PIL.Image.open(p)) for p in result.frames]


def test_travel_render_with_a_controlnet_unit(tmp_path, control_image):
    control_image.save(tmp_path / "control.png")
    unit = {"model": "tiny", "image": str(tmp_path / "control.png"), "preprocessor": "canny"}
    plain = frames(render(make_spec(tmp_path, [], "plain")))
    weights = {name: frames(render(make_spec(tmp_path, [{**unit, "weight": w}], name)))
               for name, w in [("w1", 1.0), ("w2", "0:(2), 1:(0.5)"), ("w0", 0.0)]}  # fmt: skip
    assert len(weights["w1"]) == 3
    assert all(not np.array_equal(a, b) for a, b in zip(weights["w1"], plain, strict=True))
    assert all(not np.array_equal(a, b) for a, b in zip(weights["w1"], weights["w2"], strict=True))
    # weight 0: the ControlNet is skipped at every step, so the UNet calls are exactly those without it
    assert all(np.array_equal(a, b) for a, b in zip(weights["w0"], plain, strict=True))


def test_a_unit_s_video_gives_frame_n_its_frame_n_and_its_end_hands_over_to_the_frame_s_input(tmp_path):
    """``controlnet[i].video``: frame N is controlled by the video's frame N (at the animation size); past the
    video's last frame by each frame's own input, as without a video; a render with it differs from one
    controlled by the first picture alone."""
    pictures = [square(64, 8 + 8 * i, 40 + 8 * i) for i in range(2)]
    pictures[0].save(tmp_path / "control.gif", save_all=True, append_images=pictures[1:], duration=125)
    spec = make_spec(
        tmp_path, [{"model": "tiny", "video": str(tmp_path / "control.gif")}], "video"
    ).with_seed()
    units, plan = ControlUnits(spec), build_plan(spec)
    own = square(64, 20, 30)
    shown = [np.asarray(units.controls(plan[i], own)[0].image) for i in range(3)]
    assert np.array_equal(shown[0], np.asarray(pictures[0])) and np.array_equal(
        shown[1], np.asarray(pictures[1])
    )
    assert np.array_equal(shown[2], np.asarray(own))  # past the end: the frame's own input
    with pytest.raises(SpecError) as error:
        make_spec(tmp_path, [{"model": "tiny", "video": str(tmp_path / "control.gif"),
                              "image": str(tmp_path / "control.gif")}], "both")  # fmt: skip
    assert error.value.field == "controlnet[0].video"
    pictures[0].save(tmp_path / "still.png")
    still = make_spec(tmp_path, [{"model": "tiny", "image": str(tmp_path / "still.png")}], "still")
    moving = make_spec(tmp_path, [{"model": "tiny", "video": str(tmp_path / "control.gif")}], "moving")
    a, b = frames(render(still)), frames(render(moving))
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[1], b[1])


def test_frame_requests_control_with_the_frame_image(tmp_path, init_image):
    init_image.save(tmp_path / "init.png")
    spec = make_spec(tmp_path, [{"model": "tiny", "preprocessor": "shuffle", "weight": "0:(1), 2:(0.5)"},
                                {"model": "tiny", "preprocessor": "tile"}],
                     "units", init={"image": str(tmp_path / "init.png")}).with_seed()  # fmt: skip
    from flipbook.modes.frame import ModeContext, first_frame_request, frame_request

    plan = build_plan(spec)
    texts = {
        t for f in plan.frames for t in (f.prompt, f.negative_prompt, f.next_prompt, f.next_negative_prompt)
    }
    ctx = ModeContext(spec, plan, None, None, {t: (t, ()) for t in texts}, None)
    first = first_frame_request(ctx)
    assert [c.model for c in first.controls] == ["tiny", "tiny"]
    assert np.array_equal(np.asarray(first.controls[1].image), np.asarray(tile(first.image, 4.0)))
    later = frame_request(ctx, plan[2], square())
    assert later.controls[0].conditioning_scale == 0.5 and first.controls[0].conditioning_scale == 1.0
    assert np.array_equal(np.asarray(later.controls[0].image), np.asarray(shuffle(square(), plan[2].seed)))


@pytest.mark.parametrize(
    ("unit", "field"),
    [
        ({"model": "tiny", "image": "x.png", "preprocessor": "sobel"}, "controlnet[0].preprocessor"),
        ({"model": "tiny", "image": "x.png", "guidance_start": 0.5, "guidance_end": 0.5}, "controlnet[0].guidance_start"),
        ({"model": "tiny", "image": "x.png", "weight": "0:(1"}, "controlnet[0].weight"),
    ],
)  # fmt: skip
def test_spec_errors_name_the_unit_field(tmp_path, unit, field):
    with pytest.raises(SpecError) as info:
        make_spec(tmp_path, [{"model": "tiny", "image": "y.png"}, unit], "bad")
    assert info.value.field == field.replace("[0]", "[1]")


@pytest.mark.parametrize(
    ("unit", "field", "says"),
    [
        ({"model": "tiny", "image": "missing.png"}, "controlnet[0].image", "existing image file"),
        ({"model": "tiny"}, "controlnet[0].image", "txt2img"),
        ({"model": "no-such.safetensors", "image": "c.png"}, "controlnet[0].model", "no such file"),
        (
            {"model": "tiny", "image": "c.png", "weight": "0:(1), 2:(12)"},
            "controlnet[0].weight",
            "at frame 2",
        ),
    ],
)
def test_render_checks_units_before_any_model_loads(tmp_path, monkeypatch, square_png, unit, field, says):
    import flipbook.runs.cores

    monkeypatch.chdir(square_png.parent)
    monkeypatch.setattr(flipbook.runs.cores, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(FlipbookError, match=says) as info:
        render(make_spec(tmp_path, [unit], "checked"))
    assert info.value.field == field


@pytest.fixture()
def square_png(tmp_path) -> Path:
    path = tmp_path / "c.png"
    square().save(path)
    return path


def test_control_units_load_the_depth_model_once(tmp_path, monkeypatch, square_png):
    from flipbook.imaging.depth import DepthEstimator

    loads = []
    original = DepthEstimator.load
    monkeypatch.setattr(DepthEstimator, "load", lambda *a, **k: loads.append(a) or original(*a, **k))
    spec = make_spec(tmp_path, [{"model": "tiny", "image": str(square_png), "preprocessor": "depth"},
                                {"model": "tiny", "preprocessor": "depth", "weight": 0.5}],
                     "depth", init={"image": str(square_png)}).with_seed()  # fmt: skip
    units, plan = ControlUnits(spec), build_plan(spec)
    frames = [units.controls(plan[i], square(64, 8, 40)) for i in range(3)]
    assert len(loads) == 1  # one depth model for both units and every frame
    assert all(c.image.size == (64, 64) for controls in frames for c in controls)
    assert not np.array_equal(np.asarray(frames[0][0].image), np.asarray(frames[0][1].image))  # own image


@pytest.mark.parametrize(
    "folder",
    [
        "models/ControlNetPreprocessor",  # Forge's preprocessor folder
        "extensions/sd-webui-controlnet/annotator/downloads",  # sd-webui-controlnet's
        "models/Deforum",  # a depth model in Deforum's folder serves the depth preprocessor too
    ],
)
def test_the_depth_preprocessor_s_model_is_found_by_name_in_the_models_folder(tmp_path, square_png, folder):
    from flipbook.imaging.depth import DepthEstimator, tiny_depth_model

    webui = tmp_path / "webui"
    (webui / "models" / "Stable-diffusion").mkdir(parents=True)
    model, processor = tiny_depth_model()
    model.save_pretrained(webui / folder / "my-dpt")
    processor.save_pretrained(webui / folder / "my-dpt")
    unit = {
        "model": "tiny",
        "image": str(square_png),
        "preprocessor": "depth",
        "preprocessor_model": "my-dpt",
    }
    spec = make_spec(tmp_path, [unit], "depth", model={**SPEC["model"], "models_dir": str(webui)})
    control = ControlUnits(spec).preprocess(0, square(), seed=0)
    expected = preprocess("depth", square(), model=DepthEstimator.load("tiny", device="cpu"))
    np.testing.assert_array_equal(np.asarray(control), np.asarray(expected))  # the folder's weights: tiny's
    missing = make_spec(tmp_path, [{**unit, "preprocessor_model": "other"}], "depth",
                        model={**SPEC["model"], "models_dir": str(webui)})  # fmt: skip
    with pytest.raises(SpecError) as error:
        ControlUnits(missing).preprocess(0, square(), seed=0)
    assert error.value.field == "controlnet[0].preprocessor_model" and "my-dpt" in error.value.allowed

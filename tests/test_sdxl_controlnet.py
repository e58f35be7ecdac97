"""SDXL ControlNets on tiny-xl: the sampling core against diffusers' StableDiffusionXLControlNetPipeline (same
model, ControlNet, seeds and settings -> same pixels), and a ControlNet of another family is one clear error."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import StableDiffusionXLControlNetPipeline

from flipbook.errors import FlipbookError
from flipbook.models.controlnet import ControlNets, tiny_controlnet
from flipbook.models.loading import load_model
from flipbook.samplers.schedulers import make_scheduler
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import Control, FrameRequest

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-4


@pytest.fixture(scope="module")
def xl():
    return load_model("tiny-xl", device="cpu")


@pytest.fixture()
def control_image() -> PIL.Image.Image:
    y, x = np.mgrid[0:64, 0:64]
    array = np.zeros((64, 64, 3), dtype=np.uint8)
    array[((x - 32) ** 2 + (y - 32) ** 2) < 300] = 255
    return PIL.Image.fromarray(array)


@pytest.mark.parametrize(("sampler", "start", "end"), [("Euler a", 0.0, 1.0), ("DDIM", 0.25, 0.75)])
def test_txt2img_matches_the_sdxl_controlnet_pipeline(xl, control_image, sampler, start, end):
    controlnet = tiny_controlnet(xl.unet.config)
    pipe = StableDiffusionXLControlNetPipeline(**xl.pipe.components, controlnet=controlnet)
    pipe.scheduler = make_scheduler(sampler, xl.scheduler_config)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        "a red fox in the snow", negative_prompt="blurry", image=control_image, num_inference_steps=4,
        guidance_scale=7.5, height=64, width=64, generator=torch.Generator().manual_seed(42), output_type="np",
        controlnet_conditioning_scale=0.7, control_guidance_start=start, control_guidance_end=end,
    ).images  # fmt: skip
    request = FrameRequest(
        "a red fox in the snow", "blurry", seed=42, num_inference_steps=4, guidance_scale=7.5, sampler=sampler,
        width=64, height=64, controls=(Control("tiny", control_image, 0.7, start, end, controlnet=controlnet),),
    )  # fmt: skip
    got = np.stack(SamplingCore(xl).generate([request], output_type="np"))
    assert np.abs(got - expected).max() <= TOL
    plain = np.stack(
        SamplingCore(xl).generate([FrameRequest(**{**request.__dict__, "controls": ()})], output_type="np")
    )
    assert np.abs(got - plain).max() > 0.01  # the ControlNet did steer


def test_the_built_in_tiny_controlnet_fits_sdxl_and_an_sd_one_is_refused(xl, tiny_model, control_image):
    core = SamplingCore(xl)
    request = FrameRequest("a fox", seed=1, num_inference_steps=2, width=64, height=64,
                           controls=(Control("tiny", control_image, 1.0),))  # fmt: skip
    assert core.generate([request], output_type="np")[0].shape == (64, 64, 3)
    sd_controlnet = tiny_controlnet(tiny_model.unet.config)
    with pytest.raises(FlipbookError, match="SDXL") as info:
        from flipbook.models.controlnet import check_fits

        check_fits(sd_controlnet, xl.unet, "sd-canny")
    assert "cross_attention_dim" in info.value.detail
    assert ControlNets().get("tiny", xl).config.addition_embed_type == "text_time"


def _union(unet_config, seed: int = 0, heads: int = 4):
    """A random union ControlNet fitting tiny-xl, its zero-started convolutions made to steer (as tiny's)."""
    from diffusers import ControlNetUnionModel, UNet2DConditionModel

    from flipbook.models.weights import empty_weights

    shape_only = empty_weights(lambda: UNet2DConditionModel.from_config(dict(unet_config)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        made = ControlNetUnionModel.from_unet(shape_only, load_weights_from_unet=False).config
        config = {key: value for key, value in made.items() if not key.startswith("_")}
        width = config["block_out_channels"][
            0
        ]  # the control-type transformer works at the first block's width
        union = ControlNetUnionModel.from_config(
            {**config, "num_trans_channel": width, "num_proj_channel": width, "num_trans_head": heads}
        )
        for conv in [
            union.controlnet_cond_embedding.conv_out,
            union.controlnet_mid_block,
            *union.controlnet_down_blocks,
        ]:
            torch.nn.init.normal_(conv.weight, std=0.05)
            torch.nn.init.normal_(conv.bias, std=0.05)
    return union.eval()


@pytest.mark.parametrize("mode", [1, 3])
def test_a_union_controlnet_matches_the_sdxl_controlnet_union_pipeline(xl, control_image, mode):
    from diffusers import StableDiffusionXLControlNetUnionPipeline

    union = _union(xl.unet.config)
    pipe = StableDiffusionXLControlNetUnionPipeline(**xl.pipe.components, controlnet=union)
    pipe.scheduler = make_scheduler("Euler a", xl.scheduler_config)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        "a red fox", negative_prompt="blurry", control_image=[control_image], control_mode=[mode],
        num_inference_steps=3, guidance_scale=6.0, height=64, width=64, controlnet_conditioning_scale=0.8,
        generator=torch.Generator().manual_seed(8), output_type="np",
    ).images  # fmt: skip
    request = FrameRequest(
        "a red fox", "blurry", seed=8, num_inference_steps=3, guidance_scale=6.0, width=64, height=64,
        controls=(Control("union", control_image, 0.8, controlnet=union, control_type=mode),),
    )  # fmt: skip
    got = np.stack(SamplingCore(xl).generate([request], output_type="np"))
    assert np.abs(got - expected).max() <= TOL
    other = FrameRequest(
        **{
            **request.__dict__,
            "controls": (Control("union", control_image, 0.8, controlnet=union, control_type=0),),
        }
    )
    assert (
        np.abs(np.stack(SamplingCore(xl).generate([other], output_type="np")) - got).max() > 1e-3
    )  # the type steers


def test_a_union_controlnet_needs_a_control_type_and_others_take_none(xl, control_image, tmp_path):
    union = _union(xl.unet.config)
    union.save_pretrained(tmp_path / "union")
    from flipbook.models.controlnet import load_controlnet

    assert type(load_controlnet(str(tmp_path / "union"))).__name__ == "ControlNetUnionModel"
    cases = [
        (Control("union", control_image, 1.0, controlnet=union), "is a union ControlNet"),
        (Control("union", control_image, 1.0, controlnet=union, control_type=9), "control types"),
        (Control("tiny", control_image, 1.0, control_type=2), "not a union model"),
    ]
    for control, says in cases:
        request = FrameRequest("x", seed=1, num_inference_steps=1, width=64, height=64, controls=(control,))
        with pytest.raises(FlipbookError, match=says) as info:
            SamplingCore(xl).generate([request])
        assert info.value.field.endswith("control_type")


def test_a_spec_unit_names_its_control_type(tmp_path, run_cli, control_image):
    from pathlib import Path

    xl_ = load_model("tiny-xl", device="cpu")
    _union(xl_.unet.config).save_pretrained(tmp_path / "union")
    control_image.save(tmp_path / "control.png")
    example = Path(__file__).parents[1] / "examples" / "quickstart.toml"
    base = ["render", example, "--set", "model.name=tiny-xl", "--set", "animation.max_frames=1",
            "--set", "animation.width=64", "--set", "animation.height=64", "--set", "sampling.steps=2",
            "--set", "output.formats=['png']"]  # fmt: skip
    unit = f"controlnet=[{{model = '{tmp_path / 'union'}', image = '{tmp_path / 'control.png'}', control_type = 'depth'}}]"
    code, _, err = run_cli(*base, "-o", tmp_path / "a", "--set", unit)
    assert code == 0, err
    code, _, err = run_cli(*base, "-o", tmp_path / "b", "--set", unit.replace(", control_type = 'depth'", ""))
    assert code == 2 and "controlnet[0].control_type" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists() or not list(
        (tmp_path / "b").glob("*/frames/*.png")
    )  # before any model
    tiny_unit = "controlnet=[{model = 'tiny', control_type = 'canny'}]"
    code, _, err = run_cli(
        *base, "-o", tmp_path / "c", "--set", tiny_unit, "--set", f"init.image={tmp_path / 'control.png'}"
    )
    assert code == 2 and "controlnet[0].control_type" in err and "not a union ControlNet" in err


# ---- single files (A1111/ComfyUI models/ControlNet) ------------------------------------------------------


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _sdxl_original_layout(controlnet) -> dict[str, torch.Tensor]:
    """An SDXL ControlNet under the original keys (``control_model.`` + SDXL's LDM names, ``label_emb`` for
    the added embedding), as the A1111/ComfyUI single files of the original SDXL ControlNet layout have them."""
    from flipbook.models.families.sdxl.convert import UNET_PREFIX, unet_locator

    locate = unet_locator({**controlnet.config, "up_block_types": ["UpBlock2D"] * 3})
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
            original = locate(key).key.removeprefix(UNET_PREFIX)
        renamed["control_model." + original] = value.clone().contiguous()
    return renamed


def test_sdxl_controlnet_single_files_round_trip_in_both_layouts(xl, control_image, tmp_path):
    """A ControlNet for tiny-xl written as a single file, in diffusers' layout and in the original one (with
    ``label_emb``), loads offline as the same network and steers the core exactly as the network it came from."""
    import json

    from safetensors.torch import save_file

    from flipbook.models.controlnet import load_controlnet
    from flipbook.models.weights import CONFIG_METADATA_KEY

    controlnet = tiny_controlnet(xl.unet.config, seed=2)
    embedded = {CONFIG_METADATA_KEY: json.dumps({"controlnet": dict(controlnet.config)})}
    state = {k: v.contiguous() for k, v in controlnet.state_dict().items()}
    save_file(state, str(tmp_path / "diffusers_xl_tiny.safetensors"), metadata=embedded)
    save_file(_sdxl_original_layout(controlnet), str(tmp_path / "xl_tiny.safetensors"), metadata=embedded)
    for name in ("diffusers_xl_tiny", "xl_tiny"):
        loaded = load_controlnet(str(tmp_path / f"{name}.safetensors"))
        assert _same_weights(loaded, controlnet), name
        assert loaded.config.addition_embed_type == "text_time"
    request = FrameRequest("a fox", seed=3, num_inference_steps=2, width=64, height=64,
                           controls=(Control(str(tmp_path / "xl_tiny.safetensors"), control_image, 1.0),))  # fmt: skip
    from_file = SamplingCore(xl, controlnets=ControlNets()).generate([request], output_type="np")[0]
    pipe = StableDiffusionXLControlNetPipeline(**xl.pipe.components, controlnet=controlnet)
    pipe.scheduler = make_scheduler("Euler a", xl.scheduler_config)
    pipe.set_progress_bar_config(disable=True)
    reference = pipe(
        "a fox", image=control_image, num_inference_steps=2, width=64, height=64, guidance_scale=7.0,
        generator=torch.Generator().manual_seed(3), output_type="np",
    ).images[0]  # fmt: skip
    assert np.abs(from_file - reference).max() <= TOL


def test_sdxl_base_s_controlnet_architecture_is_read_from_shapes_alone():
    """SDXL ControlNet files carry no config: its architecture (three levels, 1/2/10 transformer blocks,
    2048-wide text, the added embedding) comes from the tensor shapes over SDXL base's shipped config; checked
    on meta tensors of the real size, in both layouts."""
    from diffusers import ControlNetModel

    from flipbook.models.controlnet import diffusers_controlnet_state, infer_controlnet_config
    from flipbook.models.families.sdxl.builtin import SDXL_UNET_CONFIG

    with torch.device("meta"):
        controlnet = ControlNetModel.from_unet(
            __import__("diffusers").UNet2DConditionModel(**SDXL_UNET_CONFIG)
        )
    for state in (controlnet.state_dict(), _sdxl_original_layout(controlnet)):
        config = infer_controlnet_config(diffusers_controlnet_state(state))
        for key in ("block_out_channels", "transformer_layers_per_block", "attention_head_dim",
                    "cross_attention_dim", "addition_embed_type", "addition_time_embed_dim",
                    "projection_class_embeddings_input_dim", "use_linear_projection", "down_block_types"):  # fmt: skip
            expected = controlnet.config[key]
            got = config[key]
            same = list(got) == list(expected) if isinstance(expected, (list, tuple)) else got == expected
            assert same, (key, got, expected)


def test_a_union_controlnet_single_file_loads_as_a_union_model_from_its_shapes(xl, control_image, tmp_path):
    """xinsir's union file (diffusers' key layout, no config): a ControlNetUnionModel with its control types,
    transformer and projection sizes read from the shapes; written with its config, it steers as the network
    it came from."""
    from safetensors.torch import save_file

    from flipbook.models.controlnet import load_controlnet

    union = _union(
        xl.unet.config, seed=1, heads=8
    )  # 8 heads, as every published union model (no shape shows them)
    path = tmp_path / "controlnet-union-tiny.safetensors"
    save_file({k: v.contiguous() for k, v in union.state_dict().items()}, str(path))
    loaded = load_controlnet(str(path))
    assert type(loaded).__name__ == "ControlNetUnionModel" and _same_weights(loaded, union)
    for key in (
        "num_control_type",
        "num_trans_channel",
        "num_trans_layer",
        "num_proj_channel",
        "num_trans_head",
    ):
        assert loaded.config[key] == union.config[key], key
    # GroupNorm groups show in no shape (tiny-xl's are 8, SDXL's 32): a flipbook-written file embeds them
    import json

    from flipbook.models.weights import CONFIG_METADATA_KEY

    embedded = {CONFIG_METADATA_KEY: json.dumps({"controlnet": dict(union.config)})}
    save_file({k: v.contiguous() for k, v in union.state_dict().items()}, str(path), metadata=embedded)
    request = FrameRequest("a fox", seed=2, num_inference_steps=2, width=64, height=64,
                           controls=(Control("union", control_image, 0.9, controlnet=union, control_type=3),))  # fmt: skip
    from_file = Control(str(path), control_image, 0.9, control_type=3)
    expected = SamplingCore(xl).generate([request], output_type="np")[0]
    got = SamplingCore(xl, controlnets=ControlNets()).generate(
        [FrameRequest(**{**request.__dict__, "controls": (from_file,)})], output_type="np"
    )[0]
    assert np.abs(got - expected).max() <= TOL

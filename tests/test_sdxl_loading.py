"""Loading SDXL: single files in the A1111/ComfyUI layout (detected from their keys, offline, round trip),
diffusers folders, separate VAEs and their fp16 upcast, v-prediction and zero-terminal-SNR keys."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from flipbook.errors import FlipbookError
from flipbook.models.families import builtin_family, detect_checkpoint, detect_folder
from flipbook.models.families.sdxl.builtin import random_sdxl_components
from flipbook.models.families.sdxl.convert import pipeline_to_original_state_dict, save_original_checkpoint
from flipbook.models.loading import load_model
from flipbook.models.weights import empty_weights
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest

pytestmark = pytest.mark.usefixtures("one_thread")
SDXL = builtin_family("tiny-xl", "image")


@pytest.fixture(scope="module")
def xl():
    return load_model("tiny-xl", device="cpu")


def render(model, **kwargs):
    request = FrameRequest(
        "a red fox in the snow", "blurry", seed=4, num_inference_steps=3, width=64, height=64
    )
    return np.stack(SamplingCore(model).generate([request], output_type="np"))


class _Pipe:
    """SDXL base's components on the meta device (no memory): real key names and shapes."""

    def __init__(self) -> None:
        parts = {}
        empty_weights(lambda: parts.update(random_sdxl_components(0)) or torch.nn.Identity())
        self.__dict__.update(parts)


@pytest.fixture(scope="module")
def sdxl_base_shapes():
    state = pipeline_to_original_state_dict(_Pipe())
    return {key: tuple(value.shape) for key, value in state.items()}


def test_sdxl_base_layout_is_the_a1111_one_and_detected_from_its_keys(sdxl_base_shapes):
    shapes = sdxl_base_shapes
    # keys as SDXL base's sd_xl_base_1.0.safetensors has them
    assert shapes["model.diffusion_model.label_emb.0.0.weight"] == (1280, 2816)
    assert shapes["model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight"] == (
        640,
        2048,
    )
    assert shapes["model.diffusion_model.output_blocks.2.2.conv.weight"] == (1280, 1280, 3, 3)
    assert shapes["conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc1.weight"] == (
        3072,
        768,
    )
    assert shapes["conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight"] == (
        3840,
        1280,
    )
    assert shapes["conditioner.embedders.1.model.text_projection"] == (1280, 1280)
    assert shapes["first_stage_model.decoder.mid.attn_1.q.weight"] == (512, 512, 1, 1)
    assert detect_checkpoint(shapes) is SDXL
    assert detect_checkpoint(list(shapes)) is SDXL


def test_other_layouts_are_not_claimed(tiny_model):
    from flipbook.models.families.sd.convert import pipeline_to_original_state_dict as sd_state

    assert detect_checkpoint(sd_state(tiny_model.pipe)).name != SDXL.name
    assert detect_checkpoint({"conditioner.embedders.0.model.ln_final.weight": (1280,)}) is None


def test_single_file_round_trip_gives_the_same_image(xl, tmp_path):
    """tiny-xl -> diffusers folder -> original key layout -> flipbook loads the file -> same pixels."""
    folder = tmp_path / "tiny-xl"
    xl.pipe.save_pretrained(folder)
    from_folder = load_model(str(folder), device="cpu")
    assert from_folder.family == SDXL.name and from_folder.source == "folder"
    path = save_original_checkpoint(from_folder.pipe, tmp_path / "my_pony.safetensors")
    assert any(key.startswith("conditioner.embedders.1.model.") for key in load_file(path))
    loaded = load_model(str(path), device="cpu")
    assert loaded.family == SDXL.name and loaded.source == "single_file"
    expected = render(xl)
    # transformers picks its attention kernel per loading path: last-bit differences, well within 1e-4
    assert np.abs(render(from_folder) - expected).max() <= 1e-4
    assert np.abs(render(loaded) - expected).max() <= 1e-4


def test_a_single_file_in_the_models_folder_loads_by_name(xl, tmp_path):
    checkpoints = tmp_path / "models" / "Stable-diffusion"
    save_original_checkpoint(xl.pipe, checkpoints / "my_pony.safetensors")
    loaded = load_model("my_pony", models_dir=tmp_path, device="cpu")
    assert loaded.family == SDXL.name


def test_v_prediction_and_ztsnr_keys_set_the_schedule(xl, tmp_path):
    path = save_original_checkpoint(xl.pipe, tmp_path / "noob.safetensors")
    state = load_file(path)
    with safe_open(str(path), framework="pt") as handle:  # keep the embedded configs
        metadata = handle.metadata()
    save_file({**state, "v_pred": torch.tensor([]), "ztsnr": torch.tensor([])}, str(path), metadata=metadata)
    loaded = load_model(str(path), device="cpu")
    assert loaded.prediction_type == "v_prediction"
    assert loaded.scheduler_config["rescale_betas_zero_snr"] is True
    assert load_model(str(path), device="cpu", prediction_type="epsilon").prediction_type == "epsilon"
    assert load_model("tiny-xl", device="cpu").scheduler_config.get("rescale_betas_zero_snr", False) is False


def test_an_incomplete_sdxl_file_is_one_clear_error(xl, tmp_path):
    path = save_original_checkpoint(xl.pipe, tmp_path / "broken.safetensors")
    state = load_file(path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    del state["model.diffusion_model.label_emb.0.2.weight"]
    save_file(state, str(path), metadata=metadata)
    with pytest.raises(FlipbookError, match="label_emb.0.2.weight") as info:
        load_model(str(path), device="cpu")
    assert info.value.field == "model" and "\n" not in str(info.value)
    # without the configs flipbook embeds, a file is read as SDXL base: a toy model's shapes don't fit
    save_file(load_file(save_original_checkpoint(xl.pipe, path)), str(path))
    with pytest.raises(FlipbookError, match=r"has shape \(32, 4, 3, 3\), the model needs \(320, 4, 3, 3\)"):
        load_model(str(path), device="cpu")


def test_a_refiner_given_as_the_model_is_named_for_what_it_is(tmp_path):
    path = tmp_path / "refiner.safetensors"
    save_file(
        {"conditioner.embedders.0.model.ln_final.weight": torch.zeros(4),
         "model.diffusion_model.label_emb.0.0.weight": torch.zeros(4, 4)}, str(path),
    )  # fmt: skip
    with pytest.raises(FlipbookError, match="a refiner .Stable Diffusion XL refiner., not a checkpoint"):
        load_model(str(path), device="cpu")


def test_folder_detection():
    index = {
        "_class_name": "StableDiffusionXLPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    }
    assert detect_folder(index, {"addition_embed_type": "text_time"}) is SDXL
    refiner = {**index, "_class_name": "StableDiffusionXLImg2ImgPipeline", "text_encoder": [None, None]}
    assert detect_folder(refiner, {"addition_embed_type": "text_time"}) is not SDXL  # the refiner's family


def test_separate_vae_file_gets_sdxl_scaling_and_upcast(xl, tmp_path):
    from flipbook.models.families.sd.convert import pipeline_to_original_state_dict as sd_state
    from flipbook.models.families.sd.pipeline import builtin_pipeline

    sd_vae = {
        k: v for k, v in sd_state(builtin_pipeline("tiny")).items() if k.startswith("first_stage_model.")
    }
    save_file(sd_vae, str(tmp_path / "sdxl_vae.safetensors"))
    loaded = load_model("tiny-xl", device="cpu", vae=str(tmp_path / "sdxl_vae.safetensors"))
    assert loaded.vae.config.scaling_factor == pytest.approx(0.13025) and loaded.vae.config.force_upcast


def test_the_sdxl_vae_stays_fp32_under_fp16_unless_it_is_the_fp16_fix(xl, tmp_path, monkeypatch):
    # fp16 is a GPU dtype: here only the placement is checked, nothing is computed in fp16 on the CPU
    monkeypatch.setattr("flipbook.models.loading.pick_dtype", lambda name, device: torch.float16)
    model = load_model("tiny-xl", device="cpu", dtype="fp16")
    assert model.unet.dtype == torch.float16 and model.vae.dtype == torch.float32
    fixed = tmp_path / "fp16-fix"
    xl.vae.save_pretrained(fixed)
    config = json.loads((fixed / "config.json").read_text())
    (fixed / "config.json").write_text(json.dumps({**config, "force_upcast": False}))
    model = load_model("tiny-xl", device="cpu", dtype="fp16", vae=str(fixed))
    assert model.vae.dtype == torch.float16


def test_png_parameters_name_the_model_and_its_hash_as_a1111_does(xl, tmp_path, run_cli):
    import hashlib
    from pathlib import Path

    import PIL.Image

    path = save_original_checkpoint(xl.pipe, tmp_path / "my_pony.safetensors")
    expected = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    assert load_model(str(path), device="cpu").hash == expected and xl.hash is None
    example = Path(__file__).parents[1] / "examples" / "quickstart.toml"
    code, _, err = run_cli(
        "render", example, "-o", tmp_path / "out", "--set", f"model.name={path}", "--set", "animation.max_frames=2",
        "--set", "animation.width=64", "--set", "animation.height=64", "--set", "sampling.steps=2",
        "--set", "output.formats=['png']",
    )  # fmt: skip
    assert code == 0, err
    frame = sorted((tmp_path / "out").glob("*/frames/frame_*.png"))[0]
    with PIL.Image.open(frame) as image:
        parameters = image.info["parameters"]
    assert f"Model hash: {expected}, Model: my_pony" in parameters


def test_zero_terminal_snr_is_a_setting_for_files_without_the_key(tmp_path, run_cli):
    from pathlib import Path

    from flipbook.spec.load import spec_from_data

    assert load_model("tiny-xl", device="cpu", zero_terminal_snr=True).scheduler_config[
        "rescale_betas_zero_snr"
    ]
    spec = spec_from_data({"prompts": {"0": "x"}, "model": {"name": "tiny-xl", "zero_terminal_snr": True}})
    assert spec.model.zero_terminal_snr
    example = Path(__file__).parents[1] / "examples" / "quickstart.toml"
    code, _, err = run_cli(
        "render", example, "-o", tmp_path, "--set", "model.name=tiny-xl", "--set", "model.zero_terminal_snr=true",
        "--set", "model.prediction_type=v_prediction", "--set", "animation.max_frames=1",
        "--set", "animation.width=64", "--set", "animation.height=64", "--set", "sampling.steps=2",
        "--set", "output.formats=['png']",
    )  # fmt: skip
    assert code == 0, err

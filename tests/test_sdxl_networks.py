"""SDXL LoRAs (diffusers/PEFT and kohya layouts, both text encoders) and textual inversion (``clip_l`` /
``clip_g``) on tiny-xl; a LoRA or embedding made for another family is one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
from peft import LoraConfig, get_peft_model_state_dict
from safetensors.torch import save_file

from flipbook.errors import FlipbookError
from flipbook.models.families.sd.builtin import tiny_components
from flipbook.models.families.sdxl.builtin import tiny_xl_components
from flipbook.models.loading import load_model
from flipbook.models.lora import LoraSet, load_embeddings
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest

pytestmark = pytest.mark.usefixtures("one_thread")
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def _layers(model: torch.nn.Module, targets: list[str], seed: int) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.add_adapter(LoraConfig(r=4, target_modules=targets, init_lora_weights=False))
    return get_peft_model_state_dict(model)


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sdxl-loras")
    parts = tiny_xl_components(0)
    unet = _layers(parts["unet"], UNET_TARGETS, seed=1)
    te1 = _layers(parts["text_encoder"], TE_TARGETS, seed=2)
    te2 = _layers(parts["text_encoder_2"], TE_TARGETS, seed=3)
    StableDiffusionXLPipeline.save_lora_weights(
        root / "xl", unet_lora_layers=unet, text_encoder_lora_layers=te1, text_encoder_2_lora_layers=te2
    )
    kohya = {f"lora_unet_{k}": v for k, v in convert_state_dict_to_kohya(unet).items()}
    kohya |= {f"lora_te1_{k}": v for k, v in convert_state_dict_to_kohya(te1).items()}
    kohya |= {f"lora_te2_{k}": v for k, v in convert_state_dict_to_kohya(te2).items()}
    save_file({k: v.contiguous() for k, v in kohya.items()}, root / "xl_kohya.safetensors")
    from diffusers import StableDiffusionPipeline

    sd = _layers(tiny_components(0)["unet"], UNET_TARGETS, seed=4)
    StableDiffusionPipeline.save_lora_weights(root / "sd", unet_lora_layers=sd)
    return {
        "diffusers": root / "xl" / "pytorch_lora_weights.safetensors",
        "kohya": root / "xl_kohya.safetensors",
        "sd1": root / "sd" / "pytorch_lora_weights.safetensors",
    }


def render(core: SamplingCore, loras=(), prompt="a red fox") -> np.ndarray:
    """One frame on ``core`` (one per model: its LoRA set knows which adapters are active)."""
    request = FrameRequest(
        prompt, "blurry", seed=3, num_inference_steps=2, width=64, height=64, loras=tuple(loras)
    )
    return np.stack(core.generate([request], output_type="np"))


def test_sdxl_loras_in_both_layouts_change_the_image_alike_and_switch_off(lora_files):
    core = SamplingCore(load_model("tiny-xl", device="cpu"))
    base = render(core)
    styled = render(core, [(str(lora_files["diffusers"]), 1.0)])
    assert np.abs(styled - base).max() > 1e-3
    kohya = render(core, [(str(lora_files["kohya"]), 1.0)])
    assert np.abs(kohya - styled).max() <= 1e-4
    only_unet = render(core, [(str(lora_files["diffusers"]), 1.0, 0.0)])  # both text encoders at 0
    assert np.abs(only_unet - styled).max() > 1e-4
    assert np.abs(render(core) - base).max() <= 1e-5


def test_an_sd_lora_on_sdxl_is_one_clear_error(lora_files):
    core = SamplingCore(load_model("tiny-xl", device="cpu"))
    base = render(core)
    with pytest.raises(FlipbookError) as info:
        LoraSet(core.model.pipe).activate([(lora_files["sd1"], 1.0)])
    assert info.value.field == "lora" and "SDXL" in info.value.allowed and info.value.detail
    assert np.abs(render(core) - base).max() <= 1e-5


def test_sdxl_textual_inversion_with_clip_l_and_clip_g_vectors(tmp_path):
    model = load_model("tiny-xl", device="cpu")
    width_l = model.pipe.text_encoder.get_input_embeddings().weight.shape[1]
    width_g = model.pipe.text_encoder_2.get_input_embeddings().weight.shape[1]
    generator = torch.Generator().manual_seed(0)
    path = tmp_path / "xlstyle.safetensors"
    vectors = {
        "clip_l": torch.randn(2, width_l, generator=generator),
        "clip_g": torch.randn(2, width_g, generator=generator),
    }
    save_file(vectors, str(path))
    base = render(SamplingCore(model), prompt="a red fox, xlstyle")
    assert load_embeddings(model.pipe, ["a red fox, xlstyle"], {"xlstyle": path}) == ["xlstyle"]
    core = SamplingCore(model)
    assert np.abs(render(core, prompt="a red fox, xlstyle") - base).max() > 1e-3
    encoder = core.encoder(1)
    for reader, key, text_encoder in ((encoder.first, "clip_l", model.pipe.text_encoder),
                                      (encoder.second, "clip_g", model.pipe.text_encoder_2)):  # fmt: skip
        ids = reader.tokenizer(reader.convert_prompt("xlstyle"), add_special_tokens=False).input_ids
        assert len(ids) == 2  # both vectors, each encoder its own
        assert torch.equal(text_encoder.get_input_embeddings().weight[ids], vectors[key])


def test_an_sd_embedding_on_sdxl_is_one_clear_error(tmp_path):
    model = load_model("tiny-xl", device="cpu")
    path = tmp_path / "sdstyle.safetensors"
    save_file({"emb_params": torch.zeros(1, 32)}, str(path))
    with pytest.raises(FlipbookError, match="one-text-encoder model") as info:
        load_embeddings(model.pipe, ["sdstyle"], {"sdstyle": path})
    assert info.value.field == "embedding" and "clip_g of width 32" in info.value.allowed


def test_an_inline_sdxl_lora_tag_renders_from_the_models_folder(lora_files, tmp_path, run_cli):
    import shutil

    loras = tmp_path / "webui" / "models" / "Lora"
    loras.mkdir(parents=True)
    shutil.copy(lora_files["kohya"], loras / "xl_style.safetensors")
    example = Path(__file__).parents[1] / "examples" / "quickstart.toml"
    frames = {}
    for name, prompt in (("plain", "a red fox"), ("styled", "a red fox <lora:xl_style:0.8>")):
        code, _, err = run_cli(
            "render", example, "-o", tmp_path / name, "--set", "model.name=tiny-xl",
            "--set", f"model.models_dir={tmp_path / 'webui'}", "--set", f"prompts={{0 = '{prompt}'}}",
            "--set", "animation.max_frames=1", "--set", "animation.width=64", "--set", "animation.height=64",
            "--set", "sampling.steps=2", "--set", "output.formats=['png']",
        )  # fmt: skip
        assert code == 0, err
        frames[name] = next((tmp_path / name).glob("*/frames/frame_*.png")).read_bytes()
    assert frames["plain"] != frames["styled"]

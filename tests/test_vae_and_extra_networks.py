"""Separate VAEs, LoRAs and embeddings from an A1111 models folder, end to end on the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from peft import LoraConfig, get_peft_model_state_dict
from safetensors.torch import save_file

from flipbook.errors import FlipbookError
from flipbook.models.extra_networks import ExtraNetworks
from flipbook.models.families.sd.builtin import tiny_components
from flipbook.models.families.sd.convert import VAE_PREFIX, is_vae_conv_attention, vae_original_key
from flipbook.models.families.sd.single_file import load_vae_file
from flipbook.models.folders import ModelsDir
from flipbook.models.loading import load_model
from flipbook.runs.render import render
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest
from flipbook.spec.load import load_spec

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "a cat"
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
FAST = ["--steps", "2", "--size", "64x64", "--device", "cpu"]


def sample(bundle, prompt: str = PROMPT, loras: tuple = ()) -> np.ndarray:
    request = FrameRequest(prompt, seed=0, num_inference_steps=2, width=64, height=64, loras=loras)
    return SamplingCore(bundle).generate([request], output_type="np")[0]


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).max())


@pytest.fixture(scope="module")
def plain_image(tiny_model) -> np.ndarray:
    return sample(tiny_model)


# --- VAE ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def perturbed_vae() -> dict[str, torch.Tensor]:
    """The tiny model's VAE weights, deterministically nudged so its images differ (diffusers names)."""
    generator = torch.Generator().manual_seed(11)
    state = tiny_components(0)["vae"].state_dict()
    return {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in state.items()}


def original_layout(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Diffusers VAE weights as A1111 keeps VAE files: original keys, mid-block attention as 1x1 convs."""
    out = {}
    for key, value in state.items():
        original = vae_original_key(key, num_levels=4)
        if is_vae_conv_attention(original):
            value = value.reshape(*value.shape, 1, 1)
        out[prefix + original] = value.contiguous()
    return out


def assert_same_weights(vae: AutoencoderKL, expected: dict[str, torch.Tensor]) -> None:
    loaded = vae.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def decode(vae: AutoencoderKL) -> torch.Tensor:
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return vae.decode(latents).sample


@pytest.mark.parametrize("prefix", ["", VAE_PREFIX])
def test_original_layout_vae_file_replaces_the_models_vae(tmp_path, perturbed_vae, plain_image, prefix):
    path = tmp_path / "vae-ft-tiny.safetensors"
    save_file(original_layout(perturbed_vae, prefix), path)
    bundle = load_model("tiny", vae=str(path), device="cpu")
    assert_same_weights(bundle.vae, perturbed_vae)
    reference = tiny_components(0)["vae"]
    reference.load_state_dict(perturbed_vae)
    assert torch.equal(decode(bundle.vae), decode(reference))  # hyperparameters right, not only weights
    assert diff(sample(bundle), plain_image) > 1e-2


def test_vae_by_name_in_an_a1111_models_folder(tmp_path, perturbed_vae, plain_image):
    folder = tmp_path / "webui" / "models" / "VAE"
    folder.mkdir(parents=True)
    save_file(original_layout(perturbed_vae), folder / "myvae.safetensors")
    bundle = load_model("tiny", vae="myvae", models_dir=tmp_path / "webui", device="cpu")
    assert_same_weights(bundle.vae, perturbed_vae)
    assert diff(sample(bundle), plain_image) > 1e-2


def test_diffusers_vae_folder_and_other_file_layouts_load(tmp_path, perturbed_vae):
    vae = tiny_components(0)["vae"]
    vae.load_state_dict(perturbed_vae)
    vae.save_pretrained(tmp_path / "folder")
    assert_same_weights(load_model("tiny", vae=str(tmp_path / "folder"), device="cpu").vae, perturbed_vae)

    save_file({k: v.contiguous() for k, v in perturbed_vae.items()}, tmp_path / "diffusers.safetensors")
    assert_same_weights(load_vae_file(tmp_path / "diffusers.safetensors"), perturbed_vae)
    torch.save({"state_dict": original_layout(perturbed_vae)}, tmp_path / "anime.vae.pt")
    assert_same_weights(load_vae_file(tmp_path / "anime.vae.pt"), perturbed_vae)
    half = load_vae_file(tmp_path / "diffusers.safetensors", torch_dtype=torch.float16)
    assert half.dtype == torch.float16


def _wrong_shape(path: Path, perturbed: dict[str, torch.Tensor]) -> None:
    state = original_layout(perturbed)
    state["decoder.mid.block_1.conv1.weight"] = torch.zeros(32, 32, 1, 1)
    save_file(state, path)


def _missing_weight(path: Path, perturbed: dict[str, torch.Tensor]) -> None:
    state = original_layout(perturbed)
    del state["decoder.mid.attn_1.q.weight"]
    save_file(state, path)


@pytest.mark.parametrize(
    ("write", "needle"),
    [
        (lambda path, _: path.write_bytes(b"\x00garbage" * 64), "corrupt"),
        (_wrong_shape, "has shape (32, 32, 1, 1)"),
        (_missing_weight, "'first_stage_model.decoder.mid.attn_1.q.weight' missing"),
        (lambda path, _: save_file({"lora_unet_x.lora_down.weight": torch.zeros(4, 4)}, path), "no VAE"),
    ],
    ids=["corrupt", "wrong-shape", "missing-weight", "not-a-vae"],
)
def test_bad_vae_file_is_one_error_on_the_vae_field(tmp_path, perturbed_vae, write, needle):
    path = tmp_path / "bad.safetensors"
    write(path, perturbed_vae)
    with pytest.raises(FlipbookError) as info:
        load_model("tiny", vae=str(path), device="cpu")
    error = info.value
    assert error.field == "vae" and error.value == str(path) and needle in str(error)
    assert "\n" not in str(error)


def test_diffusers_vae_folder_with_a_missing_weight_is_an_error(tmp_path, perturbed_vae):
    state = {k: v.contiguous() for k, v in perturbed_vae.items()}
    del state["decoder.mid_block.attentions.0.to_q.weight"]
    vae = tiny_components(0)["vae"]
    vae.save_pretrained(tmp_path / "folder")
    save_file(state, tmp_path / "folder" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(FlipbookError, match="to_q.weight' missing") as info:
        load_model("tiny", vae=str(tmp_path / "folder"), device="cpu")
    assert info.value.field == "vae"


def test_unknown_vae_name_lists_what_the_models_folder_has(tmp_path, perturbed_vae):
    folder = tmp_path / "models" / "VAE"
    folder.mkdir(parents=True)
    save_file(original_layout(perturbed_vae), folder / "myvae.safetensors")
    with pytest.raises(FlipbookError, match="myvae") as info:
        load_model("tiny", vae="othervae", models_dir=tmp_path, device="cpu")
    assert info.value.field == "vae"


# --- LoRAs and embeddings from an A1111 layout -----------------------------------------------------------------


def _lora_layers(unet: UNet2DConditionModel, seed: int) -> dict[str, torch.Tensor]:
    """A random (non-zero) LoRA for ``unet``, made as tests/test_lora.py makes them."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet.add_adapter(LoraConfig(r=4, target_modules=UNET_TARGETS, init_lora_weights=False))
    return get_peft_model_state_dict(unet)


def _unet_for_another_model() -> UNet2DConditionModel:
    config = dict(tiny_components(0)["unet"].config)
    config["cross_attention_dim"] = 64
    return UNet2DConditionModel.from_config(config)


@pytest.fixture(scope="module")
def webui(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tmp A1111 install: models/Lora/{mylora,otherfamily}.safetensors and embeddings/flipstyle."""
    root = tmp_path_factory.mktemp("webui")
    loras = root / "models" / "Lora"
    loras.mkdir(parents=True)
    mine = _lora_layers(tiny_components(0)["unet"], seed=1)
    StableDiffusionPipeline.save_lora_weights(loras, unet_lora_layers=mine, weight_name="mylora.safetensors")
    other = _lora_layers(_unet_for_another_model(), seed=4)
    StableDiffusionPipeline.save_lora_weights(
        loras, unet_lora_layers=other, weight_name="otherfamily.safetensors"
    )
    (root / "embeddings").mkdir()
    vectors = torch.randn(1, 32, generator=torch.Generator().manual_seed(5))
    save_file({"emb_params": vectors}, root / "embeddings" / "flipstyle.safetensors")
    return root


def test_lora_tag_resolves_to_the_file_in_the_models_folder(webui):
    text, loras = ExtraNetworks(ModelsDir(webui)).resolve("a cat <lora:mylora:0.8>")
    assert text.strip() == "a cat"
    path = (webui / "models" / "Lora" / "mylora.safetensors").resolve()
    assert loras == ((path, 0.8, 0.8),)  # one weight: UNet and text encoder alike, as in A1111


def test_lora_changes_a_frame_and_the_next_frame_without_it_is_plain(webui):
    bundle = load_model("tiny", device="cpu")  # not the shared fixture: LoRAs get loaded into it
    text, loras = ExtraNetworks(ModelsDir(webui)).resolve("a cat <lora:mylora:0.8>")
    core = SamplingCore(bundle)
    plain = FrameRequest(text, seed=0, num_inference_steps=2, width=64, height=64)
    styled = FrameRequest(text, seed=0, num_inference_steps=2, width=64, height=64, loras=loras)
    before, with_lora, after = (core.generate([r], output_type="np")[0] for r in (plain, styled, plain))
    assert diff(with_lora, before) > 1e-2
    assert np.array_equal(after, before)


def test_cli_txt2img_with_a_lora_from_the_models_folder(run_cli, tmp_path, webui):
    def txt2img(prompt: str, out: str) -> tuple[int, str, str]:
        args = ["txt2img", prompt, "--models-dir", webui, "--seed", "1", "-o", tmp_path / out, *FAST]
        return run_cli(*args)

    code, out, err = txt2img("a cat <lora:mylora:0.8>", "styled")
    assert code == 0, err
    styled = np.asarray(PIL.Image.open(out.strip()))
    code, out, err = txt2img("a cat", "plain")
    assert code == 0, err
    assert np.abs(styled.astype(int) - np.asarray(PIL.Image.open(out.strip())).astype(int)).max() > 0

    code, out, err = txt2img("a cat <lora:otherfamily:0.8>", "wrong")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: lora") and "otherfamily" in lines[0]
    assert "Traceback" not in err


SPEC = """
version = 1
[model]
name = "tiny"
device = "cpu"
models_dir = "{models_dir}"
[sampling]
steps = 2
seed = 3
[animation]
max_frames = 2
width = 64
height = 64
strength = 0.5
[prompts]
0 = "{prompt}"
[output]
dir = "{out}"
name = "{name}"
formats = ["png"]
"""


def test_embedding_named_in_a_render_prompt_changes_the_frame(tmp_path, webui):
    def frame0(prompt: str, name: str) -> np.ndarray:
        path = tmp_path / f"{name}.toml"
        path.write_text(SPEC.format(models_dir=webui, prompt=prompt, out=tmp_path / "out", name=name))
        result = render(load_spec(path))
        assert len(result.frames) == 2
        return np.asarray(PIL.Image.open(result.frames[0])).astype(int)

    with_word, without = frame0("a forest, flipstyle", "with"), frame0("a forest,", "without")
    assert np.abs(with_word - without).max() > 0

"""Model loading through ``load_model``: built-ins, single files, folders, hub ids, models dirs, errors."""

import numpy as np
import pytest
import torch

from flipbook.errors import FlipbookError
from flipbook.models.families.sd.convert import save_original_checkpoint
from flipbook.models.loading import load_model
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest

REQUEST = FrameRequest("a lighthouse", seed=4, num_inference_steps=2, sampler="Euler", width=64, height=64)


def image(model):
    return SamplingCore(model).generate([REQUEST], output_type="np")[0]


def test_builtin_models_are_deterministic(tiny_model):
    again = load_model("tiny", device="cpu")
    assert all(
        torch.equal(a, b)
        for a, b in zip(tiny_model.unet.state_dict().values(), again.unet.state_dict().values(), strict=True)
    )
    assert tiny_model.family == "sd1" and tiny_model.source == "builtin"


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_single_file_in_original_layout_loads_offline_and_matches(tiny_model, tmp_path, suffix, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / f"tiny{suffix}"
    save_original_checkpoint(tiny_model.pipe, path)
    loaded = load_model(str(path), device="cpu")
    assert loaded.source == "single_file"
    assert np.abs(image(loaded) - image(tiny_model)).max() == 0.0


def test_models_dir_finds_checkpoints_by_name(tiny_model, tmp_path):
    folder = tmp_path / "webui" / "models" / "Stable-diffusion" / "sd15"
    folder.mkdir(parents=True)
    save_original_checkpoint(tiny_model.pipe, folder / "tinyckpt.safetensors")
    loaded = load_model("tinyckpt", models_dir=tmp_path / "webui", device="cpu")
    assert np.abs(image(loaded) - image(tiny_model)).max() == 0.0


def test_diffusers_folder_loads(tiny_model, tmp_path):
    tiny_model.pipe.save_pretrained(tmp_path / "tiny-diffusers")
    loaded = load_model(str(tmp_path / "tiny-diffusers"), device="cpu")
    assert loaded.source == "folder"
    assert np.abs(image(loaded) - image(tiny_model)).max() == 0.0


def test_uncached_hub_id_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FlipbookError) as error:
        load_model("someone/not-a-cached-model", device="cpu")
    message = str(error.value)
    assert "someone/not-a-cached-model" in message and "local Hugging Face cache" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("model", "field"),
    [("no-such-model", "model"), ("./missing.safetensors", "model"), ("tiny", "device"), ("tiny", "dtype")],
)
def test_bad_model_arguments(model, field):
    kwargs = {"device": "cuda" if field == "device" else "cpu", "dtype": "fp16" if field == "dtype" else None}
    if field == "device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(FlipbookError) as error:
        load_model(model, **kwargs)
    assert error.value.field == field


def test_folder_without_model_index_is_an_error(tmp_path):
    with pytest.raises(FlipbookError, match="model_index.json"):
        load_model(str(tmp_path), device="cpu")


def test_v_prediction_override(tmp_path):
    model = load_model("tiny", device="cpu", prediction_type="v_prediction")
    assert model.prediction_type == "v_prediction"


def test_hub_id_loads_from_the_local_cache_offline(tiny_model, tmp_path, monkeypatch):
    """A model in the Hugging Face cache layout loads by hub id with HF_HUB_OFFLINE=1."""
    import huggingface_hub.constants as hub_constants

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-sd"
    tiny_model.pipe.save_pretrained(repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    loaded = load_model("someone/tiny-sd", device="cpu")
    assert loaded.source == "hub"
    assert np.abs(image(loaded) - image(tiny_model)).max() == 0.0


def test_diffusers_folder_with_a_missing_weight_is_a_clear_error(tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "broken"
    tiny_model.pipe.save_pretrained(folder)
    weights = next((folder / "unet").glob("*.safetensors"))
    state = load_file(weights)
    del state["conv_in.weight"]
    save_file(state, weights)
    with pytest.raises(FlipbookError, match="conv_in.weight"):
        load_model(str(folder), device="cpu")


def test_vae_with_other_latent_channels_is_refused(tmp_path):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(latent_channels=8, block_out_channels=(8,), norm_num_groups=8, sample_size=32)
    vae.save_pretrained(tmp_path / "vae8")
    with pytest.raises(FlipbookError, match="latent channels"):
        load_model("tiny", vae=str(tmp_path / "vae8"), device="cpu")

"""Tiny autoencoders (TAESD through diffusers' AutoencoderTiny): loaded from every form A1111 and the hub keep
them in, used for live previews every step and, when asked, for the frames' decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderTiny
from safetensors.torch import save_file

from flipbook.errors import FlipbookError
from flipbook.events import Events
from flipbook.models.folders import ModelsDir
from flipbook.models.loading import load_model
from flipbook.models.performance import Performance
from flipbook.models.tiny_vae import decode, load_tiny_vae, to_original_decoder
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def taesd() -> AutoencoderTiny:
    """TAESD's architecture with random weights (what madebyollin/taesd holds, but seeded here)."""
    torch.manual_seed(3)
    return AutoencoderTiny().eval()


def _latents() -> torch.Tensor:
    return torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_an_a1111_decoder_file_in_vae_approx_decodes_as_the_model_it_came_from(tmp_path, taesd, suffix):
    folder = tmp_path / "models" / "VAE-approx"
    folder.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in to_original_decoder(taesd.state_dict()).items()}
    assert "1.weight" in state and not any(k.startswith("decoder") for k in state)  # the original's keys
    path = folder / f"taesd_decoder{suffix}"
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    loaded = load_tiny_vae("taesd_decoder", folders=ModelsDir(tmp_path), device=CPU, dtype=torch.float32)
    assert torch.allclose(decode(loaded, _latents()), decode(taesd, _latents()), atol=1e-6)


def test_a_diffusers_folder_loads(tmp_path, taesd):
    taesd.save_pretrained(tmp_path / "taesd")
    loaded = load_tiny_vae(str(tmp_path / "taesd"), device=CPU, dtype=torch.float32)
    assert torch.allclose(decode(loaded, _latents()), decode(taesd, _latents()), atol=1e-6)


@pytest.mark.parametrize(
    ("ref", "latent_channels", "detail"),
    [("no/such-taesd", 4, "hub"), ("missing.pth", 4, "no such"), ("tiny", 16, "latent channels")],
)
def test_what_cannot_load_is_one_error_naming_the_field(monkeypatch, ref, latent_channels, detail):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FlipbookError) as error:
        load_tiny_vae(ref, device=CPU, dtype=torch.float32, latent_channels=latent_channels)
    assert error.value.field == "performance.tiny_vae"
    assert detail in str(error.value).lower() or detail in error.value.allowed


def _request(steps=2) -> FrameRequest:
    return FrameRequest("a red fox", "", seed=1, num_inference_steps=steps, guidance_scale=7.0, sampler="Euler",
                        width=64, height=64)  # fmt: skip


def test_live_previews_every_step_are_decoded_at_full_size():
    bundle = load_model("tiny", device="cpu", dtype="fp32", performance=Performance(tiny_vae="tiny"))
    previews = []
    events = Events(on_preview=previews.append, preview_every=1)
    SamplingCore(bundle, events).generate([_request(3)])
    assert len(previews) == 3 and all(p.size == (64, 64) for p in previews)  # the latent map gives 8x8
    assert len({p.tobytes() for p in previews}) == 3


def test_tiny_decode_replaces_the_vae_decode_only_when_asked(tiny_model):
    exact = SamplingCore(tiny_model).generate([_request()], output_type="np")[0]
    previews_only = load_model("tiny", device="cpu", dtype="fp32", performance=Performance(tiny_vae="tiny"))
    assert np.array_equal(SamplingCore(previews_only).generate([_request()], output_type="np")[0], exact)
    fast = load_model("tiny", device="cpu", dtype="fp32",
                      performance=Performance(tiny_vae="tiny", tiny_vae_decode=True))  # fmt: skip
    image = SamplingCore(fast).generate([_request()], output_type="np")[0]
    assert image.shape == exact.shape and not np.array_equal(image, exact)
    expected = decode(fast.tiny_vae, SamplingCore(fast).generate([_request()], output_type="latent")[0][None])
    assert np.allclose(image, (expected[0].permute(1, 2, 0).numpy() / 2 + 0.5).clip(0, 1), atol=1e-6)


def test_decoding_with_no_tiny_vae_is_refused_in_the_spec():
    from flipbook.errors import SpecError
    from flipbook.spec.load import spec_from_data

    with pytest.raises(SpecError) as error:
        spec_from_data({"prompts": {"0": "a"}, "performance": {"tiny_vae_decode": True}})
    assert error.value.field == "performance.tiny_vae_decode"

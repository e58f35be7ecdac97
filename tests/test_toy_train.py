"""``flipbook train-toy`` keeps working: a few steps write a single-file SD 1.x model that loads and samples,
the same seed writes the same weights, and the built-in ``shapes`` loads through the normal SD path."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from flipbook.models.families.sd.builtin import untrained_shapes_components
from flipbook.models.loading import load_model
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest
from flipbook.toy.train import TrainSettings, train, train_vae

pytestmark = pytest.mark.usefixtures("one_thread")

FEW = replace(
    TrainSettings(), vae_steps=2, vae_batch=2, decoder_steps=2, steps=2, batch=4, scenes=8, warmup=1
)


def test_a_few_training_steps_write_a_loadable_deterministic_model(tmp_path):
    lines = []
    first = train(FEW, tmp_path / "a.safetensors", log=lines.append)
    second = train(FEW, tmp_path / "b.safetensors", log=lambda line: None)
    other = train(replace(FEW, seed=1), tmp_path / "c.safetensors", log=lambda line: None)
    a, b, c = (load_file(str(path)) for path in (first, second, other))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert any(not (a[k] == c[k]).all() for k in a)
    assert any("ETA" in line for line in lines) and any(line.startswith("diffusion 2/2") for line in lines)

    bundle = load_model(str(first), device="cpu")
    image = SamplingCore(bundle).generate(
        [FrameRequest("a red circle", num_inference_steps=2, width=64, height=64)], output_type="np"
    )[0]
    assert np.asarray(image).shape == (64, 64, 3)


def test_train_toy_refuses_a_bad_output_path(run_cli, tmp_path):
    code, out, err = run_cli("train-toy", str(tmp_path / "model.ckpt"))
    assert code == 2 and "OUT" in err and ".safetensors" in err and "Traceback" not in err


def test_the_vae_trains_to_deterministic_latents():
    """Its posterior has a fixed, negligible variance after training, so a sample is its mean: the diffusion
    model learns the latents the decoder reads."""
    vae = untrained_shapes_components(0)["vae"]
    train_vae(vae, FEW, log=lambda line: None)
    pictures = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        posterior = vae.encode(pictures).latent_dist
    assert posterior.std.max() < 1e-3
    assert torch.allclose(posterior.sample(), posterior.mean, atol=1e-3)


def test_the_attribute_heads_name_what_a_caption_states_and_nothing_else():
    from flipbook.toy.train import AttributeHeads
    from flipbook.toy.world import COLOURS, POSITIONS, SHAPES, SIZES

    labels = AttributeHeads.LABELS
    full = AttributeHeads.targets("a large red circle on the left, blue and white background")
    assert full == [
        list(COLOURS).index("red"),
        list(SHAPES).index("circle"),
        list(SIZES).index("large"),
        list(POSITIONS).index("on the left"),
        list(COLOURS).index("blue"),
        list(COLOURS).index("white"),
    ]
    plain = AttributeHeads.targets("a green star, black background")
    assert plain[2] == len(labels["size"]) and plain[3] == len(labels["position"])
    assert plain[4] == plain[5] == list(COLOURS).index("black")
    assert AttributeHeads.targets("") == [len(names) for names in labels.values()]
    heads = AttributeHeads(8)
    loss = heads.loss(torch.zeros(3, 8), torch.tensor([full, plain, AttributeHeads.targets("")]))
    assert loss.ndim == 0 and torch.isfinite(loss)

"""Pickle files (.ckpt, .pt, .pth, .bin, .pkl): every loader refuses a pickle with objects in the same words
(never running it, never passing on PyTorch's advice to load it with weights_only=False), and calls a damaged
file truncated or corrupt."""

import argparse
import os
from pathlib import Path

import pytest
import torch

from flipbook.errors import FlipbookError
from flipbook.models.pickles import REFUSED, refusal_detail


class Tripwire:
    """Unpickling this would create the folder ``marker``: weights-only loading must refuse it, never run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def _lora(path, pipe):
    from flipbook.models.lora import LoraSet

    LoraSet(pipe).activate([(path, 1.0)])


def _embedding(path, pipe):
    from flipbook.models.lora import load_embeddings

    load_embeddings(pipe, ["thing"], {"thing": path})


def _checkpoint(path, pipe):
    from flipbook.models.families.sd.single_file import load_single_file

    load_single_file(path)


def _vae(path, pipe):
    from flipbook.models.families.sd.single_file import load_vae_file

    load_vae_file(path)


def _controlnet(path, pipe):
    from flipbook.models.controlnet import load_controlnet_file

    load_controlnet_file(path)


def _motion_module(path, pipe):
    from flipbook.models.families.animatediff.loading import load_motion_module_file

    load_motion_module_file(path)


def _upscaler(path, pipe):
    from flipbook.post.upscale import read_state_dict

    read_state_dict(path)


def _rife(path, pipe):
    from flipbook.post.rife import load_rife

    load_rife(path)


# loader, the file name it is given, the field its error names
LOADERS = {
    "checkpoint": (_checkpoint, "model.ckpt", "model"),
    "vae": (_vae, "vae.pt", "vae"),
    "controlnet": (_controlnet, "control.pth", "controlnet"),
    "motion-module": (_motion_module, "mm.ckpt", "animatediff.motion_module"),
    "lora": (_lora, "style.pt", "lora"),
    "embedding": (_embedding, "thing.pt", "embedding"),
    "upscaler": (_upscaler, "4x.pth", "upscale.model"),
    "rife": (_rife, "flownet.pkl", "interpolate.model"),
}


def _write_with_object(path: Path, payload) -> Path:
    torch.save({"state_dict": {"weight": torch.zeros(2, 2)}, "extra": payload}, path)
    return path


def _write_truncated(path: Path) -> Path:
    torch.save({"weight": torch.zeros(64, 64)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("kind", list(LOADERS))
def test_a_pickle_with_objects_is_refused_in_flipbooks_words_and_never_run(tiny_model, tmp_path, kind):
    load, name, field = LOADERS[kind]
    marker = tmp_path / "code-ran"
    path = _write_with_object(tmp_path / name, Tripwire(marker))
    with pytest.raises(FlipbookError) as info:
        load(path, tiny_model.pipe)
    message = str(info.value)
    assert info.value.field.startswith(field), message
    assert REFUSED in message and "use a .safetensors version" in message and "makedirs" in message
    assert "weights_only" not in message and "truncated" not in message and "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize("kind", list(LOADERS))
def test_a_truncated_pickle_is_called_truncated_or_corrupt(tiny_model, tmp_path, kind):
    load, name, field = LOADERS[kind]
    with pytest.raises(FlipbookError) as info:
        load(_write_truncated(tmp_path / name), tiny_model.pipe)
    message = str(info.value)
    assert info.value.field.startswith(field), message
    assert "truncated or corrupt" in message and REFUSED not in message and "weights_only" not in message


def test_a_folder_whose_bin_file_holds_objects_says_the_same(tmp_path):
    """diffusers reads a folder's .bin with torch's weights-only loader and wraps its refusal."""
    from diffusers import AutoencoderKL

    from flipbook.models.families.sd.pipeline import load_vae

    vae = AutoencoderKL(
        block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
        latent_channels=4, norm_num_groups=8, layers_per_block=1,
    )  # fmt: skip
    vae.save_pretrained(tmp_path / "vae", safe_serialization=False)
    (weights,) = (tmp_path / "vae").glob("*.bin")
    state = torch.load(weights, weights_only=True)
    torch.save({**state, "args": argparse.Namespace(lr=1)}, weights)
    with pytest.raises(FlipbookError) as info:
        load_vae(str(tmp_path / "vae"), None)
    assert info.value.field == "vae"
    assert REFUSED in str(info.value) and "argparse.Namespace" in str(info.value)
    assert "weights_only" not in str(info.value)


@pytest.mark.parametrize(
    ("torch_message", "needs"),
    [
        (
            "Weights only load failed. ... Unsupported global: GLOBAL argparse.Namespace was not",
            "argparse.Namespace",
        ),
        (
            "Weights only load failed. ... Trying to load unsupported GLOBAL posix.system whose",
            "posix.system",
        ),
        (
            "Weights only load failed. ... WeightsUnpickler error: \n\nUnsupported operand 149",
            "instruction 149",
        ),
        ("Weights only load failed. ... something new", "Python objects"),
    ],
)
def test_the_refusal_names_what_the_pickle_needs(torch_message, needs):
    detail = refusal_detail(torch_message)
    assert detail.startswith(REFUSED) and needs in detail and detail.endswith("use a .safetensors version")


def test_bytes_that_are_no_pickle_are_corrupt_not_refused(tmp_path):
    from flipbook.models.weights import read_checkpoint

    (tmp_path / "notes.ckpt").write_text("not weights at all")
    with pytest.raises(FlipbookError) as info:
        read_checkpoint(tmp_path / "notes.ckpt")
    assert "truncated or corrupt .ckpt file" in str(info.value) and REFUSED not in str(info.value)


def test_a_known_refused_object_comes_with_a_hint():
    detail = refusal_detail(
        "Weights only load failed. Unsupported global: GLOBAL omegaconf.dictconfig.DictConfig"
    )
    assert "AnimateDiff" in detail and "download it again" in detail

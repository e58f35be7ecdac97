"""Model families: one registry, one package each, nothing outside a package naming its family; load_model
finds a model's family through the registry; the sampling loops take the family's encoder and conditioning."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from flipbook.errors import FlipbookError
from flipbook.models.families import FAMILIES, builtin_names, get_family, with_capability
from flipbook.spec.references import ModelReference

FLIPBOOK = Path(__file__).parents[1] / "flipbook"


def _package_of(family) -> Path:
    """The folder of the package that declares ``family`` (where its hooks live)."""
    hooks = [getattr(family, name) for name in ("detect_checkpoint", "detect_folder", "load")]
    modules = {hook.module for hook in hooks if hook is not None}
    packages = {".".join(module.split(".")[:4]) for module in modules}
    assert len(packages) == 1, f"{family.name}'s hooks live in several packages: {packages}"
    return FLIPBOOK.parent.joinpath(*packages.pop().split("."))


def _string_constants(path: Path) -> set[str]:
    return {
        node.value
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def test_no_code_outside_a_family_package_names_the_family():
    """A family's name is a string only inside its own package: nothing else tests for it (``== "sd1"``,
    ``{"sd1": ...}``), so a new family is its package plus one line in the registry. (Family names therefore
    differ from mode names: the ``svd`` mode uses the ``svd-img2vid`` family.)"""
    registry = FLIPBOOK / "models" / "families" / "__init__.py"
    strings = {path: _string_constants(path) for path in FLIPBOOK.rglob("*.py") if path != registry}
    for family in FAMILIES.values():
        package = _package_of(family)
        inside = [path for path in strings if package in path.parents and family.name in strings[path]]
        outside = [path for path in strings if package not in path.parents and family.name in strings[path]]
        assert inside, f"the scan found no {family.name!r} in {package}, where it is declared"
        assert not outside, f"{family.name!r} is named outside its package, in {[str(p) for p in outside]}"


def test_built_in_names_of_family_kinds_come_from_the_registry():
    assert (
        ModelReference("checkpoint").builtins
        == builtin_names("checkpoint")
        == ("tiny", "random-sd15", "tiny-xl", "random-sdxl")
    )
    assert ModelReference("video model").builtins == ("tiny", "random-svd")
    assert ModelReference("motion module").builtins == ("tiny", "random-sd15", "random-sdxl")
    assert ModelReference("ControlNet", builtins=("tiny",)).builtins == ("tiny",)  # not a family's kind
    with pytest.raises(ValueError, match="model families"):
        ModelReference("checkpoint", builtins=("tiny",))  # no second list of a family's built-ins


def test_families_declare_what_they_serve():
    assert [f.name for f in with_capability("image")] == ["sd1", "sd2", "sdxl"]
    motion = with_capability("motion")
    assert motion and all(get_family(name).capability == "image" for f in motion for name in f.attaches_to)
    assert (
        get_family("sd1").prediction_type == "epsilon" and get_family("sd2").prediction_type == "v_prediction"
    )
    with pytest.raises(FlipbookError, match="sd1"):
        get_family("sd3")


# ---- load_model asks the registry --------------------------------------------------------------------------


def _folder(tmp_path: Path, model_index: dict, unet: dict | None = None) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps(model_index))
    if unet is not None:
        (folder / "unet").mkdir()
        (folder / "unet" / "config.json").write_text(json.dumps(unet))
    return folder


def test_a_video_model_folder_given_as_checkpoint_is_named_for_what_it_is(tmp_path):
    from flipbook.models.loading import load_model

    index = {
        "_class_name": "StableVideoDiffusionPipeline",
        "unet": ["diffusers", "UNetSpatioTemporalConditionModel"],
        "vae": ["diffusers", "AutoencoderKLTemporalDecoder"],
    }
    with pytest.raises(FlipbookError) as info:
        load_model(str(_folder(tmp_path, index, {"num_frames": 14})), device="cpu")
    assert info.value.field == "model" and "video model" in str(info.value)
    assert "Stable Video Diffusion" in str(info.value) and "\n" not in str(info.value)


def test_a_folder_no_family_loads_is_one_clear_error(tmp_path):
    from flipbook.models.loading import load_model

    index = {
        "_class_name": "StableDiffusion3Pipeline",
        "transformer": ["diffusers", "SD3Transformer2DModel"],
        "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    }
    with pytest.raises(FlipbookError) as info:
        load_model(str(_folder(tmp_path, index)), device="cpu")
    assert "StableDiffusion3Pipeline" in str(info.value) and "Stable Diffusion 1.x" in str(info.value)


def test_a_motion_module_given_as_checkpoint_is_named_for_what_it_is(tmp_path):
    from flipbook.models.families.animatediff.builtin import tiny_motion_adapter
    from flipbook.models.families.animatediff.files import save_original_motion_module
    from flipbook.models.loading import load_model

    path = save_original_motion_module(tiny_motion_adapter(), tmp_path / "mm_tiny.safetensors")
    with pytest.raises(FlipbookError) as info:
        load_model(str(path), device="cpu")
    assert info.value.field == "model" and "motion module" in str(info.value)


def test_the_loaded_model_records_the_family_the_registry_found(tiny_model, tmp_path):
    from flipbook.models.families.sd.convert import save_original_checkpoint
    from flipbook.models.loading import load_model

    tiny_model.pipe.save_pretrained(tmp_path / "tiny")
    assert load_model(str(tmp_path / "tiny"), device="cpu").family == "sd1"
    path = save_original_checkpoint(tiny_model.pipe, tmp_path / "tiny.safetensors")
    assert load_model(str(path), device="cpu").family == "sd1"


# ---- the sampling loops use the family's encoder -----------------------------------------------------------


class _PooledEncoder:
    """A family encoder that, as SDXL's will, adds a pooled embedding to every row (here: zeros)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def condition(self, prompt, other=None, weight=0.0, mode="lerp", *, negative=False):
        from flipbook.sampling.conditioning import Conditioning

        plain = self.inner.condition(prompt, other, weight, mode, negative=negative)
        return Conditioning(plain.embeds, {"text_embeds": torch.zeros(1, 7)})

    def at_size(self, conditioning, width, height):
        return conditioning.with_added(time_ids=torch.tensor([[height, width]]).repeat(conditioning.rows, 1))

    def pad(self, conditioning, length):
        from flipbook.sampling.conditioning import Conditioning

        return Conditioning(self.inner.pad(conditioning, length).embeds, conditioning.added)

    def clear(self) -> None:
        self.inner.clear()


def test_the_core_conditions_the_unet_with_what_the_family_encoder_gives(tiny_model, monkeypatch):
    from flipbook.models.families.sd.encoder import prompt_encoder
    from flipbook.sampling.core import SamplingCore
    from flipbook.sampling.encode import PromptEncoder
    from flipbook.sampling.requests import FrameRequest

    core = SamplingCore(tiny_model)
    assert isinstance(core.encoder(2), PromptEncoder) and core.encoder(2).clip_skip == 2  # sd1's encoder
    seen: list[dict] = []
    unet = tiny_model.unet
    original = type(unet).forward

    def spy(self, sample, t, **kwargs):
        seen.append({"rows": sample.shape[0], **kwargs})
        return original(self, sample, t, **kwargs)

    monkeypatch.setattr(
        core, "encoder", lambda clip_skip: _PooledEncoder(prompt_encoder(tiny_model, clip_skip))
    )
    monkeypatch.setattr(type(unet), "forward", spy)
    request = FrameRequest("a lighthouse AND a storm", seed=1, num_inference_steps=2, width=64, height=64)
    core.generate(
        [request, FrameRequest("a boat", seed=2, num_inference_steps=2, width=64, height=64)], batch_size=2
    )
    assert len(seen) == 2
    for call in seen:
        added = call["added_cond_kwargs"]["text_embeds"]
        assert call["rows"] == 5 and added.shape == (5, 7)  # 2 unconds + 3 prompt parts, one pooled row each
        assert call["added_cond_kwargs"]["time_ids"].tolist() == [[64, 64]] * 5  # the batch's size, every row
        assert call["encoder_hidden_states"].shape[0] == 5


def test_motion_modules_attach_only_to_the_families_they_declare(tiny_model):
    from flipbook.models.bundle import ModelBundle
    from flipbook.models.families.animatediff.builtin import tiny_motion_adapter
    from flipbook.sampling.animatediff import motion_pipeline

    as_sd2 = ModelBundle(tiny_model.pipe, "v-model", "sd2", "builtin", tiny_model.device, tiny_model.dtype)
    with pytest.raises(FlipbookError) as info:
        motion_pipeline(as_sd2, tiny_motion_adapter())
    assert info.value.field == "model.name" and "Stable Diffusion 1.x" in str(info.value)


# ---- private names stay where they are defined -------------------------------------------------------------


def _private_imports(path: Path) -> list[tuple[str, str]]:
    return [
        (node.module, alias.name)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("flipbook.")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]


def test_no_private_name_is_imported_across_packages_or_between_the_sampling_loops():
    """The loops' shared step helpers are a public module (sampling/steps.py), and what several packages
    share (weights files, seeded builds) is public in models/weights.py."""
    found = []
    for path in FLIPBOOK.rglob("*.py"):
        package = ".".join(path.relative_to(FLIPBOOK.parent).with_suffix("").parts[:-1])
        for module, name in _private_imports(path):
            if module.rsplit(".", 1)[0] != package or package == "flipbook.sampling":
                found.append(f"{path.relative_to(FLIPBOOK.parent)}: {module}.{name}")
    assert not found

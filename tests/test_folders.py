"""Models are found in AUTOMATIC1111 and ComfyUI folder layouts by the names those tools show."""

from __future__ import annotations

from pathlib import Path

import pytest

from flipbook.errors import FlipbookError
from flipbook.models.folders import KINDS, ModelsDir, models_dir_from_env


def _touch(root: Path, *relatives: str) -> None:
    for relative in relatives:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


@pytest.fixture
def webui(tmp_path: Path) -> Path:
    root = tmp_path / "stable-diffusion-webui"
    _touch(
        root,
        "models/Stable-diffusion/v1-5-pruned-emaonly.safetensors",
        "models/Stable-diffusion/anime/counterfeit.safetensors",
        "models/Stable-diffusion/anime/counterfeit.ckpt",
        "models/Stable-diffusion/notes.txt",
        "models/Stable-diffusion/dreamshaper-diffusers/model_index.json",
        "models/Stable-diffusion/dreamshaper-diffusers/unet/diffusion_pytorch_model.safetensors",
        "models/Lora/style/ink.safetensors",
        "models/Lora/detail.safetensors",
        "models/Lora/other/detail.safetensors",
        "models/LyCORIS/locon.safetensors",
        "models/LyCORIS/styles/ink.safetensors",
        "models/VAE/vae-ft-mse.safetensors",
        "embeddings/easynegative.safetensors",
        "embeddings/badhands.pt",
        "models/ControlNet/control_v11p_sd15_openpose.pth",
        "extensions/sd-webui-animatediff/model/mm_sd_v15_v2.ckpt",
        "models/ESRGAN/4x-UltraSharp.pth",
        "models/RealESRGAN/RealESRGAN_x4plus.pth",
        "models/Deforum/dpt-hybrid-midas/config.json",  # a transformers depth model in Deforum's folder
        "models/Deforum/dpt-hybrid-midas/model.safetensors",
        "models/Deforum/dpt_large-midas-2f21e586.pt",  # Deforum's own MiDaS file: none of flipbook's kinds
        "models/Deforum/RIFE46.pkl",
        "models/Deforum/film_interpolation/film_net_fp16.pt",
        "extensions/sd-webui-controlnet/annotator/downloads/openpose/body_pose_model.pth",
        "extensions/sd-webui-controlnet/annotator/downloads/openpose/hand_pose_model.pth",
        "models/ControlNetPreprocessor/depth-anything-small/config.json",
    )
    return root


@pytest.fixture
def comfy(tmp_path: Path) -> Path:
    root = tmp_path / "ComfyUI"
    _touch(
        root,
        "models/checkpoints/sd15/realistic.safetensors",
        "models/loras/ink.safetensors",
        "models/vae/vae-ft-mse.safetensors",
        "models/embeddings/easynegative.safetensors",
        "models/controlnet/openpose.safetensors",
        "models/animatediff_models/mm_sd_v15_v2.ckpt",
        "custom_nodes/ComfyUI-AnimateDiff-Evolved/models/v3_sd15_mm.ckpt",
        "models/upscale_models/4x-UltraSharp.pth",
        "models/depthanything/depth-anything-v2-small-hf/config.json",
        "models/depthanything/depth_anything_v2_vits.safetensors",  # the original layout: not a folder model
        "custom_nodes/comfyui_controlnet_aux/ckpts/lllyasviel/Annotators/body_pose_model.pth",
        "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/film/film_net_fp32.pt",
        "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife/rife46.pth",
    )
    return root


def test_a1111_layout_lists_every_kind(webui: Path) -> None:
    models = ModelsDir(webui)
    assert models.layout == "a1111"
    assert models.list("checkpoint") == {
        "anime/counterfeit": webui / "models/Stable-diffusion/anime/counterfeit.safetensors",
        "dreamshaper-diffusers": webui / "models/Stable-diffusion/dreamshaper-diffusers",
        "v1-5-pruned-emaonly": webui / "models/Stable-diffusion/v1-5-pruned-emaonly.safetensors",
    }
    assert set(models.list("lora")) == {"style/ink", "styles/ink", "detail", "other/detail", "locon"}
    assert set(models.list("vae")) == {"vae-ft-mse"}
    assert set(models.list("embedding")) == {"easynegative", "badhands"}
    assert set(models.list("controlnet")) == {"control_v11p_sd15_openpose"}
    assert set(models.list("motion_module")) == {"mm_sd_v15_v2"}
    assert set(models.list("upscaler")) == {"4x-UltraSharp", "RealESRGAN_x4plus"}
    assert models.list("depth") == {"dpt-hybrid-midas": webui / "models/Deforum/dpt-hybrid-midas"}
    assert set(models.list("annotator")) == {"openpose", "depth-anything-small"}
    assert models.list("film") == {
        "film_net_fp16": webui / "models/Deforum/film_interpolation/film_net_fp16.pt"
    }
    assert models.list("rife") == {
        "RIFE46": webui / "models/Deforum/RIFE46.pkl"
    }  # not the depth model's weights


def test_comfyui_layout_lists_every_kind(comfy: Path) -> None:
    models = ModelsDir(comfy)
    assert models.layout == "comfyui"
    assert set(models.list("checkpoint")) == {"sd15/realistic"}
    assert set(models.list("lora")) == {"ink"}
    assert set(models.list("vae")) == {"vae-ft-mse"}
    assert set(models.list("embedding")) == {"easynegative"}
    assert set(models.list("controlnet")) == {"openpose"}
    assert set(models.list("motion_module")) == {"mm_sd_v15_v2", "v3_sd15_mm"}
    assert set(models.list("upscaler")) == {"4x-UltraSharp"}
    assert set(models.list("depth")) == {"depth-anything-v2-small-hf"}
    assert models.list("annotator") == {
        "lllyasviel/Annotators": comfy / "custom_nodes/comfyui_controlnet_aux/ckpts/lllyasviel/Annotators"
    }
    assert set(models.list("film")) == {"film_net_fp32"}
    assert set(models.list("rife")) == {"rife46"}


@pytest.mark.parametrize("layout", ["webui", "comfy"])
def test_models_subfolder_works_as_root(layout: str, request: pytest.FixtureRequest) -> None:
    install: Path = request.getfixturevalue(layout)
    whole, models_only = ModelsDir(install), ModelsDir(install / "models")
    for kind in KINDS:
        assert whole.list(kind) == models_only.list(kind)


def test_find_by_name_extension_stem_and_a1111_spellings(webui: Path) -> None:
    models = ModelsDir(webui)
    counterfeit = webui / "models/Stable-diffusion/anime/counterfeit.safetensors"
    assert models.find("checkpoint", "anime/counterfeit") == counterfeit
    assert models.find("checkpoint", "counterfeit") == counterfeit
    assert models.find("checkpoint", "anime/counterfeit.safetensors") == counterfeit
    assert models.find("checkpoint", "anime\\counterfeit.safetensors [cbfba64e66]") == counterfeit
    assert models.find("checkpoint", "Anime/Counterfeit") == counterfeit
    assert models.find("checkpoint", "dreamshaper-diffusers").is_dir()
    assert models.find("lora", "style/ink") == webui / "models/Lora/style/ink.safetensors"
    assert models.find("lora", "locon") == webui / "models/LyCORIS/locon.safetensors"
    assert models.find("embedding", "badhands.pt") == webui / "embeddings/badhands.pt"
    assert models.find("lora", str(counterfeit)) == counterfeit  # an absolute path is taken as given


def test_safetensors_wins_over_ckpt_of_the_same_name(webui: Path) -> None:
    assert ModelsDir(webui).find("checkpoint", "anime/counterfeit").suffix == ".safetensors"


def test_ambiguous_stem_lists_candidates(webui: Path) -> None:
    with pytest.raises(FlipbookError) as info:
        ModelsDir(webui).find("lora", "ink")
    assert info.value.field == "lora" and info.value.value == "ink"
    assert info.value.allowed == "one of: style/ink, styles/ink"
    assert "ambiguous" in str(info.value)


def test_exact_name_wins_over_a_stem_in_a_subfolder(webui: Path) -> None:
    models = ModelsDir(webui)
    assert models.find("lora", "detail") == webui / "models/Lora/detail.safetensors"
    assert models.find("lora", "other/detail") == webui / "models/Lora/other/detail.safetensors"


def test_missing_model_lists_what_is_there(webui: Path) -> None:
    with pytest.raises(FlipbookError) as info:
        ModelsDir(webui).find("vae", "kl-f8-anime")
    error = info.value
    assert error.field == "vae" and error.value == "kl-f8-anime"
    assert error.allowed == "one of: vae-ft-mse"


def test_missing_model_list_is_capped_at_twenty(tmp_path: Path) -> None:
    _touch(tmp_path, *(f"models/loras/lora{i:02d}.safetensors" for i in range(25)))
    with pytest.raises(FlipbookError) as info:
        ModelsDir(tmp_path).find("lora", "nope")
    assert "lora19" in info.value.allowed and "lora20" not in info.value.allowed
    assert "(and 5 more)" in info.value.allowed


def test_missing_model_in_an_empty_kind_names_the_folders_searched(comfy: Path) -> None:
    (comfy / "models/vae/vae-ft-mse.safetensors").unlink()
    with pytest.raises(FlipbookError) as info:
        ModelsDir(comfy).find("vae", "anything")
    assert str(comfy / "models/vae") in info.value.allowed and "none was found" in info.value.allowed


def test_unknown_kind_is_rejected(comfy: Path) -> None:
    with pytest.raises(FlipbookError) as info:
        ModelsDir(comfy).list("hypernetwork")
    assert info.value.field == "kind" and "checkpoint" in info.value.allowed


def test_root_matching_neither_layout_names_root_and_expected_folders(tmp_path: Path) -> None:
    (tmp_path / "models" / "random").mkdir(parents=True)
    with pytest.raises(FlipbookError) as info:
        ModelsDir(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "models/Stable-diffusion" in message and "models/checkpoints" in message


def test_missing_root_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FlipbookError, match="no such folder"):
        ModelsDir(tmp_path / "nowhere")


def test_symlinked_folders_are_followed_without_looping(tmp_path: Path) -> None:
    store = tmp_path / "store"
    _touch(store, "shared.safetensors")
    root = tmp_path / "ComfyUI"
    (root / "models/loras").mkdir(parents=True)
    (root / "models/loras/linked").symlink_to(store, target_is_directory=True)
    (store / "loop").symlink_to(store, target_is_directory=True)
    assert set(ModelsDir(root).list("lora")) == {"linked/shared"}


def test_env_var(webui: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLIPBOOK_MODELS_DIR", raising=False)
    assert models_dir_from_env() is None
    monkeypatch.setenv("FLIPBOOK_MODELS_DIR", str(webui))
    found = models_dir_from_env()
    assert found is not None and found.layout == "a1111"
    monkeypatch.setenv("FLIPBOOK_MODELS_DIR", str(webui / "missing"))
    with pytest.raises(FlipbookError) as info:
        models_dir_from_env()
    assert info.value.field == "FLIPBOOK_MODELS_DIR"

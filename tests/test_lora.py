"""LoRAs and embeddings change the tiny model as A1111 would, switch cleanly, and fail without damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
from peft import LoraConfig, get_peft_model_state_dict
from safetensors.torch import save_file

from flipbook.errors import FlipbookError, LibraryError
from flipbook.models.families.sd.builtin import SD15_SCHEDULER_CONFIG, tiny_components
from flipbook.models.lora import LoraSet, embeddings_used, load_embeddings

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "a photo of a cat"
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


class _Payload:
    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran() -> None:
    _Payload.ran = True


def make_pipe() -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline(
        **tiny_components(0),
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(pipe: StableDiffusionPipeline, prompt: str = PROMPT) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    return pipe(
        prompt, height=64, width=64, num_inference_steps=2, generator=generator, output_type="np"
    ).images


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


def _lora_layers(model: torch.nn.Module, targets: list[str], seed: int) -> dict[str, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.add_adapter(LoraConfig(r=4, target_modules=targets, init_lora_weights=False))
    return get_peft_model_state_dict(model)


def _tiny_unet(cross_attention_dim: int) -> UNet2DConditionModel:
    config = dict(tiny_components(0)["unet"].config)
    config["cross_attention_dim"] = cross_attention_dim
    return UNet2DConditionModel.from_config(config)


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """LoRA files made once: PEFT/diffusers format, the same weights in kohya format, and misfits."""
    root = tmp_path_factory.mktemp("loras")
    files: dict[str, Path] = {}

    unet_layers = _lora_layers(tiny_components(0)["unet"], UNET_TARGETS, seed=1)
    StableDiffusionPipeline.save_lora_weights(root / "style", unet_lora_layers=unet_layers)
    files["style"] = root / "style" / "pytorch_lora_weights.safetensors"

    other_layers = _lora_layers(tiny_components(0)["unet"], UNET_TARGETS, seed=2)
    StableDiffusionPipeline.save_lora_weights(root / "other", unet_lora_layers=other_layers)
    files["other"] = root / "other" / "pytorch_lora_weights.safetensors"

    components = tiny_components(0)
    both = {f"unet.{k}": v for k, v in _lora_layers(components["unet"], UNET_TARGETS, seed=1).items()}
    te = _lora_layers(components["text_encoder"], TE_TARGETS, seed=3)
    kohya = {f"lora_unet_{k}": v for k, v in convert_state_dict_to_kohya(
        {k.removeprefix("unet."): v for k, v in both.items()}).items()}  # fmt: skip
    kohya |= {f"lora_te_{k}": v for k, v in convert_state_dict_to_kohya(te).items()}
    files["kohya"] = root / "kohya_style.safetensors"
    save_file({k: v.contiguous() for k, v in kohya.items()}, files["kohya"])

    wrong = _lora_layers(_tiny_unet(cross_attention_dim=64), UNET_TARGETS, seed=4)
    StableDiffusionPipeline.save_lora_weights(root / "sd2ish", unet_lora_layers=wrong)
    files["wrong"] = root / "sd2ish" / "pytorch_lora_weights.safetensors"

    vae = {k: v.contiguous() for k, v in list(tiny_components(0)["vae"].state_dict().items())[:8]}
    files["not_lora"] = root / "vae.safetensors"
    save_file(vae, files["not_lora"])
    files["corrupt"] = root / "corrupt.safetensors"
    files["corrupt"].write_bytes(b"\x00garbage" * 64)
    return files


@pytest.fixture
def pipe() -> StableDiffusionPipeline:
    return make_pipe()


def test_lora_changes_the_image_and_empty_set_or_zero_weight_restores_it(pipe, lora_files) -> None:
    base = render(pipe)
    loras = LoraSet(pipe)
    loras.activate([(lora_files["style"], 1.0)])
    styled = render(pipe)
    assert diff(styled, base) > 1e-2
    loras.activate([])
    assert diff(render(pipe), base) < 1e-5
    loras.activate([(lora_files["style"], 0.0)])
    assert diff(render(pipe), base) < 1e-5
    loras.activate([(lora_files["style"], 1.0)])
    assert diff(render(pipe), styled) < 1e-5


def test_difference_grows_with_weight(pipe, lora_files) -> None:
    base = render(pipe)
    loras = LoraSet(pipe)
    changes = []
    for weight in (0.25, 0.5, 1.0, 2.0):
        loras.activate([(lora_files["style"], weight)])
        changes.append(float(np.abs(render(pipe) - base).mean()))
    assert changes == sorted(changes) and changes[0] > 0


def test_two_loras_combine_and_switching_sets_is_exact(pipe, lora_files) -> None:
    loras = LoraSet(pipe)
    loras.activate([(lora_files["style"], 1.0)])
    style = render(pipe)
    loras.activate([(lora_files["style"], 1.0), (lora_files["other"], 1.0)])
    combined = render(pipe)
    assert diff(combined, style) > 1e-3
    assert len(loras.loaded) == 2 and len(loras.active) == 2
    loras.activate([(lora_files["style"], 1.0)])
    assert diff(render(pipe), style) < 1e-5


def test_same_set_twice_does_no_work(pipe, lora_files, monkeypatch) -> None:
    calls = {"load": 0, "set": 0}
    load, set_adapters = pipe.load_lora_weights, pipe.set_adapters

    def counting_load(*args, **kwargs):
        calls["load"] += 1
        return load(*args, **kwargs)

    def counting_set(*args, **kwargs):
        calls["set"] += 1
        return set_adapters(*args, **kwargs)

    monkeypatch.setattr(pipe, "load_lora_weights", counting_load)
    monkeypatch.setattr(pipe, "set_adapters", counting_set)
    loras = LoraSet(pipe)
    loras.activate([(lora_files["style"], 0.7)])
    loras.activate([(str(lora_files["style"]), 0.7)])
    assert calls == {"load": 1, "set": 1}
    loras.activate([(lora_files["style"], 0.3)])
    assert calls == {"load": 1, "set": 2}


def test_kohya_format_loads_like_the_diffusers_format(pipe, lora_files) -> None:
    loras = LoraSet(pipe)
    loras.activate([(lora_files["style"], 1.0)])
    peft_unet_only = render(pipe)
    loras.activate([(lora_files["kohya"], 1.0, 0.0)])  # text-encoder weight 0: only the UNet part
    assert diff(render(pipe), peft_unet_only) < 1e-5
    loras.activate([(lora_files["kohya"], 1.0)])
    assert diff(render(pipe), peft_unet_only) > 1e-3  # the text-encoder part now counts too
    assert set(pipe.get_list_adapters()) == {"unet", "text_encoder"}


def test_files_with_the_same_stem_get_distinct_adapters(pipe, lora_files) -> None:
    loras = LoraSet(pipe)
    loras.activate([(lora_files["style"], 1.0), (lora_files["other"], 1.0)])
    assert len(set(loras.loaded.values())) == 2


@pytest.mark.parametrize("kind", ["wrong", "not_lora", "corrupt"])
def test_misfit_lora_raises_and_leaves_the_pipeline_as_it_was(pipe, lora_files, kind) -> None:
    base = render(pipe)
    loras = LoraSet(pipe)
    with pytest.raises(FlipbookError) as info:
        loras.activate([(lora_files[kind], 1.0)])
    error = info.value
    assert error.field == "lora" and "SD 1.x" in error.allowed and error.detail
    assert len(str(error)) < 300
    assert diff(render(pipe), base) < 1e-5
    assert loras.loaded == {} and loras.active == {}

    loras.activate([(lora_files["style"], 1.0)])
    styled = render(pipe)
    with pytest.raises(FlipbookError):
        loras.activate([(lora_files["style"], 1.0), (lora_files[kind], 1.0)])
    assert diff(render(pipe), styled) < 1e-5
    assert list(loras.active) == list(loras.loaded.values())


def test_wrong_family_error_names_the_shape_problem(pipe, lora_files) -> None:
    with pytest.raises(FlipbookError, match="shapes do not match"):
        LoraSet(pipe).activate([(lora_files["wrong"], 1.0)])


def test_pickled_code_in_a_pt_lora_is_never_run(pipe, tmp_path) -> None:
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"
    torch.save({key: torch.zeros(4, 32), "evil": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(FlipbookError, match="flipbook will not run"):
        LoraSet(pipe).activate([(tmp_path / "evil.pt", 1.0)])
    assert not _Payload.ran


def test_a_library_failure_is_not_reported_as_a_bad_file(pipe, lora_files, monkeypatch) -> None:
    """transformers 5.24 refused peft 0.21 inside add_adapter; that is the install's fault, not the file's."""
    base = render(pipe)

    def incompatible(*args, **kwargs):
        raise ValueError(
            "The version of PEFT you are using is not compatible, please use a version >= 0.22.0"
        )

    monkeypatch.setattr(pipe, "load_lora_weights", incompatible)
    loras = LoraSet(pipe)
    with pytest.raises(LibraryError) as info:
        loras.activate([(lora_files["style"], 1.0)])
    message = str(info.value)
    assert not isinstance(info.value, FlipbookError)
    assert "version of PEFT" in message and "peft " in message and "not valid" not in message
    assert lora_files["style"].stem in message and len(message) < 500
    assert loras.loaded == {} and diff(render(pipe), base) < 1e-5


def test_missing_lora_file(pipe, tmp_path) -> None:
    with pytest.raises(FlipbookError, match="no such file"):
        LoraSet(pipe).activate([(tmp_path / "nope.safetensors", 1.0)])


# --- embeddings ------------------------------------------------------------------------------------------------


def _embedding(path: Path, shape: tuple[int, ...], seed: int = 5) -> Path:
    generator = torch.Generator().manual_seed(seed)
    save_file({"emb_params": torch.randn(*shape, generator=generator)}, path)
    return path


def test_embedding_changes_a_prompt_that_names_it(pipe, tmp_path) -> None:
    embeddings = {"flipstyle": _embedding(tmp_path / "flipstyle.safetensors", (1, 32))}
    prompt = "a photo of a cat, flipstyle"
    before, unrelated = render(pipe, prompt), render(pipe)
    assert load_embeddings(pipe, [PROMPT, None], embeddings) == []
    assert load_embeddings(pipe, [prompt], embeddings) == ["flipstyle"]
    assert diff(render(pipe, prompt), before) > 1e-3
    assert diff(render(pipe), unrelated) < 1e-5


def test_embedding_is_loaded_once(pipe, tmp_path, monkeypatch) -> None:
    embeddings = {"flipstyle": _embedding(tmp_path / "flipstyle.safetensors", (1, 32))}
    calls = []
    original = pipe.load_textual_inversion
    monkeypatch.setattr(pipe, "load_textual_inversion", lambda *a, **k: calls.append(1) or original(*a, **k))
    for _ in range(3):
        assert load_embeddings(pipe, ["flipstyle"], embeddings) == ["flipstyle"]
    assert len(calls) == 1


def test_multi_vector_embedding_matches_case_insensitively(pipe, tmp_path) -> None:
    embeddings = {"neg/EasyNeg": _embedding(tmp_path / "EasyNeg.safetensors", (3, 32))}
    assert load_embeddings(pipe, ["(EasyNeg:1.2), blurry"], embeddings) == ["neg/EasyNeg"]
    assert "easyneg_2" in pipe.maybe_convert_prompt("a EasyNeg", pipe.tokenizer)
    assert diff(render(pipe, "a cat, EasyNeg"), render(pipe, "a cat, easyneg")) < 1e-6


def test_a1111_pt_embedding_loads_with_weights_only(pipe, tmp_path) -> None:
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(6))
    a1111 = {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": vectors},
        "name": "oldstyle",
        "step": 1000,
        "sd_checkpoint": "e1441589",
        "sd_checkpoint_name": "v1-5-pruned-emaonly",
    }
    torch.save(a1111, tmp_path / "oldstyle.pt")
    assert load_embeddings(pipe, ["oldstyle"], {"oldstyle": tmp_path / "oldstyle.pt"}) == ["oldstyle"]
    token_id = pipe.tokenizer.convert_tokens_to_ids("oldstyle_1")
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[token_id], vectors[1])


def test_pickled_code_in_a_pt_embedding_is_never_run(pipe, tmp_path) -> None:
    torch.save({"string_to_param": {"*": torch.zeros(1, 32)}, "evil": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(FlipbookError, match="flipbook will not run"):
        load_embeddings(pipe, ["evil"], {"evil": tmp_path / "evil.pt"})
    assert not _Payload.ran


def test_wrong_size_embedding_raises_and_changes_nothing(pipe, tmp_path) -> None:
    embeddings = {"bigstyle": _embedding(tmp_path / "bigstyle.safetensors", (1, 48))}
    vocab_size = len(pipe.tokenizer)
    with pytest.raises(FlipbookError) as info:
        load_embeddings(pipe, ["bigstyle"], embeddings)
    assert info.value.field == "embedding" and info.value.value == "bigstyle"
    assert "width 32" in info.value.allowed and "(1, 48)" in str(info.value)
    assert len(pipe.tokenizer) == vocab_size
    assert pipe.text_encoder.get_input_embeddings().weight.shape[0] == vocab_size


def test_embedding_named_like_a_vocabulary_word_is_rejected(pipe, tmp_path) -> None:
    embeddings = {"cat": _embedding(tmp_path / "cat.safetensors", (1, 32))}
    with pytest.raises(FlipbookError, match="rename"):
        load_embeddings(pipe, [PROMPT], embeddings)


def test_embeddings_used_matches_whole_words_only() -> None:
    names = ["easyneg", "neg/badhand", "style-v2"]
    assert embeddings_used(["(EasyNeg:1.1), BadHand"], names) == ["easyneg", "neg/badhand"]
    assert embeddings_used(["easynegative badhands"], names) == []
    assert embeddings_used(["a style-v2, b"], names) == ["style-v2"]

"""LoRAs of the video diffusion families (Wan, LTX-Video): tiny LoRA files written for tiny-wan and tiny-ltx in
the layouts people have (ComfyUI/kohya with Wan's original layer names and alpha, diffusers/PEFT), named in
``model.loras`` or as ``<lora:name:w>`` tags; they change the frames, weight 0 gives the frames without them,
the result is diffusers' pipeline with the same file loaded by its own loader, and a LoRA of another family is
one error before any model loads."""

from __future__ import annotations

import dataclasses

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

from flipbook.errors import FlipbookError
from flipbook.models.families.ltx.loading import load_ltx
from flipbook.models.families.wan.loading import diffusers_pipeline, load_wan
from flipbook.runs.render import render
from flipbook.sampling import ltx as ltx_sampling
from flipbook.sampling import wan as wan_sampling
from flipbook.sampling.segments import SegmentSettings
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")
SEQ = 32
PROMPT = "a cat in the city"
# diffusers' Wan layer names -> Wan's original ones (as ComfyUI's and kohya's Wan LoRAs name them)
_ORIGINAL = [
    ("attn1", "self_attn"), ("attn2", "cross_attn"), (".to_q", ".q"), (".to_k", ".k"), (".to_v", ".v"),
    (".to_out.0", ".o"), ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
]  # fmt: skip


def _original(name: str) -> str:
    for new, old in _ORIGINAL:
        name = name.replace(new, old)
    return name


def _linears(transformer, keep):
    return [(n, m) for n, m in transformer.named_modules() if isinstance(m, torch.nn.Linear) and keep(n)]


def wan_lora(path, seed=0, rank=4):
    """A kohya/ComfyUI-layout Wan LoRA: ``diffusion_model.blocks.N.self_attn.q.lora_down/lora_up/alpha``."""
    transformer = load_wan("tiny-wan", field_name="m", device="cpu").transformer
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in _linears(transformer, lambda n: n.startswith("blocks.") and ".norm" not in n):
        key = f"diffusion_model.{_original(name)}"
        state[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=generator) * 0.5
        state[f"{key}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=generator) * 0.5
        state[f"{key}.alpha"] = torch.tensor(float(rank) / 2)
    save_file(state, path)
    return path


def ltx_lora(path, seed=0, rank=4):
    """A ComfyUI-layout LTX-Video LoRA (``diffusion_model.transformer_blocks.N.attn1.to_q.lora_A``)."""
    transformer = load_ltx("tiny-ltx", field_name="m", device="cpu").transformer
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in _linears(transformer, lambda n: n.startswith("transformer_blocks.")):
        key = f"diffusion_model.{name}"
        state[f"{key}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=generator) * 0.5
        state[f"{key}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=generator) * 0.5
    save_file(state, path)
    return path


def sd_lora(path):
    """A kohya SD 1.x LoRA's keys (lora_unet_down_blocks_...)."""
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file(
        {f"{key}.lora_down.weight": torch.zeros(4, 320), f"{key}.lora_up.weight": torch.zeros(320, 4),
         f"{key}.alpha": torch.tensor(4.0)}, path,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    (root / "models" / "loras").mkdir(parents=True)
    folder = root / "models" / "loras"
    return {
        "root": root,
        "wan": wan_lora(folder / "wan-style.safetensors"),
        "ltx": ltx_lora(folder / "ltx-style.safetensors"),
        "sd": sd_lora(folder / "sd-style.safetensors"),
    }


def make_spec(tmp_path, name, model="tiny-wan", prompt=PROMPT, loras=(), models_dir=None):
    frames = 9
    data = {
        "model": {"device": "cpu", "loras": [{"name": str(p), "weight": w} for p, w in loras]},
        "sampling": {"steps": 2, "seed": 5, "cfg": 4.0},
        "animation": {"mode": "videomodel", "max_frames": frames, "width": 64, "height": 64},
        "videomodel": {"model": model, "segment_frames": frames, "max_sequence_length": SEQ},
        "prompts": {"0": prompt},
        "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    }
    if models_dir is not None:
        data["model"]["models_dir"] = str(models_dir)
    return spec_from_data(data)


def frames(result):
    return np.stack([np.asarray(PIL.Image.open(p).convert("RGB")).astype(int) for p in result.frames])


# ---- Wan ------------------------------------------------------------------------------------------------


def test_a_wan_lora_changes_the_frames_and_weight_zero_gives_them_back(tmp_path, files):
    plain = frames(render(make_spec(tmp_path, "plain")))
    styled = frames(render(make_spec(tmp_path, "lora", loras=[(files["wan"], 1.0)])))
    off = frames(render(make_spec(tmp_path, "off", loras=[(files["wan"], 0.0)])))
    assert np.abs(styled - plain).mean() > 5
    assert np.array_equal(off, plain)


def test_a_diffusers_layout_file_is_the_same_lora_as_the_kohya_one(tmp_path, files):
    """The same LoRA saved in diffusers' layout (``transformer.blocks.N.attn1.to_q.lora_A``), as diffusers'
    own converter writes it from the ComfyUI/kohya file: the same frames."""
    from diffusers import WanPipeline
    from safetensors.torch import load_file

    converted = WanPipeline.lora_state_dict(load_file(files["wan"]))
    assert all(key.startswith("transformer.blocks.") for key in converted)
    diffusers_file = tmp_path / "wan-style-diffusers.safetensors"
    save_file({k: v.contiguous() for k, v in converted.items()}, diffusers_file)
    kohya = frames(render(make_spec(tmp_path, "kohya", loras=[(files["wan"], 0.9)])))
    ours = frames(render(make_spec(tmp_path, "diffusers", loras=[(diffusers_file, 0.9)])))
    assert np.array_equal(kohya, ours)
    assert not np.array_equal(ours, frames(render(make_spec(tmp_path, "without"))))


def test_every_lora_is_loaded_before_the_memory_switches_are_set(tmp_path, files, monkeypatch):
    """diffusers' group offload moves only the layers it was applied to: LoRA layers must exist by then."""
    from flipbook.sampling import video_memory

    seen = []
    apply = video_memory.apply

    def recording(bundle, switches):
        seen.append(set(bundle.loras.loaded))
        return apply(bundle, switches)

    monkeypatch.setattr(video_memory, "apply", recording)
    render(make_spec(tmp_path, "order", prompt=f"{PROMPT} <lora:wan-style:0.5>", models_dir=files["root"]))
    assert seen == [{files["wan"].resolve()}]


def test_an_inline_tag_from_the_models_folder_is_the_same_as_a_spec_entry(tmp_path, files):
    tagged = make_spec(tmp_path, "tag", prompt=f"{PROMPT} <lora:wan-style:0.8>", models_dir=files["root"])
    listed = make_spec(tmp_path, "listed", loras=[(files["wan"], 0.8)])
    assert np.array_equal(frames(render(tagged)), frames(render(listed)))


def test_a_wan_lora_equals_wan_pipeline_with_the_file_loaded_by_diffusers(files):
    settings = SegmentSettings(num_frames=9, height=64, width=64, num_inference_steps=2, guidance_scale=4.0,
                               max_sequence_length=SEQ)  # fmt: skip
    ours_bundle = load_wan("tiny-wan", field_name="m", device="cpu")
    ours_bundle.loras.activate([(files["wan"], 0.7)])
    embeds = wan_sampling.encode_prompt(ours_bundle, PROMPT, SEQ)
    negative = wan_sampling.encode_prompt(ours_bundle, "", SEQ)
    ours = wan_sampling.sample_segment(
        ours_bundle, embeds, negative, settings, generator=torch.Generator().manual_seed(3)
    ).numpy()
    pipe = diffusers_pipeline(load_wan("tiny-wan", field_name="m", device="cpu"))
    pipe.load_lora_weights(str(files["wan"].parent), weight_name=files["wan"].name, adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[0.7])
    theirs = pipe(
        prompt=PROMPT, negative_prompt="", height=64, width=64, num_frames=9, num_inference_steps=2,
        guidance_scale=4.0, generator=torch.Generator().manual_seed(3), output_type="np", max_sequence_length=SEQ,
    ).frames[0]  # fmt: skip
    assert np.abs(ours - theirs).max() <= 1e-4


def test_a_tag_holds_for_the_segments_whose_prompt_carries_it(tmp_path, files):
    """Two segments of an image-to-video model (a Wan text-to-video LoRA gets zero image layers): the tag on the
    second segment's prompt changes only its frames."""
    start = tmp_path / "start.png"
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.uint8)).save(start)

    def spec(name, later):
        data = make_spec(tmp_path, name, model="tiny-wan-i2v", models_dir=files["root"]).model_dump(
            mode="json"
        )
        data["videomodel"] |= {"segment_frames": 5, "max_sequence_length": 512}
        data["init"]["image"] = str(start)
        data["prompts"] = {"0": PROMPT, "5": later}
        return spec_from_data(data)

    plain = frames(render(spec("two-plain", PROMPT)))
    tagged = frames(render(spec("two-tagged", f"{PROMPT} <lora:wan-style:1>")))
    assert np.array_equal(tagged[:5], plain[:5])
    assert np.abs(tagged[5:] - plain[5:]).mean() > 2


def test_a_text_to_video_lora_loads_into_an_image_to_video_model(files):
    bundle = load_wan("tiny-wan-i2v", field_name="m", device="cpu")
    bundle.loras.activate([(files["wan"], 1.0)])
    assert bundle.loras.active


@pytest.mark.parametrize("other", ["sd", "ltx"])
def test_a_lora_of_another_family_is_one_error_before_the_model_loads(tmp_path, files, other, monkeypatch):
    from flipbook.models.families import wan

    def no_load(*args, **kwargs):  # pragma: no cover - reached only if the check came too late
        raise AssertionError("the model was loaded before the LoRA was checked")

    monkeypatch.setattr(wan.loading, "load_wan", no_load)
    with pytest.raises(FlipbookError) as error:
        render(make_spec(tmp_path, f"wrong-{other}", loras=[(files[other], 1.0)]))
    assert error.value.field == "lora" and error.value.value == f"{other}-style"
    assert "Wan" in error.value.allowed


# ---- Wan 2.2 A14B's two experts -------------------------------------------------------------------------


def _two_experts():
    """tiny-wan with a second (low-noise) transformer of other weights, switched in below 0.9 * 1000: with 3
    steps at shift 3 (timesteps 1000, 857, 600) the last two steps run on it."""
    from flipbook.models.families.wan.loading import TINY_TRANSFORMER_CONFIG
    from flipbook.models.weights import seeded

    bundle = load_wan("tiny-wan", field_name="m", device="cpu")
    second = seeded(11, lambda: WanTransformer3DModel(**TINY_TRANSFORMER_CONFIG)).eval().requires_grad_(False)
    return dataclasses.replace(bundle, transformer_2=second, boundary_ratio=0.9)


def _sample(bundle):
    settings = SegmentSettings(num_frames=5, height=32, width=32, num_inference_steps=3, guidance_scale=4.0,
                               max_sequence_length=SEQ)  # fmt: skip
    embeds = wan_sampling.encode_prompt(bundle, PROMPT, SEQ)
    negative = wan_sampling.encode_prompt(bundle, "", SEQ)
    generator = torch.Generator().manual_seed(3)
    return wan_sampling.sample_segment(bundle, embeds, negative, settings, generator=generator).numpy()


@pytest.mark.parametrize(("expert", "parts"), [("low_noise", ["transformer_2"]),
                                               ("both", ["transformer", "transformer_2"])])  # fmt: skip
def test_a_lora_for_the_low_noise_expert_equals_diffusers_loading_it_into_transformer_2(files, expert, parts):
    """``videomodel.lora_experts`` sends a LoRA to Wan 2.2's second expert: the frames are WanPipeline's with
    the file loaded by diffusers with ``load_into_transformer_2=True`` (and into the first too for both)."""
    plain = _sample(_two_experts())
    ours_bundle = _two_experts()
    ours_bundle.loras.load([files["wan"]], experts={"wan-style": expert})
    ours_bundle.loras.activate([(files["wan"], 0.7)])
    assert sorted(ours_bundle.loras.pipe.get_list_adapters()) == parts
    ours = _sample(ours_bundle)
    pipe = diffusers_pipeline(_two_experts())
    for part in parts:
        into = {"load_into_transformer_2": True} if part == "transformer_2" else {}
        pipe.load_lora_weights(
            str(files["wan"].parent), weight_name=files["wan"].name, adapter_name="s", **into
        )
    pipe.set_adapters(["s"], adapter_weights=[0.7])
    theirs = pipe(
        prompt=PROMPT, negative_prompt="", height=32, width=32, num_frames=5, num_inference_steps=3,
        guidance_scale=4.0, generator=torch.Generator().manual_seed(3), output_type="np", max_sequence_length=SEQ,
    ).frames[0]  # fmt: skip
    assert np.abs(ours - theirs).max() <= 1e-4
    assert np.abs(ours - plain).max() > 1e-2


def test_an_expert_for_a_lora_the_spec_does_not_use_is_one_error(tmp_path, files):
    data = make_spec(tmp_path, "x", loras=[(files["wan"], 1.0)]).model_dump(mode="json")
    data["videomodel"]["lora_experts"] = [{"name": "wan-stlye", "expert": "low_noise"}]
    with pytest.raises(FlipbookError) as error:
        render(spec_from_data(data))
    assert error.value.field == "videomodel.lora_experts" and error.value.value == "wan-stlye"
    assert "wan-style" in error.value.allowed


def test_the_low_noise_expert_on_a_model_without_one_is_one_error_before_it_loads(
    tmp_path, files, monkeypatch
):
    from flipbook.models.families import wan

    def no_load(*args, **kwargs):  # pragma: no cover - reached only if the check came too late
        raise AssertionError("the model was loaded before the LoRA's expert was checked")

    monkeypatch.setattr(wan.loading, "load_wan", no_load)
    data = make_spec(tmp_path, "x", loras=[(files["wan"], 1.0)]).model_dump(mode="json")
    data["videomodel"]["lora_experts"] = [{"name": "wan-style", "expert": "both"}]
    with pytest.raises(FlipbookError) as error:
        render(spec_from_data(data))
    assert error.value.field == "videomodel.lora_experts" and error.value.value == "wan-style = both"


# ---- LTX-Video ------------------------------------------------------------------------------------------


def test_an_ltx_lora_changes_the_frames_weight_zero_gives_them_back_and_a_wan_lora_is_refused(
    tmp_path, files
):
    plain = frames(render(make_spec(tmp_path, "ltx-plain", model="tiny-ltx")))
    styled = frames(render(make_spec(tmp_path, "ltx-lora", model="tiny-ltx", loras=[(files["ltx"], 1.0)])))
    off = frames(render(make_spec(tmp_path, "ltx-off", model="tiny-ltx", loras=[(files["ltx"], 0.0)])))
    assert np.abs(styled - plain).mean() > 2
    assert np.array_equal(off, plain)
    with pytest.raises(FlipbookError) as error:
        render(make_spec(tmp_path, "ltx-wrong", model="tiny-ltx", loras=[(files["wan"], 1.0)]))
    assert error.value.field == "lora" and "LTX-Video" in error.value.allowed


def test_an_ltx_lora_equals_ltx_pipeline_with_the_file_loaded_by_diffusers(files):
    settings = SegmentSettings(num_frames=9, height=64, width=64, num_inference_steps=2, guidance_scale=4.0,
                               max_sequence_length=SEQ, fps=8)  # fmt: skip
    bundle = load_ltx("tiny-ltx", field_name="m", device="cpu")
    bundle.loras.activate([(files["ltx"], 0.6)])
    ours = ltx_sampling.sample_segment(
        bundle, ltx_sampling.encode_prompt(bundle, PROMPT, SEQ), ltx_sampling.encode_prompt(bundle, "", SEQ),
        settings, generator=torch.Generator().manual_seed(3),
    ).numpy()  # fmt: skip
    from flipbook.models.families.ltx.loading import diffusers_pipeline as ltx_pipeline

    pipe = ltx_pipeline(load_ltx("tiny-ltx", field_name="m", device="cpu"), conditioned=False)
    pipe.load_lora_weights(str(files["ltx"].parent), weight_name=files["ltx"].name, adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[0.6])
    theirs = pipe(
        prompt=PROMPT, negative_prompt="", height=64, width=64, num_frames=9, frame_rate=8, num_inference_steps=2,
        guidance_scale=4.0, generator=torch.Generator().manual_seed(3), output_type="np", max_sequence_length=SEQ,
    ).frames[0]  # fmt: skip
    assert np.abs(ours - theirs).max() <= 1e-4

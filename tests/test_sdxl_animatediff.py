"""AnimateDiff on SDXL: the loop against diffusers' AnimateDiffSDXLPipeline on ``tiny-xl`` with the tiny SDXL
motion module, per-frame pooled embeddings for prompt travel, SDXL motion-module files (AnimateDiff's
``mm_sdxl_v10_beta`` layout, Hotshot-XL's ``temporal_attentions`` layout) and modules of the wrong family."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from flipbook.errors import FlipbookError
from flipbook.models.families.animatediff.builtin import (
    builtin_motion_adapter,
    tiny_motion_adapter,
    tiny_xl_motion_adapter,
)
from flipbook.models.families.animatediff.detect import detect_motion_module
from flipbook.models.families.animatediff.files import save_original_motion_module
from flipbook.models.families.animatediff.keys import motion_adapter_to_original_state_dict
from flipbook.models.families.animatediff.loading import load_motion_adapter
from flipbook.samplers.schedulers import make_scheduler
from flipbook.sampling.animatediff import (
    AnimateDiffSampler,
    ClipRequest,
    FramePrompt,
    frame_added_embeddings,
    motion_pipeline,
)
from flipbook.sampling.core import SamplingCore

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-4


@pytest.fixture(scope="module")
def parts():
    from flipbook.models.loading import load_model

    bundle = load_model("tiny-xl", device="cpu")
    return bundle, motion_pipeline(bundle, tiny_xl_motion_adapter())


def sampler_for(parts) -> AnimateDiffSampler:
    bundle, pipe = parts
    encoder = SamplingCore(bundle).encoder(1)
    return AnimateDiffSampler(pipe.unet, pipe.vae, encoder, bundle.scheduler_config)


def noise(frames: int) -> torch.Tensor:
    draws = [torch.randn(1, 4, 1, 8, 8, generator=torch.Generator().manual_seed(s)) for s in range(frames)]
    return torch.cat(draws, 2)


def test_the_motion_unet_has_the_checkpoint_s_added_conditioning_embedding(parts):
    """diffusers' from_unet2d leaves SDXL's add_embedding at a random initialisation; the motion UNet must carry
    the checkpoint's (else every build of it samples differently)."""
    bundle, pipe = parts
    theirs = bundle.unet.add_embedding.state_dict()
    assert all(
        torch.equal(tensor, theirs[key]) for key, tensor in pipe.unet.add_embedding.state_dict().items()
    )


@pytest.mark.parametrize("sampler", ["DDIM", "Euler"])
def test_one_window_equals_diffusers_animatediff_sdxl_pipeline(parts, sampler):
    """6 frames in one context window, cfg 7.5 with a negative prompt: AnimateDiffSDXLPipeline's frames."""
    bundle, pipe = parts
    request = ClipRequest(
        prompts=tuple(FramePrompt("a lighthouse", "blurry", guidance_scale=7.5) for _ in range(6)),
        seeds=tuple(range(6)), steps=3, sampler=sampler, width=64, height=64,
    )  # fmt: skip
    ours = np.stack(sampler_for(parts).sample(request, output_type="np"))
    pipe.scheduler = make_scheduler(sampler, bundle.scheduler_config)
    reference = pipe(
        "a lighthouse", negative_prompt="blurry", num_frames=6, num_inference_steps=3, guidance_scale=7.5,
        width=64, height=64, latents=noise(6), output_type="np",
    ).frames[0]  # fmt: skip
    assert ours.shape == np.asarray(reference).shape == (6, 64, 64, 3)
    assert np.abs(ours - np.asarray(reference)).max() <= TOL


def test_per_frame_added_embeddings_equal_the_unet_s_own_when_the_frames_agree(parts):
    """The per-frame path (prompt travel) computes the added embedding as the UNet does: with every frame's
    pooled embedding and time ids equal it gives the UNet's output for the per-video ones."""
    _, pipe = parts
    unet = pipe.unet
    sample = torch.randn(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    states = torch.randn(6, 77, 64, generator=torch.Generator().manual_seed(1))
    pooled = torch.randn(2, 32, generator=torch.Generator().manual_seed(2))
    ids = torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)
    per_video = {"text_embeds": pooled, "time_ids": ids}
    per_frame = {k: v.repeat_interleave(3, dim=0) for k, v in per_video.items()}
    with torch.no_grad():
        plain = unet(sample, 10, encoder_hidden_states=states, added_cond_kwargs=per_video).sample
        with frame_added_embeddings(unet, per_frame):
            framed = unet(sample, 10, encoder_hidden_states=states, added_cond_kwargs=per_video).sample
        changed = {**per_frame, "text_embeds": per_frame["text_embeds"].clone()}
        changed["text_embeds"][4] += 1.0  # the second video's middle frame
        with frame_added_embeddings(unet, changed):
            moved = unet(sample, 10, encoder_hidden_states=states, added_cond_kwargs=per_video).sample
    assert torch.allclose(plain, framed, atol=1e-6)
    differs = (moved - plain).abs().amax(dim=(1, 3, 4))  # per video and frame
    assert differs[1, 1] > 1e-4  # the frame whose pooled embedding changed (and the frames it attends to)
    assert torch.allclose(moved[0], plain[0], atol=1e-6)  # the other video is untouched
    assert all(
        not hook for hook in (unet.add_embedding._forward_hooks, unet.down_blocks[0]._forward_pre_hooks)
    )


def test_prompt_travel_conditions_each_frame_on_its_own_pooled_embedding(parts):
    """Frames travelling from one prompt to another differ from the same clip with the first prompt held: the
    blended pooled embeddings reach the UNet (the hold runs the plain per-video path)."""
    travel = tuple(
        FramePrompt("a lighthouse", "", blend_prompt="a red car", blend_weight=w, guidance_scale=1.0)
        for w in (0.0, 0.5, 1.0)
    )
    held = tuple(FramePrompt("a lighthouse", "", guidance_scale=1.0) for _ in range(3))
    settings = dict(seeds=(1, 2, 3), steps=2, sampler="Euler", width=64, height=64)
    sampler = sampler_for(parts)
    moving = np.stack(sampler.sample(ClipRequest(prompts=travel, **settings), output_type="np"))
    still = np.stack(sampler.sample(ClipRequest(prompts=held, **settings), output_type="np"))
    assert np.abs(moving - still).max() > 1e-3


def test_controlnet_units_and_a_start_image_condition_an_sdxl_clip(parts):
    """An SDXL ControlNet steers every frame (its per-row added inputs are the frames' pooled embeddings and
    time ids) and a start image is held in the initial latents, as on SD 1.5."""
    import PIL.Image

    from flipbook.models.controlnet import tiny_controlnet
    from flipbook.sampling.animatediff import ControlFrames, ImageHold

    bundle, _ = parts
    sampler = sampler_for(parts)
    base = dict(
        prompts=tuple(FramePrompt("a lighthouse", "blurry", guidance_scale=5.0) for _ in range(3)),
        seeds=(4, 5, 6), steps=2, sampler="Euler", width=64, height=64,
    )  # fmt: skip
    plain = np.stack(sampler.sample(ClipRequest(**base), output_type="np"))
    circle = np.zeros((64, 64, 3), dtype=np.uint8)
    circle[16:48, 16:48] = 255
    unit = ControlFrames(
        controlnet=tiny_controlnet(bundle.unet.config), images=sampler.control_images([circle] * 3, 64, 64),
        scales=(1.0, 1.0, 1.0),
    )  # fmt: skip
    controlled = np.stack(sampler.sample(ClipRequest(**base, controls=(unit,)), output_type="np"))
    start = PIL.Image.fromarray(np.full((64, 64, 3), (200, 40, 40), dtype=np.uint8))
    held = ClipRequest(**base, hold=ImageHold(start=start), strength=0.5)
    from_image = np.stack(sampler.sample(held, output_type="np"))
    assert np.abs(controlled - plain).max() > 1e-3 and np.abs(from_image - plain).max() > 1e-3
    assert from_image[0, ..., 0].mean() > from_image[0, ..., 2].mean()  # the red start image shows


# ---- motion-module files and families --------------------------------------------------------------------


def test_tiny_is_the_built_in_of_the_checkpoint_s_family():
    from flipbook.models.families import builtin_family

    sdxl, sd1 = builtin_family("tiny-xl", "image").name, builtin_family("tiny", "image").name
    assert tuple(builtin_motion_adapter("tiny", image_family=sdxl).config.block_out_channels) == (32, 64)
    assert tuple(builtin_motion_adapter("tiny", image_family=sd1).config.block_out_channels) == (
        32,
        32,
        64,
        64,
    )
    with pytest.raises(FlipbookError) as info:
        builtin_motion_adapter("random-sd15", image_family=sdxl)
    assert info.value.field == "animatediff.motion_module" and "random-sdxl" in str(info.value)


def test_an_sdxl_motion_module_file_round_trips(tmp_path):
    adapter = tiny_xl_motion_adapter(seed=3)
    path = save_original_motion_module(adapter, tmp_path / "mm_tiny_xl.safetensors")
    loaded = load_motion_adapter(str(path))
    assert not loaded.config.use_motion_mid_block
    expected = adapter.state_dict()
    assert all(torch.equal(tensor, expected[key]) for key, tensor in loaded.state_dict().items())


def _sdxl_beta_like() -> tuple[object, dict[str, torch.Tensor]]:
    """A motion module in mm_sdxl_v10_beta's key layout (three levels, no mid block, a 32-frame encoding, 8
    heads and 32 groups), narrower than SDXL's 320/640/1280 channels to stay fast."""
    from diffusers import MotionAdapter

    adapter = MotionAdapter(
        block_out_channels=(32, 64, 128), motion_layers_per_block=2, motion_max_seq_length=32,
        motion_num_attention_heads=8, motion_norm_num_groups=32, use_motion_mid_block=False,
    )  # fmt: skip
    return adapter, motion_adapter_to_original_state_dict(adapter)


def test_a_three_level_file_is_an_sdxl_module_read_with_the_shipped_heads_and_groups(tmp_path):
    adapter, state = _sdxl_beta_like()
    info = detect_motion_module(state)
    assert (info.version, info.layout, info.levels, info.has_mid_block) == ("sdxl-beta", "original", 3, False)
    path = tmp_path / "mm_sdxl_v10_beta.safetensors"
    save_file(state, str(path))  # no embedded config: heads and groups come from configs/sdxl-beta
    loaded = load_motion_adapter(str(path))
    assert loaded.config.motion_num_attention_heads == 8 and loaded.config.motion_norm_num_groups == 32
    expected = adapter.state_dict()
    assert all(torch.equal(tensor, expected[key]) for key, tensor in loaded.state_dict().items())


def _hotshot_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original-layout keys renamed as Hotshot-XL's ``hsxl_temporal_layers`` names them (its UNet blocks'
    ``temporal_attentions.N``, each attention's ``pos_encoder.positional_encoding``)."""
    out = {}
    for key, tensor in state.items():
        key = key.replace(".temporal_transformer.", ".").replace(".motion_modules.", ".temporal_attentions.")
        out[key.replace(".pos_encoder.pe", ".pos_encoder.positional_encoding")] = tensor
    return out


def test_a_hotshot_xl_file_reads_into_the_same_motion_adapter(tmp_path):
    from diffusers import MotionAdapter

    adapter = MotionAdapter(
        block_out_channels=(32, 64, 128), motion_layers_per_block=2, motion_max_seq_length=24,
        motion_num_attention_heads=8, motion_norm_num_groups=32, use_motion_mid_block=False,
    )  # fmt: skip
    state = _hotshot_layout(motion_adapter_to_original_state_dict(adapter))
    assert any(".temporal_attentions.0.transformer_blocks.0.attention_blocks.1." in key for key in state)
    info = detect_motion_module(state)
    assert (info.version, info.layout, info.max_seq_length) == ("hotshot-xl", "hotshot", 24)
    path = tmp_path / "hsxl_temporal_layers.safetensors"
    save_file(state, str(path))
    loaded = load_motion_adapter(str(path))
    expected = adapter.state_dict()
    assert all(torch.equal(tensor, expected[key]) for key, tensor in loaded.state_dict().items())
    # a file without the stored encodings gets Hotshot-XL's 24 frames, computed
    bare = {k: v for k, v in state.items() if not k.endswith("positional_encoding")}
    save_file(bare, str(tmp_path / "bare.safetensors"))
    again = load_motion_adapter(str(tmp_path / "bare.safetensors"))
    assert again.config.motion_max_seq_length == 24
    assert all(torch.allclose(tensor, expected[key]) for key, tensor in again.state_dict().items())


def test_a_motion_module_of_the_other_family_is_one_clear_error():
    from flipbook.models.loading import load_model

    with pytest.raises(FlipbookError) as info:
        motion_pipeline(load_model("tiny-xl", device="cpu"), tiny_motion_adapter())
    assert info.value.field == "animatediff.motion_module" and "Stable Diffusion XL" in str(info.value)


# ---- the mode ----------------------------------------------------------------------------------------------


def test_the_mode_renders_tiny_xl_in_context_windows_closed_into_a_loop_with_prompt_travel(tmp_path):
    """10 frames in windows of 4 closed into a loop (R+P: prompts travel back to the first keyframe) on
    tiny-xl with the built-in tiny motion module (SDXL's, as the checkpoint is SDXL), twice: same frames."""
    from flipbook.runs.render import render
    from flipbook.spec.load import spec_from_data

    def run(name):
        spec = spec_from_data({
            "model": {"name": "tiny-xl", "device": "cpu"}, "sampling": {"steps": 2, "seed": 5, "cfg": 3},
            "animation": {"mode": "animatediff", "max_frames": 10, "width": 64, "height": 64},
            "prompts": {"0": "a lighthouse", "5": "a red car"}, "negative_prompt": "blurry",
            "animatediff": {"motion_module": "tiny", "context_length": 4, "context_overlap": 1,
                            "closed_loop": "R+P"},
            "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
        })  # fmt: skip
        return [np.asarray(__import__("PIL.Image").Image.open(p)) for p in render(spec).frames]

    first, second = run("a"), run("b")
    assert len(first) == 10 and all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert len({frame.tobytes() for frame in first}) == 10

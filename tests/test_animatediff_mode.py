"""animatediff mode: the sampling loop against diffusers' AnimateDiffPipeline, context windows and closed loops,
prompt travel, image/video to video, FreeInit/FreeNoise, LoRAs, full renders and spec errors (tiny models)."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from flipbook.clips.windows import ContextOptions, context_windows
from flipbook.errors import FlipbookError, SpecError
from flipbook.models.families.animatediff.builtin import tiny_motion_adapter
from flipbook.modes.animatediff import render as mode
from flipbook.runs.render import render
from flipbook.samplers.schedulers import make_scheduler
from flipbook.sampling import animatediff as sampling
from flipbook.sampling.animatediff import (
    AnimateDiffSampler,
    ClipRequest,
    FramePrompt,
    ImageHold,
    free_noise,
    hold_weights,
    motion_pipeline,
)
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def parts():
    """The tiny model (its own copy: LoRA tests must not touch the session's) and its motion pipeline."""
    from flipbook.models.loading import load_model

    bundle = load_model("tiny", device="cpu")
    return bundle, motion_pipeline(bundle, tiny_motion_adapter())


def make_sampler(parts, unet=None) -> AnimateDiffSampler:
    from flipbook.sampling.encode import PromptEncoder

    bundle, pipe = parts
    encoder = PromptEncoder(pipe.tokenizer, pipe.text_encoder)
    return AnimateDiffSampler(unet or pipe.unet, pipe.vae, encoder, bundle.scheduler_config)


def clip(n: int, *, prompt: str = "a lighthouse", cfg: float = 1.0, **settings) -> ClipRequest:
    defaults = dict(steps=2, sampler="DDIM", width=64, height=64, seeds=tuple(range(n)))
    prompts = tuple(FramePrompt(prompt, "blurry", guidance_scale=cfg) for _ in range(n))
    return ClipRequest(prompts=prompts, **{**defaults, **settings})


def frames_of(sampler, request) -> np.ndarray:
    return np.stack(sampler.sample(request, output_type="np"))


# ---- the loop ----------------------------------------------------------------------------------------------


def test_one_window_equals_diffusers_animatediff_pipeline(parts):
    """8 frames in one context window: the loop is AnimateDiffPipeline's (same parts, scheduler, noise, cfg)."""
    bundle, pipe = parts
    sampler = make_sampler(parts)
    request = clip(8, cfg=7.5)
    ours = frames_of(sampler, request)
    noise = torch.cat(
        [torch.randn(1, 4, 1, 8, 8, generator=torch.Generator().manual_seed(s)) for s in range(8)], 2
    )
    pipe.scheduler = make_scheduler("DDIM", bundle.scheduler_config)
    reference = pipe(
        "a lighthouse", negative_prompt="blurry", num_frames=8, num_inference_steps=2, guidance_scale=7.5,
        width=64, height=64, latents=noise, output_type="np",
    ).frames[0]  # fmt: skip
    assert ours.shape == reference.shape == (8, 64, 64, 3)
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    assert sampler.stats["unet_calls"] == 2


class _StandIn(torch.nn.Module):
    """A stand-in for the motion UNet with the attributes the sampler reads (config, device, dtype)."""

    def __init__(self, unet) -> None:
        super().__init__()
        self.config = unet.config
        self.device = torch.device("cpu")
        self.dtype = torch.float32


class _RecordingUNet(_StandIn):
    """Predicts zero noise and records which latents each call sees."""

    def __init__(self, unet) -> None:
        super().__init__(unet)
        self.calls: list[np.ndarray] = []

    def forward(self, sample, t, encoder_hidden_states, return_dict=False, **kwargs):
        assert encoder_hidden_states.shape[0] == sample.shape[0] * sample.shape[2]
        self.calls.append(sample[0, 0, :, 0, 0].numpy().copy())
        return (torch.zeros_like(sample),)


@pytest.mark.parametrize(
    "options",
    [ContextOptions(length=4, overlap=1), ContextOptions(length=4, overlap=2, schedule="static", fuse="flat"),
     ContextOptions(length=3, overlap=1, stride=2, closed_loop="N"), ContextOptions(length=4, overlap=3, closed_loop="A")],
    ids=["uniform", "static-flat", "stride-N", "A"],
)  # fmt: skip
def test_every_window_runs_through_the_unet_at_every_step(parts, options):
    """Frame f starts at the constant f + 1; with zero noise predicted DDIM only rescales all frames alike, so
    each call's values divided by (window + 1) must be one constant: the call saw exactly its window's frames."""
    n, steps = 13, 3
    unet = _RecordingUNet(parts[1].unet)
    sampler = make_sampler(parts, unet)
    latents = torch.arange(1.0, n + 1).view(1, 1, n, 1, 1).expand(1, 4, n, 8, 8).contiguous()
    sampler.sample(clip(n, steps=steps, context=options, latents=latents), output_type="latent")
    expected = [w for step in range(steps) for w in context_windows(n, step, options)]
    assert len(unet.calls) == len(expected)
    for seen, window in zip(unet.calls, expected, strict=True):
        ratio = seen / (np.array(window) + 1)
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)


def test_long_clip_in_context_windows_renders_every_frame(parts):
    sampler = make_sampler(parts)
    request = clip(16, context=ContextOptions(length=8, overlap=2, closed_loop="A"))
    frames = frames_of(sampler, request)
    assert frames.shape == (16, 64, 64, 3) and np.isfinite(frames).all()
    assert sampler.stats["unet_calls"] == sum(len(context_windows(16, s, request.context)) for s in range(2))
    assert np.abs(np.diff(frames, axis=0)).mean() > 0  # frames differ


class _WindowMeanUNet(_StandIn):
    """A stand-in motion model that ties the frames of a window together as a motion module does, strongly:
    its noise prediction is each frame's difference from the window's mean, so denoising pulls every frame
    toward the mean of the windows it is in."""

    def forward(self, sample, t, encoder_hidden_states, return_dict=False, **kwargs):
        return (sample - sample.mean(dim=2, keepdim=True),)


def test_closed_loop_a_joins_the_last_frame_to_the_first_and_n_does_not(parts):
    """Frames from independent noise, 12 frames in windows of 4: with loop A (and R-P) the last frame shares
    windows with the first, so the jump from the last frame back to the first is no larger than the jumps between
    inner neighbours; with N it is much larger (mean absolute differences of the decoded tiny-VAE frames)."""
    sampler = make_sampler(parts, _WindowMeanUNet(parts[1].unet))

    def jumps(loop: str) -> tuple[float, float]:
        request = clip(12, steps=8, context=ContextOptions(length=4, overlap=3, closed_loop=loop))
        frames = frames_of(sampler, request)
        inner = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
        return float(np.abs(frames[-1] - frames[0]).mean()), float(inner.max())

    (seam_a, inner_a), (seam_r, inner_r), (seam_n, inner_n) = jumps("A"), jumps("R-P"), jumps("N")
    assert seam_a <= inner_a and seam_r <= inner_r
    assert seam_n > 1.4 * inner_n
    assert seam_n > 2 * seam_a


# ---- prompts -----------------------------------------------------------------------------------------------


def test_prompt_travel_gives_frames_their_own_embeddings_and_r_plus_p_travels_back(parts):
    data = {
        "prompts": "a lighthouse\n0: stormy sea\n4: calm sea\nat night",
        "sampling": {"seed": 1},
        "animation": {"mode": "animatediff", "max_frames": 8},
        "animatediff": {"context_length": 4, "context_overlap": 1, "closed_loop": "R+P"},
    }
    plan = build_plan(spec_from_data(data))
    assert [f.blend for f in plan.frames] == [0, 0.25, 0.5, 0.75, 0, 0.25, 0.5, 0.75]
    assert plan[6].next_prompt == "a lighthouse, stormy sea, at night"  # back to keyframe 0 at frame 8
    held = build_plan(spec_from_data({**data, "animatediff": {**data["animatediff"], "closed_loop": "R-P"}}))
    assert [f.blend for f in held.frames][4:] == [0, 0, 0, 0]
    # one window of all frames: no loop, as in the A1111 extension
    short = build_plan(spec_from_data({**data, "animatediff": {"context_length": 8, "closed_loop": "A"}}))
    assert short[6].blend == 0

    sampler = make_sampler(parts)
    prompts = tuple(
        FramePrompt(f.prompt, f.negative_prompt, f.next_prompt, f.next_negative_prompt, f.blend, f.cfg)
        for f in plan.frames
    )
    conditioning = sampler.encode(ClipRequest(prompts=prompts, seeds=(1,) * 8))
    cond = conditioning.cond
    assert cond.shape[0] == 8 and conditioning.uncond.shape == cond.shape
    changes = [(cond[i + 1] - cond[i]).abs().max().item() for i in range(7)]
    assert all(change > 0 for change in changes)
    torch.testing.assert_close(cond[0], sampler.encoder.encode("a lighthouse, stormy sea, at night")[0])
    # frame 7 is 3/4 of the way back to keyframe 0's prompt: nearer to it than frame 4 is
    first = cond[0]
    assert (cond[7] - first).norm() < (cond[4] - first).norm()


def test_per_frame_guidance_and_prompt_weights_scale_the_guidance(parts):
    sampler = make_sampler(parts)
    prompts = (FramePrompt("a cat :0.5", guidance_scale=8.0), FramePrompt("a cat", guidance_scale=1.0))
    conditioning = sampler.encode(ClipRequest(prompts=prompts, seeds=(0, 0)))
    assert conditioning.scales.tolist() == [4.0, 1.0]
    assert conditioning.guided.tolist() == [True, False]
    with pytest.raises(FlipbookError, match="composable"):
        sampler.encode(ClipRequest(prompts=(FramePrompt("a cat AND a dog"),), seeds=(0,)))


# ---- image and video to video ------------------------------------------------------------------------------


def test_hold_weights_follow_latent_power_and_scale():
    start, end = hold_weights(5, ImageHold(start=object(), power=1.0, scale=4.0))
    np.testing.assert_allclose(start, [1, 0.75, 0.5, 0.25, 0])
    np.testing.assert_allclose(end, 0)
    start, end = hold_weights(
        5, ImageHold(start=object(), end=object(), power=1, scale=4, power_last=2, scale_last=16)
    )
    # end: 1 - k^2 / 16 counted from the last frame; where the two sum over 1 both are scaled to sum 1
    totals = np.array([1, 1.1875, 1.25, 1.1875, 1])
    np.testing.assert_allclose(end, np.array([0, 0.4375, 0.75, 0.9375, 1]) / totals)
    np.testing.assert_allclose(start, np.array([1, 0.75, 0.5, 0.25, 0]) / totals)


def vae_latents(parts, images) -> torch.Tensor:
    """The tiny VAE's latents of images (random weights: its decoded pictures don't look like the source, so
    closeness to a start image is measured in latents)."""
    from diffusers.image_processor import VaeImageProcessor

    vae = parts[1].vae
    pixels = VaeImageProcessor(vae_scale_factor=8).preprocess(list(images), height=64, width=64)
    with torch.no_grad():
        return vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor


def test_image_to_video_starts_from_the_start_image(parts, init_image):
    """Frame 0 keeps the whole start-image latent; with a large latent_scale every frame keeps most of it, with
    latent_scale 1 the later frames start from noise."""
    sampler = make_sampler(parts)
    target = vae_latents(parts, [init_image])

    def distances(scale: float) -> np.ndarray:
        request = clip(4, steps=4, strength=0.25, hold=ImageHold(start=init_image, scale=scale))
        latents = torch.stack(sampler.sample(request, output_type="latent"))
        return (latents - target).abs().mean(dim=(1, 2, 3)).numpy()

    held, free = distances(1000.0), distances(1.0)
    assert held.max() < 0.5 * free[1:].min()
    assert free[0] < 0.5 * free[1:].min()
    assert sampler.stats["unet_calls"] == 2  # steps x strength = 1 step, twice


def test_video_to_video_starts_each_frame_from_its_source_frame(parts, init_image):
    sampler = make_sampler(parts)
    pictures = [PIL.Image.fromarray(np.roll(np.asarray(init_image), 9 * i, axis=1)) for i in range(4)]
    target = vae_latents(parts, pictures)
    restyled = torch.stack(
        sampler.sample(clip(4, steps=4, strength=0.25, video=tuple(pictures)), output_type="latent")
    )
    txt2img = torch.stack(sampler.sample(clip(4, steps=1), output_type="latent"))
    near = (restyled - target).abs().mean(dim=(1, 2, 3))
    assert near.max() < 0.5 * (txt2img - target).abs().mean()
    # and each frame nearest its own source frame
    assert [int((target - frame).abs().mean(dim=(1, 2, 3)).argmin()) for frame in restyled] == [0, 1, 2, 3]


def test_free_noise_reuses_the_first_window_noise_shuffled():
    noise = torch.randn(1, 4, 11, 2, 2, generator=torch.Generator().manual_seed(0))
    options = ContextOptions(length=4, overlap=1)
    shuffled = free_noise(noise, options, torch.Generator().manual_seed(5))
    torch.testing.assert_close(shuffled[:, :, :4], noise[:, :, :4])
    first = {tuple(noise[0, 0, f].flatten().tolist()) for f in range(4)}
    assert all(tuple(shuffled[0, 0, f].flatten().tolist()) in first for f in range(11))
    assert not torch.equal(shuffled, noise)
    torch.testing.assert_close(shuffled, free_noise(noise, options, torch.Generator().manual_seed(5)))


def test_free_init_and_free_noise_run_and_are_deterministic(parts):
    sampler = make_sampler(parts)
    request = clip(6, context=ContextOptions(length=4, overlap=2), free_noise=True, free_init_iterations=2,
                   free_init_method="gaussian")  # fmt: skip
    first, again = frames_of(sampler, request), frames_of(sampler, request)
    np.testing.assert_array_equal(first, again)
    plain = frames_of(sampler, clip(6, context=ContextOptions(length=4, overlap=2)))
    assert np.abs(first - plain).mean() > 1e-3
    for method in sampling.FREE_INIT_METHODS:
        mask = sampling.low_pass_filter((6, 8, 8), method)
        assert mask.shape == (6, 8, 8) and mask[3, 4, 4] == 1 and mask.min() >= 0 and mask.max() <= 1


# ---- the mode ----------------------------------------------------------------------------------------------


def spec_data(tmp_path, **sections) -> dict:
    data = {
        "prompts": {"0": "a lighthouse, stormy sea", "2": "a lighthouse at night"},
        "negative_prompt": "blurry",
        "sampling": {"seed": 5, "steps": 2, "sampler": "DDIM"},
        "animation": {"mode": "animatediff", "max_frames": 4, "width": 64, "height": 64},
        "output": {"dir": str(tmp_path), "formats": ["png"], "name": "clip"},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values} if isinstance(values, dict) else values
    return data


def rendered(data) -> np.ndarray:
    """The frames of a render of ``data``; renders into the same folder replace the one before."""
    result = render(spec_from_data(data), overwrite=True)
    return np.stack(
        [np.asarray(PIL.Image.open(path).convert("RGB"), dtype=np.float32) for path in result.frames]
    )


@pytest.fixture(scope="module")
def plain_render(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plain")
    return rendered(spec_data(folder)), folder


def test_render_writes_every_frame_with_motion_parameters_and_repeats_exactly(plain_render, tmp_path):
    frames, folder = plain_render
    assert frames.shape == (4, 64, 64, 3)
    again = rendered(spec_data(tmp_path))
    np.testing.assert_array_equal(frames, again)
    with PIL.Image.open(folder / "clip" / "frames" / "frame_00003.png") as image:
        parameters = image.info["parameters"]
    assert "Motion module: tiny" in parameters and "Context: " in parameters
    assert "Prompt blend" not in parameters  # frame 3 holds the last keyframe (no loop within one window)
    with PIL.Image.open(folder / "clip" / "frames" / "frame_00001.png") as image:
        assert "Prompt blend: " in image.info["parameters"]


def test_lora_tags_change_the_frames(plain_render, tmp_path):
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file

    from flipbook.models.families.sd.builtin import tiny_components

    components = tiny_components(0)
    unet = components["unet"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        unet.add_adapter(
            LoraConfig(r=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
        )
    kohya = convert_state_dict_to_kohya(get_peft_model_state_dict(unet))
    lora = tmp_path / "style.safetensors"
    save_file({f"lora_unet_{k}": v.contiguous() for k, v in kohya.items()}, lora)

    frames, _ = plain_render
    tagged = spec_data(tmp_path, prompts={"0": f"a lighthouse, stormy sea <lora:{lora}:0.8>",
                                          "2": f"a lighthouse at night <lora:{lora}:0.8>"})  # fmt: skip
    with_lora = rendered(tagged)
    assert np.abs(with_lora - frames).mean() > 0.5

    mixed = spec_data(
        tmp_path, prompts={"0": f"a lighthouse <lora:{lora}:0.8>", "2": "a lighthouse at night"}
    )
    with pytest.raises(SpecError) as error:
        render(spec_from_data(mixed), overwrite=True)
    assert error.value.field == "prompts"


def test_video_to_video_renders_through_the_mode(plain_render, tmp_path, init_image):
    source = tmp_path / "source"
    source.mkdir()
    for i in range(5):  # a frame more than the animation: the video only has to cover it
        PIL.Image.fromarray(np.roll(np.asarray(init_image), 3 * i, axis=1)).save(source / f"{i:03d}.png")
    frames = rendered(spec_data(tmp_path, init={"video": str(source)}, animation={"strength": 0.6}))
    plain, _ = plain_render
    assert frames.shape == plain.shape and np.abs(frames - plain).mean() > 1.0
    with PIL.Image.open(tmp_path / "clip" / "frames" / "frame_00000.png") as image:
        assert "Denoising strength: 0.5" in image.info["parameters"]  # 2 steps: at least one step (A1111)


def test_controlnet_units_control_every_frame(plain_render, tmp_path, init_image):
    """A ControlNet unit (the built-in tiny one) adds its residuals to every frame row; weight 0 changes nothing."""
    init_image.save(tmp_path / "edges.png")
    unit = {"model": "tiny", "image": str(tmp_path / "edges.png"), "preprocessor": "canny"}
    controlled = rendered(spec_data(tmp_path, controlnet=[unit]))
    plain, _ = plain_render
    assert np.abs(controlled - plain).mean() > 0.5
    np.testing.assert_array_equal(rendered(spec_data(tmp_path, controlnet=[{**unit, "weight": 0.0}])), plain)


def test_motion_loras_adapter_lora_and_presets_are_passed_on(tmp_path, monkeypatch):
    """The mode hands motion LoRAs to the adapter, the v3 adapter LoRA to the motion UNet copy, and a preset's
    sampler and scheduler entries to the sampler (the merges are tested in test_motion_modules.py and, end to end, below)."""
    from flipbook.models.families.animatediff import loras as motion

    calls = []
    monkeypatch.setattr(
        motion, "merge_motion_loras", lambda adapter, pairs, **kw: calls.append(("motion", pairs, kw))
    )
    monkeypatch.setattr(
        motion, "merge_adapter_lora", lambda unet, ref, w, **kw: calls.append(("adapter", ref, w, kw))
    )
    settings = {
        "motion_loras": [{"name": "zoom-in", "weight": 0.7}],
        "adapter_lora": {"name": "v3_adapter", "weight": 0.5},
    }
    spec = spec_from_data(spec_data(tmp_path, animatediff=settings, model={"models_dir": str(tmp_path)}))
    mode.load_adapter(spec)
    mode._merge_adapter_lora(spec, object())
    assert calls == [("motion", [("zoom-in", 0.7)], {"models_dir": tmp_path}),
                     ("adapter", "v3_adapter", 0.5, {"models_dir": tmp_path})]  # fmt: skip
    lightning = spec_from_data(spec_data(tmp_path, animatediff={"preset": "lightning"}))
    sampler, config = mode.scheduler_settings(lightning, "DDIM", {"beta_schedule": "scaled_linear"})
    assert (
        sampler == "Euler"
        and config["timestep_spacing"] == "trailing"
        and config["beta_schedule"] == "linear"
    )
    assert mode.scheduler_settings(spec, "DDIM", {"a": 1}) == ("DDIM", {"a": 1})


def _lora_file(path, names: list[str], shapes: dict[str, torch.Size], layout: str) -> str:
    """A rank-2 LoRA on ``names`` (Linear weights), random, as a safetensors file in ``layout``."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(11)
    state = {}
    for name in names:
        out_features, in_features = shapes[f"{name}.weight"]
        down = torch.randn(2, in_features, generator=generator)
        up = torch.randn(out_features, 2, generator=generator)
        if layout == "peft":
            state[f"unet.{name}.lora_A.weight"], state[f"unet.{name}.lora_B.weight"] = down, up
        else:  # kohya
            stem = "lora_unet_" + name.replace(".", "_")
            state[f"{stem}.lora_down.weight"], state[f"{stem}.lora_up.weight"] = down, up
    save_file(state, str(path))
    return str(path)


def test_motion_lora_and_adapter_lora_files_change_the_render(tmp_path, plain_render):
    """Real files end to end: a motion LoRA (PEFT layout) merged into the motion module and a v3-style adapter
    LoRA (kohya layout) merged into the image layers each change the frames; at weight 0 they change nothing."""
    from flipbook.models.families.sd.pipeline import builtin_pipeline

    adapter_shapes = {k: v.shape for k, v in tiny_motion_adapter().state_dict().items()}
    motion_names = [k.removesuffix(".weight") for k in adapter_shapes if k.endswith("attn1.to_q.weight")]
    unet_shapes = {k: v.shape for k, v in builtin_pipeline("tiny").unet.state_dict().items()}
    image_names = [k.removesuffix(".weight") for k in unet_shapes if k.endswith("attn1.to_q.weight")]
    assert motion_names and image_names
    motion_lora = _lora_file(tmp_path / "v2_lora_ZoomIn.safetensors", motion_names, adapter_shapes, "peft")
    adapter_lora = _lora_file(tmp_path / "v3_sd15_adapter.safetensors", image_names, unet_shapes, "kohya")
    plain, _ = plain_render
    for settings in (
        {"motion_loras": [{"name": motion_lora, "weight": 1.0}]},
        {"adapter_lora": {"name": adapter_lora, "weight": 1.0}},
    ):
        changed = rendered(spec_data(tmp_path / "on", animatediff=settings))
        assert np.abs(changed - plain).mean() > 0.5
    off = {
        "motion_loras": [{"name": motion_lora, "weight": 0.0}],
        "adapter_lora": {"name": adapter_lora, "weight": 0.0},
    }
    np.testing.assert_array_equal(rendered(spec_data(tmp_path / "off", animatediff=off)), plain)


def test_a_preset_refuses_a_different_sampler_written_in_the_spec(tmp_path):
    """lightning needs Euler: a spec that writes DDIM gets an error naming sampling.sampler; one that leaves the
    sampler unset gets Euler, and one that writes "euler" (any case) is accepted."""
    data = spec_data(tmp_path, animatediff={"preset": "lightning"})
    with pytest.raises(SpecError) as error:
        build_plan(spec_from_data(data))  # refused with the plan, so validate refuses it too
    assert error.value.field == "sampling.sampler" and "Euler" in error.value.allowed
    for settings in ({"seed": 5, "steps": 2}, {"seed": 5, "steps": 2, "sampler": "euler"}):
        spec = spec_from_data({**data, "sampling": settings})
        clip = mode.check_plan(spec, build_plan(spec))
        assert mode.scheduler_settings(spec, clip.sampler, {})[0] == "Euler"


# ---- errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"sampling": {"steps": "0:(2), 2:(3)"}}, "sampling.steps"),
        ({"sampling": {"sampler": '0:("DDIM"), 2:("Euler")'}}, "sampling.sampler"),
        ({"model": {"name": '0:("tiny"), 2:("random-sd15")'}}, "model.name"),
        ({"prompts": {"0": "a cat AND a dog"}}, "prompts"),
    ],
)
def test_values_that_must_hold_for_the_whole_clip_are_spec_errors(tmp_path, changes, field):
    spec = spec_from_data(spec_data(tmp_path, **changes))
    with pytest.raises(SpecError) as error:
        build_plan(spec)  # refused with the plan, so validate refuses it too
    assert error.value.field == field


def test_bad_inputs_name_their_field(tmp_path, init_image):
    def field_of(**changes) -> str:
        with pytest.raises(FlipbookError) as error:
            spec = spec_from_data(spec_data(tmp_path, **changes))
            mode.check_plan(spec, build_plan(spec))  # as render: the plan first, then the input files
            mode.check_inputs(spec)
        return error.value.field

    assert field_of(animatediff={"end_image": str(tmp_path / "missing.png")}) == "animatediff.end_image"
    assert field_of(animatediff={"motion_module": "./no/such/module"}) == "animatediff.motion_module"
    init_image.save(tmp_path / "start.png")
    (tmp_path / "video").mkdir()
    for i in range(2):
        init_image.save(tmp_path / "video" / f"{i}.png")
    assert field_of(init={"video": str(tmp_path / "video")}) == "init.video"  # 2 frames for 4
    both = {"video": str(tmp_path / "video"), "image": str(tmp_path / "start.png")}
    assert field_of(init=both) == "init.image"
    schedule = {"video": str(tmp_path / "video")}
    for i in range(2, 4):
        init_image.save(tmp_path / "video" / f"{i}.png")
    assert field_of(init=schedule, animation={"strength": "0:(0.5), 2:(0.6)"}) == "animation.strength"
    with pytest.raises(SpecError) as error:
        spec_from_data(spec_data(tmp_path, animatediff={"context_length": 4, "context_overlap": 4}))
    assert "animatediff" in error.value.field

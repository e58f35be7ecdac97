"""The ``svd`` mode (Stable Video Diffusion, image to video) on the built-in tiny SVD at 64x64, 2-3 steps:
the sampler against diffusers' StableVideoDiffusionPipeline, guidance, decode chunks, text to image to video,
chained clips, resume, the motion brush, the spec defaults read from the model config, and the errors."""

import json

import numpy as np
import PIL.Image
import pytest
import torch

from flipbook.errors import FlipbookError, SpecError
from flipbook.events import Events, RenderCancelled
from flipbook.models.families.svd.loading import diffusers_pipeline, load_svd, svd_num_frames
from flipbook.modes.svd import render as svd_mode
from flipbook.runs.render import render, resume
from flipbook.sampling import svd as sampler
from flipbook.sampling.svd import SvdSettings, decode_frames, denoise_clip, sample_clip
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def shared_image_model(monkeypatch, tiny_model):
    monkeypatch.setattr("flipbook.runs.cores.load_model", lambda name, **kwargs: tiny_model)


@pytest.fixture(scope="module")
def bundle():
    return load_svd("tiny", device="cpu")


def make_spec(tmp_path, name="svd", **sections):
    data = {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"steps": 2, "seed": 5, "sampler": "Euler"},
        "animation": {"mode": "svd", "max_frames": 7, "width": 64, "height": 64},
        "svd": {"num_frames": 4, "num_inference_steps": 2},
        "prompts": {"0": "a lighthouse on a cliff"},
        "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    }
    for section, values in sections.items():
        if section in ("prompts", "controlnet"):
            data[section] = values
        else:
            data.setdefault(section, {}).update(values)
    return spec_from_data(data)


def frames(result):
    return [np.asarray(PIL.Image.open(p).convert("RGB")) for p in result.frames]


def picture(seed=0, size=64):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    array = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1) + rng.integers(0, 30, (size, size, 3))
    return PIL.Image.fromarray(array.clip(0, 255).astype(np.uint8))


# ---- the sampler against diffusers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},  # diffusers' defaults: guidance 1 -> 3, bucket 127, noise aug 0.02
        {"min_guidance_scale": 2.0, "max_guidance_scale": 4.0, "motion_bucket_id": 30, "noise_aug_strength": 0.1,
         "decode_chunk_size": 2, "fps": 12},
        {"min_guidance_scale": 1.0, "max_guidance_scale": 1.0},  # no classifier-free guidance at all
    ],
    ids=["defaults", "custom", "unguided"],
)  # fmt: skip
def test_sampler_matches_stable_video_diffusion_pipeline(bundle, options):
    image = picture()
    settings = SvdSettings(num_frames=5, num_inference_steps=3, **options)
    ours = sample_clip(bundle, image, settings, generator=torch.Generator("cpu").manual_seed(3))
    theirs = diffusers_pipeline(bundle)(
        image, height=64, width=64, num_frames=5, num_inference_steps=3,
        generator=torch.Generator("cpu").manual_seed(3), output_type="np", **options,
    ).frames[0]  # fmt: skip
    assert ours.shape == (5, 3, 64, 64)
    np.testing.assert_allclose(ours.permute(0, 2, 3, 1).numpy(), theirs, atol=2e-5)


def test_guidance_rises_linearly_from_first_to_last_frame(bundle):
    settings = SvdSettings(num_frames=5, min_guidance_scale=1.0, max_guidance_scale=3.0)
    np.testing.assert_allclose(sampler.guidance_scales(settings), [1.0, 1.5, 2.0, 2.5, 3.0])
    pixels = sampler._pixels(picture(), bundle.device)
    generator = torch.Generator("cpu").manual_seed(0)
    guided = sampler._conditioning(bundle, pixels, settings, generator)
    assert guided.guidance.flatten().tolist() == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert guided.embeddings.shape[0] == 2 and not guided.embeddings[0].any()  # zero unconditional row
    unguided = SvdSettings(num_frames=5, min_guidance_scale=0.5, max_guidance_scale=1.0)
    assert sampler._conditioning(bundle, pixels, unguided, generator).embeddings.shape[0] == 1


def test_guidance_changes_the_frames(bundle):
    image, steps = picture(), 2
    low = sample_clip(bundle, image, SvdSettings(4, steps, max_guidance_scale=1.0), generator=_gen())
    high = sample_clip(bundle, image, SvdSettings(4, steps, max_guidance_scale=8.0), generator=_gen())
    assert (low - high).abs().max() > 1e-3


def test_decode_chunks_decode_independently_and_the_whole_clip_at_once_by_default(bundle):
    """The temporal decoder mixes the frames of one call: chunks equal decoding each chunk alone, a chunk of
    the whole clip equals the default, and smaller chunks do change the frames (the flicker trade-off)."""
    latents = denoise_clip(bundle, picture(), SvdSettings(4, 2), generator=_gen())
    whole = decode_frames(bundle, latents)
    np.testing.assert_array_equal(decode_frames(bundle, latents, 4), whole)
    chunked = decode_frames(bundle, latents, 3)
    alone = torch.cat([decode_frames(bundle, latents[:, :3]), decode_frames(bundle, latents[:, 3:])])
    np.testing.assert_allclose(chunked, alone, atol=1e-6)
    assert (chunked - whole).abs().max() > 1e-4


def test_steps_report_progress_and_cancel_stops_the_clip(bundle):
    seen = []
    events = Events(on_step=seen.append)
    sample_clip(bundle, picture(), SvdSettings(4, 3), generator=_gen(), events=events, frames=(1, 2, 3))
    assert [(e.step, e.total_steps, e.frames) for e in seen] == [(i, 3, (1, 2, 3)) for i in (1, 2, 3)]
    cancelling = Events(on_step=lambda event: cancelling.cancel())
    with pytest.raises(RenderCancelled):
        sample_clip(bundle, picture(), SvdSettings(4, 3), generator=_gen(), events=cancelling)


def _gen(seed=1):
    return torch.Generator("cpu").manual_seed(seed)


# ---- text to image to video, chained clips, resume --------------------------------------------------------


@pytest.fixture(scope="module")
def chained(tmp_path_factory):
    """One render, two clips of 4 frames (3 new frames each) after a txt2img frame 0, with every call to
    the sampler recorded (start image, seed, frames)."""
    import flipbook.runs.cores
    from flipbook.models.loading import load_model

    calls = []
    real = sampler.sample_clip

    def spy(bundle, image, settings, *, generator, **kwargs):
        calls.append((np.asarray(image).copy(), generator.initial_seed(), kwargs["frames"]))
        return real(bundle, image, settings, generator=generator, **kwargs)

    tmp_path = tmp_path_factory.mktemp("svd-chain")
    with pytest.MonkeyPatch.context() as patch:
        tiny = load_model("tiny", device="cpu")
        patch.setattr(flipbook.runs.cores, "load_model", lambda name, **kwargs: tiny)
        patch.setattr(sampler, "sample_clip", spy)
        spec = make_spec(tmp_path)
        result = render(spec)
    return spec, result, calls


def test_text_to_image_to_video_in_one_spec(chained):
    spec, result, calls = chained
    assert len(result.frames) == 7
    with PIL.Image.open(result.frames[0]) as first, PIL.Image.open(result.frames[2]) as later:
        txt2img, video = first.text["parameters"], later.text["parameters"]
    assert "a lighthouse on a cliff" in txt2img and "Video model" not in txt2img
    for key in (
        "Video model: svd tiny",
        "Clip: 0",
        "Motion bucket: 127",
        "Noise aug: 0.02",
        "Video steps: 2",
    ):
        assert key in video
    np.testing.assert_array_equal(calls[0][0], frames(result)[0])  # the txt2img image starts clip 0


def test_clips_chain_from_the_last_frame_without_repeating_it(chained):
    spec, result, calls = chained
    images = frames(result)
    plan = build_plan(spec)
    assert [c[2] for c in calls] == [(1, 2, 3), (4, 5, 6)]
    np.testing.assert_array_equal(calls[1][0], images[3])  # clip 1 starts from clip 0's last frame
    assert [c[1] for c in calls] == [plan[0].seed, plan[3].seed]
    assert all(not np.array_equal(a, b) for a, b in zip(images, images[1:], strict=False))  # no repeats
    with PIL.Image.open(result.frames[5]) as image:
        assert "Clip: 1" in image.text["parameters"]


def test_last_clip_is_trimmed_at_max_frames(tmp_path):
    result = render(make_spec(tmp_path, animation={"max_frames": 5}, init={"image": _save(tmp_path)}))
    assert len(result.frames) == 5 and len(list((tmp_path / "svd" / "frames").glob("*.png"))) == 5


@pytest.mark.parametrize("kept", [5, 2])  # mid-clip 1 (restarts at 3), mid-clip 0 (restarts at frame 0)
def test_resume_gives_identical_frames(chained, tmp_path, kept):
    import shutil

    spec, result, _ = chained
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    for path in sorted((run / "frames").glob("*.png"))[kept:]:
        path.unlink()
    resumed = resume(run)
    assert resumed.resumed_from == (kept - 1) // 3 * 3
    assert all(np.array_equal(a, b) for a, b in zip(frames(result), frames(resumed), strict=True))


def test_init_image_is_frame_zero_and_no_image_model_loads(tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the image model must not load when init.image is set")

    monkeypatch.setattr("flipbook.runs.cores.load_model", no_model)
    path = _save(tmp_path)
    result = render(make_spec(tmp_path, animation={"max_frames": 4}, init={"image": path}))
    images = frames(result)
    np.testing.assert_array_equal(images[0], np.asarray(picture()))
    assert not np.array_equal(images[1], images[0])


def _save(tmp_path, image=None, name="start.png"):
    path = tmp_path / name
    (image or picture()).save(path)
    return path


# ---- motion brush -------------------------------------------------------------------------------------------


def test_motion_brush_holds_latents_outside_the_mask_to_the_start_image(bundle):
    mask = np.zeros((64, 64), np.float32)
    mask[:, 32:] = 1.0  # the right half moves
    image = picture()
    latents = denoise_clip(bundle, image, SvdSettings(4, 3), generator=_gen(), mask=mask)
    scale = bundle.vae.config.scaling_factor
    with torch.inference_mode():
        start = sampler._encode(bundle, sampler._pixels(image, bundle.device)) * scale
    held, free = latents[..., :4], latents[..., 4:]
    torch.testing.assert_close(held, start[:, None, ..., :4].expand_as(held), atol=1e-5, rtol=0)
    assert (free[:, 1:] - free[:, :1]).abs().max() > 1e-2  # the animated half differs between frames


def test_motion_brush_keeps_pixels_outside_the_mask_still(tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    mask_path = _save(tmp_path, PIL.Image.fromarray(mask), "mask.png")
    spec = make_spec(
        tmp_path, init={"image": _save(tmp_path), "mask": mask_path}, animation={"max_frames": 7}
    )
    images = frames(render(spec))
    for image in images[1:]:
        np.testing.assert_array_equal(image[:, :32], images[0][:, :32])
    assert all(not np.array_equal(image[:, 32:], images[0][:, 32:]) for image in images[1:])


# ---- spec defaults from the model config --------------------------------------------------------------------


def test_frames_per_clip_and_max_frames_come_from_the_model_when_unset(tmp_path):
    spec = make_spec(tmp_path)
    unset = spec_from_data({"prompts": {"0": "x"}, "animation": {"mode": "svd", "width": 64, "height": 64}})
    resolved = svd_mode.resolve_spec(unset.with_seed())
    assert resolved.svd.num_frames == 8  # the tiny model's unet.config.num_frames
    assert resolved.animation.max_frames == 8
    assert svd_mode.resume_every(resolved) == 7
    kept = svd_mode.resolve_spec(spec)  # both set: nothing changes
    assert (kept.svd.num_frames, kept.animation.max_frames) == (4, 7)
    only_frames = spec_from_data(
        {
            "prompts": {"0": "x"},
            "animation": {"mode": "svd", "width": 64, "height": 64},
            "svd": {"num_frames": 6},
        }
    )
    assert svd_mode.resolve_spec(only_frames).animation.max_frames == 6
    only_max = spec_from_data(
        {"prompts": {"0": "x"}, "animation": {"mode": "svd", "width": 64, "height": 64, "max_frames": 30}}
    )
    resolved = svd_mode.resolve_spec(only_max)
    assert (resolved.svd.num_frames, resolved.animation.max_frames) == (8, 30)


def test_svd_defaults_are_1024x576_at_7_fps():
    spec = spec_from_data({"prompts": {"0": "x"}, "animation": {"mode": "svd"}})
    assert (spec.animation.width, spec.animation.height, spec.animation.fps) == (1024, 576, 7.0)


def test_frame_count_is_read_from_a_folder_config_without_weights(tmp_path):
    folder = tmp_path / "svd-folder"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "config.json").write_text(json.dumps({"num_frames": 14}))
    assert svd_num_frames(str(folder)) == 14


def test_a_saved_diffusers_folder_loads_and_samples_the_same(bundle, tmp_path):
    diffusers_pipeline(bundle).save_pretrained(tmp_path / "tiny-svd")
    loaded = load_svd(str(tmp_path / "tiny-svd"), device="cpu")
    assert loaded.source == "folder" and loaded.num_frames == 8
    image, settings = picture(), SvdSettings(3, 2)
    np.testing.assert_allclose(
        sample_clip(loaded, image, settings, generator=_gen()),
        sample_clip(bundle, image, settings, generator=_gen()),
        atol=1e-4,  # loaded models may pick another attention kernel; the weights are the same
    )


# ---- errors -----------------------------------------------------------------------------------------------


def test_guidance_must_rise(tmp_path):
    spec = make_spec(tmp_path, svd={"min_guidance_scale": 4.0, "max_guidance_scale": 2.0})
    with pytest.raises(SpecError) as error:
        render(spec)
    assert error.value.field == "svd.min_guidance_scale" and error.value.value == 4.0


def test_controlnet_is_refused(tmp_path):
    spec = make_spec(tmp_path, controlnet=[{"model": "tiny", "image": str(_save(tmp_path))}])
    with pytest.raises(SpecError) as error:
        build_plan(spec.with_seed())  # refused with the plan, so validate refuses it too
    assert error.value.field == "controlnet"


def test_a_prompt_that_changes_mid_video_is_refused(tmp_path):
    spec = make_spec(tmp_path, prompts={"0": "a forest", "3": "a city"})
    with pytest.raises(SpecError) as error:
        build_plan(spec.with_seed())
    assert error.value.field == "prompts" and "frame 3" in str(error.value)


def test_size_must_be_a_multiple_of_64():
    with pytest.raises(Exception, match="multiple of 64"):
        spec_from_data({"prompts": {"0": "x"}, "animation": {"mode": "svd", "width": 96, "height": 64}})


@pytest.mark.parametrize(
    ("ref", "detail"),
    [
        ("svd_xt.safetensors", "single-file SVD checkpoints"),
        ("nobody/no-such-svd-model", "local Hugging Face cache"),
        ("not a model", "no such folder"),
    ],
)
def test_unloadable_models_name_the_field(ref, detail, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for call in (lambda: load_svd(ref, device="cpu"), lambda: svd_num_frames(ref)):
        with pytest.raises(FlipbookError) as error:
            call()
        assert error.value.field == "svd.model" and detail in str(error.value)


def test_a_folder_without_model_index_is_refused(tmp_path):
    with pytest.raises(FlipbookError, match="model_index.json"):
        load_svd(str(tmp_path), device="cpu")


def test_a_missing_video_model_fails_before_frame_zero_is_made(tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("no image model may load before the video model is known to be there")

    monkeypatch.setattr("flipbook.runs.cores.load_model", no_model)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FlipbookError) as error:
        render(make_spec(tmp_path, svd={"model": "nobody/no-such-svd-model"}))
    assert error.value.field == "svd.model"
    assert not list(tmp_path.glob("*/frames/*.png"))

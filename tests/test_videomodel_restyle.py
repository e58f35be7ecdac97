"""Video to video in the ``videomodel`` mode: a source clip (``init.video``) restyled by Wan (equal to
diffusers' WanVideoToVideoPipeline on tiny-wan), by LTX-Video (LTXConditionPipeline editing the source's
latents) and by LTX-2 (LTX2ConditionPipeline from the source's latents and the schedule's last sigmas), in
segments, the source's frame rate and audio kept, its frame count checked against the model's rule before any
model loads."""

from __future__ import annotations

import json
import shutil

import av
import numpy as np
import PIL.Image
import pytest
import torch

from flipbook.errors import SpecError
from flipbook.io.readers import read_frames
from flipbook.io.writers import Soundtrack, write_mp4
from flipbook.models.families.wan.loading import load_wan
from flipbook.modes.videomodel.rules import source_frames_needed
from flipbook.runs.render import prepare, render, resume
from flipbook.sampling.segments import SegmentSettings
from flipbook.sampling.wan import encode_prompt, sample_segment
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")
SEQ = 32
PROMPT, NEGATIVE = "an oil painting of a harbour", "blurry"


def moving_square(n: int, size: int = 64, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    background = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1) + rng.integers(0, 30, (size, size, 3))
    frames = []
    for i in range(n):
        frame = background.clip(0, 255).astype(np.uint8)
        frame[20:36, 4 + 3 * i : 20 + 3 * i] = (250, 220, 40)
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 17-frame, 12 fps MP4 with a tone for its soundtrack."""
    import soundfile

    folder = tmp_path_factory.mktemp("source")
    rate = 22050
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * rate) / rate)).astype(np.float32)
    soundfile.write(folder / "tone.wav", tone, rate)
    return write_mp4(
        moving_square(17), folder / "clip.mp4", fps=12, crf=0, audio=Soundtrack(folder / "tone.wav")
    )


def make_spec(tmp_path, source, name="v2v", **sections):
    data = {
        "model": {"device": "cpu"},
        "sampling": {"steps": 4, "seed": 9, "cfg": 4.0},
        "animation": {"mode": "videomodel", "max_frames": 9, "width": 64, "height": 64},
        "videomodel": {"model": "tiny-wan", "segment_frames": 9, "max_sequence_length": SEQ, "strength": 0.5},
        "init": {"video": str(source)},
        "prompts": {"0": PROMPT},
        "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return spec_from_data(data)


def decoded(source, count):
    return [PIL.Image.fromarray(f) for f in read_frames(source, limit=count).frames]


def frames_of(result):
    return [np.asarray(PIL.Image.open(p).convert("RGB")).astype(int) for p in result.frames]


@pytest.fixture(scope="module")
def wan():
    return load_wan("tiny-wan", field_name="m", device="cpu")


def wan_v2v(bundle, video, *, strength, steps, guidance, seed, negative=NEGATIVE):
    """diffusers' WanVideoToVideoPipeline on the bundle's parts, with the prompt states of WanPipeline's own
    encoder (the video-to-video module needs ftfy to clean prompts when it was importable at install time;
    the encoder is the same function)."""
    from diffusers import WanPipeline, WanVideoToVideoPipeline

    parts = {"tokenizer": bundle.tokenizer, "text_encoder": bundle.text_encoder, "vae": bundle.vae}
    embeds, negative_embeds = WanPipeline(
        **parts, transformer=None, scheduler=bundle.scheduler, transformer_2=bundle.transformer
    ).encode_prompt(PROMPT, negative, max_sequence_length=SEQ, device=bundle.device)
    pipe = WanVideoToVideoPipeline(
        **parts, transformer=bundle.transformer,
        scheduler=type(bundle.scheduler).from_config(bundle.scheduler.config),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        video=video, prompt_embeds=embeds, negative_prompt_embeds=negative_embeds, height=64, width=64,
        num_inference_steps=steps, guidance_scale=guidance, strength=strength,
        generator=torch.Generator().manual_seed(seed), output_type="np",
    ).frames[0]  # fmt: skip


@pytest.mark.parametrize(("strength", "guidance"), [(0.6, 4.0), (1.0, 1.0)])
def test_wan_segment_restyle_matches_wan_video_to_video_pipeline(wan, strength, guidance):
    video = [PIL.Image.fromarray(f) for f in moving_square(9)]
    settings = SegmentSettings(num_frames=9, height=64, width=64, num_inference_steps=5, guidance_scale=guidance,
                               max_sequence_length=SEQ, strength=strength)  # fmt: skip
    ours = sample_segment(
        wan, encode_prompt(wan, PROMPT, SEQ), encode_prompt(wan, NEGATIVE, SEQ), settings,
        generator=torch.Generator().manual_seed(3), video=video,
    ).numpy()  # fmt: skip
    theirs = wan_v2v(wan, video, strength=strength, steps=5, guidance=guidance, seed=3)
    assert ours.shape == theirs.shape == (9, 64, 64, 3)
    assert np.abs(ours - theirs).max() <= 1e-4


def test_restyle_render_is_the_pipeline_keeps_the_source_rate_and_audio(tmp_path, source, wan):
    result = render(make_spec(tmp_path, source, output={"formats": ["png", "mp4"]}))
    ours = frames_of(result)
    theirs = wan_v2v(wan, decoded(source, 9), strength=0.5, steps=4, guidance=4.0, seed=9, negative="")
    assert np.abs(np.stack(ours) - (theirs * 255).round()).max() <= 1
    run_spec = json.loads((result.run_dir / "spec.json").read_text())
    assert run_spec["animation"]["fps"] == pytest.approx(12)
    with av.open(str(result.outputs["mp4"])) as container:
        assert container.streams.audio, "the source's audio is kept"
        assert float(container.streams.video[0].average_rate) == pytest.approx(12)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())["temporal_error"]
    assert set(metrics) == {"output", "source"}


def test_keep_audio_off_drops_it(tmp_path, source):
    spec = make_spec(tmp_path, source, videomodel={"keep_audio": False}, output={"formats": ["mp4"]})
    with av.open(str(render(spec).outputs["mp4"])) as container:
        assert not container.streams.audio


def test_a_long_restyle_runs_in_segments_each_from_its_source_frames(tmp_path, source):
    """17 frames in segments of 9 (overlap 1): segment 1 restyles source frames 8..16; changing a frame it
    reads changes its frames only; a resume at the segment border gives the same frames. (The random tiny
    model hardly reads its source: an inverted source frame moves the segment's frames by a level or so, and
    which frames it moves depends on the CPU's rounding.)"""
    spec = make_spec(tmp_path, source, animation={"max_frames": 17}, videomodel={"blend_frames": 2})
    result = render(spec)
    ours = frames_of(result)
    assert len(ours) == 17
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    for path in sorted((run / "frames").glob("*.png"))[12:]:
        path.unlink()
    resumed = resume(run)
    assert resumed.resumed_from == 8
    assert all(np.array_equal(a, b) for a, b in zip(ours, frames_of(resumed), strict=True))

    changed = moving_square(17)
    changed[14] = 255 - changed[14]
    other = write_mp4(changed, tmp_path / "changed.mp4", fps=12, crf=0)
    again = frames_of(render(make_spec(tmp_path, other, "changed", animation={"max_frames": 17},
                                       videomodel={"blend_frames": 2})))  # fmt: skip
    assert all(np.array_equal(a, b) for a, b in zip(ours[:9], again[:9], strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(ours[9:], again[9:], strict=True))


def test_restyle_with_an_image_to_video_model_conditions_on_the_start_image(tmp_path, source):
    start = tmp_path / "start.png"
    PIL.Image.fromarray(moving_square(1, seed=5)[0]).save(start)
    spec = make_spec(
        tmp_path, source, animation={"max_frames": 13},
        videomodel={"model": "tiny-wan-i2v", "max_sequence_length": 512, "overlap": 1}, init={"image": str(start)},
    )  # fmt: skip
    assert len(render(spec).frames) == 13


def test_ltx_restyle_is_ltx_condition_pipeline_editing_the_source(tmp_path, source):
    from diffusers import LTXConditionPipeline
    from diffusers.pipelines.ltx.pipeline_ltx_condition import retrieve_latents

    from flipbook.models.families.ltx.loading import load_ltx

    spec = make_spec(
        tmp_path, source, sampling={"steps": 4, "cfg": 1.0},
        videomodel={"model": "tiny-ltx", "max_sequence_length": SEQ, "strength": 0.5},
    )  # fmt: skip
    ours = frames_of(render(spec))
    bundle = load_ltx("tiny-ltx", field_name="m", device="cpu")
    pipe = LTXConditionPipeline(scheduler=bundle.pipelines[True].scheduler, vae=bundle.vae,
                                text_encoder=bundle.text_encoder, tokenizer=bundle.tokenizer,
                                transformer=bundle.transformer)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    pixels = pipe.video_processor.preprocess_video(decoded(source, 9), 64, 64)
    latents = retrieve_latents(bundle.vae.encode(pixels), sample_mode="argmax")
    latents = pipe._normalize_latents(latents, bundle.vae.latents_mean, bundle.vae.latents_std)
    theirs = pipe(
        prompt=PROMPT, height=64, width=64, num_frames=9, frame_rate=12, num_inference_steps=4,
        guidance_scale=1.0, generator=torch.Generator().manual_seed(9), latents=latents, denoise_strength=0.5,
        output_type="np", max_sequence_length=SEQ,
    ).frames[0]  # fmt: skip
    assert np.abs(np.stack(ours) - (theirs * 255).round()).max() <= 1
    plain = frames_of(render(make_spec(tmp_path, source, "plain", sampling={"steps": 4, "cfg": 1.0},
                                       videomodel={"model": "tiny-ltx", "strength": 1.0})))  # fmt: skip
    assert not np.array_equal(np.stack(ours), np.stack(plain))


def test_ltx2_restyle_is_ltx2_condition_pipeline_from_the_source_latents(tmp_path, source):
    """LTX-2 restyles as diffusers' LTX2ConditionPipeline does given latents and sigmas: the source's VAE
    latents noised to the first of the schedule's last ``int(steps * strength)`` sigmas (its own default
    ``noise_scale``), then those steps; the frames are the pipeline's, and strength 1 (every step, from
    noise) gives others."""
    from flipbook.models.families.ltx2.loading import GUIDANCE, diffusers_pipeline, load_ltx2

    def spec(name, strength):
        return make_spec(
            tmp_path, source, name, sampling={"steps": 4, "cfg": 1.0},
            videomodel={"model": "tiny-ltx2", "max_sequence_length": SEQ, "strength": strength},
        )  # fmt: skip

    ours = frames_of(render(spec("ltx2", 0.5)))
    bundle = load_ltx2("tiny-ltx2", field_name="m", device="cpu")
    pipe = diffusers_pipeline(bundle, "conditions")
    pixels = pipe.video_processor.preprocess_video(decoded(source, 9), 64, 64)
    latents = bundle.vae.encode(pixels).latent_dist.mode()
    theirs = pipe(
        prompt=PROMPT, height=64, width=64, num_frames=9, frame_rate=12, guidance_scale=1.0,
        sigmas=np.linspace(1.0, 0.25, 4)[2:], latents=latents, generator=torch.Generator().manual_seed(9),
        output_type="np", max_sequence_length=SEQ, **GUIDANCE,
    ).frames[0]  # fmt: skip
    assert np.abs(np.stack(ours) - (theirs * 255).round()).max() <= 1
    plain = frames_of(render(spec("ltx2-plain", 1.0)))
    assert not np.array_equal(np.stack(ours), np.stack(plain))


def test_ltx2_restyles_in_segments_each_from_its_source_frames(tmp_path, source):
    """Two LTX-2 segments (frames 0..8, then 9..15 on frame 8 as written: a condition at latent frame 0 with
    the source's latents): changing a source frame of the later segment changes its frames only."""

    def restyled(clip, name):
        spec = make_spec(tmp_path, clip, name, sampling={"steps": 4, "cfg": 1.0}, animation={"max_frames": 16},
                         videomodel={"model": "tiny-ltx2", "strength": 0.5})  # fmt: skip
        return frames_of(render(spec))

    changed = moving_square(17)
    changed[14] = 255 - changed[14]
    base = restyled(source, "ltx2-segments")
    edited = restyled(write_mp4(changed, tmp_path / "changed.mp4", fps=12, crf=0), "ltx2-segments-changed")
    assert len(base) == 16
    assert np.array_equal(np.stack(base[:9]), np.stack(edited[:9]))
    assert not np.array_equal(np.stack(base[9:]), np.stack(edited[9:]))


def test_ltx_restyle_runs_in_segments_each_from_its_source_frames(tmp_path, source):
    """Segment 1 (frames 9..15, conditioned on frame 8 as written) reads source frames 8..16: changing one
    of them changes its frames only."""

    def restyled(clip, name):
        spec = make_spec(tmp_path, clip, name, sampling={"steps": 4, "cfg": 1.0}, animation={"max_frames": 16},
                         videomodel={"model": "tiny-ltx", "strength": 0.5})  # fmt: skip
        return frames_of(render(spec))

    changed = moving_square(17)
    changed[12] = 255 - changed[12]
    ours, again = (
        restyled(source, "ltx"),
        restyled(write_mp4(changed, tmp_path / "c.mp4", fps=12, crf=0), "c"),
    )
    assert len(ours) == 16
    assert all(np.array_equal(a, b) for a, b in zip(ours[:9], again[:9], strict=True))
    assert not np.array_equal(ours[12], again[12])


# ---- checked before any model loads ----------------------------------------------------------------------


def test_frames_a_restyle_reads_follow_the_model_rule():
    assert source_frames_needed(9, 9, 1, 4) == 9
    assert source_frames_needed(7, 9, 1, 4) == 9  # one segment of 4k+1 frames
    assert source_frames_needed(17, 9, 1, 4) == 17
    assert source_frames_needed(11, 9, 1, 4) == 13  # segment 1 covers 8..12
    assert source_frames_needed(10, 17, 1, 8) == 17


def test_a_source_too_short_for_the_segments_names_max_frames_with_the_nearest_counts(tmp_path):
    short = write_mp4(moving_square(15), tmp_path / "short.mp4", fps=12, crf=0)
    spec = make_spec(tmp_path, short, animation={"max_frames": 14})  # segment 1 would read frames 8..16
    with pytest.raises(SpecError) as error:
        prepare(spec)
    assert error.value.field == "animation.max_frames" and "the nearest are 13" in str(error.value)
    assert "15 frames of init.video" in str(error.value) and "14 frames read 17" in str(error.value)


@pytest.mark.parametrize(
    ("sections", "field", "allowed"),
    [
        (
            {"videomodel": {"strength": 0.2}},
            "videomodel.strength",
            "at least 1/steps = 0.25",
        ),  # int(4 * 0.2) = 0
        ({"videomodel": {"loop": True}}, "videomodel.loop", "false with init.video"),
    ],
)
def test_restyle_rules_are_one_error_naming_the_field(tmp_path, source, sections, field, allowed):
    with pytest.raises(SpecError) as error:
        prepare(make_spec(tmp_path, source, **sections))
    assert error.value.field == field and allowed in str(error.value)

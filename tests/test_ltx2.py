"""LTX-2 on the tiny built-in: the segment sampler against diffusers' LTX2Pipeline and LTX2ConditionPipeline
(video and audio, max abs difference <= 1e-4, float32, same seeds), the known frames as LTX-2's latent-frame
conditions, its frame/size rules (8k+1 frames, multiples of 32) checked up front, folder detection, and the
videomodel mode's segments and resume on it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import PIL.Image
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flipbook.errors import FlipbookError, SpecError
from flipbook.models.families.ltx2.loading import GUIDANCE, diffusers_pipeline, load_ltx2
from flipbook.runs.render import render, resume
from flipbook.sampling.ltx2 import encode_prompt, latent_conditions, sample_with_audio
from flipbook.sampling.segments import SegmentSettings
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")
SEQ = 32
PROMPT = "a cat in the city"


@pytest.fixture(scope="module")
def bundle():
    return load_ltx2("tiny-ltx2", field_name="m", device="cpu")


def picture(seed=0, width=64, height=64):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    array = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1) + rng.integers(0, 30, (height, width, 3))
    return PIL.Image.fromarray(array.clip(0, 255).astype(np.uint8))


def _ours(bundle, settings, seed, known=None):
    embeds, negative = encode_prompt(bundle, PROMPT, SEQ), encode_prompt(bundle, "blurry", SEQ)
    frames, audio = sample_with_audio(
        bundle, embeds, negative, settings, generator=torch.Generator().manual_seed(seed), known=known
    )
    return frames.numpy(), audio.numpy()


@pytest.mark.parametrize("guidance", [3.0, 1.0])
def test_text_to_video_matches_ltx2_pipeline(bundle, guidance):
    settings = SegmentSettings(num_frames=9, height=64, width=96, num_inference_steps=2, guidance_scale=guidance,
                               max_sequence_length=SEQ, fps=24)  # fmt: skip
    ours, our_audio = _ours(bundle, settings, 4)
    theirs = diffusers_pipeline(bundle)(
        prompt=PROMPT, negative_prompt="blurry", height=64, width=96, num_frames=9, frame_rate=24,
        num_inference_steps=2, guidance_scale=guidance, generator=torch.Generator().manual_seed(4),
        output_type="np", max_sequence_length=SEQ, **GUIDANCE,
    )  # fmt: skip
    assert ours.shape == theirs.frames[0].shape == (9, 64, 96, 3)
    assert np.abs(ours - theirs.frames[0]).max() <= 1e-4
    audio = np.asarray(theirs.audio[0], dtype=np.float32)
    assert our_audio.shape == audio.shape and our_audio.shape[0] == 2
    assert np.abs(our_audio - audio).max() <= 1e-4
    # the audio lasts about as long as the video (the tiny vocoder's rate matches its hop)
    assert abs(our_audio.shape[1] / bundle.audio_rate - 9 / 24) < 0.1


def test_images_at_frames_match_ltx2_condition_pipeline(bundle):
    """Images at frames 0 and 9 of 17: LTX-2's conditions at latent frames 0 and 2."""
    from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition

    first, later = picture(1), picture(2)
    settings = SegmentSettings(num_frames=17, height=64, width=64, num_inference_steps=2, guidance_scale=3.0,
                               max_sequence_length=SEQ, fps=25)  # fmt: skip
    ours, _ = _ours(bundle, settings, 6, {0: first, 9: later})
    theirs = diffusers_pipeline(bundle, "conditions")(
        conditions=[LTX2VideoCondition(frames=[first], index=0), LTX2VideoCondition(frames=[later], index=2)],
        prompt=PROMPT, negative_prompt="blurry", height=64, width=64, num_frames=17, frame_rate=25,
        num_inference_steps=2, guidance_scale=3.0, generator=torch.Generator().manual_seed(6),
        output_type="np", max_sequence_length=SEQ, **GUIDANCE,
    ).frames[0]  # fmt: skip
    assert np.abs(ours - theirs).max() <= 1e-4
    unconditioned, _ = _ours(bundle, settings, 6)
    assert np.abs(ours - unconditioned).max() > 1e-3  # the images changed the video


def test_a_start_image_matches_ltx2_image_to_video_pipeline(bundle):
    """A start image alone (segment 0 from init.image, a later segment on the previous one's last frame) is
    LTX-2's image to video."""
    start = picture(3, width=96)
    settings = SegmentSettings(num_frames=9, height=64, width=96, num_inference_steps=2, guidance_scale=3.0,
                               max_sequence_length=SEQ, fps=24)  # fmt: skip
    ours, our_audio = _ours(bundle, settings, 5, {0: start})
    theirs = diffusers_pipeline(bundle, "image")(
        image=start, prompt=PROMPT, negative_prompt="blurry", height=64, width=96, num_frames=9, frame_rate=24,
        num_inference_steps=2, guidance_scale=3.0, generator=torch.Generator().manual_seed(5),
        output_type="np", max_sequence_length=SEQ, **GUIDANCE,
    )  # fmt: skip
    assert np.abs(ours - theirs.frames[0]).max() <= 1e-4
    assert np.abs(our_audio - np.asarray(theirs.audio[0], dtype=np.float32)).max() <= 1e-4


def test_known_frames_become_latent_frame_conditions():
    a, b, c = picture(1), picture(2), picture(3)
    assert latent_conditions({0: a}, 8) == {0: [a]}
    assert latent_conditions({0: a, 1: b}, 8) == {0: [a], 1: [b]}  # overlap 2: frame 1 starts latent frame 1
    assert latent_conditions({0: a, 17: c}, 8) == {0: [a], 3: [c]}
    nine = {p: a for p in range(9)}
    assert latent_conditions(nine, 8) == {0: [a] * 9}
    with pytest.raises(FlipbookError) as error:
        latent_conditions({0: a, 5: b}, 8)
    assert error.value.field == "videomodel" and "[5]" in str(error.value) and "8k+1" in str(error.value)
    with pytest.raises(FlipbookError):
        latent_conditions({0: a, 1: b, 2: c}, 8)  # overlap 3: frame 2 starts no latent frame


def make_spec(tmp_path, **sections):
    data = {
        "model": {"device": "cpu"},
        "sampling": {"steps": 2, "seed": 5, "cfg": 3.0},
        "animation": {"mode": "videomodel", "max_frames": 9, "width": 64, "height": 64, "fps": 25},
        "videomodel": {"model": "tiny-ltx2", "segment_frames": 9, "max_sequence_length": SEQ},
        "prompts": {"0": PROMPT},
        "output": {"dir": str(tmp_path), "name": "ltx2", "formats": ["png"]},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return spec_from_data(data)


@pytest.mark.parametrize(
    ("sections", "field", "nearest"),
    [
        ({"videomodel": {"segment_frames": 13}}, "videomodel.segment_frames", "9 and 17"),
        ({"animation": {"width": 48}}, "animation.width", "32 and 64"),
    ],
)
def test_ltx2_frame_and_size_rules(tmp_path, sections, field, nearest):
    with pytest.raises(SpecError) as error:
        make_spec(tmp_path, **sections)
    assert error.value.field == field and "LTX-2" in str(error.value) and nearest in str(error.value)


def test_ltx2_needs_two_steps_per_segment(tmp_path):
    from flipbook.spec.plan import build_plan

    with pytest.raises(SpecError) as error:
        build_plan(make_spec(tmp_path, sampling={"steps": 1}))
    assert error.value.field == "sampling.steps" and "LTX-2" in str(error.value)


def test_a_diffusers_ltx2_folder_is_found_by_its_model_index(tmp_path):
    from flipbook.modes.videomodel.render import family_of_model

    folder = tmp_path / "ltx2-folder"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "LTX2Pipeline"}))
    family = family_of_model(make_spec(tmp_path, videomodel={"model": str(folder)}))
    assert family.title == "LTX-2"


def test_a_saved_ltx2_folder_loads_the_same_model(bundle, tmp_path):
    diffusers_pipeline(bundle).save_pretrained(tmp_path / "saved", safe_serialization=True)
    loaded = load_ltx2(str(tmp_path / "saved"), field_name="videomodel.model", device="cpu")
    assert loaded.source == "folder"
    for name in ("transformer", "vae", "audio_vae", "text_encoder", "connectors", "vocoder"):
        ours, theirs = getattr(bundle, name).state_dict(), getattr(loaded, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert loaded.tokenizer("a cat").input_ids == bundle.tokenizer("a cat").input_ids


def test_segments_chain_and_resume_identically_on_ltx2(tmp_path):
    """Text to video for segment 0, then segments of 9 frames conditioned on the last frame; a resume from the
    middle gives the same frames."""
    spec = make_spec(tmp_path, animation={"max_frames": 16})
    result = render(spec)
    frames = [np.asarray(PIL.Image.open(p)) for p in result.frames]
    assert len(frames) == 16
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    for path in sorted((run / "frames").glob("*.png"))[10:]:
        path.unlink()
    resumed = resume(run)
    assert resumed.resumed_from == 8
    again = [np.asarray(PIL.Image.open(p)) for p in resumed.frames]
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))


def test_the_segment_hook_returns_the_frames_and_says_the_audio_is_dropped(bundle, caplog):
    from flipbook.sampling.ltx2 import sample_segment

    settings = SegmentSettings(num_frames=9, height=64, width=64, num_inference_steps=2, guidance_scale=1.0,
                               max_sequence_length=SEQ, fps=24)  # fmt: skip
    with caplog.at_level("WARNING", logger="flipbook.sampling.ltx2"):
        frames = sample_segment(
            bundle, encode_prompt(bundle, PROMPT, SEQ), None, settings, generator=torch.Generator().manual_seed(1),
            frames=range(9),
        )  # fmt: skip
    expected, _ = _ours(bundle, settings, 1)
    assert np.array_equal(frames.numpy(), expected)
    assert "audio is dropped" in caplog.text and "frames 0-8" in caplog.text


def test_ltx2_does_not_restyle_a_source_video(bundle):
    from flipbook.sampling.ltx2 import sample_segment

    settings = SegmentSettings(num_frames=9, height=64, width=64, num_inference_steps=2, guidance_scale=1.0,
                               max_sequence_length=SEQ)  # fmt: skip
    with pytest.raises(FlipbookError) as error:
        sample_segment(
            bundle, encode_prompt(bundle, PROMPT, SEQ), None, settings, generator=torch.Generator(),
            video=[picture()] * 9,
        )  # fmt: skip
    assert error.value.field == "init.video"


def test_the_bench_case_times_flipbook_against_ltx2_pipeline(tmp_path):
    from flipbook.bench import run_case

    table = run_case("videomodel", model="tiny-ltx2", width=64, height=64, steps=2, runs=1, sampler="Euler",
                     device="cpu", dtype="auto", out=tmp_path, frames=None)  # fmt: skip
    assert "tiny-ltx2" in table
    result = json.loads(next(tmp_path.glob("videomodel-tiny-ltx2-*.json")).read_text())
    assert (
        result["frames"] == 9
        and result["flipbook_over_diffusers"] > 0
        and 0 < result["transformer_share"] < 1
    )


def test_a_keyframe_ltx2_cannot_place_is_one_clear_error(tmp_path):
    """Frame 5 starts no latent frame of LTX-2 (0, 1, 9, 17, ...): the render stops with one error naming the
    segment positions; a keyframe at frame 9 is a condition at latent frame 2 and renders."""
    image = tmp_path / "key.png"
    picture(7).save(image)
    spec = make_spec(tmp_path, videomodel={"keyframes": [{"frame": 5, "image": str(image)}]})
    with pytest.raises(FlipbookError) as error:
        render(spec)
    assert error.value.field == "videomodel" and "[5]" in str(error.value)
    spec = make_spec(
        tmp_path, animation={"max_frames": 12}, output={"name": "ok"},
        videomodel={"keyframes": [{"frame": 9, "image": str(image)}], "segment_frames": 17},
    )  # fmt: skip
    assert len(render(spec).frames) == 12


@given(st.sets(st.integers(0, 40), max_size=8))
def test_latent_conditions_place_every_known_frame_where_it_is_or_refuse(positions):
    """Each condition at latent frame ``l`` covers the pixel frames from ``(l - 1) * 8 + 1`` (0 for ``l = 0``)
    on, one per image: together exactly the known positions, each with its own image; else one error."""
    known = {p: picture(p, width=4, height=4) for p in positions}
    try:
        conditions = latent_conditions(known, 8)
    except FlipbookError as error:
        assert error.value is not None and error.field == "videomodel"
        return
    placed = {
        (0 if index == 0 else (index - 1) * 8 + 1) + offset: image
        for index, images in conditions.items()
        for offset, image in enumerate(images)
    }
    assert placed == known
    assert all(len(images) == 1 or index == 0 for index, images in conditions.items())


def test_an_ltx2_loop_conditions_its_last_segment_on_frame_0(tmp_path):
    """25 frames in segments of 17: the last segment starts at frame 16, and the frame after the last (25) is
    its frame 9, the start of latent frame 2."""
    image = tmp_path / "start.png"
    picture(8).save(image)
    spec = make_spec(
        tmp_path, animation={"max_frames": 25}, init={"image": str(image)},
        videomodel={"segment_frames": 17, "loop": True},
    )  # fmt: skip
    assert len(render(spec).frames) == 25

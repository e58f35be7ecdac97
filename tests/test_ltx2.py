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


def test_the_frames_only_hook_gives_the_frames_of_sample_with_audio(bundle):
    from flipbook.sampling.ltx2 import sample_segment

    settings = SegmentSettings(num_frames=9, height=64, width=64, num_inference_steps=2, guidance_scale=1.0,
                               max_sequence_length=SEQ, fps=24)  # fmt: skip
    frames = sample_segment(
        bundle, encode_prompt(bundle, PROMPT, SEQ), None, settings, generator=torch.Generator().manual_seed(1),
        frames=range(9),
    )  # fmt: skip
    expected, _ = _ours(bundle, settings, 1)
    assert np.array_equal(frames.numpy(), expected)


def _wav(path):
    from flipbook.modes.videomodel.audio import read_clip

    return read_clip(path)


def test_one_segment_writes_the_audio_ltx2_pipeline_makes(bundle, tmp_path):
    """Frames-only output: the audio is NAME.wav next to the frames, equal to diffusers' LTX2Pipeline audio for
    the same seed (cut at the last frame's end)."""
    result = render(make_spec(tmp_path))
    samples, rate = _wav(result.run_dir / "ltx2.wav")
    theirs = diffusers_pipeline(bundle)(
        prompt=PROMPT, negative_prompt="", height=64, width=64, num_frames=9, frame_rate=25,
        num_inference_steps=2, guidance_scale=3.0, generator=torch.Generator().manual_seed(5),
        output_type="np", max_sequence_length=SEQ, **GUIDANCE,
    )  # fmt: skip
    audio = np.asarray(theirs.audio[0], dtype=np.float32)
    frames = np.stack([np.asarray(PIL.Image.open(p), dtype=np.float32) / 255 for p in result.frames])
    assert np.abs(frames - theirs.frames[0]).max() <= 1 / 255  # the same run (frames rounded to uint8)
    assert rate == bundle.audio_rate and samples.shape == (2, round(9 / 25 * rate))
    # LTX-2's audio VAE decodes L latent frames into 4L - 3 mel frames: a few ms short of the video, left silent
    assert samples.shape[1] - rate // 20 < audio.shape[1] <= samples.shape[1]
    assert np.abs(samples[:, : audio.shape[1]] - audio).max() <= 1e-4
    assert np.all(samples[:, audio.shape[1] :] == 0) and np.abs(audio).max() > 1e-3


def test_segments_join_their_audio_across_the_overlap_and_resume_identically(tmp_path):
    """16 frames in segments of 9 (overlap 1): segment 1 covers frames 8-15; its audio crossfades with segment
    0's over frame 8 and is alone after it; the MP4 carries the joined audio; a resume rewrites the same."""
    import av

    from flipbook.modes.videomodel.audio import join_segments

    result = render(make_spec(tmp_path, animation={"max_frames": 16}, output={"formats": ["png", "mp4"]}))
    joined, rate = _wav(result.run_dir / "ltx2.wav")
    first, _ = _wav(result.run_dir / "audio" / "audio_00000.wav")
    second, _ = _wav(result.run_dir / "audio" / "audio_00008.wav")
    assert joined.shape[1] == round(16 / 25 * rate)
    border, faded = round(8 * rate / 25), first.shape[1]  # crossfaded where both have audio
    assert border < faded <= round(9 * rate / 25)
    assert np.array_equal(joined[:, :border], first[:, :border])
    assert np.array_equal(joined[:, faded:], second[:, faded - border : joined.shape[1] - border])
    both = joined[:, border:faded]
    assert not np.array_equal(both, first[:, border:]) and not np.array_equal(
        both, second[:, : faded - border]
    )
    assert np.array_equal(joined, join_segments([(0, first), (8, second)], rate, 25, 16))
    with av.open(str(result.outputs["mp4"])) as container:
        stream = container.streams.audio[0]
        assert abs(float(stream.duration * stream.time_base) - 16 / 25) < 0.05
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    for path in [
        *sorted((run / "frames").glob("*.png"))[10:],
        run / "audio" / "audio_00008.wav",
        run / "run.wav",
    ]:
        path.unlink(missing_ok=True)
    resumed = resume(run)
    assert resumed.resumed_from == 8
    assert np.array_equal(_wav(run / "run.wav")[0], joined)


def test_the_summary_says_the_model_s_audio_becomes_the_soundtrack(tmp_path):
    from flipbook.spec.summary import summarize

    assert "joined into the soundtrack (NAME.wav)" in summarize(make_spec(tmp_path))
    wan = make_spec(
        tmp_path, videomodel={"model": "tiny-wan", "segment_frames": 9}, animation={"max_frames": 9}
    )
    assert "soundtrack" not in summarize(wan)


def test_joined_audio_crossfades_the_overlap_and_cuts_at_the_end():
    from flipbook.modes.videomodel.audio import join_segments

    a = np.ones((2, 100), np.float32)
    b = np.full((1, 100), -1.0, np.float32)  # mono is spread over both channels
    joined = join_segments([(0, a), (2, b)], rate=50, fps=1.0, frames=3)  # b from 2 s (sample 100) on
    assert joined.shape == (2, 150)
    assert np.array_equal(joined[:, :100], a) and np.all(joined[:, 100:] == -1)  # no overlap: no fade
    joined = join_segments([(0, a), (1, b)], rate=50, fps=1.0, frames=3)  # overlap over samples 50-99
    fade = joined[0, 50:100]
    assert np.all(np.diff(fade) < 0) and 0 < fade[0] < 1 and -1 < fade[-1] < 0
    assert np.all(joined[:, 100:] == -1) and np.all(joined[:, :50] == 1)
    short = join_segments([(0, a[:, :40])], rate=50, fps=1.0, frames=1)
    assert np.array_equal(short[:, :40], a[:, :40]) and np.all(short[:, 40:] == 0)


def test_a_run_with_audio_is_replaced_by_overwrite(tmp_path):
    from flipbook.runs.run_dir import RunDir

    run = RunDir(tmp_path / "r")
    (run.path / "frames").mkdir(parents=True)
    run.audio_path(0).parent.mkdir()
    for path in (run.audio_path(0), run.soundtrack_path(), run.frame_path(0)):
        path.write_bytes(b"x")
    assert run.holds_run() and run.foreign_files() == []
    (run.path / "audio" / "mine.wav").write_bytes(b"x")
    assert run.foreign_files() == [run.path / "audio" / "mine.wav"]


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
    """Frame 5 starts no latent frame of LTX-2 (0, 1, 9, 17, ...): the spec is refused when it is read, with
    one error naming the keyframe; a keyframe at frame 9 is a condition at latent frame 2 and renders."""
    image = tmp_path / "key.png"
    picture(7).save(image)
    with pytest.raises(SpecError) as error:
        make_spec(tmp_path, animation={"max_frames": 17},
                  videomodel={"keyframes": [{"frame": 5, "image": str(image)}], "segment_frames": 17})  # fmt: skip
    assert error.value.field == "videomodel.keyframes[0].frame" and error.value.value == 5
    assert "8k+1" in str(error.value) and "LTX-2" in str(error.value)
    assert "could go at frame 1 or 9" in error.value.detail  # segment 0 of 17 frames: positions 1 and 9
    spec = make_spec(
        tmp_path, animation={"max_frames": 12}, output={"name": "ok"},
        videomodel={"keyframes": [{"frame": 9, "image": str(image)}], "segment_frames": 17},
    )  # fmt: skip
    assert len(render(spec).frames) == 12


def test_the_frames_suggested_for_a_keyframe_stay_in_its_segment_and_the_video(tmp_path):
    """16 frames in segments of 9: a keyframe at 12 is segment 1's frame 4 (it starts at 8); frame 9 takes it,
    frame 17 (the segment's other choice) is past the end."""
    image = tmp_path / "key.png"
    picture(7).save(image)
    with pytest.raises(SpecError) as error:
        make_spec(
            tmp_path,
            animation={"max_frames": 16},
            videomodel={"keyframes": [{"frame": 12, "image": str(image)}]},
        )
    assert error.value.value == 12 and error.value.detail.endswith("could go at frame 9")


@pytest.mark.parametrize(
    ("sections", "field", "value"),
    [
        ({"videomodel": {"overlap": 3}, "animation": {"max_frames": 16}}, "videomodel.overlap", 3),
        # a loop of 21 in segments of 17: frame 21 (frame 0 again) is the last segment's frame 5
        ({"videomodel": {"segment_frames": 17, "loop": True}, "animation": {"max_frames": 21}},
         "animation.max_frames", 21),
    ],
)  # fmt: skip
def test_overlaps_and_loop_ends_ltx2_cannot_place_are_refused_up_front(tmp_path, sections, field, value):
    image = tmp_path / "start.png"
    picture(8).save(image)
    with pytest.raises(SpecError) as error:
        make_spec(tmp_path, init={"image": str(image)}, **sections)
    assert error.value.field == field and error.value.value == value and "LTX-2" in str(error.value)


def test_an_ltx2_folder_keyframe_is_refused_before_its_model_loads(tmp_path, monkeypatch):
    """Not a built-in: the folder's model_index.json names the family, whose rule refuses the keyframe in
    prepare(), before any model loads (the folder has no weights: loading it would fail otherwise)."""
    from flipbook.models.families.ltx2 import loading
    from flipbook.runs.render import prepare

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loading, "load_ltx2", no_load)
    folder = tmp_path / "ltx2-folder"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "LTX2Pipeline"}))
    image = tmp_path / "key.png"
    picture(7).save(image)
    spec = make_spec(
        tmp_path, videomodel={"model": str(folder), "keyframes": [{"frame": 5, "image": str(image)}]}
    )
    with pytest.raises(SpecError) as error:
        prepare(spec)
    assert error.value.field == "videomodel.keyframes[0].frame" and error.value.value == 5
    with pytest.raises(SpecError):
        render(spec)


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


@pytest.mark.parametrize("switch", ["model", "block", "leaf", "fp8", "attention"])
def test_each_memory_switch_covers_every_module_of_tiny_ltx2(switch):
    """Offload (model, group by blocks or leaf layers) reaches every module of LTX-2: the text connectors, the
    audio VAE and the vocoder too; fp8 storage and the attention backend the transformer and the connectors
    (``FP8_MODULES``), VAE tiling the video VAE."""
    from diffusers.hooks.group_offloading import _is_group_offload_enabled
    from diffusers.hooks.layerwise_casting import _is_layerwise_casting_active

    from flipbook.models.families.ltx2.loading import PARTS
    from flipbook.sampling.video_memory import FP8_MODULES, MemorySwitches, apply, weights_of

    bundle = load_ltx2("tiny-ltx2", field_name="m", device="cpu")
    assert set(weights_of(bundle).bytes) == set(PARTS)
    offload = switch if switch in ("model", "block", "leaf") else "none"
    backend = "native" if switch == "attention" else None
    apply(bundle, MemorySwitches(offload, switch == "attention", backend, fp8_storage=switch == "fp8"))
    modules = {name: getattr(bundle, name) for name in PARTS}
    if switch == "model":
        assert all(hasattr(module, "_hf_hook") for module in modules.values())
    elif switch in ("block", "leaf"):
        assert all(_is_group_offload_enabled(module) for module in modules.values())
    elif switch == "fp8":
        cast = {name for name, module in modules.items() if _is_layerwise_casting_active(module)}
        assert cast == set(FP8_MODULES) & set(PARTS) == {"transformer", "connectors"}
    else:
        for name in ("transformer", "connectors"):
            backends = {
                getattr(module.processor, "_attention_backend", None)
                for module in modules[name].modules()
                if hasattr(module, "processor")
            }
            assert backends == {"native"}, name  # diffusers' backend names are str enums
        assert bundle.vae.use_tiling


@pytest.mark.parametrize("offload", ["model", "leaf"])
def test_offloaded_ltx2_makes_the_same_frames_and_audio(tmp_path, offload):
    plain = render(make_spec(tmp_path, output={"name": "plain"}))
    moved = render(make_spec(tmp_path, output={"name": offload}, videomodel={"offload": offload}))
    for a, b in zip(plain.frames, moved.frames, strict=True):
        assert np.array_equal(np.asarray(PIL.Image.open(a)), np.asarray(PIL.Image.open(b)))
    assert np.array_equal(_wav(plain.run_dir / "plain.wav")[0], _wav(moved.run_dir / f"{offload}.wav")[0])

"""The ``videomodel`` mode on the tiny Wan models: text and image to video equal to diffusers' pipelines,
segments chained on the last frames with per-segment prompts, resume identity, keyframe images, loops, and the
frame/size rules checked before any model loads."""

from __future__ import annotations

import shutil

import numpy as np
import PIL.Image
import pytest
import torch

from flipbook.errors import FlipbookError, SpecError
from flipbook.models.families.wan.loading import diffusers_pipeline, load_wan
from flipbook.runs.render import render, resume
from flipbook.sampling.wan import WanSettings, encode_prompt, sample_segment
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan

pytestmark = pytest.mark.usefixtures("one_thread")
SEQ = 32


def make_spec(tmp_path, name="wan", **sections):
    data = {
        "model": {"device": "cpu"},
        "sampling": {"steps": 2, "seed": 5, "cfg": 4.0},
        "animation": {"mode": "videomodel", "max_frames": 9, "width": 64, "height": 64},
        "videomodel": {"model": "tiny-wan", "segment_frames": 9, "max_sequence_length": SEQ},
        "prompts": {"0": "a cat in the city"},
        "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    }
    for section, values in sections.items():
        if section == "prompts":
            data[section] = values
        else:
            data.setdefault(section, {}).update(values)
    if data["videomodel"]["model"] != "tiny-wan":  # image-to-video Wan models read 512 prompt tokens
        data["videomodel"]["max_sequence_length"] = 512
    return spec_from_data(data)


def frames(result):
    return [np.asarray(PIL.Image.open(p).convert("RGB")).astype(int) for p in result.frames]


def picture(seed=0, size=64):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    array = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1) + rng.integers(0, 30, (size, size, 3))
    return PIL.Image.fromarray(array.clip(0, 255).astype(np.uint8))


def save(tmp_path, image, name):
    path = tmp_path / name
    image.save(path)
    return str(path)


def quantised(video):
    return (np.asarray(video) * 255).round().clip(0, 255).astype(int)


def _embeds(bundle, prompt, negative):
    length = bundle.text_length or SEQ
    return encode_prompt(bundle, prompt, length), encode_prompt(bundle, negative, length)


# ---- one segment is diffusers' pipeline ------------------------------------------------------------------


def test_text_to_video_render_is_wan_pipeline(tmp_path):
    spec = make_spec(tmp_path, sampling={"seed": 11})
    ours = frames(render(spec))
    bundle = load_wan("tiny-wan", field_name="m", device="cpu")
    theirs = diffusers_pipeline(bundle)(
        prompt="a cat in the city", negative_prompt="", height=64, width=64, num_frames=9, num_inference_steps=2, guidance_scale=4.0,
        generator=torch.Generator().manual_seed(11), output_type="np", max_sequence_length=SEQ,
    ).frames[0]  # fmt: skip
    assert len(ours) == 9
    assert max(np.abs(a - b).max() for a, b in zip(ours, quantised(theirs), strict=True)) <= 1


def test_image_to_video_render_is_wan_i2v_pipeline_with_last_image(tmp_path):
    """init.image and a keyframe image on the segment's last frame: WanImageToVideoPipeline's first and last
    frame (FLF2V layout)."""
    start, end = picture(1), picture(2)
    spec = make_spec(
        tmp_path, init={"image": save(tmp_path, start, "start.png")},
        videomodel={"model": "tiny-wan-flf2v", "keyframes": [{"frame": 8, "image": save(tmp_path, end, "end.png")}]},
    )  # fmt: skip
    ours = frames(render(spec))
    bundle = load_wan("tiny-wan-flf2v", field_name="m", device="cpu")
    embeds, negative = _embeds(bundle, "a cat in the city", "")
    theirs = diffusers_pipeline(bundle)(
        image=start, last_image=end, prompt_embeds=embeds, negative_prompt_embeds=negative, height=64, width=64,
        num_frames=9, num_inference_steps=2, guidance_scale=4.0, generator=torch.Generator().manual_seed(5),
        output_type="np",
    ).frames[0]  # fmt: skip
    assert max(np.abs(a - b).max() for a, b in zip(ours, quantised(theirs), strict=True)) <= 1


# ---- segments ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chained(tmp_path_factory):
    """tiny-wan-i2v, segments of 5 frames with 2 frames of overlap (3 new each), 12 frames, the prompt
    changing at frame 4 (segment 1's first new frame)."""
    tmp_path = tmp_path_factory.mktemp("chained")
    spec = make_spec(
        tmp_path, init={"image": save(tmp_path, picture(3), "start.png")},
        animation={"max_frames": 12}, sampling={"cfg": "0:(4), 4:(6)"},
        videomodel={"model": "tiny-wan-i2v", "segment_frames": 5, "overlap": 2},
        prompts={"0": "a cat in the city", "4": "a dog on the sea"},
    )  # fmt: skip
    return spec, render(spec)


def test_each_segment_is_conditioned_on_the_last_frames_with_its_own_prompt_and_cfg(chained):
    spec, result = chained
    got = frames(result)
    assert len(got) == 12
    bundle = load_wan("tiny-wan-i2v", field_name="m", device="cpu")
    # segment 1: border 3, covers frames 2..6, frames 2 and 3 known, 4..6 new; plan at frame 4
    known = {0: PIL.Image.fromarray(got[2].astype(np.uint8)), 1: PIL.Image.fromarray(got[3].astype(np.uint8))}
    embeds, negative = _embeds(bundle, "a dog on the sea", "")
    seed = build_plan(spec)[4].seed
    settings = WanSettings(num_frames=5, height=64, width=64, num_inference_steps=2, guidance_scale=6.0,
                           max_sequence_length=512)  # fmt: skip
    segment = sample_segment(
        bundle, embeds, negative, settings, generator=torch.Generator().manual_seed(seed), known=known
    )
    expected = quantised(segment.numpy())
    for index in (4, 5, 6):
        assert np.abs(got[index] - expected[index - 2]).max() <= 1


@pytest.mark.parametrize("kept", [8, 5, 1])  # restarts at 6, 3, 0
def test_resume_restarts_at_a_segment_border_with_identical_frames(chained, tmp_path, kept):
    _, result = chained
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    for path in sorted((run / "frames").glob("*.png"))[kept:]:
        path.unlink()
    resumed = resume(run)
    assert resumed.resumed_from == (kept - 1) // 3 * 3
    assert all(np.array_equal(a, b) for a, b in zip(frames(result), frames(resumed), strict=True))


def test_loop_conditions_the_frame_after_the_last_on_frame_zero(tmp_path, monkeypatch):
    """The last segment is conditioned on frame 0 one frame after the last (first-last-frame with frame 0),
    and the seam (last frame -> frame 0) moves no more than the clip does from frame to frame. (On random
    weights conditioning changes little, so the seam score alone says little: the conditioning is checked.)"""
    from flipbook.sampling import wan

    calls = []
    original = wan.sample_segment

    def spy(*args, **kwargs):
        calls.append(dict(kwargs["known"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(wan, "sample_segment", spy)
    spec = make_spec(
        tmp_path, init={"image": save(tmp_path, picture(4), "start.png")}, animation={"max_frames": 12},
        videomodel={"model": "tiny-wan-flf2v", "segment_frames": 9, "loop": True},
    )  # fmt: skip
    got = frames(render(spec))
    assert len(got) == 12 and len(calls) == 2
    # segment 1: border 8 covers frames 8..12; frame 12 is frame 0 again (never written)
    assert sorted(calls[1]) == [0, 4]
    assert np.array_equal(np.asarray(calls[1][4]), got[0].astype(np.uint8))
    within = np.abs(np.diff(np.stack(got), axis=0)).mean(axis=(1, 2, 3))
    assert np.abs(got[0] - got[-1]).mean() <= within.max()


# ---- rules ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sections", "field", "nearest"),
    [
        ({"videomodel": {"segment_frames": 10}}, "videomodel.segment_frames", "9 and 13"),
        ({"animation": {"width": 72}}, "animation.width", "64 and 80"),
        ({"animation": {"height": 8}}, "animation.height", "16"),
        ({"videomodel": {"segment_frames": 9, "loop": True}, "animation": {"max_frames": 9}},
         "animation.max_frames", "8 or 10"),
    ],
)  # fmt: skip
def test_frame_and_size_rules_give_the_nearest_valid_values(tmp_path, sections, field, nearest):
    with pytest.raises(SpecError) as error:
        make_spec(tmp_path, **sections)
    assert error.value.field == field and nearest in str(error.value)


def test_text_to_video_models_make_one_segment_only(tmp_path):
    spec = make_spec(tmp_path, animation={"max_frames": 12})
    with pytest.raises(FlipbookError) as error:
        render(spec)
    assert error.value.field == "animation.max_frames" and "image-to-video" in str(error.value)


def test_a_diffusers_folder_loads_and_is_checked_from_its_configs(tmp_path):
    """A saved WanImageToVideoPipeline folder: image-to-video is known from its configs before loading (a
    spec with no start image is refused in prepare), and it loads to the same model."""
    from flipbook.models.families.wan.loading import takes_images
    from flipbook.runs.render import prepare

    bundle = load_wan("tiny-wan-i2v", field_name="m", device="cpu")
    folder = tmp_path / "wan-i2v"
    diffusers_pipeline(bundle).save_pretrained(folder)
    assert takes_images(str(folder), None, "videomodel.model") is True
    with pytest.raises(FlipbookError) as error:
        prepare(make_spec(tmp_path, videomodel={"model": str(folder)}))
    assert error.value.field == "init.image"
    loaded = load_wan(str(folder), field_name="m", device="cpu")
    assert loaded.source == "folder" and loaded.takes_images
    for name in ("transformer", "vae", "text_encoder", "image_encoder"):
        ours, theirs = getattr(bundle, name).state_dict(), getattr(loaded, name).state_dict()
        assert all(torch.equal(ours[key], theirs[key]) for key in ours), name
    ids = bundle.tokenizer("a cat in the city").input_ids
    assert loaded.tokenizer("a cat in the city").input_ids == ids


def test_image_to_video_models_read_512_prompt_tokens(tmp_path):
    spec = make_spec(
        tmp_path, init={"image": save(tmp_path, picture(1), "s.png")}, videomodel={"model": "tiny-wan-i2v"}
    )
    spec = spec.model_copy(
        update={"videomodel": spec.videomodel.model_copy(update={"max_sequence_length": 64})}
    )
    with pytest.raises(SpecError) as error:
        render(spec)
    assert error.value.field == "videomodel.max_sequence_length" and "512" in str(error.value)


def test_keyframe_images_past_the_last_frame_are_not_used_and_the_summary_says_so(tmp_path):
    from flipbook.spec.summary import summarize

    image = save(tmp_path, picture(2), "k.png")
    spec = make_spec(tmp_path, init={"image": save(tmp_path, picture(1), "s.png")},
                     videomodel={"model": "tiny-wan-i2v", "keyframes": [{"frame": 20, "image": image}]})  # fmt: skip
    assert "frames 20 are past the last frame (not used)" in summarize(spec)


def test_a_one_segment_loop_ends_on_its_start_image(tmp_path, monkeypatch):
    from flipbook.sampling import wan

    calls = []
    original = wan.sample_segment

    def spy(*args, **kwargs):
        calls.append(dict(kwargs["known"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(wan, "sample_segment", spy)
    start = picture(5)
    spec = make_spec(tmp_path, init={"image": save(tmp_path, start, "s.png")}, animation={"max_frames": 8},
                     videomodel={"model": "tiny-wan-flf2v", "loop": True})  # fmt: skip
    assert len(frames(render(spec))) == 8
    assert sorted(calls[0]) == [0, 8] and calls[0][8] is calls[0][0]


def test_a_one_segment_loop_without_a_start_image_is_refused(tmp_path):
    with pytest.raises(SpecError) as error:
        make_spec(tmp_path, animation={"max_frames": 8}, videomodel={"model": "tiny-ltx", "loop": True})
    assert error.value.field == "videomodel.loop"


def test_fade_seam_adds_the_border_difference_back_with_falling_weights():
    from flipbook.sampling.segments import fade_seam

    frames = torch.full((6, 2, 2, 3), 0.5)
    written = torch.full((2, 2, 3), 0.7)
    out = fade_seam(frames, 1, written, 3)
    assert torch.equal(out[:2], frames[:2])  # the overlap itself is not written again
    assert torch.allclose(
        out[2:5, 0, 0, 0], torch.tensor([0.5 + 0.2 * 3 / 4, 0.5 + 0.2 * 2 / 4, 0.5 + 0.2 / 4])
    )
    assert torch.equal(out[5], frames[5])


def test_blend_frames_fade_out_the_jump_at_segment_borders(tmp_path):
    """Segments of 5 frames (borders 4 and 8): with blend_frames the frame after each border is pulled toward
    the border frame as written, so the jump there shrinks; segment 0 is untouched."""
    start = save(tmp_path, picture(3), "s.png")

    def video(blend):
        spec = make_spec(tmp_path, name=f"blend{blend}", init={"image": start}, animation={"max_frames": 13},
                         videomodel={"model": "tiny-wan-i2v", "segment_frames": 5, "blend_frames": blend})  # fmt: skip
        result = render(spec)
        return np.stack(frames(result)), result

    (plain, _), (blended, result) = video(0), video(3)
    assert np.array_equal(plain[:5], blended[:5])
    for border in (4, 8):
        jump = [np.abs(v[border + 1] - v[border]).mean() for v in (plain, blended)]
        assert jump[1] < jump[0]
    run = tmp_path / "run"  # a resume in the middle of segment 2 restarts at border 8 with the same frames
    shutil.copytree(result.run_dir, run)
    for path in sorted((run / "frames").glob("*.png"))[10:]:
        path.unlink()
    assert np.array_equal(np.stack(frames(resume(run))), blended)

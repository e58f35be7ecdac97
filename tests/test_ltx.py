"""LTX-Video on the tiny built-in: the segment sampler against diffusers' LTXPipeline and LTXConditionPipeline
(max abs difference <= 1e-4, float32, same seeds), its frame/size rules (8k+1 frames, multiples of 32) checked
up front, and the videomodel mode's segments and resume on it."""

from __future__ import annotations

import shutil

import numpy as np
import PIL.Image
import pytest
import torch

from flipbook.errors import SpecError
from flipbook.models.families.ltx.loading import diffusers_pipeline, load_ltx
from flipbook.runs.render import render, resume
from flipbook.sampling.ltx import encode_prompt, sample_segment
from flipbook.sampling.segments import SegmentSettings
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")
SEQ = 32
PROMPT = "a cat in the city"


@pytest.fixture(scope="module")
def bundle():
    return load_ltx("tiny-ltx", field_name="m", device="cpu")


def picture(seed=0, size=64):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    array = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1) + rng.integers(0, 30, (size, size, 3))
    return PIL.Image.fromarray(array.clip(0, 255).astype(np.uint8))


def _ours(bundle, settings, seed, known=None):
    embeds, negative = encode_prompt(bundle, PROMPT, SEQ), encode_prompt(bundle, "blurry", SEQ)
    return sample_segment(
        bundle, embeds, negative, settings, generator=torch.Generator().manual_seed(seed), known=known
    ).numpy()


@pytest.mark.parametrize("guidance", [3.0, 1.0])
def test_text_to_video_matches_ltx_pipeline(bundle, guidance):
    settings = SegmentSettings(num_frames=9, height=64, width=96, num_inference_steps=2, guidance_scale=guidance,
                               max_sequence_length=SEQ, fps=24)  # fmt: skip
    ours = _ours(bundle, settings, 4)
    theirs = diffusers_pipeline(bundle, conditioned=False)(
        prompt=PROMPT, negative_prompt="blurry", height=64, width=96, num_frames=9, frame_rate=24,
        num_inference_steps=2, guidance_scale=guidance, generator=torch.Generator().manual_seed(4),
        output_type="np", max_sequence_length=SEQ,
    ).frames[0]  # fmt: skip
    assert ours.shape == theirs.shape == (9, 64, 96, 3)
    assert np.abs(ours - theirs).max() <= 1e-4


def test_images_at_frames_match_ltx_condition_pipeline(bundle):
    """Images at frames 0 and 16 as LTXConditionPipeline's conditions (its image-list shortcut keeps only the
    first image when strength is one number: diffusers 0.42 sizes the lists by ``video``)."""
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    first, last = picture(1), picture(2)
    settings = SegmentSettings(num_frames=17, height=64, width=64, num_inference_steps=2, guidance_scale=3.0,
                               max_sequence_length=SEQ, fps=25)  # fmt: skip
    ours = _ours(bundle, settings, 6, {0: first, 16: last})
    theirs = diffusers_pipeline(bundle, conditioned=True)(
        conditions=[LTXVideoCondition(image=first, frame_index=0), LTXVideoCondition(image=last, frame_index=16)],
        prompt=PROMPT, negative_prompt="blurry",
        height=64, width=64, num_frames=17, frame_rate=25, num_inference_steps=2, guidance_scale=3.0,
        generator=torch.Generator().manual_seed(6), output_type="np", max_sequence_length=SEQ,
    ).frames[0]  # fmt: skip
    assert np.abs(ours - theirs).max() <= 1e-4


def make_spec(tmp_path, **sections):
    data = {
        "model": {"device": "cpu"},
        "sampling": {"steps": 2, "seed": 5, "cfg": 3.0},
        "animation": {"mode": "videomodel", "max_frames": 9, "width": 64, "height": 64, "fps": 25},
        "videomodel": {"model": "tiny-ltx", "segment_frames": 9, "max_sequence_length": SEQ},
        "prompts": {"0": PROMPT},
        "output": {"dir": str(tmp_path), "name": "ltx", "formats": ["png"]},
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
def test_ltx_frame_and_size_rules(tmp_path, sections, field, nearest):
    with pytest.raises(SpecError) as error:
        make_spec(tmp_path, **sections)
    assert error.value.field == field and "LTX-Video" in str(error.value) and nearest in str(error.value)


def test_segments_chain_and_resume_identically_on_ltx(tmp_path):
    """Text to video for segment 0, then segments of 9 frames conditioned on the last 2 frames; a resume
    from the middle gives the same frames."""
    spec = make_spec(tmp_path, animation={"max_frames": 16}, videomodel={"overlap": 2})
    result = render(spec)
    frames = [np.asarray(PIL.Image.open(p)) for p in result.frames]
    assert len(frames) == 16
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    for path in sorted((run / "frames").glob("*.png"))[10:]:
        path.unlink()
    resumed = resume(run)
    assert resumed.resumed_from == 7
    again = [np.asarray(PIL.Image.open(p)) for p in resumed.frames]
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))


@pytest.mark.parametrize("model", ["tiny", "tiny-ltx"])
def test_the_bench_case_times_flipbook_against_the_family_pipeline(tmp_path, model):
    import json

    from flipbook.bench import run_case

    table = run_case("videomodel", model=model, width=64, height=64, steps=2, runs=1, sampler="Euler",
                     device="cpu", dtype="auto", out=tmp_path, frames=None)  # fmt: skip
    name = "tiny-wan" if model == "tiny" else model
    assert name in table
    result = json.loads(next(tmp_path.glob(f"videomodel-{name}-*.json")).read_text())
    assert (
        result["frames"] == 9
        and result["flipbook_over_diffusers"] > 0
        and 0 < result["transformer_share"] < 1
    )
    from flipbook.modes.videomodel.bench import SWITCHES

    assert set(result["switches"]) == set(SWITCHES) and "| group offload, blocks |" in table
    assert all(s["s_per_clip"] > 0 and s["peak_gib"] > 0 for s in result["switches"].values())


def test_ltx_needs_two_steps_per_segment(tmp_path):
    with pytest.raises(SpecError) as error:
        from flipbook.spec.plan import build_plan

        build_plan(make_spec(tmp_path, sampling={"steps": 1}))
    assert error.value.field == "sampling.steps" and "LTX-Video" in str(error.value)

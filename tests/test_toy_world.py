"""The toy world: captions parse back to their scenes, pictures are deterministic, the judge sees the truth."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.toy.judge import judge, look
from flipbook.toy.world import (
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    caption,
    coverage,
    is_held_out,
    parse_caption,
    render,
    sample_scene,
    scene_from_caption,
)

scenes = st.builds(
    lambda colour, shape, size, position, background, jitter: (
        Scene(
            colour, shape, size, position, tuple(c for c in background if c != colour) or ("white",), *jitter
        )
        if colour != "white" or "white" not in background
        else Scene(colour, shape, size, position, ("black",), *jitter)
    ),
    st.sampled_from(list(COLOURS)),
    st.sampled_from(SHAPES),
    st.sampled_from(list(SIZES)),
    st.sampled_from(list(POSITIONS)),
    st.lists(st.sampled_from(list(COLOURS)), min_size=1, max_size=2, unique=True),
    st.tuples(*(st.floats(-2, 2),) * 2, st.floats(-1, 1)),
)


@given(scenes, st.booleans(), st.booleans(), st.booleans())
def test_captions_parse_back_to_their_attributes(scene, size, position, background):
    stated = parse_caption(caption(scene, size=size, position=position, background=background))
    assert stated.pop("colour") == scene.colour
    assert stated.pop("shape") == scene.shape
    assert stated.pop("size", None) == (scene.size if size else None)
    assert stated.pop("position", None) == (scene.position if position else None)
    assert stated.pop("background", None) == (scene.background if background else None)
    assert not stated


@given(st.text(max_size=40))
def test_text_outside_the_grammar_is_refused_or_parsed_consistently(text):
    try:
        stated = parse_caption(text)
    except ValueError:
        return
    assert stated["colour"] in COLOURS and stated["shape"] in SHAPES


@pytest.mark.parametrize(
    "text", ["a red", "a red circle,", "a huge red circle", "red circle", "a red circle, background"]
)
def test_broken_captions_are_refused(text):
    with pytest.raises(ValueError, match="not a caption"):
        parse_caption(text)


def test_pictures_are_deterministic_from_the_seed():
    first = [render(sample_scene(np.random.default_rng([3, i]))) for i in range(4)]
    again = [render(sample_scene(np.random.default_rng([3, i]))) for i in range(4)]
    other = [render(sample_scene(np.random.default_rng([4, i]))) for i in range(4)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_held_out_scenes_are_kept_apart():
    rng = np.random.default_rng(0)
    assert not any(is_held_out(sample_scene(rng, held_out=False)) for _ in range(300))
    assert all(is_held_out(sample_scene(rng, held_out=True)) for _ in range(30))


def test_the_judge_sees_the_ground_truth():
    rng = np.random.default_rng(11)
    for _ in range(400):
        scene = sample_scene(rng)
        assert all(judge(render(scene), caption(scene)).values()), caption(scene)


@settings(max_examples=60, deadline=None)
@given(scenes)
def test_the_judge_sees_any_scene(scene):
    assert all(judge(render(scene), caption(scene)).values())


def test_the_judge_notices_what_is_wrong():
    picture = render(
        scene_from_caption("a large red circle on the left, blue background", np.random.default_rng(0))
    )
    verdict = judge(picture, "a small green star on the right, yellow background")
    assert not any(verdict.values())
    assert look(np.zeros((64, 64, 3), np.uint8)).shape is None  # no shape in a plain picture


@settings(max_examples=40)
@given(scenes)
def test_coverage_is_where_the_picture_shows_the_shape(scene):
    """The shape's coverage is 1 inside it, 0 on the background, and pixels it fully covers have its colour."""
    picture, covered = render(scene).astype(int), coverage(scene)
    assert covered.shape == picture.shape[:2] and covered.min() >= 0.0 and covered.max() == 1.0
    inside = covered == 1.0
    assert (picture[inside] == COLOURS[scene.colour]).all()
    outside = picture[covered == 0.0]
    colours = np.array([COLOURS[name] for name in scene.background])
    assert (outside[:, None, :] == colours[None]).all(axis=-1).any(axis=-1).mean() > 0.99

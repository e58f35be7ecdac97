"""Property tests: whatever a user writes, loading a spec raises FlipbookError or nothing else."""

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flipbook.errors import FlipbookError, SpecError
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan

SCHEDULE_CHARS = string.digits + "().:, +-*/%tmaxfspiencolrwhd_`'\"<>=!|&[]{}\\"
schedule_text = st.text(alphabet=SCHEDULE_CHARS, max_size=60)
scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20))
value = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def load(data):
    """Load and, when valid, plan: the two steps that run before any model is loaded."""
    try:
        spec = spec_from_data(data)
        build_plan(spec.with_seed())
    except FlipbookError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strength=st.one_of(schedule_text, value),
    cfg=st.one_of(schedule_text, value),
    prompts=st.one_of(
        st.text(max_size=80),
        st.dictionaries(st.text(alphabet=SCHEDULE_CHARS, max_size=10), st.text(max_size=30), max_size=4),
        value,
    ),
    frames=st.one_of(st.integers(-5, 300), value),
)
def test_any_field_values_raise_only_flipbook_errors(strength, cfg, prompts, frames):
    load({
        "animation": {"strength": strength, "max_frames": frames, "width": 64, "height": 64},
        "sampling": {"cfg": cfg, "seed": 1, "steps": 10},
        "prompts": prompts,
    })  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=12), value, max_size=6))
def test_any_document_raises_only_flipbook_errors(data):
    load(data)


@pytest.mark.parametrize(
    ("settings", "field", "detail"),
    [
        ({"animation": {"width": 1024}, "post": {"upscale": 16}}, "post.upscale", "= 16384"),
        ({"animation": {"height": 8192}, "post": {"upscale": 1.5}}, "post.upscale", "= 12288"),
        (
            {"animation": {"max_frames": 10000, "fps": 4}, "post": {"interpolate": 16}},
            "post.interpolate",
            "160000",
        ),
    ],
)
def test_the_finished_animation_is_bounded_as_its_factors_are(settings, field, detail) -> None:
    """Each factor within its own range (an 8192 frame, upscale 16, 100000 frames, interpolate 16) could still
    ask for a 131072-pixel frame or 1.6 million frames."""
    data = {"prompts": {"0": "a cat"}, **settings}
    with pytest.raises(SpecError) as error:
        spec_from_data(data)
    assert error.value.field == field and detail in str(error.value)
    at_the_bound = {"prompts": {"0": "a cat"}, "animation": {"width": 512}, "post": {"upscale": 16}}
    assert spec_from_data(at_the_bound).post.upscale == 16

"""Schedules in the spec and the per-frame plan (pure: no models)."""

import numpy as np
import pytest

from flipbook.errors import FlipbookError
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan


def spec(**animation):
    sampling = animation.pop("sampling", {})
    data = {
        "sampling": {"steps": 10, "seed": 100, **sampling},
        "animation": {"max_frames": 31, "fps": 10, **animation},
        "prompts": {"0": "a", "10": "b"},
    }
    return spec_from_data(data)


def test_constant_values_fill_every_frame():
    plan = build_plan(spec(strength=0.6))
    assert (
        len(plan) == 31
        and {f.strength for f in plan.frames} == {0.6}
        and {f.cfg for f in plan.frames} == {7.0}
    )
    assert [f.seed for f in plan.frames[:3]] == [100, 101, 102]
    assert plan[9].prompt_key == 0 and plan[10].prompt_key == 10


def test_deforum_schedule_strings_interpolate_between_keyframes():
    plan = build_plan(spec(strength="0:(0.4), 30:(0.7)", sampling={"cfg": "0:(7), 10:(5)"}))
    assert plan[0].strength == pytest.approx(0.4) and plan[15].strength == pytest.approx(0.55)
    assert plan[30].strength == pytest.approx(0.7)
    assert plan[5].cfg == pytest.approx(6.0) and plan[20].cfg == pytest.approx(
        5.0
    )  # holds after the last key


def test_expressions_use_t_and_the_seed():
    plan = build_plan(spec(strength="0:(0.5 + 0.1*sin(2*pi*t/10))"))
    expected = 0.5 + 0.1 * np.sin(2 * np.pi * np.arange(31) / 10)
    assert np.allclose([f.strength for f in plan.frames], expected)


def test_table_form_with_interpolation():
    plan = build_plan(spec(strength={"schedule": "0:(0.4), 10:(0.6), 30:(0.4)", "interpolation": "step"}))
    assert plan[9].strength == pytest.approx(0.4) and plan[10].strength == pytest.approx(0.6)


def test_per_frame_list_must_match_the_frame_count():
    with pytest.raises(FlipbookError, match="animation.strength"):
        build_plan(spec(strength=[0.5, 0.6]))


def test_schedule_syntax_errors_are_caught_at_load_with_a_caret():
    with pytest.raises(FlipbookError) as error:
        spec(strength="0:(0.5), 10:(__import__('os'))")
    message = str(error.value)
    assert message.startswith("animation.strength:") and "^" in message


@pytest.mark.parametrize(
    ("animation", "field", "frame"),
    [
        ({"strength": "0:(0.5), 20:(1.5)"}, "animation.strength", 11),  # 0.5 + 0.05 t passes 1 after frame 10
        ({"sampling": {"cfg": "0:(7), 30:(-1)"}}, "sampling.cfg", 27),
    ],
)
def test_values_out_of_range_name_the_field_and_frame(animation, field, frame):
    with pytest.raises(FlipbookError) as error:
        build_plan(spec(**animation))
    assert error.value.field == field and f"frame {frame}" in str(error.value)


def test_plan_needs_a_chosen_seed():
    with pytest.raises(ValueError, match="with_seed"):
        build_plan(spec(sampling={"seed": -1}))


@pytest.mark.parametrize(
    ("sampling", "expected"),
    [
        ({}, [100, 101, 102, 103, 104]),
        ({"seed_behavior": "fixed"}, [100] * 5),
        ({"seed_behavior": "iter", "seed_iter_n": 2}, [100, 101, 101, 102, 102]),
        ({"seed_behavior": "ladder"}, [100, 102, 101, 103, 102]),
        ({"seed_behavior": "alternate"}, [100, 101, 100, 101, 100]),
        # numbers interpolate, also in a seed schedule (Deforum): frame 3 is int((7 + 104) / 2)
        ({"seed_behavior": "schedule", "seed_schedule": "0:(s), 2:(7), 4:(s+t)"}, [100, 100, 7, 55, 104]),
    ],
)
def test_seed_behaviours_follow_deforum(sampling, expected):
    plan = build_plan(spec(sampling=sampling))
    assert [f.seed for f in plan.frames[:5]] == expected


def test_seed_schedule_is_required_for_schedule_behaviour():
    with pytest.raises(FlipbookError, match="seed_schedule"):
        build_plan(spec(sampling={"seed_behavior": "schedule"}))


def prompt_spec(prompts, **extra):
    return spec_from_data(
        {"sampling": {"seed": 5}, "animation": {"max_frames": 11}, "prompts": prompts, **extra}
    )


def test_deforum_prompts_with_neg_globals_and_expression_keys():
    plan = build_plan(
        prompt_spec(
            {"0": "a forest --neg fog", "max_f-5": "a city"},
            positive_prompt="oil painting,",
            negative_prompt="blurry",
        )
    )
    assert plan[0].prompt == "oil painting, a forest" and plan[0].negative_prompt == "fog blurry"
    assert (
        plan[5].prompt_key == 5
        and plan[5].prompt == "oil painting, a city"
        and plan[5].negative_prompt == "blurry"
    )


def test_first_prompt_reaches_back_to_frame_zero():
    plan = build_plan(prompt_spec({"3": "late start"}))
    assert plan[0].prompt == "late start" and plan[0].prompt_key == 3


def test_animatediff_lines_with_head_and_tail():
    plan = build_plan(prompt_spec("masterpiece\n0: a cat\n6: a dog\nsunny"))
    assert plan[0].prompt == "masterpiece, a cat, sunny" and plan[7].prompt == "masterpiece, a dog, sunny"


def test_backtick_math_is_evaluated_per_frame():
    plan = build_plan(prompt_spec({"0": "(cherry:`1+t/max_f`)"}))
    assert (
        plan[0].prompt == "(cherry:1)"
        and plan[5].prompt == "(cherry:1.5)"
        and plan[10].prompt == "(cherry:2)"
    )


@pytest.mark.parametrize("prompts", ["0: a\n0: b", {"0": "(x:`1+`)"}, {"0": "`t"}, {}])
def test_prompt_syntax_errors_are_found_at_load(prompts):
    with pytest.raises(FlipbookError, match="prompts"):
        prompt_spec(prompts)


@pytest.mark.parametrize("steps", [1, 3, 10, 49])
def test_feedback_frames_always_get_one_denoising_step_like_a1111(steps):
    plan = build_plan(spec(strength=0.99, sampling={"steps": steps}))
    assert all(int(steps * f.denoise) == 1 for f in plan.frames)
    assert build_plan(spec(strength=0.5, sampling={"steps": 10}))[3].denoise == pytest.approx(0.5)


def test_sampler_schedule_holds_each_name_until_the_next_key():
    plan = build_plan(spec(sampling={"sampler": '0:("Euler a"), 10:("DDIM"), max_f:(UniPC)'}))
    assert [plan[i].sampler for i in (0, 9, 10, 29, 30)] == ["Euler a", "Euler a", "DDIM", "DDIM", "UniPC"]


def test_unknown_sampler_inside_a_schedule_is_named():
    with pytest.raises(FlipbookError, match="'DDIMX' is not a sampler"):
        spec(sampling={"sampler": '0:("Euler a"), 10:("DDIMX")'})


def test_camera_ranges_are_checked_only_for_the_schedules_the_mode_uses():
    from flipbook.errors import SpecError
    from flipbook.spec.load import spec_from_data

    def plan(mode, zoom="0:(-1)"):
        data = {"prompts": {"0": "x"}, "sampling": {"seed": 1}, "animation": {"mode": mode, "max_frames": 3}}
        return build_plan(spec_from_data({**data, "camera": {"zoom": zoom}}))

    assert plan("3d")[0].camera["zoom"] == -1.0  # 3D ignores zoom, as Deforum does
    assert plan("travel")[0].camera["zoom"] == -1.0
    with pytest.raises(SpecError) as error:
        plan("2d")
    assert error.value.field == "camera.zoom" and "frame 0" in str(error.value)
    # 2D zoom 0 is Deforum's degenerate warp (scale 0): accepted, rendered as Deforum renders it
    assert plan("2d", "0:(0)")[0].camera["zoom"] == 0.0


@pytest.mark.parametrize("strength", [0.0, 0.5, 0.99, 0.999999, float(np.nextafter(1.0, 0.0))])
def test_denoise_is_one_step_at_least_and_never_above_one(strength):
    """steps = 1 gave denoise 1.000000001 (a nudge of 1e-9), which passed validate and then failed in the
    sampler; every step count must give a denoise in (0, 1] that runs at least one step."""
    from flipbook.spec.plan import denoise_for

    steps = np.arange(1, 1001)
    denoise = denoise_for(strength, steps)
    assert np.all((denoise > 0) & (denoise <= 1))
    assert np.all(np.floor(steps * denoise) >= 1)
    assert denoise_for(strength, 1) == 1.0


def _many_keys_spec(count: int):
    return spec_from_data(
        {
            "sampling": {"seed": 1},
            "animation": {"max_frames": count, "prompt_interpolation": "lerp"},
            "prompts": {
                str(i): f"prompt {i} (x:`1+t/max_f`)" if i % 2 else f"prompt {i}" for i in range(count)
            },
        }
    )


def _peak_bytes(function) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_plan_memory_grows_linearly_with_frames_and_keyframes():
    """The plan kept a list of every frame's text per keyframe (frames x keyframes: 100000 keys took 20 GB);
    ten times the keys and frames must cost about ten times the memory, not a hundred."""
    small, large = _many_keys_spec(300), _many_keys_spec(3000)
    build_plan(small)  # imports and caches out of the measurement
    ratio = _peak_bytes(lambda: build_plan(large)) / _peak_bytes(lambda: build_plan(small))
    assert ratio < 20, ratio


def test_prompt_keyframes_are_capped_in_the_spec():
    from flipbook.spec.schedules import MAX_KEYFRAMES

    table = {str(i): "x" for i in range(MAX_KEYFRAMES + 1)}
    with pytest.raises(FlipbookError, match=f"at most {MAX_KEYFRAMES} prompt keyframes") as error:
        spec_from_data({"prompts": table})
    assert error.value.field == "prompts" and len(str(error.value)) < 500
    lines = "\n".join(f"{i}: x" for i in range(MAX_KEYFRAMES + 1))
    with pytest.raises(FlipbookError, match=f"at most {MAX_KEYFRAMES} prompt keyframes") as error:
        spec_from_data({"prompts": lines})
    assert len(str(error.value)) < 500


@pytest.mark.parametrize(
    ("prompts", "unused_at_100"),
    [
        ({"0": "a", "40": "b", "max_f+5": "c"}, "'max_f+5' (frame 104)"),
        ("head\n0: a\n40: b\n35: c\ntail", None),
    ],
)
def test_prompt_keyframes_beyond_the_animation_are_a_warning(prompts, unused_at_100):
    """Keys past max_frames were dropped without a word (interpolate then renders identical frames)."""
    from flipbook.spec.summary import summarize

    data = {"sampling": {"seed": 1}, "animation": {"max_frames": 31}, "prompts": prompts}
    (warning,) = build_plan(spec_from_data(data)).warnings
    assert "2 keyframes outside frames 0..30 (animation.max_frames = 31) are not used" in warning
    assert "'40'" in warning
    assert f"warning: {warning}" in summarize(spec_from_data(data)).splitlines()
    longer = build_plan(spec_from_data({**data, "animation": {"max_frames": 100}})).warnings
    assert longer == (() if unused_at_100 is None else (longer[0],))
    assert unused_at_100 is None or unused_at_100 in longer[0]


def _video_spec(**video):
    return {
        "sampling": {"seed": 1},
        "animation": {"mode": "video", "max_frames": 12, "fps": 12},
        "init": {"video": "source.mp4"},  # the plan never opens it
        "prompts": {"0": "a"},
        "video": video,
    }


def test_video_schedules_go_through_the_plan_with_audio_variables(tmp_path):
    """video.feedback and noise_multiplier skipped the plan: audio variables failed only in render, values
    were never range-checked and frames.csv and the chart lacked them."""
    import soundfile

    from flipbook.io.plan_chart import chart_series
    from flipbook.runs.run_dir import plan_table

    song = tmp_path / "song.wav"
    t = np.arange(22050) / 22050
    soundfile.write(song, (0.5 * np.sin(2 * np.pi * 220 * t) * (t < 0.5)).astype(np.float32), 22050)
    data = _video_spec(feedback="0:(0.2 + 0.5*amp)", noise_multiplier="0:(1), 11:(1.5)")
    plan = build_plan(spec_from_data({**data, "audio": {"file": str(song)}}))
    feedback = np.array([f.schedules["video.feedback"] for f in plan.frames])
    assert np.allclose(feedback, 0.2 + 0.5 * plan.variables["amp"]) and feedback.max() > feedback.min()
    assert plan[11].schedules["video.noise_multiplier"] == pytest.approx(1.5)
    header, first = plan_table(plan).splitlines()[:2]
    columns = header.split(",")
    assert "video.feedback" in columns and "video.noise_multiplier" in columns
    assert first.split(",")[columns.index("video.noise_multiplier")] == "1"
    assert {"video.feedback", "video.noise_multiplier"} <= set(chart_series(plan))


@pytest.mark.parametrize(
    ("video", "field"),
    [
        ({"feedback": "0:(0.1*beat)"}, "video.feedback"),  # no audio.file: no beat
        ({"feedback": "0:(0.5), 6:(1.5)"}, "video.feedback"),
        ({"noise_multiplier": -1}, "video.noise_multiplier"),
        ({"noise_multiplier": "0:(1), 5:(12)"}, "video.noise_multiplier"),
    ],
)
def test_bad_video_schedules_are_refused_by_the_plan(video, field):
    with pytest.raises(FlipbookError) as error:
        build_plan(spec_from_data(_video_spec(**video)))
    assert error.value.field == field


def test_video_schedules_are_not_columns_of_other_modes():
    plan = build_plan(spec(strength=0.5))
    assert dict(plan[0].schedules) == {} and "zoom" in plan[0].camera


def test_every_schedule_field_of_a_mode_section_is_found_from_the_model():
    """A schedule added to any section goes through the plan with no list to extend."""
    from pydantic import BaseModel

    from flipbook.spec.model import ScheduleValue, Spec
    from flipbook.spec.plan import section_schedule_fields

    fields = section_schedule_fields()
    assert set(fields["video"]) == {"feedback", "noise_multiplier"}
    assert {"zoom", "translation_z", "noise_multiplier", "hybrid_comp_alpha"} <= set(fields["camera"])
    assert "sampling" not in fields and "animation" not in fields

    class Section(BaseModel):
        wobble: ScheduleValue = 0.0
        optional: ScheduleValue | None = None
        plain: float = 1.0

    class Model(Spec):
        extra: Section = Section()

    assert section_schedule_fields(Model)["extra"] == ("wobble", "optional")

"""The ``restyle`` mode's keyframe choice: the pure functions (every nth, automatic with gaps, scene cuts),
the change measure on a synthetic video with a cut, the spec's rules and the plan's keyframe columns."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.bench.frame_interpolation import scene_frames
from flipbook.errors import FlipbookError
from flipbook.io.writers import write_mp4
from flipbook.propagation import keyframes as choice
from flipbook.runs.run_dir import plan_table
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan


def clip_with_cut(before=8, after=4, size=64):
    """A textured square moving over a panning textured background; after ``before`` frames, another shot."""
    other = [
        np.ascontiguousarray(255 - frame[::-1, :, [2, 0, 1]]) for frame in scene_frames(after, size, size)
    ]
    return scene_frames(before, size, size) + other


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory):
    return write_mp4(clip_with_cut(), tmp_path_factory.mktemp("src") / "cut.mp4", fps=12, crf=0)


def restyle_spec(video, **restyle):
    return spec_from_data(
        {
            "sampling": {"seed": 3},
            "animation": {"mode": "restyle", "max_frames": 12, "width": 64, "height": 64},
            "prompts": {"0": "an oil painting"},
            "init": {"video": str(video)},
            "restyle": restyle,
        }
    )


def keyframes(spec):
    plan = build_plan(spec)
    return [f.index for f in plan.frames if f.schedules["restyle.keyframe"]], plan


# ---- the change measure and cuts ---------------------------------------------------------------------------


def test_motion_changes_little_and_a_cut_a_lot():
    signatures = [choice.signature(frame) for frame in clip_with_cut()]
    steps = [choice.change(a, b) for a, b in zip(signatures, signatures[1:], strict=False)]
    assert max(steps[:7] + steps[8:]) < 0.1
    assert steps[7] > 0.4
    assert choice.scene_cuts(signatures, 0.4) == [8]
    assert choice.scene_cuts(signatures, 1.0) == []


# ---- the choice (pure) -------------------------------------------------------------------------------------


def test_every_nth_with_cuts_and_frame_zero():
    assert choice.every_nth(12, 5) == [0, 5, 10]
    assert choice.with_cuts([0, 5, 10], [8], 12) == [0, 5, 8, 10]
    assert choice.with_cuts([3, 7], [], 12) == [0, 3, 7]


def test_automatic_honours_threshold_and_gaps():
    drift = lambda a, b: 0.05 * (b - a)  # noqa: E731  the source drifts steadily
    assert choice.automatic(20, drift, threshold=0.2, min_gap=2, max_gap=10) == [0, 5, 10, 15]
    assert choice.automatic(20, drift, threshold=0.2, min_gap=7, max_gap=10) == [0, 7, 14]
    assert choice.automatic(20, drift, threshold=0.9, min_gap=2, max_gap=6) == [0, 6, 12, 18]
    # a cut forces a keyframe, even right after another one
    assert choice.automatic(20, drift, threshold=0.2, min_gap=4, max_gap=10, cuts=[6, 7]) == [
        0,
        5,
        6,
        7,
        12,
        17,
    ]


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(1, 60),
    changes=st.lists(st.floats(0, 1), min_size=60, max_size=60),
    threshold=st.floats(0.01, 1),
    gaps=st.tuples(st.integers(1, 12), st.integers(1, 12)).map(sorted),
    cuts=st.sets(st.integers(1, 59)),
)
def test_automatic_keyframes_keep_their_rules(count, changes, threshold, gaps, cuts):
    min_gap, max_gap = gaps
    changed = lambda a, b: changes[b]  # noqa: E731
    keys = choice.automatic(count, changed, threshold=threshold, min_gap=min_gap, max_gap=max_gap, cuts=cuts)
    assert keys[0] == 0 and keys == sorted(set(keys)) and all(k < count for k in keys)
    assert {c for c in cuts if c < count} <= set(keys)
    for before, key in zip(keys, keys[1:], strict=False):
        assert key - before <= max_gap
        assert key in cuts or key - before >= min_gap
        assert key in cuts or key - before == max_gap or changes[key] > threshold
    assert count - keys[-1] <= max_gap


# ---- the spec and the plan ---------------------------------------------------------------------------------


def test_the_cut_forces_a_keyframe_in_every_choice(cut_video):
    every, plan = keyframes(restyle_spec(cut_video, keyframe_every=5))
    assert every == [0, 5, 8, 10]
    assert [f.index for f in plan.frames if f.schedules["restyle.scene_cut"]] == [8]
    listed, _ = keyframes(restyle_spec(cut_video, keyframes="list", keyframe_list=[4, 11]))
    assert listed == [0, 4, 8, 11]
    auto, _ = keyframes(restyle_spec(cut_video, keyframes="auto", threshold=0.3, min_gap=2, max_gap=6))
    assert auto == [0, 6, 8]  # the gap reaches max_gap at 6, the cut at 8
    drifted, _ = keyframes(restyle_spec(cut_video, keyframes="auto", threshold=0.04, min_gap=2, max_gap=30))
    assert drifted == [0, 4, 8]  # the source has drifted past the threshold by frame 4
    uncut, _ = keyframes(restyle_spec(cut_video, keyframe_every=5, scene_cut=1.0))
    assert uncut == [0, 5, 10]


def test_keyframes_are_plan_columns_in_frames_csv_and_the_summary(cut_video):
    from flipbook.spec.summary import summarize

    spec = restyle_spec(cut_video, keyframe_every=5)
    header, *rows = plan_table(build_plan(spec)).splitlines()
    names = header.split(",")
    marks = [row.split(",")[names.index("restyle.keyframe")] for row in rows]
    assert [i for i, mark in enumerate(marks) if mark == "1"] == [0, 5, 8, 10]
    assert "keyframes (every 5 frames): 4 of 12: 0, 5, 8, 10; scene cuts at 8" in summarize(spec)


def test_flipbook_plan_charts_the_keyframes(cut_video, tmp_path, run_cli):
    spec = tmp_path / "restyle.toml"
    spec.write_text(
        f'[animation]\nmode = "restyle"\nmax_frames = 12\n[prompts]\n0 = "x"\n[init]\nvideo = "{cut_video}"\n'
    )
    code, out, err = run_cli("plan", spec, "-o", tmp_path / "plan.png")
    assert code == 0, err
    assert (tmp_path / "plan.png").is_file()


@pytest.mark.parametrize(
    ("restyle", "field"),
    [
        ({"keyframes": "list", "keyframe_list": [0, 12]}, "restyle.keyframe_list"),
        ({"keyframe_list": [-1]}, "restyle.keyframe_list"),
        ({"min_gap": 8, "max_gap": 4}, "restyle.max_gap"),
        ({"scene_cut": 0}, "restyle.scene_cut"),
        ({"grid": 5}, "restyle.grid"),
    ],
)
def test_bad_keyframe_settings_name_the_field(cut_video, restyle, field):
    with pytest.raises(FlipbookError) as error:
        build_plan(restyle_spec(cut_video, **restyle))
    assert error.value.field == field


def test_restyle_needs_a_source_covering_the_frames(cut_video):
    with pytest.raises(FlipbookError) as error:
        spec_from_data({"prompts": {"0": "x"}, "animation": {"mode": "restyle"}})
    assert error.value.field == "init.video"
    with pytest.raises(FlipbookError) as error:
        build_plan(spec_from_data(restyle_spec(cut_video).model_dump(mode="json") | {"animation": {
            "mode": "restyle", "max_frames": 13}}))  # fmt: skip
    assert error.value.field == "animation.max_frames"

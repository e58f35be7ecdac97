"""Deforum schedules read as the Deforum that wrote the file reads them.

The expected per-frame values below are worked out by hand from Deforum's published code, not computed with it:
``parse_key_frames`` and ``get_inbetweens`` in sd-webui-deforum's ``scripts/deforum_helpers/animation_key_frames.py``
(the split on "," and ":" since merge 187e2e6f, 2023-03-14; the regular expression
``(\\d+):\\s*\\((.*?)\\)(,\\s?|\\s?$)`` before it and in the notebook's ``helpers/animation.py``). In both, a value is a
number when it matches ``[+-]?[0-9]*(\\.[0-9]+)?`` (the split parser first drops every quote and parenthesis); the
series is NaN except at number keys and over expression spans (each expression evaluated with ``t`` at every
frame from its key to the next one), its first and last frames are set to the first and last values, and the
rest is linear interpolation.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.errors import FlipbookError
from flipbook.spec.deforum import deforum_to_spec_data, import_settings
from flipbook.spec.deforum_keyframes import (
    DeforumVersion,
    deforum_keyframes,
    deforum_version,
    read_deforum_schedule,
)
from flipbook.spec.deforum_keys import notebook_keys
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan

SPLIT = "86921f79"  # a 2023-09 commit: the split parser
REGEX = "8b54a383"  # 2023-03-11: the first commit to write its id, still with the regular expression


def translation_x(schedule: str, commit: str | None, frames: int, **extra) -> list[float]:
    """The per-frame 2D translation_x flipbook renders for a settings file with this schedule."""
    settings = {"animation_mode": "2D", "max_frames": frames, "W": 64, "H": 64, "prompts": {"0": "a"},
                "translation_x": schedule, "seed": 7, **extra}  # fmt: skip
    if commit:
        settings["deforum_git_commit_id"] = commit
    data, _ = deforum_to_spec_data(settings)
    plan = build_plan(spec_from_data(data))
    return [float(frame.camera["translation_x"]) for frame in plan.frames]


CASES = [
    # (schedule, frames, split parser's values, regular expression's values)
    ("0: 0: (t)", 5, [0, 0, 0, 0, 0], [0, 1, 2, 3, 4]),
    (
        "0:     4:(0.40), 5:(0.40)",
        8,
        [4, 3.28, 2.56, 1.84, 1.12, 0.4, 0.4, 0.4],
        [0.4] * 8,
    ),  # regex: no key 0
    ("0: 0: (0.5*t), 4: 4: (1)", 6, [0, 1, 2, 3, 4, 4], [0, 0.5, 1, 1.5, 1, 1]),
    ("0: ( 5 ), 10: (10)", 12, [5] * 10 + [10, 10], [5] * 10 + [10, 10]),  # " 5 " is an expression: held
    ("0: (0), 10: (t)", 12, list(range(12)), list(range(12))),
    ("-1: (3), 0: (1)", 4, [1, 1, 1, 1], [1, 3, 3, 3]),  # the regex skips the "-": frame 1
    ("0: (5.), 4: (1)", 6, [5, 5, 5, 5, 1, 1], [5, 5, 5, 5, 1, 1]),  # "5." is no number to Deforum: held
]


@pytest.mark.parametrize(("schedule", "frames", "split", "regex"), CASES, ids=[c[0] for c in CASES])
def test_schedules_follow_the_parser_of_the_version_that_wrote_the_file(schedule, frames, split, regex):
    assert np.allclose(translation_x(schedule, SPLIT, frames), split)
    assert np.allclose(translation_x(schedule, REGEX, frames), regex)
    assert np.allclose(translation_x(schedule, None, frames), split)  # no id: current Deforum


def test_seed_schedule_keys_are_expressions_only_for_the_split_parser():
    """Deforum's default seed_schedule: the regular expression finds no quoted max_f keys."""
    schedule = '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)'
    assert deforum_keyframes(schedule, "split") is not None
    reading = read_deforum_schedule("seed_schedule", schedule, DeforumVersion("split", "current Deforum"))
    assert reading == type(reading)(schedule, None)  # flipbook reads it the same: kept as written
    old = read_deforum_schedule("seed_schedule", schedule, DeforumVersion("regex", "the Deforum notebook"))
    assert old.value == "0: (s), 1: (-1)" and "the Deforum notebook" in old.note


def test_a_reading_that_differs_is_said_once_naming_key_version_and_rule():
    settings = {"animation_mode": "3D", "prompts": {"0": "a"}, "deforum_git_commit_id": SPLIT,
                "rotation_3d_x": "0: 0: (0.5*sin(t))"}  # fmt: skip
    data, warnings = import_settings(settings)
    assert data["camera"]["rotation_3d_x"] == 0
    [note] = [w for w in warnings if w.startswith("rotation_3d_x")]
    assert (
        f"Deforum at commit {SPLIT}" in note
        and 'splits keyframes at every ","' in note
        and "'0: (0)'" in note
    )
    data, warnings = import_settings({**settings, "deforum_git_commit_id": REGEX})
    assert data["camera"]["rotation_3d_x"] == "0: (0.5*sin(t))"
    assert any("before March 2023" in w and "KEY:(VALUE)" in w for w in warnings)


def test_commas_inside_calls_break_the_split_parser_and_are_read_as_written():
    settings = {"animation_mode": "2D", "prompts": {"0": "a"}, "zoom": "0:(max(1.0, 1+0.01*t))"}
    data, warnings = import_settings(settings)
    assert data["camera"]["zoom"] == "0:(max(1.0, 1+0.01*t))"
    assert any(w.startswith("zoom: current Deforum") and "can't read" in w for w in warnings)
    data, warnings = import_settings({**settings, "deforum_git_commit_id": REGEX})
    assert data["camera"]["zoom"] == "0:(max(1.0, 1+0.01*t))" and not any(
        w.startswith("zoom") for w in warnings
    )


def test_text_neither_reads_is_one_error_naming_the_key():
    with pytest.raises(FlipbookError) as error:
        deforum_to_spec_data({"animation_mode": "2D", "prompts": {"0": "a"}, "angle": "0: (1) 10: (2)"})
    assert error.value.field == "angle" and "0: (1), 30: (2.5)" in error.value.allowed


def test_sampler_schedules_lose_quotes_as_deforum_reads_them():
    settings = {"prompts": {"0": "a"}, "enable_sampler_scheduling": True,
                "sampler_schedule": "0: ('Euler a'), 5: (\"DDIM\")"}  # fmt: skip
    data, _ = deforum_to_spec_data(settings)
    plan = build_plan(
        spec_from_data({**data, "animation": {**data["animation"], "max_frames": 8}}).with_seed()
    )
    assert [f.sampler for f in plan.frames] == ["Euler a"] * 5 + ["DDIM"] * 3


@pytest.mark.parametrize(
    ("settings", "parser", "label", "multiple"),
    [
        ({"deforum_git_commit_id": "9cc1a013 (Sat Apr 22 16:50:51 2023)"}, "split", "commit 9cc1a013", 8),
        ({"deforum_git_commit_id": "8B54A383"}, "regex", "before March 2023", 8),
        ({"deforum_git_commit_id": "Unknown"}, "split", '"Unknown"', 8),
        ({"sampler": "euler_ancestral", "W": 512}, "regex", "notebook", 64),
        ({"cutn": 1, "sampler": "Euler a"}, "regex", "notebook", 64),
        ({"sampler": 0}, "regex", "late 2022", 8),
        ({"sampler": "Euler a"}, "split", "no deforum_git_commit_id", 8),
    ],
)
def test_which_deforum_wrote_the_file(settings, parser, label, multiple):
    version = deforum_version(settings, notebook_keys())
    assert (version.parser, version.size_multiple) == (parser, multiple) and label in version.label


_PIECES = st.sampled_from(
    [
        "0",
        "1",
        "10",
        "-1",
        "max_f",
        '"max_f-1"',
        ":",
        ",",
        " ",
        "(",
        ")",
        "t",
        "0.5",
        "5.",
        "sin(t)",
        "+",
        "'",
        "*",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=14).map("".join), st.sampled_from(["split", "regex"]))
def test_any_text_is_a_reading_a_none_or_one_flipbook_error(text, parser):
    """The parsers never crash; a schedule is either read (with or without a note) or one FlipbookError."""
    found = deforum_keyframes(text, parser)
    assert found is None or isinstance(found, list)
    try:
        reading = read_deforum_schedule("angle", text, DeforumVersion(parser, "Deforum"))
    except FlipbookError as error:
        assert error.field == "angle"
    else:
        assert reading.note is None or reading.note.startswith("angle: ")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.floats(-100, 100, allow_nan=False).map(lambda v: round(v, 3))),
                min_size=1, max_size=6))  # fmt: skip
def test_plain_schedules_read_the_same_in_every_version(pairs):
    """Well-formed ``N: (number)`` schedules, as Deforum's UI writes them, are kept as written by both parsers."""
    text = ", ".join(f"{frame}: ({value})" for frame, value in pairs)
    for parser in ("split", "regex"):
        assert read_deforum_schedule("zoom", text, DeforumVersion(parser, "Deforum")).note is None

"""The plan chart: which series get a panel, where keyframes are marked, and the PNG written atomically."""

import dataclasses
import os
from collections.abc import Mapping

import numpy as np
import pytest
from PIL import Image

from flipbook.io import plan_chart
from flipbook.io.plan_chart import (
    DPI,
    WIDTH_IN,
    all_series,
    chart_series,
    constant_summary,
    plan_figure,
    plot_plan,
    prompt_keyframes,
    shorten,
)
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan

LONG_PROMPT = "a misty pine forest at dawn, volumetric light, highly detailed"


def make_plan(prompts=None, **animation):
    sampling = animation.pop("sampling", {})
    camera = animation.pop("camera", {})
    data = {
        "sampling": {"steps": 10, "seed": 100, **sampling},
        "animation": {"max_frames": 31, "fps": 10, **animation},
        "prompts": prompts or {"0": "a", "10": "b"},
        "camera": camera,
    }
    return build_plan(spec_from_data(data))


def panels(figure):
    """The figure's main panels (secondary axes for denoise and keyframe labels are children, not panels)."""
    return figure.axes


def test_scheduled_strength_and_cfg_get_their_panels_in_order():
    plan = make_plan(strength="0:(0.65), 30:(0.45)", sampling={"cfg": "0:(7), 20:(5)"})
    series = chart_series(plan)
    assert list(series) == ["cfg", "strength", "denoise"]  # denoise follows strength
    assert np.allclose(series["strength"], [f.strength for f in plan.frames])
    figure = plan_figure(plan)
    assert [ax.get_ylabel() for ax in panels(figure)] == ["cfg", "strength", "denoise (img2img)"]
    assert "constant: seed 100 + frame" in figure.get_suptitle()


def test_png_has_the_expected_width_and_no_temporary_file_left(tmp_path):
    plan = make_plan(strength="0:(0.65), 30:(0.45)", sampling={"cfg": "0:(7), 20:(5)"})
    target = tmp_path / "charts" / "plan.png"
    assert plot_plan(plan, target, title="demo") == target
    with Image.open(target) as image:
        assert image.format == "PNG" and image.width == int(WIDTH_IN * DPI)
        assert image.height > 2 * plan_chart.PANEL_HEIGHT_IN * DPI
    assert os.listdir(target.parent) == ["plan.png"]


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "plan.png"
    target.write_bytes(b"old chart")

    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as half:
            half.write(b"\x89PNG half")
        raise RuntimeError("disk full")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_plan(make_plan(), target)
    assert target.read_bytes() == b"old chart" and os.listdir(tmp_path) == ["plan.png"]


def test_constant_plan_gets_one_panel_that_says_so(tmp_path):
    plan = make_plan(strength=0.6)
    assert chart_series(plan) == {}
    summary = constant_summary(plan)
    assert summary.startswith("seed 100 + frame, sampler Euler a, cfg 7, strength 0.6, denoise 0.4, steps 10")
    assert "zoom 1," in summary and "translation_x 0," in summary  # camera values are listed too
    figure = plan_figure(plan)
    (panel,) = panels(figure)
    text = " ".join(t.get_text() for t in panel.texts).replace("\n", " ")
    assert "constant" in text and "cfg 7" in text and "denoise 0.4" in text and "zoom 1" in text
    assert [line.get_xdata()[0] for line in panel.lines] == [0, 10]  # keyframes still marked
    plot_plan(plan, tmp_path / "flat.png")
    with Image.open(tmp_path / "flat.png") as image:
        assert image.width == int(WIDTH_IN * DPI)


def test_every_scheduled_value_of_the_plan_is_a_column():
    """FramePlan's fields (but the frame number and prompt texts) and every camera value, none left out."""
    from flipbook.spec.plan import FramePlan

    plan = make_plan()
    columns = all_series(plan)
    for field in dataclasses.fields(FramePlan):
        value = getattr(plan.frames[0], field.name)
        if isinstance(value, Mapping):
            assert set(value) <= set(columns), field.name
        elif "prompt" not in field.name and field.name != "index":
            assert field.name in columns, field.name
    assert columns["seed"].dtype == np.int64 and columns["steps"].dtype == np.int64


def test_camera_schedules_get_panels_and_constant_ones_are_listed():
    plan = make_plan(mode="2d", camera={"zoom": "0:(1.0), 30:(1.2)", "translation_x": "0:(5*sin(t/4))"})
    series = chart_series(plan)
    assert {"zoom", "translation_x"} <= set(series)
    assert np.allclose(series["zoom"], [f.camera["zoom"] for f in plan.frames])
    figure = plan_figure(plan)
    labels = [ax.get_ylabel() for ax in panels(figure)]
    assert "zoom" in labels and "translation_x" in labels
    assert "angle 0" in figure.get_suptitle()


def test_a_fixed_seed_reads_as_a_whole_number():
    plan = make_plan(sampling={"seed": 3541512345, "seed_behavior": "fixed"})
    assert "seed 3541512345," in constant_summary(plan)
    assert "e+" not in constant_summary(plan)
    ladder = make_plan(sampling={"seed": 3541512345, "seed_behavior": "ladder"})
    ticks = panels(plan_figure(ladder))[0].get_yticklabels()
    assert all("e" not in tick.get_text() for tick in ticks)


def test_a_sampler_schedule_gets_a_panel_of_its_names():
    plan = make_plan(sampling={"sampler": '0:("Euler a"), 12:("DDIM")'})
    assert list(chart_series(plan)["sampler"][[0, 12]]) == ["Euler a", "DDIM"]
    (panel,) = [ax for ax in panels(plan_figure(plan)) if ax.get_ylabel() == "sampler"]
    assert [tick.get_text() for tick in panel.get_yticklabels()] == ["Euler a", "DDIM"]


def test_seed_panel_only_when_seeds_are_not_the_plain_iter_ramp():
    assert "seed" not in chart_series(make_plan(sampling={"seed_behavior": "iter"}))
    assert "seed" not in chart_series(make_plan(sampling={"seed_behavior": "fixed"}))
    assert constant_summary(make_plan(sampling={"seed_behavior": "fixed"})).startswith("seed 100,")
    ladder = chart_series(make_plan(sampling={"seed_behavior": "ladder"}))
    assert list(ladder) == ["seed"]


def test_keyframes_are_frame_zero_plus_every_frame_that_is_its_own_key():
    plan = make_plan(prompts={"5": LONG_PROMPT, "12": "a city", "max_f-10": "the sea"})
    marks = prompt_keyframes(plan)
    assert [frame for frame, _ in marks] == [0, 5, 12, 20]  # max_f is the last frame, 30
    assert marks[0][1] == marks[1][1] == shorten(LONG_PROMPT)  # the first prompt also covers frames before it
    assert len(shorten(LONG_PROMPT)) <= plan_chart.PROMPT_LABEL_CHARS and shorten(LONG_PROMPT).endswith("…")
    assert [line.get_xdata()[0] for line in panels(plan_figure(plan))[0].lines] == [0, 5, 12, 20]


def test_shorten_flattens_whitespace_and_keeps_short_prompts():
    assert shorten("a  cat\n jumping") == "a cat jumping"
    assert shorten("x" * 40, limit=10) == "x" * 9 + "…"


def test_crowded_keyframes_leave_later_labels_blank_instead_of_overlapping():
    prompts = {str(k): f"prompt {k}" for k in range(0, 200, 2)}
    plan = make_plan(prompts=prompts, max_frames=200)
    top = panels(plan_figure(plan))[0].child_axes[0]
    labels = [label.get_text() for label in top.get_xticklabels()]
    assert len(labels) == 100 and labels[0] == "0: prompt 0"
    assert 0 < sum(bool(text) for text in labels) < 100


def test_the_walk_weight_gets_a_panel_in_interpolate_mode():
    from flipbook.spec.load import spec_from_data
    from flipbook.spec.plan import build_plan

    spec = spec_from_data(
        {"sampling": {"seed": 1}, "prompts": {"0": "a", "8": "b"},
         "animation": {"mode": "interpolate", "max_frames": 9}, "interpolate": {"easing": "sine"}}
    )  # fmt: skip
    series = chart_series(build_plan(spec))
    assert list(series) == ["blend"]
    assert series["blend"][4] == pytest.approx(0.5) and series["blend"][1] < 0.125


def test_the_web_uis_check_and_plot_charts_camera_schedules_too():
    from flipbook.server import ui

    common = {"prompts": [["0", "a lighthouse"]], "negative": "", "model": "tiny", "sampler": "Euler",
              "steps": 2, "cfg": "7", "seed": 3541512345, "width": 64, "height": 64, "frames": 6, "fps": 8,
              "strength": "0.5"}  # fmt: skip
    figure, message = ui.chart(ui.mode_data("2d", common, {"zoom": "0:(1.0), 5:(1.1)", "angle": "0:(2)"}))
    assert figure is not None and "Valid." in message
    assert "zoom" in [ax.get_ylabel() for ax in panels(figure)]
    assert "angle 2" in figure.get_suptitle() and "seed 3541512345 + frame" in figure.get_suptitle()

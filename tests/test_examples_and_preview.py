"""Every example spec validates, plans (chart, and for 2d/3d a motion preview GIF) and renders a short cut;
the motion preview follows the camera with no model loaded."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from flipbook.modes.camera import camera_for
from flipbook.motion.preview import motion_pattern, motion_preview
from flipbook.spec.load import load_spec, spec_from_data
from flipbook.spec.plan import build_plan
from flipbook.spec.sweep import run_count

EXAMPLES = sorted(Path(__file__).parents[1].glob("examples/*.toml"))


def test_there_is_an_example_per_mode():
    from flipbook.modes import MODES

    modes = {load_spec(path).animation.mode for path in EXAMPLES}
    assert modes == set(MODES)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_plans_with_a_chart_and_camera_preview(example, tmp_path, run_cli):
    code, out, err = run_cli("plan", example, "-o", tmp_path / f"{example.stem}.plan.png")
    assert code == 0, err
    assert (tmp_path / f"{example.stem}.plan.png").is_file()
    preview = tmp_path / f"{example.stem}.motion.gif"
    camera = load_spec(example).animation.mode in ("2d", "3d")
    assert preview.is_file() == camera
    if camera:
        with PIL.Image.open(preview) as gif:
            assert gif.n_frames == load_spec(example).animation.max_frames


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_renders_a_short_cut(example, tmp_path, run_cli):
    code, out, err = run_cli(
        "render", example, "-o", tmp_path, "--set", "animation.max_frames=3", "--set", "animation.width=64",
        "--set", "animation.height=64", "--set", "sampling.steps=2", "--set", "output.formats=['png']",
    )  # fmt: skip
    assert code == 0, err
    runs = max(1, run_count(load_spec(example).sweep))  # a sweep's runs are folders in its own
    assert (
        len(list(tmp_path.glob("*/frames/frame_*.png")) + list(tmp_path.glob("*/*/frames/frame_*.png")))
        == 3 * runs
    )


def preview(camera_settings, mode="2d", frames=3):
    spec = spec_from_data(
        {
            "prompts": {"0": "x"},
            "sampling": {"seed": 1},
            "animation": {"mode": mode, "max_frames": frames, "width": 64, "height": 48},
            "camera": camera_settings,
        }
    )
    start = motion_pattern(64, 48)
    return start, list(motion_preview(camera_for(spec, build_plan(spec)), start, frames))


def test_preview_without_motion_is_the_pattern():
    start, frames = preview({})
    assert all(np.array_equal(f, start) for f in frames)


def test_preview_moves_the_picture_right_for_positive_translation_x_in_2d_and_3d():
    start, moved_2d = preview({"translation_x": 3.0, "border": "wrap"})
    assert np.array_equal(moved_2d[1], np.roll(start, 3, axis=1))
    assert np.array_equal(moved_2d[2], np.roll(start, 6, axis=1))
    _, moved_3d = preview({"translation_x": 1.0, "near": 200.0}, mode="3d")
    # 3D: a flat scene at near=200, f = 24/tan(20deg): the shift is f*tx/near pixels to the right
    shift = 24 / np.tan(np.radians(20)) * 1.0 / 200
    columns = np.arange(64, dtype=float)
    profile = lambda image: image[24, :, 0].astype(float)  # noqa: E731
    best = min(
        np.linspace(-1, 1, 41),
        key=lambda s: np.abs(
            np.interp(columns - s, columns, profile(start))[8:-8] - profile(moved_3d[1])[8:-8]
        ).mean(),
    )
    assert best == pytest.approx(shift, abs=0.06)


def test_pattern_is_rgb_and_not_symmetric():
    pattern = motion_pattern(64, 48)
    assert pattern.shape == (48, 64, 3) and pattern.dtype == np.uint8
    assert not np.array_equal(pattern, pattern[:, ::-1]) and not np.array_equal(pattern, pattern[::-1])

"""Frame interpolation (flipbook.post.frame_interpolation, the ``interpolate`` command): synthetic scenes whose true
in-betweens are known, exact checks of the kept frames, the cross-fade and the FILM interface."""

import numpy as np
import PIL.Image
import pytest
import torch
import typer
from typer.testing import CliRunner

from flipbook.bench.frame_interpolation import _paste, _texture
from flipbook.commands.interpolate import register
from flipbook.errors import FlipbookError
from flipbook.io.writers import gif_durations_ms
from flipbook.post import frame_interpolation as interp
from flipbook.post.frame_interpolation import (
    blend_weights,
    cross_fade,
    intermediate_flows,
    interpolate_frames,
    occlusion,
    output_fps,
    pixel_grid,
    slow_motion,
)

H, W = 96, 128
SQUARE = 40  # side of the moving square; 12 px of motion between neighbours is 30% of it


def disc_frame(x: float, background: np.ndarray) -> np.ndarray:
    """A noise-textured disc (radius 18) with its left edge at ``x``; the texture moves with the disc."""
    texture = _texture(H, W, 3)
    moved = np.roll(texture, int(x), axis=1)
    yy, xx = np.mgrid[0:H, 0:W]
    inside = np.hypot(xx - (x + 18), yy - H // 2) < 18
    frame = background.copy()
    frame[inside] = moved[inside]
    return frame


def square_frame(x: int, y: int = 28) -> np.ndarray:
    """A noise-textured square over a (static) noise-textured background: moving, it covers and uncovers
    background texture, so both neighbours hold pixels the other lacks."""
    return _paste(_texture(H, W, 11), _texture(SQUARE, SQUARE, 12), x, y)


def mean_error(image: np.ndarray, truth: np.ndarray, region=np.s_[:, :]) -> float:
    return float(np.abs(image.astype(np.float64) - truth.astype(np.float64))[region].mean())


# --- the flow method against the truth ----------------------------------------------------------------------


def test_flow_midpoint_of_a_moving_disc_is_the_true_frame():
    flat = np.full((H, W, 3), 90, np.uint8)
    first, middle, last = (disc_frame(20 + 6 * k, flat) for k in range(3))
    tween = interpolate_frames([first, last])[1]
    band = np.s_[H // 2 - 22 : H // 2 + 22, :]  # the rows the disc crosses
    error, fade_error = (
        mean_error(tween, middle, band),
        mean_error(cross_fade(first, last, 0.5), middle, band),
    )
    # 1 grey level: rounding to uint8 alone costs 0.25 on average, the rest allows sub-pixel flow error.
    assert error < 1.0
    assert error < fade_error / 10


def test_flow_midpoint_with_occlusion_beats_the_cross_fade_also_at_the_moving_edges():
    """The square moves 12 px; at the midpoint (x = 26) the strips along its moving edges are where a
    neighbour lacks the content: background it uncovers or covers, and the parts of the square itself that
    sit on background in one neighbour. The cross-fade ghosts there; the flow method must not."""
    first, middle, last = (square_frame(20 + 6 * k) for k in range(3))
    tween = interpolate_frames([first, last])[1]
    fade = cross_fade(first, last, 0.5)
    assert mean_error(tween, middle) < 0.5 * mean_error(fade, middle)
    rows = slice(28 + 4, 28 + SQUARE - 4)
    revealed = np.s_[rows, 20:26]  # background behind the square, hidden in the first frame
    covered = np.s_[rows, 66:72]  # background ahead of it, hidden in the last frame
    for region in (revealed, covered):
        assert mean_error(tween, middle, region) < 0.75 * mean_error(fade, middle, region)
    back, front = np.s_[rows, 26:32], np.s_[rows, 60:66]  # the square where a neighbour shows background
    for region in (back, front):
        assert mean_error(tween, middle, region) < 0.35 * mean_error(fade, middle, region)
    assert mean_error(tween, middle, np.s_[rows, 32:60]) < 1.5  # the interior: sub-pixel exact


def test_flows_are_computed_once_per_pair(monkeypatch):
    calls = []
    original = interp.FlowInterpolator.pair_flows

    def counting(self, first, second):
        calls.append(1)
        return original(self, first, second)

    monkeypatch.setattr(interp.FlowInterpolator, "pair_flows", counting)
    frames = [square_frame(20 + 4 * k) for k in range(4)]
    assert len(interpolate_frames(frames, factor=4)) == 13
    assert len(calls) == 3


# --- the math, on hand-made flows ---------------------------------------------------------------------------


def test_intermediate_flows_of_uniform_motion_are_exact():
    grid = pixel_grid(20, 30)
    flow_01 = np.zeros((20, 30, 2), np.float32)
    flow_01[..., 0], flow_01[..., 1] = 4.0, -2.0
    for s in (0.25, 0.5, 0.75):
        flow_s0, flow_s1 = intermediate_flows(flow_01, -flow_01, s, grid)
        np.testing.assert_allclose(flow_s0, -s * flow_01, atol=1e-5)
        np.testing.assert_allclose(flow_s1, (1 - s) * flow_01, atol=1e-5)


def test_occlusion_marks_covered_and_revealed_background():
    """An object at columns 10-29 in frame 0 moves 8 px right: columns 30-37 of frame 0 are covered in frame
    1, columns 10-17 of frame 1 were hidden in frame 0."""
    grid = pixel_grid(16, 60)
    flow_01 = np.zeros((16, 60, 2), np.float32)
    flow_10 = np.zeros((16, 60, 2), np.float32)
    flow_01[:, 10:30, 0] = 8.0
    flow_10[:, 18:38, 0] = -8.0
    covered, revealed = occlusion(flow_01, flow_10, grid), occlusion(flow_10, flow_01, grid)
    assert np.all(covered[:, 30:38] == 1) and np.all(revealed[:, 10:18] == 1)
    assert np.all(covered[:, :30] == 0) and np.all(covered[:, 38:] == 0)
    assert np.all(revealed[:, :10] == 0) and np.all(revealed[:, 18:] == 0)


def test_blend_weights_take_the_visible_side_and_fall_back_to_the_cross_fade():
    ones, zeros = np.ones((2, 2), np.float32), np.zeros((2, 2), np.float32)
    s = 0.25

    def share_0(occluded_0, occluded_1):
        weight_0, weight_1 = blend_weights(occluded_0, occluded_1, s)
        return weight_0 / (weight_0 + weight_1)

    np.testing.assert_allclose(share_0(zeros, zeros), 1 - s)  # visible in both: the cross-fade's weights
    np.testing.assert_allclose(share_0(ones, zeros), 1.0, atol=1e-2)  # hidden in frame 1: frame 0 only
    np.testing.assert_allclose(share_0(zeros, ones), 0.0, atol=1e-2)  # new in frame 1: frame 1 only
    np.testing.assert_allclose(share_0(ones, ones), 1 - s)  # hidden in both: plain cross-fade


# --- lengths, kept frames, loop seam, cross-fade ------------------------------------------------------------


@pytest.mark.parametrize("method", ["flow", "blend"])
@pytest.mark.parametrize("factor", [1, 2, 3])
@pytest.mark.parametrize("loop", [False, True])
def test_lengths_and_kept_originals(method, factor, loop):
    frames = [square_frame(20 + 4 * k) for k in range(3)]
    out = interpolate_frames(frames, factor=factor, loop=loop, method=method)
    assert len(out) == (3 * factor if loop else 2 * factor + 1)
    for index, frame in enumerate(frames):
        assert out[index * factor] is frame  # kept as given, not re-synthesised
    assert all(image.shape == (H, W, 3) and image.dtype == np.uint8 for image in out)


def test_loop_seam_interpolates_from_the_last_frame_back_to_the_first():
    """The square goes 0 -> 6 -> 12 px: half-way back from the last frame to the first it is at 6 px again,
    so the seam's in-between must look like frame 1, not like a double exposure."""
    frames = [square_frame(20 + 6 * k) for k in range(3)]
    out = interpolate_frames(frames, loop=True)
    assert len(out) == 6
    seam = out[5]
    assert mean_error(seam, frames[1]) < 0.5 * mean_error(cross_fade(frames[2], frames[0], 0.5), frames[1])
    assert mean_error(seam, frames[1]) < mean_error(seam, frames[2]) / 2  # it moved, it is not the last frame


def test_blend_is_the_exact_cross_fade():
    rng = np.random.default_rng(1)
    first, last = (rng.integers(0, 256, (9, 11, 3), dtype=np.uint8) for _ in range(2))
    out = interpolate_frames([first, last], factor=3, method="blend")
    for k, s in ((1, 1 / 3), (2, 2 / 3)):
        expected = np.rint(first * (1 - s) + last.astype(np.float64) * s).astype(np.uint8)
        assert np.array_equal(out[k], expected)


def test_slow_motion_and_output_fps():
    frames = [square_frame(20 + 4 * k) for k in range(3)]
    slow = slow_motion(frames, factor=2, method="blend")
    assert all(
        np.array_equal(a, b) for a, b in zip(slow, interpolate_frames(frames, method="blend"), strict=True)
    )
    assert output_fps(12, 4) == 48 and output_fps(12, 4, slowmo=True) == 12 and output_fps(None, 4) is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"method": "rife"}, "interpolate.model"),
        ({"method": "magic"}, "interpolate.method"),
        ({"method": "film"}, "interpolate.model"),
        ({"factor": 0}, "interpolate.factor"),
    ],
)
def test_bad_arguments_name_their_field(kwargs, field):
    with pytest.raises(FlipbookError) as error:
        interpolate_frames([square_frame(20)] * 2, **kwargs)
    assert error.value.field == field
    if kwargs.get("method") in ("film", "rife"):
        assert "needs a model file" in str(error.value)


def test_frames_of_different_sizes_are_refused():
    with pytest.raises(FlipbookError, match="frames\\[1\\]"):
        interpolate_frames([square_frame(20), square_frame(20)[:-1]])


# --- FILM through a tiny TorchScript module -----------------------------------------------------------------


class CrossFadeFilm(torch.nn.Module):
    """FILM's interface with a cross-fade inside; it refuses unaligned sizes and a wrong ``batch_dt``."""

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, batch_dt: torch.Tensor) -> torch.Tensor:
        if img0.shape[2] % 64 != 0 or img0.shape[3] % 64 != 0:
            raise RuntimeError("FILM needs sizes divisible by 64")
        if batch_dt.dim() != 2 or batch_dt.shape[0] != img0.shape[0] or batch_dt.shape[1] != 1:
            raise RuntimeError("batch_dt must be B x 1")
        dt = batch_dt[:, :, None, None]
        return img0 * (1 - dt) + img1 * dt


@pytest.fixture()
def film_file(tmp_path):
    path = tmp_path / "film_net_test.pt"
    torch.jit.save(torch.jit.script(CrossFadeFilm()), str(path))
    return path


def test_film_output_is_the_modules_formula_cropped_back_at_odd_sizes(film_file):
    """70x50 is padded to 128x64 for the module and cropped back; x6 makes 5 in-betweens, two model calls."""
    rng = np.random.default_rng(2)
    first, last = (rng.integers(0, 256, (50, 70, 3), dtype=np.uint8) for _ in range(2))
    out = interpolate_frames([first, last], factor=6, method="film", model_path=film_file, device="cpu")
    assert len(out) == 7 and out[0] is first and out[6] is last
    for k in range(1, 6):
        s = k / 6
        assert out[k].shape == (50, 70, 3) and out[k].dtype == np.uint8
        expected = (first / 255.0 * (1 - s) + last / 255.0 * s) * 255.0
        # a crop in the wrong place would shift random noise: errors near 100, not float32 rounding's 0.5
        assert np.abs(out[k] - expected).max() <= 0.51


def test_film_model_errors_name_interpolate_model(tmp_path):
    frames = [square_frame(20)] * 2
    not_torchscript = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, not_torchscript)  # a plain pickle checkpoint, not TorchScript
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    for path in (tmp_path / "missing.pt", not_torchscript, text):
        with pytest.raises(FlipbookError) as error:
            interpolate_frames(frames, method="film", model_path=path, device="cpu")
        assert error.value.field == "interpolate.model"


def test_film_weights_are_found_by_name_in_the_models_folder(tmp_path, film_file):
    """ComfyUI-Frame-Interpolation's ckpts/film and Deforum's models/Deforum/film_interpolation: by name, with
    or without the extension, as the file itself; the spec's post.film_model likewise with model.models_dir."""
    from flipbook.runs.finish import check_post_inputs
    from flipbook.spec.load import spec_from_data

    comfy, webui = tmp_path / "ComfyUI", tmp_path / "webui"
    (comfy / "models" / "checkpoints").mkdir(parents=True)
    (comfy / "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/film").mkdir(parents=True)
    film_file.rename(comfy / "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/film/film_net_fp32.pt")
    (webui / "models/Deforum/film_interpolation").mkdir(parents=True)
    torch.jit.save(
        torch.jit.script(CrossFadeFilm()), str(webui / "models/Deforum/film_interpolation/film_net_fp16.pt")
    )
    frames = [square_frame(20), square_frame(30)]
    expected = interpolate_frames(frames, method="blend")
    for root, name in ((comfy, "film_net_fp32"), (comfy, "film_net_fp32.pt"), (webui, "film_net_fp16")):
        out = interpolate_frames(frames, method="film", model_path=name, models_dir=root, device="cpu")
        assert np.abs(out[1].astype(int) - expected[1]).max() <= 1, (root, name)
        data = {"prompts": {"0": "x"}, "model": {"models_dir": str(root)},
                "post": {"interpolate": 2, "interpolate_method": "film", "film_model": name}}  # fmt: skip
        check_post_inputs(spec_from_data(data))
    with pytest.raises(FlipbookError) as error:  # not there: the error names the field and lists what is
        interpolate_frames(frames, method="film", model_path="film_net_fp64", models_dir=comfy, device="cpu")
    assert error.value.field == "interpolate.model" and "film_net_fp32" in error.value.allowed
    with pytest.raises(FlipbookError) as error:  # a name with no models folder is a missing file
        interpolate_frames(frames, method="film", model_path="film_net_fp32", device="cpu")
    assert error.value.field == "interpolate.model" and "no such file" in str(error.value)


# --- the command --------------------------------------------------------------------------------------------


@pytest.fixture()
def cli():
    app = typer.Typer()
    register(app)

    @app.command()
    def other() -> None:  # a second command, so typer keeps the command name as in the real CLI
        pass

    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["interpolate", *map(str, args)])


@pytest.fixture()
def frame_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(4):
        PIL.Image.fromarray(square_frame(20 + 4 * k)).save(folder / f"frame_{k}.png")
    return folder


def test_cli_folder_to_gif(cli, frame_folder, tmp_path):
    target = tmp_path / "out.gif"
    result = cli(frame_folder, "--x", "2", "--fps", "8", "-o", target)
    assert result.exit_code == 0, result.output
    assert gif_durations(target) == gif_durations_ms(7, 8)


def gif_durations(path) -> list[int]:
    """Every frame's delay in ms."""
    with PIL.Image.open(path) as gif:
        durations = []
        for index in range(gif.n_frames):
            gif.seek(index)
            durations.append(gif.info["duration"])
    return durations


def test_cli_folder_needs_fps_for_a_gif(cli, frame_folder, tmp_path):
    result = cli(frame_folder, "--x", "2", "-o", tmp_path / "out.gif")
    assert result.exit_code != 0
    assert isinstance(result.exception, FlipbookError) and "--fps" in str(result.exception)
    assert not (tmp_path / "out.gif").exists()


def test_cli_gif_keeps_its_speed_or_slows_down(cli, frame_folder, tmp_path):
    source = tmp_path / "in.gif"
    cli(frame_folder, "--x", "1", "--fps", "10", "-o", source)
    for flags, duration in (([], 50), (["--slowmo"], 100)):
        target = tmp_path / f"out{len(flags)}.gif"
        result = cli(source, "--x", "2", "--loop", *flags, "-o", target)
        assert result.exit_code == 0, result.output
        assert gif_durations(target) == [duration] * 8


def test_cli_writes_png_frames_without_fps_and_refuses_other_suffixes(cli, frame_folder, tmp_path):
    result = cli(frame_folder, "--x", "3", "--method", "blend", "-o", tmp_path / "tweens")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "tweens").glob("*.png"))) == 10
    bad = cli(frame_folder, "--fps", "8", "-o", tmp_path / "out.avi")
    assert bad.exit_code != 0 and "--out" in str(bad.exception)


def test_cli_takes_film_weights_by_name_with_models_dir(cli, frame_folder, film_file, tmp_path):
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "checkpoints").mkdir(parents=True)
    (comfy / "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/film").mkdir(parents=True)
    film_file.rename(comfy / "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/film/film_net_fp32.pt")
    target = tmp_path / "film"
    args = ("--x", "2", "--method", "film", "--model", "film_net_fp32", "-o", target)
    result = cli(frame_folder, *args, "--models-dir", comfy)
    assert result.exit_code == 0, result.output
    assert len(list(target.glob("*.png"))) == 7
    refused = cli(frame_folder, *args)  # without the models folder the name is a missing file
    assert isinstance(refused.exception, FlipbookError) and refused.exception.field == "interpolate.model"

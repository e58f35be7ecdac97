"""The CLI: stills with A1111 parameters, renders, and one clear line with exit code 2 for bad input."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from flipbook.io.pnginfo import parse_parameters, read_png_parameters

FAST = ["--steps", "2", "--size", "64x64", "--device", "cpu"]


def test_txt2img_writes_pngs_with_a1111_parameters(run_cli, tmp_path):
    code, out, _ = run_cli("txt2img", "a (red:1.2) fox", "--negative", "blurry",
                           "--seed", "-1", "--batch-count", "2", "-o", tmp_path, *FAST)  # fmt: skip
    assert code == 0
    paths = out.split()
    assert len(paths) == 2
    params = [parse_parameters(read_png_parameters(p)) for p in paths]
    assert params[0].prompt == "a (red:1.2) fox" and params[0].negative_prompt == "blurry"
    assert (
        params[0].steps == 2
        and params[0].sampler == "Euler a"
        and (params[0].width, params[0].height) == (64, 64)
    )
    assert params[0].seed != -1 and params[1].seed == params[0].seed + 1  # the random seed is recorded

    code, out, _ = run_cli("info", paths[0])
    assert code == 0 and "Negative prompt: blurry" in out and f"Seed: {params[0].seed}" in out


def test_img2img_and_inpaint(run_cli, tmp_path, init_image, mask_image):
    init_image.save(tmp_path / "init.png")
    mask_image.save(tmp_path / "mask.png")
    code, out, _ = run_cli("img2img", "a painting", "--image", tmp_path / "init.png",
                           "--strength", "0.5", "--seed", "3", "-o", tmp_path / "i2i", *FAST)  # fmt: skip
    assert code == 0 and parse_parameters(read_png_parameters(out.strip())).denoising_strength == 0.5
    code, out, _ = run_cli("inpaint", "a ball", "--image", tmp_path / "init.png",
                           "--mask", tmp_path / "mask.png", "--seed", "3", "-o", tmp_path / "inp", *FAST)  # fmt: skip
    assert code == 0
    result = np.asarray(PIL.Image.open(out.strip()).convert("RGB")).astype(int)
    far_left = np.s_[:, :8]  # the mask starts at column 24; 16 px is beyond the 4 px blur's reach
    assert np.abs(result[far_left] - np.asarray(init_image).astype(int)[far_left]).max() <= 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["txt2img", "x", "--sampler", "Euler b"], "sampler"),
        (["txt2img", "x", "--size", "100x64"], "--size"),
        (["txt2img", "x", "--size", "big"], "--size"),
        (["txt2img", "x", "--model", "missing/checkpoint.safetensors"], "model"),
        (["img2img", "x", "--image", "{tmp}/not-an-image.png"], "--image"),
        (["txt2img", "x <lora:nowhere:0.5>"], "lora"),
        (["render", "{tmp}/missing.toml"], "spec"),
        (["render", "{tmp}/bad.toml"], "animation.width"),
        (["render", "examples/quickstart.toml", "-o", "{tmp}/not-an-image.png/out"], "output.dir"),
        (["txt2img", "x", "-o", "{tmp}/not-an-image.png/out"], "--out"),
        (
            ["encode", "{tmp}/frames", "--to", "gif", "--fps", "8", "-o", "{tmp}/not-an-image.png/out"],
            "output",
        ),
        (["upscale", "{tmp}/frames", "--scale", "2", "-o", "{tmp}/not-an-image.png/out"], "output"),
        (["info", "{tmp}/not-an-image.png"], "not-an-image.png"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(run_cli, tmp_path, args, needle):
    (tmp_path / "not-an-image.png").write_text("hello")
    (tmp_path / "frames").mkdir()
    for i in range(2):
        PIL.Image.new("RGB", (16, 16), (i * 100, 0, 0)).save(tmp_path / "frames" / f"f{i}.png")
    (tmp_path / "bad.toml").write_text('version = 1\n[animation]\nwidth = 100\n[prompts]\n0 = "x"\n')
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run_cli(*args, *(["--steps", "2"] if args[0] in ("txt2img", "img2img") else []))
    assert code == 2
    assert err.startswith("error: ") and needle in err
    assert "Traceback" not in err


def test_corrupt_checkpoint_is_a_clear_error(run_cli, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 100)
    code, _, err = run_cli("txt2img", "x", "--model", bad, *FAST)
    assert code == 2 and "broken.safetensors" in err and "Traceback" not in err


def test_render_quickstart_spec(run_cli, tmp_path):
    code, out, _ = run_cli("render", "examples/quickstart.toml", "-o", tmp_path,
                           "--set", "animation.max_frames=3", "--set", "sampling.steps=4")  # fmt: skip
    assert code == 0, out
    frames = sorted((tmp_path / "quickstart" / "frames").glob("*.png"))
    assert len(frames) == 3
    assert (tmp_path / "quickstart" / "quickstart.gif").exists() and (
        tmp_path / "quickstart" / "quickstart.mp4"
    ).exists()
    params = parse_parameters(read_png_parameters(frames[1]))
    assert params.seed == 43 and params.denoising_strength == pytest.approx(0.45)

    # the run folder now holds a run: a second render is refused, --overwrite replaces the whole run
    again = ("render", "examples/quickstart.toml", "-o", tmp_path, "--set", "sampling.steps=4")
    code, _, err = run_cli(*again, "--set", "animation.max_frames=2")
    assert code == 2 and "--resume" in err and "--overwrite" in err and "Traceback" not in err
    assert len(sorted((tmp_path / "quickstart" / "frames").glob("*.png"))) == 3
    code, out, _ = run_cli(*again, "--set", "animation.max_frames=2", "--overwrite")
    assert code == 0, out
    frames = sorted(p.name for p in (tmp_path / "quickstart" / "frames").iterdir())
    assert frames == ["frame_00000.png", "frame_00001.png"]  # no frame_00002.png from the longer run
    with PIL.Image.open(tmp_path / "quickstart" / "quickstart.gif") as gif:
        assert gif.n_frames == 2


def test_usage_errors_exit_2_without_traceback(run_cli):
    code, out, err = run_cli("txt2img")
    assert code == 2 and "Traceback" not in out + err and "prompt" in (out + err).lower()


DEFORUM = Path(__file__).parents[2] / "shared" / "testdata" / "deforum"


@pytest.mark.skipif(not DEFORUM.is_dir(), reason="shared Deforum testdata not present")
def test_deforum_settings_import_validate_plan_and_render(run_cli, tmp_path):
    settings = DEFORUM / "deforum-art__sd-webui-deforum__scripts__default_settings.txt"
    code, out, err = run_cli("import-deforum", settings, "-o", tmp_path / "spec.toml")
    assert code == 0 and err.count("warning: ") == 1 and "legacy_colormatch" in err  # unused: listed once
    code, out, _ = run_cli("validate", tmp_path / "spec.toml")
    assert code == 0 and "120 frames at 15 fps" in out
    code, out, _ = run_cli("plan", settings, "-o", tmp_path / "plan.png", "--no-motion")
    assert code == 0 and PIL.Image.open(tmp_path / "plan.png").width == 1000
    code, out, err = run_cli("render", settings, "-o", tmp_path / "out",
                             "--set", "animation.max_frames=2", "--set", "sampling.steps=2",
                             "--set", "animation.width=64", "--set", "animation.height=64",
                             "--set", "model.device='cpu'", "--set", "camera.depth_model='flat'")  # fmt: skip
    assert code == 0, err
    assert len(list((tmp_path / "out").rglob("frame_*.png"))) == 2


def test_a_clip_skip_deeper_than_the_model_is_one_error_before_any_frame(run_cli, tmp_path) -> None:
    """sampling.clip_skip is bounded by the model's text encoder (tiny: 5 layers), known when it loads."""
    code, _, err = run_cli(
        "render", "examples/quickstart.toml", "-o", tmp_path, "--set", "animation.max_frames=2",
        "--set", "sampling.steps=2", "--set", "sampling.clip_skip=12", "--set", "model.name=tiny",
    )  # fmt: skip
    assert code == 2 and "sampling.clip_skip: 12 is not valid; at most 5" in err
    assert "Traceback" not in err and not list(tmp_path.rglob("frame_*.png"))

"""``flipbook bench camera-2d`` on the tiny model: the report's fields and files (no timing assertions)."""

import json

import pytest

from flipbook.bench import run_case

pytestmark = pytest.mark.usefixtures("one_thread")


def test_camera_2d_case_writes_report(tmp_path):
    table = run_case("camera-2d", model="tiny", width=64, height=64, steps=2, runs=1, sampler="Euler",
                     device="cpu", dtype="auto", out=tmp_path, frames=2)  # fmt: skip

    result = json.loads((tmp_path / "camera-2d-tiny-64x64-cpu.json").read_text(encoding="utf-8"))
    assert (tmp_path / "camera-2d-tiny-64x64-cpu.md").read_text(encoding="utf-8").strip() == table
    assert "flipbook frames/s" in table and "| tiny | 64x64 | 2 |" in table
    assert result["case"] == "camera-2d" and result["frames"] == 2 and result["runs"] == 1
    for key in ("flipbook_frames_per_s", "naive_frames_per_s", "flipbook_over_naive"):
        assert result[key] > 0, key
    for key in ("flipbook_share_in_nets", "naive_share_in_nets"):
        assert 0 < result[key] <= 1, key
    assert len(result["flipbook_times"]) == len(result["naive_times"]) == 1
    assert all(t > 0 for t in result["flipbook_times"] + result["naive_times"])
    assert result["flipbook_s_per_run_in"]["unet"] > 0 and result["naive_s_per_run_in"]["text_encoder"] > 0
    assert result["unet_steps_per_frame"] == 1  # 2 steps x denoise 0.35 still runs one step, as in A1111
    # both ways render the same frames (same seeds, same scheduler, same warp and filters), up to the torch
    # versions' tolerance against numpy's (a level or two per pixel), which the random tiny model's img2img
    # amplifies in places: the frames agree on average
    assert result["last_frame_mean_abs_diff"] <= 4


def test_camera_2d_case_on_sdxl_compares_with_sdxl_img2img(tmp_path):
    """An SDXL model's naive loop is diffusers' SDXL img2img pipeline (both text encoders, pooled embeddings, time
    ids) on the same parts; both ways render the same animation and each net's time is counted."""
    run_case("camera-2d", model="tiny-xl", width=64, height=64, steps=2, runs=1, sampler="Euler",
             device="cpu", dtype="auto", out=tmp_path, frames=2)  # fmt: skip

    result = json.loads((tmp_path / "camera-2d-tiny-xl-64x64-cpu.json").read_text(encoding="utf-8"))
    assert result["naive_s_per_run_in"]["text_encoder_2"] > 0 and result["flipbook_s_per_run_in"]["unet"] > 0
    assert result["last_frame_mean_abs_diff"] <= 4


def test_bench_cli_runs_camera_2d(run_cli, tmp_path):
    code, out, err = run_cli("bench", "camera-2d", "--model", "tiny", "--size", "64x64", "--steps", "2",
                             "--runs", "1", "--frames", "1", "--device", "cpu", "--out", tmp_path)  # fmt: skip
    assert code == 0, err
    assert "naive frames/s" in out
    assert (tmp_path / "camera-2d-tiny-64x64-cpu.json").exists()


def test_naive_loop_bridges_an_fp32_vae_under_an_fp16_unet():
    """On CUDA fp16 ``load_model`` keeps an SD VAE in fp32; the naive pipeline must still run (it is handed fp16
    tensors by diffusers) and leave no hooks behind on the shared VAE."""
    import numpy as np
    import torch

    from flipbook.bench.camera import NaiveLoop, camera_spec, net_modules
    from flipbook.bench.timing import ModuleTimer
    from flipbook.models.loading import load_model

    bundle = load_model("tiny", device="cpu")
    bundle.unet.to(torch.float16)
    bundle.text_encoder.to(torch.float16)
    naive = NaiveLoop(bundle, camera_spec("tiny", 64, 64, 2, "Euler", 1))
    naive.first = np.full((64, 64, 3), 128, np.uint8)

    timing = naive(ModuleTimer(net_modules(bundle), bundle.device), frames=1)

    assert timing.last_frame.shape == (64, 64, 3) and timing.seconds > 0
    assert bundle.vae.dtype == torch.float32
    vae = bundle.vae
    assert not (
        vae.encoder._forward_pre_hooks
        or vae.quant_conv._forward_hooks
        or vae.post_quant_conv._forward_pre_hooks
    )

"""``flipbook bench overhead``: the real render loop with stand-in nets, timed by stage (no timing assertions)."""

import json

import pytest
import torch

from flipbook.bench import run_case
from flipbook.bench.overhead import STAGES, _resolve, stand_in_nets
from flipbook.models.loading import load_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_overhead_case_reports_every_case_by_stage(tmp_path):
    from flipbook.bench.overhead import run

    table = run(runs=1, out=tmp_path, device="cpu", frames=1, sizes=((64, 64),))

    result = json.loads((tmp_path / "overhead-cpu.json").read_text(encoding="utf-8"))
    assert "nets replaced by stand-ins" in table and result["label"] == "nets replaced by stand-ins"
    assert {row["case"] for row in result["rows"]} == {"camera-2d", "camera-3d", "travel"}
    camera = next(row for row in result["rows"] if row["case"] == "camera-2d")
    assert camera["ms_per_frame_outside_nets"] > 0
    assert {"warp", "colour", "noise"} <= set(camera["critical_ms_per_frame"])
    written = set(camera["critical_ms_per_frame"]) | set(camera["background_ms_per_frame"])
    assert "png write" in written
    # the render's waits for the writer are told apart from making the frame
    assert "writer wait" in camera["critical_ms_per_frame"]
    waits = camera["critical_ms_per_frame"]["writer wait"]
    assert camera["ms_per_frame_making"] == pytest.approx(camera["ms_per_frame_outside_nets"] - waits)
    assert "making the frame" in table
    # background threads' CPU time, apart from their wall time (which counts waiting for a core)
    assert "png write" in camera["background_cpu_ms_per_frame"]
    assert camera["background_cpu_ms_per_frame"]["png write"] > 0
    assert camera["render_thread_cpu_ms_per_frame"] > 0
    assert "background threads (CPU)" in table and "render thread CPU" in table


def test_every_stage_names_a_function_that_exists():
    """A renamed function would silently drop out of the split: each target must resolve."""
    for targets in STAGES.values():
        for target in targets:
            owner, name = _resolve(target)
            assert owner is not None, target


def test_stand_ins_keep_the_nets_shapes_and_dtypes():
    bundle = load_model("tiny", device="cpu")
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    with stand_in_nets(bundle):
        latents = bundle.vae.encode(images).latent_dist.sample(None)
        decoded = bundle.vae.decode(latents, return_dict=False)[0]
        noise = bundle.unet(latents, 1, encoder_hidden_states=None, return_dict=False)[0]
    scale, channels = bundle.vae_scale_factor, bundle.vae.config.latent_channels
    assert latents.shape == (1, channels, 64 // scale, 64 // scale) and latents.dtype == images.dtype
    assert decoded.shape == images.shape and noise.shape == latents.shape
    assert bundle.unet.forward.__func__ is type(bundle.unet).forward  # restored afterwards


def test_bench_cli_lists_overhead(tmp_path):
    with pytest.raises(Exception) as error:
        run_case("nope", out=tmp_path)
    assert "overhead" in str(error.value)

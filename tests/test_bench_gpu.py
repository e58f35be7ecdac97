"""``flipbook bench gpu``: its plan (every GPU case, fp16 and bf16, compile on and off, within 8 minutes), the
dry run that lists it anywhere, and the refusal on a machine without CUDA."""

from __future__ import annotations

import pytest

from flipbook.bench import CASES
from flipbook.bench.gpu import TOTAL_BUDGET_S, plan
from flipbook.modes import REGISTERED


def test_the_plan_covers_every_gpu_case_within_the_budget():
    jobs = plan()
    cases = {job.case for job in jobs}
    assert {"sampler", "camera-2d", "compile", "cache"} | {m.name for m in REGISTERED if m.bench} <= cases
    assert cases <= set(CASES)
    assert sum(job.budget_s for job in jobs) <= TOTAL_BUDGET_S
    assert {job.options["dtype"] for job in jobs if job.case in ("sampler", "compile")} == {"fp16", "bf16"}
    assert all(job.options["device"] == "cuda" for job in jobs)


def test_the_dry_run_lists_the_plan_and_runs_nothing(run_cli, tmp_path):
    code, out, _ = run_cli("bench", "gpu", "--dry-run", "--out", str(tmp_path))
    assert code == 0
    assert "dry run: nothing was run" in out
    for job in plan():
        assert job.command_line() in out
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="the refusal is for machines without CUDA"
)
def test_without_cuda_it_refuses_in_one_line(run_cli, tmp_path):
    code, _, err = run_cli("bench", "gpu", "--out", str(tmp_path))
    assert code == 2
    assert "--device" in err and "--dry-run" in err and "Traceback" not in err


def test_dry_run_is_refused_for_a_case_without_a_plan(run_cli, tmp_path):
    code, _, err = run_cli("bench", "encode", "--dry-run", "--out", str(tmp_path))
    assert code == 2 and "--dry-run" in err

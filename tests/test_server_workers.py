"""Worker processes (``flipbook serve --workers N``): renders run outside the server process, the API stays
responsive, and a worker that dies or hangs has its job re-queued once and resumed from its frames.

Real uvicorn servers on loopback ports with real worker processes (tiny model, 64x64, 2 steps)."""

import os
import signal
import statistics
import time

import httpx
import pytest

from flipbook.server import ServerSettings
from flipbook.server.background import BackgroundServer
from flipbook.server.store import INTERRUPTED, QUEUED, JobStore, NewJob


def spec(frames: int, seed: int = 7) -> dict:
    return {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"sampler": "Euler", "steps": 2, "seed": seed},
        "animation": {"max_frames": frames, "width": 64, "height": 64, "strength": 0.5},
        "prompts": {"0": "a lighthouse at dusk", str(frames // 2): "a lighthouse at night"},
        "output": {"formats": ["png"]},
    }


def wait_for(client: httpx.Client, job_id: str, done, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if done(job):
            return job
        assert time.monotonic() < deadline, f"job never got there: {job['state']} {job['progress']}"
        time.sleep(0.05)


def worker_pid(job: dict) -> int:
    """The process id in a worker's id (``worker<slot>-<pid>``)."""
    return int(job["worker"].rsplit("-", 1)[1])


def submit(client: httpx.Client, body: dict) -> str:
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_the_api_answers_within_50_ms_while_two_renders_run_in_worker_processes(tmp_path):
    settings = ServerSettings(runs_dir=tmp_path / "runs", workers=2)
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        jobs = [submit(client, spec(frames=40, seed=seed)) for seed in (1, 2)]
        running = [wait_for(client, j, lambda job: job["progress"].get("frame", 0) >= 1) for j in jobs]
        pids = {worker_pid(job) for job in running}
        assert len(pids) == 2 and os.getpid() not in pids  # two processes, neither of them the server's

        latencies = []
        for _ in range(40):
            started = time.perf_counter()
            response = client.get(f"/api/jobs/{jobs[0]}")
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
            time.sleep(0.02)
        states = [client.get(f"/api/jobs/{j}").json()["state"] for j in jobs]
        assert states == ["running", "running"], "both renders ran the whole time"
        assert statistics.median(latencies) < 0.050, sorted(latencies)
        for job_id in jobs:
            client.post(f"/api/jobs/{job_id}/cancel")
        for job_id in jobs:
            assert wait_for(client, job_id, lambda job: job["state"] != "running")["state"] == "cancelled"


def test_a_killed_worker_process_has_its_job_requeued_once_and_resumed(tmp_path):
    settings = ServerSettings(runs_dir=tmp_path / "runs", workers=1)
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        job_id = submit(client, spec(frames=8))
        job = wait_for(client, job_id, lambda job: job["progress"].get("frame", 0) >= 2)
        os.kill(worker_pid(job), signal.SIGKILL)

        done = wait_for(client, job_id, lambda job: job["state"] not in ("queued", "running"))
        assert done["state"] == "done", done["error"]
        assert done["requeues"] == 1 and done["attempts"] == 2
        assert worker_pid(done) != worker_pid(job)  # the replacement worker finished it
        detail = client.get(f"/api/jobs/{job_id}").json()
        assert detail["result"]["resumed_from"] >= 1  # it continued from the frames on disk
        frames = sorted((tmp_path / "runs" / job_id / "frames").glob("*.png"))
        assert len(frames) == 8


def test_a_worker_that_stops_answering_is_killed_and_its_job_runs_again(tmp_path):
    settings = ServerSettings(runs_dir=tmp_path / "runs", workers=1, heartbeat_s=0.3, heartbeat_timeout_s=3)
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        job_id = submit(client, spec(frames=6))
        job = wait_for(client, job_id, lambda job: job["progress"].get("frame", 0) >= 1)
        pid = worker_pid(job)
        os.kill(pid, signal.SIGSTOP)  # alive, but silent: no heartbeat, no progress
        try:
            done = wait_for(client, job_id, lambda job: job["state"] not in ("queued", "running"))
        finally:
            with pytest.raises(ProcessLookupError):  # the supervisor killed it before re-queueing
                os.kill(pid, signal.SIGCONT)
        assert done["state"] == "done", done["error"]
        assert done["requeues"] == 1


def test_a_dead_workers_job_is_requeued_once_and_only_by_its_own_worker(tmp_path):
    store = JobStore(tmp_path / "flipbook.db")
    store.insert([NewJob("a", "render", spec(frames=2))])
    assert store.claim("w1").worker == "w1"
    assert store.requeue_dead("a", "w2", "gone") is None  # not w2's job: untouched
    assert store.requeue_dead("a", "w1", "gone") == QUEUED
    again = store.claim("w3")
    assert again.resume and again.requeues == 1 and again.attempts == 2
    assert store.requeue_dead("a", "w3", "its worker process exited") == INTERRUPTED
    record = store.get("a")
    assert record.state == INTERRUPTED and "a second time" in record.error
    assert store.requeue_for_resume("a") and store.get("a").requeues == 0  # a person's resume starts afresh
    store.close()


def test_heartbeats_mark_only_the_workers_own_jobs(tmp_path):
    store = JobStore(tmp_path / "flipbook.db")
    store.insert([NewJob("a", "render", spec(frames=2)), NewJob("b", "render", spec(frames=2))])
    store.claim("w1"), store.claim("w2")
    assert set(store.stale_workers(time.time() + 1)) == {"w1", "w2"}
    time.sleep(0.01)
    cutoff = time.time()
    assert store.heartbeat("w1") == 1
    assert store.stale_workers(cutoff) == ["w2"]
    assert store.held_by("w1") == ["a"]
    store.close()


def test_one_worker_per_gpu_each_pinned_to_its_own(tmp_path, monkeypatch):
    from flipbook.server.processes import WorkerProcesses, default_worker_count, visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2,-1,3")  # CUDA stops at the first invalid entry
    assert visible_gpus() == ["0", "2"] and default_worker_count() == 2
    supervisor = WorkerProcesses(None, None, ServerSettings(runs_dir=tmp_path, workers=2))
    assert [supervisor._config(i).gpu for i in range(2)] == ["0", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == [] and default_worker_count() == 1
    cpu = WorkerProcesses(None, None, ServerSettings(runs_dir=tmp_path, workers=2))
    assert cpu._config(1).gpu is None and cpu._config(1).threads >= 1

"""The queue survives a crash: a real ``python -m flipbook.server`` is SIGKILLed while a render runs, then
started again on the same runs folder; every job keeps its state, none runs twice, the one that was running
is ``interrupted`` and resumes from its frames on disk."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from flipbook.server.store import JobStore, NewJob


def spec(frames: int, seed: int) -> dict:
    return {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"sampler": "Euler", "steps": 2, "seed": seed},
        "animation": {"max_frames": frames, "width": 64, "height": 64, "strength": 0.5},
        "prompts": {"0": "a harbour", str(frames // 2): "a harbour at night"},
        "output": {"formats": ["png", "gif"]},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m flipbook.server`` on a free port, as a separate process."""

    def __init__(self, runs_dir) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        command = [sys.executable, "-m", "flipbook.server", "--runs-dir", str(runs_dir), "--port", str(self.port),
                   "--workers", "1", "--log-level", "warning"]  # fmt: skip
        self.process = subprocess.Popen(command, env=env)
        deadline = time.monotonic() + 300  # a busy machine takes its time importing the engine
        while True:
            try:
                if httpx.get(f"{self.url}/api/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()  # never left running when the test fails here
                self.process.wait()
                pytest.fail("the server did not start")
            time.sleep(0.1)

    def get(self, path: str) -> dict:
        return httpx.get(f"{self.url}{path}", timeout=60).json()

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", timeout=60, **kwargs)

    def wait(self, job_id: str, done, timeout: float = 180.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(f"/api/jobs/{job_id}")
            if done(job):
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.05)


def worker_pid(runs, job_id: str) -> int:
    """The process id of the worker that claimed ``job_id`` (its worker id is ``worker<slot>-<pid>``)."""
    with sqlite3.connect(runs / "flipbook.db") as db:
        (worker,) = db.execute("SELECT worker FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return int(worker.rsplit("-", 1)[1])


def ended(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` has ended (or is a zombie) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def files(folder) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` (temporary ones included) with its size and modification time."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_sigkill_during_a_render_then_restart_keeps_every_job(tmp_path):
    runs = tmp_path / "runs"
    first = Server(runs)
    try:
        ids = [first.post("/api/jobs", json=spec(frames, seed)).json()["id"]
               for frames, seed in ((1, 1), (24, 2), (2, 3), (2, 4))]  # fmt: skip
        quick, long, *waiting = ids
        assert (
            first.wait(quick, lambda j: j["state"] != "queued" and j["state"] != "running")["state"] == "done"
        )
        first.wait(long, lambda j: j["state"] == "running" and j["progress"].get("frame", 0) >= 3)
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    left = files(runs / long)  # what the run folder holds the moment the server is gone
    assert ended(worker_pid(runs, long), 10), "the worker outlived its server"
    assert files(runs / long) == left  # its worker wrote nothing after the server died
    frames = runs / long / "frames"
    kept = {p.name: p.stat().st_mtime_ns for p in frames.glob("frame_*.png")}
    assert 3 <= len(kept) < 24
    with sqlite3.connect(runs / "flipbook.db") as db:  # what the dead server left
        assert dict(db.execute("SELECT id, state FROM jobs")) == {
            quick: "done",
            long: "running",
            waiting[0]: "queued",
            waiting[1]: "queued",
        }

    second = Server(runs)
    try:
        assert second.get(f"/api/jobs/{quick}")["state"] == "done"
        interrupted = second.get(f"/api/jobs/{long}")
        assert interrupted["state"] == "interrupted" and interrupted["resumable"]
        assert interrupted["progress"]["frame"] >= 3  # flushed to SQLite at every frame
        for job_id in waiting:  # queued before the crash: picked up after the restart
            assert second.wait(job_id, lambda j: j["state"] not in ("queued", "running"))["state"] == "done"
        assert second.get(f"/api/jobs/{long}")["state"] == "interrupted"  # not restarted on its own

        assert second.post(f"/api/jobs/{long}/resume").status_code == 202
        resumed = second.wait(long, lambda j: j["state"] not in ("queued", "running"))
        assert resumed["state"] == "done", resumed["error"]
        assert resumed["result"]["resumed_from"] == len(kept) - 1
        assert len(list(frames.glob("frame_*.png"))) == 24
        assert {name: (frames / name).stat().st_mtime_ns for name in kept} == kept  # frames on disk kept
        assert httpx.get(f"{second.url}{resumed['outputs']['gif']}").content.startswith(b"GIF8")

        listed = second.get("/api/jobs")["jobs"]
        assert sorted(j["id"] for j in listed) == sorted(ids)
    finally:
        second.process.send_signal(signal.SIGTERM)
        assert second.process.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a clean stop
    with sqlite3.connect(runs / "flipbook.db") as db:
        rows = dict(db.execute("SELECT id, attempts FROM jobs"))
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM jobs").fetchone() == (4, 4)
        assert db.execute("SELECT DISTINCT state FROM jobs").fetchall() == [("done",)]
    assert rows == {
        quick: 1,
        long: 2,
        waiting[0]: 1,
        waiting[1]: 1,
    }  # nothing ran twice, the resume once more


def pending_signals(pid: int) -> set[int]:
    """The signals pending for process ``pid`` (Linux: its threads' and the process's)."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    mask = int(status["SigPnd"], 16) | int(status["ShdPnd"], 16)
    return {bit + 1 for bit in range(64) if mask >> bit & 1}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel ends the worker on Linux")
def test_a_worker_frozen_when_its_server_is_killed_never_runs_again(tmp_path):
    """The worker is stopped (SIGSTOP) mid-render and its server SIGKILLed: the server's death itself
    sentences the worker (a fatal signal pending before it runs again: no thread of it can finish a frame
    or start another); continued, it ends at once, and its run folder stays as the server's death left it."""
    runs = tmp_path / "runs"
    server = Server(runs)
    pid = None
    try:
        job = server.post("/api/jobs", json=spec(24, 5)).json()["id"]
        server.wait(job, lambda j: j["state"] == "running" and j["progress"].get("frame", 0) >= 2)
        pid = worker_pid(runs, job)
        os.kill(pid, signal.SIGSTOP)
    finally:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
    left = files(runs / job)
    try:
        assert signal.SIGIO in pending_signals(pid), "nothing ends the worker before it runs again"
    finally:
        os.kill(pid, signal.SIGCONT)
        if not ended(pid, 10):
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the worker outlived its server")
    assert files(runs / job) == left


def test_concurrent_claims_take_every_job_exactly_once(tmp_path):
    store = JobStore(tmp_path / "flipbook.db")
    store.insert([NewJob(f"{i:016x}", "render", {"n": i}) for i in range(300)])
    claimed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        while (job := store.claim()) is not None:
            with lock:
                claimed.append(job.id)
            store.finish(job.id, "done")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == [f"{i:016x}" for i in range(300)]
    assert store.counts()["done"] == 300
    store.close()


def test_a_lifeline_reads_as_gone_once_the_server_end_closes():
    """The portable check a worker makes at every step and frame it reports."""
    import multiprocessing

    from flipbook.server.lifeline import Lifeline

    reader, writer = multiprocessing.Pipe(duplex=False)
    line = Lifeline(reader)
    assert not line.gone()
    writer.close()
    assert line.gone()
    reader.close()

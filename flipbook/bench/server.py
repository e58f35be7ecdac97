"""Benchmark ``server``: what the HTTP server itself costs, on loopback, with one idle worker.

- Queue overhead: from a client's ``POST /api/jobs`` to the worker starting the job (``started_at``), for a
  one-frame tiny job submitted while the worker is idle; also the POST's own latency (parsing, the full
  validation, the SQLite insert) and the time from the row's insert to the claim. Wall clocks of the client
  and the server are the same machine's.
- Status throughput: ``GET /api/jobs/{id}`` requests per second, from 1 and from 4 client threads with
  keep-alive connections, for a fixed time each.

A real uvicorn server in a thread of this process serves (:class:`~flipbook.server.background.BackgroundServer`);
the clients run in the same process, so on a 2-core machine client and server share the cores (the numbers
are a floor for what a separate client would see).
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

from flipbook.bench.report import write_report
from flipbook.errors import FlipbookError

JOBS_PER_RUN = 5
STATUS_SECONDS = 2.0
CLIENTS = (1, 4)
SPEC = {
    "model": {"name": "tiny", "device": "cpu"},
    "sampling": {"sampler": "Euler", "steps": 1, "seed": 1},
    "animation": {"max_frames": 1, "width": 64, "height": 64},
    "prompts": {"0": "a benchmark"},
    "output": {"formats": ["png"]},
}


def run(*, out: Path, runs: int = 3, **ignored) -> str:
    """Measure queue overhead and status requests/s ``runs`` times; write ``server.json``/``server.md``."""
    import httpx

    from flipbook.server import ServerSettings
    from flipbook.server.background import BackgroundServer

    if runs < 1:
        raise FlipbookError("runs", runs, "at least 1")
    with tempfile.TemporaryDirectory(prefix="flipbook-bench-") as folder:
        settings = ServerSettings(runs_dir=Path(folder) / "runs", workers=1)
        with BackgroundServer(settings) as server, httpx.Client(base_url=server.url, timeout=120) as client:
            _submit_and_wait(client)  # warm-up: the first job loads the model
            jobs = [_submit_and_wait(client) for _ in range(runs * JOBS_PER_RUN)]
            job_id = jobs[-1]["id"]
            status = {n: [_status_rate(server.url, job_id, n) for _ in range(runs)] for n in CLIENTS}
    result = {
        "case": "server",
        "runs": runs,
        "jobs_timed": len(jobs),
        "machine": _machine(),
        "submit_to_start_ms": _summary([j["submit_to_start_ms"] for j in jobs]),
        "post_latency_ms": _summary([j["post_ms"] for j in jobs]),
        "insert_to_claim_ms": _summary([j["insert_to_claim_ms"] for j in jobs]),
        "status_requests_per_s": {str(n): _summary(rates) for n, rates in status.items()},
    }
    return write_report(result, Path(out), "server", _table(result))


def _submit_and_wait(client) -> dict:
    """Submit one tiny job to the idle worker, wait until it finishes, and time its way to the worker."""
    began = time.time()
    response = client.post("/api/jobs", json=SPEC)
    posted = time.time()
    if response.status_code != 201:
        raise RuntimeError(f"submit failed: {response.status_code} {response.text[:200]}")
    job_id = response.json()["id"]
    while (job := client.get(f"/api/jobs/{job_id}").json())["state"] in ("queued", "running"):
        time.sleep(0.02)
    if job["state"] != "done":
        raise RuntimeError(f"benchmark job {job_id} ended {job['state']}: {job['error']}")
    return {
        "id": job_id,
        "submit_to_start_ms": (job["started_at"] - began) * 1000,
        "post_ms": (posted - began) * 1000,
        "insert_to_claim_ms": (job["started_at"] - job["created_at"]) * 1000,
    }


def _status_rate(url: str, job_id: str, clients: int) -> float:
    """Requests per second of ``GET /api/jobs/{id}`` from ``clients`` threads for STATUS_SECONDS."""
    import httpx

    counts = [0] * clients
    start = threading.Barrier(clients + 1)
    stop = threading.Event()

    def hammer(index: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            client.get(f"/api/jobs/{job_id}")  # connect before the clock starts
            start.wait()
            while not stop.is_set():
                if client.get(f"/api/jobs/{job_id}").status_code != 200:
                    raise RuntimeError("status request failed")
                counts[index] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.monotonic()
    time.sleep(STATUS_SECONDS)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - began)


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 2),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 2),
        "min": round(ordered[0], 2),
        "max": round(ordered[-1], 2),
        "n": len(ordered),
    }


def _machine() -> dict[str, object]:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}


def _table(result: dict) -> str:
    rows = [
        ("submit -> worker start (ms)", result["submit_to_start_ms"]),
        ("POST /api/jobs latency (ms)", result["post_latency_ms"]),
        ("insert -> claim (ms)", result["insert_to_claim_ms"]),
        *(
            (f"GET /api/jobs/{{id}} req/s, {n} client(s)", s)
            for n, s in result["status_requests_per_s"].items()
        ),
    ]
    lines = [
        f"server benchmark: loopback, 1 idle worker, tiny 1-frame jobs, {result['jobs_timed']} jobs, "
        f"{result['runs']} runs ({result['machine']['cpus']} CPUs)",
        "",
        "| measure | median | p90 | min | max |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {name} | {s['median']} | {s['p90']} | {s['min']} | {s['max']} |" for name, s in rows]
    return "\n".join(lines)

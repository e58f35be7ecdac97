"""200 submissions at once against a real uvicorn server on loopback: all accepted, 200 distinct ids, each in
the database exactly once.

The server runs with 0 workers, so the jobs stay queued: what is under load is the server's own path (HTTP,
parsing, the full validation each spec gets, SQLite inserts from many threads at once), not rendering, whose
speed is the device's. Claiming under concurrency is tested in test_server_restart.py.
"""

import sqlite3
import threading
import time

import httpx

from flipbook.server import ServerSettings
from flipbook.server.background import BackgroundServer

SUBMISSIONS = 200


def spec(i: int) -> dict:
    return {
        "model": {"name": "tiny"},
        "sampling": {"steps": 2, "seed": i},
        "animation": {"max_frames": 2, "width": 64, "height": 64, "strength": "0:(0.5), 1:(0.6)"},
        "prompts": {"0": f"submission {i}"},
    }


def test_200_concurrent_submissions_are_all_queued_once(tmp_path):
    runs = tmp_path / "runs"
    with BackgroundServer(ServerSettings(runs_dir=runs, workers=0)) as server:
        results: list[tuple[int, int, str]] = []
        lock = threading.Lock()
        start = threading.Barrier(SUBMISSIONS)

        def submit(i: int) -> None:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                start.wait()
                response = client.post("/api/jobs", json=spec(i))
                with lock:
                    results.append((i, response.status_code, response.json().get("id", "")))

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(SUBMISSIONS)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        assert elapsed < 60, f"200 submissions took {elapsed:.1f} s"

        assert sorted(status for _, status, _ in results) == [201] * SUBMISSIONS
        ids = {job_id for _, _, job_id in results}
        assert len(ids) == SUBMISSIONS

        listed = []
        with httpx.Client(base_url=server.url, timeout=60) as client:
            offset = 0
            while offset is not None:
                page = client.get("/api/jobs", params={"limit": 64, "offset": offset}).json()
                listed += [(j["id"], j["state"], j["seed"]) for j in page["jobs"]]
                offset = page["next_offset"]
        assert sorted(job_id for job_id, _, _ in listed) == sorted(ids)
        assert {state for _, state, _ in listed} == {"queued"}
        seeds = {job_id: i for i, _, job_id in results}
        assert all(seed == seeds[job_id] for job_id, _, seed in listed)  # each id got its own spec

    with sqlite3.connect(runs / "flipbook.db") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM jobs").fetchone() == (
            SUBMISSIONS,
            SUBMISSIONS,
        )
        assert {row[0] for row in db.execute("SELECT id FROM jobs")} == ids

"""``Idempotency-Key``: a retried POST never queues a second job, even when the first one's response was lost
after the job was committed (the key is stored in the same transaction as the job)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from flipbook.server import ServerSettings, create_app
from flipbook.server.store import IdempotencyKey, JobStore, KeyUsed, NewJob

BASE = "http://127.0.0.1:7860"
SPEC = {
    "model": {"name": "tiny", "device": "cpu"},
    "sampling": {"sampler": "Euler", "steps": 2, "seed": 7},
    "animation": {"max_frames": 2, "width": 64, "height": 64},
    "prompts": {"0": "a lighthouse"},
    "output": {"formats": ["png"]},
}
DEFORUM = {
    "W": 64,
    "H": 64,
    "max_frames": 2,
    "steps": 2,
    "seed": 5,
    "sampler": "euler",
    "prompts": {"0": "a"},
}


def serve(tmp_path, workers: int = 0) -> TestClient:
    settings = ServerSettings(runs_dir=tmp_path / "runs", workers=workers)
    return TestClient(create_app(settings), base_url=BASE, raise_server_exceptions=False)


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def total(client) -> int:
    return client.get("/api/jobs").json()["total"]


def test_the_same_key_returns_the_first_job(tmp_path):
    with serve(tmp_path) as client:
        first = client.post("/api/jobs", json=SPEC, headers=key("job-1"))
        assert first.status_code == 201 and "idempotent-replayed" not in first.headers
        again = client.post("/api/jobs", json=SPEC, headers=key("job-1"))
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        assert (
            again.json()["id"] == first.json()["id"]
            and again.headers["location"] == first.headers["location"]
        )
        assert total(client) == 1
        other = client.post("/api/jobs", json=SPEC, headers=key("job-2"))
        assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
        assert client.post("/api/jobs", json=SPEC).status_code == 201  # no key: a new job every time
        assert total(client) == 3


def test_the_same_key_with_another_request_is_refused(tmp_path):
    with serve(tmp_path) as client:
        first = client.post("/api/jobs", json=SPEC, headers=key("job-1")).json()["id"]
        changed = {**SPEC, "sampling": {**SPEC["sampling"], "seed": 8}}
        refused = client.post("/api/jobs", json=changed, headers=key("job-1"))
        assert refused.status_code == 422 and refused.json()["field"] == "Idempotency-Key"
        assert first in refused.json()["detail"] and total(client) == 1
        overridden = client.post("/api/jobs?set=sampling.seed=8", json=SPEC, headers=key("job-1"))
        assert overridden.status_code == 422


@pytest.mark.parametrize("value", ["", "has space", "x" * 256, "naïve"])
def test_a_malformed_key_is_refused(tmp_path, value):
    with serve(tmp_path) as client:
        response = client.post("/api/jobs", json=SPEC, headers={"Idempotency-Key": value.encode("utf-8")})
        assert response.status_code == 422 and response.json()["field"] == "Idempotency-Key"
        assert total(client) == 0


def test_a_response_lost_after_the_commit_is_not_a_second_job(tmp_path, monkeypatch):
    """The server dies (here: the response fails) between committing the job and answering; the client
    retries with its key and gets the job that exists, also after a restart."""
    import flipbook.server.api as api

    view = api.job_view
    calls = []

    def broken_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("connection lost")
        return view(*args, **kwargs)

    monkeypatch.setattr(api, "job_view", broken_once)
    with serve(tmp_path) as client:
        assert client.post("/api/jobs", json=SPEC, headers=key("retry-me")).status_code == 500
        retried = client.post("/api/jobs", json=SPEC, headers=key("retry-me"))
        assert retried.status_code == 200 and total(client) == 1
        job_id = retried.json()["id"]
    monkeypatch.setattr(api, "job_view", view)
    with serve(tmp_path) as client:  # a new server process on the same runs folder
        after = client.post("/api/jobs", json=SPEC, headers=key("retry-me"))
        assert after.status_code == 200 and after.json()["id"] == job_id and total(client) == 1


def test_a_multipart_retry_with_a_new_boundary_is_the_same_request(tmp_path):
    import json

    with serve(tmp_path) as client:
        ids = []
        for boundary in ("aaaa", "bbbb"):
            response = client.post(
                "/api/jobs",
                files={"spec": ("job.json", json.dumps(SPEC).encode(), "application/json")},
                headers={**key("upload-1"), "content-type": f"multipart/form-data; boundary={boundary}"},
            )
            assert response.status_code in (200, 201), response.text
            ids.append(response.json()["id"])
        assert ids[0] == ids[1] and total(client) == 1


def test_the_store_inserts_a_key_with_its_jobs_or_nothing(tmp_path):
    """Two requests with one key that both got past the first look-up: the second insert adds nothing."""
    store = JobStore(tmp_path / "jobs.db")
    first = IdempotencyKey("k", "fingerprint")
    store.insert([NewJob("a" * 16, "render", {})], key=first)
    with pytest.raises(KeyUsed) as used:
        store.insert([NewJob("b" * 16, "render", {})], key=first)
    assert used.value.first.job_ids == ["a" * 16] and used.value.first.same_request
    assert store.get("b" * 16) is None
    assert not store.first_request(IdempotencyKey("k", "other")).same_request
    assert store.first_request(IdempotencyKey("new", "x")) is None
    store.close()


def test_deforum_batches_take_a_key(tmp_path):
    with serve(tmp_path) as client:
        body = {"deforum_settings": [DEFORUM, {**DEFORUM, "seed": 6}]}
        first = client.post("/deforum_api/batches", json=body, headers=key("batch-1"))
        assert first.status_code == 202, first.text
        again = client.post("/deforum_api/batches", json=body, headers=key("batch-1"))
        assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
        assert again.json()["batch_id"] == first.json()["batch_id"]
        assert again.json()["job_ids"] == first.json()["job_ids"] and total(client) == 2
        other = client.post(
            "/deforum_api/batches", json={"deforum_settings": DEFORUM}, headers=key("batch-1")
        )
        assert other.status_code == 422 and total(client) == 2


@pytest.mark.usefixtures("one_thread")
def test_an_a1111_retry_gets_the_first_images(tmp_path):
    body = {"prompt": "a fox", "width": 64, "height": 64, "steps": 2, "sampler_name": "Euler", "seed": -1}
    with serve(tmp_path, workers=1) as client:
        first = client.post("/sdapi/v1/txt2img", json=body, headers=key("still-1"))
        assert first.status_code == 200, first.text
        again = client.post("/sdapi/v1/txt2img", json=body, headers=key("still-1"))
        assert again.status_code == 200 and again.json()["images"] == first.json()["images"]
        assert again.json()["info"] == first.json()["info"] and total(client) == 1
        refused = client.post("/sdapi/v1/txt2img", json={**body, "seed": 3}, headers=key("still-1"))
        assert refused.status_code == 422 and total(client) == 1

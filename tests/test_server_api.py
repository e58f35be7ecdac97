"""The job API in-process (FastAPI's TestClient): submit, progress, events, cancel, delete, download.

Renders use the built-in tiny model at 64x64 with 2 steps, so a frame takes a fraction of a second.
"""

import io
import json
import time

import PIL.Image
import pytest
from fastapi.testclient import TestClient

from flipbook.server import ServerSettings, create_app

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = "http://127.0.0.1:7860"
TOML = """
version = 1
[model]
name = "tiny"
device = "cpu"
[sampling]
sampler = "Euler"
steps = 2
seed = 3
[animation]
max_frames = 2
width = 64
height = 64
[prompts]
0 = "a lighthouse"
[output]
formats = ["png"]
"""
DEFORUM = """{
  // a hand-edited Deforum settings file: comments and a trailing comma are fine
  "W": 64, "H": 64, "max_frames": 2, "steps": 2, "seed": 5, "sampler": "euler",
  "animation_mode": "None", "prompts": {"0": "a forest"},
  "midas_weight": 0.5,
}"""


def spec(frames: int = 2, **sections) -> dict:
    """A tiny-model spec: ``frames`` frames of 64x64 in 2 steps, PNG frames and a GIF."""
    data = {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"sampler": "Euler", "steps": 2, "seed": 7},
        "animation": {"max_frames": frames, "width": 64, "height": 64, "strength": 0.5},
        "prompts": {"0": "a lighthouse at dusk", str(max(frames // 2, 1)): "a lighthouse at night"},
        "output": {"formats": ["png", "gif"]},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


def serve(tmp_path, workers: int = 1, **options) -> TestClient:
    settings = ServerSettings(runs_dir=tmp_path / "runs", workers=workers, **options)
    return TestClient(create_app(settings), base_url=BASE)


def wait_for(client: TestClient, job_id: str, done, timeout: float = 180.0) -> dict:
    """Poll the job until ``done(job)``; fails with the last state seen when it never gets there."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if done(job):
            return job
        assert time.monotonic() < deadline, f"job never got there: {job['state']} {job['progress']}"
        time.sleep(0.05)


def finished(job: dict) -> bool:
    return job["state"] not in ("queued", "running")


def job_folders(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "runs").iterdir() if p.is_dir())


def test_a_tiny_job_renders_and_its_gif_downloads(tmp_path):
    with serve(tmp_path) as client:
        response = client.post("/api/jobs", json=spec(frames=2, output={"dir": "/tmp/elsewhere"}))
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        assert response.headers["location"] == f"/api/jobs/{job_id}"
        assert any(w.startswith("output.dir '/tmp/elsewhere'") for w in response.json()["warnings"])

        job = wait_for(client, job_id, finished)
        assert job["state"] == "done", job["error"]
        assert job["progress"]["frame"] == job["progress"]["frames"] == 2
        assert job["progress"]["fraction"] == 1.0 and job["seed"] == 7
        assert job["spec"]["output"]["dir"] == "the runs folder" and job["spec"]["output"]["name"] == job_id

        gif = client.get(job["outputs"]["gif"])
        assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
        with PIL.Image.open(io.BytesIO(gif.content)) as image:
            assert image.size == (64, 64) and image.n_frames == 2
        files = client.get(f"/api/jobs/{job_id}/files").json()["files"]
        assert {"frames/frame_00000.png", "frames/frame_00001.png", "spec.json", f"{job_id}.gif"} <= set(
            files
        )
        preview = client.get(f"/api/jobs/{job_id}/preview.png")
        assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG")
        assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (spec(sampling={"sampler": "Euler b"}), "sampling.sampler"),
        (spec(camera={"zoom": "0:(1.0+0.02*foo(t))"}), "camera.zoom"),
        (spec(animation={"strength": "0:(0.5), 1:(1.7)"}), "animation.strength"),  # out of range at frame 1
        (spec(animation={"width": 100}), "animation.width"),
        (spec(animation={"max_franes": 3}), "animation.max_franes"),
        (spec(init={"image": "/etc/hosts"}), "init.image"),  # a path on the server: only uploads
        (spec(model={"name": "/opt/models/secret.safetensors"}), "model.name"),
        (spec(prompts={"0": "a cat <lora:../../weights/x:0.8>"}), "prompts"),
    ],
)
def test_a_bad_spec_is_refused_with_its_field_and_creates_no_job(tmp_path, body, field):
    with serve(tmp_path, workers=0) as client:
        response = client.post("/api/jobs", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == field
        assert field.split(".")[-1] in response.json()["detail"]
        assert client.get("/api/jobs").json()["total"] == 0
        assert job_folders(tmp_path) == []


def test_unparsable_bodies_are_refused(tmp_path):
    with serve(tmp_path, workers=0) as client:
        broken = client.post("/api/jobs", content=b"{not json", headers={"content-type": "application/json"})
        assert broken.status_code == 422 and "JSON" in broken.json()["detail"]
        unknown = client.post("/api/jobs", content=b"x", headers={"content-type": "image/png"})
        assert unknown.status_code == 422 and unknown.json()["field"] == "Content-Type"
        assert client.post("/api/jobs?format=yaml", json=spec()).json()["field"] == "format"
        assert client.get("/api/jobs").json()["total"] == 0


def test_toml_deforum_text_and_multipart_uploads_are_accepted(tmp_path):
    with serve(tmp_path, workers=0) as client:
        toml = client.post("/api/jobs", content=TOML, headers={"content-type": "application/toml"})
        assert toml.status_code == 201, toml.text
        deforum = client.post("/api/jobs", content=DEFORUM, headers={"content-type": "text/plain"})
        assert deforum.status_code == 201, deforum.text
        assert any("midas_weight" in w for w in deforum.json()["warnings"])
        forced = client.post("/api/jobs?format=toml&set=animation.max_frames=5", content=TOML,
                             headers={"content-type": "text/plain"})  # fmt: skip
        assert forced.status_code == 201, forced.text
        upload = client.post(
            "/api/jobs",
            files={"spec": ("job.toml", TOML.encode(), "application/octet-stream")},
            data={"set": ["animation.max_frames=3", "sampling.seed=11"]},
        )
        assert upload.status_code == 201, upload.text

        specs = {j: client.get(f"/api/jobs/{j}").json()["spec"] for j in
                 (toml.json()["id"], deforum.json()["id"], forced.json()["id"], upload.json()["id"])}  # fmt: skip
        frames = [s["animation"]["max_frames"] for s in specs.values()]
        assert frames == [2, 2, 5, 3]
        assert specs[deforum.json()["id"]]["sampling"]["sampler"] == "Euler"
        assert specs[upload.json()["id"]]["sampling"]["seed"] == 11


def test_list_is_newest_first_and_pages(tmp_path):
    with serve(tmp_path, workers=0) as client:
        ids = [client.post("/api/jobs", json=spec()).json()["id"] for _ in range(5)]
        first = client.get("/api/jobs?limit=2").json()
        assert [j["id"] for j in first["jobs"]] == ids[::-1][:2]
        assert first["total"] == 5 and first["next_offset"] == 2
        rest = client.get("/api/jobs?limit=10&offset=2").json()
        assert [j["id"] for j in rest["jobs"]] == ids[::-1][2:] and rest["next_offset"] is None
        client.post(f"/api/jobs/{ids[0]}/cancel")
        assert [j["id"] for j in client.get("/api/jobs?state=cancelled").json()["jobs"]] == [ids[0]]
        assert client.get("/api/jobs?state=lost").status_code == 422


def test_cancel_a_queued_job_at_once(tmp_path):
    with serve(tmp_path, workers=0) as client:
        job_id = client.post("/api/jobs", json=spec()).json()["id"]
        cancelled = client.post(f"/api/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 409
        assert client.get(f"/api/jobs/{job_id}").json()["state"] == "cancelled"
        assert client.post("/api/jobs/0123456789abcdef/cancel").status_code == 404


def test_cancel_a_running_job_then_delete_it(tmp_path):
    with serve(tmp_path) as client:
        job_id = client.post("/api/jobs", json=spec(frames=200)).json()["id"]
        wait_for(client, job_id, lambda j: j["state"] == "running" and j["progress"].get("frame", 0) >= 1)
        assert client.delete(f"/api/jobs/{job_id}").status_code == 409  # refused while running

        assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 202
        job = wait_for(client, job_id, finished)
        assert job["state"] == "cancelled" and job["resumable"]
        written = len(list((tmp_path / "runs" / job_id / "frames").glob("frame_*.png")))
        assert 1 <= written < 200
        assert job["progress"]["frame"] >= 1  # flushed at every frame

        assert client.delete(f"/api/jobs/{job_id}").status_code == 204
        assert client.get(f"/api/jobs/{job_id}").status_code == 404
        assert job_id not in job_folders(tmp_path)


def test_events_stream_frame_progress_and_end_with_done(tmp_path):
    with serve(tmp_path) as client:
        job_id = client.post("/api/jobs", json=spec(frames=3)).json()["id"]
        events = []
        with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            name = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    events.append((name, json.loads(line.removeprefix("data: "))))
        names = [n for n, _ in events]
        assert names[0] == "state" and names[-1] == "done"
        frames = [data["progress"]["frame"] for n, data in events if n == "frame"]
        assert frames == sorted(frames) and frames[-1] == 3
        assert "step" in names
        assert events[-1][1]["state"] == "done" and events[-1][1]["id"] == job_id

        # a finished job's stream says so at once and ends
        with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
            body = stream.read().decode()
        assert body.count("event: ") == 2 and "event: done" in body


def test_resume_queues_a_stopped_render_again(tmp_path):
    with serve(tmp_path, workers=0) as client:
        job_id = client.post("/api/jobs", json=spec()).json()["id"]
        assert client.post(f"/api/jobs/{job_id}/resume").status_code == 409  # queued: nothing to resume
        client.post(f"/api/jobs/{job_id}/cancel")
        resumed = client.post(f"/api/jobs/{job_id}/resume")
        assert resumed.status_code == 202 and resumed.json()["state"] == "queued"


def test_stopping_the_server_interrupts_a_running_render(tmp_path):
    with serve(tmp_path) as client:
        job_id = client.post("/api/jobs", json=spec(frames=200)).json()["id"]
        wait_for(client, job_id, lambda j: j["state"] == "running" and j["progress"].get("frame", 0) >= 1)
    with serve(tmp_path, workers=0) as client:  # the same runs folder, started again
        job = client.get(f"/api/jobs/{job_id}").json()
        assert job["state"] == "interrupted" and job["resumable"] and job["error"]["type"] == "interrupted"
        assert client.post(f"/api/jobs/{job_id}/resume").json()["state"] == "queued"

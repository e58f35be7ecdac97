"""Who may use the server, what may be sent, which files may be read."""

import base64
import http.client
import io
import os
import subprocess
import sys

import PIL.Image
import pytest
from fastapi.testclient import TestClient

from flipbook.errors import FlipbookError
from flipbook.server import ServerSettings, create_app
from flipbook.server.background import BackgroundServer
from flipbook.server.security import confined_file

BASE = "http://127.0.0.1:7860"
SPEC = {
    "model": {"name": "tiny", "device": "cpu"},
    "sampling": {"steps": 2, "seed": 1},
    "animation": {"max_frames": 1, "width": 64, "height": 64},
    "prompts": {"0": "a cat"},
}
SPEC_TOML = b"""
[model]
name = "tiny"
[animation]
max_frames = 1
width = 64
height = 64
[prompts]
0 = "a cat"
"""


def png_bytes(size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def client_for(tmp_path, base_url: str = BASE, **options) -> TestClient:
    settings = ServerSettings(runs_dir=tmp_path / "runs", workers=0, **options)
    return TestClient(create_app(settings), base_url=base_url)


# ---- binding and credentials -----------------------------------------------------------------------------


def test_a_non_loopback_address_without_credentials_refuses_to_start(tmp_path):
    for host in ("0.0.0.0", "::", "192.168.1.10", "myhost.example"):
        with pytest.raises(FlipbookError, match="--host"):
            ServerSettings(host=host).checked()
    ServerSettings(host="0.0.0.0", token="t").checked()
    ServerSettings(host="0.0.0.0", auth=("u", "p")).checked()
    ServerSettings(host="::1").checked()

    command = [
        sys.executable,
        "-m",
        "flipbook.server",
        "--host",
        "0.0.0.0",
        "--runs-dir",
        str(tmp_path / "r"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "error: --host: '0.0.0.0' is not valid" in done.stderr and "--auth" in done.stderr
    assert not (tmp_path / "r").exists()


def test_basic_auth_is_required_on_every_endpoint(tmp_path):
    remote = "http://10.1.2.3:7860"
    with client_for(tmp_path, remote, host="0.0.0.0", auth=("ada", "s3cret:pw")) as client:
        for path in (
            "/api/jobs",
            "/api/health",
            "/sdapi/v1/sd-models",
            "/deforum_api/jobs",
            "/docs",
            "/nowhere",
        ):
            response = client.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"].startswith("Basic")
        for user, password in (("ada", "wrong"), ("bob", "s3cret:pw"), ("ada", "s3cret"), ("", "")):
            assert client.get("/api/jobs", auth=(user, password)).status_code == 401
        assert client.get("/api/jobs", headers={"authorization": "Basic !!notbase64"}).status_code == 401
        assert client.post("/api/jobs", json=SPEC).status_code == 401
        assert client.get("/api/jobs", auth=("ada", "s3cret:pw")).status_code == 200
        assert client.post("/api/jobs", json=SPEC, auth=("ada", "s3cret:pw")).status_code == 201


def test_bearer_token_is_required(tmp_path):
    with client_for(tmp_path, "http://10.1.2.3:7860", host="0.0.0.0", token="tok-123") as client:
        assert client.get("/api/jobs").status_code == 401
        assert client.get("/api/jobs", headers={"authorization": "Bearer tok-124"}).status_code == 401
        assert client.get("/api/jobs", auth=("tok-123", "tok-123")).status_code == 401
        assert client.get("/api/jobs", headers={"authorization": "Bearer tok-123"}).status_code == 200


def test_a_loopback_server_only_answers_loopback_host_names(tmp_path):
    with client_for(tmp_path, allow_hosts=("flipbook.lan",)) as client:
        assert client.get("/api/health").status_code == 200
        assert client.get("/api/health", headers={"host": "localhost:7860"}).status_code == 200
        assert client.get("/api/health", headers={"host": "[::1]:7860"}).status_code == 200
        assert client.get("/api/health", headers={"host": "flipbook.lan"}).status_code == 200
        assert client.get("/api/health", headers={"host": "rebound.evil.example:7860"}).status_code == 400


# ---- origins --------------------------------------------------------------------------------------------


def test_state_changing_requests_from_other_origins_are_refused(tmp_path):
    with client_for(tmp_path, allow_origins=("http://localhost:3000",)) as client:
        for origin in ("http://evil.example", "http://127.0.0.1:7861", "https://127.0.0.1:7860", "null"):
            response = client.post("/api/jobs", json=SPEC, headers={"origin": origin})
            assert response.status_code == 403, origin
        assert client.get("/api/jobs").json()["total"] == 0
        assert (
            client.post("/sdapi/v1/options", json={}, headers={"origin": "http://evil.example"}).status_code
            == 403
        )
        assert client.get("/api/jobs", headers={"origin": "http://evil.example"}).status_code == 200  # reads

        same = client.post("/api/jobs", json=SPEC, headers={"origin": "http://127.0.0.1:7860"})
        assert same.status_code == 201
        allowed = client.post("/api/jobs", json=SPEC, headers={"origin": "http://LOCALHOST:3000"})
        assert allowed.status_code == 201
        no_origin = client.post("/api/jobs", json=SPEC)  # curl and scripts send none
        assert no_origin.status_code == 201
        job_id = same.json()["id"]
        assert (
            client.delete(f"/api/jobs/{job_id}", headers={"origin": "http://evil.example"}).status_code == 403
        )
        assert (
            client.delete(f"/api/jobs/{job_id}", headers={"origin": "http://127.0.0.1:7860"}).status_code
            == 204
        )


# ---- uploads --------------------------------------------------------------------------------------------


def test_bodies_over_the_upload_limit_get_413(tmp_path):
    with client_for(tmp_path, max_upload_mb=0.01) as client:  # 10 KiB
        big = {**SPEC, "negative_prompt": "x" * 20_000}
        assert client.post("/api/jobs", json=big).status_code == 413

        def chunks():  # no Content-Length: counted while it streams
            for _ in range(20):
                yield b" " * 1024

        chunked = client.post("/api/jobs", content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413
        upload = client.post(
            "/api/jobs",
            files={"spec": ("a.toml", SPEC_TOML), "init.image": ("a.png", b"\x89PNG" + b"0" * 20_000)},
        )
        assert upload.status_code == 413
        assert client.get("/api/jobs").json()["total"] == 0


def test_uploads_are_sniffed_by_content(tmp_path):
    with client_for(tmp_path) as client:
        text = client.post(
            "/api/jobs",
            files={"spec": ("a.toml", SPEC_TOML), "init.image": ("cat.png", b"#!/bin/sh\necho hi\n")},
        )
        assert text.status_code == 415 and text.json()["field"] == "init.image"
        audio = client.post(
            "/api/jobs", files={"spec": ("a.toml", SPEC_TOML), "audio.file": ("a.mp3", png_bytes())}
        )
        assert audio.status_code == 415 and audio.json()["field"] == "audio.file"
        unknown = client.post(
            "/api/jobs", files={"spec": ("a.toml", SPEC_TOML), "notes": ("n.png", png_bytes())}
        )
        assert unknown.status_code == 422 and unknown.json()["field"] == "upload"
        code = client.post(
            "/api/jobs", files={"spec": ("a.toml", SPEC_TOML), "post.film_model": ("f.pt", b"PK")}
        )
        assert code.status_code == 422
        assert client.get("/api/jobs").json()["total"] == 0
        assert sorted(p.name for p in (tmp_path / "runs").iterdir() if p.is_dir()) == []

        image = client.post(
            "/api/jobs", files={"spec": ("a.toml", SPEC_TOML), "init.image": ("whatever.bin", png_bytes())}
        )
        assert image.status_code == 201, image.text
        job = client.get(f"/api/jobs/{image.json()['id']}").json()
        saved = job["spec"]["init"]["image"]
        assert saved == str(tmp_path / "runs" / job["id"] / "inputs" / "init_image.png")

        not_image = {"prompt": "x", "steps": 2, "width": 64, "height": 64,
                     "init_images": [base64.b64encode(b"GIF89a but not really").decode()]}  # fmt: skip
        a1111 = client.post("/sdapi/v1/img2img", json=not_image)
        assert a1111.status_code == 415 and a1111.json()["field"] == "init_images[0]"
        assert client.get("/api/jobs").json()["total"] == 1


# ---- files ----------------------------------------------------------------------------------------------

TRAVERSALS = [
    "%2e%2e/%2e%2e/secret.txt",
    "..%2f..%2fsecret.txt",
    "inputs/..%2f..%2f..%2fsecret.txt",
    "%2e%2e%2f%2e%2e%2fsecret.txt",
    "%252e%252e/%252e%252e/secret.txt",
    "..%5c..%5csecret.txt",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "%2e%2e/flipbook.db",
    "escape.txt",  # a symlink that leads out of the run folder
    "inputs/%00",
    "inputs",
    "",
]


def test_files_outside_the_run_folder_are_404(tmp_path):
    (tmp_path / "secret.txt").write_text("secret")
    with client_for(tmp_path) as client:
        job = client.post(
            "/api/jobs", files={"spec": ("a.toml", SPEC_TOML), "init.image": ("a.png", png_bytes())}
        )
        job_id = job.json()["id"]
        run_dir = tmp_path / "runs" / job_id
        os.symlink(tmp_path / "secret.txt", run_dir / "escape.txt")
        assert client.get(f"/api/jobs/{job_id}/files/inputs/init_image.png").status_code == 200
        for path in TRAVERSALS:
            response = client.get(f"/api/jobs/{job_id}/files/{path}")
            assert response.status_code == 404, path
            assert b"secret" not in response.content
        for bad_id in ("..", "%2e%2e", "..%2f..%2ftmp", job_id.upper(), job_id + "0"):
            assert client.get(f"/api/jobs/{bad_id}/files/spec.json").status_code == 404

    # raw request lines, as a client that does not normalise paths sends them
    with BackgroundServer(ServerSettings(runs_dir=tmp_path / "runs", workers=0)) as server:
        for path in (
            "../../secret.txt",
            "inputs/../../../secret.txt",
            "./../secret.txt",
            "..\\..\\secret.txt",
        ):
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            connection.request("GET", f"/api/jobs/{job_id}/files/{path}")
            response = connection.getresponse()
            assert response.status == 404, path
            assert b"secret" not in response.read()
            connection.close()


def test_confined_file_only_returns_regular_files_inside_the_root(tmp_path):
    root = tmp_path / "run"
    (root / "frames").mkdir(parents=True)
    (root / "frames" / "a.png").write_bytes(b"x")
    (tmp_path / "outside.txt").write_text("no")
    os.symlink(tmp_path / "outside.txt", root / "link")
    os.symlink(root / "frames" / "a.png", root / "inner-link")
    assert confined_file(root, "frames/a.png") == (root / "frames" / "a.png").resolve()
    assert confined_file(root, "inner-link") == (root / "frames" / "a.png").resolve()
    for bad in ("../outside.txt", "frames/../../outside.txt", "link", str(tmp_path / "outside.txt"), "frames",
                "", ".", "frames\\a.png", "a\x00b", "missing.png"):  # fmt: skip
        assert confined_file(root, bad) is None, bad

"""Who may use the server, what may be sent, which files may be read."""

import base64
import http.client
import io
import json
import os
import subprocess
import sys
import typing

import PIL.Image
import pytest
from fastapi.testclient import TestClient

from flipbook.errors import FlipbookError
from flipbook.server import ServerSettings, create_app, ui
from flipbook.server.background import BackgroundServer
from flipbook.server.security import confined_file, public_text
from flipbook.spec.model import Spec
from flipbook.spec.references import (
    ANY_INDEX,
    InputFile,
    ModelReference,
    field_name,
    marked_fields,
    marker_of,
)

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
        ui_call = client.post(
            "/ui/gradio_api/queue/join", content=chunks(), headers={"content-type": "application/json"}
        )
        assert ui_call.status_code == 413
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
        saved = job["spec"]["init"]["image"]  # shown relative to the runs folder
        assert saved == f"{job['id']}/inputs/init_image.png"
        stored = client.app.state.flipbook.store.get(job["id"]).payload["init"]["image"]
        assert stored == str(tmp_path / "runs" / job["id"] / "inputs" / "init_image.png")

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


# ---- fields that name models and files (read from the schema) ----------------------------------------------

PATHS = [
    "/etc/passwd",
    "tmp/x.ckpt",  # exists relative to the server's working directory
    "tmp/model",  # a folder there: shaped like a hub id, still a path
    "x.ckpt",
    "a/b/c.safetensors",
    "./x",
    "..",
    "../x",
    "models/../tmp/x.ckpt",
    "~",
    "~/x.ckpt",
    "C:\\models\\x.ckpt",
    "C:/models/x.ckpt",
    "models\\x.ckpt",
]


def _section_class(model, name):
    from pydantic import BaseModel

    stack = [model.model_fields[name].annotation]
    while stack:
        annotation = stack.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        stack += typing.get_args(annotation)
    raise AssertionError(f"{name} holds no section")


def _required(section) -> dict:
    """The fields a list item needs to exist (a unit's model): a built-in where there is one."""
    values = {}
    for name, info in section.model_fields.items():
        if info.is_required():
            marker = marker_of(section, name)
            values[name] = marker.builtins[0] if getattr(marker, "builtins", ()) else "x"
    return values


def data_at(location, value, mode="travel") -> dict:
    """A small valid spec's data with ``value`` at ``location`` (list items made with what they need)."""
    data = json.loads(json.dumps(SPEC))
    data["animation"] = {**data["animation"], "max_frames": 2, "mode": mode}
    node, model, parts, index = data, Spec, list(location), 0
    while index < len(parts) - 1:
        name, section = parts[index], _section_class(model, parts[index])
        if index + 1 < len(parts) and parts[index + 1] == ANY_INDEX:
            node[name] = [_required(section)]
            node, index = node[name][0], index + 2
        else:
            node, index = node.setdefault(name, _required(section)), index + 1
        model = section
    node[parts[-1]] = value
    return data


def value_for(marker, path: str):
    """``path`` as the field takes a name: as it is, in a checkpoint schedule, or in a prompt's LoRA tag."""
    if marker.form == "schedule":
        return f'0:("tiny"), 1:("{path}")'
    if marker.form == "prompt_tags":
        return f"a cat <lora:{path}:0.5>"
    return path


def concrete(location) -> str:
    return field_name(tuple(0 if part == ANY_INDEX else part for part in location))


@pytest.fixture()
def server_cwd(tmp_path, monkeypatch):
    """The server runs in a folder holding ``tmp/x.ckpt``, ``tmp/model/`` and ``x.ckpt``."""
    cwd = tmp_path / "cwd"
    (cwd / "tmp" / "model").mkdir(parents=True)
    (cwd / "tmp" / "x.ckpt").write_bytes(b"weights")
    (cwd / "x.ckpt").write_bytes(b"weights")
    monkeypatch.chdir(cwd)
    return cwd


def test_every_model_field_refuses_a_path_over_http(tmp_path, server_cwd):
    """Walks the whole schema: a model field added later is covered without a list to extend."""
    models = [(loc, m) for loc, m in marked_fields() if isinstance(m, ModelReference)]
    assert len(models) >= 14
    with client_for(tmp_path) as client:
        for location, marker in models:
            for path in PATHS:
                response = client.post("/api/jobs", json=data_at(location, value_for(marker, path)))
                assert response.status_code == 422, (concrete(location), path, response.text)
                assert response.json()["field"] == concrete(location), (path, response.text)
        assert client.get("/api/jobs").json()["total"] == 0
    assert [p.name for p in (tmp_path / "runs").iterdir() if p.is_dir()] == []


def test_every_input_file_field_takes_only_an_upload(tmp_path, server_cwd):
    from flipbook.modes import MODES

    inputs = [loc for loc, m in marked_fields() if isinstance(m, InputFile)]
    assert len(inputs) >= 9
    with client_for(tmp_path) as client:
        for location in inputs:
            for path in ("/etc/hosts", "x.ckpt", "tmp/x.ckpt", "missing.png"):
                modes = [m for m in MODES if _valid(data_at(location, path, m))]
                assert modes, f"no mode takes {concrete(location)} alone"
                response = client.post("/api/jobs", json=data_at(location, path, modes[0]))
                assert response.status_code == 422, (concrete(location), response.text)
                assert response.json()["field"] == concrete(location)
                assert "uploaded with the job" in response.json()["detail"]
        assert client.get("/api/jobs").json()["total"] == 0


def _valid(data) -> bool:
    try:
        Spec.model_validate(data)
    except Exception:  # noqa: BLE001
        return False
    return True


def test_model_names_built_ins_hub_ids_and_models_folder_names_are_accepted(tmp_path, server_cwd):
    webui = tmp_path / "webui"
    (webui / "models" / "Stable-diffusion" / "anime" / "sub").mkdir(parents=True)
    (webui / "models" / "Stable-diffusion" / "anime" / "sub" / "deep.safetensors").write_bytes(b"")
    (webui / "models" / "Lora").mkdir(parents=True)
    (webui / "models" / "Lora" / "style.safetensors").write_bytes(b"")
    (webui / "models" / "Lora" / "x.safetensors").write_bytes(b"")
    with client_for(tmp_path, models_dir=webui) as client:
        for model, prompt in (
            ("tiny", "a cat"),
            ("random-sd15", "a cat <lora:style:0.5>"),
            ("runwayml/stable-diffusion-v1-5", "a cat <lora:style.safetensors>"),
            ("anime/sub/deep", "a cat"),
            ('0:("tiny"), 1:("anime/sub/deep")', "a cat"),
        ):
            body = {**SPEC, "model": {"name": model}, "prompts": {"0": prompt}}
            assert client.post("/api/jobs", json=body).status_code == 201, (model, prompt)
        refused = {
            ("model", "name"): "nothing-here",  # a name the server does not have
            ("model", "vae"): "org/vae",  # VAEs are files or models-folder names: no hub
            ("post", "upscale_model"): "org/esrgan",
        }
        for (section, key), name in refused.items():
            response = client.post("/api/jobs", json={**SPEC, section: {**SPEC.get(section, {}), key: name}})
            assert response.status_code == 422 and response.json()["field"] == f"{section}.{key}", name
        # x.ckpt is in the models folder's LoRAs and in the server's working directory: the loader would read the
        # working directory's, so it is a path
        lora = client.post("/api/jobs", json={**SPEC, "prompts": {"0": "<lora:x.ckpt>"}})
        assert lora.status_code == 422 and "not accepted over HTTP" in lora.json()["detail"]


def test_frame_interpolation_weights_are_taken_by_their_name_in_the_models_folder(tmp_path, server_cwd):
    """FILM and RIFE weights are files: over HTTP they are named as the server's --models-dir holds them
    (Deforum's folders here), never by path."""
    webui = tmp_path / "webui"
    (webui / "models" / "Deforum" / "film_interpolation").mkdir(parents=True)
    (webui / "models" / "Deforum" / "RIFE46.pkl").write_bytes(b"weights")
    (webui / "models" / "Deforum" / "film_interpolation" / "film_net_fp16.pt").write_bytes(b"weights")
    with client_for(tmp_path, models_dir=webui) as client:
        for method, name in (("rife", "RIFE46"), ("film", "film_net_fp16")):
            post = {"interpolate": 2, "interpolate_method": method, f"{method}_model": name}
            job = client.post("/api/jobs", json={**SPEC, "post": post})
            assert job.status_code == 201, job.text
            for wrong in (f"{name}-missing", str(webui / "models" / "Deforum" / "RIFE46.pkl")):
                refused = client.post("/api/jobs", json={**SPEC, "post": {**post, f"{method}_model": wrong}})
                assert refused.status_code == 422 and refused.json()["field"] == f"post.{method}_model", wrong


def test_a_control_image_is_uploaded_like_any_input(tmp_path):
    unit = b'\n[[controlnet]]\nmodel = "tiny"\n'
    with client_for(tmp_path) as client:
        job = client.post(
            "/api/jobs",
            files={"spec": ("a.toml", SPEC_TOML + unit), "controlnet[0].image": ("pose.png", png_bytes())},
        )
        assert job.status_code == 201, job.text
        spec = client.get(f"/api/jobs/{job.json()['id']}").json()["spec"]
        assert spec["controlnet"][0]["image"].endswith(f"{job.json()['id']}/inputs/controlnet_0_image.png")
        missing = client.post(
            "/api/jobs",
            files={"spec": ("a.toml", SPEC_TOML + unit), "controlnet[1].image": ("pose.png", png_bytes())},
        )
        assert missing.status_code == 422 and missing.json()["field"] == "controlnet[1].image"
        assert "no controlnet[1]" in missing.json()["detail"]


# ---- the web UI's files ------------------------------------------------------------------------------------

FILE_DATA = {"meta": {"_type": "gradio.FileData"}}


def test_the_web_ui_reads_no_file_a_client_names(tmp_path):
    """The issue's reproductions: a Spec-tab import and a queued job naming server files, and file= for the
    job database."""
    secret = tmp_path / "secret.toml"
    secret.write_text('version = 1\n[prompts]\n0 = "TOPSECRET"\n', encoding="utf-8")
    picture = tmp_path / "secret.png"
    PIL.Image.new("RGB", (64, 64), (1, 2, 3)).save(picture)
    with client_for(tmp_path) as client:
        state = client.app.state.flipbook
        named = client.post(
            "/ui/gradio_api/call/on_import", json={"data": [{"path": str(secret), **FILE_DATA}, ""]}
        )
        assert named.status_code == 403 and b"TOPSECRET" not in named.content

        uploads = [None] * len(ui.upload_fields())
        uploads[ui.upload_fields().index("init.image")] = {"path": str(picture), **FILE_DATA}
        job = client.post("/ui/gradio_api/call/submit_spec", json={"data": [ui.data_to_toml(SPEC), *uploads]})
        assert job.status_code == 403
        assert client.get("/api/jobs").json()["total"] == 0

        database = state.settings.runs_dir / "flipbook.db"
        job_id = client.post("/api/jobs", json=SPEC).json()["id"]
        for path in (database, f"{database}-wal", state.settings.runs_dir / "flipbook.lock", secret,
                     state.settings.runs_dir / job_id / ".." / "flipbook.db", "runs/flipbook.db"):  # fmt: skip
            for route in ("/ui/gradio_api/file=", "/ui/gradio_api/file/"):
                response = client.get(f"{route}{path}")
                assert response.status_code == 404, (route, path)
                assert b"SQLite" not in response.content and b"TOPSECRET" not in response.content
        assert client.get(
            f"/ui/gradio_api/file={state.settings.runs_dir / job_id / 'spec.json'}"
        ).status_code in (
            200,
            404,  # not written until the job runs; the guard lets run-folder files through either way
        )

        # what the browser does: upload, then name the upload
        upload = client.post("/ui/gradio_api/upload", files={"files": ("mine.toml", secret.read_bytes())})
        path = upload.json()[0]
        event = client.post("/ui/gradio_api/call/on_import", json={"data": [{"path": path, **FILE_DATA}, ""]})
        assert event.status_code == 200, event.text
        result = client.get(f"/ui/gradio_api/call/on_import/{event.json()['event_id']}")
        assert "TOPSECRET" in result.text and "Imported the spec mine.toml" in result.text
        assert b"TOPSECRET" in client.get(f"/ui/gradio_api/file={path}").content


def test_run_folder_links_are_never_served(tmp_path):
    secret = tmp_path / "secret.png"
    PIL.Image.new("RGB", (64, 64), (9, 9, 9)).save(secret)
    with client_for(tmp_path) as client:
        state = client.app.state.flipbook
        job_id = client.post("/api/jobs", json=SPEC).json()["id"]
        assert state.store.claim().id == job_id
        run = tmp_path / "runs" / job_id
        (run / "frames").mkdir(parents=True)
        os.symlink(secret, run / "frames" / "frame_00000.png")
        os.symlink(secret, run / f"{job_id}.gif")
        state.store.finish(job_id, "done", result={"outputs": {"gif": f"{job_id}.gif"}})
        assert client.get(f"/api/jobs/{job_id}/preview.png").status_code == 404
        assert ui.gallery_items(state) == []
        assert client.get(f"/api/jobs/{job_id}/files").json()["files"] == []
        assert client.get(f"/ui/gradio_api/file={run / 'frames' / 'frame_00000.png'}").status_code == 404

        (run / "frames" / "frame_00000.png").unlink()
        PIL.Image.new("RGB", (64, 64), (200, 0, 0)).save(run / "frames" / "frame_00000.png")
        preview = client.get(f"/api/jobs/{job_id}/preview.png")
        assert preview.status_code == 200
        assert PIL.Image.open(io.BytesIO(preview.content)).getpixel((0, 0)) == (200, 0, 0)
        assert ui.gallery_items(state) == [(str((run / "frames" / "frame_00000.png").resolve()), job_id)]


# ---- paths shown to clients ------------------------------------------------------------------------------


def test_errors_name_files_relative_to_the_runs_folder(tmp_path):
    with client_for(tmp_path) as client:
        state = client.app.state.flipbook
        audio = client.post(
            "/api/jobs", files={"spec": ("a.toml", SPEC_TOML), "audio.file": ("a.wav", b"RIFF" + b"\0" * 200)}
        )
        assert audio.status_code == 422 and audio.json()["field"] == "audio.file"
        assert str(tmp_path) not in audio.text and "/inputs/audio_file.wav" in audio.json()["detail"]

        job_id = client.post("/api/jobs", json=SPEC).json()["id"]
        state.store.claim()
        inputs = state.settings.runs_dir / job_id / "inputs" / "init_image.png"
        state.store.finish(
            job_id, "failed", error=f"init.image: '{inputs}' is not valid; an image", error_field="init.image"
        )
        message = client.get(f"/api/jobs/{job_id}").json()["error"]["message"]
        assert message == f"init.image: '{job_id}/inputs/init_image.png' is not valid; an image"
        deforum = client.get(f"/deforum_api/jobs/{job_id}").json()
        assert deforum["message"] == message and deforum["outdir"] == job_id


def test_a_jobs_spec_shows_no_server_folder(tmp_path):
    """GET /api/jobs/{id} shows the spec the job renders: the run folder, models folder and uploads the server
    put in it appear relative to those folders, as in errors and /sdapi/v1/sd-models."""
    webui = tmp_path / "webui"
    (webui / "models" / "Lora").mkdir(parents=True)
    with client_for(tmp_path, models_dir=webui) as client:
        job_id = client.post(
            "/api/jobs", files={"spec": ("a.toml", SPEC_TOML), "init.image": ("a.png", png_bytes())}
        ).json()["id"]
        job = client.get(f"/api/jobs/{job_id}")
        assert str(tmp_path) not in job.text and os.path.realpath(tmp_path) not in job.text
        spec = job.json()["spec"]
        assert spec["output"]["dir"] == "the runs folder" and spec["output"]["name"] == job_id
        assert spec["model"]["models_dir"] == "the models folder"
        assert spec["init"]["image"] == f"{job_id}/inputs/init_image.png"
        assert spec["prompts"] == {"0": "a cat"}


def test_public_text_hides_the_servers_folders(tmp_path):
    settings = ServerSettings(runs_dir=tmp_path / "runs", models_dir=tmp_path / "webui")
    (tmp_path / "webui" / "models" / "Lora").mkdir(parents=True)
    text = (f"{tmp_path}/runs/ab/x.png, {tmp_path}/runs, {tmp_path}/runs2/y, '{tmp_path}/webui/models/Lora/s.pt', "
            f"{os.path.realpath(tmp_path)}/runs/cd")  # fmt: skip
    assert public_text(text, settings) == (
        f"ab/x.png, the runs folder, {tmp_path}/runs2/y, 'models/Lora/s.pt', cd"
    )

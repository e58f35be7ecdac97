"""Hostile requests get one clear 4xx and queue nothing: nesting, huge numbers, lone surrogates, keyframe
floods, A1111 values beyond the spec's limits or of the wrong type. In-process, without workers: nothing here
is ever rendered."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from flipbook.server import ServerSettings, create_app

BASE = "http://127.0.0.1:7860"
DEEP = "[" * 100_000 + "]" * 100_000
DIGITS = "1" * 5000
SPEC = {
    "model": {"name": "tiny"},
    "animation": {"max_frames": 2, "width": 64, "height": 64},
    "prompts": {"0": "a lighthouse"},
}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = ServerSettings(runs_dir=tmp_path_factory.mktemp("limits") / "runs", workers=0)
    with TestClient(create_app(settings), base_url=BASE, raise_server_exceptions=False) as client:
        yield client


def no_jobs(client) -> bool:
    return client.get("/api/jobs").json()["total"] == 0


def posted(client, url: str, text: str, content_type: str = "application/json"):
    return client.post(url, content=text.encode("utf-8"), headers={"content-type": content_type})


@pytest.mark.parametrize(
    ("text", "content_type", "field", "words"),
    [
        (DEEP, "application/json", "spec", "levels of nesting"),
        ('{"prompts": ' + DEEP + "}", "application/json", "spec", "levels of nesting"),
        ("a = " + "[" * 50_000 + "]" * 50_000, "application/toml", "spec", "levels of nesting"),
        (DEEP, "text/plain", "settings", "levels of nesting"),
        ('{"animation": {"max_frames": ' + DIGITS + "}}", "application/json", "spec", "4300 digits"),
        ("[animation]\nmax_frames = " + DIGITS, "application/toml", "spec", "4300 digits"),
        (json.dumps(SPEC).replace("a lighthouse", "\\ud800"), "application/json", "prompts.0", "surrogate"),
        (
            json.dumps({**SPEC, "sampling": {"cfg": "0:(7)"}}).replace("0:(7)", "0:(7)\\udc00"),
            "application/json",
            "sampling.cfg",
            "surrogate",
        ),
        (
            json.dumps({**SPEC, "prompts": {str(i): "x" for i in range(100_001)}}),
            "application/json",
            "prompts",
            "at most 100000 prompt keyframes",
        ),
    ],
)
def test_hostile_specs_are_one_clear_422(client, text, content_type, field, words):
    response = posted(client, "/api/jobs", text, content_type)
    assert response.status_code == 422, response.text[:300]
    body = response.json()
    assert body["field"] == field and words in body["detail"] and len(response.text) < 2000
    assert no_jobs(client)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"width": 100_000, "height": 100_000}, "width", "animation.width"),
        ({"width": 64, "height": 72.5}, "height", "animation.height"),
        ({"width": 100}, "width", "multiple of 8"),
        ({"steps": 5000}, "steps", "sampling.steps"),
        ({"seed": 2**40}, "seed", "sampling.seed"),
        ({"batch_size": -1, "n_iter": -1}, "batch_size", "from 1 to"),
        ({"batch_size": 8, "n_iter": 9}, "batch_size", "batch_size x n_iter"),
        ({"scheduler": 5}, "scheduler", "Karras"),
        ({"sampler_name": ["Euler"]}, "sampler_name", "text"),
        ({"prompt": {"a": 1}}, "prompt", "text"),
        ({"override_settings": {"CLIP_stop_at_last_layers": 0}}, "CLIP_stop_at_last_layers", "clip_skip"),
        ({"mask_blur": 1e9}, "mask_blur", "mask_blur"),
    ],
)
@pytest.mark.parametrize("endpoint", ["txt2img", "img2img"])
def test_a1111_values_beyond_the_spec_or_of_the_wrong_type_are_422(client, endpoint, body, field, words):
    if endpoint == "img2img":
        body = {**body, "init_images": [_png_b64()]}
    response = client.post(f"/sdapi/v1/{endpoint}", json=body)
    assert response.status_code == 422, response.text[:300]
    assert response.json()["field"] == field and words in response.json()["detail"]
    assert no_jobs(client)


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ('{"width": 1e308}', "width", "animation.width"),
        ('{"inpainting_fill": []}', "inpainting_fill", "an integer"),
        ('{"prompt": "\\ud800"}', "prompt", "surrogate"),
        ('{"prompt": ' + DEEP + "}", "body", "levels of nesting"),
        ('{"steps": ' + DIGITS + "}", "body", "4300 digits"),
        ("[1, 2]", "body", "a JSON object"),
        ("{", "body", "a JSON object"),
    ],
)
def test_a1111_bodies_that_json_or_python_choke_on_are_422(client, text, field, words):
    response = posted(client, "/sdapi/v1/txt2img", text)
    assert response.status_code == 422, response.text[:300]
    assert response.json()["field"] == field and words in response.json()["detail"]
    assert no_jobs(client)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"deforum_settings": {"prompts": ' + DEEP + "}}", "levels of nesting"),
        ('{"deforum_settings": {"W": 64, "prompts": {"0": "\\ud800"}}}', "surrogate"),
        ('{"deforum_settings": 5}', "deforum_settings"),
    ],
)
def test_deforum_batches_that_choke_are_422(client, text, words):
    response = posted(client, "/deforum_api/batches", text)
    assert response.status_code == 422, response.text[:300]
    assert words in response.json()["detail"]
    assert no_jobs(client)


def _png_b64() -> str:
    import base64
    import io

    import PIL.Image

    buffer = io.BytesIO()
    PIL.Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# ---- uploads are read as the render reads them ---------------------------------------------------------


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> bytes:
    import numpy as np

    from flipbook.io.writers import write_mp4

    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(12)]
    return write_mp4(frames, tmp_path_factory.mktemp("mp4") / "source.mp4", fps=12, crf=0).read_bytes()


@pytest.mark.parametrize(("share", "field"), [(0.6, "animation.max_frames"), (0.05, "init.video")])
def test_a_truncated_video_upload_is_refused_at_submission(tmp_path, mp4, share, field):
    """A truncated MP4 passed the upload sniffing and failed in the worker; the render's own reading of its
    inputs now runs before the job is queued."""
    video_spec = {**SPEC, "animation": {**SPEC["animation"], "mode": "video", "max_frames": 12, "fps": 12}}
    settings = ServerSettings(runs_dir=tmp_path / "runs", workers=0)
    with TestClient(create_app(settings), base_url=BASE) as client:

        def submit(video: bytes):
            return client.post(
                "/api/jobs",
                files={"spec": ("job.json", json.dumps(video_spec).encode(), "application/json"),
                       "init.video": ("source.mp4", video, "video/mp4")},
            )  # fmt: skip

        refused = submit(mp4[: int(len(mp4) * share)])
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == field
        assert no_jobs(client) and not any((tmp_path / "runs").glob("*/inputs"))
        assert submit(mp4).status_code == 201

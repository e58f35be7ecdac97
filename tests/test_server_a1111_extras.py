"""The A1111 endpoints beyond txt2img/img2img, through the ``webuiapi`` client where it has a call: lists
with names relative to the models folder, PNG info, extras upscaling, memory, skip, interrogate's 501."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import PIL.Image
import pytest
import webuiapi

from flipbook.server import ServerSettings
from flipbook.server.background import BackgroundServer


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("webui")
    for folder, name in (("models/Lora", "style.safetensors"), ("models/VAE", "clear.safetensors"),
                         ("embeddings", "bad-hands.pt"), ("models/ESRGAN", "4x-Ultra.pth")):  # fmt: skip
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, models):
    runs = tmp_path_factory.mktemp("extras") / "runs"
    with BackgroundServer(ServerSettings(runs_dir=runs, workers=1, models_dir=models)) as running:
        yield running


@pytest.fixture(scope="module")
def api(server):
    return webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler", steps=2)


def _png(image: PIL.Image.Image, **text: str) -> str:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def test_model_lists_name_models_relative_to_the_models_folder(api, server, models):
    assert api.get_loras() == [{"name": "style", "alias": "style", "path": "models/Lora/style.safetensors",
                                "metadata": {}}]  # fmt: skip
    assert api.get_sd_vae() == [{"model_name": "clear", "filename": "models/VAE/clear.safetensors"}]
    assert set(api.get_embeddings()["loaded"]) == {"bad-hands"} and api.get_embeddings()["skipped"] == {}
    upscalers = {u["name"]: u for u in api.get_upscalers()}
    assert {"None", "Lanczos", "Nearest", "4x-Ultra"} <= set(upscalers)
    assert upscalers["4x-Ultra"]["model_path"] == "models/ESRGAN/4x-Ultra.pth"
    assert [m["name"] for m in api.get_latent_upscale_modes()][:2] == ["Latent", "Latent (antialiased)"]
    assert api.get_face_restorers() == [] and api.get_hypernetworks() == [] and api.get_prompt_styles() == []
    assert api.refresh_checkpoints() is None
    assert httpx.post(f"{server.url}/sdapi/v1/refresh-loras").json() is None
    flags = api.get_cmd_flags()
    assert flags["api"] is True and flags["port"] == server.port
    for answer in (api.get_loras(), api.get_sd_vae(), api.get_upscalers(), flags, api.get_memory()):
        assert str(models) not in str(answer) and str(server.settings.runs_dir) not in str(answer)
    memory = api.get_memory()
    assert memory["ram"]["total"] >= memory["ram"]["free"] > 0 and "cuda" in memory


def test_png_info_reads_a1111_parameters(api):
    made = api.txt2img(prompt="a red fox", negative_prompt="blurry", width=64, height=64, steps=2, seed=4)
    info = api.png_info(made.image)
    assert info.info == made.info["infotexts"][0]
    parameters = info.json["parameters"]
    assert parameters["Prompt"] == "a red fox" and parameters["Negative prompt"] == "blurry"
    assert parameters["Seed"] == "4" and parameters["Size-1"] == "64" and parameters["Steps"] == "2"
    plain = httpx.post(
        f"{api.baseurl}/png-info", json={"image": _png(PIL.Image.new("RGB", (8, 8)), Title="x")}
    )
    assert plain.json() == {"info": "", "items": {"Title": "x"}, "parameters": {}}
    bad = httpx.post(f"{api.baseurl}/png-info", json={"image": "not an image"})
    assert bad.status_code == 415 and bad.json()["field"] == "image"


def test_extras_upscale_one_and_a_batch(api, init_image):
    single = api.extra_single_image(image=init_image, upscaler_1="Lanczos", upscaling_resize=2)
    assert single.image.size == (128, 128)
    expected = init_image.resize((128, 128), PIL.Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(single.image.convert("RGB")), np.asarray(expected))
    boxed = api.extra_single_image(image=init_image, upscaler_1="Nearest", resize_mode=1, upscaling_resize_w=96,
                                   upscaling_resize_h=48, upscaling_crop=True)  # fmt: skip
    assert boxed.image.size == (96, 48)
    batch = api.extra_batch_images(images=[init_image, init_image.rotate(90)], upscaler_1="Nearest",
                                   upscaling_resize=1.5)  # fmt: skip
    assert [image.size for image in batch.images] == [(96, 96)] * 2


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"upscaling_resize": 1000}, "upscaling_resize"), ({"upscaler_1": "/etc/passwd"}, "upscaler_1"),
     ({"upscaler_1": "Latent"}, "upscaler_1"), ({"resize_mode": 1, "upscaling_resize_w": 99999}, "upscaling_resize_w"),
     ({"upscaler_2": "no-such-model", "extras_upscaler_2_visibility": 0.5}, "upscaler_2"),
     ({"upscaler_1": "4x-Ultra"}, "upscaler_1")],
)  # fmt: skip
def test_extras_bad_requests_name_the_field(server, init_image, extra, field):
    body = {"image": _png(init_image), **extra}
    response = httpx.post(f"{server.url}/sdapi/v1/extra-single-image", json=body)
    assert response.status_code == 422 and response.json()["field"] == field, response.text
    many = httpx.post(f"{server.url}/sdapi/v1/extra-batch-images",
                      json={"imageList": [{"data": _png(init_image), "name": "a"}] * 65})  # fmt: skip
    assert many.status_code == 422 and many.json()["field"] == "imageList"


def test_interrogate_is_a_501_naming_what_it_needs(api, init_image):
    response = httpx.post(f"{api.baseurl}/interrogate", json={"image": _png(init_image), "model": "clip"})
    assert response.status_code == 501 and "captioning model" in response.json()["detail"]


def test_skip_finishes_the_current_image_and_goes_on(api):
    """A1111's skip: the first image stops early (so it differs from the same seed made in full), the second
    is made in full."""
    import threading
    import time

    assert api.skip() is None  # idle: nothing to skip
    settings = {
        "prompt": "a fox",
        "width": 64,
        "height": 64,
        "steps": 10,
        "sampler_name": "Euler",
        "seed": 1,
    }
    results = []
    worker = threading.Thread(target=lambda: results.append(api.txt2img(**settings, n_iter=2)))
    worker.start()
    deadline = time.monotonic() + 120
    while api.get_progress()["state"]["sampling_step"] < 2:
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.02)
    api.skip()
    worker.join(300)
    result = results[0]
    assert (
        len(result.images) == 2 and result.info["all_seeds"] == [1, 2] and result.info["interrupted"] is False
    )
    second = api.txt2img(**{**settings, "seed": 2})
    assert np.abs(np.asarray(second.image).astype(int) - np.asarray(result.images[1]).astype(int)).max() <= 2
    first = api.txt2img(**settings)
    assert np.abs(np.asarray(first.image).astype(int) - np.asarray(result.images[0]).astype(int)).mean() > 1


def test_the_readme_lists_every_a1111_endpoint_the_server_has(tmp_path):
    """README's list between the a1111-endpoints markers is the app's A1111 routes (its "a1111" tag), in order."""
    import re
    from pathlib import Path

    from flipbook.server import create_app

    app = create_app(ServerSettings(runs_dir=tmp_path / "runs", workers=0))
    routes = [f"{method.upper()} {path}" for path, operations in app.openapi()["paths"].items()
              for method, operation in operations.items() if "a1111" in operation.get("tags", [])]  # fmt: skip
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- a1111-endpoints -->", 1)[1].split("<!-- /a1111-endpoints -->", 1)[0]
    listed = [f"{method} {path}" for method, path in re.findall(r"`(GET|POST|PUT|DELETE) (\S+)`", block)]
    assert listed == routes
    assert {
        "POST /sdapi/v1/png-info",
        "POST /sdapi/v1/extra-single-image",
        "GET /controlnet/model_list",
    } <= set(listed)

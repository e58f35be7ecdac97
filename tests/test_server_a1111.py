"""The A1111 API subset through the real ``webuiapi`` client, and the Deforum batch API, against a uvicorn
server on a loopback port (one worker, the tiny model)."""

import base64
import io
import json
import time

import httpx
import numpy as np
import PIL.Image
import pytest
import webuiapi

from flipbook.server import ServerSettings
from flipbook.server.background import BackgroundServer

pytestmark = pytest.mark.usefixtures("one_thread")

DEFORUM_SETTINGS = {
    "W": 64, "H": 64, "max_frames": 2, "steps": 2, "seed": 9, "sampler": "Euler", "animation_mode": "None",
    "prompts": {"0": "a forest", "1": "a city"}, "strength_schedule": "0:(0.5)", "fps": 8,
    "midas_weight": 0.5, "outdir": "/somewhere/else", "batch_name": "Deforum",
}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("a1111") / "runs"
    with BackgroundServer(ServerSettings(runs_dir=runs, workers=1)) as running:
        yield running


@pytest.fixture(scope="module")
def api(server):
    return webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler", steps=2)


def test_txt2img_through_webuiapi(api):
    result = api.txt2img(prompt="a red fox", negative_prompt="blurry", width=64, height=64, steps=2,
                         sampler_name="Euler", seed=5, batch_size=2, cfg_scale=6)  # fmt: skip
    assert len(result.images) == 2
    assert all(image.size == (64, 64) for image in result.images)
    assert result.info["all_seeds"] == [5, 6] and result.info["seed"] == 5
    assert result.info["sampler_name"] == "Euler" and result.info["sd_model_name"] == "tiny"
    assert "Seed: 5" in result.info["infotexts"][0] and "Steps: 2" in result.info["infotexts"][0]
    assert result.parameters["prompt"] == "a red fox"
    assert result.images[1].info["parameters"].startswith("a red fox\nNegative prompt: blurry\n")
    assert not np.array_equal(np.asarray(result.images[0]), np.asarray(result.images[1]))

    again = api.txt2img(prompt="a red fox", negative_prompt="blurry", width=64, height=64, steps=2,
                        sampler_name="Euler", seed=6, cfg_scale=6)  # fmt: skip
    difference = np.abs(np.asarray(again.image).astype(int) - np.asarray(result.images[1]).astype(int))
    assert difference.max() <= 2  # seed 6 alone = the batch's second image (batching moves the last bits)


def test_scheduler_and_n_iter(api):
    result = api.txt2img(prompt="a boat", width=64, height=64, steps=2, sampler_name="DPM++ 2M",
                         scheduler="Karras", seed=1, n_iter=2)  # fmt: skip
    assert len(result.images) == 2 and result.info["sampler_name"] == "DPM++ 2M Karras"
    assert result.info["all_seeds"] == [1, 2]


def test_img2img_and_inpainting_through_webuiapi(api, init_image, mask_image):
    plain = api.img2img(images=[init_image], prompt="an oil painting", width=64, height=64, steps=4,
                        denoising_strength=0.5, seed=3)  # fmt: skip
    assert plain.image.size == (64, 64) and plain.info["denoising_strength"] == 0.5
    assert "Denoising strength: 0.5" in plain.info["infotexts"][0]

    inpainted = api.img2img(images=[init_image], mask_image=mask_image, prompt="a blue square", width=64,
                            height=64, steps=4, denoising_strength=1.0, seed=3, inpainting_fill=1, mask_blur=0)  # fmt: skip
    assert any("inpaint_full_res" in note for note in inpainted.info["notes"])
    kept = np.asarray(mask_image) == 0
    out, before = np.asarray(inpainted.image).astype(int), np.asarray(init_image).astype(int)
    assert np.abs(out[kept] - before[kept]).max() <= 2  # outside the mask the picture is kept (overlay)


def test_models_samplers_options_and_progress(api, server):
    assert "tiny" in api.util_get_model_names()
    assert {"Euler", "Euler a", "DPM++ 2M Karras"} <= set(api.util_get_sampler_names())
    assert "karras" in api.util_get_scheduler_names()
    assert api.util_get_current_model() == "tiny"
    api.util_set_model("random-sd15", find_closest=False)
    assert api.get_options()["sd_model_checkpoint"] == "random-sd15"
    api.util_set_model("tiny", find_closest=False)
    assert api.util_get_current_model() == "tiny"
    bad = httpx.post(f"{server.url}/sdapi/v1/options", json={"sd_model_checkpoint": "nothing-here"})
    assert bad.status_code == 422 and bad.json()["field"] == "sd_model_checkpoint"

    idle = api.get_progress()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None
    api.util_wait_for_ready(check_interval=0.1)


def test_progress_shows_a_running_job_with_its_preview(server, api):
    spec = {"model": {"name": "tiny", "device": "cpu"}, "sampling": {"steps": 2},
            "animation": {"max_frames": 200, "width": 64, "height": 64}, "prompts": {"0": "waves"}}  # fmt: skip
    job_id = httpx.post(f"{server.url}/api/jobs", json=spec).json()["id"]
    deadline = time.monotonic() + 120
    while True:
        progress = api.get_progress()
        if progress["progress"] > 0 and progress["current_image"]:
            break
        assert time.monotonic() < deadline, progress
        time.sleep(0.05)
    assert progress["state"]["job"] == job_id and progress["state"]["job_count"] >= 1
    assert progress["state"]["sampling_steps"] >= 1
    with PIL.Image.open(io.BytesIO(__import__("base64").b64decode(progress["current_image"]))) as preview:
        assert preview.format == "PNG"
    assert httpx.post(f"{server.url}/api/jobs/{job_id}/cancel").status_code == 202
    _wait(server, f"/api/jobs/{job_id}", lambda j: j["state"] == "cancelled")


def test_a_bad_request_is_an_error_naming_the_field(api):
    with pytest.raises(RuntimeError) as error:
        api.txt2img(prompt="x", width=64, height=64, steps=2, sampler_name="Euler b")
    status, text = error.value.args
    assert status == 422 and json.loads(text)["field"] == "sampler"


def test_a1111_prompt_lora_tags_take_names_never_server_paths(server, tmp_path):
    """A LoRA tag in an A1111 prompt is a model reference like a spec prompt's: a path on the server (which the
    worker would load, or whose existence the answer would give away) is refused before anything is queued."""
    weights = tmp_path / "style.safetensors"
    weights.write_bytes(b"not a LoRA")
    before = httpx.get(f"{server.url}/api/jobs").json()["total"]
    base = {"prompt": "a fox", "width": 64, "height": 64, "steps": 2}
    for field in ("prompt", "negative_prompt"):
        for path in (str(weights), str(tmp_path / "missing.safetensors"), "../../style"):
            body = {**base, field: f"a fox <lora:{path}:0.5>"}
            response = httpx.post(f"{server.url}/sdapi/v1/txt2img", json=body, timeout=60)
            assert response.status_code == 422, (field, path, response.text)
            assert response.json()["field"] == field, response.text
    malformed = httpx.post(f"{server.url}/sdapi/v1/txt2img", json={**base, "negative_prompt": "<hypernet:x>"})
    assert malformed.status_code == 422 and malformed.json()["field"] == "negative_prompt"
    assert httpx.get(f"{server.url}/api/jobs").json()["total"] == before


def test_a1111_errors_name_the_a1111_field(server):
    """Values FrameRequest checks are reported under the name the A1111 client sent."""
    base = {"prompt": "a fox", "width": 64, "height": 64, "steps": 2}
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    cases = {
        "cfg_scale": ("txt2img", {"cfg_scale": 500}),
        "denoising_strength": ("img2img", {"denoising_strength": 5, "init_images": [image]}),
        "initial_noise_multiplier": ("img2img", {"initial_noise_multiplier": 50, "init_images": [image]}),
    }
    for field, (kind, extra) in cases.items():
        response = httpx.post(f"{server.url}/sdapi/v1/{kind}", json={**base, **extra}, timeout=60)
        assert response.status_code == 422 and response.json()["field"] == field, response.text


def test_deforum_batches_run_and_report_in_deforum_terms(server):
    second = {**DEFORUM_SETTINGS, "seed": 10}
    response = httpx.post(
        f"{server.url}/deforum_api/batches",
        json={"deforum_settings": [DEFORUM_SETTINGS, second], "options_overrides": {"sd_model_checkpoint": "tiny",
              "CLIP_stop_at_last_layers": 1, "eta_ddim": 0}},
    )  # fmt: skip
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["message"] == "Job(s) accepted" and len(body["job_ids"]) == 2
    warnings = " ".join(body["warnings"][body["job_ids"][0]])
    assert "midas_weight" in warnings and "eta_ddim" in warnings and "outdir" not in warnings

    for job_id in body["job_ids"]:
        status = _wait(server, f"/deforum_api/jobs/{job_id}", lambda s: s["status"] != "ACCEPTED")
        assert status["status"] == "SUCCEEDED" and status["phase"] == "DONE", status
        assert status["error_type"] == "NONE" and status["phase_progress"] == 1.0
        assert status["outdir"].endswith(job_id) and status["execution_time"] > 0
    job = httpx.get(f"{server.url}/api/jobs/{body['job_ids'][1]}").json()
    assert job["spec"]["sampling"]["seed"] == 10 and job["batch_id"] == body["batch_id"]
    assert httpx.get(f"{server.url}/deforum_api/batches").json()[body["batch_id"]] == body["job_ids"]
    batch = httpx.get(f"{server.url}/deforum_api/batches/{body['batch_id']}").json()
    assert [s["id"] for s in batch] == body["job_ids"]
    assert set(body["job_ids"]) <= set(httpx.get(f"{server.url}/deforum_api/jobs").json())
    assert httpx.delete(f"{server.url}/deforum_api/jobs/{body['job_ids'][0]}").status_code == 400  # finished


def test_a_bad_deforum_batch_queues_nothing(server):
    before = httpx.get(f"{server.url}/api/jobs").json()["total"]
    bad = {**DEFORUM_SETTINGS, "animation_mode": "Interpolation"}
    response = httpx.post(
        f"{server.url}/deforum_api/batches", json={"deforum_settings": [DEFORUM_SETTINGS, bad]}
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("deforum_settings[1]: animation_mode")
    assert httpx.get(f"{server.url}/api/jobs").json()["total"] == before
    assert httpx.post(f"{server.url}/deforum_api/batches", json={}).status_code == 400
    # each settings object is a job: one request may not queue an unbounded number of them
    many = httpx.post(f"{server.url}/deforum_api/batches", json={"deforum_settings": [DEFORUM_SETTINGS] * 65})
    assert many.status_code == 422 and many.json()["field"] == "deforum_settings", many.text
    assert "at most 64" in many.json()["detail"]
    assert httpx.get(f"{server.url}/api/jobs").json()["total"] == before


def test_deforum_delete_cancels_a_job(server):
    long = {**DEFORUM_SETTINGS, "max_frames": 300}
    job_id = httpx.post(f"{server.url}/deforum_api/batches", json={"deforum_settings": long}).json()[
        "job_ids"
    ][0]
    _wait(server, f"/deforum_api/jobs/{job_id}", lambda s: s["phase"] == "GENERATING")
    cancelled = httpx.delete(f"{server.url}/deforum_api/jobs/{job_id}")
    assert cancelled.json() == {"id": job_id, "message": "Job cancelled."}
    status = _wait(server, f"/deforum_api/jobs/{job_id}", lambda s: s["status"] != "ACCEPTED")
    assert status["status"] == "CANCELLED" and status["phase"] == "DONE"


def _wait(server, path: str, done, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        value = httpx.get(f"{server.url}{path}").json()
        if done(value):
            return value
        assert time.monotonic() < deadline, value
        time.sleep(0.05)


def test_sd_models_lists_the_models_folder_and_options_accept_a1111_titles(tmp_path):
    from fastapi.testclient import TestClient

    from flipbook.server import create_app

    checkpoints = tmp_path / "webui" / "models" / "Stable-diffusion"
    (checkpoints / "anime").mkdir(parents=True)
    (checkpoints / "dreamy.safetensors").write_bytes(b"")
    (checkpoints / "anime" / "cel.ckpt").write_bytes(b"")
    settings = ServerSettings(runs_dir=tmp_path / "runs", workers=0, models_dir=tmp_path / "webui")
    with TestClient(create_app(settings), base_url="http://127.0.0.1:7860") as client:
        models = {m["title"]: m for m in client.get("/sdapi/v1/sd-models").json()}
        assert {"tiny", "random-sd15", "dreamy", "anime/cel"} <= set(models)
        assert models["anime/cel"]["model_name"] == "anime_cel"
        assert models["dreamy"]["filename"] == "models/Stable-diffusion/dreamy.safetensors"  # relative
        assert str(tmp_path) not in client.get("/sdapi/v1/sd-models").text
        assert client.post(
            "/sdapi/v1/options", json={"sd_model_checkpoint": "dreamy.safetensors [0123abcd]"}
        ).is_success
        assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "dreamy"
        refused = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "/etc/passwd"})
        assert refused.status_code == 422


def test_a_clip_skip_deeper_than_the_text_encoder_is_a_422_naming_the_a1111_setting(server):
    """The tiny model's text encoder has 5 layers: clip skip 12 was an IndexError and a 500."""
    body = {"prompt": "a fox", "width": 64, "height": 64, "steps": 2}
    body["override_settings"] = {"CLIP_stop_at_last_layers": 12}
    response = httpx.post(f"{server.url}/sdapi/v1/txt2img", json=body, timeout=120)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "override_settings.CLIP_stop_at_last_layers"
    assert "at most 5" in response.json()["detail"]


def test_hires_fix_through_webuiapi_as_the_cli_makes_it(api, run_cli, tmp_path):
    """enable_hr runs A1111's two passes; the image and infotext are the CLI's ``--hires-*`` ones."""
    result = api.txt2img(prompt="a red fox", width=64, height=64, steps=2, sampler_name="Euler", seed=5,
                         enable_hr=True, hr_scale=2, hr_second_pass_steps=1, denoising_strength=0.6,
                         hr_upscaler=webuiapi.HiResUpscaler.LatentNearestExact)  # fmt: skip
    assert result.image.size == (128, 128)
    infotext = result.info["infotexts"][0]
    assert "Size: 64x64" in infotext and "Denoising strength: 0.6" in infotext
    assert "Hires upscale: 2, Hires steps: 1, Hires upscaler: Latent (nearest-exact)" in infotext
    assert result.info["denoising_strength"] == 0.6 and result.info["width"] == 64
    assert result.info["extra_generation_params"]["Hires upscaler"] == "Latent (nearest-exact)"
    code, out, err = run_cli("txt2img", "a red fox", "--steps", "2", "--size", "64x64", "--sampler", "Euler",
                             "--cfg", "7", "--seed", "5", "--device", "cpu", "--hires-steps", "1",
                             "--hires-denoising-strength", "0.6", "--hires-upscaler", "Latent (nearest-exact)",
                             "-o", tmp_path)  # fmt: skip
    assert code == 0, err
    with PIL.Image.open(out.split()[0]) as made:
        assert (
            np.abs(np.asarray(made.convert("RGB")).astype(int) - np.asarray(result.image).astype(int)).max()
            <= 1
        )
        assert (
            made.info["parameters"].split("\n")[-1].split(", Version")[0]
            == infotext.split("\n")[-1].split(", Version")[0]
        )
    plain = api.txt2img(prompt="a red fox", width=64, height=64, steps=2, sampler_name="Euler", seed=5)
    assert plain.image.size == (64, 64) and "Hires" not in plain.info["infotexts"][0]


def test_bad_hires_fields_are_named_as_a1111_names_them(server):
    base = {"prompt": "a fox", "width": 64, "height": 64, "steps": 2, "enable_hr": True}
    cases = {
        "hr_scale": {"hr_scale": 200},
        "hr_upscaler": {"hr_upscaler": "/etc/passwd"},
        "hr_sampler_name": {"hr_sampler_name": "Euler b"},
        "hr_second_pass_steps": {"hr_second_pass_steps": -1},
        "hr_resize_x": {"hr_resize_x": 10_000},
        "denoising_strength": {"denoising_strength": 0},
    }
    for field, extra in cases.items():
        response = httpx.post(f"{server.url}/sdapi/v1/txt2img", json={**base, **extra}, timeout=60)
        assert response.status_code == 422 and response.json()["field"] == field, (field, response.text)


def test_interrupt_returns_the_images_made_so_far(api, server):
    """A1111's interrupt: the image being sampled is finished as it stands, later ones are not started."""
    import threading

    results = []
    worker = threading.Thread(target=lambda: results.append(
        api.txt2img(prompt="a fox", width=64, height=64, steps=1000, sampler_name="Euler", seed=1, n_iter=3)
    ))  # fmt: skip
    worker.start()
    deadline = time.monotonic() + 120
    while api.get_progress()["state"]["sampling_step"] < 2:
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.02)
    assert api.interrupt()["interrupted"]
    worker.join(120)
    result = results[0]
    assert 1 <= len(result.images) < 3 and result.image.size == (64, 64)
    assert result.info["interrupted"] is True and result.info["all_seeds"][0] == 1


def test_unknown_fields_are_accepted_and_named_once_in_info(api, server):
    plain = api.txt2img(prompt="a fox", width=64, height=64, steps=1, seed=2)  # every field webuiapi sends
    assert not any(note.startswith("ignored:") for note in plain.info["notes"]), plain.info["notes"]
    body = {"prompt": "a fox", "width": 64, "height": 64, "steps": 1, "seed": 2, "negative_promt": "blurry",
            "cfg": 3}  # fmt: skip
    response = httpx.post(f"{server.url}/sdapi/v1/txt2img", json=body, timeout=120)
    assert response.status_code == 200, response.text
    notes = json.loads(response.json()["info"])["notes"]
    ignored = [note for note in notes if note.startswith("ignored:")]
    assert ignored == ["ignored: cfg, negative_promt (not fields of A1111's txt2img request)"]


def _control_image() -> PIL.Image.Image:
    image = PIL.Image.new("RGB", (64, 64), "black")
    image.paste((255, 255, 255), (16, 16, 48, 48))
    return image


def test_controlnet_units_through_alwayson_scripts(api, init_image):
    """webuiapi's ControlNetUnit: a canny unit on the tiny ControlNet changes the picture; at weight 0 it is
    the plain picture; in img2img without an image the unit controls with the init image."""
    settings = {"prompt": "a fox", "width": 64, "height": 64, "steps": 2, "seed": 3, "sampler_name": "Euler"}
    plain = np.asarray(api.txt2img(**settings).image).astype(int)
    unit = webuiapi.ControlNetUnit(image=_control_image(), module="canny", model="tiny [0123abcd]", weight=2.0,
                                   threshold_a=100, threshold_b=200)  # fmt: skip
    controlled = np.asarray(api.txt2img(**settings, controlnet_units=[unit]).image).astype(int)
    assert np.abs(controlled - plain).mean() > 1
    off = webuiapi.ControlNetUnit(image=_control_image(), module="canny", model="tiny", weight=0.0)
    assert (
        np.abs(np.asarray(api.txt2img(**settings, controlnet_units=[off]).image).astype(int) - plain).max()
        <= 1
    )
    disabled = webuiapi.ControlNetUnit(image=_control_image(), module="canny", model="tiny", enabled=False)
    assert (
        np.abs(
            np.asarray(api.txt2img(**settings, controlnet_units=[disabled]).image).astype(int) - plain
        ).max()
        <= 1
    )

    no_image = webuiapi.ControlNetUnit(module="none", model="tiny", control_mode=2)
    base = api.img2img(images=[init_image], **settings, denoising_strength=0.5)
    guided = api.img2img(images=[init_image], **settings, denoising_strength=0.5, controlnet_units=[no_image])
    assert np.abs(np.asarray(guided.image).astype(int) - np.asarray(base.image).astype(int)).mean() > 1
    assert any("control_mode" in note for note in guided.info["notes"])


def test_bad_controlnet_units_are_named(server):
    base = {"prompt": "a fox", "width": 64, "height": 64, "steps": 1}
    unit = webuiapi.ControlNetUnit(image=_control_image(), module="canny", model="tiny").to_dict()
    cases = [({"module": "reference_only"}, "module"), ({"model": "/etc/passwd"}, "model"),
             ({"weight": 50}, "weight"), ({"image": ""}, "image"), ({"guidance_end": 0}, "guidance_end")]  # fmt: skip
    for change, leaf in cases:
        body = {**base, "alwayson_scripts": {"ControlNet": {"args": [{**unit, **change}]}}}
        response = httpx.post(f"{server.url}/sdapi/v1/txt2img", json=body, timeout=60)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == f"alwayson_scripts.ControlNet.args[0].{leaf}", response.text


def test_controlnet_lists_and_detect(api):
    from flipbook.control.preprocess import canny

    assert "tiny" in api.controlnet_model_list()
    assert {"none", "canny", "lineart", "tile_resample"} <= set(api.controlnet_module_list())
    detected = api.controlnet_detect([_control_image()], module="canny", threshold_a=50, threshold_b=150)
    edges = PIL.Image.open(io.BytesIO(base64.b64decode(detected.json["images"][0])))
    assert np.array_equal(np.asarray(edges.convert("RGB")), np.asarray(canny(_control_image(), 50, 150)))

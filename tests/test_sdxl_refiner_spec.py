"""The refiner in specs and renders: ``model.refiner`` / ``model.refiner_switch_at`` validated before any model
loads, a 2D camera render and a prompt travel on ``tiny-xl`` + ``tiny-xl-refiner`` (4 frames, deterministic,
A1111's refiner keys in each frame's PNG parameters), and modes that have no use for a refiner refusing it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from flipbook.errors import SpecError
from flipbook.io.pnginfo import PNG_TEXT_KEY
from flipbook.spec.load import load_spec, spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")
EXAMPLES = {
    spec.animation.mode: path
    for path in sorted(Path(__file__).parents[1].glob("examples/*.toml"))
    if not (spec := load_spec(path)).sweep  # a sweep example renders a grid of runs, not one mode's run
}


def data(mode="2d", model=None, **sections):
    return {
        "model": {"name": "tiny-xl", "device": "cpu", "refiner": "tiny-xl-refiner", **(model or {})},
        "sampling": {"steps": 4, "seed": 11},
        "animation": {"mode": mode, "max_frames": 4, "width": 64, "height": 64, "strength": 0.5},
        "prompts": {"0": "a forest"},
        **sections,
    }


@pytest.mark.parametrize(
    ("model", "field", "allowed"),
    [
        ({"refiner_switch_at": 1.0}, "model.refiner_switch_at", "less than 1"),
        ({"refiner_switch_at": 0}, "model.refiner_switch_at", "greater than 0"),
        ({"name": "tiny"}, "model.refiner", "no refiner refines Stable Diffusion 1.x"),  # a non-SDXL base
        ({"refiner": "tiny-xl"}, "model.refiner", "a refiner"),  # a base model given as the refiner
        ({"refiner": None, "refiner_switch_at": 0.7}, "model.refiner_switch_at", "without model.refiner"),
    ],
)
def test_refiner_settings_are_checked_before_any_model_loads(model, field, allowed):
    with pytest.raises(SpecError) as info:
        spec_from_data(data(model=model))
    assert info.value.field == field and allowed in str(info.value) and "\n" not in str(info.value).strip()


def test_a_refiner_in_a_checkpoint_schedule_is_checked_against_every_checkpoint():
    with pytest.raises(SpecError, match="no refiner refines Stable Diffusion 1.x"):
        spec_from_data(data(model={"name": '0:("tiny-xl"), 2:("tiny")'}))


def test_animatediff_refuses_a_refiner(run_cli, tmp_path):
    code, _, err = run_cli(
        "validate", EXAMPLES["animatediff"], "--set", "model.name=tiny-xl",
        "--set", "model.refiner=tiny-xl-refiner",
    )  # fmt: skip
    assert code == 2 and "model.refiner" in err and "animatediff" in err and "Traceback" not in err


def render_frames(tmp_path, name, spec_data):
    from flipbook.runs.render import render

    spec = spec_from_data({**spec_data, "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]}})
    return render(spec).frames


@pytest.mark.parametrize(
    "spec_data",
    [
        data("2d", camera={"zoom": "0:(1.05)"}, prompts={"0": "a forest", "3": "a city"}),
        data("travel", prompts={"0": "a forest", "3": "a city"}),
    ],
    ids=["camera-2d", "travel"],
)
def test_a_render_with_the_refiner_gives_four_deterministic_frames(tmp_path, spec_data):
    first = render_frames(tmp_path, "a", spec_data)
    again = render_frames(tmp_path, "b", spec_data)
    plain = render_frames(tmp_path, "c", {**spec_data, "model": {"name": "tiny-xl", "device": "cpu"}})
    assert len(first) == len(again) == 4
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    pixels = [np.asarray(PIL.Image.open(p), dtype=np.int16) for p in (first[0], plain[0])]
    assert np.abs(pixels[0] - pixels[1]).max() > 0  # the refiner made the last steps
    parameters = PIL.Image.open(first[1]).text[PNG_TEXT_KEY]
    assert "Refiner: tiny-xl-refiner, Refiner switch at: 0.8" in parameters
    assert "Refiner" not in PIL.Image.open(plain[1]).text[PNG_TEXT_KEY]


# ---- the A1111 API ----------------------------------------------------------------------------------------


def test_a1111_requests_with_refiner_fields_use_the_refiner(tmp_path):
    """``refiner_checkpoint`` (A1111's title with its hash, found in the models folder) and
    ``refiner_switch_at`` on txt2img and img2img; A1111's infotext keys name the refiner and its hash."""
    import base64
    import io

    import httpx

    from flipbook.models.families.sdxl.convert import save_original_checkpoint
    from flipbook.models.loading import load_model, short_hash
    from flipbook.server import ServerSettings
    from flipbook.server.background import BackgroundServer

    checkpoints = tmp_path / "webui" / "models" / "Stable-diffusion"
    refiner = load_model("tiny-xl", device="cpu", refiner="tiny-xl-refiner").refiner
    path = save_original_checkpoint(refiner.pipe, checkpoints / "sd_xl_refiner.safetensors")
    digest = short_hash(path)
    settings = ServerSettings(runs_dir=tmp_path / "runs", workers=1, models_dir=tmp_path / "webui")
    common = {"prompt": "a red fox", "width": 64, "height": 64, "steps": 4, "seed": 5, "sampler_name": "Euler",
              "override_settings": {"sd_model_checkpoint": "tiny-xl"}}  # fmt: skip
    with BackgroundServer(settings) as server:
        url = f"http://127.0.0.1:{server.port}/sdapi/v1"
        with httpx.Client(timeout=300) as client:
            plain = client.post(f"{url}/txt2img", json=common).json()
            refined = client.post(
                f"{url}/txt2img",
                json={**common, "refiner_checkpoint": f"sd_xl_refiner.safetensors [{digest}]",
                      "refiner_switch_at": 0.6},
            ).json()  # fmt: skip
            image = refined["images"][0]
            again = client.post(
                f"{url}/img2img",
                json={**common, "init_images": [image], "denoising_strength": 0.5,
                      "refiner_checkpoint": "sd_xl_refiner", "refiner_switch_at": 0.5},
            ).json()  # fmt: skip
            bad = client.post(f"{url}/txt2img", json={**common, "refiner_checkpoint": "sd_xl_refiner",
                                                     "refiner_switch_at": 1.5})  # fmt: skip
            unfit = client.post(
                f"{url}/txt2img",
                json={**common, "override_settings": {"sd_model_checkpoint": "tiny"},
                      "refiner_checkpoint": "sd_xl_refiner"},
            )  # fmt: skip
    info = json.loads(refined["info"])
    assert f"Refiner: sd_xl_refiner [{digest}], Refiner switch at: 0.6" in info["infotexts"][0]
    assert info["extra_generation_params"]["Refiner"] == f"sd_xl_refiner [{digest}]"
    assert "Refiner" not in json.loads(plain["info"])["infotexts"][0]
    assert refined["images"][0] != plain["images"][0]
    pixels = PIL.Image.open(io.BytesIO(base64.b64decode(again["images"][0])))
    assert pixels.size == (64, 64)
    assert "Refiner switch at: 0.5" in json.loads(again["info"])["infotexts"][0]
    assert bad.status_code == 422 and bad.json()["field"] == "refiner_switch_at"
    assert unfit.status_code == 422 and unfit.json()["field"] == "refiner_checkpoint"


def test_a1111_refiner_fields_are_checked_and_noted_when_incomplete():
    from flipbook.server.stills import still_from_a1111

    body = {"prompt": "a fox", "width": 64, "height": 64, "refiner_checkpoint": "sd_xl_refiner [7440042bbd]"}
    job = still_from_a1111(body, "txt2img", "tiny-xl")
    assert job.payload["refiner"] == "sd_xl_refiner" and job.payload["refiner_switch_at"] == 0.8
    assert any(note.startswith("refiner_switch_at: not given") for note in job.notes)
    job = still_from_a1111(
        {**body, "refiner_checkpoint": "None", "refiner_switch_at": 0.5}, "txt2img", "tiny-xl"
    )
    assert (
        job.payload["refiner"] is None
        and "refiner_switch_at: ignored without refiner_checkpoint" in job.notes
    )


def test_the_txt2img_command_takes_a_refiner(tmp_path, run_cli):
    common = ["a red fox", "--model", "tiny-xl", "--size", "64x64", "--steps", "4", "--seed", "3"]
    code, out, err = run_cli(
        "txt2img", *common, "--refiner", "tiny-xl-refiner", "--refiner-switch-at", "0.5", "--out", tmp_path
    )
    assert code == 0, err
    parameters = PIL.Image.open(out.split()[-1]).text[PNG_TEXT_KEY]
    assert "Model: tiny-xl, Refiner: tiny-xl-refiner, Refiner switch at: 0.5" in parameters
    code, _, err = run_cli("txt2img", *common[:-2], "--model", "tiny", "--refiner", "tiny-xl-refiner")
    assert code == 2 and "--refiner" in err and "Traceback" not in err
    code, _, err = run_cli("txt2img", *common, "--refiner", "tiny-xl-refiner", "--refiner-switch-at", "1")
    assert code == 2 and "--refiner-switch-at" in err


def test_validate_names_the_refiner_and_its_switch(run_cli):
    code, out, err = run_cli(
        "validate", EXAMPLES["2d"], "--set", "model.name=tiny-xl", "--set", "model.refiner=tiny-xl-refiner",
        "--set", "model.refiner_switch_at=0.7",
    )  # fmt: skip
    assert code == 0, err
    assert "model: tiny-xl, refiner tiny-xl-refiner after 0.7 of the steps" in out

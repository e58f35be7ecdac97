"""The audio LTX-2 makes with its frames, joined over the segments into the run folder's NAME.wav, is one of the
render's outputs: in render()'s result and in the API's job view (served from the run folder like every
output), whatever the formats; a source video's audio (kept by video to video) and a silent model are not."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import soundfile

from flipbook.runs.render import render
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")


def spec_data(**sections) -> dict:
    data = {
        "model": {"device": "cpu"},
        "sampling": {"steps": 2, "seed": 5, "cfg": 3.0},
        "animation": {"mode": "videomodel", "max_frames": 9, "width": 64, "height": 64, "fps": 25},
        "videomodel": {"model": "tiny-ltx2", "segment_frames": 9, "max_sequence_length": 32},
        "prompts": {"0": "a cat in the city"},
        "output": {"formats": ["png"]},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return data


@pytest.mark.parametrize("formats", [["png"], ["mp4"]])
def test_the_joined_wav_is_an_output_of_an_ltx2_render(tmp_path, formats):
    result = render(
        spec_from_data(spec_data(output={"dir": str(tmp_path), "name": "clip", "formats": formats}))
    )
    assert result.outputs["wav"] == result.run_dir / "clip.wav"
    samples, rate = soundfile.read(result.outputs["wav"], always_2d=True)
    assert rate == 16000 and samples.shape == (round(9 / 25 * rate), 2)
    assert "wav clip.wav" in (result.run_dir / "render.log").read_text()


def test_a_model_without_audio_lists_no_wav(tmp_path):
    data = spec_data(videomodel={"model": "tiny-wan"}, output={"dir": str(tmp_path), "name": "w"})
    assert "wav" not in render(spec_from_data(data)).outputs


def test_only_audio_made_in_the_run_folder_is_an_output(tmp_path):
    from flipbook.runs.finish import made_audio

    run = tmp_path / "run"
    run.mkdir()
    made = run / "run.wav"
    made.write_bytes(b"RIFF")
    source = tmp_path / "source.mp4"  # video to video keeps its source's audio: not the render's
    source.write_bytes(b"x")
    assert made_audio((made, 0.0), run) == {"wav": made}
    assert made_audio((source, 0.0), run) == {}
    assert made_audio((run / "missing.wav", 0.0), run) == {}
    assert made_audio(None, run) == {}


def test_the_api_job_lists_and_serves_the_ltx2_wav(tmp_path):
    from fastapi.testclient import TestClient

    from flipbook.server import ServerSettings, create_app

    settings = ServerSettings(runs_dir=tmp_path / "runs", workers=1)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:7860") as client:
        response = client.post("/api/jobs", json=spec_data(output={"formats": ["png", "mp4"]}))
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        deadline = time.monotonic() + 180
        while (job := client.get(f"/api/jobs/{job_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, job["progress"]
            time.sleep(0.05)
        assert job["state"] == "done", job["error"]
        assert job["outputs"]["wav"] == f"/api/jobs/{job_id}/files/{job_id}.wav"
        wav = client.get(job["outputs"]["wav"])
        assert wav.status_code == 200
        served, rate = soundfile.read(io.BytesIO(wav.content), always_2d=True)
        on_disk, _ = soundfile.read(tmp_path / "runs" / job_id / f"{job_id}.wav", always_2d=True)
        assert rate == 16000 and np.array_equal(served, on_disk) and np.abs(served).max() > 0

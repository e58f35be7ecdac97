"""``[sweep]``: a grid of runs from a list of values per field (tiny model, 64x64, 2 frames, 2 steps)."""

import json

import numpy as np
import PIL.Image
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flipbook.errors import SpecError
from flipbook.runs.render import render
from flipbook.runs.setup import prepare
from flipbook.runs.sweep import CONTACT_FILE, render_sweep
from flipbook.spec.load import spec_from_data
from flipbook.spec.sweep import MAX_RUNS, flatten, sweep_runs

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def shared_model(monkeypatch, tiny_model):
    monkeypatch.setattr("flipbook.runs.cores.load_model", lambda name, **kwargs: tiny_model)


def make_data(folder, sweep, **sections) -> dict:
    data = {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"steps": 2, "seed": 3, "sampler": "Euler"},
        "animation": {"mode": "interpolate", "max_frames": 2, "width": 64, "height": 64},
        "prompts": {"0": "a forest", "1": "a city"},
        "output": {"dir": str(folder), "name": "grid", "formats": ["png"]},
        "sweep": sweep,
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return data


def frame_bytes(run_dir) -> list[bytes]:
    return [p.read_bytes() for p in sorted((run_dir / "frames").glob("*.png"))]


# ---- the grid (pure) ---------------------------------------------------------------------------------------


def test_the_grid_is_every_combination_each_a_spec_with_its_values_in_its_own_folder(tmp_path):
    spec = spec_from_data(make_data(tmp_path, {"sampling": {"seed": [1, 2, 3]}, "sampling.cfg": [5, 7.5]}))
    runs = sweep_runs(spec)
    assert [run.label for run in runs] == [
        "0_seed-1_cfg-5", "1_seed-1_cfg-7.5", "2_seed-2_cfg-5", "3_seed-2_cfg-7.5", "4_seed-3_cfg-5",
        "5_seed-3_cfg-7.5",
    ]  # fmt: skip
    assert [(r.spec.sampling.seed, r.spec.sampling.cfg) for r in runs] == [
        (1, 5), (1, 7.5), (2, 5), (2, 7.5), (3, 5), (3, 7.5)
    ]  # fmt: skip
    assert all(not r.spec.sweep for r in runs)
    assert {r.spec.output.dir for r in runs} == {tmp_path / "grid"}
    assert runs[0].spec.output.name == runs[0].label
    # the rest of the spec is the spec's, unset fields still unset (defaults that depend on them apply)
    assert runs[0].spec.model_dump(exclude={"sampling", "output", "sweep"}) == spec.model_dump(
        exclude={"sampling", "output", "sweep"}
    )
    assert runs[0].spec.animation.model_fields_set == spec.animation.model_fields_set


def test_a_sweep_that_leaves_the_seed_random_gives_every_run_the_same_one(tmp_path):
    spec = spec_from_data(make_data(tmp_path, {"sampling.cfg": [5, 6, 7]}, sampling={"seed": -1}))
    assert len({run.spec.sampling.seed for run in sweep_runs(spec)}) == 1
    assert sweep_runs(spec)[0].spec.sampling.seed != -1


@pytest.mark.parametrize(
    ("sweep", "field", "words"),
    [
        ({"sampling.cfg": [5, "lots"]}, "sweep.sampling.cfg", ["'lots'", "sampling.cfg"]),
        ({"animation.width": [64, 7]}, "sweep.animation.width", ["7", "animation.width", "greater than"]),
        ({"sampling.sampler": ["Euler", "Nope"]}, "sweep.sampling.sampler", ["'Nope'", "sampling.sampler"]),
        ({"sampling.nope": [1]}, "sweep.sampling.nope", ["no field 'nope'", "dotted path"]),
        ({"output.name": ["a"]}, "sweep.output.name", ["not version, output.dir or output.name"]),
        (
            {"sampling.seed": list(range(9)), "sampling.cfg": list(range(1, 9))},
            "sweep",
            ["72 runs", "at most 64"],
        ),
        ({"sampling.seed": []}, "sweep.sampling.seed", ["at least 1"]),
        ({"sampling.seed": 3}, "sweep.sampling.seed", ["list"]),
    ],
)
def test_a_bad_sweep_is_one_error_naming_the_field_path_the_value_and_what_is_allowed(
    tmp_path, sweep, field, words
):
    with pytest.raises(SpecError) as caught:
        spec_from_data(make_data(tmp_path, sweep))
    assert caught.value.field == field
    for word in words:
        assert word in str(caught.value)


def test_a_combination_the_spec_refuses_is_one_error_naming_its_values(tmp_path):
    """Each value alone is fine, together they break a cross-field rule (post.interpolate's GIF rate)."""
    data = make_data(tmp_path, {"animation.fps": [10, 60], "post.interpolate": [1, 2]})
    data["output"]["formats"] = ["gif"]
    with pytest.raises(SpecError) as caught:
        spec_from_data(data)
    assert caught.value.field == "sweep"
    assert "animation.fps = 60" in str(caught.value) and "post.interpolate = 2" in str(caught.value)


@given(st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True),
                       st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), st.lists(st.integers()),
                                       min_size=1), max_size=4))  # fmt: skip
def test_nested_tables_and_dotted_keys_flatten_to_the_same_paths(tables):
    dotted = {
        f"{section}.{name}": values for section, fields in tables.items() for name, values in fields.items()
    }
    assert flatten(tables) == dotted
    assert flatten(dotted) == dotted


def test_a_single_render_refuses_a_sweep_as_the_server_does(tmp_path):
    spec = spec_from_data(make_data(tmp_path, {"sampling.seed": [1, 2]}))
    with pytest.raises(SpecError) as caught:
        prepare(spec)
    assert caught.value.field == "sweep" and "flipbook render" in str(caught.value)


def test_the_server_refuses_a_grid_too_large_before_queueing_it(tmp_path):
    from fastapi.testclient import TestClient

    from flipbook.server import ServerSettings, create_app

    app = create_app(ServerSettings(runs_dir=tmp_path / "runs", workers=0))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        body = make_data(tmp_path, {"sampling.seed": list(range(MAX_RUNS // 2 + 1)), "sampling.cfg": [5, 6]})
        del body["output"]["dir"], body["output"]["name"]
        answer = client.post("/api/jobs", json=body)
        assert answer.status_code == 422 and answer.json()["field"] == "sweep"
        body["sweep"] = {"sampling.seed": [1, 2], "animation.width": [64, 65]}
        answer = client.post("/api/jobs", json=body)  # a value one run refuses: named with the sweep
        assert answer.status_code == 422 and answer.json()["field"] == "sweep.animation.width"
        assert not any((tmp_path / "runs").glob("*/"))  # nothing queued, no run folder left


def serve_threads(tmp_path):
    from fastapi.testclient import TestClient

    from flipbook.server import ServerSettings, create_app

    settings = ServerSettings(runs_dir=tmp_path / "runs", workers=1, worker_processes=False)
    return TestClient(create_app(settings), base_url="http://127.0.0.1")


def wait_job(client, job_id, done, timeout=300.0) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while not done(job := client.get(f"/api/jobs/{job_id}").json()):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def test_the_server_renders_a_sweep_as_one_job_with_its_grid_in_its_run_folder(tmp_path, shared_model):
    body = make_data(tmp_path, {"sampling.seed": [1, 2]}, output={"formats": ["png", "gif"]})
    del body["output"]["dir"], body["output"]["name"]
    with serve_threads(tmp_path) as client:
        job_id = client.post("/api/jobs", json=body).json()["id"]
        job = wait_job(client, job_id, lambda j: j["state"] not in ("queued", "running"))
        assert job["state"] == "done", job["error"]
        assert job["progress"]["frames"] == 4 and job["progress"]["frame"] == 4  # 2 runs of 2 frames
        outputs = job["outputs"]
        assert sorted(outputs) == ["0_seed-1/gif", "1_seed-2/gif", "contact_sheet"]
        sheet = client.get(outputs["contact_sheet"])
        assert sheet.status_code == 200 and sheet.content.startswith(b"\x89PNG")
        assert client.get(outputs["1_seed-2/gif"]).content.startswith(b"GIF8")
    folder = tmp_path / "runs" / job_id
    assert (folder / CONTACT_FILE).is_file()
    alone = render(spec_from_data(make_data(tmp_path / "alone", {}, sampling={"seed": 2})))
    assert frame_bytes(folder / "1_seed-2") == frame_bytes(alone.run_dir)


def test_a_cancelled_sweep_job_stops_every_run_and_resumes_to_the_whole_grid(tmp_path, shared_model):
    grid = {"sampling.seed": [1, 2]}
    data = make_data(tmp_path, grid, animation={"max_frames": 12})
    data["prompts"] = {"0": "a forest", "11": "a city"}
    body = json.loads(json.dumps(data))
    del body["output"]["dir"], body["output"]["name"]
    with serve_threads(tmp_path) as client:
        job_id = client.post("/api/jobs", json=body).json()["id"]
        wait_job(client, job_id, lambda j: j["state"] == "running" and j["progress"].get("frame", 0) >= 1)
        assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 202
        job = wait_job(client, job_id, lambda j: j["state"] not in ("queued", "running"))
        assert job["state"] == "cancelled" and job["resumable"]
        folder = tmp_path / "runs" / job_id
        kept = {p: p.stat().st_mtime_ns for p in folder.glob("*/frames/*.png")}
        assert 1 <= len(kept) < 12  # the first run stopped, the second never started
        assert not (folder / "1_seed-2").exists() and not (folder / CONTACT_FILE).exists()

        assert client.post(f"/api/jobs/{job_id}/resume").status_code == 202
        job = wait_job(client, job_id, lambda j: j["state"] not in ("queued", "running"))
        assert job["state"] == "done", job["error"]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # continued from its frames on disk
    alone = render_sweep(spec_from_data(data))
    for run, rendered in alone.runs:
        assert frame_bytes(folder / run.label) == frame_bytes(rendered.run_dir)
        assert len(frame_bytes(rendered.run_dir)) == 12


# ---- rendering -------------------------------------------------------------------------------------------------


def test_every_run_is_the_render_of_its_values_and_the_sheet_shows_them_all(tmp_path, shared_model):
    spec = spec_from_data(make_data(tmp_path, {"sampling.seed": [1, 2], "sampling.cfg": [4, 8]}))
    frames_seen = []
    from flipbook.events import Events

    result = render_sweep(spec, Events(on_frame=lambda event: frames_seen.append((event.index, event.total))))
    assert [run.label for run, _ in result.runs] == ["0_seed-1_cfg-4", "1_seed-1_cfg-8", "2_seed-2_cfg-4",
                                                     "3_seed-2_cfg-8"]  # fmt: skip
    alone = render(spec_from_data(make_data(tmp_path / "alone", {}, sampling={"seed": 2, "cfg": 8})))
    assert frame_bytes(tmp_path / "grid" / "3_seed-2_cfg-8") == frame_bytes(alone.run_dir)
    assert frame_bytes(tmp_path / "grid" / "0_seed-1_cfg-4") != frame_bytes(alone.run_dir)
    recorded = json.loads((tmp_path / "grid" / "1_seed-1_cfg-8" / "spec.json").read_text())
    assert recorded["sampling"]["cfg"] == 8 and not recorded.get("sweep")
    assert sorted(frames_seen) == [(i, 8) for i in range(8)]  # the runs' frames numbered one after another
    sheet = PIL.Image.open(result.contact)
    assert result.contact == tmp_path / "grid" / CONTACT_FILE
    assert sheet.width < sheet.height * 1.5 and sheet.width > sheet.height * 0.5  # 2 x 2 cells
    cells = np.asarray(sheet.convert("RGB"))
    assert cells.std() > 10


def test_the_cli_renders_the_example_sweep_and_refuses_a_bad_one(tmp_path, run_cli, shared_model):
    code, out, err = run_cli("render", "examples/sweep.toml", "-o", tmp_path, "--set", "animation.max_frames=2",
                             "--set", "sampling.steps=2", "--set", "prompts={0='a', 1='b'}")  # fmt: skip
    assert code == 0, err
    assert out.count("-> ") == 6 and "contact sheet:" in out
    assert (tmp_path / "sweep" / CONTACT_FILE).is_file()
    assert len(list((tmp_path / "sweep").glob("*/frames/frame_00001.png"))) == 6
    code, out, err = run_cli(
        "render", "examples/sweep.toml", "-o", tmp_path, "--set", "sweep.sampling.cfg=[5, -1]"
    )
    assert code == 2 and "sweep.sampling.cfg" in err and "Traceback" not in err

"""The render farm on a local Ray cluster (2 CPU actors, one thread each; tiny model, 64x64, 2 steps).

One module-scoped farm, so the suite pays Ray's start once. Frames are compared byte for byte with a
single-process ``render()`` of the same spec."""

import os
import re
import signal
import threading
import time

import pytest

from flipbook.events import Events, RenderCancelled
from flipbook.farm.farm import Farm, FarmSettings
from flipbook.runs.render import render
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def farm():
    """One local cluster for the module: room for the farm's 2 actors and a server's 2 (``--ray auto``)."""
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        with Farm(FarmSettings(cpu_actors=2)) as running:
            yield running
    finally:
        ray.shutdown()


def make_spec(folder, name, mode="interpolate", frames=8, seed=5, **sections):
    return spec_from_data(make_data(folder, name, mode, frames, seed, **sections))


def make_data(folder, name, mode="interpolate", frames=8, seed=5, **sections) -> dict:
    data = {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"steps": 2, "seed": seed, "sampler": "Euler"},
        "animation": {"mode": mode, "max_frames": frames, "width": 64, "height": 64},
        "prompts": {"0": "a forest", str(frames - 1): "a city"},
        "output": {"dir": str(folder), "name": name, "formats": ["png", "gif"]},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return data


def frame_bytes(run_dir) -> list[bytes]:
    return [p.read_bytes() for p in sorted((run_dir / "frames").glob("*.png"))]


def written(run_dir) -> list[int]:
    """The frames the run's log says were written (``<date> <time> frame N``), as often as it says so."""
    lines = (run_dir / "render.log").read_text().splitlines()
    return [int(m[1]) for m in (re.fullmatch(r"\S+ \S+ frame (\d+)", line) for line in lines) if m]


class Recorder:
    """Events that record every frame reported (and can cancel after some)."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.frames: list[int] = []
        self.events = Events(on_frame=self.on_frame)
        self.cancel_after = cancel_after

    def on_frame(self, event) -> None:
        self.frames.append(event.index)
        if self.cancel_after is not None and len(self.frames) >= self.cancel_after:
            self.events.cancel()


def test_a_split_interpolate_job_gives_the_single_process_frames(farm, tmp_path):
    single = render(make_spec(tmp_path, "single", interpolate={"batch_size": 2}))
    recorder = Recorder()
    result = farm.render(make_spec(tmp_path, "farm", interpolate={"batch_size": 2}), recorder.events)
    assert frame_bytes(result.run_dir) == frame_bytes(single.run_dir)
    assert sorted(recorder.frames) == list(range(8))  # every frame reported once, from both actors
    assert set(result.outputs) == set(single.outputs) and result.outputs["gif"].is_file()
    assert sorted(written(result.run_dir)) == list(range(8))


def test_an_actor_killed_mid_job_has_its_frames_rerun_elsewhere(farm, tmp_path):
    single = render(make_spec(tmp_path, "single", frames=12))
    recorder = Recorder()
    killed = []

    def kill_one_actor() -> None:
        """SIGKILL an actor process at the job's first frame, while both actors are inside their first task
        of four frames (at the second frame one actor could already be done and idle, and its death unseen)."""
        while not recorder.frames:
            time.sleep(0.01)
        pid = farm.pids()[0]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_one_actor)
    killer.start()
    result = farm.render(make_spec(tmp_path, "farm", frames=12), recorder.events)
    killer.join()
    assert killed
    assert frame_bytes(result.run_dir) == frame_bytes(single.run_dir)
    assert sorted(recorder.frames) == sorted(written(result.run_dir)) == list(range(12))  # none written twice
    assert "an actor died" in (result.run_dir / "render.log").read_text()


def test_two_feedback_jobs_run_side_by_side(farm, tmp_path):
    specs = [make_spec(tmp_path, f"travel{i}", mode="travel", frames=4, seed=i) for i in (1, 2)]
    singles = [frame_bytes(render(make_spec(tmp_path, f"single{i}", mode="travel", frames=4, seed=i)).run_dir)
               for i in (1, 2)]  # fmt: skip
    spans = {}

    def run(i: int) -> None:
        started = time.monotonic()
        farm.render(specs[i])
        spans[i] = (started, time.monotonic())

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [frame_bytes(tmp_path / f"travel{i}") for i in (1, 2)] == singles
    (a0, a1), (b0, b1) = spans[0], spans[1]
    assert max(a0, b0) < min(a1, b1)  # they overlapped: one actor each


def test_cancel_stops_every_task_of_the_job(farm, tmp_path):
    recorder = Recorder(cancel_after=2)
    with pytest.raises(RenderCancelled):
        farm.render(make_spec(tmp_path, "cancelled", frames=16), recorder.events)
    on_disk = len(list((tmp_path / "cancelled" / "frames").glob("*.png")))
    assert on_disk < 16
    time.sleep(1.0)  # nothing keeps rendering after the cancel
    assert len(list((tmp_path / "cancelled" / "frames").glob("*.png"))) == on_disk
    result = farm.resume(tmp_path / "cancelled")  # and the farm continues it
    assert len(result.frames) == 16


def test_the_server_renders_on_the_cluster(farm, tmp_path):
    """A render job, and an A1111 still request whose iterations are made on the cluster's actors: the
    images and infotexts one worker gives, in the same order."""
    import base64
    import json

    import httpx

    from flipbook.server import ServerSettings
    from flipbook.server.background import BackgroundServer
    from flipbook.server.stills import ModelCache, run_still, still_from_a1111

    single = render(make_spec(tmp_path, "single", interpolate={"batch_size": 2}))
    body = make_data(tmp_path, "x", interpolate={"batch_size": 2})
    del body["output"]["dir"], body["output"]["name"]
    still = {"prompt": "a fox", "steps": 2, "sampler_name": "Euler", "seed": 9, "width": 64, "height": 64,
             "n_iter": 3}  # fmt: skip
    (tmp_path / "still").mkdir()
    alone = run_still(still_from_a1111(still, "txt2img", "tiny").payload, tmp_path / "still", Events(),
                      ModelCache(), None)  # fmt: skip
    import ray

    address = ray.get_runtime_context().gcs_address  # this module's cluster ("auto" is the newest one here)
    settings = ServerSettings(runs_dir=tmp_path / "runs", workers=2, ray=address, ray_actors=2)
    with BackgroundServer(settings) as server, httpx.Client(base_url=server.url, timeout=600) as client:
        job_id = client.post("/api/jobs", json=body).json()["id"]
        answer = client.post("/sdapi/v1/txt2img", json=still)
        deadline = time.monotonic() + 600
        while (job := client.get(f"/api/jobs/{job_id}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
    assert job["state"] == "done", job["error"]
    assert frame_bytes(tmp_path / "runs" / job_id) == frame_bytes(single.run_dir)
    assert "start on the farm" in (tmp_path / "runs" / job_id / "render.log").read_text()
    assert answer.status_code == 200, answer.text
    images = [base64.b64decode(image) for image in answer.json()["images"]]
    assert images == [(tmp_path / "still" / name).read_bytes() for name in alone["images"]]
    assert json.loads(answer.json()["info"])["infotexts"] == alone["infotexts"]


def test_the_cli_renders_on_the_farm_and_refuses_bad_farm_options(farm, tmp_path, run_cli):
    import json

    spec_file = tmp_path / "walk.json"
    spec_file.write_text(json.dumps(make_data(tmp_path, "cli", frames=4)))
    code, out, err = run_cli(
        "render", spec_file, "--ray", "local", "--ray-actors", "2", "--preview-every", "0"
    )
    assert code == 0, err
    single = render(make_spec(tmp_path, "single", frames=4))
    assert frame_bytes(tmp_path / "cli") == frame_bytes(single.run_dir)

    code, out, err = run_cli("render", spec_file, "--ray", "local", "--ray-actors", "0")
    assert code == 2 and "--ray-actors" in err and "Traceback" not in err


def test_the_farm_checks_a_job_as_render_does_before_its_run_folder(farm, tmp_path):
    """The head runs render()'s own preparation (runs/setup.py): a LoRA tag naming no file is refused with
    one error naming it, before the run folder is made and before any actor gets a task."""
    from flipbook.errors import FlipbookError

    spec = make_spec(tmp_path, "lora", prompts={"0": "a forest <lora:nowhere:0.8>", "7": "a city"})
    with pytest.raises(FlipbookError) as single:
        render(spec)
    with pytest.raises(FlipbookError) as farmed:
        farm.render(spec)
    assert str(farmed.value) == str(single.value) and "nowhere" in str(farmed.value)
    assert not (tmp_path / "lora").exists()


def test_every_step_of_every_actor_is_reported_as_it_happens(farm, tmp_path):
    """Per-step progress from the actors through the job's one Events: every batch's steps, arriving as they
    happen (before the batch's frames, and while other frames are written), from both actors' tasks."""
    seen = []
    events = Events(
        on_step=lambda e: seen.append(("step", e.step, e.total_steps, e.frames)),
        on_frame=lambda e: seen.append(("frame", e.index)),
    )
    farm.render(make_spec(tmp_path, "steps", interpolate={"batch_size": 2}), events)
    steps = [i for i, entry in enumerate(seen) if entry[0] == "step"]
    frames = [i for i, entry in enumerate(seen) if entry[0] == "frame"]
    alone = []
    render(make_spec(tmp_path, "alone", interpolate={"batch_size": 2}), Events(on_step=alone.append))
    assert len(steps) == len(alone) and all(seen[i][2] == alone[0].total_steps for i in steps)  # every step
    assert sorted(seen[i][1] for i in frames) == list(range(8))
    assert len([i for i in steps if i < frames[0]]) >= 2  # a batch's steps before its frames
    assert frames[0] < steps[-1]  # and steps keep coming while frames are written: live, not replayed
    assert "task: frames 0-1" in (tmp_path / "steps" / "render.log").read_text()


def test_a_cancel_at_a_step_stops_every_task_and_frees_the_actors(farm, tmp_path):
    """A cancel during sampling (no frame yet) stops both actors' tasks at their next step: no frame is
    written after it, and no actor still runs a task of the job."""
    steps = []
    events = Events(on_step=lambda e: (steps.append(e), len(steps) >= 3 and events.cancel()))
    with pytest.raises(RenderCancelled):
        farm.render(make_spec(tmp_path, "stopped", frames=16, interpolate={"batch_size": 1}), events)
    frames = tmp_path / "stopped" / "frames"
    on_disk = len(list(frames.glob("*.png")))
    assert on_disk < 16
    time.sleep(1.0)
    assert len(list(frames.glob("*.png"))) == on_disk  # nothing keeps rendering after the cancel
    import ray

    deadline = time.monotonic() + 10  # a task ends at its next step: one step of the tiny model
    while ray.get([handle.running.remote() for handle in farm.handles]) != [None, None]:
        assert time.monotonic() < deadline, "a task of the cancelled job still runs"
        time.sleep(0.05)

"""More job kinds split across the farm's actors (local Ray, 2 CPU actors, one thread each; tiny models, 64x64,
2-4 steps): each split render gives the single-process render's frames byte for byte, and the mode hook
(``Mode.split``) says where a job may split and where it may not.

One module-scoped farm, so the module pays Ray's start once."""

import numpy as np
import PIL.Image
import pytest

from flipbook.farm.farm import Farm, FarmSettings
from flipbook.farm.segments import segments
from flipbook.io.writers import write_mp4
from flipbook.modes import get_mode
from flipbook.modes.base import Split
from flipbook.runs.render import render
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def farm():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with Farm(FarmSettings(cpu_actors=2)) as running:
            yield running
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 17-frame, 12 fps MP4 of a square moving over a gradient."""
    folder = tmp_path_factory.mktemp("clip")
    y, x = np.mgrid[0:64, 0:64]
    frames = []
    for i in range(17):
        frame = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
        frame[20:36, 4 + 3 * i : 20 + 3 * i] = (250, 220, 40)
        frames.append(frame)
    return write_mp4(frames, folder / "clip.mp4", fps=12, crf=0)


@pytest.fixture()
def pictures(tmp_path, init_image, mask_image):
    init_image.save(tmp_path / "init.png")
    mask_image.save(tmp_path / "mask.png")
    return {"image": str(tmp_path / "init.png"), "mask": str(tmp_path / "mask.png")}


def make_spec(folder, name, mode, frames, **sections):
    data = {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"steps": 2, "seed": 7, "sampler": "Euler"},
        "animation": {"mode": mode, "max_frames": frames, "width": 64, "height": 64},
        "prompts": {"0": "flames", str(frames - 1): "waves"},
        "output": {"dir": str(folder), "name": name, "formats": ["png"]},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return spec_from_data(data)


def renamed(spec, name):
    return spec.model_copy(update={"output": spec.output.model_copy(update={"name": name})})


def frame_bytes(run_dir) -> list[bytes]:
    return [p.read_bytes() for p in sorted((run_dir / "frames").glob("*.png"))]


def split_of(spec):
    return get_mode(spec.animation.mode).split(spec, build_plan(spec))


def tasks(run_dir) -> list[str]:
    """The farm's tasks, as its log names them (``task: frames 0-5``)."""
    lines = (run_dir / "render.log").read_text().splitlines()
    return [line.split("task: ", 1)[1] for line in lines if "task: " in line]


def assert_split_render_is_the_single_render(farm, spec, expected_tasks):
    single = render(renamed(spec, "single"))
    farmed = farm.render(renamed(spec, "farm"))
    assert len(frame_bytes(farmed.run_dir)) == spec.animation.max_frames
    assert frame_bytes(farmed.run_dir) == frame_bytes(single.run_dir)
    assert sorted(tasks(farmed.run_dir)) == sorted(expected_tasks)
    return farmed


# ---- where a job splits (pure) ---------------------------------------------------------------------------


def test_a_split_says_where_tasks_may_start_and_where_a_dead_actors_run_resumes():
    assert Split(4).starts(10) == [0, 4, 8]
    assert Split(8, offset=9).starts(30) == [0, 9, 17, 25]
    assert [Split(4).restart(i) for i in (0, 3, 4, 7, 9)] == [0, 0, 4, 4, 8]
    assert [Split(8, offset=9).restart(i) for i in (0, 8, 9, 16, 17, 20)] == [0, 0, 9, 9, 17, 17]


def test_segments_start_only_where_the_split_lets_a_task_start_and_cover_every_frame():
    assert segments(0, 10, Split(2), 4) == [range(0, 4), range(4, 8), range(8, 10)]
    assert segments(0, 10, None, 4) == [range(0, 10)]
    assert segments(10, 10, Split(2), 4) == []
    for first, total, split, parts in [(0, 17, Split(3), 5), (5, 40, Split(4), 3), (0, 1, Split(1), 8),
                                       (3, 40, Split(8, offset=9), 4)]:  # fmt: skip
        runs = segments(first, total, split, parts)
        assert [i for r in runs for i in r] == list(range(first, total))
        assert all(r.start in split.starts(total) for r in runs[1:])


# ---- which jobs split --------------------------------------------------------------------------------------


def test_video_restyle_splits_without_feedback_and_is_one_task_with_it(tmp_path, clip):
    spec = make_spec(tmp_path, "v", "video", 12, init={"video": str(clip)}, video={"batch_size": 2})
    assert split_of(spec) == Split(2)
    coherent = make_spec(
        tmp_path, "v", "video", 12, init={"video": str(clip)}, video={"color_coherence": "lab"}
    )
    assert split_of(coherent) == Split(
        4
    )  # the default batch; matched to its own source frame: still independent
    for feedback in (0.3, "0:(0), 6:(0.4)"):
        fed = make_spec(tmp_path, "v", "video", 12, init={"video": str(clip)}, video={"feedback": feedback})
        assert split_of(fed) is None


def test_videomodel_splits_only_segments_that_depend_on_no_other(tmp_path, clip):
    wan = {"model": "tiny-wan", "segment_frames": 9, "max_sequence_length": 32}
    restyle = make_spec(tmp_path, "w", "videomodel", 17, videomodel=wan, init={"video": str(clip)})
    assert split_of(restyle) == Split(8, offset=9)
    blended = make_spec(tmp_path, "w", "videomodel", 17, videomodel=wan | {"blend_frames": 2},
                        init={"video": str(clip)})  # fmt: skip
    assert split_of(blended) is None
    chained = make_spec(tmp_path, "w", "videomodel", 9, videomodel=wan)
    assert split_of(chained) is None


def test_feedback_modes_are_one_task(tmp_path):
    assert split_of(make_spec(tmp_path, "t", "travel", 4)) is None
    assert split_of(make_spec(tmp_path, "c", "2d", 4)) is None


# ---- split renders == single-process renders --------------------------------------------------------------


def test_a_split_variations_job_gives_the_single_process_frames(farm, tmp_path, pictures):
    spec = make_spec(tmp_path, "x", "variations", 6, init=pictures, variations={"batch_size": 2})
    farmed = assert_split_render_is_the_single_render(
        farm, spec, ["parts 0-1", "parts 2-3", "parts 4-5", "frames 0-5"]
    )
    log = (farmed.run_dir / "render.log").read_text()
    assert sorted(int(line.rsplit(" ", 1)[1]) for line in log.splitlines() if " variation " in line) == list(
        range(6)
    )  # every variation made once, by the tasks; the frames task reused them all
    assert "variations: 6 of 6 reused" in log


def test_a_split_video_restyle_gives_the_single_process_frames(farm, tmp_path, clip):
    spec = make_spec(tmp_path, "x", "video", 12, init={"video": str(clip)},
                     video={"batch_size": 2, "color_coherence": "lab"})  # fmt: skip
    assert_split_render_is_the_single_render(farm, spec, ["frames 0-3", "frames 4-7", "frames 8-11"])


def test_a_split_videomodel_restyle_gives_the_single_process_frames(farm, tmp_path, clip):
    spec = make_spec(tmp_path, "x", "videomodel", 17, init={"video": str(clip)}, sampling={"steps": 2},
                     videomodel={"model": "tiny-wan", "segment_frames": 9, "max_sequence_length": 32,
                                 "strength": 0.5})  # fmt: skip
    assert_split_render_is_the_single_render(farm, spec, ["frames 0-8", "frames 9-16"])


def test_a_sweep_on_the_farm_runs_side_by_side_and_gives_the_in_process_grid(farm, tmp_path):
    from flipbook.runs.sweep import CONTACT_FILE, render_sweep

    def grid(name):
        return make_spec(tmp_path, name, "interpolate", 2, interpolate={"batch_size": 1},
                         sweep={"sampling.seed": [1, 2]})  # fmt: skip

    single = render_sweep(grid("single"))
    farmed = farm.render_sweep(grid("farm"))
    assert [run.label for run, _ in farmed.runs] == [run.label for run, _ in single.runs]
    for (run, ours), (_, theirs) in zip(farmed.runs, single.runs, strict=True):
        assert frame_bytes(ours.run_dir) == frame_bytes(theirs.run_dir), run.label
        assert ours.run_dir == tmp_path / "farm" / run.label
    sheets = [np.asarray(PIL.Image.open(tmp_path / name / CONTACT_FILE)) for name in ("farm", "single")]
    assert np.array_equal(*sheets)  # the same pixels (the spec each embeds names its own folder)


# ---- still images (the A1111 API's batch count) --------------------------------------------------------------


def a1111_still(body: dict, kind: str, run_dir, farm=None) -> dict:
    """An A1111 request through the server's still path (checked, then run on a worker: on its own, or
    with the farm, as ``serve --ray`` runs it)."""
    from flipbook.events import Events
    from flipbook.server.stills import ModelCache, run_still, still_from_a1111

    job = still_from_a1111(body, kind, "tiny")
    run_dir.mkdir()
    for name, image in job.images.items():
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(run_dir / name)
    return run_still(job.payload, run_dir, Events(), ModelCache(), None, farm)


@pytest.mark.parametrize("kind, batch_size, tasks", [
    ("txt2img", 1, ["units 0-0", "units 1-1", "units 2-2", "units 3-3"]),
    ("img2img", 2, ["units 0-1", "units 2-3"]),
])  # fmt: skip
def test_still_iterations_split_across_actors_give_the_single_process_images(
    farm, tmp_path, init_image, caplog, kind, batch_size, tasks
):
    import base64
    import io
    import logging

    body = {"prompt": "a fox", "steps": 2, "sampler_name": "Euler", "seed": 7, "width": 64, "height": 64,
            "batch_size": batch_size, "n_iter": 4 // batch_size}  # fmt: skip
    if kind == "img2img":
        png = io.BytesIO()
        init_image.save(png, format="PNG")
        body |= {"init_images": [base64.b64encode(png.getvalue()).decode()], "denoising_strength": 0.6}
    single = a1111_still(body, kind, tmp_path / "single")
    with caplog.at_level(logging.INFO, logger="flipbook.farm"):
        farmed = a1111_still(body, kind, tmp_path / "farm", farm)
    assert sorted(m.split("task: ")[1] for m in caplog.messages if "task: " in m) == tasks
    assert farmed == single  # names, seeds, infotexts, in the same order
    assert len(single["images"]) == 4
    for name in single["images"]:
        assert (tmp_path / "farm" / name).read_bytes() == (tmp_path / "single" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "farm").glob("*.png")) == sorted(single["images"])

"""The run folder: a new render refuses an earlier run unless told to replace it (and then deletes only
flipbook's files), half-written files a kill leaves are removed, and an unwritable folder is one clear error."""

from pathlib import Path

import pytest

from flipbook.errors import FlipbookError
from flipbook.runs.run_dir import PLAN_FILE, SPEC_FILE, RunDir
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan


def spec_and_plan(frames: int = 4):
    spec = spec_from_data(
        {
            "model": {"name": "tiny"},
            "sampling": {"seed": 3},
            "animation": {"max_frames": frames, "width": 64, "height": 64},
            "prompts": {"0": "a forest"},
        }
    )
    return spec, build_plan(spec)


def finished_run(path: Path, frames: int = 4) -> RunDir:
    """A folder as a finished 4-frame render leaves it (the frames' contents do not matter here)."""
    run = RunDir(path)
    run.start(*spec_and_plan(frames))
    for index in range(frames):
        run.frame_path(index).write_bytes(b"png")
    run.depth_path(0).parent.mkdir()
    run.depth_path(0).write_bytes(b"png")
    run.log("done")
    for name in (f"{path.name}.gif", f"{path.name}.mp4", "metrics.json", "preview.png"):
        (path / name).write_bytes(b"x")
    (path / f"{path.name}_frames").mkdir()
    (path / f"{path.name}_frames" / "frame_00000.png").write_bytes(b"png")
    return run


def part_file(folder: Path, name: str) -> Path:
    """What a render killed inside atomic_target leaves: ``.NAME.XXXXXXXX.part``."""
    path = folder / f".{name}.0badf00d.part"
    path.write_bytes(b"half")
    return path


def test_a_new_render_refuses_a_folder_that_holds_a_run(tmp_path):
    finished_run(tmp_path / "ok")
    with pytest.raises(FlipbookError) as info:
        RunDir(tmp_path / "ok").start(*spec_and_plan())
    error = info.value
    assert error.field == "output.name" and error.value == str(tmp_path / "ok")
    assert "--resume" in str(error) and "--overwrite" in str(error) and "4 frames" in str(error)


def test_overwrite_replaces_every_file_of_the_earlier_run(tmp_path):
    path = tmp_path / "ok"
    finished_run(path, frames=4)
    leftover = part_file(path / "frames", "frame_00004.png")
    RunDir(path).start(*spec_and_plan(2), overwrite=True)
    remaining = sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))
    assert remaining == [
        "frames",
        PLAN_FILE,
        SPEC_FILE,
    ]  # no stale frame_00003.png, outputs, log or part file
    assert not leftover.exists()
    assert '"max_frames": 2' in (path / SPEC_FILE).read_text()


def test_overwrite_keeps_stored_variations(tmp_path):
    """Stored variations carry their request's fingerprint and are reused only when it matches: a cache."""
    run = finished_run(tmp_path / "ok")
    run.variation_path(0).parent.mkdir()
    run.variation_path(0).write_bytes(b"png")
    leftover = part_file(run.variation_path(0).parent, "var_00001.png")
    run.start(*spec_and_plan(), overwrite=True)
    assert run.variation_path(0).read_bytes() == b"png" and not leftover.exists()
    assert not run.frame_path(0).exists()


def test_overwrite_deletes_nothing_when_the_folder_holds_other_files(tmp_path):
    path = tmp_path / "ok"
    finished_run(path)
    (path / "notes.txt").write_text("mine")
    (path / "frames" / "edited.png").write_bytes(b"mine")
    before = sorted(path.rglob("*"))
    with pytest.raises(FlipbookError) as info:
        RunDir(path).start(*spec_and_plan(), overwrite=True)
    assert info.value.field == "--overwrite"
    assert "notes.txt" in str(info.value) and "frames/edited.png" in str(info.value)
    assert sorted(path.rglob("*")) == before


def test_a_new_render_keeps_files_that_are_not_a_run(tmp_path):
    """The server puts a job's uploads into its run folder before the render starts."""
    path = tmp_path / "job"
    (path / "inputs").mkdir(parents=True)
    (path / "inputs" / "init.png").write_bytes(b"upload")
    RunDir(path).start(*spec_and_plan())
    assert (path / "inputs" / "init.png").read_bytes() == b"upload"
    assert (path / SPEC_FILE).is_file()


def test_resume_removes_half_written_files_a_kill_left(tmp_path):
    path = tmp_path / "killed"
    run = finished_run(path, frames=2)
    parts = [
        part_file(path / "frames", "frame_00002.png"),
        part_file(path, "killed.gif"),
        part_file(path, SPEC_FILE),
    ]
    parts.append(
        part_file(path, "killed.gif.0badf00d.part.gifsicle")
    )  # gifsicle's output next to a part file
    run.reopen(*spec_and_plan(4))
    assert [p for p in parts if p.exists()] == []
    assert run.completed(4) == 2


def test_a_folder_killed_before_its_spec_can_be_rendered_again(tmp_path):
    """A kill while spec.json (the first file) was being written leaves only its part file: resume says to
    render again, and a new render needs no --overwrite."""
    path = tmp_path / "early"
    path.mkdir()
    leftover = part_file(path, SPEC_FILE)
    with pytest.raises(FlipbookError) as info:
        RunDir(path).read_spec()
    assert info.value.field == "--resume" and "render the spec again" in str(info.value)
    RunDir(path).start(*spec_and_plan())
    assert (path / SPEC_FILE).is_file() and not leftover.exists()


def test_start_writes_the_spec_before_anything_else(tmp_path, monkeypatch):
    """Killed right after the first file, the folder is resumable: that file is spec.json."""
    from flipbook.runs import run_dir

    written = []
    real = run_dir._write_text

    def record(path, text):
        if not written:  # a kill now must leave nothing but half-written files
            assert [p.name for p in path.parent.iterdir() if not p.name.endswith(".part")] == []
        written.append(path.name)
        real(path, text)

    monkeypatch.setattr(run_dir, "_write_text", record)
    RunDir(tmp_path / "run").start(*spec_and_plan())
    assert written[0] == SPEC_FILE
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted([SPEC_FILE, PLAN_FILE, "frames"])


def test_an_unwritable_output_folder_is_one_error_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(FlipbookError) as info:
        RunDir(blocker / "run").start(*spec_and_plan())
    error = info.value
    assert error.field == "output.dir" and error.value == str(blocker)
    assert "Not a directory" in str(error)

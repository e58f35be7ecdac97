"""The run folder: everything a render writes, laid out so a killed render can be resumed.

::

    RUN_DIR/
      spec.json         the resolved spec (random seed replaced by the chosen one): what ``--resume`` reads;
                        written first, so a folder without it holds no frames
      frames.csv        every frame's parameters: prompt, seed, sampler, steps, cfg, strength, camera schedules
      render.log        one line per event (start, resume, each frame, stop)
      frames/frame_NNNNN.png   each frame as soon as it exists (A1111 parameters inside), written atomically
      depth/depth_NNNNN.png    3D depth maps, when asked for
      variations/var_NNNNN.png the variations mode's stored variations
      audio/audio_NNNNN.wav    audio a model made with a segment's frames (from frame NNNNN on), when it does
      NAME.wav                 that audio joined into the video's soundtrack
      metrics.json, preview.png  the temporal-consistency score; the CLI's live preview
      NAME.gif, NAME.mp4, ...  the animation, encoded from frames/ at the end (NAME: the folder's name)

Every file is written to a temporary name and renamed, so a frame file that exists is complete, whenever the
process died (SIGKILL included); the temporary ``.NAME.XXXXXXXX.part`` files a kill leaves are removed when
the run is resumed or replaced. A new render refuses a folder that already holds a run unless it is told to
replace it (``overwrite``), and then deletes only the files listed above, never anything else.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import PIL.Image

from flipbook.errors import FlipbookError
from flipbook.io.atomic import atomic_target, is_partial, unwritable_folder
from flipbook.spec.model import Spec
from flipbook.spec.plan import Plan

SPEC_FILE = "spec.json"
PLAN_FILE = "frames.csv"
LOG_FILE = "render.log"
METRICS_FILE = "metrics.json"
PREVIEW_FILE = "preview.png"
FRAMES_FOLDER = "frames"
DEPTH_FOLDER = "depth"
VARIATIONS_FOLDER = "variations"
AUDIO_FOLDER = "audio"
SOUNDTRACK_NAME = "{stem}.wav"
# Folders of numbered files a render writes, with each file's name prefix ("<stem>_frames" is the png output
# after [post] processing, named by :data:`flipbook.io.writers.OUTPUT_NAMES`); the files are PNGs but for the
# prefixes in _NUMBERED_SUFFIX.
_NUMBERED = {
    FRAMES_FOLDER: "frame_",
    DEPTH_FOLDER: "depth_",
    VARIATIONS_FOLDER: "var_",
    AUDIO_FOLDER: "audio_",
}
_NUMBERED_SUFFIX = {"audio_": ".wav"}
_RUN_FILES = (SPEC_FILE, PLAN_FILE, LOG_FILE, METRICS_FILE, PREVIEW_FILE)
# Kept when a run is replaced: each stored variation carries the fingerprint of the request that made it and
# is reused only when the new run's request matches exactly (modes/variations.py), so it is a cache, not state.
_KEPT_ON_OVERWRITE = (VARIATIONS_FOLDER,)
FOREIGN_SHOWN = 3  # how many files that are not flipbook's an error names


class RunDir:
    """One run folder (see the module docstring for its layout). Its files are named after the folder: a
    render's run folder is ``output.dir / output.name`` and its outputs are ``output.name`` + suffix."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    # ---- starting --------------------------------------------------------------------------------------

    def start(self, spec: Spec, plan: Plan, *, overwrite: bool = False) -> None:
        """Begin a new run here: refuse a folder that holds a run already unless ``overwrite`` (then delete
        that run's files, and only those), remove what a killed render left half-written, then write the
        resolved spec first and the per-frame table. An unwritable folder is one error naming it."""
        with self._writing():
            self.path.mkdir(parents=True, exist_ok=True)
            if self.holds_run():
                if not overwrite:
                    raise FlipbookError(
                        "output.name",
                        str(self.path),
                        "a run folder without an earlier run: --resume continues that run, --overwrite "
                        "replaces it (overwrite=True in Python), or choose another output.name",
                        detail=f"it holds {self._describe_run()}",
                    )
                self._clear()
            self._write_start(spec, plan)

    def reopen(self, spec: Spec, plan: Plan) -> None:
        """Continue the run here (resume): remove half-written files, rewrite the spec and table identically."""
        with self._writing():
            self._write_start(spec, plan)

    def _write_start(self, spec: Spec, plan: Plan) -> None:
        self.remove_partial_files()
        _write_text(self.path / SPEC_FILE, spec.model_dump_json(indent=2))
        _write_text(self.path / PLAN_FILE, plan_table(plan))
        (self.path / FRAMES_FOLDER).mkdir(exist_ok=True)

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        return _naming_the_folder(self.path)

    # ---- the folder's files ----------------------------------------------------------------------------

    def holds_run(self) -> bool:
        """Whether a render has written anything here beyond half-written temporary files."""
        return any(not is_partial(path) for path in self._own_files())

    def foreign_files(self) -> list[Path]:
        """Everything in the folder that is not one of a render's files (the user's, another tool's)."""
        if not self.path.is_dir():
            return []
        own_folders = self._own_folders()
        foreign = []
        for entry in sorted(self.path.iterdir()):
            if entry.name in own_folders and entry.is_dir() and not entry.is_symlink():
                prefix = own_folders[entry.name]
                foreign += [
                    p for p in sorted(entry.iterdir()) if not _numbered(p, prefix) and not is_partial(p)
                ]
            elif not (entry.name in self._own_names() and entry.is_file()) and not is_partial(entry):
                foreign.append(entry)
        return foreign

    def remove_partial_files(self) -> None:
        """Delete the ``.NAME.XXXXXXXX.part`` files a killed render left (here and in its own folders)."""
        for path in self._own_files():
            if is_partial(path):
                path.unlink(missing_ok=True)

    def _clear(self) -> None:
        """Delete an earlier run's files (stored variations stay: see _KEPT_ON_OVERWRITE), after checking the
        folder holds nothing else (else nothing is deleted and the error names what is there)."""
        foreign = self.foreign_files()
        if foreign:
            shown = ", ".join(str(p.relative_to(self.path)) for p in foreign[:FOREIGN_SHOWN])
            more = f" and {len(foreign) - FOREIGN_SHOWN} more" if len(foreign) > FOREIGN_SHOWN else ""
            raise FlipbookError(
                "--overwrite",
                str(self.path),
                "a run folder that holds only flipbook's files (nothing is deleted otherwise); move the other "
                "files out or choose another output.name",
                detail=f"it also holds {shown}{more}",
            )
        kept = {self.path / name for name in _KEPT_ON_OVERWRITE}
        for path in self._own_files():
            if path.parent not in kept or is_partial(path):
                path.unlink(missing_ok=True)
        for name in self._own_folders():
            folder = self.path / name
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def _own_names(self) -> set[str]:
        """Top-level file names a render writes: the run files and every output format's file."""
        from flipbook.io.writers import OUTPUT_NAMES

        outputs = {name.format(stem=self.path.name) for fmt, name in OUTPUT_NAMES.items() if fmt != "png"}
        return {*_RUN_FILES, *outputs, SOUNDTRACK_NAME.format(stem=self.path.name)}

    def _own_folders(self) -> dict[str, str]:
        """Folders of numbered PNGs a render writes, with their files' name prefix."""
        from flipbook.io.writers import OUTPUT_NAMES

        return {**_NUMBERED, OUTPUT_NAMES["png"].format(stem=self.path.name): "frame_"}

    def _own_files(self) -> Iterator[Path]:
        """Every file of a render's in this folder, half-written ones included (no one else's)."""
        if not self.path.is_dir():
            return
        names = self._own_names()
        for entry in self.path.iterdir():
            if entry.is_file() and not entry.is_symlink() and (entry.name in names or is_partial(entry)):
                yield entry
        for name, prefix in self._own_folders().items():
            folder = self.path / name
            if folder.is_dir() and not folder.is_symlink():
                for entry in folder.iterdir():
                    if entry.is_file() and (_numbered(entry, prefix) or is_partial(entry)):
                        yield entry

    def _describe_run(self) -> str:
        frames = sum(1 for _ in (self.path / FRAMES_FOLDER).glob("frame_*.png"))
        has_spec = (self.path / SPEC_FILE).is_file()
        return f"{SPEC_FILE} and {frames} frames" if has_spec else f"{frames} frames and other run files"

    # ---- writing ---------------------------------------------------------------------------------------

    def write_metrics(self, metrics: dict[str, float]) -> None:
        """``metrics.json``: the run's temporal-consistency score (see flipbook.motion.consistency)."""
        _write_text(self.path / METRICS_FILE, json.dumps({"temporal_error": metrics}, indent=2))

    def frame_path(self, index: int) -> Path:
        return self.path / FRAMES_FOLDER / f"{_NUMBERED[FRAMES_FOLDER]}{index:05d}.png"

    def depth_path(self, index: int) -> Path:
        return self.path / DEPTH_FOLDER / f"{_NUMBERED[DEPTH_FOLDER]}{index:05d}.png"

    def variation_path(self, index: int) -> Path:
        return self.path / VARIATIONS_FOLDER / f"{_NUMBERED[VARIATIONS_FOLDER]}{index:05d}.png"

    def audio_path(self, index: int) -> Path:
        """The audio a model made with the frames from ``index`` on (one segment's)."""
        return self.path / AUDIO_FOLDER / f"{_NUMBERED[AUDIO_FOLDER]}{index:05d}.wav"

    def soundtrack_path(self) -> Path:
        """``NAME.wav``: the audio a model made, joined into the video's soundtrack."""
        return self.path / SOUNDTRACK_NAME.format(stem=self.path.name)

    def log(self, message: str) -> None:
        """Append one timestamped line to render.log (appends are line-sized, so a kill loses at most one)."""
        self.path.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.path / LOG_FILE, "a", encoding="utf-8") as log:
            log.write(f"{stamp} {message}\n")

    # ---- reading (resume) ------------------------------------------------------------------------------

    def read_spec(self) -> Spec:
        """The spec a run was started with; one error naming the folder when it is not a run folder."""
        from flipbook.spec.load import spec_from_data

        path = self.path / SPEC_FILE
        if not path.is_file():
            started = self.path.is_dir()
            raise FlipbookError(
                "--resume",
                str(self.path),
                f"a run folder with a {SPEC_FILE} (the first file a render writes)",
                detail="the render stopped before it began: render the spec again (with --overwrite if "
                "the folder holds frames)"
                if started
                else "no such folder",
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise FlipbookError(
                "--resume", str(path), "the spec.json a render wrote", detail=str(error)
            ) from None
        return spec_from_data(data)

    def done(self, index: int) -> bool:
        return self.frame_path(index).is_file()

    def load(self, index: int) -> PIL.Image.Image:
        with PIL.Image.open(self.frame_path(index)) as image:
            return image.convert("RGB")

    def completed(self, total: int) -> int:
        """How many frames from frame 0 on exist without a gap."""
        count = 0
        while count < total and self.done(count):
            count += 1
        return count


def resume_point(completed: int, every: int = 1) -> int:
    """The frame to restart from: the last frame that a mode can continue from (a multiple of ``every``, e.g. the
    diffusion cadence) among the ``completed`` frames, or -1 to start from scratch.

    With cadence N the in-between frames after diffused frame d are made from d and d + N, so a run killed in
    the middle of them restarts at d, not at the last file written (Deforum's resume misaligns here).
    """
    if completed <= 0:
        return -1
    return (completed - 1) // every * every


def plan_table(plan: Plan) -> str:
    """The plan as CSV: one row per frame with every schedule's value, the seed and the prompts."""
    camera = sorted(plan.frames[0].camera) if plan.frames else []
    schedules = sorted(plan.frames[0].schedules) if plan.frames else []  # other mode sections: video.feedback
    head = [
        "frame",
        "seed",
        "sampler",
        "checkpoint",
        "steps",
        "cfg",
        "strength",
        "denoise",
        "prompt_key",
        "blend",
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [*head, *camera, *schedules, "prompt", "negative_prompt", "next_prompt", "next_negative_prompt"]
    )
    for f in plan.frames:
        row: Iterable[object] = (
            f.index, f.seed, f.sampler, f.checkpoint, f.steps, f"{f.cfg:g}", f"{f.strength:g}",
            f"{f.denoise:g}", f.prompt_key, f"{f.blend:.6g}", *(f"{f.camera[name]:.6g}" for name in camera),
            *(f"{f.schedules[path]:.6g}" for path in schedules),
            f.prompt, f.negative_prompt, f.next_prompt, f.next_negative_prompt,
        )  # fmt: skip
        writer.writerow(row)
    return out.getvalue()


def _write_text(path: Path, text: str) -> None:
    with atomic_target(path, field="output.dir") as tmp:
        tmp.write_text(text, encoding="utf-8")


_NUMBERED_NAME = re.compile(r"[0-9]+")


def _numbered(path: Path, prefix: str) -> bool:
    """``<prefix>NNNNN.png`` (``.wav`` for audio): a file name a render gives its numbered files (never a
    user's own name)."""
    name, suffix = path.name, _NUMBERED_SUFFIX.get(prefix, ".png")
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return False
    return _NUMBERED_NAME.fullmatch(name[len(prefix) : len(name) - len(suffix)]) is not None


@contextlib.contextmanager
def _naming_the_folder(path: Path) -> Iterator[None]:
    """Turn an OSError in the block (no permission, a read-only or pseudo file system, a full disk) into one
    FlipbookError naming the output folder (``output.dir``) and the system's reason: the CLI prints it as one
    line and exits with 2 instead of a traceback."""
    try:
        yield
    except OSError as error:
        raise unwritable_folder("output.dir", path.parent, error) from None

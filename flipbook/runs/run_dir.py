"""The run folder: everything a render writes, laid out so a killed render can be resumed.

::

    RUN_DIR/
      spec.json         the resolved spec (random seed replaced by the chosen one): what ``--resume`` reads
      frames.csv        every frame's parameters: prompt, seed, sampler, steps, cfg, strength, camera schedules
      render.log        one line per event (start, resume, each frame, stop)
      frames/frame_NNNNN.png   each frame as soon as it exists (A1111 parameters inside), written atomically
      depth/depth_NNNNN.png    3D depth maps, when asked for
      NAME.gif, NAME.mp4       the animation, encoded from frames/ at the end

Every file is written to a temporary name and renamed, so a frame file that exists is complete, whenever the
process died (SIGKILL included).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterable
from pathlib import Path

import PIL.Image

from flipbook.errors import FlipbookError
from flipbook.io.atomic import atomic_target
from flipbook.spec.model import Spec
from flipbook.spec.plan import Plan

SPEC_FILE = "spec.json"
PLAN_FILE = "frames.csv"
LOG_FILE = "render.log"


class RunDir:
    """One run folder (see the module docstring for its layout)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    # ---- writing ---------------------------------------------------------------------------------------

    def start(self, spec: Spec, plan: Plan) -> None:
        """Write the resolved spec and the per-frame table (a resume rewrites them identically)."""
        (self.path / "frames").mkdir(parents=True, exist_ok=True)
        _write_text(self.path / SPEC_FILE, spec.model_dump_json(indent=2))
        _write_text(self.path / PLAN_FILE, plan_table(plan))

    def write_metrics(self, metrics: dict[str, float]) -> None:
        """``metrics.json``: the run's temporal-consistency score (see flipbook.motion.consistency)."""
        _write_text(self.path / "metrics.json", json.dumps({"temporal_error": metrics}, indent=2))

    def frame_path(self, index: int) -> Path:
        return self.path / "frames" / f"frame_{index:05d}.png"

    def depth_path(self, index: int) -> Path:
        return self.path / "depth" / f"depth_{index:05d}.png"

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
            raise FlipbookError(
                "--resume", str(self.path), f"a run folder with a {SPEC_FILE} (written when a render starts)"
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
    with atomic_target(path) as tmp:
        tmp.write_text(text, encoding="utf-8")

"""Checking a spec never imports torch: validate, import-deforum, plan without the motion preview, every
``--help`` and the web UI's schedule re-plot run in a fresh interpreter (this test process has torch loaded
already) and must leave torch, diffusers and transformers out of ``sys.modules``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from flipbook.cli import app

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix in (".toml", ".json"))
HEAVY = ("torch", "diffusers", "transformers")
SHARED_DEFORUM = [
    folder / "testdata" / "deforum" / "deforum-art__sd-webui-deforum__scripts__default_settings.txt"
    for folder in (ROOT / "shared", ROOT.parent / "shared", ROOT.parents[1] / "shared")
]

# Runs each command line of argv[1] (a JSON list) through the CLI's main in this one fresh interpreter and
# writes, per command, its exit code and the heavy packages loaded so far to argv[2].
CLI_DRIVER = """
import json, sys
from flipbook.cli import main

commands, report_path, report = json.loads(sys.argv[1]), sys.argv[2], []
for argv in commands:
    sys.argv = ["flipbook", *argv]
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    heavy = sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY))
    report.append({"argv": argv, "code": code, "heavy": heavy})
with open(report_path, "w") as file:
    json.dump(report, file)
"""

# The web UI's "Check and plot schedules" handler (re-run on every schedule edit) on a 2d tab's fields.
UI_DRIVER = """
import json, sys
from flipbook.server.ui import chart, mode_data

common = {"frames": 12, "width": 64, "height": 64, "sampler": "DPM++ 2M Karras", "cfg": "0:(7), 6:(5)",
          "strength": "0:(0.6)", "prompts": [["0", "a forest"], ["6", "a city"]]}
figure, message = chart(mode_data("2d", common, {"zoom": "0:(1.02)", "angle": "0:(1)"}))
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY))
with open(sys.argv[2], "w") as file:
    json.dump([{"argv": ["ui chart"], "code": 0 if figure is not None else message, "heavy": heavy}], file)
"""

# The spec package on its own: every mode's descriptor and settings, every example loaded, validated, planned
# and summarised, the schema and every field's web UI widget: nothing of it may import torch.
SPEC_DRIVER = """
import json, sys
from pathlib import Path
import flipbook.modes
from flipbook.modes import REGISTERED
from flipbook.server.widgets import field_schema, widget_for
from flipbook.spec.load import load_spec
from flipbook.spec.model import Spec
from flipbook.spec.plan import build_plan
from flipbook.spec.references import field_name, marked_fields
from flipbook.spec.summary import summarize

report = []
for path in json.loads(sys.argv[1])[0]:
    spec = load_spec(path)
    summarize(spec)
    build_plan(spec.with_seed())
    report.append({"argv": [path], "code": 0, "heavy": sorted({n.split(".")[0] for n in sys.modules} & set(HEAVY))})
Spec.model_json_schema()
for location, _ in marked_fields():
    widget_for(field_schema(field_name(tuple(0 if p == "[i]" else p for p in location))))
for mode in REGISTERED:
    for form_field in mode.form:
        widget_for(field_schema(form_field.path))
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY))
report.append({"argv": ["schema, widgets, descriptors"], "code": 0, "heavy": heavy})
with open(sys.argv[2], "w") as file:
    json.dump(report, file)
"""


def _run_fresh(driver: str, commands: list[list[str]], tmp_path: Path) -> list[dict]:
    """``driver`` in a new interpreter (cwd: the repository, so examples find their assets); its report."""
    report = tmp_path / "report.json"
    source = f"HEAVY = {HEAVY!r}\n{driver}"
    done = subprocess.run(
        [sys.executable, "-c", source, json.dumps(commands), str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and report.is_file(), done.stderr[-3000:]
    return json.loads(report.read_text())


def _assert_light(report: list[dict], commands: list[list[str]]) -> None:
    """Every command in ``commands`` succeeded and none of the heavy packages was loaded after it (the report
    is cumulative: the first command after which one appears is the one that imported it)."""
    first_heavy = next((entry for entry in report if entry["heavy"]), None)
    for entry in report:
        if entry["argv"] in commands:
            assert entry["code"] == 0, entry
            assert not entry["heavy"], f"{' '.join(first_heavy['argv'])} imported {first_heavy['heavy']}"
    assert [entry["argv"] for entry in report if entry["argv"] in commands] == commands


def _command_paths(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group of the CLI (a group has ``commands``), as the argv that reaches it."""
    paths = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths += _command_paths(sub, (*path, name))
    return paths


def _deforum_file(tmp_path: Path) -> Path:
    """A Deforum settings file as the A1111 extension writes one (JSON, k-diffusion sampler name)."""
    path = tmp_path / "deforum_settings.txt"
    settings = {
        "W": 64, "H": 64, "seed": 7, "sampler": "euler_ancestral", "steps": 4, "animation_mode": "2D",
        "max_frames": 6, "fps": 12, "cfg_scale_schedule": "0: (7), 3: (5)", "strength_schedule": "0: (0.65)",
        "zoom": "0:(1.04)", "angle": "0:(0)", "diffusion_cadence": 2,
        "prompts": {"0": "a forest --neg fog", "max_f-2": "a city"},
    }  # fmt: skip
    path.write_text(json.dumps(settings, indent=2), encoding="utf-8")
    return path


def _preset_spec(tmp_path: Path) -> Path:
    """An animatediff spec with a distilled-model preset and its sampler written out: checking the two agree
    reads the presets and the sampler table, both pure."""
    path = tmp_path / "preset.toml"
    path.write_text(
        'version = 1\n[animation]\nmode = "animatediff"\nmax_frames = 4\nwidth = 64\nheight = 64\n'
        '[sampling]\nsampler = "LCM"\n[animatediff]\npreset = "lcm"\n[prompts]\n0 = "a fox"\n',
        encoding="utf-8",
    )
    return path


def _deforum_files(tmp_path: Path) -> list[Path]:
    return [_deforum_file(tmp_path), *[p for p in SHARED_DEFORUM if p.is_file()][:1]]


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> tuple[dict[str, list[list[str]]], list[dict], Path]:
    """Every checking command, run in one fresh interpreter (librosa, which the audio example's plan needs, is
    slow to import): the command lines by group, the report, and the folder with their outputs."""
    folder = tmp_path_factory.mktemp("light")
    deforum = _deforum_files(folder)
    groups = {
        "help": [[*path, "--help"] for path in _command_paths(typer.main.get_command(app))],
        "import-deforum": [["import-deforum", str(p), "-o", str(folder / f"{p.stem}.toml")] for p in deforum],
        "validate": [["validate", str(p)] for p in [*EXAMPLES, *deforum, _preset_spec(folder)]],
        "plan": [
            ["plan", str(p), "--no-motion", "-o", str(folder / f"{p.stem}.plan.png")]
            for p in [*EXAMPLES, *deforum]
        ],
    }
    report = _run_fresh(CLI_DRIVER, [line for lines in groups.values() for line in lines], folder)
    return groups, report, folder


def test_help_of_every_command_is_light(cli):
    groups, report, _ = cli
    assert len(groups["help"]) > 10  # the walk found the subcommands and the groups' commands
    _assert_light(report, groups["help"])


def test_validate_every_example_and_a_deforum_file_is_light(cli):
    groups, report, _ = cli
    assert len(EXAMPLES) >= 5
    _assert_light(report, groups["validate"])


def test_import_deforum_is_light(cli):
    groups, report, folder = cli
    _assert_light(report, groups["import-deforum"])
    assert (folder / "deforum_settings.toml").is_file()


def test_plan_without_motion_preview_is_light(cli):
    groups, report, folder = cli
    _assert_light(report, groups["plan"])
    assert len(list(folder.glob("*.plan.png"))) == len(groups["plan"])


def test_ui_replot_is_light(tmp_path):
    _assert_light(_run_fresh(UI_DRIVER, [], tmp_path), [["ui chart"]])


def test_the_spec_package_validates_every_example_without_torch(tmp_path):
    """Importing the spec, the mode registry and every mode's descriptor and settings, validating, planning and
    summarising every example, the schema and the widgets never import torch or diffusers: a mode's render
    code is only imported by a render."""
    paths = [str(p) for p in EXAMPLES if p.suffix == ".toml"]
    report = _run_fresh(SPEC_DRIVER, [paths], tmp_path)
    assert len(report) == len(paths) + 1
    _assert_light(report, [entry["argv"] for entry in report])

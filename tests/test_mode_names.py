"""Nothing outside ``flipbook/modes/`` selects behaviour by a mode's name: what a mode is, does and says comes
from its descriptor (``flipbook/modes/<name>/__init__.py``), and the registry (``flipbook/modes/__init__.py``)
is the one place that lists the modes.

The scan reads the source (AST, no imports) and counts string constants equal to a registered mode's name
where they pick behaviour: compared with a mode (``mode == "svd"``, ``spec.animation.mode in (...)``), used as
a key or subscript of something about modes (``MODE_RULES["svd"]``), listed with another mode name (a tuple,
dict or ``Literal`` of modes: a second registry), given as a mode (``{"mode": "2d"}``, ``mode="3d"``) or as
the default of something named mode. The same word used for something else (the input-file kind ``video``,
``post.interpolate``, a video stream's type) is not a mode and is left alone.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from flipbook.modes import MODES

PACKAGE = Path(__file__).parents[1] / "flipbook"
MODES_FOLDER = PACKAGE / "modes"
NAMES = frozenset(MODES)


def _strings(node: ast.AST | None) -> list[ast.Constant]:
    """The string constants of ``node`` itself or, for a tuple/list/set literal, of its items."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [c for item in node.elts for c in _strings(item)]
    return []


def _names_mode(node: ast.AST | None) -> bool:
    """Whether an expression is a mode: a name or attribute called ``*mode*`` (``mode``, ``a.mode``,
    ``MODE_RULES``), possibly with string methods applied (``mode.strip().casefold()``)."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        node = node.func.value
    if isinstance(node, ast.Name):
        return "mode" in node.id.lower()
    if isinstance(node, ast.Attribute):
        return "mode" in node.attr.lower()
    return False


def _target_names_mode(targets: list[ast.expr]) -> bool:
    return any(_names_mode(target) for target in targets)


def mode_names(source: str, names: frozenset[str] = NAMES) -> list[tuple[int, str]]:
    """(line, name) for every mode name that ``source`` uses to select behaviour (see the module docstring)."""
    found: set[tuple[int, str]] = set()

    def count(constants: list[ast.Constant]) -> None:
        found.update((c.lineno, c.value) for c in constants if c.value in names)

    def several(constants: list[ast.Constant]) -> bool:
        return len({c.value for c in constants if c.value in names}) >= 2

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_names_mode(operand) for operand in operands):
                count([c for operand in operands for c in _strings(operand)])
        elif isinstance(node, ast.Tuple | ast.List | ast.Set):
            if several(_strings(node)):
                count(_strings(node))
        elif isinstance(node, ast.Dict):
            keys = [c for key in node.keys for c in _strings(key)]
            if several(keys):
                count(keys)
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "mode":
                    count(_strings(value))
        elif isinstance(node, ast.Subscript):
            if _names_mode(node.value) or several(_strings(node.slice)):
                count(_strings(node.slice))
        elif isinstance(node, ast.Match) and _names_mode(node.subject):
            count([c for case in node.cases for n in ast.walk(case.pattern) for c in _strings(n)])
        elif isinstance(node, ast.keyword) and node.arg is not None and "mode" in node.arg.lower():
            count(_strings(node.value))
        elif isinstance(node, ast.arguments):
            positional = [*node.posonlyargs, *node.args]
            pairs = [*zip(positional[len(positional) - len(node.defaults) :], node.defaults, strict=True),
                     *zip(node.kwonlyargs, node.kw_defaults, strict=True)]  # fmt: skip
            count([c for arg, default in pairs if "mode" in arg.arg.lower() for c in _strings(default)])
        elif isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if _target_names_mode(targets):
                value = node.value
                if isinstance(value, ast.Call) and value.args:  # Field("travel", ...)
                    value = value.args[0]
                count(_strings(value))
                if isinstance(node.value, ast.Dict):  # MODE_FIELDS = {"svd": ...}
                    count([c for key in node.value.keys for c in _strings(key)])
    return sorted(found)


def _outside_modes() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if MODES_FOLDER not in path.parents:
            yield path


def test_no_code_outside_the_modes_selects_by_a_mode_name():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {name!r}"
        for path in _outside_modes()
        for line, name in mode_names(path.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_the_scan_reads_every_file_outside_the_modes():
    files = list(_outside_modes())
    assert len(files) > 100 and PACKAGE / "spec" / "model.py" in files
    assert not any(MODES_FOLDER in path.parents for path in files)


@pytest.mark.parametrize(
    "code",
    [
        'if spec.animation.mode == "svd": pass',
        'if a.mode in ("2d", "3d"): pass',
        'if "video" != mode: pass',
        'camera = isinstance(m, str) and m.strip().casefold() in ("2d", "3d")',
        'if mode.strip().casefold() == "video": pass',
        "RULES = {'animatediff': f, 'svd': g}",
        "MODE_RULES = {'svd': g}",
        'names = MODE_FIELDS["3d"]',
        'MODE_TABS = ("travel", "2d")',
        'x: Literal["2d", "3d"] = y',
        'data = {"animation": {"mode": "travel"}}',
        'spec = Spec(animation=AnimationSection(mode="video"))',
        'def f(mode: str = "interpolate"): pass',
        'mode: str = "travel"',
        'mode: str = Field("travel", description="x")',
        'match spec.animation.mode:\n    case "svd":\n        pass',
    ],
)
def test_the_scan_finds_every_way_of_selecting_by_a_mode_name(code):
    assert mode_names(code), code


@pytest.mark.parametrize(
    "code",
    [
        'kind: Literal["image", "video", "audio"]',  # the input-file kinds
        'if found.type != "video": pass',  # a stream's type
        'if c.color_coherence == "video": pass',  # a colour coherence setting
        'MAGIC = {"video": (), "audio": ()}',
        'data["video"] = {"every_nth": 2}',  # a section key
        'app.command("interpolate")(interpolate)',  # the frame-interpolation command
        'raise FlipbookError("video", 1, "one image per frame")',
        'post = {"interpolate": 2}',
        'resize(frame, size, mode="bilinear")',
    ],
)
def test_the_scan_leaves_other_uses_of_the_same_words(code):
    assert mode_names(code) == [], code

"""Test modules import each other by their own names (``import test_deforum_import``): pytest puts ``tests/``
on ``sys.path``, not the repository root, so ``from tests import ...`` works only where something else added
the root (``PYTHONPATH=.``, ``python -m pytest``) and fails in ``make test`` and CI."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def _imports_of_the_tests_package(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tests":
            lines.append(node.lineno)
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "tests" for a in node.names):
            lines.append(node.lineno)
    return lines


def test_no_test_module_imports_the_tests_package():
    found = {p.name: lines for p in sorted(TESTS.glob("*.py")) if (lines := _imports_of_the_tests_package(p))}
    assert found == {}

"""Test modules import each other by their own names (``import test_deforum_import``): pytest puts ``tests/``
on ``sys.path``, not the repository root, so ``from tests import ...`` works only where something else added
the root (``PYTHONPATH=.``, ``python -m pytest``) and fails in ``make test`` and CI."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def _modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return []


def _imports_of_the_tests_package(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.lineno for n in ast.walk(tree) if any(m.split(".")[0] == "tests" for m in _modules(n))]


def test_no_test_module_imports_the_tests_package():
    found = {p.name: lines for p in sorted(TESTS.glob("*.py")) if (lines := _imports_of_the_tests_package(p))}
    assert found == {}

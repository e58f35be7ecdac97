"""docs/deforum-mapping.md lists every Deforum key as the importer's table has it, so they can't drift; the table
itself names real flipbook fields and covers every key the importer reads and the files we have."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flipbook.spec import deforum
from flipbook.spec.deforum_keys import EXTENSION_DEFAULTS, KEYS, NOTEBOOK_DEFAULTS, lookup, markdown_table
from flipbook.spec.model import Spec

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "deforum-mapping.md"
CORPUS = Path(__file__).parents[2] / "shared" / "testdata" / "deforum"


def _doc_table() -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- every key: begin[^>]*-->\n(.*?)\n<!-- every key: end -->", text, re.S)
    assert match, "docs/deforum-mapping.md has no 'every key' table between its markers"
    return match.group(1)


def test_the_doc_lists_every_key_as_the_table_has_it():
    doc_rows = set(_doc_table().splitlines())
    table_rows = set(markdown_table().splitlines())
    missing, stale = sorted(table_rows - doc_rows), sorted(doc_rows - table_rows)
    assert not missing and not stale, (
        "docs/deforum-mapping.md's key table differs from flipbook/spec/deforum_keys.py; paste "
        "markdown_table() between the markers.\nmissing from the doc:\n"
        + "\n".join(missing)
        + "\nnot in the table:\n"
        + "\n".join(stale)
    )


def _fields(model: type, prefix: str = "") -> set[str]:
    """Every spec field path, ``camera.zoom``; list items as ``controlnet[i].weight``."""
    out = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        out.add(path)
        annotation = info.annotation
        inner = getattr(annotation, "__args__", ())
        for candidate in (annotation, *inner):
            if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                suffix = "[i]" if inner and candidate in inner and "list" in str(annotation) else ""
                out |= _fields(candidate, f"{path}{suffix}.")
    return out


def test_mapped_keys_name_real_spec_fields():
    fields = _fields(Spec) | {
        f"controlnet[i].{n}" for n in Spec.model_fields["controlnet"].annotation.__args__[0].model_fields
    }
    for key, entry in KEYS.items():
        if entry.status not in ("mapped", "differs"):
            continue
        named = re.findall(
            r"\b((?:animation|sampling|camera|init|video|model|controlnet\[i\])\.[a-z0-9_]+)", entry.target
        )
        for path in named:
            assert path in fields, f"{key}: {path} is no spec field"


def test_keys_the_importer_reads_and_defaults_are_in_the_table_as_read():
    read = [k for keys in (*deforum._CAMERA_SCHEDULES, *deforum._CAMERA_PLAIN) for k in keys]
    read += [*EXTENSION_DEFAULTS, *NOTEBOOK_DEFAULTS]
    for key in read:
        assert lookup(key) is not None and lookup(key).status in ("mapped", "differs"), key
    assert {entry.status for entry in KEYS.values()} == {"mapped", "differs", "ignored", "unused"}
    assert all(entry.target for entry in KEYS.values())


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared Deforum testdata not present")
def test_every_key_of_the_shared_files_is_in_the_table():
    for path in sorted(CORPUS.glob("*.txt")):
        settings = deforum.read_deforum_settings(path)
        assert [key for key in settings if lookup(key) is None] == [], path.name


def test_every_key_of_the_synthetic_files_is_in_the_table():
    import test_deforum_controlnet  # tests/ is on sys.path (pytest's prepend import mode)
    import test_deforum_import

    for settings in (test_deforum_import.MINIMAL, test_deforum_import.INIT, test_deforum_controlnet.CANNY,
                     test_deforum_controlnet.OFF):  # fmt: skip
        assert [key for key in settings if lookup(key) is None] == []
    assert json.dumps(markdown_table())  # plain text

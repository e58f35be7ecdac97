"""Where every benchmark case puts its results: ``<stem>.json`` (everything measured) and ``<stem>.md`` (the
markdown table the case prints), under the output folder."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(result: dict, out: Path, stem: str, table: str) -> str:
    """Write ``result`` as JSON and ``table`` as markdown under ``out``; return the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (out / f"{stem}.md").write_text(table + "\n", encoding="utf-8")
    return table

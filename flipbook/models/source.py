"""Where a model's weights are, found before its family is known (:func:`flipbook.models.loading.locate`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SourceKind = Literal["builtin", "folder", "single_file", "hub"]


@dataclass(frozen=True)
class ModelSource:
    """A model to load: ``kind`` and ``ref`` (the built-in name, the folder or file path, or the hub id).

    A single file is read once, to tell its family from its keys: ``checkpoint`` holds its tensors and the
    configs flipbook embeds (:func:`flipbook.models.weights.read_checkpoint`), so the family's loader builds
    from them without reading the file again. ``local_files_only`` is False only for a hub id while online.
    """

    kind: SourceKind
    ref: str
    checkpoint: tuple[dict[str, Any], dict[str, Any] | None] | None = None
    local_files_only: bool = True

    @property
    def path(self) -> Path:
        return Path(self.ref)

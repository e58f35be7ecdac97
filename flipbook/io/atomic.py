"""Atomic file writes: only a completed write ever appears under the final name."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flipbook.errors import FlipbookError

PART_SUFFIX = ".part"


@contextmanager
def atomic_target(path: Path, *, field: str = "output") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; only a completed write is moved over ``path``.

    Why: a crash, Ctrl-C or encoder error must never leave a half-written file under the final name. The temp
    file lives in the same folder so :func:`os.replace` is an atomic rename, and is fsynced first so a power
    loss cannot leave the new name pointing at missing data. A process killed mid-write (SIGKILL) leaves the
    temporary ``.NAME.XXXXXXXX.part`` file behind; :func:`is_partial` recognises it for clean-up.

    A folder that cannot be created or written in (no permission, a read-only or pseudo file system, a file
    in the way) is one FlipbookError on ``field`` naming the folder and the system's reason, not a traceback.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise unwritable_folder(field, path.parent, error) from None
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{PART_SUFFIX}")
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and _names(error, tmp, path):
            raise unwritable_folder(field, path.parent, error) from None
        raise


def unwritable_folder(field: str, folder: Path, error: OSError) -> FlipbookError:
    """The error for an output folder the system will not let flipbook write in, with the system's reason."""
    where = f": {error.filename}" if getattr(error, "filename", None) else ""
    return FlipbookError(
        field,
        str(folder),
        "a folder flipbook can create and write files in",
        detail=f"{error.strerror or error}{where}",
    )


def _names(error: OSError, *paths: Path) -> bool:
    """Whether the OS error is about one of ``paths`` (writing the output), not some other file."""
    named = {str(p) for p in (error.filename, getattr(error, "filename2", None)) if p is not None}
    return bool(named & {str(p) for p in paths})


def is_partial(path: Path) -> bool:
    """Whether ``path`` is a temporary file :func:`atomic_target` (or a writer working on one) left behind."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(PART_SUFFIX)

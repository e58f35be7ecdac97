"""Atomic file writes: only a completed write ever appears under the final name."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PART_SUFFIX = ".part"


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; only a completed write is moved over ``path``.

    Why: a crash, Ctrl-C or encoder error must never leave a half-written file under the final name. The temp
    file lives in the same folder so :func:`os.replace` is an atomic rename, and is fsynced first so a power
    loss cannot leave the new name pointing at missing data. A process killed mid-write (SIGKILL) leaves the
    temporary ``.NAME.XXXXXXXX.part`` file behind; :func:`is_partial` recognises it for clean-up.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{PART_SUFFIX}")
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_partial(path: Path) -> bool:
    """Whether ``path`` is a temporary file :func:`atomic_target` (or a writer working on one) left behind."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(PART_SUFFIX)

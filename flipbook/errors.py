"""The one error type users see.

Every problem caused by input (a spec field, a CLI flag, a file) is raised as :class:`FlipbookError` with the
field, the offending value and what is allowed. The CLI prints ``str(error)`` as one line and exits with 2.
"""

from __future__ import annotations


class FlipbookError(Exception):
    """A problem with the user's input, reported as one clear line."""

    def __init__(
        self,
        field: str,
        value: object,
        allowed: str,
        *,
        detail: str | None = None,
        message: str | None = None,
    ):
        self.field = field
        self.value = value
        self.allowed = allowed
        self.detail = detail
        if message is None:
            message = f"{field}: {value!r} is not valid; {allowed}"
            if detail:
                message += f" ({detail})"
        super().__init__(message)


class SpecError(FlipbookError):
    """A problem in a spec (or a Deforum settings file): ``field`` is the path in the spec (``camera.zoom``),
    ``value`` the offending text, ``allowed`` what is accepted; schedule and expression errors put a caret
    under the character where parsing failed. A spec with several problems raises one SpecError listing all."""

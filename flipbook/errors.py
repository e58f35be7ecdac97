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


class LibraryError(RuntimeError):
    """A library flipbook builds on (diffusers, PEFT, transformers, torch) failed in a way that says nothing
    about the user's input: a version incompatibility, an API that changed. The message names the library
    versions in use, so the user fixes the install instead of their files. The CLI prints it as one line and
    exits with 1."""

    def __init__(self, what: str, error: BaseException, packages: tuple[str, ...]):
        from importlib.metadata import PackageNotFoundError, version

        def installed(name: str) -> str:
            try:
                return f"{name} {version(name)}"
            except PackageNotFoundError:
                return f"{name} (not installed)"

        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        versions = ", ".join(installed(name) for name in packages)
        super().__init__(
            f"{what} failed inside the libraries flipbook uses ({type(error).__name__}: {first}); this is not a "
            f"known problem of the input, so check the install (installed: {versions}; `make install` installs "
            "the tested versions from the lock)"
        )


class NumericError(RuntimeError):
    """A model produced values that are not numbers (NaN) or infinite, so the frame would be black or garbage.
    Said once, with what to try, instead of writing black frames (A1111 checks the same). Frames rendered
    before it stay on disk. The CLI prints it as one line and exits with 1."""

    def __init__(self, stage: str, bad: int, total: int):
        self.stage = stage
        super().__init__(
            f"{stage} produced NaN or infinite values in {bad} of {total} images; nothing was written for them. "
            "In half precision this is usually the VAE overflowing: use model.dtype = 'float32', or a VAE made "
            "for half precision (model.vae); with very strong prompt weights, lower them"
        )


def first_line(error: BaseException, *, with_type: bool = False) -> str:
    """The first line of ``error``'s message (at most 200 characters), for a one-line detail; the exception's
    type name where the message is empty. ``with_type`` puts the type name in front ("KeyError: 'x'")."""
    text = str(error).strip().splitlines()
    if not text:
        return type(error).__name__
    return f"{type(error).__name__}: {text[0][:200]}" if with_type else text[0][:200]

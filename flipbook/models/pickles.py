"""PyTorch pickle files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``, ``.pkl``) read without running pickled code.

Every such file flipbook opens itself goes through :func:`load_torch_file`: ``torch.load(weights_only=True)``,
which rebuilds tensors and plain containers only and refuses any other class or function the pickle names.
What can go wrong is said in one of two ways, whichever loader asked (checkpoint, VAE, ControlNet, motion
module, LoRA, embedding, upscaler, RIFE):

* the pickle needs code or objects flipbook will not run (a training config, a callback, a function): refused,
  with a ``.safetensors`` version as the way out. PyTorch's own message suggests ``weights_only=False``, which
  would run that code; it is never passed on.
* the file is damaged (truncated, not a pickle at all): "truncated or corrupt".

Folders that diffusers or transformers load read their ``.bin`` files the same way; :func:`refused_pickle`
finds torch's refusal inside the library's error, so those say the same.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REFUSED = "a pickle with code or objects flipbook will not run"
USE_SAFETENSORS = "use a .safetensors version"
# torch wraps every weights-only refusal in an UnpicklingError whose message starts so; a damaged pickle raises
# UnpicklingError (or EOFError, RuntimeError...) without it
_WEIGHTS_ONLY = "Weights only load failed"
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)", re.IGNORECASE)
_OPERAND = re.compile(r"Unsupported operand (\d+)")
_TORCHSCRIPT = "TorchScript archives"  # torch.load's RuntimeError for a TorchScript file under weights_only
# What a well-known refused object means, by the module it comes from
_HINTS = {
    "omegaconf": "early AnimateDiff downloads store their training config as an OmegaConf object; the current "
    "guoyww/animatediff files hold only tensors: download it again",
    "pytorch_lightning": "a training checkpoint that also holds PyTorch Lightning objects",
    "lightning": "a training checkpoint that also holds Lightning objects",
}
DETAIL_CHARS = 160


def load_torch_file(path: str | Path, fail: Callable[[str], Exception]) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU. A refused pickle or a damaged file raises
    ``fail(detail)`` (the caller's FlipbookError, naming its field) with the wording above, never torch's."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except (
        Exception
    ) as error:  # damage shows as RuntimeError, EOFError, ValueError, KeyError, UnpicklingError
        refusal = refused_pickle(error, Path(path))
        if refusal is not None:
            raise fail(refusal) from None
        raise fail(damaged(Path(path), error)) from None


def refused_pickle(error: BaseException, path: Path | None = None) -> str | None:
    """The refusal's wording when ``error`` is torch's weights-only refusal or was raised from one (diffusers
    and transformers wrap it), else None. torch also "refuses" bytes that are no pickle at all (an unsupported
    instruction); given the file's ``path``, those count as damage unless the file starts like a pickle."""
    for cause in _chain(error):
        if isinstance(cause, pickle.UnpicklingError) and _WEIGHTS_ONLY in str(cause):
            if path is not None and _OPERAND.search(str(cause)) and not _starts_like_pickle(path):
                return None
            return refusal_detail(str(cause))
        if isinstance(cause, RuntimeError) and _TORCHSCRIPT in str(cause):
            return f"a TorchScript archive: code flipbook will not run, not a weights file; {USE_SAFETENSORS}"
    return None


def refusal_detail(message: str) -> str:
    """'a pickle with code or objects flipbook will not run (it needs argparse.Namespace); use a .safetensors
    version', from torch's refusal message (what it names: a class or function, or a pickle instruction)."""
    found, operand = _GLOBAL.search(message), _OPERAND.search(message)
    if found:
        needs = found[1]
    elif operand:
        needs = f"pickle instruction {operand[1]}, which only a full unpickler runs"
    else:
        needs = "Python objects beyond tensors"
    hint = next((text for module, text in _HINTS.items() if needs.split(".")[0] == module), None)
    return f"{REFUSED} (it needs {needs}{'; ' + hint if hint else ''}); {USE_SAFETENSORS}"


def damaged(path: Path, error: BaseException) -> str:
    """'truncated or corrupt .ckpt file (RuntimeError: ...)': a file torch could not read at all."""
    text = str(error).strip().splitlines()
    first = f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
    suffix = path.suffix.lower() or "weights"
    return f"truncated or corrupt {suffix} file ({first[:DETAIL_CHARS]})"


def _starts_like_pickle(path: Path) -> bool:
    """A pickle of protocol 2 or later (PROTO, 0x80), or the zip archive torch.save writes around one."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
    except OSError:
        return False
    return head[:1] == b"\x80" or head == b"PK"


def _chain(error: BaseException) -> list[BaseException]:
    """The error and what it was raised from or during."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain

"""The one place that decides device and dtype."""

from __future__ import annotations

import torch

from flipbook.errors import FlipbookError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise FlipbookError("device", name, f"one of: {', '.join(DEVICES)} (cuda:N for a given GPU)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise FlipbookError("device", name, "a device this machine has", detail="CUDA is not available")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise FlipbookError("device", name, "a device this machine has", detail="MPS is not available")
    return torch.device(name)


def pick_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """fp16 on CUDA/MPS and fp32 on the CPU unless asked otherwise."""
    if name is None or name == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if name not in DTYPES:
        raise FlipbookError("dtype", name, f"one of: auto, {', '.join(DTYPES)}")
    if DTYPES[name] == torch.float16 and device.type == "cpu":
        raise FlipbookError(
            "dtype", name, "fp32 or bf16 on the CPU", detail="fp16 is not supported on the CPU"
        )
    return DTYPES[name]

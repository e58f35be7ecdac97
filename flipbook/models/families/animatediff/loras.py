"""Motion LoRAs and the v3 domain adapter, fused into the weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from diffusers import MotionAdapter

from flipbook.errors import FlipbookError
from flipbook.models.families.animatediff.files import LORA_SUFFIXES, read_weights
from flipbook.models.families.animatediff.loading import _as_models_dir
from flipbook.models.families.animatediff.lora_layout import LoraDelta, _target, lora_deltas
from flipbook.models.folders import ModelsDir

ALLOWED_MOTION_LORAS = (
    "an AnimateDiff motion LoRA (v2_lora_ZoomIn.ckpt ...; original, diffusers, PEFT or kohya layout) as a "
    "path or a name in model.models_dir, matching the motion module"
)
ALLOWED_ADAPTER_LORA = (
    "the AnimateDiff v3 domain adapter (v3_sd15_adapter.ckpt, or a .safetensors conversion of it; original, "
    "diffusers, PEFT or kohya layout) as a path or a LoRA name in model.models_dir"
)


def _apply(model: torch.nn.Module, deltas: Sequence[tuple[LoraDelta, float]]) -> None:
    weights = _target(model).weights
    with torch.no_grad():
        for delta, weight in deltas:
            target = weights[delta.module]
            target += (delta.delta(target.shape) * weight).to(target.device, target.dtype)


def _resolve_file(
    ref: str | Path,
    kinds: Sequence[str],
    models_dir: ModelsDir | str | Path | None,
    *,
    field: str,
    allowed: str,
) -> Path:
    """A LoRA file: an existing path (a folder holding one weights file counts), or a name in the models folder."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        files = [p for p in sorted(path.iterdir()) if p.is_file() and p.suffix.lower() in LORA_SUFFIXES]
        if len(files) == 1:
            return files[0]
        raise FlipbookError(
            field, str(ref), allowed, detail=f"the folder holds {len(files)} weights files, not one"
        )
    folders = _as_models_dir(models_dir)
    if folders is None or path.is_absolute():
        raise FlipbookError(
            field, str(ref), allowed, detail="no such file; set model.models_dir to find it by name"
        )
    first: FlipbookError | None = None  # the main kind's error lists what the user most likely meant
    for kind in kinds:
        try:
            return folders.find(kind, str(ref))
        except FlipbookError as error:
            if "ambiguous" in (error.detail or ""):
                raise FlipbookError(field, str(ref), error.allowed, detail=error.detail) from None
            first = first or error
    assert first is not None
    raise FlipbookError(field, str(ref), first.allowed, detail=first.detail) from None


def _read_lora(
    ref: str | Path,
    model: torch.nn.Module,
    *,
    kinds: Sequence[str],
    models_dir: ModelsDir | str | Path | None,
    field: str,
    allowed: str,
    accept: Callable[[str], str | None],
) -> list[LoraDelta]:
    """The LoRA file ``ref`` names (a path, or a name of one of ``kinds`` in the models folder), read and
    checked against ``model``'s weights; nothing changes yet."""
    path = _resolve_file(ref, kinds, models_dir, field=field, allowed=allowed)
    weights = read_weights(path, field=field, value=str(ref), allowed=allowed)
    return lora_deltas(weights.state, model, field=field, value=str(ref), allowed=allowed, accept=accept)


def _refuse_image_layers(module: str) -> str | None:
    return None if ".motion_modules." in module else "maps to an image layer, not a motion module"


def merge_motion_loras(
    adapter: MotionAdapter,
    loras: Sequence[tuple[str | Path, float]],
    *,
    models_dir: ModelsDir | str | Path | None = None,
    field: str = "animatediff.motion_loras",
) -> None:
    """Fuse motion LoRAs into ``adapter``'s weights in place: ``W += weight * scale * up @ down`` per layer.

    Files are paths or names in the models folder (ComfyUI ``models/animatediff_motion_lora``, AnimateDiff-
    Evolved's ``motion_lora``; A1111 keeps them with the other LoRAs in ``models/Lora``). Every file is read
    and checked before any weight changes, so a bad file leaves the adapter as it was. The error's field is
    ``field[i]`` for the i-th entry.
    """
    planned: list[tuple[LoraDelta, float]] = []
    for index, (ref, weight) in enumerate(loras):
        deltas = _read_lora(
            ref,
            adapter,
            kinds=("motion_lora", "lora"),
            models_dir=models_dir,
            field=f"{field}[{index}]",
            allowed=ALLOWED_MOTION_LORAS,
            accept=_refuse_image_layers,
        )
        planned.extend((delta, float(weight)) for delta in deltas)
    _apply(adapter, planned)


def _refuse_motion_layers(module: str) -> str | None:
    if ".motion_modules." in module:
        return "maps to a motion module: this is a motion LoRA; give it in animatediff.motion_loras"
    return None


def merge_adapter_lora(
    unet: torch.nn.Module,
    ref: str | Path,
    weight: float,
    *,
    models_dir: ModelsDir | str | Path | None = None,
    field: str = "animatediff.adapter_lora",
) -> None:
    """Fuse the v3 domain adapter into the image layers of ``unet`` in place (``W += weight * up @ down``).

    ``unet`` is a diffusers ``UNetMotionModel`` or ``UNet2DConditionModel`` (the image layers have the same
    names). ``ref`` is a path or a LoRA name in the models folder (A1111 ``models/Lora``, ComfyUI
    ``models/loras``). The file is checked completely before anything changes.
    """
    deltas = _read_lora(
        ref,
        unet,
        kinds=("lora", "motion_lora"),
        models_dir=models_dir,
        field=field,
        allowed=ALLOWED_ADAPTER_LORA,
        accept=_refuse_motion_layers,
    )
    _apply(unet, [(delta, float(weight)) for delta in deltas])

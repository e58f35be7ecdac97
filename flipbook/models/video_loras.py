"""LoRAs of video diffusion transformers (Wan, LTX-Video), as ``<lora:name:w>`` tags and ``model.loras``.

A family's LoRA is read by diffusers' own loader for its pipeline (``WanPipeline.lora_state_dict``,
``LTXPipeline.lora_state_dict``), whose converters take the layouts people have: diffusers/PEFT keys, ComfyUI's
and kohya's ``diffusion_model.*`` keys with ``lora_down``/``lora_up``/``alpha`` or ``lora_A``/``lora_B`` (Wan's
original layer names), musubi-tuner's ``lora_unet_*``; the step-distillation LoRAs (Wan CausVid, lightx2v's
Lightning) are such files. Before any model loads, :func:`check_loras` reads each file the spec names and asks
the family (its ``lora_problem`` hook, :func:`lora_problem` with the family's pipeline and transformer) whether
every layer it targets is one of the family's transformer layers (block numbers aside: sizes differ from model
to model, shapes are checked when it loads), so a LoRA of another family is one error naming it. A loaded
model switches LoRAs per segment through :class:`VideoLoraSet` (:func:`lora_set`), with the transformer(s)
taking A1111's UNet weight; Wan 2.2 A14B's LoRAs go into the expert ``videomodel.lora_experts`` names for them
(:data:`EXPERTS`: the high-noise one by default, the low-noise one, or both).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flipbook.errors import FlipbookError
from flipbook.models.families.family import Family
from flipbook.models.lora import LoraSet

_BLOCK = re.compile(r"\.\d+\.")
_PREFIX = "transformer."


def allowed(title: str) -> str:
    """What a fitting LoRA is, in the errors."""
    return (
        f"a LoRA trained for {title} (diffusers, ComfyUI/kohya or musubi-tuner layout; .safetensors, or "
        ".pt/.ckpt read without running code)"
    )


EXPERTS: dict[str, tuple[str, ...]] = {
    "high_noise": ("transformer",),
    "low_noise": ("transformer_2",),
    "both": ("transformer", "transformer_2"),
}
"""``videomodel.lora_experts``' values: the transformers of Wan 2.2 A14B a LoRA is loaded into (the high-noise
expert is the pipeline's ``transformer``, the low-noise one, used below the boundary, its ``transformer_2``)."""


def lora_set(pipe: Any, title: str):
    """The LoRA switcher for a family's diffusers pipeline (its transformer(s) take the UNet weight): a
    :class:`VideoLoraSet`."""
    return VideoLoraSet(pipe, denoiser=tuple(EXPERTS["both"]), allowed=allowed(title))


class VideoLoraSet(LoraSet):
    """:class:`~flipbook.models.lora.LoraSet` for video diffusion transformers: each LoRA goes into the
    experts ``load`` was told for it (by file stem; the high-noise one, the pipeline's ``transformer``, unless
    told), through diffusers' own ``load_lora_weights`` (``load_into_transformer_2`` for Wan 2.2's low-noise
    expert; the same adapter name in both for ``both``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._experts: dict[str, str] = {}

    def load(self, paths: Iterable[Path | str], experts: dict[str, str] | None = None) -> None:
        """Load these files now (see :meth:`LoraSet.load`); ``experts``: file stem -> a key of
        :data:`EXPERTS`, for the files that go elsewhere than the high-noise expert."""
        self._experts = dict(experts or {})
        super().load(paths)

    def _load_file(self, file: Path, name: str) -> None:
        for component in EXPERTS[self._experts.get(file.stem, "high_noise")]:
            into_second = {"load_into_transformer_2": True} if component == "transformer_2" else {}
            self.pipe.load_lora_weights(
                str(file.parent),
                weight_name=file.name,
                adapter_name=name,
                local_files_only=True,
                **into_second,
            )


def check_loras(family: Family, paths: Iterable[Path]) -> None:
    """Every LoRA file in ``paths`` fits ``family`` (see the module docstring); else one FlipbookError naming
    the LoRA, before any model loads."""
    for path in sorted(set(paths)):
        if family.lora_problem is None:
            problem = f"{family.title} models take no LoRAs in flipbook"
        else:
            problem = family.lora_problem(path)
        if problem is not None:
            raise FlipbookError("lora", Path(path).stem, allowed(family.title), detail=problem)


def lora_problem(path: Path, pipeline_class: Any, layers: Callable[[], Iterable[str]]) -> str | None:
    """Why the LoRA file ``path`` does not fit the family whose diffusers pipeline is ``pipeline_class`` and
    whose transformer has the module names ``layers()`` (None: it fits). The file is converted by the
    pipeline's own ``lora_state_dict``; a layout it does not read, or a layer the transformer has not, is a
    problem."""
    state = _read(path)
    if isinstance(state, str):
        return state
    try:
        converted = pipeline_class.lora_state_dict(dict(state))
    except Exception as error:  # diffusers' converters raise many types on keys that are not theirs
        text = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        return f"its keys are not in a layout this family's LoRA loader reads ({text})"
    targets = {
        _BLOCK.sub(".0.", key.removeprefix(_PREFIX).split(".lora_")[0])
        for key in converted
        if key.startswith(_PREFIX) and ".lora_" in key
    }
    if not targets:
        return "none of its layers are this family's transformer layers (its keys are another model's)"
    known = {_BLOCK.sub(".0.", name) for name in layers()}
    foreign = sorted(targets - known)
    if foreign:
        return f"{len(foreign)} of its layers are not this family's transformer layers (e.g. {foreign[0]!r})"
    return None


def _read(path: Path) -> dict[str, Any] | str:
    """The file's tensors (safetensors, or torch.load with weights_only), or why it can't be read."""
    import safetensors
    import safetensors.torch

    from flipbook.models.pickles import load_torch_file

    file = Path(path)
    if not file.is_file():
        return f"no such file: {file}"
    try:
        if file.suffix.lower() == ".safetensors":
            return safetensors.torch.load_file(str(file), device="cpu")
        data = load_torch_file(file, ValueError)
    except (OSError, ValueError, safetensors.SafetensorError) as error:
        return str(error) or "truncated or corrupt file, or not a weights file"
    if not isinstance(data, dict) or not data:
        return "not a LoRA file: it holds no named tensors"
    return data

"""LoRAs and textual-inversion embeddings on a diffusers Stable Diffusion pipeline, A1111-style.

LoRAs go through diffusers' PEFT integration, which reads both diffusers/PEFT files and the kohya-ss files
that A1111 and ComfyUI users have (``lora_unet_*`` / ``lora_te_*`` keys with ``lora_down`` / ``lora_up`` /
``alpha``). :class:`LoraSet` loads each file once and switches between sets of LoRAs by changing adapter weights,
so an animation whose LoRA weights change per frame does not reload anything.

Embeddings follow A1111: an embedding is used when its name appears as a word in a prompt. Files are read here,
with safetensors or ``torch.load(weights_only=True)``, never by unpickling arbitrary objects, and checked before
the tokenizer and text encoder are touched, so a bad file leaves the pipeline as it was.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from diffusers import DiffusionPipeline

from flipbook.errors import FlipbookError, LibraryError
from flipbook.models.pickles import load_torch_file, refused_pickle

log = logging.getLogger(__name__)

LORA_ALLOWED = "a LoRA trained for this model family (SD 1.x / SD 2.x / SDXL)"
LIBRARIES = ("diffusers", "peft", "transformers", "torch")
_NO_MATCH = "none of its layers match this model"
LoraEntry = tuple[Path | str, float] | tuple[Path | str, float, float | None]
"""(file, weight) or (file, weight, text-encoder weight); A1111's ``<lora:name:unet=..:te=..>`` split."""


class LoraSet:
    """The LoRAs loaded into one pipeline, and which of them are active with which weights.

    ``denoiser`` is the pipeline's component that takes A1111's UNet weight (``unet``; ``transformer`` for
    video diffusion transformers; several, such as Wan 2.2's two experts, as a tuple), ``allowed`` what the
    errors say a fitting LoRA is."""

    def __init__(
        self,
        pipe: DiffusionPipeline,
        *,
        denoiser: str | tuple[str, ...] = "unet",
        allowed: str = LORA_ALLOWED,
    ):
        self.pipe = pipe
        self.denoiser = denoiser
        self.allowed = allowed
        self._names: dict[Path, str] = {}  # resolved file -> adapter name
        self._active: tuple[tuple[str, float, float], ...] = ()

    @property
    def loaded(self) -> dict[Path, str]:
        """Files loaded so far and their adapter names (a file stays loaded when it is deactivated)."""
        return dict(self._names)

    @property
    def active(self) -> dict[str, tuple[float, float]]:
        """Active adapter name -> (UNet weight, text-encoder weight)."""
        return {name: (unet, te) for name, unet, te in self._active}

    def activate(self, loras: Sequence[LoraEntry]) -> None:
        """Make exactly these LoRAs active with these weights; an empty list gives the plain model back.

        Weights of a file listed twice add up, as A1111 applies it twice. Nothing is loaded or switched when the
        requested set is already the active one.
        """
        wanted: dict[str, list[float]] = {}
        for entry in loras:
            path, unet_weight, te_weight = _unpack(entry)
            name = self._ensure_loaded(path)
            totals = wanted.setdefault(name, [0.0, 0.0])
            totals[0] += unet_weight
            totals[1] += unet_weight if te_weight is None else te_weight
        target = tuple((name, unet, te) for name, (unet, te) in wanted.items())
        if target == self._active:
            return
        self._apply(target)
        self._active = target

    def load(self, paths: Iterable[Path | str]) -> None:
        """Load these files as adapters now, inactive until :meth:`activate` names them: before hooks that move
        a model's layers between devices see the model (diffusers' group offload moves only the layers it was
        applied to, so a LoRA loaded after it would stay behind)."""
        for path in paths:
            self._ensure_loaded(path)
        self._apply(self._active)

    def clear(self) -> None:
        """Unload every LoRA, freeing their memory and restoring the plain model."""
        if self._names:
            self.pipe.unload_lora_weights()
        self._names.clear()
        self._active = ()

    def _present(self) -> set[str]:
        return {name for names in self.pipe.get_list_adapters().values() for name in names}

    def _apply(self, target: tuple[tuple[str, float, float], ...]) -> None:
        if not target:
            if self._present():
                self.pipe.disable_lora()
            return
        parts = self.pipe.get_list_adapters()
        names = [name for name, _, _ in target]
        weights = [_weights_for(name, unet, te, parts, self.denoiser) for name, unet, te in target]
        self.pipe.enable_lora()
        self.pipe.set_adapters(names, adapter_weights=weights)

    def _ensure_loaded(self, path: Path | str) -> str:
        """Load ``path`` as an adapter unless it already is; on any failure leave the pipeline as it was."""
        file = Path(path).expanduser()
        label = file.stem
        if not file.is_file():
            raise FlipbookError("lora", label, self.allowed, detail=f"no such file: {file}")
        key = file.resolve()
        if key in self._names:
            return self._names[key]
        name = _adapter_name(key, set(self._names.values()) | self._present())
        try:
            self._load_file(key, name)
            if name not in self._present():
                raise ValueError(_NO_MATCH)
        except Exception as error:  # diffusers/peft raise many types; most mean "this file does not fit"
            self._discard(name)
            reason = _file_reason(error)
            if reason is None:
                raise LibraryError(f"loading the LoRA {label!r}", error, LIBRARIES) from error
            raise FlipbookError("lora", label, self.allowed, detail=reason) from error
        self._names[key] = name
        return name

    def _load_file(self, file: Path, name: str) -> None:
        """Load one file into the pipeline as the adapter ``name`` (subclasses choose where it goes)."""
        self.pipe.load_lora_weights(
            str(file.parent), weight_name=file.name, adapter_name=name, local_files_only=True
        )

    def _discard(self, name: str) -> None:
        """Remove a half-loaded adapter and put the previous adapter state back."""
        if name in self._present():
            try:
                self.pipe.delete_adapters([name])
            except (
                Exception
            ):  # pragma: no cover - best effort; the re-apply below restores the weights in use
                log.warning("could not delete the failed LoRA adapter %s", name, exc_info=True)
        self._apply(self._active)


def _unpack(entry: LoraEntry) -> tuple[Path | str, float, float | None]:
    if len(entry) == 2:
        path, weight = entry  # type: ignore[misc]
        return path, float(weight), None
    path, weight, te_weight = entry  # type: ignore[misc]
    return path, float(weight), None if te_weight is None else float(te_weight)


def _weights_for(
    name: str,
    unet: float,
    te: float,
    parts: Mapping[str, list[str]],
    denoiser: str | tuple[str, ...] = "unet",
) -> float | dict[str, float]:
    """One weight, or a per-component dict when the text encoder gets its own weight and the LoRA has one
    (``denoiser``: the component or components that take the UNet weight)."""
    denoisers = (denoiser,) if isinstance(denoiser, str) else denoiser
    te_parts = [part for part, names in parts.items() if part not in denoisers and name in names]
    if te == unet or not te_parts:
        return unet
    return {**dict.fromkeys(denoisers, unet), **dict.fromkeys(te_parts, te)}


def _adapter_name(path: Path, taken: set[str]) -> str:
    """A stable adapter name from the file name; PEFT needs a plain identifier (no dots)."""
    name = re.sub(r"\W", "_", path.stem) or "lora"
    if name[0].isdigit() or hasattr(torch.nn.ModuleDict, name):
        name = f"lora_{name}"
    if name in taken:
        name = f"{name}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    return name


def _short_reason(error: Exception) -> str:
    """One short line for the user out of diffusers' and PEFT's (sometimes pages long) messages."""
    reason = _file_reason(error)
    if reason is not None:
        return reason
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:160]


def _file_reason(error: Exception) -> str | None:
    """Why the file itself does not fit, when the error says so; ``None`` when the error is the libraries' own
    (a PEFT version check, a changed API), which must not be reported as a bad file."""
    text = str(error)
    if "size mismatch" in text:
        return f"its layer shapes do not match this model ({text.count('size mismatch')} layers differ)"
    if "Invalid LoRA checkpoint" in text:
        return "not a LoRA file: its weights are not LoRA layers"
    if "hada_" in text or "lokr_" in text:
        return "LyCORIS LoHa/LoKr layers, which diffusers cannot load"
    if "not been correctly renamed" in text:
        return "some of its layers are in a format diffusers cannot convert"
    if (refusal := refused_pickle(error)) is not None:
        return refusal
    if isinstance(error, (OSError, EOFError, safetensors.SafetensorError)):
        return "truncated or corrupt file, or not a weights file"
    if _NO_MATCH in text or "not found in the base model" in text:
        return "none of its layers match this model"
    return None


# --- textual inversion -----------------------------------------------------------------------------------------

_REGISTRY_ATTR = "_flipbook_embeddings"


def embedding_word(name: str) -> str:
    """The word that triggers an embedding: the file's stem, without any subfolder ("neg/bad" -> "bad")."""
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def embeddings_used(texts: Iterable[str | None], names: Iterable[str]) -> list[str]:
    """Names whose word appears as a whole word in any of ``texts``, case-insensitively as CLIP lowercases."""
    joined = "\n".join(text for text in texts if text)
    used = []
    for name in names:
        pattern = rf"(?<!\w){re.escape(embedding_word(name))}(?!\w)"
        if re.search(pattern, joined, flags=re.IGNORECASE):
            used.append(name)
    return used


def load_embeddings(
    pipe: DiffusionPipeline, texts: Iterable[str | None], embeddings: Mapping[str, Path]
) -> list[str]:
    """Load the embeddings whose names appear in ``texts`` (each once per pipeline); return the names used.

    The returned names are every embedding the texts use, whether loaded now or by an earlier call, so the
    caller can record them with the run.
    """
    used = embeddings_used(texts, embeddings)
    registry: dict[str, Path] = pipe.__dict__.setdefault(_REGISTRY_ATTR, {})
    for name in used:
        path = Path(embeddings[name]).expanduser().resolve()
        token = embedding_word(name).lower()
        if registry.get(token) == path:
            continue
        vectors = _checked_vectors(pipe, name, path)
        if token in registry:
            _unload_token(pipe, token)
            del registry[token]
        _check_token_free(pipe, name, token)
        try:
            for (_, tokenizer, text_encoder), part in zip(_text_encoders(pipe), vectors, strict=True):
                pipe.load_textual_inversion(part, token=token, tokenizer=tokenizer, text_encoder=text_encoder)
        except Exception as error:
            _unload_token(pipe, token)
            raise _embedding_error(pipe, name, _short_reason(error)) from error
        registry[token] = path
        _install_case_insensitive_expansion(pipe)
    return used


def _text_encoders(pipe: DiffusionPipeline) -> list[tuple[str | None, Any, Any]]:
    """``(key in an embedding file, tokenizer, text encoder)`` for each text encoder of the pipeline: one
    (key None: the file's single set of vectors), or SDXL's two, whose embeddings hold ``clip_l`` and
    ``clip_g`` vectors (A1111's SDXL embedding layout)."""
    if getattr(pipe, "text_encoder_2", None) is not None and getattr(pipe, "text_encoder", None) is not None:
        return [
            ("clip_l", pipe.tokenizer, pipe.text_encoder),
            ("clip_g", pipe.tokenizer_2, pipe.text_encoder_2),
        ]
    return [(None, pipe.tokenizer, pipe.text_encoder)]


def _width(text_encoder: Any) -> int:
    return text_encoder.get_input_embeddings().weight.shape[-1]


def _embedding_error(pipe: DiffusionPipeline, name: str, detail: str) -> FlipbookError:
    encoders = _text_encoders(pipe)
    if len(encoders) == 1:
        allowed = f"a textual-inversion embedding for this model's text encoder (vectors of width {_width(encoders[0][2])})"
    else:
        widths = ", ".join(f"{key} of width {_width(te)}" for key, _, te in encoders)
        allowed = f"a textual-inversion embedding for this model's text encoders ({widths})"
    return FlipbookError("embedding", name, allowed, detail=detail)


def _read_embedding_file(path: Path, fail: Callable[[str], FlipbookError]) -> Any:
    """The file's contents without running pickled code: safetensors, or torch.load with weights_only (a
    refused pickle or a damaged file is ``fail(detail)``, see :mod:`flipbook.models.pickles`)."""
    if path.suffix.lower() == ".safetensors":
        return safetensors.torch.load_file(str(path), device="cpu")
    return load_torch_file(path, fail)


def _vectors_from(data: Any, key: str | None = None) -> torch.Tensor:
    """The embedding vectors out of the layouts in use: A1111 .pt / .safetensors, diffusers, bare tensor;
    with ``key`` (a two-encoder model) the file's ``key`` tensor (SDXL: ``clip_l`` / ``clip_g``)."""
    sdxl_layout = isinstance(data, Mapping) and ("clip_l" in data or "clip_g" in data)
    if key is not None:
        if not sdxl_layout:
            raise ValueError(
                "an embedding for a one-text-encoder model (SD 1.x/2.x), not clip_l / clip_g vectors"
            )
        if not isinstance(data.get(key), torch.Tensor):
            raise ValueError(f"it has no {key!r} vectors")
        return data[key]
    if isinstance(data, torch.Tensor):
        return data
    if not isinstance(data, Mapping):
        raise ValueError("not a textual-inversion embedding")
    if sdxl_layout:
        raise ValueError("an SDXL embedding (clip_l / clip_g)")
    if "string_to_param" in data:
        params = data["string_to_param"]
        return params["*"] if "*" in params else next(iter(params.values()))
    if "emb_params" in data:
        return data["emb_params"]
    tensors = [value for value in data.values() if isinstance(value, torch.Tensor)]
    if len(tensors) == 1:
        return tensors[0]
    raise ValueError("not a textual-inversion embedding")


def _checked_vectors(pipe: DiffusionPipeline, name: str, path: Path) -> list[torch.Tensor]:
    """Read and validate before touching the model, so a bad file changes nothing: the vectors for each of
    the pipeline's text encoders (:func:`_text_encoders`), the same number for each."""
    if not path.is_file():
        raise _embedding_error(pipe, name, f"no such file: {path}")
    try:
        data = _read_embedding_file(path, lambda d: _embedding_error(pipe, name, d))
        parts = [_vectors_from(data, key).detach().float() for key, _, _ in _text_encoders(pipe)]
    except FlipbookError:
        raise
    except ValueError as error:
        raise _embedding_error(pipe, name, str(error)) from error
    except Exception as error:
        raise _embedding_error(pipe, name, "truncated or corrupt file, or not a weights file") from error
    parts = [vectors.unsqueeze(0) if vectors.ndim == 1 else vectors for vectors in parts]
    for vectors, (key, _, text_encoder) in zip(parts, _text_encoders(pipe), strict=True):
        if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[-1] != _width(text_encoder):
            what = "its vectors" if key is None else f"its {key} vectors"
            raise _embedding_error(pipe, name, f"{what} have shape {tuple(vectors.shape)}")
    if len({vectors.shape[0] for vectors in parts}) > 1:
        raise _embedding_error(pipe, name, "its clip_l and clip_g parts have different numbers of vectors")
    return parts


def _check_token_free(pipe: DiffusionPipeline, name: str, token: str) -> None:
    """diffusers cannot add a token that already exists in a tokenizer's vocabulary."""
    for _, tokenizer, _ in _text_encoders(pipe):
        vocab = tokenizer.get_vocab()
        if token in vocab or f"{token}_1" in vocab:
            raise _embedding_error(
                pipe, name, "its name is already a token of the tokenizer; rename the file"
            )


def _unload_token(pipe: DiffusionPipeline, token: str) -> None:
    """Remove an embedding's token and its extra-vector tokens (``token_1``...) from every tokenizer that has
    it; diffusers leaves the extra ones."""
    for _, tokenizer, text_encoder in _text_encoders(pipe):
        added = tokenizer.added_tokens_encoder
        if token not in added:
            continue
        tokens = [token] + [t for t in added if re.fullmatch(rf"{re.escape(token)}_\d+", t)]
        pipe.unload_textual_inversion(tokens=tokens, tokenizer=tokenizer, text_encoder=text_encoder)


def _install_case_insensitive_expansion(pipe: DiffusionPipeline) -> None:
    """Make multi-vector expansion match prompts case-insensitively, as the tokenizer itself does.

    CLIP's tokenizer lowercases the prompt before matching added tokens, so "EasyNegative" hits the token
    "easynegative"; but diffusers expands a multi-vector token into ``token token_1 ...`` with a case-sensitive
    ``str.replace``, and would silently use only the first vector. This instance-level override fixes that.
    """
    if getattr(pipe, "_flipbook_expansion", False):
        return

    def expand(prompt: str, tokenizer: Any) -> str:
        added = tokenizer.added_tokens_encoder
        for token in set(tokenizer.tokenize(prompt)):
            if token not in added or f"{token}_1" not in added:
                continue
            extra, index = [], 1
            while f"{token}_{index}" in added:
                extra.append(f"{token}_{index}")
                index += 1
            replacement = " ".join([token, *extra])
            prompt = re.sub(re.escape(token), lambda _, text=replacement: text, prompt, flags=re.IGNORECASE)
        return prompt

    pipe.__dict__["_maybe_convert_prompt"] = expand
    pipe.__dict__["_flipbook_expansion"] = True

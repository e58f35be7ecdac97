"""A1111 extra networks in prompts: ``<lora:name:weight>`` tags and textual-inversion embedding names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from flipbook.errors import FlipbookError
from flipbook.models.folders import ModelsDir
from flipbook.prompting.grammar import extract_loras


class ExtraNetworks:
    """Turns prompts with LoRA tags into clean prompts plus resolved LoRA files and weights.

    LoRAs named in the spec apply to every prompt; tags in a prompt add to them (a tag for the same file
    replaces the spec's weight). Names are files, or names in the models folder's LoRA directory.
    """

    def __init__(self, folders: ModelsDir | None, loras: Sequence[tuple[str, float]] = ()) -> None:
        self.folders = folders
        self.base = {self.lora_path(name): (float(weight), None) for name, weight in loras}

    def lora_path(self, name: str) -> Path:
        path = Path(name).expanduser()
        if path.suffix.lower() in (".safetensors", ".pt", ".ckpt", ".bin") and path.is_file():
            return path.resolve()
        if self.folders is None:
            raise FlipbookError("lora", name, "a LoRA file path, or a LoRA name together with --models-dir")
        return self.folders.find("lora", name).resolve()

    def resolve(self, prompt: str) -> tuple[str, tuple[tuple[Path, float, float | None], ...]]:
        """``(prompt without tags, ((lora file, unet weight, text-encoder weight or None), ...))``, sorted.

        ``<lora:name:0.8:0.5>`` sets the text encoder to 0.8 and the UNet to 0.5, as A1111 reads it.
        """
        text, tags = extract_loras(prompt)
        loras = dict(self.base)
        for tag in tags:
            loras[self.lora_path(tag.name)] = (float(tag.weight), tag.te_weight)
        return text, tuple((path, unet, te) for path, (unet, te) in sorted(loras.items()))

    def embeddings(self) -> dict[str, Path]:
        """Textual-inversion embeddings available by name (none without a models folder)."""
        if self.folders is None:
            return {}
        try:
            found = self.folders.list("embedding")
        except FlipbookError:
            return {}
        return {Path(name).name: path for name, path in found.items()}

    def load_embeddings_for(self, pipe, texts: Iterable[str]) -> list[str]:
        from flipbook.models.lora import load_embeddings

        available = self.embeddings()
        return load_embeddings(pipe, list(texts), available) if available else []

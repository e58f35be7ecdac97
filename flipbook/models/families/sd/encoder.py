"""The prompt encoder Stable Diffusion 1.x/2.x models give the sampling loops: their one CLIP text encoder,
read the way A1111 reads prompts (attention weights, 75-token chunks, clip skip; see
:class:`~flipbook.sampling.encode.PromptEncoder`), with textual-inversion tokens expanded first."""

from __future__ import annotations

from flipbook.models.bundle import ModelBundle
from flipbook.sampling.encode import PromptEncoder


def prompt_encoder(bundle: ModelBundle, clip_skip: int) -> PromptEncoder:
    """A new encoder (with its own cache) over the bundle's tokenizer and text encoder."""
    pipe = bundle.pipe

    def convert(text: str) -> str:
        return pipe.maybe_convert_prompt(text, pipe.tokenizer)

    return PromptEncoder(pipe.tokenizer, pipe.text_encoder, clip_skip=clip_skip, convert_prompt=convert)

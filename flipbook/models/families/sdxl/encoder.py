"""SDXL's prompt encoder, as A1111 encodes prompts for SDXL.

Both text encoders read the prompt the way :class:`~flipbook.sampling.encode.PromptEncoder` reads it for SD
1.x (attention weights, 75-token chunks, ``BREAK``), each from its penultimate layer without the final layer
norm (SDXL's and A1111's default; ``clip_skip`` counts from there, as in diffusers: 2 reads the layer before),
and their hidden states are put side by side (768 + 1280 wide for SDXL). The UNet also gets the second
encoder's pooled (projected) output of the first chunk (``text_embeds``) and the six size numbers
``time_ids``: original size, crop top-left and target size, which A1111 sets to (height, width), (0, 0) and
(height, width) of the image rendered (:meth:`SdxlPromptEncoder.at_size`).

An empty negative prompt gives zeros, hidden states and pooled output alike, as A1111 does for SDXL (and
diffusers' ``force_zeros_for_empty_prompt`` when no negative prompt is given); any other negative prompt, and
an empty positive one, is encoded. Prompt interpolation and composable prompts mix the pooled outputs as they
mix the hidden states.
"""

from __future__ import annotations

import torch

from flipbook.models.bundle import ModelBundle
from flipbook.sampling.conditioning import Conditioning
from flipbook.sampling.encode import PromptEncoder, blend_embeddings

POOLED = "text_embeds"
TIME_IDS = "time_ids"


class PooledBlend:
    """Prompt interpolation for encoders with a pooled output: a subclass gives ``encode(prompt, negative=)``
    -> ``(hidden states, pooled)`` and ``_pad_to(hidden states, length)``."""

    def blended(
        self, prompt: str, other: str | None, weight: float, mode: str, *, negative: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``prompt``'s hidden states and pooled output moved ``weight`` of the way toward ``other``'s (both
        padded to the longer one's chunks, as A1111 pads)."""
        embeds, pooled = self.encode(prompt, negative=negative)
        if other is None or other == prompt or weight <= 0.0:
            return embeds, pooled
        other_embeds, other_pooled = self.encode(other, negative=negative)
        length = max(embeds.shape[1], other_embeds.shape[1])
        embeds, other_embeds = self._pad_to(embeds, length), self._pad_to(other_embeds, length)
        if weight >= 1.0:
            return other_embeds, other_pooled
        return (
            blend_embeddings(embeds, other_embeds, weight, mode),
            blend_embeddings(pooled, other_pooled, weight, mode),
        )


class SdxlPromptEncoder(PooledBlend):
    """A :class:`~flipbook.sampling.conditioning.PromptConditioner` over SDXL's two text encoders."""

    def __init__(self, first: PromptEncoder, second: PromptEncoder) -> None:
        self.first = first
        self.second = second

    @property
    def calls(self) -> int:
        return self.first.calls + self.second.calls

    def clear(self) -> None:
        self.first.clear()
        self.second.clear()

    def encode(self, prompt: str, *, negative: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hidden states (1, 77 * chunks, width), pooled (1, projection))`` of one prompt (cached)."""
        embeds = torch.cat([self.first.encode(prompt), self.second.encode(prompt)], dim=-1)
        pooled = self.second.pooled(prompt)
        if negative and prompt == "":
            return torch.zeros_like(embeds), torch.zeros_like(pooled)
        return embeds, pooled

    def condition(
        self,
        prompt: str,
        other: str | None = None,
        weight: float = 0.0,
        mode: str = "lerp",
        *,
        negative: bool = False,
    ) -> Conditioning:
        embeds, pooled = self.blended(prompt, other, weight, mode, negative=negative)
        return Conditioning(embeds, {POOLED: pooled})

    def pad(self, conditioning: Conditioning, length: int) -> Conditioning:
        return Conditioning(self._pad_to(conditioning.embeds, length), conditioning.added)

    def at_size(self, conditioning: Conditioning, width: int, height: int) -> Conditioning:
        ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=conditioning.embeds.dtype)
        return conditioning.with_added(**{TIME_IDS: ids.repeat(conditioning.rows, 1)})

    def _pad_to(self, embeds: torch.Tensor, length: int) -> torch.Tensor:
        """Append empty chunks (both encoders' ``""``, side by side) up to ``length`` tokens, as A1111 pads."""
        chunk = self.first.empty_chunk().shape[1]
        missing = (length - embeds.shape[1]) // chunk
        if missing <= 0:
            return embeds
        empty = torch.cat([self.first.empty_chunk(), self.second.empty_chunk()], dim=-1)
        return torch.cat([embeds, empty.repeat(1, missing, 1)], dim=1)


def prompt_encoder(bundle: ModelBundle, clip_skip: int) -> SdxlPromptEncoder:
    """A new encoder (with its own caches) over the bundle's two tokenizers and text encoders; textual
    inversion tokens are expanded for each tokenizer first."""
    pipe = bundle.pipe

    def converter(tokenizer):
        return lambda text: pipe.maybe_convert_prompt(text, tokenizer)

    def reader(tokenizer, text_encoder, pooled: bool) -> PromptEncoder:
        return PromptEncoder(
            tokenizer, text_encoder, clip_skip=clip_skip, convert_prompt=converter(tokenizer),
            layer_offset=1, final_norm=False, pooled=pooled,
        )  # fmt: skip

    return SdxlPromptEncoder(
        reader(pipe.tokenizer, pipe.text_encoder, False), reader(pipe.tokenizer_2, pipe.text_encoder_2, True)
    )

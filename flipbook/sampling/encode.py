"""Prompt encoding as AUTOMATIC1111 does it: attention weights, 75-token chunks, clip skip, and a cache.

A prompt is parsed into weighted pieces, tokenised, split into chunks of 75 tokens (breaking after the last
comma within the final 20 tokens, and at ``BREAK``), and each chunk is encoded as ``BOS + 75 tokens + EOS``
padded like the tokenizer pads (so a short unweighted prompt encodes bit-for-bit like diffusers). Token weights
scale the hidden states and the chunk's mean is restored, as A1111 does. Chunk embeddings are concatenated
along the sequence axis, so prompts longer than 75 tokens keep all their words.

Prompt interpolation (:meth:`PromptEncoder.encode_blend`) mixes two prompts' embeddings token by token, after
padding the shorter one with empty chunks as cond/uncond are padded.

:class:`PromptEncoder` is the prompt encoder of the SD 1.x/2.x families (one CLIP): as such it is a
:class:`~flipbook.sampling.conditioning.PromptConditioner` (:meth:`~PromptEncoder.condition`,
:meth:`~PromptEncoder.pad`), which is all the sampling loops call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from flipbook.errors import FlipbookError
from flipbook.prompting.grammar import parse_attention
from flipbook.sampling.conditioning import Conditioning

CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20
PARALLEL_COSINE = 0.9995
"""slerp falls back to lerp for token vectors whose directions are this close (|cosine| above it)."""


@dataclass
class _Chunk:
    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def _split_into_chunks(pieces: list[tuple[list[int], float] | None], comma_id: int) -> list[_Chunk]:
    """Token ids with weights -> chunks of at most 75 tokens, A1111's comma backtracking and BREAK."""
    chunks: list[_Chunk] = []
    chunk = _Chunk()
    last_comma = -1

    def close() -> None:
        nonlocal chunk, last_comma
        chunks.append(chunk)
        chunk, last_comma = _Chunk(), -1

    for piece in pieces:
        if piece is None:  # BREAK
            close()
            continue
        tokens, weight = piece
        for token in tokens:
            if token == comma_id:
                last_comma = len(chunk.tokens)
            elif (
                len(chunk.tokens) == CHUNK_LENGTH
                and last_comma != -1
                and CHUNK_LENGTH - last_comma <= COMMA_BACKTRACK
            ):
                split = last_comma + 1
                rest = _Chunk(chunk.tokens[split:], chunk.weights[split:])
                chunk = _Chunk(chunk.tokens[:split], chunk.weights[:split])
                close()
                chunk = rest
            if len(chunk.tokens) == CHUNK_LENGTH:
                close()
            chunk.tokens.append(token)
            chunk.weights.append(weight)
    if chunk.tokens or not chunks:
        close()
    return chunks


def _checked_clip_skip(clip_skip: int, text_encoder, layer_offset: int = 0) -> int:
    """A1111's clip skip N takes the output of the N-th layer from the end (``layer_offset`` more for a family
    that counts from an earlier layer); the text encoder's hidden states (its embeddings and every layer) allow
    at most as many as it has layers. More is refused here, when the model is loaded and before any frame,
    naming the field (a spec's ``sampling.clip_skip``)."""
    layers = getattr(getattr(text_encoder, "config", None), "num_hidden_layers", None)
    if layers is not None and clip_skip + layer_offset > layers:
        most = layers - layer_offset
        raise FlipbookError(
            "sampling.clip_skip",
            clip_skip,
            f"at most {most} for this model (its text encoder has {layers} layers)",
        )
    return clip_skip


class PromptEncoder:
    """Encodes prompts with one tokenizer/text encoder pair; each distinct prompt is encoded once.

    ``clip_skip`` follows A1111 (1 = last layer, 2 = penultimate ...). ``convert_prompt`` lets diffusers'
    textual-inversion loader expand multi-vector embedding tokens before tokenising.

    A family that reads another layer sets ``layer_offset`` (SDXL counts from the penultimate layer: offset 1,
    so clip skip 1 reads the penultimate hidden states) and ``final_norm`` (whether a skipped layer's states
    go through the final layer norm, as A1111 does for SD 1.x/2.x and SDXL does not). ``pooled`` keeps the
    text encoder's pooled (projected) output of each prompt's first chunk, for :meth:`pooled`.
    """

    def __init__(
        self,
        tokenizer,
        text_encoder,
        *,
        clip_skip: int = 1,
        convert_prompt: Callable[[str], str] | None = None,
        layer_offset: int = 0,
        final_norm: bool = True,
        pooled: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.clip_skip = _checked_clip_skip(clip_skip, text_encoder, layer_offset)
        self.convert_prompt = convert_prompt
        self.layer_offset = layer_offset
        self.final_norm = final_norm
        self.keeps_pooled = pooled
        self._cache: dict[str, torch.Tensor] = {}
        self._pooled: dict[str, torch.Tensor] = {}
        self._comma_id = tokenizer.convert_tokens_to_ids(",</w>")
        self.calls = 0  # text-encoder forward passes, for tests and benchmarks

    def clear(self) -> None:
        """Forget cached embeddings (after the text encoder changed, e.g. a LoRA was switched)."""
        self._cache.clear()
        self._pooled.clear()

    def encode(self, prompt: str) -> torch.Tensor:
        """The prompt's embedding, shape ``(1, 77 * chunks, hidden)``; cached per prompt text."""
        if prompt not in self._cache:
            self._cache[prompt] = self._encode_uncached(prompt)
        return self._cache[prompt]

    def pooled(self, prompt: str) -> torch.Tensor:
        """The pooled output, shape ``(1, width)``, of the prompt's first chunk (A1111 pools the first chunk),
        unweighted; only for an encoder made with ``pooled=True``."""
        if not self.keeps_pooled:
            raise ValueError("this encoder was made without pooled=True")
        self.encode(prompt)
        return self._pooled[prompt]

    def empty_chunk(self) -> torch.Tensor:
        """The embedding of one empty chunk, used to pad a shorter prompt to a longer one's length."""
        return self.encode("")[:, : CHUNK_LENGTH + 2]

    def pad_to(self, embedding: torch.Tensor, length: int) -> torch.Tensor:
        """Append empty chunks until the sequence is ``length`` tokens long (A1111 pads the same way)."""
        missing = (length - embedding.shape[1]) // (CHUNK_LENGTH + 2)
        if missing <= 0:
            return embedding
        return torch.cat([embedding, self.empty_chunk().repeat(1, missing, 1)], dim=1)

    def encode_blend(self, prompt: str, other: str, weight: float, mode: str = "lerp") -> torch.Tensor:
        """``prompt``'s embedding moved toward ``other``'s by ``weight`` (0 = prompt, 1 = other) with ``mode``
        ``lerp`` or ``slerp``. Both come from the cache; the shorter is padded with empty chunks first (one
        prompt may span more 75-token chunks than the other). Equal prompts or weight 0 give ``encode(prompt)``
        itself, and weight 1 gives ``other``'s embedding (padded) exactly."""
        if weight <= 0.0 or other == prompt:
            return self.encode(prompt)
        a, b = self.encode(prompt), self.encode(other)
        length = max(a.shape[1], b.shape[1])
        a, b = self.pad_to(a, length), self.pad_to(b, length)
        if weight >= 1.0:
            return b
        return blend_embeddings(a, b, weight, mode)

    def condition(
        self,
        prompt: str,
        other: str | None = None,
        weight: float = 0.0,
        mode: str = "lerp",
        *,
        negative: bool = False,
    ) -> Conditioning:
        """:meth:`encode` (or with ``other``, :meth:`encode_blend`) as the sampling loops take it; a negative
        prompt encodes as any other (A1111 for SD 1.x/2.x)."""
        embeds = self.encode(prompt) if other is None else self.encode_blend(prompt, other, weight, mode)
        return Conditioning(embeds)

    def pad(self, conditioning: Conditioning, length: int) -> Conditioning:
        """:meth:`pad_to` on a :class:`~flipbook.sampling.conditioning.Conditioning`."""
        return Conditioning(self.pad_to(conditioning.embeds, length))

    def at_size(self, conditioning: Conditioning, width: int, height: int) -> Conditioning:
        """SD 1.x/2.x UNets are not conditioned on the image size: ``conditioning`` unchanged."""
        return conditioning

    def _encode_uncached(self, prompt: str) -> torch.Tensor:
        text = self.convert_prompt(prompt) if self.convert_prompt else prompt
        pieces = [
            None if (piece, weight) == ("BREAK", -1.0) else (self._token_ids(piece), weight)
            for piece, weight in parse_attention(text)
        ]
        chunks = _split_into_chunks(pieces, self._comma_id)
        encoded = [self._encode_chunk(chunk) for chunk in chunks]
        if self.keeps_pooled:
            self._pooled[prompt] = encoded[0][1]
        return torch.cat([hidden for hidden, _ in encoded], dim=1)

    def _token_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, truncation=False).input_ids

    def _encode_chunk(self, chunk: _Chunk) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The chunk's weighted hidden states and, when kept, its pooled output."""
        tok = self.tokenizer
        padding = CHUNK_LENGTH - len(chunk.tokens)
        ids = [tok.bos_token_id, *chunk.tokens, tok.eos_token_id] + [tok.pad_token_id] * padding
        input_ids = torch.tensor([ids], device=self.text_encoder.device)
        self.calls += 1
        layer = self.clip_skip + self.layer_offset
        pooled = None
        if layer <= 1 and not self.keeps_pooled:
            hidden = self.text_encoder(input_ids)[0]
        else:
            output = self.text_encoder(input_ids, output_hidden_states=layer > 1)
            pooled = _pooled_output(output) if self.keeps_pooled else None
            hidden = output.last_hidden_state
            if layer > 1:
                hidden = output.hidden_states[-layer]
                if self.final_norm:
                    hidden = _final_layer_norm(self.text_encoder)(hidden)
        hidden = hidden.to(self.text_encoder.dtype)
        weights = [1.0, *chunk.weights, 1.0] + [1.0] * padding
        if any(w != 1.0 for w in weights):
            hidden = _apply_weights(hidden, torch.tensor(weights, dtype=hidden.dtype, device=hidden.device))
        return hidden, pooled


def blend_embeddings(a: torch.Tensor, b: torch.Tensor, weight: float, mode: str = "lerp") -> torch.Tensor:
    """Mix two embeddings of the same shape: ``lerp`` or ``slerp`` (see :func:`slerp_embeddings`)."""
    if mode == "lerp":
        return lerp_embeddings(a, b, weight)
    if mode == "slerp":
        return slerp_embeddings(a, b, weight)
    raise ValueError(f"unknown blend mode {mode!r}; lerp or slerp")


def lerp_embeddings(a: torch.Tensor, b: torch.Tensor, weight: float) -> torch.Tensor:
    """``(1 - w) a + w b``, computed in float32 and returned in ``a``'s dtype."""
    return ((1.0 - weight) * a.float() + weight * b.float()).to(a.dtype)


def slerp_embeddings(a: torch.Tensor, b: torch.Tensor, weight: float) -> torch.Tensor:
    """Spherical interpolation of each token's vector (the last axis) separately, in float32.

    The direction moves along the great circle from ``a``'s to ``b``'s at constant angular speed, and the
    length is interpolated linearly, ``(1 - w) |a| + w |b|``, so every token's norm stays between its two
    ends (plain slerp of unnormalised vectors would bend the norm too). Where the two directions are nearly
    parallel (|cosine| > ``PARALLEL_COSINE``; also anti-parallel, where the great circle is undefined) or a
    vector is ~0, that token falls back to lerp.
    """
    a32, b32 = a.float(), b.float()
    norm_a = a32.norm(dim=-1, keepdim=True)
    norm_b = b32.norm(dim=-1, keepdim=True)
    tiny = torch.finfo(torch.float32).tiny ** 0.5
    unit_a = a32 / norm_a.clamp_min(tiny)
    unit_b = b32 / norm_b.clamp_min(tiny)
    cosine = (unit_a * unit_b).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    fallback = (cosine.abs() > PARALLEL_COSINE) | (norm_a <= tiny) | (norm_b <= tiny)
    theta = torch.arccos(cosine)
    sin_theta = torch.where(fallback, torch.ones_like(theta), torch.sin(theta))
    direction = (torch.sin((1.0 - weight) * theta) * unit_a + torch.sin(weight * theta) * unit_b) / sin_theta
    slerped = direction * ((1.0 - weight) * norm_a + weight * norm_b)
    lerped = (1.0 - weight) * a32 + weight * b32
    return torch.where(fallback, lerped, slerped).to(a.dtype)


def _apply_weights(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Scale each token's hidden state by its weight, then restore the chunk's mean (A1111's emphasis). Where
    the weighted mean is exactly 0 no factor can restore it (A1111 would divide 0 by 0 and give NaN: a black
    frame); the weighted states are kept as they are."""
    original_mean = hidden.float().mean()
    weighted = hidden * weights.reshape(1, -1, 1)
    weighted_mean = weighted.float().mean()
    if weighted_mean == 0:
        return weighted
    return weighted * (original_mean / weighted_mean).to(hidden.dtype)


def _pooled_output(output) -> torch.Tensor:
    """A text encoder's pooled output: the projected ``text_embeds`` of a CLIP with projection (SDXL's second
    encoder), else the ``pooler_output``."""
    embeds = getattr(output, "text_embeds", None)
    return embeds if embeds is not None else output.pooler_output


def _final_layer_norm(text_encoder) -> torch.nn.Module:
    """transformers 5 flattened ``CLIPTextModel.text_model``; older versions nest it."""
    return getattr(text_encoder, "text_model", text_encoder).final_layer_norm

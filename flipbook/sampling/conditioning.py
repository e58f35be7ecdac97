"""What prompt text conditions a denoiser with, and the encoder interface a model family provides.

The sampling loops never build a text encoder themselves: a model's family gives them a
:class:`PromptConditioner` (``Family.encoder``; for SD 1.x/2.x :class:`~flipbook.sampling.encode.PromptEncoder`)
and they hand its :class:`Conditioning` to the UNet as :meth:`Conditioning.unet_kwargs`. A family whose UNet
needs more than per-token states adds them as ``added`` (SDXL: its pooled text embedding ``text_embeds``
from the second encoder and the size conditioning ``time_ids``), and the loops pass them on untouched. The
size conditioning comes from :meth:`PromptConditioner.at_size` once a batch's image size is known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch


@dataclass(frozen=True)
class Conditioning:
    """The conditioning of one or more UNet rows.

    ``embeds``: ``rows x tokens x width``, the hidden states cross-attention reads (every family).
    ``added``: further per-row inputs (first axis: rows), given to the UNet as ``added_cond_kwargs``; empty
    for SD 1.x/2.x.
    """

    embeds: torch.Tensor
    added: Mapping[str, torch.Tensor] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.embeds.shape[0]

    @property
    def tokens(self) -> int:
        return self.embeds.shape[1]

    def to(self, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Conditioning:
        return Conditioning(
            self.embeds.to(device, dtype), {k: v.to(device, dtype) for k, v in self.added.items()}
        )

    def with_added(self, **added: torch.Tensor) -> Conditioning:
        """This conditioning with further (or replaced) ``added`` inputs."""
        return Conditioning(self.embeds, {**self.added, **added})

    def select(self, index: torch.Tensor) -> Conditioning:
        """The rows ``index`` names, in that order."""
        return Conditioning(
            self.embeds.index_select(0, index), {k: v.index_select(0, index) for k, v in self.added.items()}
        )

    def unet_kwargs(self) -> dict:
        """The UNet's (and a ControlNet's) conditioning arguments."""
        kwargs: dict = {"encoder_hidden_states": self.embeds}
        if self.added:
            kwargs["added_cond_kwargs"] = dict(self.added)
        return kwargs


def concat(parts: Sequence[Conditioning]) -> Conditioning:
    """Rows of the same token length, one after the other."""
    keys = parts[0].added.keys()
    return Conditioning(
        torch.cat([part.embeds for part in parts]),
        {key: torch.cat([part.added[key] for part in parts]) for key in keys},
    )


class PromptConditioner(Protocol):
    """The prompt encoder a model family gives the sampling loops (``Family.encoder(bundle, clip_skip)``).

    It reads prompts the way the family's users write them, caches what it encodes, and pads a prompt to a
    longer one's token length the way the family pads (so rows of different prompts share one UNet call).
    """

    def condition(
        self,
        prompt: str,
        other: str | None = None,
        weight: float = 0.0,
        mode: str = "lerp",
        *,
        negative: bool = False,
    ) -> Conditioning:
        """``prompt``'s conditioning (one row), moved toward ``other``'s by ``weight`` with ``mode`` (lerp or
        slerp) when ``other`` is given: prompt interpolation. ``negative`` says it is a negative prompt, which
        a family may encode differently (SDXL, as A1111 runs it, gives an empty negative prompt zeros)."""
        ...

    def pad(self, conditioning: Conditioning, length: int) -> Conditioning:
        """``conditioning`` padded to ``length`` tokens."""
        ...

    def at_size(self, conditioning: Conditioning, width: int, height: int) -> Conditioning:
        """``conditioning`` completed with what depends on the image's size, for every row (SDXL: the added
        time ids, original and target size and crop); unchanged for a family whose UNet does not take it."""
        ...

    def clear(self) -> None:
        """Forget cached encodings (the text encoder changed: a LoRA was switched)."""
        ...


def stack(parts: Sequence[Conditioning], encoder: PromptConditioner) -> Conditioning:
    """Rows of any token lengths in one batch: each padded by ``encoder`` to the longest, then concatenated."""
    length = max(part.tokens for part in parts)
    return concat([encoder.pad(part, length) for part in parts])

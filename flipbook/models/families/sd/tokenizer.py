"""CLIP tokenisers for Stable Diffusion, built offline from the BPE vocabulary shipped in the package.

SD 1.x uses CLIP ViT-L/14's tokeniser (padding with ``<|endoftext|>``); SD 2.x uses OpenCLIP ViT-H/14's, which
has the same vocabulary and merges but pads with ``!``. Building them here means a single-file checkpoint
loads without the hub.
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources

from transformers import CLIPTokenizer

_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
_NUM_MERGES = 49152 - 256 - 2
PAD_TOKENS = {"sd1": "<|endoftext|>", "sd2": "!"}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


@functools.cache
def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The CLIP vocabulary (token -> id) and merge list, in the order CLIP defines them."""
    raw = resources.files("flipbook.models.families.sd.data").joinpath(_BPE_FILE).read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")[1 : _NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    base = list(_bytes_to_unicode().values())
    tokens = base + [b + "</w>" for b in base] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def clip_tokenizer(family: str = "sd1") -> CLIPTokenizer:
    """A CLIP tokeniser for ``family`` ("sd1" or "sd2"), max length 77, built without any download."""
    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(
        vocab=dict(vocab), merges=list(merges), pad_token=PAD_TOKENS[family], model_max_length=77
    )

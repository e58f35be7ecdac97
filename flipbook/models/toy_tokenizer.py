"""A toy T5/UMT5 tokenizer built in code (no download): a sentencepiece-style unigram vocabulary of the
special tokens, the letters, digits and punctuation (each alone and after the word-start mark ``▁``) and a few
common words, for the tiny built-in video models of every family whose text encoder is a T5 (Wan's UMT5,
LTX-Video's T5). Real models bring their own tokenizer (a folder's
``tokenizer/``, or the one named for a single-file text encoder)."""

from __future__ import annotations

import string

from transformers import T5Tokenizer

SPECIALS = ("<pad>", "</s>", "<unk>")
WORDS = ("a", "the", "of", "and", "in", "on", "cat", "dog", "city", "sea", "sky", "forest", "night", "sun")
"""Whole words the unigram model prefers to spelling them out (its scores favour fewer pieces)."""


def tiny_vocab() -> list[tuple[str, float]]:
    """(piece, log-probability) in id order: specials 0-2, then ``▁``, words, characters."""
    pieces: list[tuple[str, float]] = [(token, 0.0) for token in SPECIALS]
    pieces.append(("▁", -2.0))
    pieces += [(f"▁{word}", -5.0) for word in WORDS]
    for char in string.ascii_lowercase + string.digits + string.punctuation:
        pieces += [(f"▁{char}", -8.0), (char, -9.0)]
    return pieces


def tiny_tokenizer(max_length: int = 64) -> T5Tokenizer:
    """The toy tokenizer: pads with ``<pad>`` (id 0), ends with ``</s>`` (id 1), as UMT5's does."""
    vocab = tiny_vocab()
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=max_length)

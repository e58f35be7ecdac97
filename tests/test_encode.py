"""Prompt encoding: A1111 chunks, weights, clip skip, cache; equal to diffusers for plain short prompts."""

import pytest
import torch

from flipbook.sampling.encode import CHUNK_LENGTH, PromptEncoder, _Chunk, _split_into_chunks


@pytest.fixture()
def encoder(tiny_model):
    return PromptEncoder(tiny_model.tokenizer, tiny_model.text_encoder)


@torch.no_grad()
def test_plain_prompt_encodes_like_diffusers(tiny_model, encoder):
    expected, _ = tiny_model.pipe.encode_prompt("a red fox, snow", "cpu", 1, False)
    assert torch.equal(encoder.encode("a red fox, snow"), expected)


@torch.no_grad()
def test_unit_weight_is_the_plain_prompt(encoder):
    assert torch.equal(encoder.encode("a (red:1.0) fox"), encoder.encode("a red fox"))


@torch.no_grad()
def test_weights_change_only_the_weighted_tokens_direction(encoder):
    plain, weighted = encoder.encode("a red fox"), encoder.encode("a (red:1.5) fox")
    assert not torch.equal(plain, weighted)
    # A1111 restores the chunk's mean after weighting
    assert torch.allclose(plain.mean(), weighted.mean(), atol=1e-5)


@torch.no_grad()
def test_long_prompts_become_several_chunks(encoder):
    long = ", ".join(f"word{i}" for i in range(60))  # well over 75 tokens
    embedding = encoder.encode(long)
    assert embedding.shape[1] % (CHUNK_LENGTH + 2) == 0 and embedding.shape[1] >= 2 * (CHUNK_LENGTH + 2)


@torch.no_grad()
def test_break_starts_a_new_chunk(encoder):
    assert encoder.encode("a cat BREAK a dog").shape[1] == 2 * (CHUNK_LENGTH + 2)


@torch.no_grad()
def test_each_prompt_is_encoded_once(encoder):
    for _ in range(5):
        encoder.encode("a castle")
        encoder.encode("")
    assert encoder.calls == 2


@torch.no_grad()
def test_pad_to_appends_empty_chunks(encoder):
    short = encoder.encode("a cat")
    padded = encoder.pad_to(short, 3 * (CHUNK_LENGTH + 2))
    assert padded.shape[1] == 3 * (CHUNK_LENGTH + 2)
    assert torch.equal(padded[:, 77:154], encoder.empty_chunk()[0:1])


def test_chunks_break_after_a_nearby_comma():
    comma = 1
    tokens = [5] * 70 + [comma] + [6] * 10  # 81 tokens, comma at position 70
    chunks = _split_into_chunks([(tokens, 1.0)], comma)
    assert [len(c.tokens) for c in chunks] == [71, 10]  # the words after the comma moved together
    assert chunks[0].tokens[-1] == comma


def test_chunks_without_comma_split_at_75():
    chunks = _split_into_chunks([([5] * 80, 1.0)], comma_id=1)
    assert [len(c.tokens) for c in chunks] == [75, 5]


def test_empty_prompt_is_one_empty_chunk():
    assert _split_into_chunks([([], 1.0)], comma_id=1) == [_Chunk()]


@torch.no_grad()
def test_a_chunk_whose_weighted_mean_is_zero_stays_finite(encoder):
    """The tiny model's CLIP ends in a layer norm with unit weight and no bias, so a chunk of padding has
    mean exactly 0; A1111's mean restore divided 0 by 0 there and a long weighted negative prompt (Deforum's
    default, 180 tokens) gave NaN conditioning and black frames."""
    negative = ", ".join(["(worst quality, low quality:1.3)", "(depth of field, blurry:1.2)"] * 12)
    assert torch.isfinite(encoder.encode(negative)).all()
    assert torch.isfinite(encoder.encode("(a red fox:1.4)" + " BREAK" * 2)).all()

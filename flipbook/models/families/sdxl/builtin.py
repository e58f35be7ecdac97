"""SDXL models built in code, no download: ``tiny-xl`` for demos and tests, ``random-sdxl`` for speed.

``tiny-xl`` has SDXL's structure at toy size (after diffusers' own SDXL pipeline tests): two CLIP text
encoders, the second with a projection whose pooled output and the six size numbers (``time_ids``) feed the
UNet's ``text_time`` added embedding, cross-attention over both encoders' states side by side, and a VAE with
SDXL's scaling factor. ``random-sdxl`` is SDXL 1.0 base's exact architecture with random weights. Weights are
random but deterministic: the same seed always builds the same model, and the global torch RNG is untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from flipbook.models.families.sd.tokenizer import clip_vocab_and_merges
from flipbook.models.weights import seeded

SDXL_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
    "prediction_type": "epsilon",
}
"""SDXL 1.0 base's scheduler (Euler): the schedule every SDXL sampler is made from."""

SDXL_VAE_SCALING = 0.13025
CLIP_L_SIZES = (768, 12, 12, 3072, "quick_gelu", 768)
CLIP_G_SIZES = (1280, 32, 20, 5120, "gelu", 1280)
"""SDXL's text encoders (width, layers, heads, MLP width, activation, projection): OpenAI CLIP ViT-L/14 and
OpenCLIP ViT-bigG/14."""
_PAD_TOKENS = ("<|endoftext|>", "!")
"""CLIP ViT-L (SDXL's first encoder) pads with end-of-text, OpenCLIP ViT-bigG (the second) with ``!``."""


def sdxl_tokenizers() -> tuple[CLIPTokenizer, CLIPTokenizer]:
    """SDXL's two tokenisers (same vocabulary, different padding), built offline."""
    vocab, merges = clip_vocab_and_merges()
    return tuple(  # type: ignore[return-value]
        CLIPTokenizer(vocab=dict(vocab), merges=list(merges), pad_token=pad, model_max_length=77)
        for pad in _PAD_TOKENS
    )


def text_config(hidden: int, layers: int, heads: int, intermediate: int, act: str, projection: int):
    """A CLIP text encoder's config (SDXL's vocabulary and special tokens) with these sizes."""
    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        projection_dim=projection,
        hidden_act=act,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


def _components(seed: int, unet: Callable, vae: Callable, text: tuple, text_2: tuple) -> dict[str, Any]:
    tokenizer, tokenizer_2 = sdxl_tokenizers()
    return {
        "unet": seeded(seed, unet),
        "vae": seeded(seed + 1, vae),
        "text_encoder": seeded(seed + 2, lambda: CLIPTextModel(text_config(*text))),
        "text_encoder_2": seeded(seed + 3, lambda: CLIPTextModelWithProjection(text_config(*text_2))),
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
    }


def tiny_xl_components(seed: int = 0) -> dict[str, Any]:
    """A tiny SDXL-shaped model: fast at 64x64 on a CPU, random weights."""
    return _components(
        seed,
        unet=lambda: UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(32, 64),
            layers_per_block=2,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=6 * 8 + 32,
            cross_attention_dim=64,
            norm_num_groups=8,
        ),
        vae=lambda: AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 16, 32, 32),
            layers_per_block=2,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=64,
            scaling_factor=SDXL_VAE_SCALING,
            force_upcast=True,
        ),
        text=(32, 5, 4, 37, "quick_gelu", 32),
        text_2=(32, 5, 4, 37, "gelu", 32),
    )


def random_sdxl_components(seed: int = 0) -> dict[str, Any]:
    """SDXL 1.0 base's exact architecture with random weights, for speed and memory measurements."""
    return _components(
        seed,
        unet=lambda: UNet2DConditionModel(**SDXL_UNET_CONFIG),
        vae=lambda: AutoencoderKL(**SDXL_VAE_CONFIG),
        text=CLIP_L_SIZES,
        text_2=CLIP_G_SIZES,
    )


SDXL_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "attention_head_dim": (5, 10, 20),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "transformer_layers_per_block": (1, 2, 10),
    "cross_attention_dim": 2048,
}
"""SDXL 1.0 base's UNet (the inpainting models differ only in ``in_channels``: 9)."""

SDXL_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 1024,
    "scaling_factor": SDXL_VAE_SCALING,
    "force_upcast": True,
}
"""SDXL's VAE: SD's architecture, its own scaling factor; overflows in fp16, so it is upcast (``force_upcast``)
unless it is the fp16-fix VAE, whose config says otherwise."""

BUILTIN_MODELS: dict[str, Callable[[int], dict[str, Any]]] = {
    "tiny-xl": tiny_xl_components,
    "random-sdxl": random_sdxl_components,
}

AESTHETIC_TIME_IDS = 5
"""The refiner's size conditioning: original size, crop top-left and the aesthetic score (no target size)."""


def tiny_xl_refiner_components(seed: int = 0) -> dict[str, Any]:
    """A tiny SDXL refiner, ``tiny-xl``'s companion: the refiner's structure at toy size (after diffusers' own
    refiner tests): only the second text encoder (OpenCLIP's place; ``tiny-xl``'s second encoder's sizes),
    cross-attention over its states alone, the ``text_time`` embedding of its pooled output and five size
    numbers with the aesthetic score, a UNet whose first and last levels have no attention (as the refiner's),
    and ``tiny-xl``'s VAE (the same seed builds the same weights). Random weights."""
    text_2 = (32, 5, 4, 37, "gelu", 32)
    tokenizer_2 = sdxl_tokenizers()[1]
    return {
        "unet": seeded(
            seed,
            lambda: UNet2DConditionModel(
                sample_size=8,
                in_channels=4,
                out_channels=4,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                block_out_channels=(32, 64, 64),
                layers_per_block=2,
                attention_head_dim=(2, 4, 4),
                use_linear_projection=True,
                addition_embed_type="text_time",
                addition_time_embed_dim=8,
                transformer_layers_per_block=(1, 2, 2),
                projection_class_embeddings_input_dim=AESTHETIC_TIME_IDS * 8 + text_2[-1],
                cross_attention_dim=text_2[0],
                norm_num_groups=8,
            ),
        ),
        "vae": tiny_xl_components(seed)["vae"],
        "text_encoder_2": seeded(seed + 3, lambda: CLIPTextModelWithProjection(text_config(*text_2))),
        "tokenizer_2": tokenizer_2,
    }


SDXL_REFINER_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (384, 768, 1536, 1536),
    "layers_per_block": 2,
    "attention_head_dim": (6, 12, 24, 24),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2560,
    "transformer_layers_per_block": 4,
    "cross_attention_dim": 1280,
}
"""SDXL 1.0 refiner's UNet (Stability's ``sd_xl_refiner.yaml``: 384 channels x (1, 2, 4, 4), attention at the
middle two levels, 64-wide heads, depth 4, OpenCLIP's 1280-wide states, 5 x 256 + 1280 added inputs)."""

REFINER_MODELS: dict[str, Callable[[int], dict[str, Any]]] = {"tiny-xl-refiner": tiny_xl_refiner_components}

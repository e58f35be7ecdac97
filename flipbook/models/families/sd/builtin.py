"""Built-in models, no download: ``tiny`` for tests, ``random-sd15`` for speed measurements, ``shapes`` for demos.

``tiny`` and ``random-sd15`` are built in code with random weights. ``shapes`` is ``tiny``'s kind of model
trained on the toy world of coloured shapes (:mod:`flipbook.toy`; ``flipbook train-toy`` reproduces it): its
weights ship in ``data/shapes.safetensors``, a single-file checkpoint in the original layout read through the
same offline path as any other, so it is an ordinary SD 1.x model to every mode, LoRA and export. All three
follow Stable Diffusion's block layout (4 UNet levels, 4 VAE levels), so they convert to and from the
original single-file checkpoint layout exactly like a real SD 1.5 checkpoint. Weights are random but
deterministic: the same seed always builds the same model, and the global torch RNG is left untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from flipbook.models.families.sd.tokenizer import clip_tokenizer
from flipbook.models.weights import seeded

SD15_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}

_DOWN = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
_UP = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
_VAE_DOWN = ("DownEncoderBlock2D",) * 4
_VAE_UP = ("UpDecoderBlock2D",) * 4


def _text_encoder(seed: int, hidden: int, layers: int, heads: int, intermediate: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        projection_dim=hidden,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return seeded(seed, lambda: CLIPTextModel(config))


def tiny_components(seed: int = 0) -> dict[str, Any]:
    """A tiny SD-1.x-shaped model: fast at 64x64 on a CPU, random weights."""
    unet = seeded(
        seed,
        lambda: UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=_DOWN,
            up_block_types=_UP,
            block_out_channels=(32, 32, 64, 64),
            layers_per_block=2,
            attention_head_dim=8,
            norm_num_groups=8,
            cross_attention_dim=32,
        ),
    )
    vae = seeded(
        seed + 1,
        lambda: AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=_VAE_DOWN,
            up_block_types=_VAE_UP,
            block_out_channels=(8, 16, 32, 32),
            layers_per_block=2,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=64,
        ),
    )
    text_encoder = _text_encoder(seed + 2, hidden=32, layers=5, heads=4, intermediate=37)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": clip_tokenizer("sd1")}


def random_sd15_components(seed: int = 0) -> dict[str, Any]:
    """Stable Diffusion 1.5's exact architecture with random weights, for speed and memory measurements."""
    unet = seeded(
        seed,
        lambda: UNet2DConditionModel(
            sample_size=64,
            cross_attention_dim=768,
            attention_head_dim=8,
            block_out_channels=(320, 640, 1280, 1280),
        ),
    )
    vae = seeded(
        seed + 1,
        lambda: AutoencoderKL(
            down_block_types=_VAE_DOWN,
            up_block_types=_VAE_UP,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
            sample_size=512,
        ),
    )
    text_encoder = _text_encoder(seed + 2, hidden=768, layers=12, heads=12, intermediate=3072)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": clip_tokenizer("sd1")}


SHAPES_FILE = "shapes.safetensors"
SHAPES_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": _DOWN,
    "up_block_types": _UP,
    "block_out_channels": (32, 64, 64, 64),
    "layers_per_block": 1,
    "attention_head_dim": 4,
    "norm_num_groups": 8,
    "cross_attention_dim": 32,
}
"""``shapes``' UNet: SD 1.5's block layout, small enough to train on a CPU in minutes (8x8x4 latents)."""
SHAPES_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": _VAE_DOWN,
    "up_block_types": _VAE_UP,
    "block_out_channels": (8, 16, 32, 32),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 2,  # several channels per group: a group norm of one channel would erase flat colours
    "sample_size": 64,
}
"""``shapes``' VAE: 64x64 pixels <-> 8x8x4 latents (its ``scaling_factor`` is set from the trained latents)."""
SHAPES_TEXT_ENCODER = {"hidden": 32, "layers": 2, "heads": 4, "intermediate": 64}
"""``shapes``' CLIP text encoder (CLIP's tokenizer and vocabulary: only the toy grammar's words are trained)."""


def untrained_shapes_components(seed: int = 0) -> dict[str, Any]:
    """``shapes``' architecture with random weights: where its training starts."""
    return {
        "unet": seeded(seed, lambda: UNet2DConditionModel(**SHAPES_UNET_CONFIG)),
        "vae": seeded(seed + 1, lambda: AutoencoderKL(**SHAPES_VAE_CONFIG)),
        "text_encoder": _text_encoder(seed + 2, **SHAPES_TEXT_ENCODER),
        "tokenizer": clip_tokenizer("sd1"),
    }


def shapes_components(seed: int = 0) -> dict[str, Any]:
    """The trained ``shapes`` model (``seed`` is unused: its weights are the shipped ones)."""
    from importlib import resources

    from flipbook.models.families.sd.single_file import pipeline_from_checkpoint
    from flipbook.models.weights import read_checkpoint

    with resources.as_file(resources.files("flipbook.models.families.sd.data").joinpath(SHAPES_FILE)) as path:
        state, embedded = read_checkpoint(path)
        pipe = pipeline_from_checkpoint(state, embedded, path)
    return {name: getattr(pipe, name) for name in ("unet", "vae", "text_encoder", "tokenizer")}


BUILTIN_MODELS: dict[str, Callable[[int], dict[str, Any]]] = {
    "tiny": tiny_components,
    "random-sd15": random_sd15_components,
    "shapes": shapes_components,
}

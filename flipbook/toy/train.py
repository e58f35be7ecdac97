"""Trains the ``shapes`` model on the toy world: the VAE first, then the text encoder and UNet together.

Deterministic given the seed: every batch's scenes come from a numpy generator seeded with (seed, phase,
step), torch's generator is seeded per phase and deterministic algorithms are on (two CPU threads by
default: a different thread count may change the float rounding).

The VAE's posterior variance is fixed near zero (:func:`_fix_variance`), so its latents are the encoder's
means: the diffusion model learns exactly the latents the decoder was trained to read, not samples whose
noise can swamp them. Its reconstruction error is weighted towards the shape, which is small in every picture
and what every caption is about. The diffusion phase trains on the latents of a fixed set of training scenes
(held-out combinations never appear), with each optional attribute of a caption left out at random and the
whole caption dropped (``""``, what an empty negative prompt encodes) for classifier-free guidance; epsilon
prediction with SD 1.5's noise schedule, Min-SNR loss weights and an exponential moving average of the
weights, which is what is saved.

Trained from scratch together, the text encoder learns only the words the UNet already uses: colour and
background (a flat tint is easy to place) separate early, while shape and position words, which the UNet
can only use once the text tells them apart, collapse to nearly the same states and stay there (the UNet
then ignores them: position at chance). So the text encoder also learns a side task, :class:`AttributeHeads`:
to name each attribute of the caption (or "not stated") from its end-of-text state, which every padding
token's state sees too. The heads are thrown away; only what they taught the text encoder is saved.

The result is a single-file SD 1.x checkpoint (fp16 safetensors, configs embedded) that loads like any other.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from flipbook.toy.world import (
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    coverage,
    parse_caption,
    random_caption,
    render,
    sample_scene,
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainSettings:
    seed: int = 0
    vae_steps: int = 3000
    vae_batch: int = 16
    vae_crop: int = 32
    vae_lr: float = 1e-3
    logvar: float = -20.0
    shape_weight: float = 9.0
    latent_penalty: float = 1e-4
    decoder_steps: int = 1000
    decoder_lr: float = 5e-4
    steps: int = 5500
    batch: int = 24
    lr: float = 1e-3
    warmup: int = 50
    scenes: int = 6144
    attribute_drop: float = 0.3
    caption_dropout: float = 0.1
    min_snr: float = 5.0
    attribute_weight: float = 0.05
    ema: float = 0.99
    threads: int = 2


def _rng(settings: TrainSettings, phase: int, step: int) -> np.random.Generator:
    return np.random.default_rng([settings.seed, phase, step])


def _pixels(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 HxWx3 images as a float batch in [-1, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _lr(settings: TrainSettings, step: int, total: int, peak: float) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < settings.warmup:
        return peak * (step + 1) / settings.warmup
    progress = (step - settings.warmup) / max(total - settings.warmup, 1)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class Progress:
    """Logs a phase's step, loss, elapsed time and ETA every ``every`` steps."""

    def __init__(self, phase: str, total: int, log: Log, every: int = 25) -> None:
        self.phase, self.total, self.log, self.every = phase, total, log, every
        self.start = time.monotonic()
        self.losses: list[float] = []

    def step(self, index: int, loss: float) -> None:
        self.losses.append(loss)
        done = index + 1
        if done % self.every and done != self.total:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (self.total - done)
        recent = float(np.mean(self.losses[-self.every :]))
        self.log(
            f"{self.phase} {done}/{self.total} loss {recent:.4f} elapsed {elapsed:.0f}s "
            f"ETA {eta:.0f}s ({time.strftime('%H:%M:%S', time.localtime(time.time() + eta))})"
        )


def _scenes(settings: TrainSettings, phase: int, step: int, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of pictures (cropped at random 8-aligned offsets unless ``crop`` is 64) and their loss weights:
    1 on the background, ``1 + shape_weight`` where the shape covers the pixel."""
    rng = _rng(settings, phase, step)
    cells = (64 - crop) // 8 + 1
    images, weights = [], []
    for _ in range(settings.vae_batch):
        y, x = rng.integers(cells, size=2) * 8
        scene = sample_scene(rng)
        images.append(render(scene)[y : y + crop, x : x + crop])
        weights.append(1.0 + settings.shape_weight * coverage(scene)[y : y + crop, x : x + crop])
    return _pixels(images), torch.from_numpy(np.stack(weights))[:, None]


def _fix_variance(vae, logvar: float) -> None:
    """Make the posterior's log-variance the constant ``logvar`` (its half of ``quant_conv`` zero weights and
    that bias). No loss below depends on it, so it gets no gradient and stays: the latents are the
    encoder's means, deterministic, and the diffusion model learns exactly what the decoder reads."""
    channels = vae.config.latent_channels
    with torch.no_grad():
        vae.quant_conv.weight[channels:] = 0.0
        vae.quant_conv.bias[channels:] = logvar


def train_vae(vae, settings: TrainSettings, log: Log) -> None:
    """Encoder and decoder on random crops (the VAE is convolutional: crops cost less): a reconstruction
    error weighted towards the shape (the background is most of every picture, the shape what a caption is
    about) plus a small penalty on the latents' size that keeps them near unit scale."""
    _fix_variance(vae, settings.logvar)
    vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=settings.vae_lr, weight_decay=0.0)
    progress = Progress("vae", settings.vae_steps, log)
    for step in range(settings.vae_steps):
        batch, weights = _scenes(settings, 1, step, settings.vae_crop)
        for group in optimizer.param_groups:
            group["lr"] = _lr(settings, step, settings.vae_steps, settings.vae_lr)
        latents = vae.encode(batch).latent_dist.mean
        error = (vae.decode(latents).sample - batch).pow(2) * weights
        loss = error.mean() + settings.latent_penalty * latents.pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress.step(step, loss.item())
    vae.eval()


def train_decoder(vae, settings: TrainSettings, log: Log) -> None:
    """The decoder alone on whole pictures, the encoder frozen: what the crops never showed (the picture's
    border, the whole layout) without changing a single latent the diffusion model learns from."""
    vae.train()
    optimizer = torch.optim.AdamW(vae.decoder.parameters(), lr=settings.decoder_lr, weight_decay=0.0)
    progress = Progress("decoder", settings.decoder_steps, log)
    for step in range(settings.decoder_steps):
        batch, weights = _scenes(settings, 4, step, 64)
        with torch.no_grad():
            latents = vae.encode(batch).latent_dist.mean
        for group in optimizer.param_groups:
            group["lr"] = _lr(settings, step, settings.decoder_steps, settings.decoder_lr)
        loss = ((vae.decode(latents).sample - batch).pow(2) * weights).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress.step(step, loss.item())
    vae.eval()


@torch.no_grad()
def encode_scenes(vae, settings: TrainSettings, log: Log) -> tuple[torch.Tensor, list]:
    """The latents (the encoder's means) of ``settings.scenes`` training scenes, and the scenes."""
    rng = _rng(settings, 2, 0)
    scenes = [sample_scene(rng, held_out=False) for _ in range(settings.scenes)]
    latents = []
    for start in range(0, len(scenes), 256):
        latents.append(vae.encode(_pixels([render(s) for s in scenes[start : start + 256]])).latent_dist.mean)
    log(f"encoded {len(scenes)} scenes")
    return torch.cat(latents), scenes


def _batches(settings: TrainSettings, scenes: list) -> Iterator[tuple[np.ndarray, list[str]]]:
    for step in range(settings.steps):
        rng = _rng(settings, 3, step)
        index = rng.integers(len(scenes), size=settings.batch)
        captions = [
            ""
            if rng.random() < settings.caption_dropout
            else random_caption(scenes[i], rng, settings.attribute_drop)
            for i in index
        ]
        yield index, captions


class AttributeHeads(torch.nn.Module):
    """Linear read-outs of a caption's attributes from the text encoder's end-of-text state: one per
    attribute (the background's top and bottom colours apart), each with a last class for "not stated"."""

    LABELS: dict[str, tuple[str, ...]] = {
        "colour": tuple(COLOURS),
        "shape": SHAPES,
        "size": tuple(SIZES),
        "position": tuple(POSITIONS),
        "background top": tuple(COLOURS),
        "background bottom": tuple(COLOURS),
    }

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.heads = torch.nn.ModuleList(torch.nn.Linear(hidden, len(v) + 1) for v in self.LABELS.values())

    @classmethod
    def targets(cls, caption: str) -> list[int]:
        """The class of each attribute in ``caption`` (``""``, the dropped caption, states none)."""
        stated = parse_caption(caption) if caption else {}
        background = stated.get("background")
        values = {
            **stated,
            "background top": background[0] if background else None,
            "background bottom": background[-1] if background else None,
        }
        return [
            len(names) if values.get(name) is None else names.index(values[name])
            for name, names in cls.LABELS.items()
        ]

    def loss(self, state: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The summed cross-entropy of every head; ``targets`` is (batch, attributes)."""
        return sum(
            torch.nn.functional.cross_entropy(head(state), targets[:, i]) for i, head in enumerate(self.heads)
        )


def _ema_update(average: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    torch._foreach_mul_(average, decay)
    torch._foreach_add_(average, params, alpha=1 - decay)


def train_diffusion(components: dict, settings: TrainSettings, log: Log) -> None:
    """Text encoder and UNet together on the VAE's latents; the EMA weights are left in the modules."""
    from diffusers import DDPMScheduler

    from flipbook.models.families.sd.builtin import SD15_SCHEDULER_CONFIG

    unet, text_encoder, tokenizer, vae = (components[k] for k in ("unet", "text_encoder", "tokenizer", "vae"))
    means, scenes = encode_scenes(vae, settings, log)
    generator = torch.Generator().manual_seed(settings.seed)
    scale = 1.0 / float(means.std())
    vae.register_to_config(scaling_factor=scale)
    log(f"latent scaling factor {scale:.4f}")

    schedule = DDPMScheduler.from_config(SD15_SCHEDULER_CONFIG)
    alphas = schedule.alphas_cumprod
    snr = alphas / (1 - alphas)
    weights = torch.clamp(snr, max=settings.min_snr) / snr

    modules = [unet, text_encoder]
    params = [p for m in modules for p in m.parameters()]
    average = [p.detach().clone() for p in params]
    heads = AttributeHeads(text_encoder.config.hidden_size)
    optimizer = torch.optim.AdamW([*params, *heads.parameters()], lr=settings.lr, weight_decay=0.0)
    for module in modules:
        module.train()
    progress = Progress("diffusion", settings.steps, log)
    token_cache: dict[str, tuple[list[int], list[int]]] = {}
    for step, (index, captions) in enumerate(_batches(settings, scenes)):
        for caption in captions:
            if caption not in token_cache:
                ids = tokenizer(caption, padding="max_length", max_length=77).input_ids
                token_cache[caption] = ids, AttributeHeads.targets(caption)
        ids = torch.tensor([token_cache[c][0] for c in captions])
        targets = torch.tensor([token_cache[c][1] for c in captions])
        at = torch.from_numpy(index)
        latents = means[at] * scale
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, len(alphas), (len(index),), generator=generator)
        noisy = schedule.add_noise(latents, noise, timesteps)
        for group in optimizer.param_groups:
            group["lr"] = _lr(settings, step, settings.steps, settings.lr)
        encoded = text_encoder(ids)
        predicted = unet(noisy, timesteps, encoded.last_hidden_state).sample
        per_sample = ((predicted - noise) ** 2).mean(dim=(1, 2, 3))
        loss = (per_sample * weights[timesteps]).mean()
        if settings.attribute_weight:
            loss = loss + settings.attribute_weight * heads.loss(encoded.pooler_output, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        decay = min(settings.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            _ema_update(average, [p.detach() for p in params], decay)
        progress.step(step, per_sample.mean().item())
    with torch.no_grad():
        for param, value in zip(params, average, strict=True):
            param.copy_(value)
    for module in modules:
        module.eval()


def train(settings: TrainSettings, output: Path, log: Log = print) -> Path:
    """Train ``shapes`` from scratch and write it to ``output`` (a .safetensors single file); returns it."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    from flipbook.models.families.sd.builtin import SD15_SCHEDULER_CONFIG, untrained_shapes_components
    from flipbook.models.families.sd.convert import save_original_checkpoint

    torch.set_num_threads(settings.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(settings.seed)
    log(f"training shapes: {asdict(settings)}")
    components = untrained_shapes_components(settings.seed)
    started = time.monotonic()
    train_vae(components["vae"], settings, log)
    train_decoder(components["vae"], settings, log)
    train_diffusion(components, settings, log)
    pipe = StableDiffusionPipeline(
        **components,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    path = save_original_checkpoint(pipe, output, dtype=torch.float16)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    log(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.monotonic() - started:.0f}s (load {load})"
    )
    return path


def _log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

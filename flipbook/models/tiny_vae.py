"""Tiny autoencoders (TAESD, TAESDXL: Ollin Boer Bohan's distilled VAEs) through diffusers' ``AutoencoderTiny``:
a decode about a hundred times cheaper than the model's VAE, for live previews every step and, where asked, the
frames' decode.

A tiny VAE is named by ``performance.tiny_vae``:

- ``tiny``: a random-weight one built in code (seeded; for tests and benchmarks, like the ``tiny`` checkpoint);
- a hub id in diffusers' layout (``madebyollin/taesd`` for SD 1.x/2.x, ``madebyollin/taesdxl`` for SDXL);
- a diffusers folder (``config.json`` beside the weights);
- a single file as A1111 keeps them in ``models/VAE-approx`` (ComfyUI: ``models/vae_approx``):
  ``taesd_decoder.pth`` / ``taesdxl_decoder.pth`` (or ``.safetensors``), the original decoder's keys, read with
  safetensors or ``torch.load(weights_only=True)``; a full ``AutoencoderTiny`` state dict in one file works too;
- a name of such a file or folder in the models folder.

The original decoder is ``Sequential(Clamp, conv, ReLU, Block, ...)``; diffusers' ``DecoderTiny.layers`` is the
same sequence without the clamp (its ``forward`` clamps), so key ``n.rest`` is ``decoder.layers.{n-1}.rest``.
The latent channels are read from the first convolution's weight. TAEHV (the tiny VAEs of video models) has
no diffusers class: video models keep their own VAE for previews and frames.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import torch

from flipbook.errors import FlipbookError

FIELD = "performance.tiny_vae"
BUILTIN = "tiny"
ALLOWED = (
    "tiny (random weights), a hub id such as madebyollin/taesd or madebyollin/taesdxl, a diffusers "
    "AutoencoderTiny folder, a TAESD decoder file (taesd_decoder.pth/.safetensors), or such a name in the models "
    "folder's VAE-approx"
)
SUFFIXES = (".safetensors", ".pth", ".pt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ORIGINAL_KEY = re.compile(r"^(\d+)\.(.+)$")


def load_tiny_vae(
    ref: str, *, folders: Any = None, device: torch.device, dtype: torch.dtype, latent_channels: int = 4
) -> Any:
    """The tiny VAE ``ref`` names (see the module docstring), on ``device`` in ``dtype``, in eval mode; one
    :class:`FlipbookError` on ``performance.tiny_vae`` when it can't be found or read, or its latents don't
    fit the model's (``latent_channels``)."""
    vae = _load(ref, folders, latent_channels)
    if vae.config.latent_channels != latent_channels:
        raise FlipbookError(
            FIELD, ref, f"a tiny VAE with {latent_channels} latent channels for this model",
            detail=f"it has {vae.config.latent_channels}",
        )  # fmt: skip
    return vae.to(device, dtype).eval()


def _load(ref: str, folders: Any, latent_channels: int):
    from diffusers import AutoencoderTiny

    if ref == BUILTIN:
        return random_tiny_vae()
    path = Path(ref).expanduser()
    if not path.exists() and folders is not None:
        with contextlib.suppress(FlipbookError):
            path = folders.find("vae_approx", ref)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FlipbookError(FIELD, ref, ALLOWED, detail="the folder has no config.json")
        return _from_pretrained(AutoencoderTiny, str(path), ref, local_files_only=True)
    if path.is_file():
        return from_single_file(path, field_value=ref)
    if _HUB_ID.match(ref):
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        return _from_pretrained(AutoencoderTiny, ref, ref, local_files_only=offline)
    raise FlipbookError(FIELD, ref, ALLOWED, detail="no such file, folder or models-folder name")


def _from_pretrained(cls, where: str, ref: str, *, local_files_only: bool):
    try:
        return cls.from_pretrained(where, local_files_only=local_files_only)
    except (OSError, ValueError, RuntimeError) as error:
        text = str(error).strip().splitlines()
        raise FlipbookError(
            FIELD, ref, ALLOWED, detail=text[0][:200] if text else type(error).__name__
        ) from None


def random_tiny_vae(latent_channels: int = 4, seed: int = 0):
    """A random-weight ``AutoencoderTiny`` with narrow layers (16 channels), built in code: same shapes in and
    out as TAESD, for tests and benchmarks."""
    from diffusers import AutoencoderTiny

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderTiny(
            encoder_block_out_channels=(16, 16, 16, 16), decoder_block_out_channels=(16, 16, 16, 16),
            latent_channels=latent_channels,
        )  # fmt: skip


def from_single_file(path: Path, *, field_value: str | None = None):
    """An ``AutoencoderTiny`` from one file: TAESD's original decoder (or encoder and decoder) keys, or a full
    diffusers state dict. The layer widths are TAESD's (64); the latent channels come from the weights."""
    from diffusers import AutoencoderTiny

    ref = field_value or str(path)
    state = _read(path, ref)
    state = {_diffusers_key(key): value for key, value in state.items()}
    first = state.get("decoder.layers.0.weight")
    if first is None or first.ndim != 4:
        raise FlipbookError(FIELD, ref, ALLOWED, detail="no TAESD decoder weights in the file")
    vae = AutoencoderTiny(latent_channels=int(first.shape[1]))
    decoder_keys = {k for k in vae.state_dict() if k.startswith("decoder.")}
    missing = sorted(decoder_keys - set(state))
    if missing:
        raise FlipbookError(
            FIELD, ref, ALLOWED, detail=f"the decoder lacks {len(missing)} weights ({missing[0]}, ...)"
        )
    try:
        vae.load_state_dict(state, strict=False)
    except RuntimeError as error:
        detail = str(error).strip().splitlines()[-1][:200]
        raise FlipbookError(FIELD, ref, ALLOWED, detail=f"weights of other shapes: {detail}") from None
    return vae


def _read(path: Path, ref: str) -> dict[str, torch.Tensor]:
    if path.suffix.lower() not in SUFFIXES:
        raise FlipbookError(FIELD, ref, ALLOWED, detail=f"unknown file type {path.suffix!r}")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:  # safetensors raises its own error type for damaged files
            raise FlipbookError(
                FIELD, ref, ALLOWED, detail=f"not a readable safetensors file: {error}"
            ) from None
    from flipbook.models.pickles import load_torch_file

    state = load_torch_file(path, lambda detail: FlipbookError(FIELD, ref, ALLOWED, detail=detail))
    if not isinstance(state, dict):
        raise FlipbookError(FIELD, ref, ALLOWED, detail="the file holds no state dict")
    return state


def _diffusers_key(key: str) -> str:
    """TAESD's original decoder key ``n.rest`` as diffusers' ``decoder.layers.{n-1}.rest``; others unchanged."""
    match = _ORIGINAL_KEY.match(key)
    if match is None:
        return key
    return f"decoder.layers.{int(match.group(1)) - 1}.{match.group(2)}"


def to_original_decoder(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An ``AutoencoderTiny`` state dict's decoder as TAESD's original file has it (the inverse of the key map;
    tests and tools write such files)."""
    prefix = "decoder.layers."
    out = {}
    for key, value in state.items():
        if key.startswith(prefix):
            index, rest = key[len(prefix) :].split(".", 1)
            out[f"{int(index) + 1}.{rest}"] = value
    return out


@torch.no_grad()
def decode(tiny_vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] from the UNet's latents (TAESD takes them as they are: its scaling factor is 1)."""
    latents = latents.to(tiny_vae.device, tiny_vae.dtype) / tiny_vae.config.scaling_factor
    return tiny_vae.decode(latents, return_dict=False)[0]

"""Still images (txt2img, img2img, inpaint): the one pipeline behind ``flipbook txt2img/img2img/inpaint`` and
the A1111 API's ``/sdapi/v1/txt2img`` and ``/img2img``.

Two halves, so a caller can check everything before any model loads: :func:`prepare_stills` checks the
settings, resolves the seed, the prompts' ``<lora:...>`` tags and builds every
:class:`~flipbook.sampling.requests.FrameRequest`; :func:`make_stills` loads the prompts' embeddings into the
model, samples, and writes each PNG with A1111's parameters into a folder.

Seeds are A1111's: 32-bit. ``-1`` picks one at random (0 to 2**32 - 1), any other seed must be in that range,
and image ``i`` of a batch uses ``(seed + i) mod 2**32``, so every seed written into a PNG is one a user can
give back to make that image again (the spec's ``sampling.seed`` has the same range).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import PIL.Image

from flipbook.errors import FlipbookError
from flipbook.events import Events
from flipbook.models.extra_networks import ExtraNetworks
from flipbook.prompting.grammar import extract_loras
from flipbook.runs.hires import (
    LATENT_UPSCALERS,
    PIXEL_UPSCALERS,
    HiresSettings,
    final_size,
    infotext_extras,
    second_pass,
    second_pass_schedule,
)
from flipbook.sampling.requests import Control, FrameRequest

if TYPE_CHECKING:
    from flipbook.models.bundle import ModelBundle
    from flipbook.models.controlnet import ControlNets

SEEDS = 2**32
"""How many seeds there are: A1111's seeds (and the spec's ``sampling.seed``) are 32-bit."""


@dataclass(frozen=True)
class StillSettings:
    """What to make: ``count`` images from ``seed``, ``batch_size`` per UNet call. With ``inits`` (img2img)
    image ``i`` starts from ``inits[i % len(inits)]`` at ``strength``; with a ``mask`` (white = repaint) it is
    inpainted, and ``overlay`` keeps the unmasked pixels exactly. ``model`` is recorded in the PNGs. With
    ``hires`` (txt2img only) each image gets A1111's hires fix (:mod:`flipbook.runs.hires`). ``controls`` are
    ControlNet units (control images already preprocessed) on every image, in both hires passes. With a
    ``refiner`` (its name; the model must be loaded with it) the refiner takes over each image after
    ``refiner_switch_at`` of its steps (the first pass only, with hires fix)."""

    prompt: str
    model: str
    negative_prompt: str = ""
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = "Euler a"
    seed: int = -1
    width: int = 512
    height: int = 512
    count: int = 1
    batch_size: int = 1
    inits: tuple[PIL.Image.Image, ...] = ()
    strength: float = 1.0
    mask: PIL.Image.Image | None = None
    mask_blur: float = 0.0
    masked_content: str = "original"
    overlay: bool = False
    noise_multiplier: float = 1.0
    clip_skip: int = 1
    hires: HiresSettings | None = None
    controls: tuple[Control, ...] = ()
    refiner: str | None = None
    refiner_switch_at: float = 0.8


@dataclass(frozen=True)
class PreparedStills:
    """Checked settings: the seeds used, the requests, and the prompts without their LoRA tags; with hires
    fix also each image's second-pass request (``hires_requests``, without its start, which the first pass
    makes) and the second pass's prompts."""

    settings: StillSettings
    seeds: tuple[int, ...]
    requests: tuple[FrameRequest, ...]
    prompts: tuple[str, ...]
    hires_requests: tuple[FrameRequest, ...] = ()

    @property
    def uses_loras(self) -> bool:
        return any(request.loras for request in self.requests)


@dataclass(frozen=True)
class Still:
    """One image made: its seed, the PNG written, and its A1111 infotext."""

    seed: int
    path: Path
    infotext: str


@dataclass(frozen=True)
class StillsMade:
    """What :func:`make_stills` made, and the textual-inversion embeddings it loaded into the model."""

    stills: tuple[Still, ...]
    embeddings: tuple[str, ...]


def resolve_seed(seed: int, field: str = "seed") -> int:
    """``-1`` -> a random 32-bit seed; a seed from 0 to 2**32 - 1 as it is; anything else an error."""
    if seed == -1:
        return random.SystemRandom().randrange(SEEDS)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEEDS:
        raise FlipbookError(field, seed, f"-1 (a random seed) or an integer from 0 to {SEEDS - 1}")
    return seed


def still_seeds(seed: int, count: int) -> tuple[int, ...]:
    """The seeds of ``count`` images from a resolved ``seed``: ``seed, seed + 1, ...`` wrapping at 2**32."""
    return tuple((seed + i) % SEEDS for i in range(count))


def _tags(text: str, field: str) -> tuple[str, list]:
    """``extract_loras`` with a malformed tag named by the prompt it is in."""
    try:
        return extract_loras(text)
    except FlipbookError as error:
        raise FlipbookError(field, error.value, error.allowed, detail=error.detail) from None


def prepare_stills(
    settings: StillSettings, networks: ExtraNetworks | None, *, seed_field: str = "seed"
) -> PreparedStills:
    """Check ``settings`` and build the requests; no model is loaded. Every problem is one
    :class:`FlipbookError` (the seed's named ``seed_field``). Without ``networks`` (the A1111 API checks a
    request before its worker knows the models folder) the prompts' ``<lora:...>`` tags are checked and
    taken out but not looked up."""
    from flipbook.samplers.names import resolve_sampler

    s = settings
    resolve_sampler(s.sampler)
    for name in ("count", "batch_size"):
        if getattr(s, name) < 1:
            raise FlipbookError(name, getattr(s, name), "an integer >= 1")
    seeds = still_seeds(resolve_seed(s.seed, seed_field), s.count)
    if s.refiner is None and s.refiner_switch_at != StillSettings.refiner_switch_at:
        raise FlipbookError(
            "refiner_switch_at",
            s.refiner_switch_at,
            f"{StillSettings.refiner_switch_at:g} (unused) without a refiner",
        )
    if networks is None:
        (prompt, _), (negative, _), loras = (
            _tags(s.prompt, "prompt"),
            _tags(s.negative_prompt, "negative_prompt"),
            (),
        )
    else:
        prompt, loras = networks.resolve(s.prompt)
        negative, _ = networks.resolve(s.negative_prompt)
    requests = tuple(
        FrameRequest(
            prompt,
            negative,
            seed=seed,
            num_inference_steps=s.steps,
            guidance_scale=s.cfg_scale,
            sampler=s.sampler,
            width=s.width,
            height=s.height,
            image=s.inits[i % len(s.inits)] if s.inits else None,
            strength=s.strength,
            mask_image=s.mask,
            mask_blur=s.mask_blur,
            masked_content=s.masked_content,
            inpaint_overlay=s.overlay and s.mask is not None,
            noise_multiplier=s.noise_multiplier,
            clip_skip=s.clip_skip,
            loras=loras,
            controls=s.controls,
            refiner_switch_at=s.refiner_switch_at if s.refiner else None,
        )  # fmt: skip
        for i, seed in enumerate(seeds)
    )
    for request in requests:
        request.validate()
    if s.hires is None:
        return PreparedStills(settings, seeds, requests, (prompt, negative))
    hires = _hires_requests(s, seeds, networks)
    return PreparedStills(
        settings, seeds, requests, (prompt, negative, hires[0].prompt, hires[0].negative_prompt), hires
    )


def _hires_requests(
    s: StillSettings, seeds: tuple[int, ...], networks: ExtraNetworks | None
) -> tuple[FrameRequest, ...]:
    """Every image's second-pass request (checked; its start comes from the first pass): the upscaled size,
    A1111's second-pass schedule, the hires sampler and prompts (their ``<lora:...>`` tags resolved as the
    first pass's are)."""
    from flipbook.samplers.names import resolve_sampler

    h = s.hires
    if s.inits:
        raise FlipbookError("hires", "given", "hires fix with txt2img only (img2img sets its own size)")
    _check_upscaler(h.upscaler, networks)
    width, height = final_size(h, s.width, s.height)
    schedule, strength = second_pass_schedule(h, s.steps)
    sampler = h.sampler or s.sampler
    try:
        resolve_sampler(sampler)
    except FlipbookError as error:
        raise FlipbookError("hires.sampler", error.value, error.allowed) from None
    texts = (h.prompt or s.prompt, h.negative_prompt or s.negative_prompt)
    (prompt, _), (negative, _), loras = (
        _tags(texts[0], "hires.prompt"),
        _tags(texts[1], "hires.negative_prompt"),
        (),
    )
    if networks is not None:
        prompt, loras = networks.resolve(texts[0])
        negative, _ = networks.resolve(texts[1])
    requests = tuple(
        FrameRequest(
            prompt,
            negative,
            seed=seed,
            num_inference_steps=schedule,
            guidance_scale=s.cfg_scale,
            sampler=sampler,
            width=width,
            height=height,
            strength=strength,
            clip_skip=s.clip_skip,
            loras=loras,
            controls=s.controls,
        )  # fmt: skip
        for seed in seeds
    )
    for request in requests:
        request.validate()
    return requests


def _check_upscaler(name: str, networks: ExtraNetworks | None) -> None:
    """A hires upscaler is built in, or (with a models folder) an upscaling model found there."""
    if name in LATENT_UPSCALERS or name in PIXEL_UPSCALERS:
        return
    builtin = ", ".join([*LATENT_UPSCALERS, *PIXEL_UPSCALERS])
    folders = networks.folders if networks is not None else None
    if networks is None:  # checked again by the worker, which knows the models folder
        return
    if folders is None:
        raise FlipbookError("hires.upscaler", name, f"{builtin}, or an upscaling model with --models-dir")
    try:
        folders.find("upscaler", name)
    except FlipbookError as error:
        raise FlipbookError(
            "hires.upscaler", name, f"{builtin}, or {error.allowed}", detail=error.detail
        ) from None


def make_stills(
    prepared: PreparedStills,
    bundle: ModelBundle,
    networks: ExtraNetworks,
    events: Events,
    folder: Path,
    *,
    finish_on_cancel: bool = False,
    controlnets: ControlNets | None = None,
) -> StillsMade:
    """Sample every image on ``bundle`` (the prompts' textual-inversion embeddings loaded into it first) and
    write each into ``folder`` as ``NNNNN-SEED.png`` (NNNNN counting the PNGs already there) with A1111's
    parameters. ``finish_on_cancel``: a cancel is A1111's interrupt (the images made so far, the one being
    sampled as it stands, are written and returned; see :class:`~flipbook.sampling.core.SamplingCore`)."""
    from flipbook.io.pnginfo import format_parameters, save_png
    from flipbook.sampling.core import SamplingCore

    embeddings = networks.load_embeddings_for(bundle.pipe, prepared.prompts)
    core = SamplingCore(bundle, events, controlnets, finish_on_cancel=finish_on_cancel)
    batch_size, hires = prepared.settings.batch_size, prepared.settings.hires
    if hires is None:
        images = core.generate(list(prepared.requests), batch_size=batch_size)
    else:  # the first pass's latents (a latent upscaler) or pictures, then the second pass from them
        output = "latent" if hires.latent else "pil"
        firsts = core.generate(list(prepared.requests), batch_size=batch_size, output_type=output)
        images = second_pass(
            hires, core, bundle, prepared.hires_requests, firsts, batch_size, networks.folders
        )
    stills = []
    refiner_hash = bundle.refiner.hash if bundle.refiner is not None else None
    for seed, image in zip(prepared.seeds[: len(images)], images, strict=True):
        parameters = still_parameters(prepared.settings, seed, refiner_hash)
        path = save_png(image, _next_free(folder, seed), parameters)
        stills.append(Still(seed=seed, path=path, infotext=format_parameters(parameters)))
    return StillsMade(tuple(stills), tuple(embeddings))


def still_parameters(settings: StillSettings, seed: int, refiner_hash: str | None = None):
    """A1111 parameters of one still, written into its PNG (and returned by the API as its infotext); the
    refiner named with its ``refiner_hash`` (a single file's) as A1111 names it."""
    from flipbook import __version__
    from flipbook.io.pnginfo import GenerationParameters, refiner_parameters

    s = settings
    strength = s.strength if s.inits else s.hires.denoising_strength if s.hires else None
    hires = infotext_extras(s.hires, s.sampler, s.prompt, s.negative_prompt) if s.hires else {}
    if s.refiner is not None:
        hires |= refiner_parameters(s.refiner, refiner_hash, s.refiner_switch_at)
    return GenerationParameters(
        prompt=s.prompt, negative_prompt=s.negative_prompt, steps=s.steps, sampler=s.sampler,
        cfg_scale=s.cfg_scale, seed=seed, width=s.width, height=s.height, denoising_strength=strength,
        clip_skip=s.clip_skip if s.clip_skip > 1 else None, model_name=s.model,
        extra={**hires, "Version": f"flipbook {__version__}"},
    )  # fmt: skip


def _next_free(folder: Path, seed: int) -> Path:
    existing = len(list(folder.glob("*.png")))
    return folder / f"{existing:05d}-{seed}.png"

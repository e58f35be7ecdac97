"""The sampling core: one denoising loop over diffusers parts for txt2img, img2img and inpainting.

It gives the same images as diffusers' StableDiffusion{,Img2Img,Inpaint}Pipeline for the same seeds and
settings (tests/test_equivalence.py), and adds what animation needs: per-request prompt/cfg/steps/strength/
sampler, several frames in one UNet call, per-frame generators, an embedding cache, composable prompts,
A1111 prompt weighting and chunking, prompt interpolation (lerp/slerp of two prompts' embeddings), ControlNet
units (diffusers' StableDiffusionControlNet{,Img2Img}Pipeline and MultiControlNet, with per-request images and
weights inside one batch), and one events object for progress, preview and cancel.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
import PIL.Image
import torch
from diffusers.image_processor import VaeImageProcessor

from flipbook.errors import FlipbookError
from flipbook.events import Events, RenderCancelled, StepEvent
from flipbook.models.bundle import ModelBundle
from flipbook.models.controlnet import ControlNets
from flipbook.models.families import get_family
from flipbook.models.lora import LoraSet
from flipbook.samplers.schedulers import make_scheduler
from flipbook.sampling.conditioning import Conditioning, PromptConditioner, stack
from flipbook.sampling.requests import Control, FrameRequest
from flipbook.sampling.steps import (
    add_residuals,
    check_finite,
    first_expert_steps,
    latents_preview,
    residual_kwargs,
    second_expert_timesteps,
    skip_to_strength,
    step_kwargs,
    switch_timestep,
)

logger = logging.getLogger(__name__)


@dataclass
class _Guidance:
    """Rows of the UNet batch that belong to one request, and how to combine them."""

    uncond_row: int | None
    cond_rows: list[int]
    weights: list[float]
    guidance_scale: float


@dataclass
class _ControlUnit:
    """One ControlNet unit of a batch: the network, its control image per UNet row, and per row the weight and
    the share of the steps it acts on (rows of one request share its values, as diffusers duplicates the
    control image for the classifier-free guidance rows)."""

    controlnet: torch.nn.Module
    images: torch.Tensor  # UNet rows x 3 x H x W, in [0, 1]
    scales: list[float]
    starts: list[float]
    ends: list[float]
    control_type: int | None = None  # a union ControlNet's control (diffusers' control_mode)

    def union_kwargs(self, rows: int) -> dict:
        """A union ControlNet's arguments (diffusers' ControlNetUnion pipeline, one control per call): the image
        as a list, the one-hot control type per row and its index; empty for any other ControlNet."""
        if self.control_type is None:
            return {"controlnet_cond": self.images}
        types = torch.zeros(rows, self.controlnet.config.num_control_type, dtype=self.controlnet.dtype)
        types[:, self.control_type] = 1
        return {
            "controlnet_cond": [self.images],
            "control_type": types.to(self.images.device),
            "control_type_idx": [self.control_type],
        }

    def scales_at(self, step: int, steps: int) -> list[float]:
        """Per-row ``conditioning_scale`` at ``step``: diffusers' ``controlnet_keep``, 1 while
        ``start <= step / steps`` and ``(step + 1) / steps <= end``, else 0, times the weight."""
        return [
            scale * (1.0 - float(step / steps < start or (step + 1) / steps > end))
            for scale, start, end in zip(self.scales, self.starts, self.ends, strict=True)
        ]


@dataclass
class _Stage:
    """One denoiser's share of a batch's schedule: its UNet, scheduler and timesteps, the batch's conditioning
    as its encoder gives it (rows laid out alike), its scheduler's step arguments, its ControlNet units and an
    inpainting UNet's extra input channels."""

    unet: torch.nn.Module
    scheduler: object
    timesteps: torch.Tensor
    text: Conditioning
    stepping: dict
    controls: list[_ControlUnit]
    extra_channels: torch.Tensor | None


@dataclass
class _Latents:
    """Initial latents of a batch and, for inpainting, what the loop blends back outside the mask."""

    latents: torch.Tensor
    noise: torch.Tensor | None = None
    image_latents: torch.Tensor | None = None
    mask: torch.Tensor | None = None  # at latent size, 1 = repaint
    masked_image_latents: torch.Tensor | None = None
    source_latents: torch.Tensor | None = None  # img2img: the init image's latents, before noise


class SamplingCore:
    """Samples images from :class:`FrameRequest`s on one :class:`ModelBundle`.

    One instance serves one run: its prompt-embedding cache lives as long as it does. ``events`` carries
    progress, previews and cancellation; nothing global is read or written. ``controlnets`` loads the
    ControlNets that requests name (each once); pass the run's own to share them across checkpoints.

    ``finish_on_cancel`` is A1111's interrupt (the still-image API): a cancel stops the batch being sampled
    at the step it reached and decodes it as it stands, no later batch starts, and :meth:`generate` returns
    the images made so far (fewer than asked). Without it a cancel raises :class:`RenderCancelled`. With it a
    skip (:meth:`Events.skip`, A1111's skip) finishes the batch being sampled the same way and goes on with
    the next.
    """

    def __init__(
        self,
        model: ModelBundle,
        events: Events | None = None,
        controlnets: ControlNets | None = None,
        *,
        finish_on_cancel: bool = False,
    ) -> None:
        self.model = model
        self.finish_on_cancel = finish_on_cancel
        self.events = events or Events()
        self.controlnets = controlnets if controlnets is not None else ControlNets()
        self.loras = LoraSet(model.pipe)
        self._encoders: dict[tuple[int, int], PromptConditioner] = {}
        self._active_loras: tuple = ()
        scale = model.vae_scale_factor
        self.image_processor = VaeImageProcessor(vae_scale_factor=scale)
        self.mask_processor = VaeImageProcessor(
            vae_scale_factor=scale, do_normalize=False, do_binarize=True, do_convert_grayscale=True
        )
        self.soft_mask_processor = VaeImageProcessor(
            vae_scale_factor=scale, do_normalize=False, do_convert_grayscale=True
        )
        self.control_image_processor = VaeImageProcessor(
            vae_scale_factor=scale, do_convert_rgb=True, do_normalize=False
        )
        self.stats = {"unet_calls": 0, "unet_rows": 0, "controlnet_calls": 0}
        self._sizes_noted: set[tuple[int, int]] = set()
        self._dtypes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # ---- public API -------------------------------------------------------------------------------------

    def generate(
        self,
        requests: Sequence[FrameRequest],
        *,
        batch_size: int = 1,
        output_type: str = "pil",
        fixed_batch: bool = False,
    ) -> list:
        """Sample every request; requests that share a batch key are denoised ``batch_size`` at a time.

        ``fixed_batch``: every UNet call holds ``batch_size`` requests, a short batch filled up with copies of
        its last request (their images are dropped). A frame's numbers can depend on how many frames share its
        call (some CPUs' matrix kernels round differently for a different row count), so with a fixed count a
        frame comes out the same whichever frames it is made with: after a resume or a farm split mid-batch,
        and at the end of a render as in a longer one."""
        for request in requests:
            request.validate(self.model.vae_scale_factor)
            self._note_size(request.width, request.height)
        results: list = [None] * len(requests)
        for indices in _batches(requests, batch_size):
            if self.finish_on_cancel and self.events.cancelled:
                return [image for image in results if image is not None]
            batch = [requests[i] for i in indices]
            filler = [batch[-1]] * (batch_size - len(batch)) if fixed_batch else []
            images = self.run_batch(batch + filler, output_type=output_type, ids=tuple(indices))
            for i, image in zip(indices, images[: len(indices)], strict=True):
                results[i] = image
        return results

    def decode(self, latents: Sequence[torch.Tensor]) -> list[PIL.Image.Image]:
        """Latents from ``generate(..., output_type="latent")`` as pictures."""
        return self._decode(torch.stack(list(latents)), "pil")

    @torch.no_grad()
    def run_batch(
        self, requests: Sequence[FrameRequest], *, output_type: str = "pil", ids: tuple = ()
    ) -> list:
        """Denoise requests that share one batch key together, in one UNet call per step."""
        first = requests[0]
        ids = ids or tuple(range(len(requests)))

        # 1. Activate the batch's LoRAs (a no-op when unchanged)
        self._activate_loras(first.loras)

        # 2. Encode prompts (cached) and lay out the UNet batch rows
        text, guidance = self._prepare_conditioning(requests, first.clip_skip)

        # 3-4. Prepare timesteps, and latents with one generator per request
        scheduler, timesteps, generators, init = self.start_batch(requests)
        latents = init.latents

        # 5. Denoising loop (ControlNet units add their residuals to the same UNet call); with a refiner
        #    switch, the model runs the first share of the schedule and the refiner the rest
        rows = row_sources(guidance, text.rows)
        stage = _Stage(
            self.model.unet, scheduler, timesteps, text, step_kwargs(scheduler, generators, first.eta),
            self._prepare_controls(requests, guidance, rows), self._extra_channels(self.model.unet, init, rows),
        )  # fmt: skip
        stages = (
            [stage] if first.refiner_switch_at is None else self._expert_stages(stage, requests, generators)
        )
        done, total = 0, sum(len(stage.timesteps) for stage in stages)
        for stage in stages:
            latents, stopped = self._denoise(stage, latents, init, guidance, rows, ids, done, total)
            done += len(stage.timesteps)
            if stopped:
                break

        # 6. Decode and post-process
        images = self._decode(latents, output_type)
        if first.mask_image is not None and first.inpaint_overlay:
            images = [self._overlay(r, img) for r, img in zip(requests, images, strict=True)]
        return images

    def _denoise(
        self, stage: _Stage, latents, init: _Latents, guidance, rows, ids: tuple, done: int, total: int
    ) -> tuple[torch.Tensor, bool]:
        """One denoiser's steps; ``done`` steps of ``total`` came before (progress and ControlNet guidance ranges
        count them all). Returns the latents and whether an A1111 interrupt or skip stopped the batch here."""
        scheduler, timesteps, text = stage.scheduler, stage.timesteps, stage.text
        for i, t in enumerate(timesteps):
            model_input = scheduler.scale_model_input(latents, t)
            residuals = self._control_residuals(stage.controls, model_input[rows], t, text, done + i, total)
            noise_pred = self._predict_noise(
                model_input, t, text, guidance, rows, stage.extra_channels, residuals, unet=stage.unet
            )
            latents = scheduler.step(noise_pred, t, latents, **stage.stepping, return_dict=False)[0]
            if init.image_latents is not None:
                latents = _blend_unmasked(scheduler, latents, init, timesteps, i)
            try:
                self.events.step(
                    StepEvent(step=done + i + 1, total_steps=total, frames=ids),
                    preview=lambda lat=latents: latents_preview(lat[: len(ids)], self.model.tiny_vae),
                )
            except RenderCancelled:
                if not self.finish_on_cancel:
                    raise
                return latents, True
            if self.finish_on_cancel and self.events.take_skip():
                return latents, True
        return latents, False

    def _extra_channels(self, unet, init: _Latents, rows) -> torch.Tensor | None:
        """An inpainting UNet's (9 input channels) mask and masked image per row; None for any other UNet."""
        if unet.config.in_channels != 9:
            return None
        return torch.cat([init.mask, init.masked_image_latents], dim=1)[rows]

    def _expert_stages(
        self, stage: _Stage, requests: Sequence[FrameRequest], generators: Sequence[torch.Generator]
    ) -> list[_Stage]:
        """The model's share of ``stage`` and the refiner's, as diffusers' ensemble of expert denoisers splits
        a schedule (``denoising_end`` on the base, ``denoising_start`` on the refiner): the model runs the
        timesteps at or above the switch, then the refiner, with a scheduler of its own and the prompts
        encoded by its own encoder, runs those below it from the model's latents. The requests' generators go
        on drawing (stochastic samplers) and ControlNet units, made for the model's UNet, act on its share."""
        first, refiner = requests[0], self.model.refiner
        if refiner is None:
            raise FlipbookError(
                "model.refiner", None, "a refiner for requests with refiner_switch_at",
                detail=f"{self.model.name} was loaded without one",
            )  # fmt: skip
        cutoff = switch_timestep(stage.scheduler, first.refiner_switch_at)
        base = replace(stage, timesteps=stage.timesteps[: first_expert_steps(stage.timesteps, cutoff)])
        scheduler = make_scheduler(
            first.sampler, refiner.scheduler_config, noise_seed=[r.seed for r in requests]
        )
        scheduler.set_timesteps(first.num_inference_steps, device=self.model.device)
        begin = len(stage.scheduler.timesteps) - len(stage.timesteps)
        timesteps = second_expert_timesteps(scheduler, cutoff, earliest=begin)
        text, _ = self._prepare_conditioning(requests, first.clip_skip, model=refiner)
        second = _Stage(
            refiner.unet, scheduler, timesteps, text.to(self.model.device, self.net_dtype(refiner.unet)),
            step_kwargs(scheduler, generators, first.eta), [], None,
        )  # fmt: skip
        return [base, second]

    def start_batch(self, requests: Sequence[FrameRequest]) -> tuple:
        """Stages 3-4 of :meth:`run_batch` for requests that share a batch key: their scheduler, the timesteps
        they run (img2img: from ``strength`` on), one generator per request and the initial latents."""
        first = requests[0]
        # DPM++ SDE draws its Brownian noise from its own sampler: one tree per request, from its own seed
        scheduler = make_scheduler(
            first.sampler, self.model.scheduler_config, noise_seed=[r.seed for r in requests]
        )
        scheduler.set_timesteps(first.num_inference_steps, device=self.model.device)
        timesteps = scheduler.timesteps
        if first.img2img:
            timesteps = skip_to_strength(scheduler, first.num_inference_steps, first.strength)
        generators = [torch.Generator("cpu").manual_seed(r.seed) for r in requests]
        init = self._prepare_latents(
            requests, scheduler, timesteps, generators, self.net_dtype(self.model.unet)
        )
        return scheduler, timesteps, generators, init

    def net_dtype(self, net: torch.nn.Module) -> torch.dtype:
        """``net.dtype``, looked up once per net: diffusers walks every submodule to answer it (milliseconds a
        call, several calls a frame), and a loaded net keeps its dtype."""
        if net not in self._dtypes:
            self._dtypes[net] = net.dtype
        return self._dtypes[net]

    def _note_size(self, width: int, height: int) -> None:
        """Log the family's warning for a size its models render badly (once per size and run)."""
        note = get_family(self.model.family).size_note
        if note is None or (width, height) in self._sizes_noted:
            return
        self._sizes_noted.add((width, height))
        if (text := note(width, height)) is not None:
            logger.warning("%s: %s", self.model.name, text)

    # ---- 1-2. LoRAs and prompts ------------------------------------------------------------------------

    def _activate_loras(self, loras: tuple) -> None:
        if loras != self._active_loras:
            self.loras.activate(list(loras))
            self._active_loras = loras
            for encoder in self._encoders.values():
                encoder.clear()  # a LoRA may change the text encoder

    def encoder(self, clip_skip: int, model: ModelBundle | None = None) -> PromptConditioner:
        """The prompt encoder of ``model``'s family (the core's model; or its refiner) for ``clip_skip`` (one
        per model and value, each with its cache)."""
        model = model or self.model
        key = (id(model), clip_skip)
        if key not in self._encoders:
            self._encoders[key] = get_family(model.family).encoder(model, clip_skip)
        return self._encoders[key]

    def _prepare_conditioning(
        self, requests: Sequence[FrameRequest], clip_skip: int, model: ModelBundle | None = None
    ) -> tuple[Conditioning, list[_Guidance]]:
        """All rows of the UNet batch: unconditional rows first, then every request's prompt parts.

        This is diffusers' ``cat([uncond, cond])`` order, extended to composable prompts. Classifier-free
        guidance is skipped for a request with cfg <= 1 and a single prompt part. Blended requests (prompt
        interpolation) get their mixed embeddings in the same rows, so they batch with any others. ``model``:
        whose encoder (default the core's model; the layout is the same for its refiner).
        """
        encoder = self.encoder(clip_skip) if model is None else self.encoder(clip_skip, model)
        uncond_rows: list[Conditioning] = []
        cond_rows: list[Conditioning] = []
        layout: list[tuple[int | None, list[int], list[float], float]] = []
        for request in requests:
            parts = _positive_parts(encoder, request)
            needs_uncond = request.guidance_scale > 1.0 or len(parts) > 1
            uncond = None
            if needs_uncond:
                uncond = len(uncond_rows)
                uncond_rows.append(_negative_conditioning(encoder, request))
            rows = []
            for part, _ in parts:
                rows.append(len(cond_rows))
                cond_rows.append(part)
            layout.append((uncond, rows, [w for _, w in parts], request.guidance_scale))
        text = encoder.at_size(stack(uncond_rows + cond_rows, encoder), requests[0].width, requests[0].height)
        offset = len(uncond_rows)
        guidance = [_Guidance(u, [offset + r for r in rows], weights, g) for u, rows, weights, g in layout]
        return text.to(self.model.device, self.net_dtype(self.model.unet)), guidance

    @torch.no_grad()
    def prompt_embeddings(
        self, request: FrameRequest
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, float]]]:
        """What a request is conditioned on: its negative's embedding and each prompt part's ``(embedding,
        weight)``, blended as the request asks, before padding to the batch's length. Activates the request's
        LoRAs (they may change the text encoder), as sampling it would."""
        request.validate(self.model.vae_scale_factor)
        self._activate_loras(request.loras)
        encoder = self.encoder(request.clip_skip)
        parts = [(part.embeds, weight) for part, weight in _positive_parts(encoder, request)]
        return _negative_conditioning(encoder, request).embeds, parts

    # ---- 4. latents -------------------------------------------------------------------------------------

    def _prepare_latents(self, requests, scheduler, timesteps, generators, dtype) -> _Latents:
        first = requests[0]
        scale = self.model.vae_scale_factor
        shape = (1, self.model.vae.config.latent_channels, first.height // scale, first.width // scale)
        if not first.img2img:
            noise = _initial_noise(requests, shape, generators, self.model.device, dtype)
            return _Latents(noise * scheduler.init_noise_sigma)

        latent_timestep = timesteps[:1].repeat(len(requests))
        if first.init_latents is not None:  # img2img from latents (A1111's latent hires fix): no VAE encode
            rows = [torch.as_tensor(r.init_latents, dtype=torch.float32).reshape(shape) for r in requests]
            image_latents = torch.cat(rows).to(self.model.device, dtype)
            noise = _initial_noise(requests, shape, generators, self.model.device, dtype)
            noise = noise * _noise_multipliers(requests, noise_like=image_latents)
            latents = scheduler.add_noise(image_latents, noise, latent_timestep)
            return _Latents(latents, source_latents=image_latents)
        images = torch.cat([self._preprocess_image(r) for r in requests])
        if first.mask_image is None:
            image_latents = self._encode_images(images, generators)
            noise = _initial_noise(requests, shape, generators, self.model.device, dtype)
            noise = noise * _noise_multipliers(requests, noise_like=image_latents)
            latents = scheduler.add_noise(image_latents, noise, latent_timestep)
            return _Latents(latents, source_latents=image_latents)
        return self._prepare_inpaint_latents(
            requests, images, scheduler, latent_timestep, generators, shape, dtype
        )

    def _prepare_inpaint_latents(
        self, requests, images, scheduler, latent_timestep, generators, shape, dtype
    ):
        """diffusers' inpaint order of random draws: image latents, noise, then the masked image's latents."""
        first = requests[0]
        masks = torch.cat([self._preprocess_mask(r, binary=True) for r in requests])
        if first.masked_content == "fill":
            images = torch.cat([self._fill_masked(img, m) for img, m in zip(images, masks, strict=True)])
        # A regular UNet needs the image latents for blending; an inpainting UNet only to start from them.
        regular_unet = self.model.unet.config.in_channels == 4
        image_latents = None
        if regular_unet or first.strength < 1.0:
            image_latents = self._encode_images(images, generators)
        noise = _initial_noise(requests, shape, generators, self.model.device, dtype)
        start = image_latents
        if image_latents is not None and first.masked_content in ("latent_noise", "latent_nothing"):
            latent_mask = _to_latent_size(masks, shape)
            fill = (
                _randn(shape, generators, self.model.device, dtype)
                if first.masked_content == "latent_noise"
                else 0
            )
            start = image_latents * (1 - latent_mask) + latent_mask * fill
        if first.strength == 1.0:
            latents = noise * scheduler.init_noise_sigma
        else:
            latents = scheduler.add_noise(start, noise, latent_timestep)
        masked_image_latents = self._encode_images(images * (masks < 0.5), generators)
        blend_mask = masks
        if first.mask_blur > 0:
            blend_mask = torch.cat([self._preprocess_mask(r, binary=False) for r in requests])
        return _Latents(
            latents=latents,
            noise=noise,
            image_latents=image_latents if regular_unet else None,
            mask=_to_latent_size(blend_mask, shape).to(dtype),
            masked_image_latents=masked_image_latents,
        )

    def _preprocess_image(self, request: FrameRequest) -> torch.Tensor:
        """The init image as the VAE takes it (1 x 3 x H x W in [-1, 1], float32, on the model's device)."""
        levels = _rgb_levels(request.image, request.width, request.height)
        if levels is not None:
            return _normalized(levels.to(self.model.device))
        image = self.image_processor.preprocess(request.image, height=request.height, width=request.width)
        return image.to(self.model.device, torch.float32)

    def _preprocess_mask(self, request: FrameRequest, *, binary: bool) -> torch.Tensor:
        mask = request.mask_image
        if request.mask_blur > 0:
            mask = _to_pil(mask).convert("L")
            mask = self.mask_processor.blur(mask, request.mask_blur)
        processor = self.mask_processor if binary else self.soft_mask_processor
        return processor.preprocess(mask, height=request.height, width=request.width).to(self.model.device)

    @staticmethod
    def _fill_masked(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A1111's "fill": paint the masked area from its surroundings before encoding (OpenCV Telea)."""
        rgb = ((image.permute(1, 2, 0).float().cpu().numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
        hole = (mask[0].cpu().numpy() >= 0.5).astype(np.uint8) * 255
        filled = cv2.inpaint(rgb, hole, 16, cv2.INPAINT_TELEA)
        out = torch.from_numpy(filled).permute(2, 0, 1).float() / 127.5 - 1
        return out.unsqueeze(0).to(image.device)

    def _encode_images(self, images: torch.Tensor, generators) -> torch.Tensor:
        """VAE-encode each image with its own generator (a latent sample, as diffusers draws it)."""
        vae = self.model.vae
        latents = [
            vae.encode(images[i : i + 1].to(self.net_dtype(vae))).latent_dist.sample(generators[i])
            for i in range(images.shape[0])
        ]
        return (vae.config.scaling_factor * torch.cat(latents)).to(self.net_dtype(self.model.unet))

    # ---- 5. ControlNet units ----------------------------------------------------------------------------

    def _prepare_controls(
        self, requests: Sequence[FrameRequest], guidance: Sequence[_Guidance], rows: torch.Tensor
    ) -> list[_ControlUnit]:
        """Each unit's network (loaded once per run), its control images laid out like the UNet rows, and per
        row its weight and step range. The batch key guarantees every request names the same networks."""
        uncond_rows = {c.uncond_row for c in guidance if c.uncond_row is not None}
        sources = rows.tolist()
        units = []
        for j in range(len(requests[0].controls)):
            per_request = [request.controls[j] for request in requests]
            controlnet = self._controlnet(per_request[0])
            images = torch.cat(
                [self._preprocess_control(c.image, r) for c, r in zip(per_request, requests, strict=True)]
            )
            # diffusers runs a global-pooling ControlNet (shuffle) on the conditional rows only ("guess mode")
            # and adds zeros to the unconditional ones: a weight of 0 on those rows does the same.
            pooled = bool(controlnet.config.get("global_pool_conditions", False))
            _check_control_type(controlnet, per_request[0], self.controlnets.fields, j)
            units.append(
                _ControlUnit(
                    controlnet=controlnet,
                    images=images.to(self.model.device, controlnet.dtype)[rows],
                    scales=[
                        0.0
                        if pooled and row in uncond_rows
                        else float(per_request[source].conditioning_scale)
                        for row, source in enumerate(sources)
                    ],
                    starts=[float(per_request[source].guidance_start) for source in sources],
                    ends=[float(per_request[source].guidance_end) for source in sources],
                    control_type=per_request[0].control_type,
                )
            )
        return units

    def _controlnet(self, control: Control) -> torch.nn.Module:
        if control.controlnet is not None:
            return control.controlnet
        return self.controlnets.get(control.model, self.model)

    def _preprocess_control(self, image, request: FrameRequest) -> torch.Tensor:
        """diffusers' ``prepare_image``: RGB at the request's size, values in [0, 1] (not normalised)."""
        processed = self.control_image_processor.preprocess(image, height=request.height, width=request.width)
        return processed.to(dtype=torch.float32)

    def _control_residuals(
        self, controls: Sequence[_ControlUnit], control_input, t, text: Conditioning, step: int, steps: int
    ) -> tuple[list[torch.Tensor], torch.Tensor] | None:
        """The summed ControlNet residuals for one step (MultiControlNet's sum), or None when no unit acts.

        Every unit sees the same rows as the UNet (unconditional rows too, as without guess mode) with a
        per-row ``conditioning_scale`` (a tensor that broadcasts over each row), so requests in one batch
        keep their own weights. A unit whose every row has weight 0 at this step (outside its guidance range,
        or weight 0) is skipped: its residuals would be exact zeros, and adding zeros changes nothing.
        """
        down, mid = None, None
        for unit in controls:
            scales = unit.scales_at(step, steps)
            if not any(scales):
                continue
            scale = torch.tensor(scales, dtype=unit.controlnet.dtype, device=control_input.device).view(
                -1, 1, 1, 1
            )
            self.stats["controlnet_calls"] += 1
            unit_down, unit_mid = unit.controlnet(
                control_input.to(unit.controlnet.dtype), t, **text.unet_kwargs(),
                **unit.union_kwargs(control_input.shape[0]),
                conditioning_scale=scale if unit.control_type is None else [scale], guess_mode=False,
                return_dict=False,
            )  # fmt: skip
            down, mid = add_residuals((down, mid), (unit_down, unit_mid))
        return None if down is None else (down, mid)

    # ---- 5. one denoising step -------------------------------------------------------------------------

    def _predict_noise(
        self, model_input, t, text: Conditioning, guidance, rows, extra_channels, residuals=None, unet=None
    ) -> torch.Tensor:
        """One UNet call (the model's, or ``unet``) for every row of the batch (with ControlNet residuals), then
        guidance per request."""
        unet_input = model_input[rows]
        if extra_channels is not None:
            unet_input = torch.cat([unet_input, extra_channels], dim=1)
        self.stats["unet_calls"] += 1
        self.stats["unet_rows"] += unet_input.shape[0]
        out = (unet or self.model.unet)(
            unet_input, t, **text.unet_kwargs(), return_dict=False, **residual_kwargs(residuals)
        )[0]
        return torch.cat([guide_noise(out, c).unsqueeze(0) for c in guidance])

    # ---- 6. decode -------------------------------------------------------------------------------------

    def _decode(self, latents: torch.Tensor, output_type: str) -> list:
        if output_type == "latent":
            return list(latents)
        vae = self.model.tiny_vae if self.model.decode_with_tiny_vae else self.model.vae
        latents = check_finite(latents, "denoising (the UNet)")
        images = vae.decode(latents.to(self.net_dtype(vae)) / vae.config.scaling_factor, return_dict=False)[0]
        images = check_finite(images, "the VAE's decode")
        if output_type != "np" and images.shape[1] == 3:
            return [PIL.Image.fromarray(levels) for levels in _rgb_pictures(images)]
        images = self.image_processor.postprocess(images, output_type="np" if output_type == "np" else "pil")
        return list(images)

    def _overlay(self, request: FrameRequest, image):
        """A1111's overlay: outside the (blurred) mask the original pixels are kept exactly."""
        mask = self._preprocess_mask(request, binary=request.mask_blur == 0)[0, 0].cpu().numpy()[..., None]
        original = self._preprocess_image(request)[0].permute(1, 2, 0).cpu().numpy() / 2 + 0.5
        result = np.asarray(image, dtype=np.float32) / (255.0 if isinstance(image, PIL.Image.Image) else 1.0)
        blended = original * (1 - mask) + result * mask
        if isinstance(image, PIL.Image.Image):
            return PIL.Image.fromarray((blended * 255).round().clip(0, 255).astype(np.uint8))
        return blended.astype(np.float32)


# ---- small helpers ---------------------------------------------------------------------------------------


def _batches(requests: Sequence[FrameRequest], batch_size: int) -> Iterator[list[int]]:
    """Consecutive runs of requests with the same batch key, at most ``batch_size`` long."""
    current: list[int] = []
    for i, request in enumerate(requests):
        if current and (
            len(current) >= batch_size or requests[current[0]].batch_key() != request.batch_key()
        ):
            yield current
            current = []
        current.append(i)
    if current:
        yield current


def _positive_parts(encoder: PromptConditioner, request: FrameRequest) -> list[tuple[Conditioning, float]]:
    """``(conditioning, weight)`` per composable part of the prompt; a blended prompt is a single part whose
    conditioning is mixed with ``blend_prompt``'s and whose part weight (``a cat :0.7``) is interpolated too."""
    parts, others = request.prompt_parts()
    if others is None:
        return [(encoder.condition(text), weight) for text, weight in parts]
    (text, weight_a), (other, weight_b) = parts[0], others[0]
    w = request.blend_weight
    weight = weight_a if weight_a == weight_b else (1.0 - w) * weight_a + w * weight_b
    return [(encoder.condition(text, other, w, request.blend_mode), weight)]


def _negative_conditioning(encoder: PromptConditioner, request: FrameRequest) -> Conditioning:
    return encoder.condition(
        request.negative_prompt,
        request.blend_negative_prompt,
        request.blend_weight,
        request.blend_mode,
        negative=True,
    )


def _randn(shape, generators, device, dtype) -> torch.Tensor:
    """One normal draw per generator, always on the CPU in float32 so frames don't depend on the device."""
    draws = [torch.randn(shape, generator=g, dtype=torch.float32) for g in generators]
    return torch.cat(draws).to(device, dtype)


def _initial_noise(requests, shape, generators, device, dtype) -> torch.Tensor:
    """The starting noise per request: its ``latents`` when given, else a draw from its generator (as
    :func:`_randn` draws: CPU float32), so a batch may mix both and every row matches a one-by-one run."""
    rows = [
        torch.as_tensor(r.latents, dtype=torch.float32).reshape(shape)
        if r.latents is not None
        else torch.randn(shape, generator=g, dtype=torch.float32)
        for r, g in zip(requests, generators, strict=True)
    ]
    return torch.cat(rows).to(device, dtype)


def _noise_multipliers(requests: Sequence[FrameRequest], noise_like: torch.Tensor) -> torch.Tensor:
    """Per-row initial-noise multipliers shaped to broadcast over latents (1.0 leaves the noise unchanged)."""
    values = [r.noise_multiplier for r in requests]
    return torch.tensor(values, dtype=noise_like.dtype, device=noise_like.device).view(-1, 1, 1, 1)


def _check_control_type(controlnet, control: Control, fields, index: int) -> None:
    """A union ControlNet needs to be told which control a unit's image is; any other ControlNet takes none.
    Errors name the spec's unit (``controlnet[i].control_type``) where the run knows it."""
    union = "num_control_type" in controlnet.config
    unit = fields.get(control.model, f"controls[{index}].model").removesuffix(".model")
    field, value = f"{unit}.control_type", control.control_type
    if not union and value is not None:
        raise FlipbookError(field, value, "no control type: this ControlNet is not a union model")
    if union and value is None:
        raise FlipbookError(
            field, None, f"the control this unit's image is: {control.model} is a union ControlNet"
        )
    if union and not 0 <= value < controlnet.config.num_control_type:
        raise FlipbookError(
            field, value, f"one of the model's {controlnet.config.num_control_type} control types"
        )


def row_sources(guidance: Sequence[_Guidance], n_rows: int) -> torch.Tensor:
    """For each UNet row, which request's latent it denoises."""
    sources = [0] * n_rows
    for request_index, c in enumerate(guidance):
        for row in ([c.uncond_row] if c.uncond_row is not None else []) + c.cond_rows:
            sources[row] = request_index
    return torch.tensor(sources)


def guide_noise(out: torch.Tensor, c: _Guidance) -> torch.Tensor:
    """Classifier-free guidance, with composable prompts: uncond + cfg * sum_i w_i (cond_i - uncond)."""
    if c.uncond_row is None:
        return out[c.cond_rows[0]]
    uncond = out[c.uncond_row]
    delta = sum(w * (out[r] - uncond) for r, w in zip(c.cond_rows, c.weights, strict=True))
    return uncond + c.guidance_scale * delta


def _blend_unmasked(scheduler, latents, init: _Latents, timesteps, i: int) -> torch.Tensor:
    """Inpainting with a regular UNet: outside the mask, put back the init image noised to the next step."""
    proper = init.image_latents
    if i < len(timesteps) - 1:
        proper = scheduler.add_noise(proper, init.noise, torch.tensor([timesteps[i + 1]]))
    return (1 - init.mask) * proper + init.mask * latents


def _rgb_levels(image, width: int, height: int) -> torch.Tensor | None:
    """An RGB picture of the request's size (PIL, or uint8 H x W x 3) as a uint8 H x W x 3 tensor (on the CPU
    sharing its memory where it can); None for anything diffusers' image processor has to resize or convert."""
    if isinstance(image, PIL.Image.Image):
        if image.mode != "RGB" or image.size != (width, height):
            return None
        return torch.from_numpy(np.asarray(image).copy())
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(image)
    if torch.is_tensor(image) and image.dtype == torch.uint8 and tuple(image.shape) == (height, width, 3):
        return image
    return None


def _normalized(levels: torch.Tensor) -> torch.Tensor:
    """uint8 H x W x 3 -> 1 x 3 x H x W float32 in [-1, 1] with diffusers' image processor's arithmetic
    (``levels / 255``, then ``2 x - 1``, in float32: the same values), without its PIL and numpy copies."""
    image = levels.permute(2, 0, 1).unsqueeze(0).to(torch.float32).div_(255.0)
    return image.mul_(2.0).sub_(1.0)


def _rgb_pictures(images: torch.Tensor) -> list[np.ndarray]:
    """Decoded images (N x 3 x H x W in [-1, 1]) as uint8 H x W x 3 arrays with diffusers' image processor's
    arithmetic (``x * 0.5 + 0.5`` in the images' dtype, then float32 times 255, rounded half to even, clipped
    to 0-255: the same bytes) in fewer passes: on the CPU OpenCV rounds, saturates (clipping to 0-1 first
    gives the same levels) and interleaves the channels."""
    scaled = (images * 0.5 + 0.5).float().mul_(255.0)
    if scaled.device.type != "cpu":
        levels = scaled.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()
        return list(levels.numpy())
    pictures = []
    for image in scaled.numpy():
        channels, height, width = image.shape
        planes = cv2.add(image.reshape(channels * height, width), 0.0, dtype=cv2.CV_8U)
        pictures.append(cv2.merge(list(planes.reshape(channels, height, width))))
    return pictures


def _to_latent_size(mask: torch.Tensor, shape) -> torch.Tensor:
    return torch.nn.functional.interpolate(mask, size=shape[2:])


def _to_pil(image) -> PIL.Image.Image:
    if isinstance(image, PIL.Image.Image):
        return image
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (array * 255).round().clip(0, 255).astype(np.uint8)
    return PIL.Image.fromarray(array)

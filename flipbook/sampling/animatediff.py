"""AnimateDiff sampling: every frame of a clip denoised together by a UNet with motion modules.

The UNet is diffusers' :class:`~diffusers.UNetMotionModel` assembled from the checkpoint's UNet and a
:class:`~diffusers.MotionAdapter` (a copy: the checkpoint's own UNet stays as it is). Latents are
``1 x C x frames x h x w``. At every step each context window (:mod:`flipbook.clips.windows`) runs through
the UNet with classifier-free guidance rows laid out as diffusers' AnimateDiffPipeline lays them out
(``[uncond frames, cond frames]``), the windows' guided predictions are averaged with normalised per-frame
weights, and one scheduler step moves all frames. With one window of all frames this is AnimateDiffPipeline's
loop exactly (tests/test_animatediff_mode.py compares them).

What the loop adds: per-frame text embeddings (prompt travel: each frame's prompt blended toward the next
keyframe's, through the model family's prompt encoder, e.g. A1111 weights and 75-token chunks), per-frame
guidance, per-frame initial noise from per-frame seeds (FreeNoise optionally reuses the first window's noise),
FreeInit passes, image to video (start and end images held in the initial latents as the A1111 extension
does), video to video (the source frames noised to the denoise strength), and ControlNet units applied to
every frame row, as diffusers' AnimateDiffControlNetPipeline applies a 2D ControlNet.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import PIL.Image
import torch
from diffusers import AnimateDiffPipeline, AnimateDiffSDXLPipeline, MotionAdapter, UNetMotionModel
from diffusers.image_processor import VaeImageProcessor

from flipbook.clips.windows import ContextOptions, context_windows, fuse_weights
from flipbook.errors import FlipbookError
from flipbook.events import Events, StepEvent
from flipbook.models.bundle import ModelBundle
from flipbook.models.families import get_family, with_capability
from flipbook.prompting.grammar import split_composable
from flipbook.samplers.schedulers import make_scheduler
from flipbook.sampling.conditioning import Conditioning, PromptConditioner, concat
from flipbook.sampling.steps import (
    add_residuals,
    check_finite,
    latents_preview,
    residual_kwargs,
    skip_to_strength,
    step_kwargs,
)

DECODE_CHUNK = 16
"""Frames the VAE decodes (and encodes) at once, as AnimateDiffPipeline's default ``decode_chunk_size``."""
FREE_INIT_METHODS = ("butterworth", "gaussian", "ideal", "box")
FREE_INIT_STOP_FREQUENCY = 0.25  # FreeInit's d_s and d_t (diffusers' and the paper's defaults)
BUTTERWORTH_ORDER = 4


# ---- what a clip is made from ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FramePrompt:
    """One frame's text conditioning: its prompt and negative, blended toward the next keyframe's by
    ``blend_weight`` (0 = this prompt), and its guidance scale. A ``:WEIGHT`` after the prompt scales the
    guidance as it does in the sampling core."""

    prompt: str
    negative_prompt: str = ""
    blend_prompt: str | None = None  # None: the prompt itself
    blend_negative_prompt: str | None = None
    blend_weight: float = 0.0
    guidance_scale: float = 7.5


@dataclass(frozen=True)
class ImageHold:
    """Image to video (the A1111 extension's latent power and scale): frame i's initial latent keeps
    ``1 - i ** power / scale`` (at least 0) of the start image's latent and, with an end image, frame
    ``n - 1 - k`` keeps ``1 - k ** power_last / scale_last`` of the end image's; where the two add up to more
    than 1 both are scaled down to sum 1. The rest is noise."""

    start: PIL.Image.Image | None = None
    end: PIL.Image.Image | None = None
    power: float = 1.0
    scale: float = 32.0
    power_last: float = 1.0
    scale_last: float = 32.0


@dataclass(frozen=True)
class ControlFrames:
    """One ControlNet unit over the clip: the network, a control image per frame (``F x 3 x H x W`` in [0, 1]
    at the clip's size), a weight per frame, and the share of the steps it acts on."""

    controlnet: torch.nn.Module
    images: torch.Tensor
    scales: tuple[float, ...]
    guidance_start: float = 0.0
    guidance_end: float = 1.0

    def active(self, step: int, steps: int) -> bool:
        """diffusers' ``controlnet_keep``: on while start <= step / steps and (step + 1) / steps <= end."""
        return not (step / steps < self.guidance_start or (step + 1) / steps > self.guidance_end)


@dataclass(frozen=True)
class ClipRequest:
    """A clip to sample: one :class:`FramePrompt` and one seed per frame, and the clip-wide settings.

    ``strength`` is the share of the schedule re-run (diffusers' img2img strength) when the clip starts from
    images (``video``: one image per frame; ``hold``: start/end images); without them it must be 1.
    ``free_init_iterations`` > 1 runs FreeInit. ``latents`` (``1 x C x F x h x w``, standard normal) replaces
    the noise drawn from the seeds.
    """

    prompts: tuple[FramePrompt, ...]
    seeds: tuple[int, ...]
    steps: int = 20
    sampler: str = "DDIM"
    width: int = 512
    height: int = 512
    blend_mode: str = "lerp"
    context: ContextOptions = field(default_factory=ContextOptions)
    strength: float = 1.0
    video: tuple[PIL.Image.Image, ...] | None = None
    hold: ImageHold | None = None
    free_init_iterations: int = 1
    free_init_method: str = "butterworth"
    free_noise: bool = False
    eta: float = 0.0
    controls: tuple[ControlFrames, ...] = ()
    latents: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        return len(self.prompts)

    def validate(self, vae_scale_factor: int) -> None:
        """Raise one FlipbookError naming the first bad field."""
        n = self.num_frames
        if n < 1:
            raise FlipbookError("prompts", "none", "at least one frame")
        if len(self.seeds) != n:
            raise FlipbookError("seeds", len(self.seeds), f"one seed per frame ({n})")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value < vae_scale_factor or value % vae_scale_factor:
                raise FlipbookError(name, value, f"a positive multiple of {vae_scale_factor}")
        if not 1 <= self.steps <= 1000:
            raise FlipbookError("steps", self.steps, "an integer from 1 to 1000")
        starts_from_images = self.video is not None or self.hold is not None
        if not 0.0 < self.strength <= 1.0 or (self.strength < 1.0 and not starts_from_images):
            raise FlipbookError("strength", self.strength, "in (0, 1], below 1 only with a video or images")
        if starts_from_images and int(self.steps * self.strength) < 1:
            raise FlipbookError(
                "strength", self.strength, f"at least {1 / self.steps:.3g} with {self.steps} steps"
            )
        if self.video is not None and self.hold is not None:
            raise FlipbookError("video", "given", "a video or start/end images, not both")
        if self.video is not None and len(self.video) != n:
            raise FlipbookError("video", len(self.video), f"one image per frame ({n})")
        if self.free_init_iterations < 1 or self.free_init_method not in FREE_INIT_METHODS:
            raise FlipbookError(
                "free_init", (self.free_init_iterations, self.free_init_method),
                f"at least 1 pass and a method of: {', '.join(FREE_INIT_METHODS)}",
            )  # fmt: skip
        for index, unit in enumerate(self.controls):
            if unit.images.shape[0] != n or len(unit.scales) != n:
                raise FlipbookError(f"controls[{index}]", unit.images.shape[0], f"one image per frame ({n})")


# ---- the motion UNet --------------------------------------------------------------------------------------


def motion_pipeline(
    bundle: ModelBundle, adapter: MotionAdapter
) -> AnimateDiffPipeline | AnimateDiffSDXLPipeline:
    """An AnimateDiff pipeline over the checkpoint's VAE, text encoders and tokenizers with a new
    UNetMotionModel (the checkpoint's UNet copied, the adapter's motion modules added) on the checkpoint's
    device and dtype: AnimateDiffSDXLPipeline for a checkpoint with a second text encoder (SDXL), else
    AnimateDiffPipeline.

    Why a pipeline and not only the UNet: diffusers' LoRA loading (and so :class:`~flipbook.models.lora.LoraSet`)
    works on a pipeline; the pipeline also serves as the reference the tests compare with."""
    _check_attaches(bundle)
    _check_fits(bundle, adapter)
    if getattr(bundle.unet, "peft_config", None):
        raise FlipbookError(
            "model.loras", "loaded", "a checkpoint without LoRAs loaded into it when building the motion UNet"
        )
    if getattr(bundle.unet, "original_attn_processors", None) is not None:  # diffusers' mark of fused QKV
        raise FlipbookError(
            "performance.fuse_qkv", True, "false with motion modules",
            detail="the motion UNet is built from the checkpoint's separate query, key and value layers",
        )  # fmt: skip
    unet = UNetMotionModel.from_unet2d(bundle.unet, adapter)
    _copy_top_level(bundle.unet, unet)
    unet.to(bundle.device, bundle.unet.dtype)
    unet.eval()
    parts = {
        "vae": bundle.vae, "text_encoder": bundle.text_encoder, "tokenizer": bundle.tokenizer, "unet": unet,
        "motion_adapter": adapter, "scheduler": bundle.pipe.scheduler,
    }  # fmt: skip
    second = getattr(bundle.pipe, "text_encoder_2", None)
    if second is not None:
        pipe = AnimateDiffSDXLPipeline(**parts, text_encoder_2=second, tokenizer_2=bundle.pipe.tokenizer_2)
    else:
        pipe = AnimateDiffPipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _copy_top_level(image_unet, motion_unet: UNetMotionModel) -> None:
    """The image UNet's top-level modules outside the blocks (``conv_in``, the time embeddings, SDXL's
    ``add_embedding``...) copied into the motion UNet. diffusers' ``from_unet2d`` copies the blocks, ``conv_in``
    and ``time_embedding`` but not SDXL's added-conditioning embedding, which it leaves at a fresh random
    initialisation; copying every module both have (where the shapes agree) makes the motion UNet the
    checkpoint's."""
    blocks = {"down_blocks", "up_blocks", "mid_block", "conv_in"}
    motion = dict(motion_unet.named_children())
    for name, module in image_unet.named_children():
        target = motion.get(name)
        if name in blocks or target is None or not list(module.state_dict()):
            continue
        target.load_state_dict(module.state_dict())


def _check_fits(bundle: ModelBundle, adapter: MotionAdapter) -> None:
    """The motion module has a motion layer per UNet level, as wide as the checkpoint's: an SD 1.5 module on
    an SDXL checkpoint (or the other way round) is one error naming both, not a shape error deep in torch."""
    module = tuple(adapter.config.block_out_channels)
    unet = tuple(bundle.unet.config.block_out_channels)
    if module != unet:
        raise FlipbookError(
            "animatediff.motion_module", f"a motion module for UNet widths {list(module)}",
            f"a motion module of the checkpoint's family ({get_family(bundle.family).title}, UNet widths "
            f"{list(unet)})",
            detail="SD 1.5 motion modules fit SD 1.5 checkpoints, SDXL ones (mm_sdxl_v10_beta, Hotshot-XL) SDXL",
        )  # fmt: skip


def _check_attaches(bundle: ModelBundle) -> None:
    """Motion modules attach to the image families their family declares (``Family.attaches_to``)."""
    fitting = {name for family in with_capability("motion") for name in family.attaches_to}
    if bundle.family not in fitting:
        titles = ", ".join(get_family(name).title for name in sorted(fitting))
        raise FlipbookError(
            "model.name", bundle.name, f"a checkpoint that motion modules fit ({titles})",
            detail=f"it is {get_family(bundle.family).title}",
        )  # fmt: skip


# ---- the sampler ------------------------------------------------------------------------------------------


@dataclass
class _Conditioning:
    """Per-frame text conditioning (one row per frame) and guidance: ``guided`` frames use
    ``uncond + scale * (cond - uncond)``, the others ``cond`` alone; no uncond rows when no frame is guided."""

    positive: Conditioning
    negative: Conditioning | None
    scales: torch.Tensor  # F
    guided: torch.Tensor  # F, bool

    @property
    def cond(self) -> torch.Tensor:
        """The frames' prompt embeddings, ``F x tokens x dim``."""
        return self.positive.embeds

    @property
    def uncond(self) -> torch.Tensor | None:
        """The frames' negative-prompt embeddings, or None when no frame is guided."""
        return None if self.negative is None else self.negative.embeds


class AnimateDiffSampler:
    """Samples clips (:class:`ClipRequest`) with one motion UNet.

    ``encoder`` encodes prompts (pass the sampling core's, the model family's, so its cache is shared);
    ``scheduler_config`` is the checkpoint's (with a preset's overrides); ``events`` carries progress, previews
    and cancellation. Nothing global is read or written.
    """

    def __init__(
        self,
        unet: UNetMotionModel,
        vae,
        encoder: PromptConditioner,
        scheduler_config: dict,
        events: Events | None = None,
    ) -> None:
        self.unet = unet
        self.vae = vae
        self.encoder = encoder
        self.scheduler_config = dict(scheduler_config)
        self.events = events or Events()
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.control_processor = VaeImageProcessor(
            vae_scale_factor=self.vae_scale_factor, do_convert_rgb=True, do_normalize=False
        )
        self.stats = {"unet_calls": 0, "unet_frames": 0, "controlnet_calls": 0}

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @torch.no_grad()
    def sample(self, request: ClipRequest, *, output_type: str = "pil") -> list:
        """Every frame of the clip: PIL images, ``np`` float arrays (H x W x 3 in [0, 1]) or ``latent``."""
        request.validate(self.vae_scale_factor)

        # 1. Encode every frame's prompt (blended toward its next keyframe) and negative
        conditioning = self.encode(request)

        # 2. Draw the initial noise, one draw per frame from its seed (FreeNoise: shuffled first-window noise)
        generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in request.seeds]
        noise = self._noise(request, generators)

        # 3. Encode the start images or the video: what the initial latents are made from
        image_latents = self._image_latents(request, generators)

        # 4. Denoise: one pass, or FreeInit's passes, each re-noising the last pass's low frequencies
        passes = request.free_init_iterations
        free_init = _FreeInit(request, noise.shape) if passes > 1 else None
        latents = None
        for index in range(passes):
            scheduler, timesteps = self._timesteps(request)
            if latents is None:
                latents = self._initial_latents(request, scheduler, timesteps, noise, image_latents)
            else:
                latents = free_init.renoise(latents, noise, scheduler, timesteps)
            latents = self._denoise(request, scheduler, timesteps, latents, conditioning, index * len(timesteps),
                                    passes * len(timesteps))  # fmt: skip

        # 5. Decode every frame
        return self._decode(latents, output_type)

    # ---- 1. prompts -------------------------------------------------------------------------------------

    def encode(self, request: ClipRequest) -> _Conditioning:
        """Per-frame embeddings as the sampling core makes them for one request: the prompt's embedding moved
        toward ``blend_prompt``'s (lerp/slerp), the negative likewise, a ``:WEIGHT`` scaling the guidance
        (interpolated between the two prompts' weights), guidance only above cfg 1; padded to one length."""
        encoder = self.encoder
        conds, unconds, scales, guided = [], [], [], []
        for frame in request.prompts:
            text, weight, other, other_weight = _single_parts(frame)
            w = float(frame.blend_weight)
            conds.append(encoder.condition(text, other, w, request.blend_mode))
            negative_next = (
                frame.negative_prompt if frame.blend_negative_prompt is None else frame.blend_negative_prompt
            )
            unconds.append(
                encoder.condition(frame.negative_prompt, negative_next, w, request.blend_mode, negative=True)
            )
            part_weight = weight if weight == other_weight else (1.0 - w) * weight + w * other_weight
            scales.append(frame.guidance_scale * part_weight)
            guided.append(frame.guidance_scale > 1.0)
        length = max(c.tokens for c in conds + unconds)

        def rows(parts: list[Conditioning]) -> Conditioning:
            padded = concat([encoder.pad(part, length) for part in parts])
            return encoder.at_size(padded, request.width, request.height).to(self.device, self.dtype)

        return _Conditioning(
            positive=rows(conds),
            negative=rows(unconds) if any(guided) else None,
            scales=torch.tensor(scales, dtype=torch.float32),
            guided=torch.tensor(guided),
        )

    # ---- 2-3. noise and initial latents ----------------------------------------------------------------

    def _latent_frame_shape(self, request: ClipRequest) -> tuple[int, int, int, int, int]:
        channels = self.unet.config.in_channels
        s = self.vae_scale_factor
        return (1, channels, 1, request.height // s, request.width // s)

    def _noise(self, request: ClipRequest, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Standard-normal noise, CPU float32 draws (so frames don't depend on the device), one per frame."""
        shape = self._latent_frame_shape(request)
        if request.latents is not None:
            noise = torch.as_tensor(request.latents, dtype=torch.float32)
            expected = (*shape[:2], request.num_frames, *shape[3:])
            if tuple(noise.shape) != expected:
                raise FlipbookError("latents", f"shape {tuple(noise.shape)}", f"a {expected} noise tensor")
        else:
            noise = torch.cat(
                [torch.randn(shape, generator=g, dtype=torch.float32) for g in generators], dim=2
            )
        if request.free_noise:
            noise = free_noise(
                noise, request.context, torch.Generator("cpu").manual_seed(int(request.seeds[0]))
            )
        return noise.to(self.device, self.dtype)

    def _image_latents(self, request: ClipRequest, generators) -> torch.Tensor | None:
        """``1 x C x F x h x w`` latents the clip starts from: the video's frames, or the start/end images held
        over the frames (the rest filled with a second noise draw per frame); None for txt2img."""
        if request.video is not None:
            return self._encode_images(request.video, request)
        hold = request.hold
        if hold is None:
            return None
        shape = self._latent_frame_shape(request)
        filler = torch.cat([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators], dim=2)
        start_w, end_w = hold_weights(request.num_frames, hold)
        mixed = filler * torch.from_numpy(1.0 - start_w - end_w).float().view(1, 1, -1, 1, 1)
        for image, weights in ((hold.start, start_w), (hold.end, end_w)):
            if image is not None:
                latent = self._encode_images([image], request).float().cpu()
                mixed = mixed + latent * torch.from_numpy(weights).float().view(1, 1, -1, 1, 1)
        return mixed.to(self.device, self.dtype)

    def _encode_images(self, images: Sequence[PIL.Image.Image], request: ClipRequest) -> torch.Tensor:
        """VAE latents (the distribution's mean: the scheduler adds the noise) of images at the clip size."""
        vae = self.vae
        pixels = self.image_processor.preprocess(list(images), height=request.height, width=request.width)
        chunks = [
            vae.encode(pixels[i : i + DECODE_CHUNK].to(vae.device, vae.dtype)).latent_dist.mean
            for i in range(0, pixels.shape[0], DECODE_CHUNK)
        ]
        latents = vae.config.scaling_factor * torch.cat(chunks)
        return latents.permute(1, 0, 2, 3).unsqueeze(0).to(self.device, self.dtype)

    def _timesteps(self, request: ClipRequest):
        """A fresh scheduler and its timesteps; with start images only the last ``steps * strength`` run."""
        scheduler = make_scheduler(request.sampler, self.scheduler_config, noise_seed=int(request.seeds[0]))
        scheduler.set_timesteps(request.steps, device=self.device)
        timesteps = scheduler.timesteps
        if request.video is not None or request.hold is not None:
            timesteps = skip_to_strength(scheduler, request.steps, request.strength)
        return scheduler, timesteps

    @staticmethod
    def _initial_latents(request, scheduler, timesteps, noise, image_latents) -> torch.Tensor:
        """txt2img: the noise at the scheduler's initial sigma; from images: the image latents noised to the
        first timestep that runs (diffusers' img2img)."""
        if image_latents is None:
            return noise * scheduler.init_noise_sigma
        return scheduler.add_noise(image_latents, noise, timesteps[:1])

    # ---- 4. denoising -----------------------------------------------------------------------------------

    def _denoise(self, request, scheduler, timesteps, latents, conditioning, done: int, total: int):
        """One pass over the timesteps: every step, every window through the UNet, averaged, one step."""
        stepping = step_kwargs(
            scheduler, [torch.Generator("cpu").manual_seed(int(request.seeds[0]))], request.eta
        )
        n = request.num_frames
        for i, t in enumerate(timesteps):
            model_input = scheduler.scale_model_input(latents, t)
            windows = context_windows(n, i, request.context)
            weights = fuse_weights(windows, n, request.context.fuse)
            noise_pred = torch.zeros_like(latents)
            for window, window_weights in zip(windows, weights, strict=True):
                index = torch.tensor(window, device=self.device)
                pred = self._predict_window(model_input, t, index, conditioning, request, i, len(timesteps))
                share = torch.as_tensor(window_weights, dtype=pred.dtype, device=self.device).view(
                    1, 1, -1, 1, 1
                )
                noise_pred.index_add_(2, index, pred * share)
            latents = scheduler.step(noise_pred, t, latents, **stepping, return_dict=False)[0]
            self.events.step(
                StepEvent(step=done + i + 1, total_steps=total, frames=tuple(range(n))),
                preview=lambda lat=latents: latents_preview(lat[:, :, 0]),
            )
        return latents

    def _predict_window(self, model_input, t, index, conditioning: _Conditioning, request, step, steps):
        """The guided noise prediction for one window's frames (diffusers' row order: uncond, then cond)."""
        sample = model_input.index_select(2, index)
        text = conditioning.positive.select(index)
        if conditioning.negative is not None:
            sample = torch.cat([sample, sample])
            text = concat([conditioning.negative.select(index), text])
        residuals = self._control_residuals(sample, t, text, index, request, step, steps)
        self.stats["unet_calls"] += 1
        self.stats["unet_frames"] += sample.shape[0] * sample.shape[2]
        kwargs, per_frame = _per_video_inputs(text, sample.shape[0], sample.shape[2])
        with frame_added_embeddings(self.unet, per_frame):
            out = self.unet(sample, t, **kwargs, return_dict=False, **residuals)[0]
        if conditioning.negative is None:
            return out
        uncond, cond = out.chunk(2)
        frames = index.cpu()
        scale = conditioning.scales[frames].to(out.device, out.dtype).view(1, 1, -1, 1, 1)
        guided = conditioning.guided[frames].to(out.device).view(1, 1, -1, 1, 1)
        return torch.where(guided, uncond + scale * (cond - uncond), cond)

    def _control_residuals(
        self, sample, t, text: Conditioning, index, request: ClipRequest, step: int, steps: int
    ) -> dict:
        """ControlNet residuals for the window's rows (each frame row gets its own control image and weight,
        the uncond rows too, as AnimateDiffControlNetPipeline does without guess mode), summed over units."""
        units = [unit for unit in request.controls if unit.active(step, steps)]
        if not units:
            return {}
        batch, channels, frames = sample.shape[:3]
        rows = sample.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, *sample.shape[3:])
        frame_ids = index.cpu().repeat(batch)
        down, mid = None, None
        for unit in units:
            net = unit.controlnet
            scale = torch.tensor(
                [unit.scales[int(f)] for f in frame_ids], dtype=net.dtype, device=self.device
            )
            images = unit.images[frame_ids].to(self.device, net.dtype)
            self.stats["controlnet_calls"] += 1
            unit_down, unit_mid = net(
                rows.to(net.dtype), t, **text.to(dtype=net.dtype).unet_kwargs(), controlnet_cond=images,
                conditioning_scale=scale.view(-1, 1, 1, 1), guess_mode=False, return_dict=False,
            )  # fmt: skip
            down, mid = add_residuals((down, mid), (unit_down, unit_mid))
        return residual_kwargs((down, mid))

    def control_images(self, images: Sequence, width: int, height: int) -> torch.Tensor:
        """Control images (PIL or arrays) as the ``F x 3 x H x W`` [0, 1] tensor a :class:`ControlFrames` holds
        (diffusers' ControlNet ``prepare_image``)."""
        return torch.cat(
            [self.control_processor.preprocess(image, height=height, width=width) for image in images]
        ).float()

    # ---- 5. decode --------------------------------------------------------------------------------------

    def _decode(self, latents: torch.Tensor, output_type: str) -> list:
        """Decode ``DECODE_CHUNK`` frames at a time, as AnimateDiffPipeline's ``decode_latents`` does."""
        frames = latents.permute(0, 2, 1, 3, 4).reshape(-1, *latents.shape[1:2], *latents.shape[3:])
        if output_type == "latent":
            return list(frames)
        vae = self.vae
        frames = check_finite(frames, "denoising (the motion UNet)")
        decoded = [
            vae.decode(frames[i : i + DECODE_CHUNK].to(vae.dtype) / vae.config.scaling_factor).sample
            for i in range(0, frames.shape[0], DECODE_CHUNK)
        ]
        decoded = check_finite(torch.cat(decoded), "the VAE's decode")
        images = self.image_processor.postprocess(decoded.float(), output_type=output_type)
        return list(images)


# ---- added conditioning per frame ---------------------------------------------------------------------


def _per_video_inputs(text: Conditioning, videos: int, frames: int) -> tuple[dict, dict | None]:
    """The motion UNet's conditioning arguments for ``videos x frames`` rows of ``text``.

    diffusers' UNetMotionModel takes per-frame token states but its added inputs (SDXL's pooled embedding and
    time ids) once per video, as AnimateDiffSDXLPipeline gives them. Where every frame of a video has the same
    added inputs they go in so (exactly diffusers' computation); where they differ (prompt travel blends the
    pooled embeddings per frame, as A1111 conditions every frame) the per-frame rows come back as the second
    value, for :func:`frame_added_embeddings`."""
    kwargs = text.unet_kwargs()
    if not text.added:
        return kwargs, None
    grouped = {key: value.reshape(videos, frames, *value.shape[1:]) for key, value in text.added.items()}
    kwargs["added_cond_kwargs"] = {key: value[:, 0] for key, value in grouped.items()}
    same = all(torch.equal(value, value[:, :1].expand_as(value)) for value in grouped.values())
    return kwargs, None if same else dict(text.added)


@contextmanager
def frame_added_embeddings(unet: UNetMotionModel, added: dict | None) -> Iterator[None]:
    """While the motion UNet runs, each frame row gets the added embedding of its own ``added`` row (``text_
    embeds``, ``time_ids``: one row per video frame) instead of its video's: the UNet's own per-video added
    embedding is replaced by zeros and every block's time embedding gets the frame's, computed as the UNet
    computes it (``add_time_proj``, ``add_embedding``). Nothing changes when ``added`` is None."""
    if added is None:
        yield
        return
    text_embeds, time_ids = added["text_embeds"], added["time_ids"]
    time_embeds = unet.add_time_proj(time_ids.flatten()).reshape(text_embeds.shape[0], -1)
    frame_embeds = unet.add_embedding(torch.cat([text_embeds, time_embeds], dim=-1).to(unet.dtype))

    def add_frames(module, args, kwargs):
        if "temb" in kwargs:
            return args, {**kwargs, "temb": kwargs["temb"] + frame_embeds.to(kwargs["temb"].dtype)}
        return (args[0], args[1] + frame_embeds.to(args[1].dtype), *args[2:]), kwargs

    blocks = [*unet.down_blocks, *([unet.mid_block] if unet.mid_block is not None else []), *unet.up_blocks]
    handles = [unet.add_embedding.register_forward_hook(lambda module, args, out: torch.zeros_like(out))]
    handles += [block.register_forward_pre_hook(add_frames, with_kwargs=True) for block in blocks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# ---- helpers ------------------------------------------------------------------------------------------


def _single_parts(frame: FramePrompt) -> tuple[str, float, str, float]:
    """The prompt's and the blend prompt's text and ``:WEIGHT``; composable prompts (AND, |) would need a UNet
    row per part for every frame, which a motion UNet's batch does not lay out, so they are refused."""
    other = frame.prompt if frame.blend_prompt is None else frame.blend_prompt
    parts, others = split_composable(frame.prompt), split_composable(other)
    if len(parts) > 1 or len(others) > 1:
        text = frame.prompt if len(parts) > 1 else other
        raise FlipbookError(
            "prompt", text, "a prompt without composable parts (AND, |) for a motion module",
            detail="each frame is one UNet row per guidance branch",
        )  # fmt: skip
    (text, weight), (other_text, other_weight) = parts[0], others[0]
    return text, weight, other_text, other_weight


def hold_weights(num_frames: int, hold: ImageHold) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the share of the start image's and the end image's latent in the initial latent (see
    :class:`ImageHold`); zeros for an image that is not given."""
    i = np.arange(num_frames, dtype=float)
    start = np.zeros(num_frames)
    end = np.zeros(num_frames)
    if hold.start is not None:
        start = np.clip(1.0 - np.power(i, hold.power) / hold.scale, 0.0, None)
    if hold.end is not None:
        end = np.clip(1.0 - np.power(i, hold.power_last) / hold.scale_last, 0.0, None)[::-1].copy()
    total = start + end
    over = total > 1.0
    start[over] /= total[over]
    end[over] /= total[over]
    return start, end


def free_noise(noise: torch.Tensor, context: ContextOptions, generator: torch.Generator) -> torch.Tensor:
    """FreeNoise (diffusers' ``shuffle_context``): the frames after the first window take the noise of the
    frames one window earlier, shuffled within each stride of ``length - overlap`` frames, so every window
    starts from a permutation of the first window's noise (steadier content over long clips)."""
    noise = noise.clone()
    frames, length = noise.shape[2], context.length
    stride = max(1, length - context.frames_shared)
    for start in range(length, frames, stride):
        source = torch.arange(start - length, min(start - length + stride, frames))
        shuffled = source[torch.randperm(len(source), generator=generator)]
        count = min(frames - start, len(source))
        noise[:, :, start : start + count] = noise[:, :, shuffled[:count]]
    return noise


class _FreeInit:
    """FreeInit (Wu et al. 2023, as in diffusers' FreeInitMixin): after a pass, the clean latents are noised
    again to the first timestep with the first pass's noise, and their low spatio-temporal frequencies are kept
    while the high ones come from fresh noise; the next pass samples from that. The mixing is done on
    ``scheduler.add_noise`` outputs, so it holds for variance-preserving and sigma (Euler-type) schedulers."""

    def __init__(self, request: ClipRequest, shape: torch.Size) -> None:
        self.filter = low_pass_filter(tuple(shape[-3:]), request.free_init_method)
        self.generator = torch.Generator("cpu").manual_seed(int(request.seeds[0]))

    def renoise(self, latents, noise, scheduler, timesteps) -> torch.Tensor:
        t = timesteps[:1]
        fresh = torch.randn(latents.shape, generator=self.generator, dtype=torch.float32).to(latents.device)
        diffused = scheduler.add_noise(latents.float(), noise.float(), t)
        random = scheduler.add_noise(torch.zeros_like(fresh), fresh, t)
        mixed = mix_frequencies(diffused, random, self.filter.to(latents.device))
        return mixed.to(latents.dtype)


def low_pass_filter(shape: tuple[int, int, int], method: str) -> torch.Tensor:
    """FreeInit's low-pass mask over (frames, h, w), centred (for fftshifted spectra), stop frequency 0.25
    in space and time: butterworth (order 4), gaussian, ideal, or box, as the FreeInit code defines them."""
    frames, height, width = shape
    d = FREE_INIT_STOP_FREQUENCY
    if method == "box":
        mask = torch.zeros(shape)
        ds, dt = round(int(height // 2) * d), round(frames // 2 * d)
        cf, ch, cw = frames // 2, height // 2, width // 2
        mask[cf - dt : cf + dt, ch - ds : ch + ds, cw - ds : cw + ds] = 1.0
        return mask
    t = (2 * torch.arange(frames) / frames - 1).view(-1, 1, 1)
    h = (2 * torch.arange(height) / height - 1).view(1, -1, 1)
    w = (2 * torch.arange(width) / width - 1).view(1, 1, -1)
    d_square = t**2 + h**2 + w**2  # (d_s / d_t * t)^2 + h^2 + w^2, with d_s = d_t
    if method == "butterworth":
        return 1 / (1 + (d_square / d**2) ** BUTTERWORTH_ORDER)
    if method == "gaussian":
        return torch.exp(-1 / (2 * d**2) * d_square)
    if method == "ideal":
        return (d_square <= d * 2).float()
    raise FlipbookError("free_init_method", method, f"one of: {', '.join(FREE_INIT_METHODS)}")


def mix_frequencies(low: torch.Tensor, high: torch.Tensor, low_pass: torch.Tensor) -> torch.Tensor:
    """``low``'s frequencies under the mask and ``high``'s above it, over the last three axes."""
    dims = (-3, -2, -1)
    low_freq = torch.fft.fftshift(torch.fft.fftn(low.float(), dim=dims), dim=dims)
    high_freq = torch.fft.fftshift(torch.fft.fftn(high.float(), dim=dims), dim=dims)
    mixed = low_freq * low_pass + high_freq * (1 - low_pass)
    return torch.fft.ifftn(torch.fft.ifftshift(mixed, dim=dims), dim=dims).real

"""Stream batching (StreamDiffusion's "stream batch"): one UNet call advances several frames, each at its own
denoising step.

A frame enters the pipeline at its first step and leaves, decoded, after its last; while it is inside, every
UNet call carries it one step further next to the frames that entered before and after it. With ``depth``
frames in flight (default: the frames' step count, StreamDiffusion's denoising batch) a run of ``n`` frames of
``k`` steps each takes ``n + k - 1`` UNet calls of up to ``k`` frames, and in the steady state each call
finishes one frame: the pipelining a live stream needs, with the throughput of batching ``k`` frames.

Every frame keeps its own scheduler, generator and initial latents (prepared exactly as
:meth:`SamplingCore.run_batch` prepares a batch of one), and the UNet's rows are independent, so a frame's
pixels equal its unpipelined img2img up to float rounding of the batched call (``tests/test_stream_batch.py``).

``residual_cfg`` is StreamDiffusion's residual classifier-free guidance, self-negative: instead of a UNet row for
the negative prompt, the negative prediction is the "virtual residual noise" that takes the frame's source
latents to its current latents, ``(x_t - a_t x_0) / b_t`` (``a_t``, ``b_t`` the scheduler's own ``add_noise``
coefficients at the frame's step). Guidance then costs no extra UNet row: half the rows at cfg > 1. It is an
approximation (the frames differ from full guidance) and reads an epsilon-predicting model's output.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from flipbook.errors import FlipbookError
from flipbook.events import StepEvent
from flipbook.sampling.core import SamplingCore, guide_noise, row_sources
from flipbook.sampling.requests import FrameRequest
from flipbook.sampling.steps import latents_preview, step_kwargs


@dataclass
class _InFlight:
    """One frame inside the pipeline: its scheduler, timesteps and where it is."""

    index: int  # position among the requests
    request: FrameRequest
    scheduler: object
    timesteps: torch.Tensor
    stepping: dict
    latents: torch.Tensor  # 1 x C x h x w
    source: torch.Tensor | None  # the init image's latents (residual guidance reads them)
    step: int = 0

    @property
    def t(self) -> torch.Tensor:
        return self.timesteps[self.step]

    @property
    def done(self) -> bool:
        return self.step >= len(self.timesteps)


@torch.no_grad()
def stream_generate(
    core: SamplingCore,
    requests: Sequence[FrameRequest],
    *,
    depth: int | None = None,
    residual_cfg: bool = False,
) -> Iterator[tuple[int, object]]:
    """``(position, image)`` for every request, in order, each as soon as it and the ones before it are done.
    One frame enters per UNet call while fewer than ``depth`` are in flight.

    The requests must share a batch key (one model, size, sampler, step count and strength, LoRAs) and carry
    no mask or ControlNet unit; ``depth`` caps the frames in flight (default: the first frame's step count).
    """
    _check(core, requests, residual_cfg)
    pending = deque(range(len(requests)))
    active: list[_InFlight] = []
    finished: dict[int, object] = {}
    ticks, next_out = 0, 0
    while pending or active:
        if pending and (not active or len(active) < (depth or len(active[0].timesteps))):
            active.append(_enter(core, requests, pending.popleft()))  # one new frame per call
        _tick(core, active, residual_cfg)
        ticks += 1
        core.events.step(
            StepEvent(step=ticks, total_steps=ticks + _ticks_left(active, pending), frames=_ids(active)),
            preview=lambda frames=active: latents_preview(frames[-1].latents, core.model.tiny_vae),
        )
        leaving = [frame for frame in active if frame.done]
        active = [frame for frame in active if not frame.done]
        if leaving:
            images = core._decode(torch.cat([frame.latents for frame in leaving]), "pil")
            finished.update((frame.index, image) for frame, image in zip(leaving, images, strict=True))
        while next_out in finished:
            yield next_out, finished.pop(next_out)
            next_out += 1


def _check(core: SamplingCore, requests: Sequence[FrameRequest], residual_cfg: bool) -> None:
    for request in requests:
        request.validate(core.model.vae_scale_factor)
    first = requests[0]
    if any(request.batch_key() != first.batch_key() for request in requests):
        raise FlipbookError(
            "video.stream_batch", True, "frames that share sampler, steps, strength, size and LoRAs"
        )
    if first.controls or first.mask_image is not None or not first.img2img:
        raise FlipbookError("video.stream_batch", True, "img2img frames without ControlNet units or masks")
    if first.refiner_switch_at is not None:
        raise FlipbookError("video.stream_batch", True, "frames without a refiner (model.refiner)")
    prediction = core.model.scheduler_config.get("prediction_type", "epsilon")
    if residual_cfg and prediction != "epsilon":
        raise FlipbookError(
            "video.residual_cfg",
            True,
            "an epsilon-prediction model",
            detail=f"this one predicts {prediction}",
        )


def _enter(core: SamplingCore, requests: Sequence[FrameRequest], index: int) -> _InFlight:
    """A frame's first step: its scheduler, timesteps, generator and latents, as a batch of one has them."""
    request = requests[index]
    core._activate_loras(request.loras)
    scheduler, timesteps, generators, init = core.start_batch([request])
    return _InFlight(
        index=index,
        request=request,
        scheduler=scheduler,
        timesteps=timesteps,
        stepping=step_kwargs(scheduler, generators, request.eta),
        latents=init.latents,
        source=init.source_latents,
    )


def _tick(core: SamplingCore, active: list[_InFlight], residual_cfg: bool) -> None:
    """One UNet call for every frame in flight (each at its own timestep), then one scheduler step each."""
    requests = [frame.request for frame in active]
    text, guidance = core._prepare_conditioning(requests, requests[0].clip_skip)
    sources = row_sources(guidance, text.rows)
    inputs = torch.cat([frame.scheduler.scale_model_input(frame.latents, frame.t) for frame in active])
    times = torch.stack([frame.t for frame in active])
    negatives = {c.uncond_row: i for i, c in enumerate(guidance) if c.uncond_row is not None}
    run = torch.tensor([row for row in range(text.rows) if not (residual_cfg and row in negatives)])
    predicted = core.model.unet(
        inputs[sources[run]], times[sources[run]], **text.select(run).unet_kwargs(), return_dict=False
    )[0]
    core.stats["unet_calls"] += 1
    core.stats["unet_rows"] += len(run)
    out = torch.empty((text.rows, *predicted.shape[1:]), dtype=predicted.dtype, device=predicted.device)
    out[run] = predicted
    if residual_cfg:
        for row, i in negatives.items():
            out[row] = _virtual_residual(active[i])[0].to(out.dtype)
    for frame, c in zip(active, guidance, strict=True):
        noise = guide_noise(out, c).unsqueeze(0)
        frame.latents = frame.scheduler.step(
            noise, frame.t, frame.latents, **frame.stepping, return_dict=False
        )[0]
        frame.step += 1


def _virtual_residual(frame: _InFlight) -> torch.Tensor:
    """The noise that takes the frame's source latents to its current latents at its step, by the scheduler's
    own ``add_noise`` (``x_t = a_t x_0 + b_t eps``, so the coefficients of any sampler's noise space)."""
    x0 = frame.source
    t = frame.t.reshape(1)
    a = frame.scheduler.add_noise(torch.ones_like(x0), torch.zeros_like(x0), t)
    b = frame.scheduler.add_noise(torch.zeros_like(x0), torch.ones_like(x0), t)
    return (frame.latents - a * x0) / b


def _ticks_left(active: list[_InFlight], pending: deque) -> int:
    """UNet calls still to come if the frames waiting take as many steps as the last one in flight."""
    if not active:
        return 0
    last = active[-1]
    return max(len(last.timesteps) - last.step + len(pending), *(len(f.timesteps) - f.step for f in active))


def _ids(active: list[_InFlight]) -> tuple[int, ...]:
    return tuple(frame.index for frame in active)

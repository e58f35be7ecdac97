"""Still images for the A1111 API: an A1111 request becomes :class:`FrameRequest`s for the sampling core.

Two halves, because the request is checked on the HTTP side and sampled on a worker (stills share the
workers with renders, so a device is never used twice at once): :func:`still_from_a1111` turns the request
into a JSON payload (init images and mask saved as files) and refuses anything invalid before queueing;
:func:`run_still` runs a payload on a worker. Both halves are the still-image pipeline of
``flipbook txt2img/img2img/inpaint`` (:mod:`flipbook.runs.stills`: the same checks, the same 32-bit seeds,
the same PNGs); this module only translates A1111's request into its settings.
"""

from __future__ import annotations

import base64
import binascii
import gc
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PIL.Image
import PIL.ImageOps
from pydantic import BaseModel, ValidationError

from flipbook.errors import FlipbookError
from flipbook.modes.variations.settings import VariationsSection
from flipbook.runs.hires import HIRES_UPSCALER, HiresSettings, hires_settings
from flipbook.runs.stills import StillSettings, make_stills, prepare_stills, resolve_seed
from flipbook.server.a1111_fields import unknown_fields
from flipbook.server.security import RejectedUpload, check_model_reference, sniff_image
from flipbook.spec.load import shorten_repr
from flipbook.spec.model import AnimationSection, ModelSection, SamplingSection, Spec
from flipbook.spec.safe_parse import check_data

TXT2IMG, IMG2IMG = "txt2img", "img2img"
STILL_KINDS = (TXT2IMG, IMG2IMG)
MAX_IMAGES = 64
INPAINTING_FILL = {0: "fill", 1: "original", 2: "latent_noise", 3: "latent_nothing"}
SCHEDULERS = {"automatic": "", "uniform": "", "karras": " Karras"}
"""A1111's ``scheduler`` values flipbook has: the sampler's own schedule, or its Karras variant."""
HIRES_FIELDS = {
    "scale": "hr_scale", "resize_x": "hr_resize_x", "resize_y": "hr_resize_y", "upscaler": "hr_upscaler",
    "steps": "hr_second_pass_steps", "denoising_strength": "denoising_strength", "sampler": "hr_sampler_name",
    "prompt": "hr_prompt", "negative_prompt": "hr_negative_prompt",
}  # fmt: skip
"""Each hires setting (:class:`HiresSettings`) -> the A1111 txt2img field it comes from."""
A1111_FIELDS = {
    "cfg": "cfg_scale",
    "strength": "denoising_strength",
    "masked_content": "inpainting_fill",
    "noise_multiplier": "initial_noise_multiplier",
    "clip_skip": "override_settings.CLIP_stop_at_last_layers",
    "model.refiner": "refiner_checkpoint",
    "sampling.clip_skip": "override_settings.CLIP_stop_at_last_layers",
    **{f"hires.{name}": field for name, field in HIRES_FIELDS.items()},
}
"""FrameRequest's (and the hires settings') field -> the A1111 request field it comes from (errors name what
the client sent)."""
SAME = ("", "Use same sampler", "Use same scheduler", "Use same checkpoint")
"""What A1111's UI sends for "as the first pass" in ``hr_sampler_name``, ``hr_scheduler``, ``hr_checkpoint_name``."""
_A1111_HASH = re.compile(r"\s+\[[0-9a-fA-F]{6,}\]$")
A1111_DEFAULTS: dict[str, Any] = {
    "prompt": "",
    "negative_prompt": "",
    "steps": 50,
    "cfg_scale": 7.0,
    "seed": -1,
    "width": 512,
    "height": 512,
    "batch_size": 1,
    "n_iter": 1,
    "denoising_strength": 0.75,
    "mask_blur": 4,
    "inpainting_fill": 0,
    "inpaint_full_res": True,
    "inpainting_mask_invert": 0,
    "initial_noise_multiplier": 1.0,
    "send_images": True,
}
_UNSUPPORTED = {  # request field -> (value meaning "off", note when it is on)
    "restore_faces": (False, "restore_faces: face restoration is not supported; ignored"),
    "tiling": (False, "tiling: tiling is not supported; ignored"),
    "subseed_strength": (0, "subseed_strength: variation seeds are not supported; ignored"),
    "script_name": (None, "script_name: scripts are not supported; ignored"),
    "styles": ([], "styles: saved styles are not supported; ignored"),
}


@dataclass
class StillJob:
    """A checked A1111 request: the payload to queue and the images to save in the job's folder."""

    kind: str
    payload: dict[str, Any]
    images: dict[str, PIL.Image.Image]  # file name in the run folder -> image
    notes: list[str]


def still_from_a1111(body: dict[str, Any], kind: str, default_model: str) -> StillJob:
    """Check an A1111 txt2img/img2img request and turn it into a still job payload (A1111's field names in,
    FrameRequest's out); images are decoded and sniffed here, so a bad one never reaches a worker."""
    from flipbook.server.a1111_controlnet import controlnet_units  # it imports the app, which imports this

    check_data(body, field="body")
    r = A1111_DEFAULTS | {k: v for k, v in body.items() if v is not None}
    notes = [note for key, (off, note) in _UNSUPPORTED.items() if r.get(key, off) not in (off, None, "", [])]
    model, clip_skip = _model_options(r.get("override_settings") or {}, default_model, notes)
    batch_size = _images("batch_size", r["batch_size"])
    count = batch_size * _images("n_iter", r["n_iter"])
    if count > MAX_IMAGES:
        raise FlipbookError("batch_size", count, f"batch_size x n_iter from 1 to {MAX_IMAGES}")
    fill = as_integer("inpainting_fill", r["inpainting_fill"])
    if fill not in INPAINTING_FILL:
        allowed = "0 (fill), 1 (original), 2 (latent noise), 3 (latent nothing)"
        raise FlipbookError("inpainting_fill", fill, allowed)
    images: dict[str, PIL.Image.Image] = {}
    inits, mask = _img2img_images(r, images, notes) if kind == IMG2IMG else ([], None)
    controlnet, control_images = controlnet_units(r.get("alwayson_scripts"), kind == IMG2IMG, notes)
    images |= control_images
    notes += unknown_fields(body, kind)
    seed = as_integer("seed", _spec_limited("seed", r["seed"], SamplingSection, "seed"))
    img2img = kind == IMG2IMG
    payload = {
        "kind": kind, "prompt": _text("prompt", r["prompt"]),
        "negative_prompt": _text("negative_prompt", r["negative_prompt"]),
        "steps": as_integer("steps", _spec_limited("steps", r["steps"], SamplingSection, "steps")),
        "cfg_scale": as_number("cfg_scale", r["cfg_scale"]),
        "sampler": _sampler(r.get("sampler_name") or r.get("sampler_index") or "Euler", r.get("scheduler")),
        "seed": resolve_seed(seed),
        "width": as_integer("width", _spec_limited("width", r["width"], AnimationSection, "width")),
        "height": as_integer("height", _spec_limited("height", r["height"], AnimationSection, "height")),
        "batch_size": batch_size, "count": count,
        "strength": as_number("denoising_strength", r["denoising_strength"]) if img2img else 1.0,
        "mask_blur": as_number("mask_blur", _spec_limited("mask_blur", r["mask_blur"], VariationsSection,
                                                        "mask_blur")),
        "masked_content": INPAINTING_FILL[fill],
        "mask_invert": bool(r["inpainting_mask_invert"]),
        "noise_multiplier": as_number("initial_noise_multiplier", r["initial_noise_multiplier"]) if img2img else 1.0,
        "clip_skip": clip_skip, "model": model, "inits": inits, "mask": mask, "notes": notes,
        **_refiner(r, notes),
        "hires": _hires(r, model, notes) if kind == TXT2IMG else None,
        "controlnet": controlnet,
        "send_images": bool(r["send_images"]),
        "parameters": {k: v for k, v in body.items() if k not in ("init_images", "mask")},
    }  # fmt: skip
    _check_request(payload, images)
    return StillJob(kind=kind, payload=payload, images=images, notes=notes)


def _hires(r: dict[str, Any], model: str, notes: list[str]) -> dict[str, Any] | None:
    """A1111's hires fix fields (``enable_hr``, ``hr_*``, ``denoising_strength``) as :class:`HiresSettings`
    values, checked; None when ``enable_hr`` is off."""
    if not r.get("enable_hr"):
        return None
    checkpoint = r.get("hr_checkpoint_name")
    if checkpoint not in (None, *SAME) and checkpoint_name(_text("hr_checkpoint_name", checkpoint)) != model:
        notes.append("hr_checkpoint_name: a second checkpoint is not supported; both passes use " + model)
    if r.get("firstphase_width") or r.get("firstphase_height"):
        notes.append(
            "firstphase_width, firstphase_height: the old hires API; width x height is the first pass"
        )
    sampler = r.get("hr_sampler_name")
    if sampler in SAME or sampler is None:
        sampler = None if r.get("hr_scheduler") in (None, *SAME) else r.get("sampler_name") or "Euler"
    scheduler = r.get("hr_scheduler")
    values = {
        "scale": r.get("hr_scale", 2.0), "resize_x": r.get("hr_resize_x") or 0,
        "resize_y": r.get("hr_resize_y") or 0, "upscaler": r.get("hr_upscaler") or "Latent",
        "steps": r.get("hr_second_pass_steps") or 0, "denoising_strength": r["denoising_strength"],
        "sampler": None if sampler is None else _sampler(sampler, None if scheduler in SAME else scheduler),
        "prompt": r.get("hr_prompt") or "", "negative_prompt": r.get("hr_negative_prompt") or "",
    }  # fmt: skip
    return hires_settings(values, HIRES_FIELDS).model_dump()


NO_REFINER = ("", "None", "none")
"""What A1111's UI sends for "no refiner" in ``refiner_checkpoint``."""


def _refiner(r: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """A1111's ``refiner_checkpoint`` and ``refiner_switch_at`` as the still's ``refiner`` and switch (held to
    the spec's ``model.refiner_switch_at``); without a refiner the switch is noted as ignored, as is a missing
    switch (A1111's default, 0.8, is used)."""
    name, switch = r.get("refiner_checkpoint"), r.get("refiner_switch_at")
    if name is None or name in NO_REFINER:
        if switch is not None:
            notes.append("refiner_switch_at: ignored without refiner_checkpoint")
        return {"refiner": None, "refiner_switch_at": None}
    refiner = checkpoint_name(_text("refiner_checkpoint", name))
    check_model_reference("refiner_checkpoint", refiner)
    if switch is None:
        switch = ModelSection.model_fields["refiner_switch_at"].default
        notes.append(f"refiner_switch_at: not given; the refiner takes over at {switch:g}")
    switch = _spec_limited("refiner_switch_at", switch, ModelSection, "refiner_switch_at")
    return {"refiner": refiner, "refiner_switch_at": as_number("refiner_switch_at", switch)}


def check_still_models(payload: dict[str, Any], models_dir: Path | None) -> None:
    """Every model a still names, held to what the job API allows for the same spec fields (their markers in
    the spec schema): the checkpoint as ``model.name`` and the ``<lora:...>`` tags of both prompts as the
    spec's prompts' tags. Names only (a built-in, a name in ``models_dir`` or a hub id where the field takes
    one), never a path on the server: the worker would read it."""
    from flipbook.spec.fields import CONTROLNET, REFINER
    from flipbook.spec.model import CHECKPOINT, PROMPT_LORAS

    check_model_reference("override_settings.sd_model_checkpoint", payload["model"], CHECKPOINT, models_dir)
    if payload.get("refiner"):
        check_model_reference("refiner_checkpoint", payload["refiner"], REFINER, models_dir)
    for field in ("prompt", "negative_prompt"):
        try:
            names = PROMPT_LORAS.names(payload[field])
        except FlipbookError as error:  # a malformed tag: named by the request field it is in
            raise FlipbookError(field, error.value, error.allowed, detail=error.detail) from None
        for name in names:
            check_model_reference(field, name, PROMPT_LORAS, models_dir)
    if payload.get("hires"):
        check_model_reference("hr_upscaler", payload["hires"]["upscaler"], HIRES_UPSCALER, models_dir)
    for unit in payload.get("controlnet", ()):
        check_model_reference(unit["field"], unit["model"], CONTROLNET, models_dir)


def _model_options(overrides: Any, default_model: str, notes: list[str]) -> tuple[str, int]:
    """The checkpoint and clip skip from A1111's ``override_settings``; other settings are noted as ignored."""
    if not isinstance(overrides, dict):
        raise FlipbookError("override_settings", overrides, "an object of A1111 settings")
    model = checkpoint_name(
        _text("override_settings.sd_model_checkpoint", overrides.get("sd_model_checkpoint") or default_model)
    )
    check_model_reference("override_settings.sd_model_checkpoint", model)
    name = "CLIP_stop_at_last_layers"
    clip_skip = as_integer(name, _spec_limited(name, overrides.get(name, 1), SamplingSection, "clip_skip"))
    known = ("sd_model_checkpoint", "CLIP_stop_at_last_layers")
    notes += [f"override_settings.{key}: not supported; ignored" for key in overrides if key not in known]
    return model, clip_skip


def _check_request(p: dict[str, Any], images: dict[str, PIL.Image.Image]) -> None:
    """Everything the still pipeline checks before a model loads, now, so an invalid request is never
    queued (``<lora:...>`` tags are looked up in the models folder by the worker)."""
    inits = tuple(images[name] for name in p["inits"])
    with a1111_names():
        prepare_stills(_settings(p, inits, images[p["mask"]] if p["mask"] else None), None)


@contextmanager
def a1111_names() -> Iterator[None]:
    """A FlipbookError raised inside names the A1111 request field its value came from (``cfg_scale``, not the
    pipeline's ``cfg``): the client sent A1111's names."""
    try:
        yield
    except FlipbookError as error:
        field = A1111_FIELDS.get(error.field, error.field)
        raise FlipbookError(field, error.value, error.allowed, detail=error.detail) from None


def _settings(
    p: dict[str, Any], inits: tuple[PIL.Image.Image, ...], mask: PIL.Image.Image | None, controls: tuple = ()
):
    """The still pipeline's settings for a payload (its images opened, its ControlNet units as controls)."""
    return StillSettings(
        p["prompt"], p["model"], negative_prompt=p["negative_prompt"], steps=p["steps"],
        cfg_scale=p["cfg_scale"], sampler=p["sampler"], seed=p["seed"], width=p["width"], height=p["height"],
        count=p["count"], batch_size=p["batch_size"], inits=inits, strength=p["strength"], mask=mask,
        mask_blur=p["mask_blur"], masked_content=p["masked_content"], overlay=True,
        noise_multiplier=p["noise_multiplier"], clip_skip=p["clip_skip"],
        hires=HiresSettings(**p["hires"]) if p.get("hires") else None, controls=controls,
        refiner=p.get("refiner"), refiner_switch_at=p.get("refiner_switch_at") or 0.8,
    )  # fmt: skip


def checkpoint_name(title: str) -> str:
    """An A1111 checkpoint title as a flipbook model name: ``"sub/foo.safetensors [a1b2c3d4]"`` ->
    ``"sub/foo"`` (the name ``--models-dir`` finds it by)."""
    name = _A1111_HASH.sub("", title.strip())
    suffix = Path(name).suffix.lower()
    return name[: -len(suffix)] if suffix in (".safetensors", ".ckpt") else name


def _sampler(name: str, scheduler: str | None) -> str:
    """A1111 1.9+ sends the schedule apart from the sampler ("DPM++ 2M" + "Karras"); flipbook names them
    together ("DPM++ 2M Karras")."""
    name = _text("sampler_name", name)
    if scheduler is not None and not isinstance(scheduler, str):
        raise FlipbookError("scheduler", scheduler, "Automatic, Uniform or Karras")
    key = (scheduler or "automatic").strip().lower()
    if key not in SCHEDULERS:
        raise FlipbookError("scheduler", scheduler, "Automatic, Uniform or Karras")
    suffix = SCHEDULERS[key]
    return name if not suffix or name.lower().endswith(suffix.lower()) else name + suffix


def as_integer(name: str, value: Any) -> int:
    """``value`` as a whole number, or one FlipbookError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FlipbookError(name, value, "an integer")
    if int(value) != value:
        raise FlipbookError(name, value, "an integer")
    return int(value)


def as_number(name: str, value: Any) -> float:
    """``value`` as a finite number, or one FlipbookError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FlipbookError(name, value, "a number")
    return float(value)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise FlipbookError(name, shorten_repr(value), "text")
    return value


def _images(name: str, value: Any) -> int:
    """``batch_size`` and ``n_iter``: whole numbers from 1 (their product is bounded by MAX_IMAGES)."""
    count = as_integer(name, value)
    if not 1 <= count <= MAX_IMAGES:
        raise FlipbookError(name, count, f"an integer from 1 to {MAX_IMAGES}")
    return count


def _spec_limited(name: str, value: Any, section: type[BaseModel], field: str) -> Any:
    """``value`` held to the spec field it corresponds to (``width`` to ``animation.width``): its type, bounds
    and validators, read from the spec model, so an A1111 request can't ask for what a spec can't. The value
    comes back as given (the caller converts it)."""
    try:
        section.model_validate({field: value})
    except ValidationError as error:
        rule = error.errors()[0]["msg"].removeprefix("Value error, ")
        where = next(n for n, f in Spec.model_fields.items() if f.annotation is section)
        shown = value if isinstance(value, int | float) else shorten_repr(value)
        raise FlipbookError(name, shown, f"what the spec's {where}.{field} allows: {rule}") from None
    return value


def _img2img_images(
    r: dict[str, Any], images: dict[str, PIL.Image.Image], notes: list[str]
) -> tuple[list[str], str | None]:
    """Decode ``init_images`` (and ``mask``) from base64, sniffing each; file names in the run folder."""
    raw = r.get("init_images") or []
    if not isinstance(raw, list) or not raw:
        raise FlipbookError("init_images", "none", "a list of base64 images (at least one)")
    inits = []
    for i, item in enumerate(raw):
        name = f"inputs/init_{i}.png"
        images[name] = decode_image(item, f"init_images[{i}]").convert("RGB")
        inits.append(name)
    mask = None
    if r.get("mask"):
        mask = "inputs/mask.png"
        images[mask] = decode_image(r["mask"], "mask").convert("L")
        if r.get("inpaint_full_res"):
            notes.append("inpaint_full_res: ignored; the whole picture is inpainted at width x height")
    return inits, mask


def decode_image(value: Any, field: str) -> PIL.Image.Image:
    """An A1111 base64 image (with or without a ``data:image/...;base64,`` prefix), sniffed by content."""
    if not isinstance(value, str):
        raise RejectedUpload(field, type(value).__name__, "a base64-encoded image")
    text = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RejectedUpload(field, f"{len(value)} characters", "a base64-encoded image") from None
    return sniff_image(data, field)[0]


# ---- the worker side ---------------------------------------------------------------------------------------


class ModelCache:
    """One worker's loaded model for stills, kept between requests (loading is the slow part); released
    before a render, which loads its own, so a device never holds two."""

    def __init__(self) -> None:
        self._key: tuple[str, str, str | None] | None = None
        self._bundle = None

    def get(self, name: str, models_dir: Path | None, refiner: str | None = None):
        """The model ``name`` (with ``refiner``, when given), loaded unless it is the one held."""
        from flipbook.models.loading import load_model

        key = (name, str(models_dir), refiner)
        if key != self._key or self._bundle is None:
            self.clear()
            self._bundle = load_model(name, models_dir=models_dir, refiner=refiner)
            self._key = key
        return self._bundle

    def clear(self) -> None:
        if self._bundle is None:
            return
        device = self._bundle.device
        self._bundle, self._key = None, None
        gc.collect()
        if device.type == "cuda":
            import torch

            torch.cuda.empty_cache()


def _controls(p: dict[str, Any], run_dir: Path, inits: tuple[PIL.Image.Image, ...]) -> tuple:
    """The payload's ControlNet units as controls: each unit's image (or the first init image) at the
    picture's size through its preprocessor."""
    from flipbook.io.images import open_image
    from flipbook.sampling.requests import Control
    from flipbook.server.a1111_controlnet import preprocessed

    controls = []
    for unit in p.get("controlnet", ()):
        image = open_image(run_dir / unit["image"], unit["field"]) if unit["image"] else inits[0]
        control = preprocessed(unit, image, (p["width"], p["height"]))
        controls.append(
            Control(unit["model"], control, unit["weight"], unit["guidance_start"], unit["guidance_end"])
        )
    return tuple(controls)


def run_still(
    payload: dict[str, Any],
    run_dir: Path,
    events,
    cache: ModelCache,
    models_dir: Path | None,
    farm: Any = None,
) -> dict[str, Any]:
    """Sample a still payload on this worker and save PNGs with A1111 parameters into ``run_dir``; returns
    the file names, seeds and infotexts (what the A1111 response needs). With a render ``farm`` (``serve
    --ray``) its batches (A1111's iterations) are made on the farm's actors, side by side."""
    if farm is not None:
        return _run_on_farm(payload, run_dir, events, models_dir, farm)
    from flipbook.models.controlnet import ControlNets

    p = payload
    networks, prepared = _prepared(p, run_dir, models_dir)
    with a1111_names():
        bundle = cache.get(p["model"], models_dir, p.get("refiner"))
        made = None
        try:
            made = make_stills(prepared, bundle, networks, events, run_dir, finish_on_cancel=True,
                               controlnets=ControlNets(models_dir))  # fmt: skip
        finally:
            if prepared.uses_loras or made is None or made.embeddings:
                cache.clear()  # LoRAs and embeddings change the pipe; the next request loads it clean
    stills = made.stills
    return {
        "images": [still.path.name for still in stills],
        "seeds": [still.seed for still in stills],
        "infotexts": [still.infotext for still in stills],
        "model": bundle.name,
        "refiner_hash": bundle.refiner.hash if bundle.refiner is not None else None,
        "interrupted": events.cancelled,
    }


def _prepared(
    p: dict[str, Any], run_dir: Path, models_dir: Path | None, *, controls: bool = True
) -> tuple[Any, Any]:
    """The models folder's extra networks and the payload's prepared stills (its images opened from
    ``run_dir``; its ControlNet images preprocessed unless ``controls`` is False: a check only), with errors
    named by A1111's fields."""
    from flipbook.io.images import open_image
    from flipbook.models.extra_networks import ExtraNetworks
    from flipbook.models.folders import ModelsDir

    networks = ExtraNetworks(ModelsDir(models_dir) if models_dir else None)
    inits = tuple(open_image(run_dir / name, "init_images") for name in p["inits"])
    mask = open_image(run_dir / p["mask"], "mask").convert("L") if p["mask"] else None
    if mask is not None and p["mask_invert"]:
        mask = PIL.ImageOps.invert(mask)
    with a1111_names():
        units = _controls(p, run_dir, inits) if controls else ()
        return networks, prepare_stills(_settings(p, inits, mask, units), networks)


# ---- on a render farm ------------------------------------------------------------------------------------


def _run_on_farm(
    payload: dict[str, Any], run_dir: Path, events, models_dir: Path | None, farm: Any
) -> dict[str, Any]:
    """:func:`run_still` on the farm's actors: the request's images split at batch starts (a batch, one of
    A1111's iterations, is never cut, so every image is the one a single worker makes), each actor making
    its batches (:func:`make_still_units`) and streaming every PNG back; the PNGs are written here, named
    as :func:`~flipbook.runs.stills.make_stills` names them, and listed in the images' order. A cancel is
    A1111's interrupt, as on one worker: the images made are kept."""
    from flipbook.farm.farm import UnitWork
    from flipbook.io.atomic import atomic_target
    from flipbook.modes.base import Split

    p = payload
    _prepared(p, run_dir, models_dir, controls=False)  # checked on the head, before any actor loads a model
    existing = len(list(run_dir.glob("*.png")))

    def receive(index: int, made: tuple) -> tuple:
        png, seed, *rest = made
        name = f"{existing + index:05d}-{seed}.png"
        with atomic_target(run_dir / name) as temporary:
            temporary.write_bytes(png)
        return name, seed, *rest

    work = UnitWork(
        function=f"{__name__}:make_still_units",
        data={"payload": p, "models_dir": None if models_dir is None else str(models_dir)},
        run_path=str(run_dir), total=p["count"], split=Split(p["batch_size"]), checkpoint=p["model"],
        receive=receive,
    )  # fmt: skip
    with a1111_names():
        made = list(farm.run_units(work, events).values())
    return {
        "images": [still[0] for still in made],
        "seeds": [still[1] for still in made],
        "infotexts": [still[2] for still in made],
        "model": made[0][3] if made else p["model"],
        "refiner_hash": made[0][4] if made else None,
        "interrupted": events.cancelled,
    }


def make_still_units(
    data: dict[str, Any], run_dir: Path, units: range, events, load, forget
) -> Iterator[tuple[int, tuple]]:
    """A farm actor's share of a still request: the images ``units`` (whole batches) made exactly as
    :func:`run_still` makes them, with the actor's kept model (``load``; ``forget`` drops it when LoRAs or
    embeddings changed it); yields ``(index, (png_bytes, seed, infotext, model name, refiner hash))`` per
    image."""
    import dataclasses
    import tempfile

    from flipbook.models.controlnet import ControlNets

    p = data["payload"]
    models_dir = None if data["models_dir"] is None else Path(data["models_dir"])
    networks, prepared = _prepared(p, run_dir, models_dir)
    share = slice(units.start, units.stop)
    prepared = dataclasses.replace(
        prepared, seeds=prepared.seeds[share], requests=prepared.requests[share],
        hires_requests=prepared.hires_requests[share],
    )  # fmt: skip
    made = None
    with a1111_names(), tempfile.TemporaryDirectory(prefix="flipbook-stills-") as scratch:
        try:
            bundle = load(p["model"], models_dir=models_dir, refiner=p.get("refiner"))
            made = make_stills(prepared, bundle, networks, events, Path(scratch), finish_on_cancel=True,
                               controlnets=ControlNets(models_dir))  # fmt: skip
        finally:
            if prepared.uses_loras or made is None or made.embeddings:
                forget()  # LoRAs and embeddings change the pipe; the next task loads it clean
        refiner_hash = bundle.refiner.hash if bundle.refiner is not None else None
        for offset, still in enumerate(made.stills):
            yield units.start + offset, (still.path.read_bytes(), still.seed, still.infotext, bundle.name,
                                         refiner_hash)  # fmt: skip

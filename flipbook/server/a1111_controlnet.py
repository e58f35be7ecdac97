"""ControlNet through the A1111 API as the sd-webui-controlnet extension takes it.

A txt2img or img2img request's ``alwayson_scripts.controlnet.args`` is a list of units (webuiapi's
``ControlNetUnit.to_dict()``): ``image`` (base64; none in img2img: the init image), ``module`` (the
extension's preprocessor names, read as flipbook's preprocessors as the Deforum import reads them),
``model`` (a name from ``/controlnet/model_list``, an A1111 ``[hash]`` allowed), ``weight``,
``guidance_start``, ``guidance_end``, ``threshold_a`` / ``threshold_b`` (canny's thresholds), ``enabled``.
Each becomes one of flipbook's ControlNet units on every image (both hires passes, as the extension's
``hr_option`` "Both"). Settings flipbook has no such thing for (``resize_mode``, ``control_mode``,
``pixel_perfect``, ``processor_res``, ``mask``, ...) are noted as ignored. Also ``/controlnet/model_list``,
``/controlnet/module_list``, ``/controlnet/version`` and ``/controlnet/detect`` (the preprocessor alone).
"""

from __future__ import annotations

import base64
import io
from typing import Annotated, Any

import PIL.Image
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from flipbook.errors import FlipbookError
from flipbook.server.app import server_state
from flipbook.server.submit import json_body
from flipbook.spec.deforum_controlnet import EXTENSION_MODULES
from flipbook.spec.fields import CONTROLNET

router = APIRouter(prefix="/controlnet", tags=["a1111"])
SCRIPT = "controlnet"
MAX_UNITS = 8
MODEL_FREE = ("none", "canny", "lineart", "tile", "shuffle")
"""flipbook's preprocessors that need no model of their own (the ones the A1111 API runs)."""
MODULES = {module: name for module, name in EXTENSION_MODULES.items() if name in MODEL_FREE}
"""The extension's module names the API takes -> flipbook's preprocessor."""
_IGNORED_DEFAULTS = {
    "resize_mode": ("Resize and Fill", "Crop and Resize", "Just Resize", 0, 1, 2), "low_vram": (False,),
    "processor_res": None, "control_mode": ("Balanced", 0), "pixel_perfect": (False,), "hr_option": ("Both",),
    "mask": (None, ""), "guessmode": (None, False),
}  # fmt: skip
"""Unit settings flipbook has no such thing for -> values that need no note (None: never noted)."""


def controlnet_units(
    scripts: Any, img2img: bool, notes: list[str]
) -> tuple[list[dict[str, Any]], dict[str, PIL.Image.Image]]:
    """The enabled ControlNet units of a request's ``alwayson_scripts`` (checked; their model names against
    the models folder by :func:`flipbook.server.stills.check_still_models`) and their images to save (file
    name in the run folder -> image). Other scripts are noted as ignored."""
    from flipbook.server.stills import decode_image

    if scripts in (None, {}):
        return [], {}
    if not isinstance(scripts, dict):
        raise FlipbookError("alwayson_scripts", type(scripts).__name__, "an object of script name -> {args}")
    units_field = None
    for name, value in scripts.items():
        if str(name).lower() == SCRIPT:
            units_field = (name, value)
        elif value not in (None, {}, {"args": []}, {"args": [False]}):
            notes.append(f"alwayson_scripts.{name}: flipbook has no such script; ignored")
    if units_field is None:
        return [], {}
    name, value = units_field
    args = value.get("args") if isinstance(value, dict) else None
    field = f"alwayson_scripts.{name}.args"
    if not isinstance(args, list) or len(args) > MAX_UNITS:
        raise FlipbookError(field, type(args).__name__, f"a list of at most {MAX_UNITS} ControlNet units")
    units, images = [], {}
    for index, arg in enumerate(args):
        where = f"{field}[{index}]"
        if not isinstance(arg, dict):
            raise FlipbookError(
                where, type(arg).__name__, "a ControlNet unit object (module, model, image, ...)"
            )
        if not arg.get("enabled", True) or str(arg.get("model") or "None") == "None":
            continue
        unit = _unit(arg, where, notes)
        raw = arg.get("image") or arg.get("input_image")
        if isinstance(raw, dict):  # the extension's {"image": ..., "mask": ...} form
            raw = raw.get("image")
        if raw:
            unit["image"] = f"inputs/control_{len(units)}.png"
            images[unit["image"]] = decode_image(raw, f"{where}.image").convert("RGB")
        elif not img2img:
            raise FlipbookError(f"{where}.image", None, "a base64 control image (txt2img has no init image)")
        units.append(unit)
    return units, images


def _unit(arg: dict[str, Any], where: str, notes: list[str]) -> dict[str, Any]:
    """One unit's settings as flipbook's (the module read as a preprocessor, the model as a name, looked up
    later: :func:`flipbook.server.stills.check_still_models` knows the models folder)."""
    from flipbook.sampling.requests import Control
    from flipbook.server.stills import as_number, checkpoint_name

    module = arg.get("module") or "none"
    if module not in MODULES:
        raise FlipbookError(f"{where}.module", module, f"one of: {', '.join(MODULES)}")
    if not isinstance(arg.get("model"), str):
        raise FlipbookError(f"{where}.model", arg.get("model"), "a name from /controlnet/model_list")
    model = checkpoint_name(arg["model"])
    values = {key: as_number(f"{where}.{key}", arg.get(key, default))
              for key, default in (("weight", 1.0), ("guidance_start", 0.0), ("guidance_end", 1.0))}  # fmt: skip
    try:
        Control(model, "image", values["weight"], values["guidance_start"], values["guidance_end"]).validate(
            0
        )
    except FlipbookError as error:
        leaf = {"conditioning_scale": "weight"}.get(error.field.split(".")[-1], error.field.split(".")[-1])
        raise FlipbookError(f"{where}.{leaf}", error.value, error.allowed) from None
    unit = {
        "model": model,
        "field": f"{where}.model",
        "preprocessor": MODULES[module],
        "image": None,
        **values,
    }
    if MODULES[module] == "canny":
        low, high = (as_number(f"{where}.{key}", arg.get(key, default))
                     for key, default in (("threshold_a", 100), ("threshold_b", 200)))  # fmt: skip
        if not 0 <= low <= high <= 255:
            raise FlipbookError(
                f"{where}.threshold_a", f"{low:g}, {high:g}", "canny thresholds 0 <= a <= b <= 255"
            )
        unit |= {"low_threshold": int(low), "high_threshold": int(high)}
    for key, quiet in _IGNORED_DEFAULTS.items():
        if quiet is not None and key in arg and arg[key] not in quiet:
            notes.append(f"{where}.{key}: flipbook has no such setting; ignored")
    return unit


def preprocessed(unit: dict[str, Any], image: PIL.Image.Image, size: tuple[int, int]) -> PIL.Image.Image:
    """A unit's control image: resized to the picture's size, then its preprocessor."""
    from flipbook.control.preprocess import preprocess

    thresholds = {key: unit[key] for key in ("low_threshold", "high_threshold") if key in unit}
    return preprocess(
        unit["preprocessor"], image.convert("RGB").resize(size, PIL.Image.LANCZOS), **thresholds
    )


# ---- the extension's own routes ------------------------------------------------------------------------------


@router.get("/version")
def version() -> dict[str, int]:
    return {"version": 2}


@router.get("/model_list")
def model_list(request: Request) -> dict[str, list[str]]:
    """The built-in ``tiny`` and the models folder's ControlNets, by name."""
    from flipbook.models.folders import ModelsDir

    models_dir = server_state(request).settings.models_dir
    names = list(CONTROLNET.builtins)
    if models_dir is not None:
        names += list(ModelsDir(models_dir).list("controlnet"))
    return {"model_list": names}


@router.get("/module_list")
def module_list() -> dict[str, Any]:
    """The extension's module names the API takes, with the flipbook preprocessor each runs."""
    return {
        "module_list": list(MODULES),
        "module_detail": {m: {"preprocessor": p} for m, p in MODULES.items()},
    }


@router.post("/detect")
async def detect(body: Annotated[dict[str, Any], Depends(json_body)]) -> dict[str, Any]:
    """The preprocessor alone on each image (``controlnet_input_images``; webuiapi sends
    ``controlnet_images``), at the image's own size."""
    from flipbook.server.stills import MAX_IMAGES, decode_image

    module = body.get("controlnet_module") or "none"
    if module not in MODULES:
        raise FlipbookError("controlnet_module", module, f"one of: {', '.join(MODULES)}")
    key = "controlnet_input_images" if "controlnet_input_images" in body else "controlnet_images"
    raw = body.get(key)
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_IMAGES:
        raise FlipbookError(key, type(raw).__name__, f"a list of 1 to {MAX_IMAGES} base64 images")
    unit = _unit({"module": module, "model": "tiny", "threshold_a": body.get("controlnet_threshold_a", 100),
                  "threshold_b": body.get("controlnet_threshold_b", 200)}, "controlnet", [])  # fmt: skip
    images = [decode_image(item, f"{key}[{i}]") for i, item in enumerate(raw)]
    maps = [await run_in_threadpool(preprocessed, unit, image, image.size) for image in images]
    return {"images": [_encode(image) for image in maps], "info": "Success"}


def _encode(image: PIL.Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")

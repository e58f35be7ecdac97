"""The rest of the AUTOMATIC1111 API that clients call: model lists, PNG info, extras upscaling, memory,
refresh and skip, with the shapes of A1111's ``modules/api/models.py``.

Lists name models relative to the models folder (as ``/sdapi/v1/sd-models`` does), never by a server path.
What flipbook has no such thing for answers as A1111 does with none installed (``face-restorers``,
``hypernetworks``, ``prompt-styles``: empty lists); ``interrogate`` answers 501 naming what it would need.
Extras upscaling runs the named upscaler on the CPU in the request (never on the device the queue's
workers use), with every picture's side bounded as ``animation.width`` is.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Annotated, Any

import PIL.Image
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from flipbook.errors import FlipbookError
from flipbook.runs.hires import HIRES_UPSCALER, LATENT_UPSCALERS, MAX_SIDE, PIXEL_UPSCALERS
from flipbook.server.app import ServerState, server_state
from flipbook.server.security import check_model_reference, public_path
from flipbook.server.stills import MAX_IMAGES, decode_image
from flipbook.server.submit import json_body

router = APIRouter(prefix="/sdapi/v1", tags=["a1111"])


def _folder(server: ServerState, kind: str) -> dict[str, Any]:
    """The models folder's models of ``kind``: name -> path (empty without ``--models-dir``)."""
    from flipbook.models.folders import ModelsDir

    if server.settings.models_dir is None:
        return {}
    return ModelsDir(server.settings.models_dir).list(kind)


# ---- lists ------------------------------------------------------------------------------------------------


@router.get("/loras")
def loras(request: Request) -> list[dict[str, Any]]:
    """LoRAs in the models folder: ``name`` (what ``<lora:name:w>`` takes), ``alias``, ``path`` relative to
    the models folder, ``metadata`` (none read)."""
    server = server_state(request)
    return [{"name": name, "alias": name, "path": public_path(path, server.settings), "metadata": {}}
            for name, path in _folder(server, "lora").items()]  # fmt: skip


@router.get("/embeddings")
def embeddings(request: Request) -> dict[str, Any]:
    """Textual-inversion embeddings in the models folder, by name (``loaded``); their vectors are read when a
    prompt uses them, so ``shape`` and ``vectors`` are unknown here (None)."""
    server = server_state(request)
    loaded = {name: {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": None,
                     "vectors": None} for name in _folder(server, "embedding")}  # fmt: skip
    return {"loaded": loaded, "skipped": {}}


@router.get("/upscalers")
def upscalers(request: Request) -> list[dict[str, Any]]:
    """The resizers (None, Lanczos, Nearest) and the upscaling models in the models folder."""
    server = server_state(request)
    built_in = [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
                for name in PIXEL_UPSCALERS]  # fmt: skip
    return built_in + [
        {"name": name, "model_name": name, "model_path": public_path(path, server.settings), "model_url": None,
         "scale": 4} for name, path in _folder(server, "upscaler").items()
    ]  # fmt: skip


@router.get("/latent-upscale-modes")
def latent_upscale_modes() -> list[dict[str, str]]:
    """The hires fix's latent upscalers."""
    return [{"name": name} for name in LATENT_UPSCALERS]


@router.get("/sd-vae")
def sd_vae(request: Request) -> list[dict[str, Any]]:
    """VAEs in the models folder (``filename`` relative to it)."""
    server = server_state(request)
    return [{"model_name": name, "filename": public_path(path, server.settings)}
            for name, path in _folder(server, "vae").items()]  # fmt: skip


@router.get("/face-restorers")
def face_restorers() -> list[dict[str, Any]]:
    """None: flipbook has no face restoration."""
    return []


@router.get("/hypernetworks")
def hypernetworks() -> list[dict[str, Any]]:
    """None: flipbook does not load hypernetworks."""
    return []


@router.get("/prompt-styles")
def prompt_styles() -> list[dict[str, Any]]:
    """None: flipbook keeps no saved styles."""
    return []


@router.post("/refresh-checkpoints")
def refresh_checkpoints() -> None:
    """Nothing to do: the models folder is read on every request."""
    return None


@router.post("/refresh-loras")
def refresh_loras() -> None:
    """Nothing to do: the models folder is read on every request."""
    return None


@router.post("/skip")
def skip(request: Request) -> None:
    """A1111's skip: the running A1111 request's current image (its batch) is finished as it stands, and the
    request goes on with its next one. Renders are never skipped."""
    from flipbook.server.stills import STILL_KINDS

    server = server_state(request)
    for job_id in server.hub.running():
        record = server.store.get(job_id)
        if record is not None and record.kind in STILL_KINDS:
            server.hub.skip(job_id)
    return None


@router.get("/cmd-flags")
def cmd_flags(request: Request) -> dict[str, Any]:
    """The server's command-line settings under A1111's flag names where there is one (no paths)."""
    settings = server_state(request).settings
    return {
        "api": True, "nowebui": False, "listen": settings.host not in ("127.0.0.1", "localhost", "::1"),
        "port": settings.port, "server_name": None, "api_auth": None if settings.auth is None else "set",
        "cors_allow_origins": ",".join(settings.allow_origins) or None, "ckpt_dir": None,
        "models_dir": None if settings.models_dir is None else "set", "workers": settings.workers,
    }  # fmt: skip


@router.get("/memory")
def memory() -> dict[str, Any]:
    """A1111's memory report: the machine's RAM and, with a CUDA device, its memory and torch's counters."""
    return {"ram": _ram(), "cuda": _cuda()}


def _ram() -> dict[str, Any]:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total, free = page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError) as error:
        return {"error": f"unknown on this system: {error}"}
    return {"free": free, "used": total - free, "total": total}


def _cuda() -> dict[str, Any]:
    import sys

    torch = sys.modules.get("torch")  # loaded by a worker that sampled; never imported just to report
    if torch is None or not torch.cuda.is_available():
        return {"error": "no CUDA device in use"}
    free, total = torch.cuda.mem_get_info()
    stats = torch.cuda.memory_stats()

    def pair(name: str) -> dict[str, int]:
        return {"current": stats.get(f"{name}.all.current", 0), "peak": stats.get(f"{name}.all.peak", 0)}

    return {
        "system": {"free": free, "used": total - free, "total": total},
        "active": pair("active_bytes"), "allocated": pair("allocated_bytes"), "reserved": pair("reserved_bytes"),
        "inactive": pair("inactive_split_bytes"),
        "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)},
    }  # fmt: skip


# ---- PNG info and interrogate -------------------------------------------------------------------------------


@router.post("/png-info")
def png_info(body: Annotated[dict[str, Any], Depends(json_body)]) -> dict[str, Any]:
    """A1111's PNG info: the ``parameters`` text (``info``), the image's other text entries (``items``) and
    the parameters read as A1111 reads them (``parameters``: ``Prompt``, ``Negative prompt``, ``Steps``, ...,
    ``Size-1``, ``Size-2``, all as text). An image without parameters gives empty values, as in A1111."""
    image = decode_image(body.get("image"), "image")
    text = image.info.get("parameters")
    items = {
        key: value for key, value in image.info.items() if key != "parameters" and isinstance(value, str)
    }
    return {"info": text or "", "items": items, "parameters": _parameters(text) if text else {}}


def _parameters(text: str) -> dict[str, str]:
    """A1111's ``parse_generation_parameters`` dictionary; {} for text that is no infotext."""
    from flipbook.io.pnginfo import parse_parameters

    try:
        p = parse_parameters(str(text))
    except FlipbookError:
        return {}
    values = {"Prompt": p.prompt, "Negative prompt": p.negative_prompt, "Steps": str(p.steps),
              "Sampler": p.sampler, "CFG scale": f"{p.cfg_scale:g}", "Seed": str(p.seed),
              "Size-1": str(p.width), "Size-2": str(p.height)}  # fmt: skip
    optional = {"Model hash": p.model_hash, "Model": p.model_name, "Denoising strength": p.denoising_strength,
                "Clip skip": p.clip_skip}  # fmt: skip
    values |= {key: f"{value:g}" if isinstance(value, float) else str(value)
               for key, value in optional.items() if value is not None}  # fmt: skip
    return values | dict(p.extra)


@router.post("/interrogate")
def interrogate() -> JSONResponse:
    """Not available: captioning an image needs a CLIP interrogator (BLIP captions with CLIP-ranked tags) or
    DeepDanbooru, and flipbook has neither."""
    detail = ("interrogate needs an image-captioning model (A1111's CLIP interrogator: BLIP with CLIP, or "
              "DeepDanbooru); flipbook has none")  # fmt: skip
    return JSONResponse({"error": "NotImplemented", "detail": detail, "field": "model"}, status_code=501)


# ---- extras: upscaling ----------------------------------------------------------------------------------


@router.post("/extra-single-image")
async def extra_single_image(
    request: Request, body: Annotated[dict[str, Any], Depends(json_body)]
) -> dict[str, Any]:
    """A1111's extras on one image: ``upscaler_1`` (and ``upscaler_2`` blended in at
    ``extras_upscaler_2_visibility``) by ``upscaling_resize`` (``resize_mode`` 0) or to
    ``upscaling_resize_w`` x ``upscaling_resize_h`` (1, cropped to it with ``upscaling_crop``)."""
    server = server_state(request)
    image = decode_image(body.get("image"), "image")
    settings = _extras_settings(body, server)
    result = await run_in_threadpool(_upscale, image, settings, server)
    return {"html_info": _html_info(settings), "image": _encode(result)}


@router.post("/extra-batch-images")
async def extra_batch_images(
    request: Request, body: Annotated[dict[str, Any], Depends(json_body)]
) -> dict[str, Any]:
    """The extras on each image of ``imageList`` (``[{"data": base64, "name": ...}]``, at most 64)."""
    server = server_state(request)
    items = body.get("imageList")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_IMAGES:
        raise FlipbookError("imageList", _count(items), f"a list of 1 to {MAX_IMAGES} images")
    images = []
    for i, item in enumerate(items):
        data = item.get("data") if isinstance(item, dict) else None
        images.append(decode_image(data, f"imageList[{i}].data"))
    settings = _extras_settings(body, server)
    results = [await run_in_threadpool(_upscale, image, settings, server) for image in images]
    return {"html_info": _html_info(settings), "images": [_encode(image) for image in results]}


def _count(items: Any) -> Any:
    return f"{len(items)} images" if isinstance(items, list) else type(items).__name__


def _extras_settings(body: dict[str, Any], server: ServerState) -> dict[str, Any]:
    """The extras request's upscaling settings, checked (names, never paths; numbers in range)."""
    from flipbook.server.stills import as_integer, as_number

    r = {
        "resize_mode": 0,
        "upscaling_resize": 2,
        "upscaling_resize_w": 512,
        "upscaling_resize_h": 512,
        "upscaling_crop": True,
        "upscaler_1": "None",
        "upscaler_2": "None",
        "extras_upscaler_2_visibility": 0,
    }
    r |= {key: value for key, value in body.items() if key in r and value is not None}  # fmt: skip
    mode = as_integer("resize_mode", r["resize_mode"])
    if mode not in (0, 1):
        raise FlipbookError("resize_mode", mode, "0 (scale by upscaling_resize) or 1 (to a size)")
    for name in ("upscaler_1", "upscaler_2"):
        if not isinstance(r[name], str):
            raise FlipbookError(name, r[name], "an upscaler name from /sdapi/v1/upscalers")
        if r[name] in LATENT_UPSCALERS:
            raise FlipbookError(
                name, r[name], "an upscaler for pictures (latent upscalers are for hires fix)"
            )
        if r[name] not in PIXEL_UPSCALERS:
            check_model_reference(name, r[name], HIRES_UPSCALER, server.settings.models_dir)
    visibility = as_number("extras_upscaler_2_visibility", r["extras_upscaler_2_visibility"])
    if not 0 <= visibility <= 1:
        raise FlipbookError("extras_upscaler_2_visibility", visibility, "a number from 0 to 1")
    scale = as_number("upscaling_resize", r["upscaling_resize"])
    if not 0 < scale <= 16:
        raise FlipbookError("upscaling_resize", scale, "a factor above 0, at most 16")
    size = tuple(as_integer(name, r[name]) for name in ("upscaling_resize_w", "upscaling_resize_h"))
    if mode == 1 and not all(1 <= side <= MAX_SIDE for side in size):
        raise FlipbookError("upscaling_resize_w", f"{size[0]}x{size[1]}", f"sides from 1 to {MAX_SIDE}")
    return {"mode": mode, "scale": scale, "size": size, "crop": bool(r["upscaling_crop"]),
            "upscaler_1": r["upscaler_1"], "upscaler_2": r["upscaler_2"], "visibility": visibility}  # fmt: skip


def _target(image: PIL.Image.Image, s: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """A1111's postprocessing upscale sizes: the upscaled size and, with ``upscaling_crop``, the box the
    middle is cut to."""
    if s["mode"] == 0:
        scale, box = s["scale"], None
    else:
        width, height = s["size"]
        ratios = (width / image.width, height / image.height)
        scale = max(ratios) if s["crop"] else min(ratios)
        box = (width, height) if s["crop"] else None
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    if max(size) > MAX_SIDE:
        raise FlipbookError(
            "upscaling_resize", f"{scale:g}", f"a factor that keeps the picture at most {MAX_SIDE} pixels on a side",
            detail=f"{image.width}x{image.height} upscaled is {size[0]}x{size[1]}",
        )  # fmt: skip
    return size, box


def _upscale(image: PIL.Image.Image, s: dict[str, Any], server: ServerState) -> PIL.Image.Image:
    """One picture through ``upscaler_1`` (blended with ``upscaler_2``), then cut to the box."""

    size, box = _target(image, s)
    rgb = image.convert("RGB")
    result = _run_upscaler("upscaler_1", s, rgb, size, server)
    if s["visibility"] > 0 and s["upscaler_2"] != "None":
        result = PIL.Image.blend(result, _run_upscaler("upscaler_2", s, rgb, size, server), s["visibility"])
    if box is not None:
        left, top = (size[0] - box[0]) // 2, (size[1] - box[1]) // 2
        result = result.crop((left, top, left + box[0], top + box[1]))
    return result


def _run_upscaler(
    field: str, s: dict[str, Any], image: PIL.Image.Image, size: tuple[int, int], server: ServerState
) -> PIL.Image.Image:
    """The upscaler the request names in ``field`` (its errors named so) on the CPU."""
    from flipbook.post.upscale import upscale_to

    try:
        return upscale_to(image, size, s[field], models_dir=server.settings.models_dir, device="cpu")
    except FlipbookError as error:  # the loader names its own field
        raise FlipbookError(field, s[field], error.allowed, detail=error.detail) from None


def _html_info(s: dict[str, Any]) -> str:
    size = f"{s['scale']:g}x" if s["mode"] == 0 else f"{s['size'][0]}x{s['size'][1]}"
    return f"<p>Postprocess upscaler: {s['upscaler_1']}, Postprocess upscale to: {size}</p>"


def _encode(image: PIL.Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")

"""The AUTOMATIC1111 web API subset clients use most, under ``/sdapi/v1``, with A1111's names and shapes.

``txt2img`` and ``img2img`` take A1111's request fields (base64 images in and out) and answer ``images``,
``parameters`` (the request, images left out) and ``info`` (a JSON string with seed, all_seeds, infotexts,
...). Each request becomes a still job in the same queue as renders and waits for its turn on a worker, so
a device is never used by two things at once; the images are also kept in the job's run folder. txt2img's
hires fix (``enable_hr``, ``hr_*``) runs A1111's two passes (:mod:`flipbook.runs.hires`, shared with
``flipbook txt2img --hires-*``). Settings flipbook does not have (face restoration, ``inpaint_full_res``, ...)
are ignored with a note in ``info["notes"]``.
"""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from flipbook import __version__
from flipbook.errors import FlipbookError
from flipbook.io.pnginfo import refiner_parameters
from flipbook.runs.hires import HiresSettings, infotext_extras
from flipbook.server.app import ServerState, server_state
from flipbook.server.security import check_model_reference, confined_file, public_path, public_text
from flipbook.server.stills import (
    IMG2IMG,
    SCHEDULERS,
    STILL_KINDS,
    TXT2IMG,
    StillJob,
    check_still_models,
    checkpoint_name,
    still_from_a1111,
)
from flipbook.server.store import (
    CANCELLED,
    DONE,
    FINISHED,
    QUEUED,
    RUNNING,
    IdempotencyKey,
    JobRecord,
    KeyUsed,
    NewJob,
)
from flipbook.server.submit import (
    IDEMPOTENCY_HEADER,
    idempotency_key,
    json_body,
    key_conflict,
    new_job_id,
    remove_run_dir,
)
from flipbook.spec.model import CHECKPOINT

router = APIRouter(prefix="/sdapi/v1", tags=["a1111"])
WAIT_POLL_S = 5.0


@router.post("/txt2img")
async def txt2img(request: Request, body: Annotated[dict[str, Any], Depends(json_body)]) -> JSONResponse:
    """A1111 txt2img: ``prompt``, ``negative_prompt``, ``steps``, ``cfg_scale``, ``sampler_name``
    (``scheduler``), ``seed``, ``width``, ``height``, ``batch_size``, ``n_iter``, ``override_settings``, and
    hires fix: ``enable_hr``, ``hr_scale`` or ``hr_resize_x``/``hr_resize_y``, ``hr_upscaler``,
    ``hr_second_pass_steps``, ``denoising_strength``, ``hr_sampler_name`` (``hr_scheduler``), ``hr_prompt``,
    ``hr_negative_prompt``."""
    return await _still(request, body, TXT2IMG)


@router.post("/img2img")
async def img2img(request: Request, body: Annotated[dict[str, Any], Depends(json_body)]) -> JSONResponse:
    """A1111 img2img and inpainting: also ``init_images``, ``denoising_strength``, ``mask``, ``mask_blur``,
    ``inpainting_fill``, ``inpainting_mask_invert``, ``initial_noise_multiplier``."""
    return await _still(request, body, IMG2IMG)


async def _still(request: Request, body: dict[str, Any], kind: str) -> JSONResponse:
    """Check, queue, wait for the worker, answer as A1111 does. With an ``Idempotency-Key`` header the key is
    stored with the job: the same request again waits for that job and answers with its images instead of
    making new ones (a different request with the key is a 422)."""
    server = server_state(request)
    key = idempotency_key(request.headers.get(IDEMPOTENCY_HEADER), f"POST /sdapi/v1/{kind}", body)
    first = await run_in_threadpool(server.store.first_request, key) if key is not None else None
    if first is None:
        default_model = await run_in_threadpool(server.current_model)
        still = await run_in_threadpool(still_from_a1111, body, kind, default_model)
        await run_in_threadpool(check_still_models, still.payload, server.settings.models_dir)
        job_id = new_job_id()
        try:
            await run_in_threadpool(_queue_still, server, job_id, still, key)
        except KeyUsed as used:  # the same key arrived twice at once: the other request queued the job
            first = used.first
    if first is not None:
        conflict = key_conflict(key, first)
        if conflict is not None:
            raise conflict
        job_id = first.job_ids[0]
    record = await wait_finished(server, job_id)
    if record is None:
        raise HTTPException(410, f"job {job_id} was deleted before it finished")
    if record.state not in (DONE, CANCELLED):
        status = 500 if record.error_type in ("internal", None) else 422
        detail = public_text(record.error or f"the job was {record.state}", server.settings)
        return JSONResponse(
            {"error": record.error_type, "detail": detail, "field": record.error_field}, status
        )
    images = []
    if record.payload["send_images"]:
        images = await run_in_threadpool(_read_images, server, record)
    info = a1111_info(record)
    return JSONResponse(
        {"images": images, "parameters": record.payload["parameters"], "info": json.dumps(info)}
    )


def _queue_still(
    server: ServerState, job_id: str, still: StillJob, key: IdempotencyKey | None = None
) -> None:
    run_dir = server.settings.runs_dir / job_id
    try:
        for name, image in still.images.items():
            (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
            image.save(run_dir / name, format="PNG")
        run_dir.mkdir(parents=True, exist_ok=True)
        server.queue([NewJob(job_id, still.kind, still.payload, still.notes)], None, key)
    except BaseException:
        remove_run_dir(server.settings, job_id)
        raise


async def wait_finished(server: ServerState, job_id: str) -> JobRecord | None:
    """Wait until the job has finished (woken by its state events; the database is the truth)."""
    mailbox = server.hub.subscribe(job_id)
    try:
        while True:
            record = await run_in_threadpool(server.store.get, job_id)
            if record is None or record.state in FINISHED:
                return record
            while await mailbox.wait(WAIT_POLL_S):
                if any(name not in ("step", "frame") for name, _ in mailbox.drain()):
                    break
    finally:
        server.hub.unsubscribe(job_id, mailbox)


def _read_images(server: ServerState, record: JobRecord) -> list[str]:
    """The job's images as base64 (regular files inside its run folder only)."""
    folder = server.settings.runs_dir / record.id
    files = [confined_file(folder, name) for name in record.result.get("images", [])]
    return [base64.b64encode(path.read_bytes()).decode("ascii") for path in files if path is not None]


def a1111_info(record: JobRecord) -> dict[str, Any]:
    """A1111's ``info`` object for a finished still job."""
    p, result = record.payload, record.result
    seeds = result.get("seeds") or [(p["seed"] + i) % 2**32 for i in range(p["count"])]
    n = len(seeds)
    return {
        "prompt": p["prompt"], "all_prompts": [p["prompt"]] * n,
        "negative_prompt": p["negative_prompt"], "all_negative_prompts": [p["negative_prompt"]] * n,
        "seed": seeds[0], "all_seeds": seeds, "subseed": -1, "all_subseeds": [-1] * n, "subseed_strength": 0,
        "width": p["width"], "height": p["height"], "sampler_name": p["sampler"], "cfg_scale": p["cfg_scale"],
        "steps": p["steps"], "batch_size": p["batch_size"], "restore_faces": False,
        "face_restoration_model": None, "sd_model_name": p["model"], "sd_model_hash": None,
        "sd_vae_name": None, "sd_vae_hash": None, "seed_resize_from_w": -1, "seed_resize_from_h": -1,
        "denoising_strength": _denoising_strength(p), "extra_generation_params": _extra_parameters(p, result),
        "index_of_first_image": 0, "infotexts": result.get("infotexts", []), "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(record.started_at or record.created_at)),
        "clip_skip": p["clip_skip"], "is_using_inpainting_conditioning": False,
        "version": f"flipbook {__version__}", "notes": p["notes"], "job_id": record.id,
        "interrupted": record.state == CANCELLED or bool(result.get("interrupted")),
    }  # fmt: skip


def _denoising_strength(p: dict[str, Any]) -> float | None:
    """img2img's strength, or the hires pass's; None for a plain txt2img (as A1111 reports it)."""
    if p["kind"] == IMG2IMG:
        return p["strength"]
    return p["hires"]["denoising_strength"] if p.get("hires") else None


def _extra_parameters(p: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """A1111's ``extra_generation_params``: the hires fix's and the refiner's infotext keys."""
    extra: dict[str, Any] = {}
    if p.get("hires"):
        hires = HiresSettings(**p["hires"])
        extra |= infotext_extras(hires, p["sampler"], p["prompt"], p["negative_prompt"])
    if p.get("refiner"):
        extra |= refiner_parameters(p["refiner"], result.get("refiner_hash"), p["refiner_switch_at"])
    return extra


# ---- progress and control ----------------------------------------------------------------------------


@router.get("/progress")
def progress(request: Request, skip_current_image: Annotated[bool, Query()] = False) -> dict[str, Any]:
    """A1111's progress: the running job's fraction and time left, A1111's ``state`` object, and the latest
    preview as base64 PNG (``current_image``)."""
    server = server_state(request)
    counts = server.store.counts()
    running = server.hub.running()
    job_id = running[0] if running else None
    snapshot = server.hub.progress(job_id) if job_id else None
    image = server.hub.preview(job_id) if job_id and not skip_current_image else None
    current = None
    if image is not None:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        current = base64.b64encode(buffer.getvalue()).decode("ascii")
    snapshot = snapshot or {}
    return {
        "progress": snapshot.get("fraction", 0.0),
        "eta_relative": snapshot.get("eta_s") or 0.0,
        "state": {
            "skipped": False,
            "interrupted": bool(job_id and server.hub.cancel_requested(job_id)),
            "stopping_generation": False,
            "job": job_id or "",
            "job_count": counts[QUEUED] + counts[RUNNING],
            "job_timestamp": "0",
            "job_no": snapshot.get("frame", 0),
            "sampling_step": snapshot.get("step", 0),
            "sampling_steps": snapshot.get("steps", 0),
        },
        "current_image": current,
        "textinfo": None,
        "current_task": job_id,
    }


@router.post("/interrupt")
def interrupt(request: Request) -> dict[str, Any]:
    """Stop the running A1111 requests (images made so far are returned); renders are cancelled through
    ``/api/jobs/{id}/cancel`` or the Deforum API, never by an A1111 client."""
    server = server_state(request)
    stopped = []
    for job_id in server.hub.running():
        record = server.store.get(job_id)
        if record is not None and record.kind in STILL_KINDS and server.store.request_cancel(job_id):
            server.hub.cancel(job_id)
            stopped.append(job_id)
    return {"interrupted": stopped}


# ---- models, samplers, options ---------------------------------------------------------------------------


@router.get("/sd-models")
def sd_models(request: Request) -> list[dict[str, Any]]:
    """The built-in models and every checkpoint in ``--models-dir`` (A1111 or ComfyUI layout)."""
    return _models(server_state(request))


def _models(server: ServerState) -> list[dict[str, Any]]:
    """Built-ins and the models folder's checkpoints; ``filename`` is relative to the models folder (a client
    never sees where the server keeps its files)."""
    from flipbook.models.families import builtin_names
    from flipbook.models.folders import ModelsDir

    models = [
        {"title": name, "model_name": name, "hash": None, "sha256": None, "filename": name, "config": None}
        for name in builtin_names("checkpoint") or ()
    ]
    if server.settings.models_dir is not None:
        for name, path in ModelsDir(server.settings.models_dir).list("checkpoint").items():
            models.append({"title": name, "model_name": name.replace("/", "_"), "hash": None, "sha256": None,
                           "filename": public_path(path, server.settings), "config": None})  # fmt: skip
    return models


@router.get("/samplers")
def samplers() -> list[dict[str, Any]]:
    from flipbook.samplers.names import SAMPLER_NAMES

    return [{"name": name, "aliases": [], "options": {}} for name in SAMPLER_NAMES]


@router.get("/schedulers")
def schedulers() -> list[dict[str, Any]]:
    return [{"name": name, "label": name.capitalize(), "aliases": None, "default_rho": -1, "need_inner_model": False}
            for name in SCHEDULERS]  # fmt: skip


@router.get("/scripts")
def scripts() -> dict[str, list[str]]:
    """The always-on scripts flipbook takes in ``alwayson_scripts``: ControlNet (clients such as webuiapi
    look here)."""
    from flipbook.server.a1111_controlnet import SCRIPT

    return {"txt2img": [SCRIPT], "img2img": [SCRIPT]}


@router.get("/options")
def get_options(request: Request) -> dict[str, Any]:
    server = server_state(request)
    return {
        "sd_model_checkpoint": server.current_model(),
        "sd_checkpoint_hash": None,
        "CLIP_stop_at_last_layers": 1,
        "samples_format": "png",
    }


@router.post("/options")
def set_options(request: Request, body: Annotated[dict[str, Any], Depends(json_body)]) -> None:
    """Only ``sd_model_checkpoint`` is kept (in the database, so it survives a restart); it must be one of
    ``/sd-models``. Other options are accepted and ignored, as flipbook has no such settings."""
    server = server_state(request)
    name = body.get("sd_model_checkpoint")
    if name is None:
        return None
    check_model_reference("sd_model_checkpoint", str(name), CHECKPOINT, server.settings.models_dir)
    models = _models(server)
    known = {m["model_name"]: m["title"] for m in models} | {m["title"]: m["title"] for m in models}
    key = checkpoint_name(str(name))
    if key not in known:
        raise FlipbookError("sd_model_checkpoint", name, f"one of: {', '.join(sorted(set(known.values())))}")
    server.store.set_option("sd_model_checkpoint", known[key])
    return None

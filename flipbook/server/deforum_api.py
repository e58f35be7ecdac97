"""The Deforum extension's batch API under ``/deforum_api``, with Deforum's names and shapes.

``POST /deforum_api/batches`` takes ``{"deforum_settings": {...} | [{...}, ...], "options_overrides": {...}}``;
each settings object becomes one render job through :func:`flipbook.spec.deforum.deforum_to_spec_data`
(settings flipbook does not use come back as warnings), all validated before any is queued. Job status uses
Deforum's fields: ``status`` ACCEPTED / SUCCEEDED / FAILED / CANCELLED, ``phase`` QUEUED / PREPARING /
GENERATING / POST_PROCESSING / DONE, ``error_type`` NONE / RETRYABLE (interrupted: resume it) / TERMINAL.
Job ids are flipbook job ids, so ``/api/jobs/{id}`` shows the same job.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from flipbook.errors import FlipbookError
from flipbook.server.app import ServerState, server_state
from flipbook.server.security import public_text
from flipbook.server.stills import checkpoint_name
from flipbook.server.store import (
    CANCELLED,
    DONE,
    FAILED,
    INTERRUPTED,
    QUEUED,
    RENDER,
    RUNNING,
    FirstRequest,
    IdempotencyKey,
    JobRecord,
    KeyUsed,
    NewJob,
)
from flipbook.server.submit import (
    IDEMPOTENCY_HEADER,
    JOB_ID,
    PreparedJob,
    Submission,
    deforum_data,
    idempotency_key,
    json_body,
    key_conflict,
    prepare_render,
    remove_run_dir,
)

router = APIRouter(prefix="/deforum_api", tags=["deforum"])
_STATUS = {QUEUED: "ACCEPTED", RUNNING: "ACCEPTED", DONE: "SUCCEEDED", FAILED: "FAILED",
           CANCELLED: "CANCELLED", INTERRUPTED: "FAILED"}  # fmt: skip
_PHASE = {"preparing": "PREPARING", "generating": "GENERATING", "post_processing": "POST_PROCESSING"}
MAX_BATCH = 64
"""Settings objects in one batch: each is a render job, and a request's body (up to --max-upload-mb) could
otherwise queue hundreds of thousands of them at once."""
_OPTIONS = {"sd_model_checkpoint": ("model", "name"), "CLIP_stop_at_last_layers": ("sampling", "clip_skip")}


class Batch(BaseModel):
    """Deforum's request: one settings object or a list of them, and A1111 options to apply."""

    deforum_settings: dict[str, Any] | list[dict[str, Any]] | None = None
    options_overrides: dict[str, Any] | None = None


_BATCH_BODY = {"requestBody": {"content": {"application/json": {"schema": Batch.model_json_schema()}}}}


def _batch(body: dict[str, Any]) -> Batch:
    """The request body (read with flipbook's checks, see ``json_body``) as a :class:`Batch`."""
    try:
        return Batch.model_validate(body)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "body"
        raise FlipbookError(where, type(problem.get("input")).__name__, problem["msg"]) from None


@router.post("/batches", status_code=202, openapi_extra=_BATCH_BODY)
async def run_batch(body: Annotated[dict[str, Any], Depends(json_body)], request: Request) -> JSONResponse:
    """Queue one render per settings object (all valid, or none queued): 202 with the batch and job ids. With
    an ``Idempotency-Key`` header the same request again answers with the first batch (202,
    ``Idempotent-Replayed: true``) instead of queueing it twice."""
    server = server_state(request)
    batch = _batch(body)
    key = idempotency_key(request.headers.get(IDEMPOTENCY_HEADER), "POST /deforum_api/batches", body)
    first = await run_in_threadpool(server.store.first_request, key) if key is not None else None
    if first is not None:
        return await run_in_threadpool(_replayed, server, key, first)
    settings = batch.deforum_settings
    if not settings:
        message = {"message": "No settings files provided. Please provide an element 'deforum_settings'."}
        return JSONResponse(message, status_code=400)
    items = settings if isinstance(settings, list) else [settings]
    if len(items) > MAX_BATCH:
        raise FlipbookError(
            "deforum_settings", f"{len(items)} settings objects", f"at most {MAX_BATCH} per batch",
            detail="send the rest in further batches",
        )  # fmt: skip
    prepared = await run_in_threadpool(_prepare_all, server, items, batch.options_overrides or {})
    batch_id = f"batch-{secrets.token_hex(6)}"
    jobs = [NewJob(p.id, RENDER, p.payload, p.warnings, batch_id) for p in prepared]
    try:
        await run_in_threadpool(server.queue, jobs, (batch_id, batch.options_overrides or {}), key)
    except KeyUsed as used:  # the same key arrived twice at once: the other request queued the batch
        for p in prepared:
            remove_run_dir(server.settings, p.id)
        return await run_in_threadpool(_replayed, server, key, used.first)
    except BaseException:
        for p in prepared:
            remove_run_dir(server.settings, p.id)
        raise
    return JSONResponse(_accepted(batch_id, jobs), status_code=202)


def _accepted(batch_id: str, jobs: list[NewJob] | list[JobRecord]) -> dict[str, Any]:
    return {
        "message": "Job(s) accepted",
        "batch_id": batch_id,
        "job_ids": [job.id for job in jobs],
        "warnings": {job.id: job.warnings for job in jobs if job.warnings},
    }


def _replayed(server: ServerState, key: IdempotencyKey, first: FirstRequest) -> JSONResponse:
    """The answer to a batch whose idempotency key was used before: that batch again, or why not."""
    conflict = key_conflict(key, first)
    if conflict is not None:
        raise conflict
    records = [record for job_id in first.job_ids if (record := server.store.get(job_id)) is not None]
    if not records or first.batch_id is None:
        raise HTTPException(410, f"the batch made with this {IDEMPOTENCY_HEADER} was deleted")
    body = _accepted(first.batch_id, records)
    return JSONResponse(body, status_code=202, headers={"Idempotent-Replayed": "true"})


def _prepare_all(
    server: ServerState, items: list[dict[str, Any]], overrides: dict[str, Any]
) -> list[PreparedJob]:
    """Validate every settings object; the first error names its index, and nothing stays on disk."""
    prepared: list[PreparedJob] = []
    try:
        for index, item in enumerate(items):
            try:
                data, warnings = deforum_data(item)
                warnings += _apply_options(data, overrides)
                prepared.append(prepare_render(Submission(data, warnings), server.settings))
            except FlipbookError as error:
                where = f"deforum_settings[{index}]"
                raise FlipbookError(
                    f"{where}.{error.field}", error.value, error.allowed, message=f"{where}: {error}"
                ) from None
    except BaseException:
        for p in prepared:
            remove_run_dir(server.settings, p.id)
        raise
    return prepared


def _apply_options(data: dict[str, Any], overrides: dict[str, Any]) -> list[str]:
    """A1111 options Deforum applies around a batch: the checkpoint and clip skip map onto the spec; the
    rest have no flipbook meaning and are listed."""
    unused = []
    for key, value in overrides.items():
        if key not in _OPTIONS:
            unused.append(key)
            continue
        section, name = _OPTIONS[key]
        data.setdefault(section, {})[name] = checkpoint_name(str(value)) if name == "name" else value
    return [f"options_overrides not used by flipbook: {', '.join(sorted(unused))}"] if unused else []


@router.get("/batches")
def list_batches(request: Request) -> dict[str, list[str]]:
    """Every batch id with its job ids."""
    return server_state(request).store.batches()


@router.get("/batches/{batch_id}")
def get_batch(batch_id: str, request: Request) -> list[dict[str, Any]]:
    """The status of every job in a batch."""
    server = server_state(request)
    records, _ = server.store.list(batch_id=batch_id, limit=100_000, oldest_first=True)
    if not records and batch_id not in server.store.batches():
        raise HTTPException(404, f"no batch {batch_id[:40]!r}")
    return [deforum_status(server, r) for r in records]


@router.delete("/batches/{batch_id}")
def cancel_batch(batch_id: str, request: Request) -> dict[str, Any]:
    """Cancel every job of a batch that has not finished."""
    server = server_state(request)
    records, _ = server.store.list(batch_id=batch_id, limit=100_000, oldest_first=True)
    if not records:
        raise HTTPException(404, f"no batch {batch_id[:40]!r}")
    cancelled = [r.id for r in records if _cancel(server, r.id)]
    return {"ids": cancelled, "message": f"{len(cancelled)} job(s) cancelled."}


@router.get("/jobs")
def list_jobs(request: Request) -> dict[str, dict[str, Any]]:
    """Every render job's status, by id."""
    server = server_state(request)
    records, _ = server.store.list(kind=RENDER, limit=100_000, oldest_first=True)
    return {r.id: deforum_status(server, r) for r in records}


@router.get("/jobs/{job_id}")
def get_job(job_id: str, request: Request) -> dict[str, Any]:
    server = server_state(request)
    return deforum_status(server, _record(server, job_id))


@router.delete("/jobs/{job_id}")
def cancel_job(job_id: str, request: Request) -> JSONResponse:
    """Cancel a job: at once when queued, at its next step when running; 400 when it has finished."""
    server = server_state(request)
    record = _record(server, job_id)
    if not _cancel(server, job_id):
        message = f"Job {job_id} is not in a cancellable state (status: {_STATUS[record.state]})."
        return JSONResponse({"id": job_id, "message": message}, status_code=400)
    return JSONResponse({"id": job_id, "message": "Job cancelled."})


def _cancel(server: ServerState, job_id: str) -> bool:
    if server.store.cancel_waiting(job_id):
        server.hub.publish(job_id, CANCELLED, {"id": job_id, "state": CANCELLED})
        return True
    if server.store.request_cancel(job_id):
        server.hub.cancel(job_id)
        return True
    return False


def _record(server: ServerState, job_id: str) -> JobRecord:
    record = server.store.get(job_id) if JOB_ID.match(job_id) else None
    if record is None or record.kind != RENDER:
        raise HTTPException(404, f"no job {job_id[:40]!r}")
    return record


def deforum_status(server: ServerState, record: JobRecord) -> dict[str, Any]:
    """A job in the shape of Deforum's ``DeforumJobStatus``."""
    progress = (server.hub.progress(record.id) if record.state == RUNNING else None) or record.progress
    if record.state == QUEUED:
        phase, phase_progress = "QUEUED", 0.0
    elif record.state == RUNNING:
        phase, phase_progress = (
            _PHASE.get(progress.get("phase", ""), "PREPARING"),
            progress.get("fraction", 0.0),
        )
    else:
        phase, phase_progress = "DONE", 1.0 if record.state == DONE else progress.get("fraction", 0.0)
    error_type = {FAILED: "TERMINAL", INTERRUPTED: "RETRYABLE"}.get(record.state, "NONE")
    end = record.finished_at or record.updated_at
    return {
        "id": record.id,
        "status": _STATUS[record.state],
        "phase": phase,
        "error_type": error_type,
        "phase_progress": phase_progress,
        "started_at": record.created_at,
        "last_updated": record.updated_at,
        "execution_time": max(0.0, end - record.started_at) if record.started_at else 0.0,
        "update_interval_time": 0.0,
        "updates": int(progress.get("frame", 0)),
        "message": None if record.error is None else public_text(record.error, server.settings),
        "outdir": record.id,  # relative to the runs folder: clients never see the server's paths
        "timestring": time.strftime("%Y%m%d%H%M%S", time.localtime(record.created_at)),
        "deforum_settings": None,
        "options_overrides": server.store.batch_options(record.batch_id) if record.batch_id else None,
        "batch_id": record.batch_id,
    }

"""flipbook's job API under ``/api``: submit specs, follow progress, cancel, resume, delete, download.

Submitting (``POST /api/jobs``), the spec comes as

- ``Content-Type: application/json``: the spec's fields (what ``flipbook schema`` describes);
- ``application/toml``: a spec file's text;
- ``text/plain``: a Deforum settings file's text;
- ``multipart/form-data``: a part ``spec`` (a file: its suffix .json/.toml/.txt says the format; or text),
  optional ``format`` and ``set`` fields, and the input files as parts named by their spec field
  (``init.image``, ``init.mask``, ``audio.file``, ``controlnet[0].image``, ...: the fields the schema marks as
  input files; a spec never names a file on the server).

``?format=json|toml|deforum`` overrides the detection; ``?set=animation.max_frames=48`` (repeatable) applies
overrides as ``flipbook render --set`` does. The spec is validated completely before it is queued; a bad
one is a 422 with flipbook's error (``field``, ``detail``) and no job. An ``Idempotency-Key`` header makes a
retry safe: the same key and request again answers 200 with the first job (see :func:`submit_job`).
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from flipbook import __version__
from flipbook.errors import FlipbookError
from flipbook.server.app import ServerState, server_state
from flipbook.server.security import confined_file, public_data, public_text
from flipbook.server.store import (
    FINISHED,
    RENDER,
    RESUMABLE,
    RUNNING,
    STATES,
    FirstRequest,
    IdempotencyKey,
    JobRecord,
    KeyUsed,
    NewJob,
)
from flipbook.server.submit import (
    IDEMPOTENCY_HEADER,
    JOB_ID,
    Submission,
    format_for,
    idempotency_key,
    key_conflict,
    parse_spec,
    prepare_render,
    remove_run_dir,
)

router = APIRouter(prefix="/api", tags=["jobs"])
DELETED = "deleted"
KEEPALIVE_S = 15.0
MAX_MULTIPART_FILES = 16


# ---- views ---------------------------------------------------------------------------------------------


def job_view(state: ServerState, record: JobRecord, *, detail: bool = False) -> dict[str, Any]:
    """A job as the API shows it: state, progress (live while running, else as last saved), outputs as
    download links, and links to follow it."""
    live = state.hub.progress(record.id) if record.state == RUNNING else None
    base = f"/api/jobs/{record.id}"
    outputs = record.result.get("outputs", {})
    images = record.result.get("images", [])
    view = {
        "id": record.id,
        "kind": record.kind,
        "state": record.state,
        "batch_id": record.batch_id,
        "created_at": record.created_at,
        "queued_at": record.queued_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "updated_at": record.updated_at,
        "attempts": record.attempts,
        "worker": record.worker,
        "requeues": record.requeues,
        "cancel_requested": record.cancel_requested,
        "resumable": record.kind == RENDER and record.state in RESUMABLE,
        "progress": live or record.progress,
        "error": None
        if record.error is None
        else {
            "message": public_text(record.error, state.settings),
            "field": record.error_field,
            "type": record.error_type,
        },
        "warnings": record.warnings,
        "seed": _seed(record),
        "outputs": {kind: f"{base}/files/{path}" for kind, path in outputs.items() if not path.endswith("/")}
        | {f"image_{i}": f"{base}/files/{name}" for i, name in enumerate(images)},
        "links": {
            "self": base,
            "events": f"{base}/events",
            "preview": f"{base}/preview.png",
            "files": f"{base}/files",
        },
    }
    if detail:  # the server's own folders (output.dir, models_dir, uploads) as the client sees them
        view["spec" if record.kind == RENDER else "request"] = public_data(record.payload, state.settings)
        view["result"] = public_data(record.result, state.settings)
    return view


def _seed(record: JobRecord) -> int | None:
    """The seed the job used (a render's random seed is known once it has started)."""
    if "seed" in record.result:
        return record.result["seed"]
    seed = (
        record.payload.get("sampling", {}).get("seed")
        if record.kind == RENDER
        else record.payload.get("seed")
    )
    return None if seed == -1 else seed


def _record(state: ServerState, job_id: str) -> JobRecord:
    """The job, or 404 (ids that are not job ids never reach the database or the file system)."""
    record = state.store.get(job_id) if JOB_ID.match(job_id) else None
    if record is None:
        raise HTTPException(404, f"no job {job_id[:40]!r}")
    return record


# ---- submitting ----------------------------------------------------------------------------------------


@router.post("/jobs", status_code=201)
async def submit_job(
    request: Request,
    format: Annotated[
        str | None, Query(description="json, toml or deforum (else from the content type)")
    ] = None,
    overrides: Annotated[
        list[str] | None, Query(alias="set", description="KEY.PATH=VALUE, as flipbook render --set")
    ] = None,
) -> JSONResponse:
    """Validate a spec completely and queue it; 201 with the job, or 422 naming the field (no job).

    With an ``Idempotency-Key`` header the key is stored with the job, in the same transaction: the same key
    with the same request again answers 200 with that first job (``Idempotent-Replayed: true``) instead of
    queueing another; the same key with a different request is a 422."""
    state = server_state(request)
    submission = await _read_submission(request, format, overrides or [])
    key = idempotency_key(request.headers.get(IDEMPOTENCY_HEADER), "POST /api/jobs", submission)
    first = await run_in_threadpool(state.store.first_request, key) if key is not None else None
    if first is not None:
        return await _replayed(state, key, first)
    prepared = await run_in_threadpool(prepare_render, submission, state.settings)
    try:
        await run_in_threadpool(
            state.queue, [NewJob(prepared.id, RENDER, prepared.payload, prepared.warnings)], None, key
        )
    except KeyUsed as used:  # the same key arrived twice at once: the other request queued the job
        remove_run_dir(state.settings, prepared.id)
        return await _replayed(state, key, used.first)
    except BaseException:
        remove_run_dir(state.settings, prepared.id)
        raise
    record = await run_in_threadpool(state.store.get, prepared.id)
    return JSONResponse(
        job_view(state, record), status_code=201, headers={"Location": f"/api/jobs/{record.id}"}
    )


async def _replayed(state: ServerState, key: IdempotencyKey, first: FirstRequest) -> JSONResponse:
    """The answer to a request whose idempotency key already created a job: that job (200), or why not."""
    conflict = key_conflict(key, first)
    if conflict is not None:
        raise conflict
    record = await run_in_threadpool(state.store.get, first.job_ids[0])
    if record is None:
        raise HTTPException(410, f"job {first.job_ids[0]}, made with this {IDEMPOTENCY_HEADER}, was deleted")
    headers = {"Location": f"/api/jobs/{record.id}", "Idempotent-Replayed": "true"}
    return JSONResponse(job_view(state, record), status_code=200, headers=headers)


async def _read_submission(request: Request, fmt: str | None, overrides: list[str]) -> Submission:
    """The spec from the body: JSON, TOML or Deforum text, or a multipart form with files."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        body = await request.body()
        data, warnings = parse_spec(body, format_for(content_type, None, fmt))
        return Submission(data, warnings, overrides=list(overrides))
    limit = server_state(request).settings.max_upload_bytes
    async with request.form(max_files=MAX_MULTIPART_FILES, max_fields=64, max_part_size=limit) as form:
        part = form.get("spec")
        if part is None:
            raise FlipbookError("spec", "missing", "a multipart part named 'spec' (a spec file or its text)")
        given = form.get("format") if isinstance(form.get("format"), str) else None
        if isinstance(part, UploadFile):
            raw, fmt = await part.read(), format_for(part.content_type, part.filename, given or fmt)
        else:
            raw, fmt = part.encode("utf-8"), format_for(None, None, given or fmt)
        data, warnings = parse_spec(raw, fmt, source=getattr(part, "filename", None) or "spec")
        uploads = {
            name: await value.read()
            for name, value in form.multi_items()
            if isinstance(value, UploadFile) and name != "spec"
        }
        extra = [value for value in form.getlist("set") if isinstance(value, str)]
    return Submission(data, warnings, uploads, [*overrides, *extra])


# ---- reading -------------------------------------------------------------------------------------------


@router.get("/jobs")
def list_jobs(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    state: Annotated[str | None, Query(description=", ".join(STATES))] = None,
    kind: Annotated[str | None, Query(description="render, txt2img or img2img")] = None,
) -> dict[str, Any]:
    """Jobs, newest first, a page at a time (``limit``, ``offset``; ``total`` counts every match)."""
    server = server_state(request)
    if state is not None and state not in STATES:
        raise FlipbookError("state", state, f"one of: {', '.join(STATES)}")
    records, total = server.store.list(limit=limit, offset=offset, state=state, kind=kind)
    next_offset = offset + len(records) if offset + len(records) < total else None
    return {
        "jobs": [job_view(server, r) for r in records],
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": next_offset,
    }


@router.get("/jobs/{job_id}")
def get_job(job_id: str, request: Request) -> dict[str, Any]:
    """One job with its spec (or still request), result and live progress."""
    server = server_state(request)
    return job_view(server, _record(server, job_id), detail=True)


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    """Liveness, version and how many jobs are in each state."""
    server = server_state(request)
    return {
        "ok": True,
        "version": __version__,
        "workers": server.settings.workers,
        "jobs": server.store.counts(),
    }


# ---- changing ------------------------------------------------------------------------------------------


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, request: Request) -> JSONResponse:
    """A queued (or interrupted) job is cancelled at once (200); a running one stops at its next step
    (202, it becomes ``cancelled`` shortly); a finished one is a 409."""
    server = server_state(request)
    record = _record(server, job_id)
    if server.store.cancel_waiting(job_id):
        server.hub.publish(job_id, "cancelled", {"id": job_id, "state": "cancelled"})
        return JSONResponse(job_view(server, _record(server, job_id)), status_code=200)
    if server.store.request_cancel(job_id):
        server.hub.cancel(job_id)
        return JSONResponse(job_view(server, _record(server, job_id)), status_code=202)
    raise HTTPException(409, f"job {job_id} is {record.state}; nothing to cancel")


@router.post("/jobs/{job_id}/resume", status_code=202)
def resume_job(job_id: str, request: Request) -> dict[str, Any]:
    """Queue a stopped render (interrupted, cancelled or failed) again; it continues from its frames on
    disk through ``flipbook.runs.render.resume``."""
    server = server_state(request)
    record = _record(server, job_id)
    if record.kind != RENDER:
        raise HTTPException(409, f"job {job_id} is a still ({record.kind}); send the request again instead")
    if not server.store.requeue_for_resume(job_id):
        raise HTTPException(
            409, f"job {job_id} is {record.state}; only {', '.join(sorted(RESUMABLE))} jobs resume"
        )
    if server.workers is not None:
        server.workers.wake()
    server.hub.publish(job_id, "state", {"id": job_id, "state": "queued"})
    return job_view(server, _record(server, job_id))


@router.delete("/jobs/{job_id}", status_code=204)
def delete_job(job_id: str, request: Request) -> Response:
    """Remove a job and its run folder; refused (409) while it runs: cancel it first."""
    server = server_state(request)
    record = _record(server, job_id)
    if not server.store.delete(job_id):
        raise HTTPException(409, f"job {job_id} is {record.state}; cancel it before deleting")
    remove_run_dir(server.settings, job_id)
    server.hub.publish(job_id, DELETED, {"id": job_id, "state": DELETED})
    return Response(status_code=204)


# ---- progress and files --------------------------------------------------------------------------------


@router.get("/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request) -> StreamingResponse:
    """Server-sent events: ``state`` (the job) at once and on every change, ``step`` and ``frame``
    (progress), and last the final state (``done``, ``failed``, ``cancelled``, ``interrupted`` or
    ``deleted``) with the job, after which the stream ends."""
    server = server_state(request)
    await run_in_threadpool(_record, server, job_id)
    return StreamingResponse(
        _event_stream(server, job_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _event_stream(server: ServerState, job_id: str) -> AsyncIterator[str]:
    mailbox = server.hub.subscribe(job_id)  # before reading the state, so no change falls in between
    try:
        record = await run_in_threadpool(server.store.get, job_id)
        if record is None:
            yield _sse(DELETED, {"id": job_id, "state": DELETED})
            return
        yield _sse("state", job_view(server, record))
        if record.state in FINISHED:
            yield _sse(record.state, job_view(server, record))
            return
        while True:
            if not await mailbox.wait(KEEPALIVE_S):
                yield ": keep-alive\n\n"
                continue
            for name, data in mailbox.drain():
                if name in ("step", "frame"):
                    yield _sse(name, data)
                    continue
                record = await run_in_threadpool(server.store.get, job_id)
                if record is None:
                    yield _sse(DELETED, {"id": job_id, "state": DELETED})
                    return
                finished = record.state in FINISHED
                yield _sse(record.state if finished else "state", job_view(server, record))
                if finished:
                    return
    finally:
        server.hub.unsubscribe(job_id, mailbox)


def _sse(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


@router.get("/jobs/{job_id}/preview.png")
def job_preview(job_id: str, request: Request) -> Response:
    """The latest preview: the running job's newest step preview or frame, else its last frame on disk (a
    regular file inside the run folder: a link that leads out is no preview)."""
    server = server_state(request)
    record = _record(server, job_id)
    image = server.hub.preview(job_id)
    if image is not None:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return Response(buffer.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store"})
    root = server.settings.runs_dir / record.id
    frames = sorted((root / "frames").glob("frame_*.png"))
    stills = record.result.get("images", [])
    last = f"frames/{frames[-1].name}" if frames else (stills[-1] if stills else None)
    target = confined_file(root, last) if isinstance(last, str) else None
    if target is None:
        raise HTTPException(404, f"job {job_id} has no preview yet")
    return FileResponse(target, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/jobs/{job_id}/files")
def list_files(job_id: str, request: Request) -> dict[str, Any]:
    """Every file in the job's run folder that ``/files/{path}`` serves (links are left out)."""
    server = server_state(request)
    record = _record(server, job_id)
    root = server.settings.runs_dir / record.id
    names = (p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_symlink())
    return {"files": sorted(name for name in names if confined_file(root, name) is not None)}


@router.get("/jobs/{job_id}/files/{path:path}")
def get_file(job_id: str, path: str, request: Request) -> FileResponse:
    """Download a file from the job's run folder; anything that resolves outside it is a 404."""
    server = server_state(request)
    record = _record(server, job_id)
    target = confined_file(server.settings.runs_dir / record.id, path)
    if target is None:
        raise HTTPException(404, "no such file in this job's run folder")
    return FileResponse(target, headers={"X-Content-Type-Options": "nosniff"})

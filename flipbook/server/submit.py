"""From a submitted spec (JSON, TOML, Deforum settings, uploaded files) to a validated job, or one error.

Everything is checked before a job is queued, exactly as ``flipbook validate`` checks it (the spec model, then
the plan, which evaluates every schedule at every frame), and a few things the CLI trusts are refused here:

- The run folder is the server's: ``output.dir`` is the runs folder and ``output.name`` the job id, whatever
  the client sent; ``model.models_dir`` is ``--models-dir``.
- Input files (``init.image``, ``audio.file``, ``controlnet[0].image``, ...: every field the schema marks
  :class:`~flipbook.spec.references.InputFile`) must be uploaded with the job as multipart parts named by the
  field; a client never names a file on the server. Uploads are sniffed by content and saved under
  ``<run>/inputs/``.
- Every model the spec names (every :class:`~flipbook.spec.references.ModelReference` field, list items,
  checkpoint schedules and ``<lora:...>`` tags in prompts included) must be a name, not a path
  (:func:`~flipbook.server.security.check_model_reference`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request

from flipbook.errors import FlipbookError, SpecError
from flipbook.server.security import JOB_ID, check_model_reference, sniff_upload
from flipbook.server.settings import ServerSettings
from flipbook.server.store import FirstRequest, IdempotencyKey
from flipbook.spec.load import apply_override, shorten_repr, spec_from_data
from flipbook.spec.model import Spec
from flipbook.spec.plan import Plan
from flipbook.spec.references import (
    InputFile,
    Location,
    ModelReference,
    ServerOwned,
    field_name,
    marked_fields,
    parse_field,
    pattern_of,
    references,
    set_in_data,
)
from flipbook.spec.safe_parse import parse_json, parse_toml

FORMATS = ("json", "toml", "deforum")
CONTENT_TYPES = {
    "application/json": "json",
    "application/toml": "toml",
    "application/x-toml": "toml",
    "text/toml": "toml",
    "text/x-toml": "toml",
    "text/plain": "deforum",
}
SUFFIXES = {".json": "json", ".toml": "toml", ".txt": "deforum"}
INPUTS = "inputs"


def new_job_id() -> str:
    """16 random hex digits: unguessable, safe as a folder name, checked by :data:`JOB_ID`."""
    return secrets.token_hex(8)


@dataclass
class Submission:
    """A parsed spec (data as the loader gives it) with the uploads and overrides that came with it."""

    data: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)  # spec field path -> file bytes
    overrides: list[str] = field(default_factory=list)


@dataclass
class PreparedJob:
    """A validated render job: the spec data to queue and its input files, already in its run folder."""

    id: str
    payload: dict[str, Any]
    warnings: list[str]
    run_dir: Path


# ---- parsing ---------------------------------------------------------------------------------------------


def format_for(content_type: str | None, filename: str | None = None, given: str | None = None) -> str:
    """The spec format: ``given`` (the ``format`` parameter) first, else the upload's file suffix, else the
    content type (JSON: a flipbook spec; TOML; text/plain: Deforum settings)."""
    if given:
        if given not in FORMATS:
            raise FlipbookError("format", given, f"one of: {', '.join(FORMATS)}")
        return given
    if filename:
        suffix = Path(filename).suffix.lower()
        if suffix in SUFFIXES:
            return SUFFIXES[suffix]
    media = (content_type or "").split(";")[0].strip().lower()
    if media in CONTENT_TYPES:
        return CONTENT_TYPES[media]
    allowed = (
        "application/json (a spec), application/toml, text/plain (Deforum settings), multipart/form-data"
    )
    raise FlipbookError("Content-Type", media or "none", allowed + ", or a format parameter")


def parse_spec(raw: bytes, fmt: str, source: str = "body") -> tuple[dict[str, Any], list[str]]:
    """Spec data and warnings from a spec's bytes in ``fmt`` (json, toml or deforum). JSON (and Deforum's
    lenient JSON) is told apart by content as files are (a flipbook spec, Deforum settings or a Parseq
    manifest: :func:`flipbook.spec.load.document_data`); no local file a document names is read here."""
    from flipbook.spec.load import document_data

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SpecError("spec", source, "UTF-8 text", detail=str(error)) from None
    if fmt == "deforum":
        return document_data(_deforum_text(text, source), base=None)
    try:
        data = parse_json(text, source=source) if fmt == "json" else parse_toml(text, source=source)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise SpecError("spec", source, f"valid {fmt.upper()}", detail=str(error)) from None
    if not isinstance(data, dict):
        raise SpecError("spec", source, f"a {fmt.upper()} object of spec fields")
    return document_data(data, base=None) if fmt == "json" else (data, [])


async def json_body(request: Request) -> dict[str, Any]:
    """A request body that must be a JSON object, read with flipbook's checks (nesting, huge numbers, lone
    surrogates: see :mod:`flipbook.spec.safe_parse`), so a hostile body is one clear 422 and never a 500."""
    return parse_json_object(await request.body())


def parse_json_object(raw: bytes, source: str = "body") -> dict[str, Any]:
    """A JSON object from a request body's bytes; anything else is one SpecError."""
    try:
        data = parse_json(raw.decode("utf-8-sig"), field=source, source=source)
    except UnicodeDecodeError as error:
        raise SpecError(source, f"{len(raw)} bytes", "UTF-8 JSON", detail=str(error)) from None
    except json.JSONDecodeError as error:
        raise SpecError(source, f"{len(raw)} bytes", "a JSON object", detail=str(error)) from None
    if not isinstance(data, dict):
        raise SpecError(source, type(data).__name__, "a JSON object")
    return data


IDEMPOTENCY_HEADER = "Idempotency-Key"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def idempotency_key(header: str | None, endpoint: str, request: Any) -> IdempotencyKey | None:
    """The request's ``Idempotency-Key`` (1-255 printable ASCII characters, no spaces) with the fingerprint
    of ``request`` at ``endpoint``: the request as understood (the spec data, the overrides, each upload's
    SHA-256), not its bytes, so a client that retries a multipart upload with a new boundary sends the same
    request. None without the header."""
    if header is None:
        return None
    if not _KEY.match(header):
        raise FlipbookError(
            IDEMPOTENCY_HEADER,
            shorten_repr(header),
            "1 to 255 printable ASCII characters without spaces (a UUID)",
        )
    text = json.dumps([endpoint, request], sort_keys=True, ensure_ascii=True, default=_fingerprint_part)
    return IdempotencyKey(header, hashlib.sha256(text.encode("ascii")).hexdigest())


def _fingerprint_part(value: Any) -> Any:
    if isinstance(value, bytes):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    if isinstance(value, Submission):
        return {"data": value.data, "uploads": value.uploads, "overrides": value.overrides}
    raise TypeError(f"no fingerprint for {type(value).__name__}")


def key_conflict(key: IdempotencyKey, first: FirstRequest) -> FlipbookError | None:
    """The error for a key reused with a different request (None when it is the same request)."""
    if first.same_request:
        return None
    return FlipbookError(
        IDEMPOTENCY_HEADER, key.key, "a new key for a new request",
        detail=f"this key was used for another request, which created job {', '.join(first.job_ids)}",
    )  # fmt: skip


def deforum_data(settings: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Spec data from a Deforum settings dict, with what the import must tell the user (as the CLI says it)."""
    from flipbook.spec.deforum import import_settings

    if not isinstance(settings, Mapping):
        raise SpecError("deforum_settings", type(settings).__name__, "an object of Deforum settings")
    return import_settings(dict(settings))


def _deforum_text(text: str, source: str) -> dict[str, Any]:
    """Deforum settings text, read by flipbook's own lenient reader (comments, trailing commas, Python dicts)."""
    from flipbook.spec.deforum import parse_settings_text

    try:
        return parse_settings_text(text, source)
    except FlipbookError as error:
        raise SpecError(error.field, source, error.allowed, detail=error.detail) from None


# ---- preparing -------------------------------------------------------------------------------------------


def prepare_render(
    submission: Submission, settings: ServerSettings, job_id: str | None = None
) -> PreparedJob:
    """Validate ``submission`` completely and write its inputs into the new job's run folder (removed again
    if anything is wrong). Nothing is queued here."""
    job_id = job_id or new_job_id()
    run_dir = settings.runs_dir / job_id
    data = json.loads(json.dumps(submission.data))  # a private copy, plain JSON types
    warnings = list(submission.warnings)
    for override in submission.overrides:
        apply_override(data, override)
    warnings += _server_owned_fields(data, settings, job_id)
    saved = place_uploads(data, submission.uploads, run_dir)
    spec = spec_from_data(data)
    if spec.sweep:  # a grid's one seed is drawn now, so a re-queued or resumed sweep renders the same grid
        spec = spec.with_seed()
    check_references(spec, settings, {location for location, _ in saved.values()})
    try:
        _write_files({path: content for path, (_, content) in saved.items()})
        warnings += _check_plan(spec).warnings
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    payload = json.loads(spec.model_dump_json())
    return PreparedJob(id=job_id, payload=payload, warnings=warnings, run_dir=run_dir)


def _server_owned_fields(data: dict[str, Any], settings: ServerSettings, job_id: str) -> list[str]:
    """Point the render at ``<runs-dir>/<job id>/`` and the server's models folder (every field the schema
    marks :class:`~flipbook.spec.references.ServerOwned`); say what was replaced."""
    values: dict[str, str | None] = {
        "output.dir": str(settings.runs_dir),
        "output.name": job_id,
        "model.models_dir": None if settings.models_dir is None else str(settings.models_dir),
    }
    warnings = []
    for location, marker in marked_fields():
        if not isinstance(marker, ServerOwned):
            continue
        name = field_name(location)
        value = values[name]  # a new server-owned field needs its value here
        section = _section(data, str(location[0]))
        key = str(location[-1])
        given = section.get(key)
        if given is not None and str(given) != str(value):
            warnings.append(f"{name} {given!r} was replaced: {marker.why}")
        if value is None:
            section.pop(key, None)
        else:
            section[key] = value
    return warnings


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    section = data.setdefault(name, {})
    if not isinstance(section, dict):
        raise SpecError(name, section, f"a [{name}] table")
    return section


def input_fields() -> dict[Location, InputFile]:
    """Every input-file field of the spec schema (``controlnet[i].image`` for list items)."""
    return {location: marker for location, marker in marked_fields() if isinstance(marker, InputFile)}


def place_uploads(
    data: dict[str, Any], uploads: Mapping[str, bytes], run_dir: Path
) -> dict[Path, tuple[Location, bytes]]:
    """Point the spec data at where each upload will be saved in the run folder, after sniffing it for what
    its field takes. Returns the files to write with the field each is for."""
    fields = input_fields()
    saved: dict[Path, tuple[Location, bytes]] = {}
    for name, content in uploads.items():
        location = _upload_location(name, fields)
        kind = fields[pattern_of(location)].kind
        stem = field_name(location).replace(".", "_").replace("[", "_").replace("]", "")
        target = run_dir / INPUTS / (stem + sniff_upload(content, name, kind))
        set_in_data(data, location, str(target))
        saved[target] = (location, content)
    return saved


def _upload_location(name: str, fields: Mapping[Location, InputFile]) -> Location:
    """The input-file field a multipart part's name names, or the error listing the fields that take one."""
    try:
        location = parse_field(name)
    except FlipbookError:
        location = ()
    if pattern_of(location) not in fields:
        uploadable = ", ".join(field_name(p) for p in fields)
        raise FlipbookError("upload", name, f"a file for one of: {uploadable}")
    return location


def check_references(spec: Spec, settings: ServerSettings, uploaded: set[Location]) -> None:
    """Every file and model the spec names, as the server allows them: input files only as uploads (the
    locations in ``uploaded``), models only by name (built-in, ``--models-dir`` or hub id), never paths."""
    for reference in references(spec):
        marker = reference.marker
        if isinstance(marker, InputFile) and reference.location not in uploaded:
            raise FlipbookError(
                reference.field, str(reference.value),
                f"a file uploaded with the job: a multipart part named {reference.field!r}",
                detail="the server never reads a path a client names",
            )  # fmt: skip
        if isinstance(marker, ModelReference):
            for name in _model_names(reference.field, marker, reference.value):
                check_model_reference(reference.field, name, marker, settings.models_dir)


def _model_names(where: str, marker: ModelReference, value: Any) -> list[str]:
    """The names a model field holds; a malformed prompt tag is an error naming the field."""
    try:
        return marker.names(value)
    except FlipbookError as error:
        raise FlipbookError(where, error.value, error.allowed, detail=error.detail) from None


def _write_files(files: dict[Path, bytes]) -> None:
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _check_plan(spec: Spec) -> Plan:
    """Everything the render checks before it loads a model (:func:`flipbook.runs.render.prepare`): the plan
    as ``flipbook validate`` builds it (every schedule at every frame, the audio analysed) and every input
    file opened and decoded as the render reads it (a truncated video is refused here, not in the worker);
    for a sweep, every run of its grid (the first run's plan returned, for its warnings)."""
    from flipbook.runs.render import prepare
    from flipbook.runs.sweep import check_run
    from flipbook.spec.sweep import sweep_runs

    try:
        if spec.sweep:  # a grid of runs, each checked as its render checks it
            return [check_run(run) for run in sweep_runs(spec)][0]
        _, plan, _ = prepare(spec)
    except FlipbookError:
        raise
    except Exception as error:  # an upload that passed sniffing but does not decode, for example
        raise FlipbookError(
            "spec", "inputs", "files flipbook can read", detail=f"{type(error).__name__}: {error}"
        ) from None
    return plan


def remove_run_dir(settings: ServerSettings, job_id: str) -> None:
    """Delete a job's run folder (only ever a direct child of the runs folder named by a job id)."""
    if not JOB_ID.match(job_id):
        return
    path = settings.runs_dir / job_id
    if path.is_symlink():
        os.unlink(path)
    elif path.is_dir():
        shutil.rmtree(path)

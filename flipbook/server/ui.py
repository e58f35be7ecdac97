"""The web UI of ``flipbook serve`` at ``/ui``: a Gradio app that builds spec data and queues it as jobs.

A thin shell over the job API: every form becomes spec data (the same dicts a TOML file holds), validated
and queued by the server's own :func:`~flipbook.server.submit.prepare_render` and
:meth:`~flipbook.server.app.ServerState.queue`, exactly as ``POST /api/jobs`` does. Nothing here renders.
The forms are generated from the spec's schema: :func:`mode_form` lists a mode tab's fields (every field of the
mode's settings section and the inputs only it reads, its descriptor's ``form`` hints first),
:func:`common_form` the shared ones, each with the widget :func:`~flipbook.server.widgets.widget_for` gives its
schema; so a new mode or field needs no code here. The functions that turn form values into spec data,
charts, previews and TOML are plain functions (tested without a browser); :func:`build_ui` wires them to
components and :func:`mount_ui` mounts the app.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flipbook.errors import FlipbookError
from flipbook.modes import DEFAULT_MODE, MODES, FormField, Mode, camera_path_of, get_mode
from flipbook.server.widgets import Widget, field_default, field_schema, form_value, shown_value, widget_for
from flipbook.spec.references import parse_field, set_in_data
from flipbook.spec.toml_writer import spec_to_toml

if TYPE_CHECKING:
    import gradio as gr
    from fastapi import FastAPI
    from matplotlib.figure import Figure

    from flipbook.server.app import ServerState
    from flipbook.spec.model import Spec

UI_PATH = "/ui"
JOB_LIST_LIMIT = 50
POLL_S = 1.5
ROW_WIDTH = 4  # widgets per row in a form
TAB_FIELD = "animation.mode"
"""The field each mode tab sets to its mode."""
COMMON_FORM: tuple[FormField, ...] = (
    FormField("negative", "negative_prompt", "Negative prompt"),
    FormField("model", "model.name", "Model"),
    FormField("sampler", "sampling.sampler", "Sampler"),
    FormField("steps", "sampling.steps", "Steps"),
    FormField("cfg", "sampling.cfg", "CFG"),
    FormField("seed", "sampling.seed", "Seed (-1 random)"),
    FormField("width", "animation.width", "Width"),
    FormField("height", "animation.height", "Height"),
    FormField("frames", "animation.max_frames", "Frames"),
    FormField("fps", "animation.fps", "FPS"),
    FormField("strength", "animation.strength", "Strength"),
    FormField("formats", "output.formats", "Output formats"),
)
"""Layout hints for the Create tab's shared fields: which come first, in what order, under which key and label
(the widgets, ranges, choices and defaults are the schema's). Every other field of the core sections that hold
no input files follows under "More settings" (:func:`common_form`); the frame -> prompt table comes first."""


# ---- form values -> spec data (plain functions) ------------------------------------------------------------


def prompts_from_table(rows: Any) -> dict[str, str]:
    """The prompt-travel table (rows of frame, prompt) as the spec's ``prompts``: empty rows are skipped; a
    frame may be a number or an expression in ``max_f`` (Deforum keys). Raises FlipbookError naming
    ``prompts`` when no row has a prompt."""
    if rows is None:
        rows = []
    elif hasattr(rows, "values") and hasattr(rows, "columns"):  # a pandas DataFrame
        rows = rows.values.tolist()
    prompts: dict[str, str] = {}
    for row in rows:
        cells = list(row) + ["", ""]
        frame, prompt = _cell(cells[0]), _cell(cells[1])
        if not prompt:
            continue
        if isinstance(cells[0], float) and cells[0].is_integer():
            frame = str(int(cells[0]))
        prompts[frame or "0"] = prompt
    if not prompts:
        raise FlipbookError("prompts", "empty table", "at least one row with a frame and a prompt")
    return prompts


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return ""
    return str(value).strip()


@dataclass(frozen=True)
class FormEntry:
    """One field of a form: ``key`` names its value among the form's values, ``path`` is the spec field it
    sets, ``widget`` comes from the field's schema (:func:`~flipbook.server.widgets.widget_for`). ``shown``
    fields come first (a hint placed them) and are always written into the spec; the others sit under the
    form's "More ..." accordion and are written only when they differ from their default (so the spec, and
    its TOML, say only what was changed there). ``live`` re-plots the schedules as it changes."""

    key: str
    path: str
    widget: Widget
    shown: bool = True
    live: bool = False


def form_entry(hint: FormField | str, *, shown: bool = True) -> FormEntry:
    """The entry for a hint, or for a spec field by path (then its key is the path)."""
    form_field = hint if isinstance(hint, FormField) else FormField(hint, hint)
    schema = field_schema(form_field.path)
    widget = widget_for(
        schema, form_field.label or _label(form_field.path, schema), field_default(form_field.path)
    )
    live = form_field.live or widget.kind == "schedule"
    return FormEntry(form_field.key, form_field.path, widget, shown, live)


def _label(path: str, schema: dict[str, Any]) -> str:
    """A field's label without a hint: its schema's title (an upload box, which shows no info text, its path;
    an optional section, whose schema has no title, its name)."""
    if "input_file" in schema.get("x-flipbook", {}):
        return path
    return schema.get("title") or path.rsplit(".", 1)[-1].replace("_", " ").capitalize()


def common_form() -> tuple[FormEntry, ...]:
    """The Create tab's shared fields: :data:`COMMON_FORM`, then every other field of the core sections that
    hold no input files (input files are uploaded in the tabs of the modes that read them, or with the Spec
    tab), except those the server sets and the mode (each tab sets it)."""
    hinted = tuple(form_entry(hint) for hint in COMMON_FORM)
    placed = {entry.path for entry in hinted}
    rest = tuple(form_entry(path, shown=False) for path in shared_paths() if path not in placed)
    return hinted + rest


def shared_paths() -> list[str]:
    """Every field of the spec's core sections (not a mode's, not a list) that hold no input file, in schema
    order, without the server-owned fields and :data:`TAB_FIELD`."""
    from flipbook.modes import sections
    from flipbook.spec.model import Spec
    from flipbook.spec.references import InputFile, ServerOwned, field_name, marked_fields

    marked = list(marked_fields())
    owned = {field_name(location) for location, marker in marked if isinstance(marker, ServerOwned)}
    with_files = {location[0] for location, marker in marked if isinstance(marker, InputFile)}
    paths = []
    for name, info in Spec.model_fields.items():
        section = _section_class(info.annotation)
        if section is None or name in sections() or name in with_files:
            continue
        paths += [f"{name}.{field}" for field in section.model_fields]
    return [path for path in paths if path not in owned and path != TAB_FIELD]


def _section_class(annotation: Any) -> Any:
    from pydantic import BaseModel

    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def mode_form(mode: str | Mode) -> tuple[FormEntry, ...]:
    """A mode tab's fields, from the mode's settings schema: its descriptor's ``form`` hints first (order,
    labels, fields outside its section such as ``init.image``), then every other field of its section (those
    another mode alone reads, ``x-flipbook.only_in``, left out) and the inputs only some modes read
    (``init.video``). A mode with no hints shows all of them up front; otherwise the rest are under
    "More ... settings"."""
    descriptor = mode if isinstance(mode, Mode) else get_mode(mode)
    hinted = tuple(form_entry(hint) for hint in descriptor.form)
    placed = {entry.path for entry in hinted}
    rest = tuple(form_entry(path, shown=not hinted) for path in mode_paths(descriptor) if path not in placed)
    entries = hinted + rest
    keys = [entry.key for entry in entries]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{descriptor.name}: two form fields share a key ({keys})")
    return entries


def mode_paths(descriptor: Mode) -> list[str]:
    """The fields of a mode's own section it reads (in schema order) and the inputs only some modes read."""
    paths = []
    if descriptor.section is not None and descriptor.settings is not None:
        for name in descriptor.settings.model_fields:
            path = f"{descriptor.section}.{name}"
            only = field_schema(path).get("x-flipbook", {}).get("only_in")
            if only is None or only == descriptor.name:
                paths.append(path)
    return [*paths, *(path for path in descriptor.inputs if path not in paths)]


def fill_data(data: dict[str, Any], entries: Sequence[FormEntry], values: Mapping[str, Any]) -> None:
    """Set each entry's value from ``values`` (by key) into spec data: converted as its widget says
    (:func:`~flipbook.server.widgets.form_value`), an empty box or a missing key left unset, and a field that
    is not shown left unset while it holds its default."""
    for entry in entries:
        raw = values.get(entry.key)
        if raw is None:
            continue
        value = form_value(entry.widget, raw, entry.path)
        if value is None or (not entry.shown and value == entry.widget.default):
            continue
        set_in_data(data, parse_field(entry.path), value)


def common_data(values: Mapping[str, Any]) -> dict[str, Any]:
    """Spec data from the fields every mode shares: the prompt table (key ``prompts``) and
    :func:`common_form`'s fields (keys as :data:`COMMON_FORM` names them, the others by path); an empty box
    leaves its field unset, so the spec's default applies."""
    data: dict[str, Any] = {"prompts": prompts_from_table(values.get("prompts"))}
    fill_data(data, common_form(), values)
    return data


def mode_data(mode: str, common: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """Spec data for one mode tab: the common fields plus the mode's own (:func:`mode_form`: the camera
    schedules for 2d/3d, easing, noise and batch size for interpolate, ...), each converted as its field's
    widget says (an empty box leaves the field unset). Upload fields (``init.image``, ``init.mask``,
    ``init.video``) hold the uploaded file's local path here; :func:`submit` sends them as uploads."""
    data = common_data(common)
    set_in_data(data, parse_field(TAB_FIELD), get_mode(mode).name)
    fill_data(data, mode_form(mode), fields)
    return data


def upload_fields() -> tuple[str, ...]:
    """The input-file fields of the spec schema outside lists (``init.image``, ``audio.file``, ...): one upload
    box each in the Spec tab. List items (``controlnet[0].image``) are uploaded through the job API."""
    from flipbook.server.submit import input_fields
    from flipbook.spec.references import ANY_INDEX, field_name

    return tuple(field_name(location) for location in input_fields() if ANY_INDEX not in location)


def server_owned_fields() -> list[tuple[str | int, ...]]:
    """The fields the server sets for every job (run folder, job name, models folder), from the schema."""
    from flipbook.spec.references import ServerOwned, marked_fields

    return [location for location, marker in marked_fields() if isinstance(marker, ServerOwned)]


def check_spec_files(state: ServerState, data: Mapping[str, Any], uploads: Mapping[str, str]) -> Spec:
    """The spec for ``data`` with the browser's uploads in place, checked as the job API checks it: every
    other input file named is refused (inputs are uploaded), every model must be a name, not a path."""
    from flipbook.server.submit import check_references
    from flipbook.spec.load import spec_from_data
    from flipbook.spec.references import parse_field, set_in_data

    data = json.loads(json.dumps(dict(data)))
    located = {parse_field(name): path for name, path in uploads.items() if path}
    for location, path in located.items():
        set_in_data(data, location, str(path))
    spec = spec_from_data(data)
    check_references(spec, state.settings, set(located))
    return spec


def validate(data: Mapping[str, Any]) -> tuple[Spec, Any]:
    """The spec and its plan, as ``flipbook validate`` checks them (no model is loaded); FlipbookError
    naming the field when anything is wrong."""
    from flipbook.spec.load import spec_from_data
    from flipbook.spec.plan import build_plan

    spec = spec_from_data(json.loads(json.dumps(dict(data))))
    if spec.sampling.seed == -1:  # a stable chart: the seed only picks the noise
        spec = spec.model_copy(update={"sampling": spec.sampling.model_copy(update={"seed": 0})})
    return spec, build_plan(spec)


def error_text(error: Exception, state: ServerState | None = None) -> str:
    """A FlipbookError as the CLI prints it (naming the field); anything else with its type. With the
    server's ``state``, server paths are shown relative to the runs or models folder."""
    text = (
        f"**{error.field}**: {error}"
        if isinstance(error, FlipbookError)
        else f"{type(error).__name__}: {error}"
    )
    if state is None:
        return text
    from flipbook.server.security import public_text

    return public_text(text, state.settings)


def chart(data: Mapping[str, Any]) -> tuple[Figure | None, str]:
    """The plan chart of every schedule for ``data``, or None and the error naming the field."""
    from flipbook.io.plan_chart import plan_figure

    try:
        spec, plan = validate(data)
    except Exception as error:  # noqa: BLE001 (shown to the user, naming the field)
        return None, f"Not valid: {error_text(error)}"
    return plan_figure(plan, title=f"{spec.animation.mode}: {len(plan)} frames"), "Valid."


def motion_preview(data: Mapping[str, Any], folder: Path) -> Path:
    """The camera path of a spec whose mode has one (2d, 3d) as a GIF in ``folder`` (a test pattern, no
    model); FlipbookError naming ``animation.mode`` for the others."""
    from flipbook.runs.preview import write_motion_preview

    spec, plan = validate(data)
    camera_path_of(spec.animation.mode)
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(suffix=".gif", dir=folder)
    os.close(handle)
    return write_motion_preview(spec, plan, Path(name))


def data_to_toml(data: Mapping[str, Any]) -> str:
    """TOML for spec data, without the fields the server sets (run folder, job name, models folder)."""
    from flipbook.spec.references import pop_in_data

    data = json.loads(json.dumps(dict(data), default=str))
    for location in server_owned_fields():
        pop_in_data(data, location)
    return spec_to_toml(data)


def toml_to_data(text: str) -> dict[str, Any]:
    """The Spec tab's TOML text as spec data; FlipbookError naming ``spec`` when it does not parse (nesting,
    huge integers and lone surrogates too, as every parse of user text: :mod:`flipbook.spec.safe_parse`)."""
    from flipbook.spec.safe_parse import parse_toml

    try:
        return parse_toml(text or "", source="TOML text")
    except tomllib.TOMLDecodeError as error:
        raise FlipbookError("spec", "TOML text", "valid TOML", detail=str(error)) from None


def import_file(path: str | Path) -> tuple[str, str]:
    """An uploaded file as TOML for the Spec tab, and a note: a Deforum settings file (.txt/.json), a
    flipbook spec (.toml/.json), any flipbook output carrying its spec, or a PNG with A1111 parameters."""
    from flipbook.spec.load import MEDIA_SUFFIXES

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".toml":
        text = path.read_text(encoding="utf-8")
        toml_to_data(text)
        return text, f"Imported the spec {path.name}."
    if suffix in (".txt", ".json"):
        return _import_text(path)
    if suffix in MEDIA_SUFFIXES:
        return _import_media(path)
    raise FlipbookError(
        "import", path.name, "a Deforum settings file (.txt/.json), a spec (.toml/.json), a flipbook output, "
        "or a PNG with A1111 parameters",
    )  # fmt: skip


def _import_text(path: Path) -> tuple[str, str]:
    """A JSON upload, told apart by content as the CLI tells files apart: a flipbook spec, Deforum settings
    or a Parseq manifest (no local file it names is read)."""
    from flipbook.spec.deforum import read_deforum_settings
    from flipbook.spec.load import document_data, document_kind

    document = read_deforum_settings(path)
    kind = document_kind(document)
    data, warnings = document_data(document, base=None)
    what = {"spec": "the flipbook spec", "deforum": "Deforum settings", "parseq": "the Parseq manifest"}[kind]
    return data_to_toml(data), " ".join([f"Imported {what} {path.name}.", *warnings])


def _import_media(path: Path) -> tuple[str, str]:
    from flipbook.io.metadata import read_embedded

    embedded = read_embedded(path)
    if embedded.spec is not None:
        return data_to_toml(embedded.spec), f"Imported the spec embedded in {path.name}."
    if embedded.parameters:
        return data_to_toml(a1111_data(embedded.parameters)), f"Imported A1111 parameters from {path.name}."
    raise FlipbookError("import", path.name, "a file with a flipbook spec or A1111 parameters in it")


def a1111_data(parameters: str) -> dict[str, Any]:
    """Spec data from A1111 infotext (one picture's prompt, sampler, steps, cfg, seed and size): a travel
    animation whose frame 0 is that picture."""
    from flipbook.io.pnginfo import parse_parameters

    p = parse_parameters(parameters)
    data: dict[str, Any] = {
        "version": 1,
        "sampling": {"sampler": p.sampler, "steps": p.steps, "cfg": p.cfg_scale, "seed": p.seed},
        "animation": {"mode": DEFAULT_MODE, "max_frames": 12, "width": p.width, "height": p.height},
        "prompts": {"0": p.prompt},
        "output": {"formats": ["gif"]},
    }
    if p.model_name:
        data["model"] = {"name": p.model_name}
    if p.negative_prompt:
        data["negative_prompt"] = p.negative_prompt
    if p.clip_skip:
        data["sampling"]["clip_skip"] = p.clip_skip
    return data


# ---- the queue (in-process, through the server's own submission code) -------------------------------------


def submit(state: ServerState, data: Mapping[str, Any], uploads: Mapping[str, str] | None = None) -> str:
    """Validate ``data`` as ``POST /api/jobs`` does and queue it; the job id. ``uploads`` maps spec fields
    (``init.image``, ...) to the files the browser uploaded (Gradio's copies, which the server places in the
    job's run folder, whatever ``data`` says for those fields); any other path in ``data`` is refused by the
    server's rules (a client never names a file on the server)."""
    from flipbook.server.store import RENDER, NewJob
    from flipbook.server.submit import Submission, prepare_render, remove_run_dir

    data = json.loads(json.dumps(dict(data)))
    payloads = {name: Path(path).read_bytes() for name, path in (uploads or {}).items() if path}
    prepared = prepare_render(Submission(data, [], payloads), state.settings)
    try:
        state.queue([NewJob(prepared.id, RENDER, prepared.payload, prepared.warnings)])
    except BaseException:
        remove_run_dir(state.settings, prepared.id)
        raise
    return prepared.id


def _jobs(state: ServerState, limit: int = JOB_LIST_LIMIT) -> list[dict[str, Any]]:
    from flipbook.server.api import job_view

    records, _ = state.store.list(limit=limit, offset=0, state=None, kind=None)
    views = []
    for record in records:
        view = job_view(state, record)
        view["mode"] = (
            record.payload.get("animation", {}).get("mode", "") if record.kind == "render" else record.kind
        )
        views.append(view)
    return views


def progress_text(view: Mapping[str, Any]) -> str:
    """``frame 2/3, step 1/2`` (and the ETA) from a job view's progress."""
    p = view.get("progress") or {}
    if not p:
        return ""
    text = f"frame {p.get('frame', 0)}/{p.get('frames', '?')}"
    if p.get("steps"):
        text += f", step {p.get('step', 0)}/{p['steps']}"
    if view.get("state") == "running" and p.get("eta_s") is not None:
        text += f", ETA {p['eta_s']:.0f} s"
    return text


def queue_html(state: ServerState) -> str:
    """The job list as an HTML table: id, mode, state, progress, outputs (links; the GIF shown inline)."""
    views = _jobs(state)
    if not views:
        return "<p id='flipbook-queue-empty'>No jobs yet.</p>"
    rows = []
    for view in views:
        links = " ".join(
            f"<a href='{html.escape(url)}' target='_blank' class='flipbook-output'>{html.escape(kind)}</a>"
            for kind, url in view["outputs"].items()
        )
        gif = view["outputs"].get("gif")
        thumb = (
            f"<img src='{html.escape(gif)}' alt='{view['id']} gif' class='flipbook-gif' height='64'>"
            if gif
            else ""
        )
        error = html.escape(view["error"]["message"][:300]) if view.get("error") else ""
        rows.append(
            f"<tr data-job='{view['id']}' data-state='{view['state']}'><td><code>{view['id']}</code></td>"
            f"<td>{html.escape(str(view['mode']))}</td><td class='flipbook-state'>{view['state']}</td>"
            f"<td>{html.escape(progress_text(view))}</td><td>{thumb} {links}</td><td>{error}</td></tr>"
        )
    head = "<tr><th>job</th><th>mode</th><th>state</th><th>progress</th><th>outputs</th><th>error</th></tr>"
    return f"<table id='flipbook-queue'>{head}{''.join(rows)}</table>"


def active_job_ids(state: ServerState) -> list[str]:
    """Jobs that can still be cancelled (queued, running, interrupted), newest first."""
    return [v["id"] for v in _jobs(state) if v["state"] in ("queued", "running", "interrupted")]


def live_preview(state: ServerState) -> Any:
    """The newest step preview or frame of a running job (a PIL image), or None."""
    for view in _jobs(state):
        if view["state"] == "running":
            image = state.hub.preview(view["id"])
            if image is not None:
                return image
    return None


def cancel(state: ServerState, job_id: str | None) -> str:
    """Cancel a queued or running job as ``POST /api/jobs/{id}/cancel`` does; a note for the user."""
    if not job_id:
        return "Pick a job to cancel."
    if state.store.cancel_waiting(job_id):
        state.hub.publish(job_id, "cancelled", {"id": job_id, "state": "cancelled"})
        return f"Cancelled {job_id}."
    if state.store.request_cancel(job_id):
        state.hub.cancel(job_id)
        return f"Cancelling {job_id} at its next step."
    return f"Job {job_id} has nothing to cancel."


def gallery_items(state: ServerState) -> list[tuple[str, str]]:
    """Finished renders as (GIF or first frame, job id), newest first: only regular files inside the job's run
    folder (:func:`~flipbook.server.security.confined_file`; a link that leads out is never shown)."""
    from flipbook.server.security import confined_file

    records, _ = state.store.list(limit=JOB_LIST_LIMIT, offset=0, state="done", kind="render")
    items = []
    for record in records:
        run = state.settings.runs_dir / record.id
        gif = record.result.get("outputs", {}).get("gif")
        picture = confined_file(run, gif) if isinstance(gif, str) else None
        if picture is None:
            frames = sorted((run / "frames").glob("frame_*.png"))
            picture = confined_file(run, f"frames/{frames[0].name}") if frames else None
        if picture is not None:
            items.append((str(picture), record.id))
    return items


def job_toml(state: ServerState, job_id: str) -> str:
    """The spec a job rendered, as TOML for the Spec tab (server-owned fields and uploaded paths left out:
    upload the inputs again to re-run)."""
    from flipbook.server.submit import input_fields
    from flipbook.spec.load import spec_from_data
    from flipbook.spec.references import pattern_of, pop_in_data, references

    record = state.store.get(job_id)
    if record is None:
        raise FlipbookError("job", job_id, "a job in this server's queue")
    data = json.loads(json.dumps(record.payload))
    inputs = input_fields()
    for reference in references(spec_from_data(record.payload)):
        if pattern_of(reference.location) in inputs:
            pop_in_data(data, reference.location)
    return _without_defaults(data)


def _without_defaults(data: dict[str, Any]) -> str:
    """TOML of the fields that differ from the spec model's defaults (short enough to edit)."""
    from flipbook.spec.model import Spec

    defaults = json.loads(Spec.model_validate({"prompts": {"0": "x"}}).model_dump_json())

    def strip(values: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in values.items():
            if value is None:
                continue
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                inner = strip(value, base[key])
                if inner:
                    out[key] = inner
            elif key not in base or base[key] != value or key in ("version", "prompts"):
                out[key] = value
        return out

    kept = strip(data, defaults)
    kept.setdefault("animation", {}).setdefault("mode", data.get("animation", {}).get("mode", DEFAULT_MODE))
    return data_to_toml(kept)


def models(state: ServerState) -> list[str]:
    """Built-in checkpoints and the checkpoints in ``--models-dir``."""
    return model_names(state, widget_for(field_schema("model.name")))


def model_names(state: ServerState, widget: Widget) -> list[str]:
    """What a model widget offers: the field's built-in names, then the names its models-folder kinds hold in
    the server's ``--models-dir``."""
    names = list(widget.choices)
    if state.settings.models_dir is not None:
        from flipbook.models.folders import ModelsDir

        try:
            folders = ModelsDir(state.settings.models_dir)
            for kind in widget.folders:
                names += [name for name in folders.list(kind) if name not in names]
        except (FlipbookError, OSError):
            pass
    return names


def settings_markdown(state: ServerState) -> str:
    s = state.settings
    models_dir = f"`{s.models_dir}`" if s.models_dir is not None else "not set"
    return (
        f"- **Models folder** (`--models-dir`): {models_dir}. Read-only here: the workers read it when "
        f"the server starts and models load from it mid-queue, so changing it means restarting "
        f"`flipbook serve --models-dir PATH`.\n"
        f"- **Runs folder** (`--runs-dir`): `{s.runs_dir}`\n"
        f"- **Workers**: {s.workers}\n"
        f"- **Default model**: `{s.default_model}`\n"
        f"- **Models available**: {', '.join(f'`{m}`' for m in models(state))}\n"
        f"- **Upload limit**: {s.max_upload_mb:g} MB"
    )


# ---- the Gradio app --------------------------------------------------------------------------------------


def build_ui(state: ServerState) -> gr.Blocks:
    """The Blocks app for one server's state: a tab per registered mode, each generated from its form."""
    import gradio as gr

    scratch = Path(tempfile.mkdtemp(prefix="flipbook-ui-"))

    with gr.Blocks(title="flipbook", analytics_enabled=False) as demo:
        gr.Markdown("# flipbook")
        with gr.Tabs() as tabs:
            with gr.Tab("Create", id="create"):
                common = _common_fields(gr, state)
                to_spec = []
                with gr.Tabs():
                    for mode in MODES:
                        with gr.Tab(mode, id=f"mode-{mode}", elem_id=f"tab-{mode}"):
                            to_spec.append(_mode_tab(gr, state, mode, common, scratch))
            with gr.Tab("Spec", id="spec", elem_id="tab-spec"):
                spec_box = _spec_tab(gr, state)
            with gr.Tab("Queue", id="queue", elem_id="tab-queue"):
                _queue_tab(gr, state)
            with gr.Tab("Gallery", id="gallery", elem_id="tab-gallery") as gallery_tab:
                _gallery_tab(gr, state, gallery_tab, spec_box, tabs)
            with gr.Tab("Settings", id="settings", elem_id="tab-settings"):
                gr.Markdown(lambda: settings_markdown(state))
        for button, gather, inputs in to_spec:  # each mode's form as TOML in the Spec tab
            button.click(_to_spec_handler(gather), inputs, [spec_box, tabs])
    return demo


def _common_fields(gr: Any, state: ServerState) -> dict[str, Any]:
    """The prompt table and :func:`common_form`'s fields; components by form key."""
    with gr.Accordion("Common settings", open=True):
        prompts = gr.Dataframe(
            value=[["0", "a lighthouse at dusk, oil painting"], ["12", "a lighthouse at night, stars"]],
            headers=["frame", "prompt"],
            datatype=["str", "str"],
            type="array",
            interactive=True,
            row_count=2,
            column_count=2,
            label="Prompts (frame → prompt; a frame may be an expression in max_f)",
            elem_id="prompts-table",
        )
        components = {"prompts": prompts}
        entries = common_form()
        _form(gr, state, [e for e in entries if e.shown], components, prefix="")
        with gr.Accordion("More settings", open=False, elem_id="more-common"):
            _form(gr, state, [e for e in entries if not e.shown], components, prefix="")
    return components


def _form(
    gr: Any, state: ServerState, entries: Sequence[FormEntry], into: dict[str, Any], prefix: str
) -> None:
    """The entries' components in rows of :data:`ROW_WIDTH` (a table or prompt box on a row of its own), added
    to ``into`` by key; element ids are ``prefix-key`` (``key`` alone without a prefix)."""
    for row in _rows(entries):
        with gr.Row(equal_height=False):
            for entry in row:
                elem_id = "-".join(filter(None, (prefix, entry.key.replace(".", "-"))))
                into[entry.key] = _component(gr, state, entry.widget, elem_id)


def _rows(entries: Sequence[FormEntry]) -> Iterator[list[FormEntry]]:
    row: list[FormEntry] = []
    for entry in entries:
        wide = entry.widget.kind in ("table", "prompt")
        if row and (wide or len(row) == ROW_WIDTH):
            yield row
            row = []
        row.append(entry)
        if wide:
            yield row
            row = []
    if row:
        yield row


def _mode_tab(
    gr: Any, state: ServerState, mode: str, common: dict[str, Any], scratch: Path
) -> tuple[Any, Any, list[Any]]:
    """One mode's tab, generated from :func:`mode_form` (each field with the widget its schema gives), and its
    buttons; returns its "Edit as TOML" button, form reader and inputs."""
    descriptor = get_mode(mode)
    gr.Markdown(descriptor.description, elem_id=f"about-{mode}")
    entries = mode_form(mode)
    own: dict[str, Any] = {}
    _form(gr, state, [e for e in entries if e.shown], own, prefix=mode)
    hidden = [e for e in entries if not e.shown]
    if hidden:
        with gr.Accordion(f"More {descriptor.section or mode} settings", open=False, elem_id=f"more-{mode}"):
            _form(gr, state, hidden, own, prefix=mode)
    everything = [*common_form(), *entries]
    uploads = {e.key: e.path for e in entries if e.widget.kind == "upload"}  # form key -> spec field
    common_names, own_names = list(common), list(own)
    inputs = [*common.values(), *own.values()]

    def gather(*values: Any) -> dict[str, Any]:
        return mode_data(
            mode,
            dict(zip(common_names, values[: len(common_names)], strict=True)),
            dict(zip(own_names, values[len(common_names) :], strict=True)),
        )

    with gr.Row():
        submit_button = gr.Button(f"Queue {mode} job", variant="primary", elem_id=f"submit-{mode}")
        plot_button = gr.Button("Check and plot schedules", elem_id=f"plot-{mode}")
        to_spec = gr.Button("Edit as TOML", elem_id=f"tospec-{mode}")
        preview_button = (
            gr.Button("Motion preview (no model)", elem_id=f"motion-{mode}")
            if descriptor.camera_path is not None
            else None
        )
    message = gr.Markdown(elem_id=f"message-{mode}")
    with gr.Row():
        plot = gr.Plot(label="Schedules", elem_id=f"plot-out-{mode}")
        gif = gr.Image(label="Motion preview", type="filepath", visible=preview_button is not None)

    def on_submit(*values: Any) -> str:
        try:
            own_values = dict(zip(own_names, values[len(common_names) :], strict=True))
            files = {field: own_values.get(name) for name, field in uploads.items() if own_values.get(name)}
            job_id = submit(state, gather(*values), files)
        except Exception as error:  # noqa: BLE001 (shown in the tab)
            return f"Not queued: {error_text(error, state)}"
        return f"Queued job `{job_id}` (see the Queue tab)."

    def on_plot(*values: Any) -> tuple[Any, str]:
        try:
            data = gather(*values)
        except Exception as error:  # noqa: BLE001
            return None, f"Not valid: {error_text(error)}"
        return chart(data)

    def on_preview(*values: Any) -> tuple[Any, str]:
        try:
            return str(motion_preview(gather(*values), scratch)), "Motion preview written."
        except Exception as error:  # noqa: BLE001
            return None, f"No preview: {error_text(error)}"

    submit_button.click(on_submit, inputs, message)
    plot_button.click(on_plot, inputs, [plot, message])
    components = {**common, **own}
    for entry in everything:  # re-plot when a schedule box changes
        if entry.live:
            components[entry.key].change(
                on_plot, inputs, [plot, message], trigger_mode="always_last", show_progress="hidden"
            )
    if preview_button is not None:
        preview_button.click(on_preview, inputs, [gif, message])
    return to_spec, gather, inputs


def _component(gr: Any, state: ServerState, widget: Widget, elem_id: str) -> Any:
    """The Gradio component for a widget (see :mod:`flipbook.server.widgets`), showing the field's default and
    its description as info text."""
    label = f"{widget.label} ({widget.unit})" if widget.unit else widget.label
    common = {"label": label, "elem_id": elem_id}
    info = {"info": widget.info} if widget.info else {}
    value = shown_value(widget, widget.default)
    if widget.kind == "upload":
        if widget.file_types == ("image",):
            return gr.Image(type="filepath", **common)
        return gr.File(type="filepath", file_types=list(widget.file_types), **common)
    if widget.kind == "table":
        width = len(widget.columns)
        return gr.Dataframe(
            value=value, headers=[name for name, _ in widget.columns], datatype=["str"] * width, type="array",
            interactive=True, column_count=width, **common,
        )  # fmt: skip
    if widget.kind == "model":
        names = model_names(state, widget)
        return gr.Dropdown(choices=names, value=value, allow_custom_value=True, **common, **info)
    if widget.kind == "choice":
        return gr.Dropdown(
            list(widget.choices), value=value, allow_custom_value=widget.custom, **common, **info
        )
    if widget.kind == "multichoice":
        return gr.CheckboxGroup(choices=list(widget.choices), value=value, **common, **info)
    if widget.kind == "slider":
        return gr.Slider(widget.minimum, widget.maximum, value=value, step=widget.step, **common, **info)
    if widget.kind in ("integer", "number") and widget.default is not None:  # a number box can't be empty
        whole = widget.kind == "integer"
        return gr.Number(value=value, precision=0 if whole else None, minimum=widget.minimum,
                         maximum=widget.maximum, **common, **info)  # fmt: skip
    if widget.kind == "checkbox":
        return gr.Checkbox(value=value, **common, **info)
    if widget.kind == "prompt":
        return gr.Textbox(value=value, lines=2, **common, **info)
    return gr.Textbox(value=value, lines=1, max_lines=1, **common, **info)


def _to_spec_handler(gather: Any):
    import gradio as gr

    def handle(*values: Any) -> tuple[Any, Any]:
        try:
            return data_to_toml(gather(*values)), gr.Tabs(selected="spec")
        except Exception as error:  # noqa: BLE001
            raise gr.Error(error_text(error)) from None

    return handle


def _spec_tab(gr: Any, state: ServerState) -> Any:
    with gr.Row():
        with gr.Column(scale=3):
            box = gr.Textbox(
                value=data_to_toml(
                    {
                        "version": 1,
                        "animation": {"mode": DEFAULT_MODE, "max_frames": 12},
                        "prompts": {"0": "a red fox in the snow"},
                        "output": {"formats": ["gif"]},
                    }
                ),  # fmt: skip
                lines=24,
                max_lines=60,
                label="Spec (TOML)",
                elem_id="spec-toml",
            )
        with gr.Column(scale=2):
            imported = gr.File(
                label="Import: Deforum settings (.txt/.json), spec (.toml/.json), flipbook output or A1111 PNG",
                type="filepath",
                elem_id="import-file",
            )
            with gr.Accordion("Input files (optional uploads)", open=True):
                uploads = {
                    name: gr.File(label=name, type="filepath", elem_id=f"upload-{name.replace('.', '-')}")
                    for name in upload_fields()
                }
    with gr.Row():
        submit_button = gr.Button("Queue this spec", variant="primary", elem_id="submit-spec")
        check_button = gr.Button("Check and plot schedules", elem_id="plot-spec")
    message = gr.Markdown(elem_id="message-spec")
    plot = gr.Plot(label="Schedules")

    def files(paths: Sequence[Any]) -> dict[str, str]:
        return {name: str(path) for name, path in zip(uploads, paths, strict=True) if path}

    def on_submit(text: str, *paths: Any) -> str:
        try:
            job_id = submit(state, toml_to_data(text), files(paths))
        except Exception as error:  # noqa: BLE001
            return f"Not queued: {error_text(error, state)}"
        return f"Queued job `{job_id}` (see the Queue tab)."

    def on_check(text: str, *paths: Any) -> tuple[Any, str]:
        try:
            spec = check_spec_files(state, toml_to_data(text), files(paths))
            return chart(json.loads(spec.model_dump_json()))
        except Exception as error:  # noqa: BLE001
            return None, f"Not valid: {error_text(error, state)}"

    def on_import(path: Any, text: str) -> tuple[str, str]:
        if not path:
            return text, ""
        try:
            return import_file(path)
        except Exception as error:  # noqa: BLE001
            return text, f"Not imported: {error_text(error)}"

    extra = list(uploads.values())
    submit_button.click(on_submit, [box, *extra], message, api_name="submit_spec")
    check_button.click(on_check, [box, *extra], [plot, message], api_name="check_spec")
    imported.upload(on_import, [imported, box], [box, message], api_name="on_import")
    return box


def _queue_tab(gr: Any, state: ServerState) -> None:
    timer = gr.Timer(POLL_S)
    jobs = gr.HTML("<p>Loading the queue…</p>", elem_id="queue-html")
    with gr.Row():
        picked = gr.Dropdown(
            choices=[], label="Job to cancel", allow_custom_value=True, elem_id="cancel-pick"
        )
        cancel_button = gr.Button("Cancel job", variant="stop", elem_id="cancel")
    note = gr.Markdown()
    preview = gr.Image(label="Running job: latest preview", type="pil", elem_id="live-preview")

    def refresh(current: str | None) -> tuple[str, Any, Any]:
        ids = active_job_ids(state)
        value = current if current in ids else (ids[0] if ids else None)
        return queue_html(state), gr.Dropdown(choices=ids, value=value), live_preview(state)

    timer.tick(refresh, picked, [jobs, picked, preview], show_progress="hidden")
    cancel_button.click(lambda job: cancel(state, job), picked, note)


def _gallery_tab(gr: Any, state: ServerState, tab: Any, spec_box: Any, tabs: Any) -> None:
    gr.Markdown("Finished renders, newest first. Click one to open its spec in the Spec tab.")
    refresh_button = gr.Button("Refresh", elem_id="gallery-refresh")
    gallery = gr.Gallery(columns=4, label="Runs", elem_id="gallery", allow_preview=False)

    def on_select(event):  # noqa: ANN001 (annotated below: gradio injects SelectData by annotation)
        items = gallery_items(state)
        if event.index is None or event.index >= len(items):
            raise gr.Error("That run is gone; refresh the gallery.")
        return job_toml(state, items[event.index][1]), gr.Tabs(selected="spec")

    on_select.__annotations__ = {"event": gr.SelectData}

    refresh_button.click(lambda: gallery_items(state), None, gallery)
    tab.select(lambda: gallery_items(state), None, gallery)
    gr.context.Context.root_block.load(lambda: gallery_items(state), None, gallery)
    gallery.select(on_select, None, [spec_box, tabs])


def mount_ui(app: FastAPI, state: ServerState, path: str = UI_PATH) -> None:
    """Mount the UI at ``path`` and redirect ``/`` to it. Gradio's own requests come from the page it
    serves, so they are same-origin for :class:`~flipbook.server.security.SecurityMiddleware`.

    Mounted (not launched), Gradio does not check the file paths a client names, so
    :class:`~flipbook.server.security.UIFileGuard` does: a client may name only files Gradio stored for this
    server (uploads, files its components cached) or files inside a job's run folder; ``file=`` serves nothing
    else (not the job database beside the run folders)."""
    import importlib.util
    import logging

    from fastapi.responses import RedirectResponse

    if importlib.util.find_spec("gradio") is None:
        logging.getLogger("flipbook.server").warning("gradio is not installed: no web UI at %s", path)
        return
    import gradio as gr

    from flipbook.server.security import UIFileGuard

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse(f"{path}/", status_code=307)

    demo = build_ui(state)

    def stored_by_gradio(named: str) -> bool:  # this server's uploads and the files its components cached
        return any(named in files for files in demo.temp_file_sets)

    app.add_middleware(UIFileGuard, prefix=path, runs_dir=state.settings.runs_dir, is_known=stored_by_gradio)
    gr.mount_gradio_app(
        app,
        demo,
        path=path,
        allowed_paths=[str(state.settings.runs_dir.resolve())],
        ssr_mode=False,
        show_error=True,
        theme=gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]),
        max_file_size=state.settings.max_upload_bytes,
    )

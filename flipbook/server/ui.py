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
    """A FlipbookError as the CLI prints it, once (its message already begins with the field it names);
    anything else with its type. With the server's ``state``, server paths are shown relative to the runs or
    models folder."""
    if isinstance(error, FlipbookError):
        text = str(error)
        if not text.startswith(f"{error.field}:"):  # a message of its own: say which field it is about
            text = f"{error.field}: {text}"
    else:
        text = f"{type(error).__name__}: {error}"
    if state is None:
        return text
    from flipbook.server.security import public_text

    return public_text(text, state.settings)


def message_html(text: str, *, error: bool = False) -> str:
    """A note for a message box as HTML: an error in monospace with its line breaks and spaces kept (so a
    schedule error's caret stays under the character it points at), escaped; plain notes as a paragraph
    (text in backticks as code)."""
    if error:
        return f"<pre class='flipbook-error'>{html.escape(text)}</pre>"
    parts = html.escape(text).split("`")
    body = "".join(f"<code>{part}</code>" if i % 2 else part for i, part in enumerate(parts))
    return f"<p class='flipbook-note'>{body}</p>"


def failure_html(what: str, error: Exception, state: ServerState | None = None) -> str:
    """``what`` ("Not valid", "Not queued") and the error, read once, in monospace."""
    return message_html(f"{what}: {error_text(error, state)}", error=True)


def chart(data: Mapping[str, Any]) -> tuple[Figure | None, str]:
    """The plan chart of every schedule for ``data``, or None and the error naming the field."""
    from flipbook.io.plan_chart import plan_figure

    try:
        spec, plan = validate(data)
    except Exception as error:  # noqa: BLE001 (shown to the user, naming the field)
        return None, failure_html("Not valid", error)
    return plan_figure(plan, title=f"{spec.animation.mode}: {len(plan)} frames"), message_html("Valid.")


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

    data = without_none(json.loads(json.dumps(dict(data), default=str)))
    for location in server_owned_fields():
        pop_in_data(data, location)
    return spec_to_toml(data)


def without_none(data: Any) -> Any:
    """Spec data with every None left out (TOML has no null; an unset optional field is its default: every
    optional field of the spec defaults to None), in sections and in the sections of lists."""
    if isinstance(data, dict):
        return {key: without_none(value) for key, value in data.items() if value is not None}
    if isinstance(data, list):
        return [without_none(item) for item in data]
    return data


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
    """A flipbook output's embedded spec (as :func:`editable_toml` gives it) or a picture's A1111 parameters."""
    from flipbook.io.metadata import read_embedded

    embedded = read_embedded(path)
    if embedded.spec is not None:
        text, dropped = editable_toml(embedded.spec)
        note = f"Imported the spec embedded in {path.name}."
        if dropped:
            note += f" Upload its input files again: {', '.join(dropped)}."
        return text, note
    if embedded.parameters:
        return data_to_toml(a1111_data(embedded.parameters)), f"Imported A1111 parameters from {path.name}."
    raise FlipbookError("import", path.name, "a file with a flipbook spec or A1111 parameters in it")


def import_error(error: Exception, path: str | Path) -> str:
    """An import's error for the user: the uploaded copy's server path shown as the file's name only (and its
    folder, should the error name it, left out)."""
    path = Path(path)
    text = error_text(error).replace(str(path), path.name)
    return (
        text.replace(str(path.parent), "")
        if path.is_absolute() and path.parent != path.parent.parent
        else text
    )


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
                return display_preview(image)
    return None


VIDEO_OUTPUTS = ("mp4", "webm", "mov", "mkv")
PICTURE_OUTPUTS = ("gif", "webp", "apng")


@dataclass(frozen=True)
class ResultView:
    """What the Create tab's result panel shows for a job: ``key`` changes whenever anything shown changes (so
    an unchanged poll sends nothing), ``waiting`` while it is queued or running (keep polling), the progress
    bar and line, the newest preview while it runs, and the finished animation with its download links."""

    key: tuple[Any, ...]
    waiting: bool
    progress_html: str
    preview: Any
    result_html: str


def result_view(state: ServerState, job_id: str) -> ResultView:
    """The result panel for ``job_id`` (see :class:`ResultView`), from the job view the API serves."""
    from flipbook.server.api import job_view

    record = state.store.get(job_id)
    if record is None:
        return ResultView(("gone", job_id), False, message_html(f"Job `{job_id}` is gone."), None, "")
    view = job_view(state, record)
    p = view.get("progress") or {}
    line = " · ".join(filter(None, (view["state"], progress_text(view))))
    fraction = 1.0 if view["state"] == "done" else float(p.get("fraction") or 0.0)
    progress = (
        f"<div class='flipbook-progress' data-state='{view['state']}'>"
        f"<progress max='1' value='{fraction:.3f}'></progress> <span>{html.escape(line)}</span></div>"
    )
    waiting = view["state"] in ("queued", "running")
    raw = state.hub.preview(job_id) if view["state"] == "running" else None
    preview = None if raw is None else display_preview(raw)
    key = (job_id, view["state"], p.get("frame"), p.get("step"), id(raw))
    if view.get("error"):
        result = message_html(view["error"]["message"], error=True)
    else:
        result = outputs_html(job_id, view["outputs"]) if view["state"] == "done" else ""
    return ResultView(key, waiting, progress, preview, result)


PREVIEW_PX = 384
"""The long side a live preview is shown at (step previews are latent-sized: 8 px for a 64 px frame)."""


def display_preview(image: Any, size: int = PREVIEW_PX) -> Any:
    """A preview (PIL image) enlarged to ``size`` on its long side, pixels kept sharp (nearest neighbour) and
    the aspect ratio kept; one already as large is returned as it is."""
    import PIL.Image

    width, height = image.size
    scale = size / max(width, height)
    if scale <= 1:
        return image
    return image.resize(
        (max(1, round(width * scale)), max(1, round(height * scale))), PIL.Image.Resampling.NEAREST
    )


def outputs_html(job_id: str, outputs: Mapping[str, str]) -> str:
    """A finished job's animation, playing (its GIF, WebP or APNG, else its video), and a download link per
    output file."""
    picture = next((outputs[kind] for kind in PICTURE_OUTPUTS if kind in outputs), None)
    video = next((outputs[kind] for kind in VIDEO_OUTPUTS if kind in outputs), None)
    if picture is not None:
        media = (
            f"<img src='{html.escape(picture)}' alt='the finished animation' class='flipbook-result-media'>"
        )
    elif video is not None:
        media = (
            f"<video src='{html.escape(video)}' class='flipbook-result-media' controls autoplay loop muted "
            "playsinline></video>"
        )
    else:
        media = ""
    links = " ".join(
        f"<a href='{html.escape(url)}' download class='flipbook-download'>{html.escape(kind)}</a>"
        for kind, url in outputs.items()
    )
    return (
        f"<div class='flipbook-result' data-job='{html.escape(job_id)}'>{media}"
        f"<p class='flipbook-downloads'>Download: {links}</p></div>"
    )


def last_seed(state: ServerState, job_id: str | None) -> int | None:
    """The seed last used: that of ``job_id`` (this page's last job) when it is known, else the newest job's
    that has one (a random seed is known once its job starts)."""
    from flipbook.server.api import job_view

    record = state.store.get(job_id) if job_id else None
    if record is not None and (seed := job_view(state, record)["seed"]) is not None:
        return seed
    return next((view["seed"] for view in _jobs(state) if view.get("seed") is not None), None)


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


GALLERY_STATES = ("done", "interrupted", "cancelled", "failed")
"""Runs the gallery shows: finished ones and stopped ones with frames (those resume)."""


@dataclass(frozen=True)
class GalleryEntry:
    """One run in the gallery: its picture (GIF or first frame, a file inside its run folder), job id,
    state, and the caption (prompt, mode, model, date)."""

    picture: str
    job_id: str
    state: str
    caption: str


def gallery_entries(state: ServerState, query: str = "") -> list[GalleryEntry]:
    """Renders with a picture, newest first, whose caption or id holds ``query`` (any case): only regular
    files inside the job's run folder (:func:`~flipbook.server.security.confined_file`; a link that leads
    out is never shown)."""
    from flipbook.server.security import confined_file

    words = query.lower().split()
    entries = []
    for record in state.store.list(limit=JOB_LIST_LIMIT, offset=0, state=None, kind="render")[0]:
        if record.state not in GALLERY_STATES:
            continue
        run = state.settings.runs_dir / record.id
        gif = record.result.get("outputs", {}).get("gif")
        picture = confined_file(run, gif) if isinstance(gif, str) else None
        if picture is None:
            frames = sorted((run / "frames").glob("frame_*.png"))
            picture = confined_file(run, f"frames/{frames[0].name}") if frames else None
        caption = run_caption(record)
        if picture is not None and all(word in f"{record.id} {caption}".lower() for word in words):
            entries.append(GalleryEntry(str(picture), record.id, record.state, caption))
    return entries


def run_caption(record: Any) -> str:
    """``prompt · mode · model · date`` (and the state of a run that did not finish)."""
    import datetime

    spec = record.payload
    prompts = spec.get("prompts") or {}
    first = str(next(iter(prompts.values()), "")) if isinstance(prompts, dict) else ""
    prompt = first if len(first) <= 60 else first[:59] + "…"
    when = datetime.datetime.fromtimestamp(record.created_at).strftime("%Y-%m-%d %H:%M")
    parts = [prompt, spec.get("animation", {}).get("mode", ""), spec.get("model", {}).get("name", ""), when]
    if record.state != "done":
        parts.append(record.state)
    return " · ".join(str(part) for part in parts if part)


def gallery_items(state: ServerState, query: str = "") -> list[tuple[str, str]]:
    """(picture, job id) of each run :func:`gallery_entries` lists."""
    return [(entry.picture, entry.job_id) for entry in gallery_entries(state, query)]


def gallery_pictures(state: ServerState, query: str = "") -> list[tuple[str, str]]:
    """The gallery's (picture, caption) pairs for :func:`gallery_entries`."""
    return [(entry.picture, entry.caption) for entry in gallery_entries(state, query)]


def resume(state: ServerState, job_id: str | None) -> str:
    """Queue a stopped render again as ``POST /api/jobs/{id}/resume`` does (it continues from its frames)."""
    if not job_id:
        return "Pick a run first."
    if not state.store.requeue_for_resume(job_id):
        return f"Run {job_id} did not stop part-way (only interrupted, cancelled or failed runs resume)."
    if state.workers is not None:
        state.workers.wake()
    state.hub.publish(job_id, "state", {"id": job_id, "state": "queued"})
    return f"Resuming {job_id} (see the Queue tab)."


def delete(state: ServerState, job_id: str | None) -> str:
    """Delete a run and its run folder as ``DELETE /api/jobs/{id}`` does (never one that is running)."""
    from flipbook.server.api import DELETED
    from flipbook.server.submit import remove_run_dir

    if not job_id:
        return "Pick a run first."
    if not state.store.delete(job_id):
        return f"Run {job_id} is running or gone: cancel it before deleting."
    remove_run_dir(state.settings, job_id)
    state.hub.publish(job_id, DELETED, {"id": job_id, "state": DELETED})
    return f"Deleted {job_id}."


def job_toml(state: ServerState, job_id: str) -> str:
    """The spec a job rendered, as TOML for the Spec tab (:func:`editable_toml`: upload the inputs again to
    re-run), with the seed it used (a random seed's value once the job started), so a re-run repeats it."""
    from flipbook.server.api import job_view

    record = state.store.get(job_id)
    if record is None:
        raise FlipbookError("job", job_id, "a job in this server's queue")
    data = json.loads(json.dumps(record.payload))
    seed = job_view(state, record)["seed"]
    if seed is not None and record.kind == "render":
        data.setdefault("sampling", {})["seed"] = seed
    return editable_toml(data)[0]


def editable_toml(data: Mapping[str, Any]) -> tuple[str, list[str]]:
    """A whole spec (a job's, or one embedded in an output, every field written out) as short TOML to edit:
    the fields that differ from the defaults, without the server's fields and without the input files it
    names (paths on the machine that rendered it: uploaded again to re-run); and the input fields left out."""
    from flipbook.server.submit import input_fields
    from flipbook.spec.load import spec_from_data
    from flipbook.spec.references import field_name, pattern_of, pop_in_data, references

    data = without_none(json.loads(json.dumps(dict(data))))
    inputs = input_fields()
    dropped = []
    for reference in references(spec_from_data(json.loads(json.dumps(data)))):
        if pattern_of(reference.location) in inputs:
            pop_in_data(data, reference.location)
            dropped.append(field_name(reference.location))
    return _without_defaults(data), dropped


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


# ---- the chosen model: its defaults and whether it is here -----------------------------------------------

TEST_MODEL_STEPS = 4
TEST_MODEL_FRAMES = 8
"""Steps and frames for a built-in test model (one its family makes smaller than the family's size, such as
``tiny``: random weights, so more steps or frames only take longer)."""
HEADER_LIMIT = 100_000_000  # a safetensors header larger than this is no checkpoint's


def model_family(state: ServerState, name: str) -> Any:
    """The image family of the checkpoint ``name`` without loading it: a built-in's, a diffusers folder's (its
    ``model_index.json`` and UNet config) or a single ``.safetensors`` file's (its header's tensor names),
    found in the server's models folder; None when it is none of those or not recognised."""
    from flipbook.models.families import builtin_family, detect_checkpoint, detect_folder

    family = builtin_family(name, "image")
    if family is not None:
        return family
    found = _in_models_folder(state, widget_for(field_schema("model.name")), name)
    try:
        if found is not None and found.is_dir():
            index = json.loads((found / "model_index.json").read_text(encoding="utf-8"))
            unet = found / "unet" / "config.json"
            config = json.loads(unet.read_text(encoding="utf-8")) if unet.is_file() else {}
            return detect_folder(index, config)
        if found is not None and found.suffix == ".safetensors":
            return detect_checkpoint(_safetensors_keys(found))
    except (OSError, ValueError, FlipbookError):
        return None
    return None


def _safetensors_keys(path: Path) -> list[str]:
    """The tensor names in a safetensors file's header (8-byte length, then JSON), no tensor read."""
    with path.open("rb") as file:
        size = int.from_bytes(file.read(8), "little")
        if not 0 < size < HEADER_LIMIT:
            raise ValueError(f"{path.name}: not a safetensors header")
        header = json.loads(file.read(size))
    return [key for key in header if key != "__metadata__"]


def model_defaults(state: ServerState, name: str) -> dict[str, int] | None:
    """The Create tab's size, steps and frames that fit the checkpoint ``name`` (by spec field): its family's
    size (a built-in's own), and for a built-in test model few steps and frames (:data:`TEST_MODEL_STEPS`);
    otherwise the spec's defaults. None when the family is not known (the form is left as it is)."""
    family = model_family(state, name)
    size = None if family is None else family.size_of(name)
    if size is None:
        return None
    test_model = (
        family.default_size is not None
        and size[0] * size[1] < family.default_size[0] * family.default_size[1]
    )
    return {
        "animation.width": size[0],
        "animation.height": size[1],
        "sampling.steps": TEST_MODEL_STEPS if test_model else field_default("sampling.steps"),
        "animation.max_frames": TEST_MODEL_FRAMES if test_model else field_default("animation.max_frames"),
    }


def _in_models_folder(state: ServerState, widget: Widget, name: str) -> Path | None:
    """Where the models folder keeps ``name`` among the widget's models-folder kinds, or None."""
    if state.settings.models_dir is None or not widget.folders:
        return None
    from flipbook.models.folders import ModelsDir

    try:
        folders = ModelsDir(state.settings.models_dir)
    except (FlipbookError, OSError):
        return None
    for kind in widget.folders:
        try:
            return folders.find(kind, name)
        except (FlipbookError, OSError):
            continue
    return None


def hub_cached(repo_id: str) -> bool:
    """Whether the hub cache holds a snapshot of ``repo_id`` (no network)."""
    from huggingface_hub.constants import HF_HUB_CACHE

    snapshots = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def model_note(state: ServerState, widget: Widget, name: Any) -> str:
    """HTML flagging a model name the server cannot load offline (not built in, not in the models folder,
    not in the hub cache), said when it is chosen rather than when the job fails; empty when it is here."""
    name = str(name or "").strip()
    if not name or name in widget.choices or _in_models_folder(state, widget, name) is not None:
        return ""
    if "/" in name and hub_cached(name):
        return ""
    where = [
        "built in",
        "in the models folder (--models-dir)" if widget.folders else None,
        "in the hub cache",
    ]
    text = (
        f"{widget.label}: {name!r} is not available offline: it is not "
        + ", ".join(w for w in where if w).replace(", in the hub", " nor in the hub")
        + ". The job would fail when it loads it: pick one of the names offered, or put the model in the "
        "models folder."
    )
    return f"<p class='flipbook-warning'>{html.escape(text)}</p>"


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


UI_CSS = """
.flipbook-error { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; white-space: pre-wrap;
  margin: 0; padding: 0.5em 0.75em; border-radius: 6px; color: var(--error-text-color, #b91c1c);
  background: var(--error-background-fill, #fef2f2); border: 1px solid var(--error-border-color, #fecaca); }
.flipbook-warning { margin: 0; padding: 0.25em 0.5em; border-radius: 6px; color: var(--error-text-color, #92400e);
  background: var(--error-background-fill, #fffbeb); font-size: 0.9em; }
.flipbook-progress progress { width: 100%; height: 0.9em; }
#generate-preview img, .flipbook-result-media { image-rendering: pixelated; }
.flipbook-result-media { width: 100%; max-width: 512px; height: auto; display: block; margin: 0 auto; }
#generate { min-height: 3em; font-size: 1.15em; }
#seed-row button { max-width: 3em; min-width: 2.5em; }
#result-column { position: sticky; top: 0.5em; align-self: flex-start; }
#flipbook-queue { overflow-x: auto; display: block; }
#gallery .grid-container { grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)) !important; }
#gallery .thumbnail-item img { object-fit: contain !important; image-rendering: pixelated; }
#gallery .caption-label { white-space: normal; overflow: visible; max-width: 100%; font-size: 0.8em; }
@media (max-width: 720px) {
  #create-row, #spec-row { flex-direction: column; }
  #create-row > .column, #spec-row > .column { min-width: 0 !important; width: 100%; }
  #result-column { position: static; order: -1; }
  .gradio-container .row, .gradio-container .form { flex-wrap: wrap; }
  .gradio-container .row > *, .gradio-container .form > * { min-width: min(100%, 140px) !important; }
}
"""
"""The web UI's own styles: errors in monospace keeping their spaces (a caret's column), the result column
beside the form on a wide screen and under it on a phone, small previews enlarged without blurring."""

FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
    '<rect x="6" y="10" width="40" height="46" rx="5" fill="#fdba74"/>'
    '<rect x="18" y="6" width="40" height="46" rx="5" fill="#f97316" stroke="#7c2d12" stroke-width="3"/>'
    '<path d="M31 18 l15 11 -15 11z" fill="#fff"/></svg>'
)
"""The tab icon: two pages of a flip book and a play sign."""


def build_ui(state: ServerState) -> gr.Blocks:
    """The Blocks app for one server's state: the Create tab (the prompts, a tab per registered mode with its
    own controls, then the common settings; on the right Generate and the job's progress, live preview and
    result), Spec, Queue, Gallery and Settings."""
    import gradio as gr

    scratch = Path(tempfile.mkdtemp(prefix="flipbook-ui-"))

    with gr.Blocks(title="flipbook", analytics_enabled=False) as demo:
        gr.Markdown("# flipbook", elem_id="title")
        job = gr.State(None)  # this page's last job
        with gr.Tabs() as tabs:
            with gr.Tab("Create", id="create"):
                with gr.Row(elem_id="create-row"):
                    with gr.Column(scale=3, min_width=320):
                        prompts = _prompt_table(gr)
                        mode_state = gr.State(next(iter(MODES)))
                        forms = {}
                        with gr.Tabs(elem_id="mode-tabs"):
                            for mode in MODES:
                                with gr.Tab(mode, id=f"mode-{mode}", elem_id=f"tab-{mode}") as tab:
                                    forms[mode] = _mode_tab(gr, state, mode, scratch)
                                tab.select(lambda m=mode: m, None, mode_state)
                        common = {"prompts": prompts, **_common_fields(gr, state, job)}
                    with gr.Column(scale=2, min_width=300, elem_id="result-column"):
                        _result_panel(gr, state, job, mode_state, common, forms)
                for mode, form in forms.items():
                    _wire_mode(gr, state, mode, form, common, scratch, mode_state)
            with gr.Tab("Spec", id="spec", elem_id="tab-spec"):
                spec_box = _spec_tab(gr, state)
            with gr.Tab("Queue", id="queue", elem_id="tab-queue"):
                _queue_tab(gr, state)
            with gr.Tab("Gallery", id="gallery", elem_id="tab-gallery") as gallery_tab:
                _gallery_tab(gr, state, gallery_tab, spec_box, tabs)
            with gr.Tab("Settings", id="settings", elem_id="tab-settings"):
                gr.Markdown(lambda: settings_markdown(state))
        for form in forms.values():  # each mode's form as TOML in the Spec tab
            form.to_spec.click(_to_spec_handler(form.gather(common)), form.inputs(common), [spec_box, tabs])
    return demo


def _prompt_table(gr: Any) -> Any:
    return gr.Dataframe(
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


def _common_fields(gr: Any, state: ServerState, job: Any) -> dict[str, Any]:
    """:func:`common_form`'s fields; components by form key. The seed gets a dice (random) and a recycle (the
    seed last used) button; choosing a checkpoint sets the size, steps and frames that fit it."""
    components: dict[str, Any] = {}
    entries = common_form()
    fitting = model_defaults(state, str(field_default("model.name")))  # the default model's size, steps, ...
    with gr.Accordion("Common settings", open=True, elem_id="common-settings"):
        _form(gr, state, [e for e in entries if e.shown], components, prefix="", initial=fitting or {})
        with gr.Accordion("More settings", open=False, elem_id="more-common"):
            _form(gr, state, [e for e in entries if not e.shown], components, prefix="")
    by_path = {entry.path: entry.key for entry in entries}
    seed = components[by_path["sampling.seed"]]
    dice, recycle = components.pop("_seed_buttons")
    dice.click(lambda: -1, None, seed)
    recycle.click(lambda job_id: last_seed(state, job_id) if last_seed(state, job_id) is not None else gr.skip(),
                  job, seed)  # fmt: skip
    model = components[by_path["model.name"]]
    sized = [
        path for path in ("animation.width", "animation.height", "sampling.steps", "animation.max_frames")
    ]

    def fit_model(name: str) -> list[Any]:
        defaults = model_defaults(state, str(name or ""))
        if defaults is None:
            return [gr.skip()] * len(sized)
        return [shown_value(form_entry(path).widget, defaults[path]) for path in sized]

    model.input(fit_model, model, [components[by_path[path]] for path in sized])
    return components


def _form(
    gr: Any,
    state: ServerState,
    entries: Sequence[FormEntry],
    into: dict[str, Any],
    prefix: str,
    initial: Mapping[str, Any] | None = None,
) -> None:
    """The entries' components in rows of :data:`ROW_WIDTH` (a table or prompt box on a row of its own), added
    to ``into`` by key; element ids are ``prefix-key`` (``key`` alone without a prefix). A model box gets a note
    under it flagging a name the server does not have offline; the seed its dice and recycle buttons (in
    ``into["_seed_buttons"]``). ``initial`` holds values to show instead of defaults, by spec field."""
    initial = initial or {}
    for row in _rows(entries):
        with gr.Row(equal_height=False):
            for entry in row:
                elem_id = "-".join(filter(None, (prefix, entry.key.replace(".", "-"))))
                if entry.widget.kind == "model":
                    with gr.Column(min_width=160):
                        into[entry.key] = _component(gr, state, entry.widget, elem_id)
                        note = gr.HTML(
                            model_note(state, entry.widget, entry.widget.default), elem_id=f"{elem_id}-note"
                        )
                    into[entry.key].change(
                        lambda name, w=entry.widget: model_note(state, w, name), into[entry.key], note,
                        show_progress="hidden",
                    )  # fmt: skip
                elif entry.path == "sampling.seed":
                    with gr.Row(elem_id="seed-row", equal_height=False):
                        into[entry.key] = _component(gr, state, entry.widget, elem_id)
                        with gr.Column(min_width=48, scale=0):
                            into["_seed_buttons"] = (
                                gr.Button("⚄", size="sm", elem_id="seed-random", min_width=40),
                                gr.Button("♻", size="sm", elem_id="seed-recycle", min_width=40),
                            )
                else:
                    into[entry.key] = _component(gr, state, entry.widget, elem_id, initial.get(entry.path))


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


@dataclass
class ModeTab:
    """One mode tab's components: its own fields by form key, its buttons and outputs."""

    mode: str
    own: dict[str, Any]
    entries: tuple[FormEntry, ...]
    plot_button: Any
    to_spec: Any
    preview_button: Any
    message: Any
    plot: Any
    gif: Any
    keyframes: Any

    def gather(self, common: Mapping[str, Any]) -> Any:
        """The function turning the tab's inputs (:meth:`inputs`) into spec data."""
        common_names, own_names = list(common), list(self.own)

        def gather(*values: Any) -> dict[str, Any]:
            return mode_data(
                self.mode,
                dict(zip(common_names, values[: len(common_names)], strict=True)),
                dict(zip(own_names, values[len(common_names) :], strict=True)),
            )

        return gather

    def inputs(self, common: Mapping[str, Any]) -> list[Any]:
        return [*common.values(), *self.own.values()]

    def uploads(self, values: Sequence[Any], common: Mapping[str, Any]) -> dict[str, str]:
        """The files uploaded in the tab (spec field -> local path)."""
        own_values = dict(zip(self.own, values[len(common) :], strict=True))
        return {
            e.path: own_values[e.key]
            for e in self.entries
            if e.widget.kind == "upload" and own_values.get(e.key)
        }


def _mode_tab(gr: Any, state: ServerState, mode: str, scratch: Path) -> ModeTab:
    """One mode's tab, generated from :func:`mode_form` (each field with the widget its schema gives): its own
    controls first, its buttons (check and plot, TOML, motion preview), the schedule chart and the keyframe
    table."""
    descriptor = get_mode(mode)
    gr.Markdown(descriptor.description, elem_id=f"about-{mode}")
    entries = mode_form(mode)
    own: dict[str, Any] = {}
    _form(gr, state, [e for e in entries if e.shown], own, prefix=mode)
    hidden = [e for e in entries if not e.shown]
    if hidden:
        with gr.Accordion(f"More {descriptor.section or mode} settings", open=False, elem_id=f"more-{mode}"):
            _form(gr, state, hidden, own, prefix=mode)
    with gr.Row():
        plot_button = gr.Button("Check and plot schedules", elem_id=f"plot-{mode}", size="sm")
        to_spec = gr.Button("Edit as TOML", elem_id=f"tospec-{mode}", size="sm")
        preview_button = (
            gr.Button("Motion preview (no model)", elem_id=f"motion-{mode}", size="sm")
            if descriptor.camera_path is not None
            else None
        )
    message = gr.HTML(elem_id=f"message-{mode}")
    with gr.Row():
        plot = gr.Plot(label="Schedules", elem_id=f"plot-out-{mode}", visible=False, scale=2)
        gif = gr.Image(label="Motion preview", type="filepath", visible=preview_button is not None, scale=1)
    schedules = [e for e in (*common_form(), *entries) if e.widget.kind == "schedule"]
    with gr.Accordion("Keyframe table", open=False, elem_id=f"keyframes-{mode}"):
        keyframes = (
            gr.Dropdown([(e.widget.label, e.key) for e in schedules], value=None, label="Schedule to edit",
                        elem_id=f"kf-field-{mode}"),
            gr.Dataframe(headers=["frame", "value"], datatype=["str", "str"], type="array", interactive=True,
                         column_count=2, row_count=1, label="Keyframes (frame → value)", elem_id=f"kf-table-{mode}"),
            gr.Dropdown(["linear", "cubic", "step"], value="linear", label="Interpolation",
                        elem_id=f"kf-interp-{mode}"),
            gr.HTML(elem_id=f"kf-message-{mode}"),
        )  # fmt: skip
    return ModeTab(mode, own, entries, plot_button, to_spec, preview_button, message, plot, gif, keyframes)


def _wire_mode(
    gr: Any,
    state: ServerState,
    mode: str,
    tab: ModeTab,
    common: dict[str, Any],
    scratch: Path,
    mode_state: Any,
) -> None:
    """A mode tab's events: check and plot (also live as a schedule changes: a common box re-plots only the
    chosen tab's chart, ``mode_state``), the motion preview, and the keyframe table kept in sync with the
    schedule box it edits."""
    gather, inputs = tab.gather(common), tab.inputs(common)

    def on_live_plot(chosen: str, *values: Any) -> tuple[Any, Any]:
        return on_plot(*values) if chosen == mode else (gr.skip(), gr.skip())

    def on_plot(*values: Any) -> tuple[Any, str]:
        try:
            figure, message = chart(gather(*values))
        except Exception as error:  # noqa: BLE001 (shown in the tab)
            figure, message = None, failure_html("Not valid", error)
        return gr.Plot(figure, visible=figure is not None), message

    def on_preview(*values: Any) -> tuple[Any, str]:
        try:
            return str(motion_preview(gather(*values), scratch)), message_html("Motion preview written.")
        except Exception as error:  # noqa: BLE001
            return None, failure_html("No preview", error)

    tab.plot_button.click(on_plot, inputs, [tab.plot, tab.message])
    components = {**common, **tab.own}
    entries = [*common_form(), *tab.entries]
    for entry in entries:  # re-plot as a schedule box changes
        if entry.live:
            components[entry.key].change(
                on_live_plot, [mode_state, *inputs], [tab.plot, tab.message], trigger_mode="always_last",
                show_progress="hidden",
            )  # fmt: skip
    if tab.preview_button is not None:
        tab.preview_button.click(on_preview, inputs, [tab.gif, tab.message])
    _wire_keyframes(gr, tab, [e for e in entries if e.widget.kind == "schedule"], components, mode_state)


def _wire_keyframes(
    gr: Any, tab: ModeTab, entries: Sequence[FormEntry], components: Mapping[str, Any], mode_state: Any
) -> None:
    """The keyframe table edits the schedule picked above it: picking one (or typing in its box) fills the
    table (:func:`~flipbook.server.widgets.schedule_rows`), editing the table or the interpolation writes the
    box (:func:`~flipbook.server.widgets.rows_schedule`)."""
    from flipbook.server.widgets import rows_schedule, schedule_rows

    field, table, interpolation, message = tab.keyframes
    labels = {entry.key: entry for entry in entries}  # by form key, as the dropdown's values
    boxes = [components[entry.key] for entry in entries]

    def load(label: str, *texts: Any) -> tuple[Any, Any, str]:
        if label not in labels:
            return gr.skip(), gr.skip(), ""
        text = texts[list(labels).index(label)]
        try:
            rows, method = schedule_rows(text if text not in (None, "") else labels[label].widget.default)
        except FlipbookError as error:
            return gr.skip(), gr.skip(), failure_html("Not a keyframe schedule", error)
        return rows, method, ""

    def write(label: str, rows: Any, method: str) -> list[Any]:
        if label not in labels:
            return [gr.skip()] * len(boxes)
        value = rows_schedule(rows, method or "linear")
        return [value if name == label else gr.skip() for name in labels]

    def reload(chosen: str, label: str, *texts: Any) -> tuple[Any, Any, str]:  # a box typed in: this tab's?
        return load(label, *texts) if chosen == tab.mode else (gr.skip(), gr.skip(), gr.skip())

    field.change(load, [field, *boxes], [table, interpolation, message])
    for box in boxes:
        box.input(
            reload, [mode_state, field, *boxes], [table, interpolation, message], show_progress="hidden"
        )
    table.input(write, [field, table, interpolation], boxes, show_progress="hidden")
    interpolation.input(write, [field, table, interpolation], boxes, show_progress="hidden")


def _result_panel(
    gr: Any,
    state: ServerState,
    job: Any,
    mode_state: Any,
    common: dict[str, Any],
    forms: Mapping[str, ModeTab],
) -> None:
    """Generate (queues the chosen mode's form) and, right beside it, the job's progress with ETA, its live
    preview while it runs and the finished animation with download links, polled every :data:`POLL_S`."""
    generate = gr.Button("Generate", variant="primary", elem_id="generate")
    message = gr.HTML(elem_id="generate-message")
    progress = gr.HTML(elem_id="generate-progress")
    result = gr.HTML(elem_id="generate-result")
    preview = gr.Image(label="Live preview", type="pil", height=384, elem_id="generate-preview", interactive=False,
                       visible=False)  # fmt: skip
    shown = gr.State(None)
    timer = gr.Timer(POLL_S, active=False)
    modes = list(forms)
    own_counts = [len(forms[mode].own) for mode in modes]
    inputs = [mode_state, *common.values(), *(c for mode in modes for c in forms[mode].own.values())]

    def on_generate(mode: str, *values: Any) -> tuple[Any, ...]:
        start = len(common) + sum(own_counts[: modes.index(mode)])
        tab = forms[mode]
        mine = (*values[: len(common)], *values[start : start + len(tab.own)])
        try:
            job_id = submit(state, tab.gather(common)(*mine), tab.uploads(mine, common))
        except Exception as error:  # noqa: BLE001 (shown beside the button)
            return (
                gr.skip(),
                failure_html("Not queued", error, state),
                gr.skip(),
                gr.skip(),
                gr.skip(),
                gr.skip(),
            )
        note = message_html(f"Queued {mode} job `{job_id}`.")
        return job_id, note, "", gr.Image(None, visible=False), "", gr.Timer(active=True)

    def on_tick(job_id: str | None, last: Any) -> tuple[Any, ...]:
        if not job_id:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)
        view = result_view(state, job_id)
        if view.key == last:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        preview = gr.Image(view.preview, visible=view.preview is not None)
        return view.key, view.progress_html, preview, view.result_html, gr.Timer(active=view.waiting)

    generate.click(on_generate, inputs, [job, message, progress, preview, result, timer])
    timer.tick(on_tick, [job, shown], [shown, progress, preview, result, timer], show_progress="hidden")


def _component(gr: Any, state: ServerState, widget: Widget, elem_id: str, initial: Any = None) -> Any:
    """The Gradio component for a widget (see :mod:`flipbook.server.widgets`), showing the field's default (or
    ``initial``) and its description as info text."""
    label = f"{widget.label} ({widget.unit})" if widget.unit else widget.label
    common = {"label": label, "elem_id": elem_id}
    info = {"info": widget.info} if widget.info else {}
    value = shown_value(widget, widget.default if initial is None else initial)
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
    with gr.Row(elem_id="spec-row"):
        with gr.Column(scale=3, min_width=320):
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
        with gr.Column(scale=2, min_width=300):
            imported = gr.File(
                label="Import: Deforum settings (.txt/.json), spec (.toml/.json), flipbook output "
                "(GIF, MP4, WebP, ...) or A1111 PNG",
                type="filepath",
                elem_id="import-file",
            )
            import_message = gr.HTML(elem_id="import-message")  # right under the import box
            with gr.Accordion("Input files (optional uploads)", open=True):
                uploads = {
                    name: gr.File(label=name, type="filepath", elem_id=f"upload-{name.replace('.', '-')}")
                    for name in upload_fields()
                }
    with gr.Row():
        submit_button = gr.Button("Queue this spec", variant="primary", elem_id="submit-spec")
        check_button = gr.Button("Check and plot schedules", elem_id="plot-spec")
    message = gr.HTML(elem_id="message-spec")
    plot = gr.Plot(label="Schedules")

    def files(paths: Sequence[Any]) -> dict[str, str]:
        return {name: str(path) for name, path in zip(uploads, paths, strict=True) if path}

    def on_submit(text: str, *paths: Any) -> str:
        try:
            job_id = submit(state, toml_to_data(text), files(paths))
        except Exception as error:  # noqa: BLE001
            return failure_html("Not queued", error, state)
        return message_html(f"Queued job `{job_id}` (see the Queue tab).")

    def on_check(text: str, *paths: Any) -> tuple[Any, str]:
        try:
            spec = check_spec_files(state, toml_to_data(text), files(paths))
            return chart(json.loads(spec.model_dump_json()))
        except Exception as error:  # noqa: BLE001
            return None, failure_html("Not valid", error, state)

    def on_import(path: Any, text: str) -> tuple[str, str]:
        if not path:
            return text, ""
        try:
            imported_text, note = import_file(path)
        except Exception as error:  # noqa: BLE001
            return text, message_html(f"Not imported: {import_error(error, path)}", error=True)
        return imported_text, message_html(note)

    extra = list(uploads.values())
    submit_button.click(on_submit, [box, *extra], message, api_name="submit_spec")
    check_button.click(on_check, [box, *extra], [plot, message], api_name="check_spec")
    imported.upload(on_import, [imported, box], [box, import_message], api_name="on_import")
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
    preview = gr.Image(label="Running job: latest preview", type="pil", height=256, elem_id="live-preview")

    def refresh(current: str | None) -> tuple[str, Any, Any]:
        ids = active_job_ids(state)
        value = current if current in ids else (ids[0] if ids else None)
        return queue_html(state), gr.Dropdown(choices=ids, value=value), live_preview(state)

    timer.tick(refresh, picked, [jobs, picked, preview], show_progress="hidden")
    cancel_button.click(lambda job: cancel(state, job), picked, note)


def _gallery_tab(gr: Any, state: ServerState, tab: Any, spec_box: Any, tabs: Any) -> None:
    gr.Markdown("Renders, newest first. Pick one, then edit and re-run it (with the seed it used), resume it "
                "(a stopped run) or delete it.")  # fmt: skip
    with gr.Row():
        query = gr.Textbox(label="Filter (prompt, mode, model, date, id)", elem_id="gallery-filter", scale=3)
        refresh_button = gr.Button("Refresh", elem_id="gallery-refresh", scale=1)
    gallery = gr.Gallery(columns=4, label="Runs", elem_id="gallery", allow_preview=False, object_fit="contain",
                         height="auto")  # fmt: skip
    picked = gr.State(None)
    with gr.Row():
        rerun = gr.Button("Edit and re-run", elem_id="gallery-rerun", variant="primary")
        resume_button = gr.Button("Resume", elem_id="gallery-resume")
        delete_button = gr.Button("Delete", elem_id="gallery-delete", variant="stop")
    note = gr.HTML(elem_id="gallery-note")

    def on_select(text: str, event):  # noqa: ANN001 (annotated below: gradio injects SelectData by annotation)
        entries = gallery_entries(state, text or "")
        if event.index is None or event.index >= len(entries):
            return None, message_html("That run is gone; refresh the gallery.", error=True)
        entry = entries[event.index]
        return entry.job_id, message_html(f"Picked `{entry.job_id}`: {entry.caption}")

    on_select.__annotations__ = {"event": gr.SelectData}

    def on_rerun(job_id: str | None) -> tuple[Any, Any, str]:
        if not job_id:
            return gr.skip(), gr.skip(), message_html("Pick a run first.")
        try:
            return job_toml(state, job_id), gr.Tabs(selected="spec"), ""
        except FlipbookError as error:
            return gr.skip(), gr.skip(), failure_html("Not found", error, state)

    def act(action: Any) -> Any:
        def handle(job_id: str | None, text: str) -> tuple[Any, str]:
            return gallery_pictures(state, text or ""), message_html(action(state, job_id))

        return handle

    listing = (lambda text: gallery_pictures(state, text or ""), query, gallery)
    refresh_button.click(*listing)
    query.change(*listing, show_progress="hidden")
    tab.select(*listing)
    gr.context.Context.root_block.load(*listing)
    gallery.select(on_select, query, [picked, note])
    rerun.click(on_rerun, picked, [spec_box, tabs, note])
    resume_button.click(act(resume), [picked, query], [gallery, note])
    delete_button.click(act(delete), [picked, query], [gallery, note])


def mount_ui(app: FastAPI, state: ServerState, path: str = UI_PATH) -> None:
    """Mount the UI at ``path`` and redirect ``/`` to it. Gradio's own requests come from the page it
    serves, so they are same-origin for :class:`~flipbook.server.security.SecurityMiddleware`.

    Mounted (not launched), Gradio does not check the file paths a client names, so
    :class:`~flipbook.server.security.UIFileGuard` does: a client may name only files Gradio stored for this
    server (uploads, files its components cached) or files inside a job's run folder; ``file=`` serves nothing
    else (not the job database beside the run folders)."""
    import importlib.util
    import logging

    from fastapi.responses import RedirectResponse, Response

    if importlib.util.find_spec("gradio") is None:
        logging.getLogger("flipbook.server").warning("gradio is not installed: no web UI at %s", path)
        return
    import gradio as gr

    from flipbook.server.security import UIFileGuard

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse(f"{path}/", status_code=307)

    @app.get("/favicon.ico", include_in_schema=False)
    @app.get(f"{path}/favicon.ico", include_in_schema=False)
    def _favicon() -> Response:
        return Response(FAVICON_SVG, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    demo = build_ui(state)

    def stored_by_gradio(named: str) -> bool:  # this server's uploads and the files its components cached
        return any(named in files for files in demo.temp_file_sets)

    app.add_middleware(UIFileGuard, prefix=path, runs_dir=state.settings.runs_dir, is_known=stored_by_gradio)
    gr.mount_gradio_app(
        app,
        demo,
        path=path,
        css=UI_CSS,
        head='<link rel="icon" type="image/svg+xml" href="favicon.ico">',
        allowed_paths=[str(state.settings.runs_dir.resolve())],
        ssr_mode=False,
        show_error=True,
        theme=gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]),
        max_file_size=state.settings.max_upload_bytes,
    )

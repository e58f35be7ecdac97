"""The web UI (``/ui``, Gradio): the spec-building functions behind its tabs, the mount, and one end-to-end run
in Debian's Chromium through Playwright (skipped without /usr/bin/chromium).

Renders use the built-in tiny model at 64x64 with 2 steps and 3 frames.
"""

import dataclasses
import html
import json
import shutil
import socket
import threading
import time
import typing
from pathlib import Path

import hypothesis
import hypothesis.strategies as st
import PIL.Image
import pytest
from fastapi.testclient import TestClient

from flipbook.errors import FlipbookError
from flipbook.modes import MODES, REGISTERED
from flipbook.server import ServerSettings, create_app, ui
from flipbook.server.widgets import field_default, field_schema, form_value, shown_value, widget_for
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = "http://127.0.0.1:7860"
CHROMIUM = "/usr/bin/chromium"
COMMON = {
    "prompts": [["0", "a lighthouse at dusk"], ["2", "a lighthouse at night"], ["", ""]],
    "negative": "blurry",
    "model": "tiny",
    "sampler": "Euler",
    "steps": 2,
    "cfg": "7",
    "seed": 5,
    "width": 64,
    "height": 64,
    "frames": 3,
    "fps": 8,
    "strength": "0.5",
    "formats": ["gif"],
}
DEFORUM = """{
  // Deforum settings: comments and a trailing comma are fine
  "W": 64, "H": 64, "max_frames": 4, "steps": 2, "seed": 5, "sampler": "euler",
  "animation_mode": "2D", "zoom": "0:(1.04)", "prompts": {"0": "a forest", "2": "a city"},
}"""


def serve(tmp_path, workers: int = 0) -> TestClient:
    return TestClient(create_app(ServerSettings(runs_dir=tmp_path / "runs", workers=workers)), base_url=BASE)


# ---- spec building ---------------------------------------------------------------------------------------


def test_prompt_table_becomes_prompts():
    rows = [["0", " a cat "], [12.0, "a dog"], ["max_f-1", "a bird"], ["", ""], [None, None]]
    assert ui.prompts_from_table(rows) == {"0": "a cat", "12": "a dog", "max_f-1": "a bird"}
    with pytest.raises(FlipbookError) as error:
        ui.prompts_from_table([["0", ""]])
    assert error.value.field == "prompts"


@pytest.mark.parametrize(
    ("mode", "fields", "check"),
    [
        ("travel", {}, lambda s: s.animation.strength == 0.5),
        ("2d", {"zoom": "0:(1.02), 2:(1.1)", "angle": "0", "translation_x": "0:(2)", "translation_y": ""},
         lambda s: s.camera.zoom == "0:(1.02), 2:(1.1)" and s.camera.angle == 0),
        ("3d", {"translation_z": "0:(5)", "rotation_3d_y": "0:(1)", "depth_model": "flat"},
         lambda s: s.camera.translation_z == "0:(5)" and s.camera.depth_model == "flat"),
        ("interpolate", {"easing": "sine", "noise": "fixed", "batch_size": 2},
         lambda s: (s.interpolate.easing, s.interpolate.noise, s.interpolate.batch_size) == ("sine", "fixed", 2)),
        ("variations", {"denoise": 0.25, "order": "path", "image": "init.png", "mask": "mask.png"},  # both needed
         lambda s: (s.variations.denoise, s.variations.order) == (0.25, "path")),
    ],
)  # fmt: skip
def test_mode_fields_make_a_valid_spec(mode, fields, check):
    data = ui.mode_data(mode, COMMON, fields)
    spec, plan = ui.validate(data)
    assert spec.animation.mode == mode and len(plan) == 3
    assert spec.prompts == {"0": "a lighthouse at dusk", "2": "a lighthouse at night"}
    assert spec.negative_prompt == "blurry" and spec.output.formats == ["gif"]
    assert check(spec)
    assert spec_from_data(json.loads(json.dumps(data))) == spec_from_data(data)


def test_video_mode_takes_the_upload(tmp_path):
    video = tmp_path / "clip.gif"
    frames = [PIL.Image.new("RGB", (64, 64), (i * 60, 0, 0)) for i in range(3)]
    frames[0].save(video, save_all=True, append_images=frames[1:])
    data = ui.mode_data("video", COMMON, {"video": str(video), "every_nth": 2})
    spec, _ = ui.validate(data)
    assert spec.init.video == video and spec.video.every_nth == 2


def test_bad_schedule_error_names_the_field_once_and_keeps_the_caret_column():
    figure, message = ui.chart(ui.mode_data("2d", COMMON, {"zoom": "0:(1.02), 2:(1.0+sin(t)"}))
    assert figure is None
    assert message.startswith("<pre class='flipbook-error'>Not valid: camera.zoom: ")
    assert message.count("camera.zoom") == 1  # read once, not "camera.zoom: camera.zoom: ..."
    text = html.unescape(message.removeprefix("<pre class='flipbook-error'>").removesuffix("</pre>"))
    schedule_line, caret_line = text.splitlines()[-2:]
    assert schedule_line.strip() == "0:(1.02), 2:(1.0+sin(t)"
    assert schedule_line[caret_line.index("^")] == "("  # the caret stays under the unclosed parenthesis
    figure, message = ui.chart(ui.mode_data("2d", COMMON, {"zoom": "0:(1.02), 2:(1.1)"}))
    assert figure is not None and "Valid." in message


def test_error_text_names_the_field_once():
    error = FlipbookError("camera.zoom", "0:(x", "a schedule")
    assert ui.error_text(error) == str(error) and ui.error_text(error).count("camera.zoom") == 1
    custom = FlipbookError("sampling.steps", 0, "1-1000", message="steps must be positive")
    assert ui.error_text(custom) == "sampling.steps: steps must be positive"
    assert ui.message_html("<b>", error=True) == "<pre class='flipbook-error'>&lt;b&gt;</pre>"
    assert (
        ui.message_html("Queued job `ab12`.") == "<p class='flipbook-note'>Queued job <code>ab12</code>.</p>"
    )


def test_motion_preview_gif(tmp_path):
    gif = ui.motion_preview(ui.mode_data("2d", COMMON, {"zoom": "0:(1.1)", "angle": "0:(5)"}), tmp_path)
    with PIL.Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == 3
    with pytest.raises(FlipbookError):
        ui.motion_preview(ui.mode_data("travel", COMMON, {}), tmp_path)


def test_deforum_import_gives_toml_that_loads(tmp_path):
    path = tmp_path / "settings.txt"
    path.write_text(DEFORUM, encoding="utf-8")
    text, note = ui.import_file(path)
    spec = spec_from_data(ui.toml_to_data(text))
    assert spec.animation.mode == "2d" and spec.animation.max_frames == 4
    assert spec.camera.zoom == 1.04 or "1.04" in str(spec.camera.zoom)
    assert spec.prompts == {"0": "a forest", "2": "a city"}
    assert "Deforum" in note


def test_a1111_png_import(tmp_path):
    from flipbook.io.pnginfo import GenerationParameters, save_png

    params = GenerationParameters(
        prompt="a castle, (fog:1.2)", negative_prompt="lowres", steps=12, sampler="DPM++ 2M Karras",
        cfg_scale=6.5, seed=1234, width=64, height=96,
    )  # fmt: skip
    path = save_png(PIL.Image.new("RGB", (64, 96)), tmp_path / "a1111.png", params)
    text, note = ui.import_file(path)
    spec = spec_from_data(ui.toml_to_data(text))
    assert spec.prompts == {"0": "a castle, (fog:1.2)"} and spec.negative_prompt == "lowres"
    assert (spec.sampling.sampler, spec.sampling.steps, spec.sampling.cfg, spec.sampling.seed) == (
        "DPM++ 2M Karras", 12, 6.5, 1234,
    )  # fmt: skip
    assert (spec.animation.width, spec.animation.height) == (64, 96)
    assert "A1111" in note


def test_flipbook_spec_files_import(tmp_path):
    toml_path = tmp_path / "quick.toml"
    shutil.copy(Path(__file__).parent.parent / "examples" / "quickstart.toml", toml_path)
    text, _ = ui.import_file(toml_path)
    assert spec_from_data(ui.toml_to_data(text)).animation.max_frames == 12
    json_path = tmp_path / "spec.json"
    json_path.write_text(json.dumps(ui.mode_data("2d", COMMON, {"zoom": "0:(1.1)"})), encoding="utf-8")
    text, _ = ui.import_file(json_path)
    assert spec_from_data(ui.toml_to_data(text)).camera.zoom == "0:(1.1)"
    with pytest.raises(FlipbookError):
        ui.import_file(tmp_path / "notes.docx")


@pytest.mark.parametrize("fmt", ["gif", "mp4", "webp"])
def test_flipbook_outputs_import_as_short_toml(tmp_path, fmt):
    """A flipbook output carries its whole spec (every field, None ones too, and the paths of the machine that
    rendered it); imported, it is the short TOML of what differs from the defaults, with no server path and no
    input file (to upload again), and it loads back to the same settings."""
    import numpy as np

    from flipbook.io.writers import write_outputs

    image = tmp_path / "elsewhere" / "init.png"
    data = ui.mode_data("2d", COMMON, {"zoom": "0:(1.02), 2:(1.1)"})
    data["init"] = {"image": str(image)}
    data["output"]["dir"] = str(tmp_path / "renders")
    spec = spec_from_data(data)
    full = spec.model_dump(mode="json")
    assert None in full["animation"].values()  # what made the import fail: TOML has no null
    frames = [np.full((64, 64, 3), 40 * i, dtype=np.uint8) for i in range(3)]
    written = write_outputs(frames, tmp_path / "out", stem="run", fps=8, formats=[fmt], spec=full)
    text, note = ui.import_file(written[fmt])
    assert str(tmp_path) not in text and "renders" not in text
    assert "init.image" in note and "Imported the spec" in note
    back = spec_from_data(ui.toml_to_data(text))
    assert back.init.image is None and back.output.dir != spec.output.dir
    assert back.model_dump(exclude={"init", "output"}) == spec.model_dump(exclude={"init", "output"})
    assert back.output.formats == spec.output.formats


def test_import_errors_never_show_the_server_path(tmp_path):
    upload = tmp_path / "gradio" / "abc123" / "broken.gif"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"GIF89a not really")
    with pytest.raises(FlipbookError) as error:
        ui.import_file(upload)
    assert str(tmp_path) in str(error.value)  # the reader names the file it read ...
    shown = ui.import_error(error.value, upload)
    assert str(tmp_path) not in shown and "broken.gif" in shown  # ... the user sees its name only
    assert (
        ui.import_error(FlipbookError("import", "x.gif", "a.b"), "x.gif")
        == "import: 'x.gif' is not valid; a.b"
    )


def test_form_to_toml_leaves_out_server_fields():
    data = ui.mode_data("travel", COMMON, {})
    data["output"]["dir"] = "/somewhere"
    text = ui.data_to_toml(data)
    assert "/somewhere" not in text
    assert spec_from_data(ui.toml_to_data(text)).prompts == spec_from_data(data).prompts
    with pytest.raises(FlipbookError) as error:
        ui.toml_to_data("[animation\nmode = 1")
    assert error.value.field == "spec"


# ---- the generated forms --------------------------------------------------------------------------------


def _section_paths(mode) -> set[str]:
    """Every field of the mode's section its tab should show (those another mode alone reads left out)."""
    if mode.section is None:
        return set()
    paths = {f"{mode.section}.{name}" for name in mode.settings.model_fields}
    return {p for p in paths if field_schema(p).get("x-flipbook", {}).get("only_in", mode.name) == mode.name}


@pytest.mark.parametrize("mode", REGISTERED, ids=lambda m: m.name)
def test_every_mode_tab_is_generated_from_its_settings_schema(mode):
    """Every field of the mode's section and every input only some modes read is on its tab, with the widget
    and default its schema gives; the descriptor's hints only order and label the first ones."""
    entries = ui.mode_form(mode.name)
    paths = [entry.path for entry in entries]
    assert set(paths) == _section_paths(mode) | set(mode.inputs) | {hint.path for hint in mode.form}
    assert len(paths) == len(set(paths)) == len({entry.key for entry in entries})
    assert [entry.path for entry in entries[: len(mode.form)]] == [hint.path for hint in mode.form]
    for entry in entries:
        expected = widget_for(field_schema(entry.path), default=field_default(entry.path))
        assert (entry.widget.kind, entry.widget.choices, entry.widget.default) == (
            expected.kind, expected.choices, expected.default,
        ), entry.path  # fmt: skip
        assert (entry.widget.minimum, entry.widget.maximum) == (expected.minimum, expected.maximum)
        assert entry.live == (entry.widget.kind == "schedule" or any(
            hint.live for hint in mode.form if hint.path == entry.path
        ))  # fmt: skip


@pytest.mark.parametrize("mode", [m for m in REGISTERED if m.section is not None], ids=lambda m: m.name)
def test_a_mode_without_hints_still_gets_a_full_tab(mode):
    bare = dataclasses.replace(mode, form=())
    entries = ui.mode_form(bare)
    assert {entry.path for entry in entries} == _section_paths(mode) | set(mode.inputs)
    assert all(entry.shown for entry in entries)  # nothing hidden when there are no hints


def test_formats_and_defaults_come_from_the_schema():
    from flipbook.spec.model import OutputFormat, Spec

    entries = {entry.path: entry for entry in ui.common_form()}
    formats = entries["output.formats"].widget
    assert formats.kind == "multichoice" and formats.choices == typing.get_args(OutputFormat)
    defaults = json.loads(Spec.model_validate({"prompts": {"0": "x"}}).model_dump_json())
    for path, entry in entries.items():
        section, name = path.split(".") if "." in path else (None, path)
        expected = defaults[name] if section is None else defaults[section][name]
        assert entry.widget.default == expected, path
    sampler = entries["sampling.sampler"].widget
    assert sampler.kind == "choice" and sampler.custom and "DPM++ 2M Karras" in sampler.choices
    assert set(ui.shared_paths()) <= set(entries)
    assert not {"output.dir", "output.name", "model.models_dir", "animation.mode"} & set(entries)


@pytest.mark.parametrize("mode", list(MODES))
def test_every_widget_gives_back_its_default(mode):
    """What a box shows first converts back to the field's default (or to "unset"), so an untouched form is
    the spec's defaults, and the fields under "More ..." are left out of the spec data."""
    for entry in (*ui.common_form(), *ui.mode_form(mode)):
        shown = shown_value(entry.widget, entry.widget.default)
        value = form_value(entry.widget, shown, entry.path)
        assert value == entry.widget.default or (value is None and entry.widget.default in (None, "")), entry
    untouched = {e.key: shown_value(e.widget, e.widget.default) for e in ui.mode_form(mode) if not e.shown}
    data = ui.mode_data(mode, COMMON, untouched)
    assert ui.mode_data(mode, COMMON, {}) == data


def test_lists_of_models_are_tables_and_numbers_lists():
    entries = {entry.path: entry for entry in ui.mode_form("animatediff")}
    loras = entries["animatediff.motion_loras"].widget
    assert loras.kind == "table" and [name for name, _ in loras.columns] == ["name", "weight"]
    assert (
        dict(loras.columns)["name"].kind == "model" and "motion_lora" in dict(loras.columns)["name"].folders
    )
    fields = {"animatediff.motion_loras": [["v2_lora_ZoomIn", "0.8"], ["", ""], ["v2_lora_PanLeft", ""]],
              "animatediff.adapter_lora": [["v3_sd15_adapter", "0.5"]], "animatediff.context_overlap": "2"}  # fmt: skip
    spec, _ = ui.validate(ui.mode_data("animatediff", COMMON, fields))
    assert [(lora.name, lora.weight) for lora in spec.animatediff.motion_loras] == [
        ("v2_lora_ZoomIn", 0.8), ("v2_lora_PanLeft", 1.0),
    ]  # fmt: skip
    assert (spec.animatediff.adapter_lora.name, spec.animatediff.adapter_lora.weight) == (
        "v3_sd15_adapter",
        0.5,
    )
    assert spec.animatediff.context_overlap == 2
    data = ui.mode_data(
        "interpolate", COMMON, {"interpolate.sine_frequencies": "1, 3", "easing": '["linear", "sine"]'}
    )
    assert data["interpolate"] == {"sine_frequencies": [1, 3], "easing": ["linear", "sine"]}
    with pytest.raises(FlipbookError) as error:  # a typo is the spec's error, naming the field
        ui.validate(ui.mode_data("interpolate", COMMON, {"batch_size": "four"}))
    assert error.value.field == "interpolate.batch_size"


def test_hostile_spec_text_and_imports_are_one_error(tmp_path):
    """The Spec tab's text and imported files go through the same safe parsers as every other entry point:
    deep nesting, a 5000-digit integer and a lone surrogate are one FlipbookError, not RecursionError or
    Python's integer-size ValueError shown to the user."""
    hostile = {
        "nesting": "x = " + "[" * 50_000 + "]" * 50_000,
        "inline tables": "x = " + "{a=" * 5_000 + "1" + "}" * 5_000,
        "digits": "x = " + "9" * 5_000,
        "surrogate": 'x = "\ud800"',  # the character itself, as a browser's JSON can send it
    }
    for name, text in hostile.items():
        with pytest.raises(FlipbookError) as error:
            ui.toml_to_data(text)
        assert error.value.field in ("spec", "x"), (name, error.value)
        if name == "surrogate":  # no file can hold one
            continue
        path = tmp_path / f"{name.replace(' ', '_')}.toml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(FlipbookError):
            ui.import_file(path)
    deep_json = tmp_path / "deep.json"
    deep_json.write_text('{"animation": {}, "prompts": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(FlipbookError):
        ui.import_file(deep_json)


# ---- the mount and the queue in-process --------------------------------------------------------------------


def test_ui_is_mounted_and_root_redirects(tmp_path):
    with serve(tmp_path) as client:
        root = client.get("/", follow_redirects=False)
        assert root.status_code == 307 and root.headers["location"] == "/ui/"
        page = client.get("/ui/")
        assert page.status_code == 200 and "<gradio-app" in page.text
        config = client.get("/ui/config").json()
        ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
        assert {
            "generate",
            "generate-preview",
            "generate-result",
            "spec-toml",
            "queue-html",
            "gallery",
            "prompts-table",
        } <= ids
        for mode in MODES:  # every mode's tab, with a component for each of its fields
            assert {f"tab-{mode}", f"plot-{mode}", f"kf-table-{mode}"} <= ids
            assert {f"{mode}-{entry.key.replace('.', '-')}" for entry in ui.mode_form(mode)} <= ids, mode
        assert {entry.key.replace(".", "-") for entry in ui.common_form()} <= ids
        assert client.get("/api/health").json()["ok"]
        # same-origin POSTs from the page pass the Origin check; another origin is still refused
        other = client.post("/api/jobs/0123456789abcdef/cancel", headers={"Origin": "http://evil.example"})
        assert other.status_code == 403


def test_submit_queue_cancel_and_reopen(tmp_path):
    with serve(tmp_path) as client:  # no workers: jobs stay queued
        state = client.app.state.flipbook
        job_id = ui.submit(state, ui.mode_data("2d", COMMON, {"zoom": "0:(1.05)"}))
        job = client.get(f"/api/jobs/{job_id}").json()
        assert job["state"] == "queued" and job["spec"]["camera"]["zoom"] == "0:(1.05)"
        assert job["spec"]["output"]["dir"] == "the runs folder"  # the server's folders are not shown
        assert job_id in ui.queue_html(state) and ui.active_job_ids(state) == [job_id]
        toml_text = ui.job_toml(state, job_id)
        assert (
            "runs" not in toml_text and spec_from_data(ui.toml_to_data(toml_text)).camera.zoom == "0:(1.05)"
        )
        assert "Cancelled" in ui.cancel(state, job_id)
        assert client.get(f"/api/jobs/{job_id}").json()["state"] == "cancelled"
        assert "nothing to cancel" in ui.cancel(state, job_id)
        with pytest.raises(FlipbookError) as error:
            ui.submit(state, ui.mode_data("2d", COMMON, {"zoom": "0:(1.02"}))
        assert error.value.field == "camera.zoom"
        assert client.get("/api/jobs").json()["total"] == 1
        assert "--models-dir" in ui.settings_markdown(state)


def test_variations_uploads_go_through_the_job(tmp_path, init_image):
    image, mask = tmp_path / "init.png", tmp_path / "mask.png"
    init_image.save(image)
    PIL.Image.new("L", (64, 64), 255).save(mask)
    with serve(tmp_path) as client:
        state = client.app.state.flipbook
        data = ui.mode_data("variations", COMMON, {"image": str(image), "mask": str(mask)})
        job_id = ui.submit(state, data, {"init.image": str(image), "init.mask": str(mask)})
        spec = client.get(f"/api/jobs/{job_id}").json()["spec"]
        assert Path(spec["init"]["image"]).parent == Path(job_id) / "inputs"  # relative to the runs folder
        # a path typed into a spec (not an upload) is never read by the server
        with pytest.raises(FlipbookError) as error:
            ui.submit(
                state, ui.mode_data("variations", COMMON, {"image": str(image), "mask": str(mask)}) | {}
            )
        assert error.value.field in ("init.image", "init.mask") or "upload" in str(error.value)


# ---- end to end in a browser -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def live_server(tmp_path):
    import uvicorn

    port = _free_port()
    runs = tmp_path / "runs"
    # a worker thread, not a process: the browser test holds the render after its first frame through the
    # in-process Tracker (a worker process would go on rendering while the page looks at the preview)
    app = create_app(ServerSettings(runs_dir=runs, port=port, workers=1, worker_processes=False))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", runs
    server.should_exit = True
    thread.join(30)


SHOTS = Path("/tmp/flipbook-ui-shots")
"""Where the browser test leaves its screenshots, to be looked at (never committed)."""


def _fill(page, selector: str, value: str) -> None:
    box = page.locator(f"{selector} input, {selector} textarea").first
    box.fill(value)
    box.press("Tab")


def _pick(page, selector: str, option: str) -> None:
    page.locator(f"{selector} input").first.click()
    page.get_by_role("option", name=option, exact=True).click()


def _edit_cell(page, table: str, cell: str, text: str) -> None:
    """Type into a table cell once its editor is open (keys sent before are lost on a busy machine)."""
    page.locator(f"{table} [data-testid='{cell}']").dblclick()
    page.locator(f"{table} [data-testid='{cell}'] textarea[aria-label='Edit cell']:focus").wait_for()
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (Debian's chromium package)"
)
def test_browser_create_generate_gallery_and_import(live_server, tmp_path, monkeypatch):
    """One browser session through what a user sees: the defaults of the tiny model, a schedule error in
    monospace with its caret, the keyframe table writing the zoom box, Generate with the result beside the
    button, the gallery's edit-and-re-run with the seed, the import of the GIF and of a broken file, the dark
    theme and a phone width. Screenshots go to :data:`SHOTS`."""
    from playwright.sync_api import sync_playwright

    from flipbook.server.progress import Tracker

    url, runs = live_server
    SHOTS.mkdir(exist_ok=True)
    seen = threading.Event()  # the job waits after its first frame until the page has shown the preview
    first_frame = Tracker.on_frame

    def on_frame(tracker, event):
        first_frame(tracker, event)
        if event.index == 0:
            seen.wait(120)

    monkeypatch.setattr(Tracker, "on_frame", on_frame)
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"]  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(120_000)  # a busy machine: the server answers each event in turn
            page.goto(f"{url}/")  # redirects to /ui/
            page.wait_for_selector("#generate")
            assert page.title() == "flipbook"
            icon = page.evaluate(
                "() => fetch(document.querySelector('link[rel=icon]').href).then(r => r.headers.get('content-type'))"
            )
            assert icon == "image/svg+xml"
            # defaults that fit the default model (tiny): 64x64, few steps
            assert page.locator("#width input[type=number]").input_value() == "64"
            assert page.locator("#steps input, #steps textarea").first.input_value() == str(
                ui.TEST_MODEL_STEPS
            )
            # another checkpoint brings its family's defaults; a depth model not here is flagged
            _pick(page, "#model", "random-sd15")
            page.wait_for_function(
                "() => document.querySelector('#width input[type=number]').value === '512'"
            )
            assert page.locator("#frames input").input_value() == "24"
            _pick(page, "#model", "tiny")
            page.wait_for_function("() => document.querySelector('#width input[type=number]').value === '64'")
            page.get_by_role("tab", name="3d").click()
            note = page.locator("[id='3d-depth_model-note']")
            assert "not available offline" in note.inner_text()
            page.screenshot(path=str(SHOTS / "3d.png"))
            _pick(page, "[id='3d-depth_model']", "flat")
            page.wait_for_function(
                "() => !document.querySelector(\"[id='3d-depth_model-note']\").innerText.trim()"
            )
            for field, value in (("steps", "4"), ("frames", "3"), ("seed", "5")):
                _fill(page, f"#{field}", value)
            for name in ("png", "mp4"):
                page.locator(f"#formats input[name='{name}']").uncheck()
            _edit_cell(page, "#prompts-table", "cell-0-1", "a red fox in the snow")
            # the mode's own controls come before the common settings
            page.get_by_role("tab", name="2d").click()
            zoom = page.locator("[id='2d-zoom'] input, [id='2d-zoom'] textarea").first
            assert zoom.bounding_box()["y"] < page.locator("#common-settings").bounding_box()["y"]
            zoom.fill("0:(1.02), 2:(1.0+sin(t)")
            error = page.locator("[id='message-2d'] pre.flipbook-error")
            error.wait_for()
            text = error.inner_text()
            assert text.count("camera.zoom") == 1
            assert "monospace" in error.evaluate("e => getComputedStyle(e).fontFamily")
            schedule_line, caret_line = text.splitlines()[-2:]
            assert schedule_line[caret_line.index("^")] == "("
            page.screenshot(path=str(SHOTS / "error.png"))
            # the keyframe table edits the zoom box
            zoom.fill("0:(1.02), 2:(1.05)")
            page.wait_for_selector("[id='message-2d']:has-text('Valid.')")
            page.locator("[id='keyframes-2d']").get_by_text("Keyframe table").click()
            _pick(page, "[id='kf-field-2d']", "Zoom")
            page.wait_for_selector("[id='kf-table-2d'] [data-testid='cell-1-1']:has-text('1.05')")
            _edit_cell(page, "[id='kf-table-2d']", "cell-1-1", "1.1")
            page.wait_for_function(
                "() => document.querySelector(\"[id='2d-zoom'] input, [id='2d-zoom'] textarea\").value === '0:(1.02), 2:(1.1)'"
            )
            page.wait_for_selector(
                "[id='plot-out-2d'] img, [id='plot-out-2d'] canvas, [id='plot-out-2d'] svg"
            )
            page.screenshot(path=str(SHOTS / "keyframes.png"), full_page=True)
            # Generate: progress and then the result beside the button
            page.click("#generate")
            page.wait_for_selector("#generate-message:has-text('Queued')")
            job_id = page.locator("#generate-message code").inner_text().strip()
            page.wait_for_function(  # the live preview, at a usable size, while the job runs
                "() => { const i = document.querySelector('#generate-preview img');"
                " return i && i.complete && i.naturalWidth > 0 && i.clientWidth >= 256; }"
            )
            assert "running · frame 1/3" in page.locator(".flipbook-progress").inner_text()
            page.screenshot(path=str(SHOTS / "progress.png"))
            seen.set()
            page.wait_for_function(
                "() => { const i = document.querySelector('#generate-result img.flipbook-result-media');"
                " return i && i.complete && i.naturalWidth === 64; }",
                timeout=120_000,
            )
            result = page.locator("#generate-result img").bounding_box()
            button = page.locator("#generate").bounding_box()
            assert result["width"] >= 256 and result["y"] < 800  # at a usable size, in view
            assert abs(result["x"] - button["x"]) < 40  # under the button, not below the form
            assert page.locator("#generate-result a.flipbook-download").first.inner_text() == "gif"
            page.click("#seed-random")  # the dice: a random seed
            page.wait_for_function("() => document.querySelector('#seed input').value === '-1'")
            page.click("#seed-recycle")  # the recycle button: the seed the job used
            page.wait_for_function("() => document.querySelector('#seed input').value === '5'")
            assert not page.locator("#generate-preview").is_visible()  # the result replaces the preview
            page.screenshot(path=str(SHOTS / "done.png"))
            # the gallery: caption, edit and re-run with the seed used
            page.get_by_role("tab", name="Gallery").click()
            page.wait_for_selector("#gallery img")
            page.screenshot(path=str(SHOTS / "gallery.png"))
            thumb = page.locator("#gallery img").first
            assert "a red fox in the snow · 2d · tiny" in page.locator("#gallery").inner_text()
            box = thumb.bounding_box()
            assert box["width"] < 400  # a thumbnail, not one picture stretched across the page
            thumb.click()
            page.wait_for_selector(f"#gallery-note:has-text('{job_id}')")
            page.click("#gallery-rerun")
            page.wait_for_function(
                "() => document.querySelector('#spec-toml textarea')?.value.includes('seed = 5')"
            )
            # import: the GIF brings its spec back; a broken file's error is beside the box, no server path
            page.locator("#import-file input[type=file]").set_input_files(
                str(runs / job_id / f"{job_id}.gif")
            )
            page.wait_for_selector("#import-message:has-text('Imported the spec')")
            assert 'zoom = "0:(1.02), 2:(1.1)"' in page.locator("#spec-toml textarea").input_value()
            page.locator("#import-file button[aria-label='Clear']").first.click()
            broken = tmp_path / "broken.gif"
            broken.write_bytes(b"GIF89a not really")
            page.locator("#import-file input[type=file]").set_input_files(str(broken))
            page.wait_for_selector("#import-message pre.flipbook-error")
            message = page.locator("#import-message").inner_text()
            assert "broken.gif" in message and "/tmp" not in message
            page.screenshot(path=str(SHOTS / "import.png"))
            page.close()
            # the dark theme follows the browser; a phone width has no sideways scrolling
            dark = browser.new_page(viewport={"width": 1280, "height": 800}, color_scheme="dark")
            dark.goto(f"{url}/ui/")
            dark.wait_for_selector("#generate")
            background = dark.evaluate(
                "() => getComputedStyle(document.querySelector('.gradio-container')).backgroundColor"
            )
            channels = [
                int(c) for c in background[background.index("(") + 1 : background.index(")")].split(",")[:3]
            ]
            assert max(channels) < 80, background
            dark.screenshot(path=str(SHOTS / "dark.png"))
            dark.close()
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone.goto(f"{url}/ui/")
            phone.wait_for_selector("#generate")
            assert phone.evaluate("() => document.documentElement.scrollWidth") <= 390
            cut_off = phone.evaluate(
                "() => Array.from(document.querySelectorAll('input, textarea, label, #generate'))"
                ".filter(e => e.checkVisibility() && e.getBoundingClientRect().width > 0"
                " && e.getBoundingClientRect().right > window.innerWidth + 1)"
                ".map(e => (e.closest('[id]') || {}).id)"
            )
            assert cut_off == []  # every box and label fits across a phone
            phone.screenshot(path=str(SHOTS / "phone.png"), full_page=True)
        finally:
            browser.close()
    with PIL.Image.open(runs / job_id / f"{job_id}.gif") as image:
        assert image.n_frames == 3 and image.size == (64, 64)
    spec = json.loads((runs / job_id / "spec.json").read_text())
    assert spec["prompts"]["0"] == "a red fox in the snow" and spec["camera"]["zoom"] == "0:(1.02), 2:(1.1)"


# ---- the result panel, seeds, the gallery, model defaults, keyframes (plain functions) --------------------


def _finished(state, data, *, seed=None, final="done", frames=2, size=(64, 40)):
    """Queue ``data``, claim it as a worker would and finish it with a GIF and frames in its run folder."""
    job_id = ui.submit(state, data)
    claimed = state.store.claim()
    assert claimed is not None and claimed.id == job_id
    run = state.settings.runs_dir / job_id
    (run / "frames").mkdir(parents=True, exist_ok=True)
    pictures = [PIL.Image.new("RGB", size, (60 * i, 90, 30)) for i in range(frames)]
    for i, picture in enumerate(pictures):
        picture.save(run / "frames" / f"frame_{i:05d}.png")
    result = {"seed": seed} if seed is not None else {}
    if final == "done":
        pictures[0].save(run / f"{job_id}.gif", save_all=True, append_images=pictures[1:])
        result["outputs"] = {"gif": f"{job_id}.gif", "frames": "frames/"}
    assert state.store.finish(job_id, final, result=result)
    return job_id


def test_result_view_follows_the_job_to_its_outputs(tmp_path):
    with serve(tmp_path) as client:
        state = client.app.state.flipbook
        queued = ui.submit(state, ui.mode_data("travel", COMMON, {}))
        view = ui.result_view(state, queued)
        assert view.waiting and "data-state='queued'" in view.progress_html and view.result_html == ""
        assert ui.result_view(state, queued).key == view.key  # nothing changed: the poll sends nothing
        state.store.cancel_waiting(queued)
        done = _finished(state, ui.mode_data("travel", COMMON, {}), seed=77)
        view = ui.result_view(state, done)
        assert not view.waiting and view.preview is None
        assert f"src='/api/jobs/{done}/files/{done}.gif'" in view.result_html
        assert "download" in view.result_html and "value='1.000'" in view.progress_html
        assert client.get(f"/api/jobs/{done}/files/{done}.gif").status_code == 200  # the link works
        video = ui.outputs_html("ab", {"mp4": "/api/jobs/ab/files/ab.mp4"})
        assert "<video" in video and "controls" in video


def test_live_preview_is_enlarged_sharp_and_keeps_its_aspect():
    small = PIL.Image.new("RGB", (8, 5), (200, 10, 10))
    shown = ui.display_preview(small)
    assert shown.size == (ui.PREVIEW_PX, 240) and shown.getpixel((0, 0)) == (200, 10, 10)
    big = PIL.Image.new("RGB", (1024, 512))
    assert ui.display_preview(big) is big


def test_rerun_keeps_the_seed_used_and_recycle_offers_it(tmp_path):
    with serve(tmp_path) as client:
        state = client.app.state.flipbook
        data = ui.mode_data("2d", {**COMMON, "seed": -1}, {"zoom": "0:(1.05)"})
        job_id = _finished(state, data, seed=987654)
        spec = spec_from_data(ui.toml_to_data(ui.job_toml(state, job_id)))
        assert spec.sampling.seed == 987654 and spec.camera.zoom == "0:(1.05)"
        assert ui.last_seed(state, job_id) == 987654
        assert ui.last_seed(state, None) == 987654  # no job on this page yet: the newest job's


def test_gallery_captions_filter_resume_and_delete(tmp_path):
    with serve(tmp_path) as client:
        state = client.app.state.flipbook
        fox = _finished(state, ui.mode_data("2d", {**COMMON, "prompts": [["0", "a red fox"]]}, {}))
        owl = _finished(state, ui.mode_data("travel", {**COMMON, "prompts": [["0", "an owl"]]}, {}),
                        final="cancelled")  # fmt: skip
        entries = {entry.job_id: entry for entry in ui.gallery_entries(state)}
        assert set(entries) == {fox, owl}
        assert entries[fox].caption.startswith("a red fox · 2d · tiny · 20")
        assert entries[fox].picture.endswith(f"{fox}.gif") and entries[owl].picture.endswith(
            "frame_00000.png"
        )
        assert "cancelled" in entries[owl].caption
        with PIL.Image.open(entries[fox].picture) as picture:
            assert picture.size == (64, 40)  # shown as it is: the gallery fits it, never crops it
        assert [e.job_id for e in ui.gallery_entries(state, "FOX 2d")] == [fox]
        assert ui.gallery_entries(state, "lighthouse") == []
        assert ui.gallery_pictures(state, "fox") == [(entries[fox].picture, entries[fox].caption)]
        assert "did not stop" in ui.resume(state, fox)
        assert "Resuming" in ui.resume(state, owl) and state.store.get(owl).state == "queued"
        assert "Deleted" in ui.delete(state, fox)
        assert state.store.get(fox) is None and not (state.settings.runs_dir / fox).exists()
        assert client.get(f"/api/jobs/{fox}").status_code == 404


def test_model_defaults_follow_the_family():
    state = type("State", (), {"settings": ServerSettings(runs_dir=Path("/nonexistent"))})()
    tiny = ui.model_defaults(state, "tiny")
    assert tiny["animation.width"] == tiny["animation.height"] == 64
    assert tiny["sampling.steps"] == ui.TEST_MODEL_STEPS < 20
    sd15 = ui.model_defaults(state, "random-sd15")
    assert (sd15["animation.width"], sd15["animation.height"], sd15["sampling.steps"]) == (512, 512, 20)
    assert ui.model_defaults(state, "no-such-model") is None


def test_model_defaults_for_a_models_folder_checkpoint(tmp_path):
    """A diffusers folder in the models folder: its family from its configs, no weights read."""
    folder = tmp_path / "models" / "Stable-diffusion" / "my-sd2"
    (folder / "unet").mkdir(parents=True)
    index = {
        "_class_name": "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"],
    }
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": 1024}))
    settings = ServerSettings(runs_dir=tmp_path / "runs", models_dir=tmp_path)
    state = type("State", (), {"settings": settings})()
    defaults = ui.model_defaults(state, "my-sd2")
    assert defaults is not None and (defaults["animation.width"], defaults["animation.height"]) == (768, 768)


def test_a_model_that_is_not_here_is_flagged_when_chosen(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    state = type("State", (), {"settings": ServerSettings(runs_dir=tmp_path / "runs")})()
    depth = ui.form_entry("camera.depth_model").widget
    assert ui.model_note(state, depth, "flat") == "" and ui.model_note(state, depth, "") == ""
    note = ui.model_note(state, depth, "depth-anything/Depth-Anything-V2-Small-hf")
    assert "not available offline" in note and "hub cache" in note
    snapshot = tmp_path / "hub" / "models--depth-anything--Depth-Anything-V2-Small-hf" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    assert ui.model_note(state, depth, "depth-anything/Depth-Anything-V2-Small-hf") == ""
    checkpoint = ui.form_entry("model.name").widget
    assert ui.model_note(state, checkpoint, "tiny") == ""
    assert "not available offline" in ui.model_note(state, checkpoint, "dreamshaper_8")


@pytest.mark.parametrize(
    ("value", "rows", "interpolation"),
    [
        (1.5, [["0", "1.5"]], "linear"),
        ("0:(1.02), 10:(1.0+sin(t)), max_f-1: (2)", [["0", "1.02"], ["10", "1.0+sin(t)"], ["max_f-1", "2"]], "linear"),
        ('{"schedule": "0:(1), 30:(2)", "interpolation": "cubic"}', [["0", "1"], ["30", "2"]], "cubic"),
    ],
)  # fmt: skip
def test_schedule_box_and_keyframe_table_convert_both_ways(value, rows, interpolation):
    from flipbook.server.widgets import rows_schedule, schedule_rows

    assert schedule_rows(value) == (rows, interpolation)
    assert schedule_rows(rows_schedule(rows, interpolation)) == (rows, interpolation)
    assert rows_schedule([["", "3"], ["", ""], [None, None]]) == "0:(3)"  # frame left empty: 0
    with pytest.raises(FlipbookError):
        schedule_rows("0:(1.0")
    with pytest.raises(FlipbookError):
        schedule_rows([1.0, 2.0])


def test_a_table_schedule_from_the_box_is_the_spec_table():
    spec, _ = ui.validate(
        ui.mode_data("2d", COMMON, {"zoom": '{"schedule": "0:(1), 2:(1.1)", "interpolation": "cubic"}'})
    )
    assert spec.camera.zoom.interpolation == "cubic" and spec.camera.zoom.schedule == "0:(1), 2:(1.1)"


_KEYS = st.one_of(st.integers(0, 10_000).map(str), st.sampled_from(["max_f-1", "max_f/2", "t*0"]))
_VALUES = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False).map(repr),
    st.sampled_from(["1.0+sin(t)", "0.5*cos(2*3.14*t/24)", "-2", "(1+2)*3", '"Euler a"']),
)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(
    st.lists(st.tuples(_KEYS, _VALUES), min_size=1, max_size=12), st.sampled_from(["linear", "cubic", "step"])
)
def test_keyframe_table_round_trips_through_the_schedule_string(rows, interpolation):
    """Table -> schedule box -> table gives the same rows, and box -> table -> box the same text."""
    from flipbook.server.widgets import rows_schedule, schedule_rows

    table = [list(row) for row in rows]
    text = rows_schedule(table, interpolation)
    assert schedule_rows(text) == (table, interpolation)
    assert rows_schedule(*schedule_rows(text)) == text


def test_travel_tab_takes_an_init_image_upload(tmp_path, init_image):
    """travel's tab has its own controls too: the optional init image frame 0 starts from, uploaded."""
    assert [entry.path for entry in ui.mode_form("travel")][:2] == ["init.image", "init.strength"]
    image = tmp_path / "start.png"
    init_image.save(image)
    with serve(tmp_path) as client:
        state = client.app.state.flipbook
        data = ui.mode_data("travel", COMMON, {"image": str(image), "init_strength": 0.8})
        job_id = ui.submit(state, data, {"init.image": str(image)})
        spec = client.get(f"/api/jobs/{job_id}").json()["spec"]
        assert (
            Path(spec["init"]["image"]).parent == Path(job_id) / "inputs" and spec["init"]["strength"] == 0.8
        )


def test_sizes_are_sliders_in_steps_of_8_as_a1111_s():
    """width/height declare ``multipleOf: 8`` in the schema (their validator's rule), so their widget is a
    slider stepping by 8 over the schema's range, and what it gives back is a whole number."""
    entries = {entry.path: entry for entry in ui.common_form()}
    for path in ("animation.width", "animation.height"):
        widget = entries[path].widget
        assert (widget.kind, widget.step, widget.minimum, widget.maximum) == ("slider", 8, 8, 8192)
        assert form_value(widget, 640.0, path) == 640 and isinstance(form_value(widget, 640.0, path), int)
    assert entries["sampling.seed"].widget.kind != "slider"  # other whole numbers stay number boxes

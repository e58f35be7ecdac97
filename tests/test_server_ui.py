"""The web UI (``/ui``, Gradio): the spec-building functions behind its tabs, the mount, and one end-to-end run
in Debian's Chromium through Playwright (skipped without /usr/bin/chromium).

Renders use the built-in tiny model at 64x64 with 2 steps and 3 frames.
"""

import dataclasses
import json
import shutil
import socket
import threading
import time
import typing
from pathlib import Path

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


def test_bad_schedule_error_names_the_field():
    figure, message = ui.chart(ui.mode_data("2d", COMMON, {"zoom": "0:(1.02), 2:(1.0+sin(t)"}))
    assert figure is None
    assert "camera.zoom" in message and message.startswith("Not valid")
    figure, message = ui.chart(ui.mode_data("2d", COMMON, {"zoom": "0:(1.02), 2:(1.1)"}))
    assert figure is not None and message == "Valid."


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
        assert {"submit-travel", "submit-2d", "spec-toml", "queue-html", "gallery", "prompts-table"} <= ids
        for mode in MODES:  # every mode's tab, with a component for each of its fields
            assert {f"tab-{mode}", f"submit-{mode}"} <= ids
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
    app = create_app(ServerSettings(runs_dir=runs, port=port, workers=1))
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


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (Debian's chromium package)"
)
def test_browser_travel_job_end_to_end(live_server):
    from playwright.sync_api import sync_playwright

    url, runs = live_server
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"]  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"{url}/")  # redirects to /ui/
            page.wait_for_selector("#submit-travel")
            for field, value in (
                ("steps", "2"),
                ("width", "64"),
                ("height", "64"),
                ("frames", "3"),
                ("seed", "5"),
            ):
                box = page.locator(f"#{field} input")
                box.fill(value)
                box.press("Tab")
            for name in ("png", "mp4"):
                page.locator(f"#formats input[name='{name}']").uncheck()
            page.locator("#prompts-table [data-testid='cell-0-1']").dblclick()
            page.keyboard.press("Control+A")
            page.keyboard.type("a red fox in the snow")
            page.keyboard.press("Enter")
            page.click("#submit-travel")
            page.wait_for_selector("#message-travel:has-text('Queued job')")
            job_id = page.locator("#message-travel code").inner_text().strip()
            page.get_by_role("tab", name="Queue").click()
            page.wait_for_selector(
                f"#flipbook-queue tr[data-job='{job_id}'][data-state='done'] img.flipbook-gif", timeout=90_000
            )
            page.wait_for_function(
                "() => { const i = document.querySelector('#flipbook-queue img.flipbook-gif');"
                " return i && i.complete && i.naturalWidth > 0; }"
            )
            link = page.locator(f"#flipbook-queue tr[data-job='{job_id}'] a.flipbook-output").first
            assert link.inner_text() == "gif"
        finally:
            browser.close()
    gif = runs / job_id / f"{job_id}.gif"
    assert gif.is_file()
    with PIL.Image.open(gif) as image:
        assert image.n_frames == 3 and image.size == (64, 64)
    spec = (
        json.loads((runs / job_id / "spec.json").read_text())
        if (runs / job_id / "spec.json").is_file()
        else None
    )
    if spec is not None:
        assert spec["prompts"]["0"] == "a red fox in the snow"

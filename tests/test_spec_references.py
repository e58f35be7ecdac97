"""Fields that name files and models are typed in the schema (flipbook.spec.references); one walker finds them
in a spec, list items and schedules included; a spec file's input paths are relative to the spec file."""

import json
import os
import types
import typing
from pathlib import Path

import PIL.Image
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flipbook.errors import FlipbookError
from flipbook.spec.load import load_spec, resolve_input_files
from flipbook.spec.model import Spec
from flipbook.spec.references import (
    ANY_INDEX,
    InputFile,
    ModelReference,
    ServerOwned,
    field_name,
    marked_fields,
    parse_field,
    pop_in_data,
    references,
    set_in_data,
)

EXAMPLES = Path(__file__).parents[1] / "examples"
FAST = ["--set", "animation.width=64", "--set", "animation.height=64", "--set", "sampling.steps=2",
        "--set", "output.formats=['png']"]  # fmt: skip


# ---- the schema ---------------------------------------------------------------------------------------------


def _holds_path(annotation) -> bool:
    if annotation is Path:
        return True
    return any(_holds_path(a) for a in typing.get_args(annotation))


def _all_fields(model=Spec, location=()):
    """Every field of the spec classes, with its annotation (list items as [i])."""
    from pydantic import BaseModel

    for name, info in model.model_fields.items():
        here = (*location, name)
        yield here, model, name, info.annotation
        stack = [(info.annotation, False)]
        while stack:
            annotation, in_list = stack.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                yield from _all_fields(annotation, (*here, ANY_INDEX) if in_list else here)
                continue
            origin = typing.get_origin(annotation)
            stack += [(a, in_list or origin is list) for a in typing.get_args(annotation)
                      if origin in (list, typing.Union, types.UnionType)]  # fmt: skip


def test_every_path_field_says_what_it_holds():
    """A Path field without a marker would be invisible to the server's checks: every one has one."""
    marked = dict(marked_fields())
    unmarked = [field_name(loc) for loc, _, _, annotation in _all_fields() if _holds_path(annotation)
                and loc not in marked]  # fmt: skip
    assert unmarked == []


def test_the_fields_the_issue_names_are_typed():
    marked = {field_name(loc): marker for loc, marker in marked_fields()}
    for name in ("controlnet[i].model", "controlnet[i].preprocessor_model", "animatediff.motion_module",
                 "animatediff.motion_loras[i].name", "animatediff.adapter_lora.name", "svd.model", "model.name",
                 "model.vae", "model.loras[i].name", "post.upscale_model", "post.film_model", "post.rife_model",
                 "camera.depth_model", "prompts"):  # fmt: skip
        assert isinstance(marked[name], ModelReference), name
    for name in ("controlnet[i].image", "init.image", "init.mask", "init.video", "audio.file",
                 "camera.hybrid_video", "camera.color_coherence_image", "video.mask_video", "animatediff.end_image"):  # fmt: skip
        assert isinstance(marked[name], InputFile), name
    assert {n for n, m in marked.items() if isinstance(m, ServerOwned)} == {
        "output.dir",
        "output.name",
        "model.models_dir",
    }


def test_the_json_schema_shows_the_types(run_cli):
    code, out, _ = run_cli("schema")
    assert code == 0
    schema = json.loads(out)

    for location, marker in marked_fields():
        node = schema
        for part in location:
            node = _deref(schema, node)
            node = _deref(schema, node["items"]) if part == ANY_INDEX else node["properties"][part]
        assert node["x-flipbook"] == marker.schema_entry(), field_name(location)
    assert schema["$defs"]["InitSection"]["properties"]["image"]["x-flipbook"] == {"input_file": "image"}


def _deref(schema, node):
    """Follow $ref and the one non-null branch of anyOf, as an editor would."""
    while True:
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        elif "anyOf" in node and "x-flipbook" not in node:
            branches = [b for b in node["anyOf"] if b.get("type") != "null"]
            if len(branches) != 1:
                return node
            node = branches[0]
        else:
            return node


def test_built_in_names_match_the_loaders():
    from flipbook.models.controlnet import BUILTIN_CONTROLNETS
    from flipbook.models.families.animatediff.builtin import (
        BUILTIN_MOTION_MODULES,
        BUILTIN_SDXL_MOTION_MODULES,
    )
    from flipbook.models.families.sd.builtin import BUILTIN_MODELS
    from flipbook.models.families.sdxl.builtin import BUILTIN_MODELS as BUILTIN_SDXL_MODELS
    from flipbook.models.families.svd.loading import BUILTIN_SVD_MODELS

    marked = {field_name(loc): marker for loc, marker in marked_fields()}
    assert set(marked["model.name"].builtins) == set(BUILTIN_MODELS) | set(BUILTIN_SDXL_MODELS)
    assert set(marked["animatediff.motion_module"].builtins) == set(BUILTIN_MOTION_MODULES) | set(
        BUILTIN_SDXL_MOTION_MODULES
    )
    assert set(marked["svd.model"].builtins) == set(BUILTIN_SVD_MODELS)
    assert set(marked["controlnet[i].model"].builtins) == set(BUILTIN_CONTROLNETS)
    from flipbook.models.folders import KINDS

    assert {kind for m in marked.values() if isinstance(m, ModelReference) for kind in m.folders} <= set(
        KINDS
    )


# ---- the walker ---------------------------------------------------------------------------------------------


def test_the_walker_finds_list_items_schedules_and_prompt_tags():
    spec = Spec.model_validate(
        {
            "model": {"name": '0:("tiny"), 6:("anime/cel")', "loras": [{"name": "a"}, {"name": "b"}]},
            "prompts": {"0": "a cat <lora:c:0.5>", "4": "a dog <lyco:d>"},
            "negative_prompt": "blurry <lora:e>",
            "controlnet": [{"model": "tiny"}, {"model": "org/cn", "image": "pose.png"}],
            "animatediff": {
                "motion_loras": [{"name": "zoom"}, {"name": "pan"}],
                "adapter_lora": {"name": "v3"},
            },
            "init": {"image": "start.png"},
        }
    )
    found = {r.field: r for r in references(spec)}
    names = {f: r.marker.names(r.value) for f, r in found.items() if isinstance(r.marker, ModelReference)}
    assert names["model.name"] == ["tiny", "anime/cel"]
    assert names["model.loras[1].name"] == ["b"]
    assert names["prompts"] == ["c", "d"] and names["negative_prompt"] == ["e"]
    assert names["controlnet[1].model"] == ["org/cn"]
    assert names["animatediff.motion_loras[1].name"] == ["pan"]
    assert names["animatediff.adapter_lora.name"] == ["v3"]
    inputs = {f: r.value for f, r in found.items() if isinstance(r.marker, InputFile)}
    assert inputs == {"controlnet[1].image": Path("pose.png"), "init.image": Path("start.png")}
    assert "controlnet[0].image" not in found  # unset fields are not references


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), st.lists(st.integers(0, 99), max_size=2)
        ),
        min_size=1,
        max_size=4,
    )
)
def test_field_names_parse_back(parts):
    location = tuple(item for name, indices in parts for item in (name, *indices))
    assert parse_field(field_name(location)) == location


@given(st.text(max_size=30))
def test_field_name_parser_never_crashes(text):
    try:
        location = parse_field(text)
    except FlipbookError as error:
        assert error.field == "field"
    else:
        assert field_name(location) == text


# ---- relative paths in spec files ---------------------------------------------------------------------------


@pytest.fixture()
def spec_folder(tmp_path, init_image):
    """A spec in ``project/`` that names ``assets/start.png`` (relative to itself) and a run from elsewhere."""
    project = tmp_path / "project"
    (project / "assets").mkdir(parents=True)
    init_image.save(project / "assets" / "start.png")
    (project / "job.toml").write_text(
        'version = 1\n[model]\nname = "tiny"\ndevice = "cpu"\n[sampling]\nsteps = 2\nseed = 3\n'
        '[animation]\nmax_frames = 2\nwidth = 64\nheight = 64\n[init]\nimage = "assets/start.png"\n'
        '[output]\ndir = "out"\nformats = ["png"]\n[prompts]\n0 = "a cat"\n',
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return project, elsewhere


def test_input_files_are_relative_to_the_spec_file(spec_folder, monkeypatch, tmp_path):
    project, elsewhere = spec_folder
    monkeypatch.chdir(elsewhere)
    spec = load_spec(Path("..") / "project" / "job.toml")
    assert spec.init.image == project / "assets" / "start.png"
    assert spec.output.dir == Path("out")  # where results go: the working directory's, like -o
    (elsewhere / "here.png").write_bytes(b"")
    overridden = load_spec(project / "job.toml", ["init.image=here.png", "init.mask='here.png'"])
    assert overridden.init.image == elsewhere / "here.png"  # --set values: the working directory's
    assert overridden.init.mask == elsewhere / "here.png"
    section = load_spec(project / "job.toml", ['init={image="here.png"}'])
    assert section.init.image == elsewhere / "here.png"
    absolute = load_spec(project / "job.toml", [f"init.image='{tmp_path / 'x.png'}'"])
    assert absolute.init.image == tmp_path / "x.png"


def test_list_items_and_deforum_files_resolve_too(tmp_path):
    spec = Spec.model_validate(
        {
            "prompts": {"0": "x"},
            "controlnet": [{"model": "tiny", "image": "pose.png"}],
            "audio": {"file": "~/song.wav"},
        }  # fmt: skip
    )
    resolved = resolve_input_files(spec, tmp_path)
    assert resolved.controlnet[0].image == tmp_path / "pose.png"
    assert resolved.audio.file == Path("~/song.wav")  # left to the readers, which expand it
    assert spec.controlnet[0].image == Path("pose.png")  # the original is unchanged
    deforum = tmp_path / "settings.txt"
    deforum.write_text(
        '{"W": 64, "H": 64, "max_frames": 2, "animation_mode": "2D", "prompts": {"0": "a"}, '
        '"use_init": true, "init_image": "start.png"}',
        encoding="utf-8",
    )
    assert load_spec(deforum).init.image == tmp_path / "start.png"


@pytest.mark.parametrize("example", ["video", "variations", "audio-reactive"])
def test_examples_with_input_files_work_from_any_folder(example, tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("render", EXAMPLES / f"{example}.toml", "--set", "animation.max_frames=2", *FAST)
    assert code == 0, err
    assert len(list(tmp_path.glob("out/*/frames/frame_*.png"))) == 2
    spec = load_spec(EXAMPLES / f"{example}.toml")
    files = [r.value for r in references(spec) if isinstance(r.marker, InputFile)]
    assert files and all(p.is_absolute() and p.is_file() for p in files)


def test_a_render_from_elsewhere_resumes_from_anywhere(spec_folder, monkeypatch, run_cli):
    project, elsewhere = spec_folder
    monkeypatch.chdir(elsewhere)
    code, out, err = run_cli("render", project / "job.toml", "--preview-every", "0")
    assert code == 0, err
    run_dir = elsewhere / "out" / "job"
    saved = json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))
    assert saved["init"]["image"] == str(project / "assets" / "start.png")
    first = PIL.Image.open(run_dir / "frames" / "frame_00001.png").tobytes()
    (run_dir / "frames" / "frame_00001.png").unlink()
    monkeypatch.chdir(project.parent)
    code, out, err = run_cli("render", "--resume", os.path.relpath(run_dir), "--preview-every", "0")
    assert code == 0, err
    assert PIL.Image.open(run_dir / "frames" / "frame_00001.png").tobytes() == first


def test_data_helpers_set_and_remove_fields_by_location():
    data = {"controlnet": [{"model": "tiny"}], "output": {"dir": "x"}}
    set_in_data(data, ("controlnet", 0, "image"), "pose.png")
    set_in_data(data, ("init", "image"), "a.png")
    assert data["controlnet"][0]["image"] == "pose.png" and data["init"] == {"image": "a.png"}
    with pytest.raises(FlipbookError) as error:
        set_in_data(data, ("controlnet", 1, "image"), "b.png")
    assert error.value.field == "controlnet[1].image" and "no controlnet[1]" in str(error.value)
    with pytest.raises(FlipbookError) as error:
        set_in_data({"init": 5}, ("init", "image"), "a.png")
    assert error.value.field == "init"
    pop_in_data(data, ("output", "dir"))
    pop_in_data(data, ("controlnet", 0, "image"))
    pop_in_data(data, ("audio", "file"))  # absent: nothing happens
    assert data == {"controlnet": [{"model": "tiny"}], "init": {"image": "a.png"}}

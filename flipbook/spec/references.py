"""Spec fields that name files and models, declared once in the schema, and one walker over them.

A field that holds a file or a model carries a marker in its annotation (``Annotated[Path | None,
InputFile("image")]``), which ``flipbook schema`` shows under the key ``x-flipbook``:

- :class:`InputFile`: a file the render reads (init image, video, mask, audio, control image, ...), of one of
  the :data:`FILE_KINDS`. In a spec file a relative path is relative to the spec file's folder
  (:func:`flipbook.spec.load.load_spec`); over HTTP it must be uploaded with the job
  (:mod:`flipbook.server.submit`), sniffed for what its kind takes.
- :class:`ModelReference`: a model, by built-in name, name in the models folder, hub id or (on the command line
  only) path. Over HTTP only names are accepted (:func:`flipbook.server.security.check_model_reference`).
- :class:`ServerOwned`: set by the server for every job (the output folder and name, the models folder).

:func:`references` walks a spec instance and yields every marked field that holds a value, list items included
(``controlnet[0].image``, ``animatediff.motion_loras[1].name``); :func:`marked_fields` walks the model classes
(``controlnet[i].image``). Whatever checks or rewrites such fields reads them from here, so a field added later
with its marker is covered everywhere without a list to keep up to date. The field types of each kind are in
:mod:`flipbook.spec.fields`.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from flipbook.errors import FlipbookError, SpecError

ANY_INDEX = "[i]"
"""Stands for any list index in a location from :func:`marked_fields` (``("controlnet", ANY_INDEX, "image")``)."""

Location = tuple[str | int, ...]


class _Marker:
    """A marker in a field's ``Annotated[...]``: no effect on validation, shown in the JSON Schema."""

    def schema_entry(self) -> dict[str, Any]:
        raise NotImplementedError

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        schema["x-flipbook"] = {**schema.get("x-flipbook", {}), **self.schema_entry()}
        return schema


FileKindName = Literal["image", "mask", "video", "audio"]


@dataclass(frozen=True)
class FileKind:
    """What an input file of one kind is: ``what`` an upload must be (for errors), what it is ``read_as``
    (uploads are sniffed so: images decoded, videos and audio by their container), and the file types the web
    UI's upload box offers."""

    what: str
    read_as: Literal["image", "video", "audio"]
    file_types: tuple[str, ...]


FILE_KINDS: dict[str, FileKind] = {
    "image": FileKind("an image (PNG, JPEG, WebP, GIF, BMP, TIFF)", "image", ("image",)),
    "mask": FileKind(
        "an image (PNG, JPEG, WebP, GIF, BMP, TIFF) whose white part is the mask", "image", ("image",)
    ),
    "video": FileKind("a video (MP4, MOV, WebM, MKV, AVI) or a GIF", "video", ("video", ".gif")),
    "audio": FileKind("audio (WAV, FLAC, OGG, MP3, M4A)", "audio", ("audio",)),
}
"""Every input-file kind: the :class:`InputFile` markers' ``kind`` is one of these."""


@dataclass(frozen=True)
class InputFile(_Marker):
    """A file the render reads: ``kind`` (one of :data:`FILE_KINDS`) is what an upload of it must be."""

    kind: FileKindName

    @property
    def file_kind(self) -> FileKind:
        return FILE_KINDS[self.kind]

    def schema_entry(self) -> dict[str, Any]:
        return {"input_file": self.kind}


@dataclass(frozen=True)
class ModelReference(_Marker):
    """A field that names models of one ``kind``.

    ``builtins``: names built into flipbook (for the kinds model families serve, the families' built-ins, from
    :mod:`flipbook.models.families`); ``folders``: the models-folder kinds a name is looked up in
    (:data:`flipbook.models.folders.KINDS`); ``hub``: whether a hub id (``org/name``) may be named. ``form``
    says where the names are: the value itself (``name``), the value or each name of a string schedule
    ``0:("a"), 60:("b")`` (``schedule``), or the ``<lora:NAME>`` tags in prompt text (``prompt_tags``).
    """

    kind: str
    builtins: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    hub: bool = False
    form: Literal["name", "schedule", "prompt_tags"] = "name"

    def __post_init__(self) -> None:
        """Models of a kind that model families serve (checkpoints, video models, motion modules) take their
        built-in names from the family registry, so there is no second list of them here."""
        from flipbook.models.families import builtin_names

        served = builtin_names(self.kind)
        if served is None:
            return
        if self.builtins:
            raise ValueError(
                f"ModelReference({self.kind!r}): its built-in names come from the model families"
            )
        object.__setattr__(self, "builtins", served)

    def names(self, value: Any) -> list[str]:
        """Every model name ``value`` holds (a prompt's tags, a schedule's names, or the value itself)."""
        if self.form == "prompt_tags":
            from flipbook.prompting.grammar import extract_loras

            texts = list(value.values()) if isinstance(value, dict) else [value]
            return [tag.name for text in texts for tag in extract_loras(str(text))[1]]
        if self.form == "schedule":
            from flipbook.spec.fields import is_string_schedule, string_schedule_values

            text = str(value)
            return string_schedule_values(text) if is_string_schedule(text) else [text]
        return [str(value)]

    def find(self, name: str, models_dir: Path) -> Path | None:
        """The file or folder ``name`` names among this kind's folders of the models folder ``models_dir`` (as
        :class:`flipbook.models.folders.ModelsDir` looks it up for the loaders), or None."""
        from flipbook.models.folders import ModelsDir

        try:
            folders = ModelsDir(models_dir)
        except FlipbookError:
            return None
        for kind in self.folders:
            try:
                return folders.find(kind, name)
            except FlipbookError:
                continue
        return None

    def allowed(self) -> str:
        """What a name of this kind may be over HTTP, for error messages."""
        ways = []
        if self.builtins:
            ways.append(f"built-in ({', '.join(self.builtins)})")
        if self.folders:
            ways.append(f"{_article(self.kind)} {self.kind} name in the server's --models-dir")
        if self.hub:
            ways.append("a hub id (org/name)")
        if not ways:
            return (
                f"no {self.kind} over HTTP ({_article(self.kind)} {self.kind} is a file, and the server reads "
                "no client path)"
            )
        return (
            f"{_article(self.kind)} {self.kind} name: "
            + (", ".join(ways[:-1]) + " or " if len(ways) > 1 else "")
            + ways[-1]
        )

    def schema_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"model": self.kind, "builtins": list(self.builtins)}
        entry |= {"models_dir": list(self.folders), "hub": self.hub}
        return entry | ({"form": self.form} if self.form != "name" else {})


@dataclass(frozen=True)
class ServerOwned(_Marker):
    """Set by ``flipbook serve`` for every job, whatever the client sent (``why`` says by what)."""

    why: str

    def schema_entry(self) -> dict[str, Any]:
        return {"server_owned": self.why}


Marker = InputFile | ModelReference | ServerOwned


@dataclass(frozen=True)
class Reference:
    """One marked field of a spec instance that holds a value: where it is, the value, and its marker."""

    location: Location
    value: Any
    marker: Marker

    @property
    def field(self) -> str:
        """The field as errors name it: ``controlnet[0].image``."""
        return field_name(self.location)


# ---- walking ---------------------------------------------------------------------------------------------


def marker_of(model: type[BaseModel], name: str) -> Marker | None:
    """The marker on field ``name`` of ``model``, or None."""
    for item in model.model_fields[name].metadata:
        if isinstance(item, (InputFile, ModelReference, ServerOwned)):
            return item
    return None


def references(spec: BaseModel, location: Location = ()) -> Iterator[Reference]:
    """Every marked field of ``spec`` (a Spec or any section) that holds a value, in field order, with the
    list items of sections (``controlnet[0].image``, ``model.loras[1].name``)."""
    for name in type(spec).model_fields:
        value = getattr(spec, name)
        here = (*location, name)
        marker = marker_of(type(spec), name)
        if marker is not None:
            if value is not None:
                yield Reference(here, value, marker)
        elif isinstance(value, BaseModel):
            yield from references(value, here)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from references(item, (*here, index))


def marked_fields(
    model: type[BaseModel] | None = None, location: Location = ()
) -> Iterator[tuple[Location, Marker]]:
    """Every marked field of the model classes (the Spec by default), list items as :data:`ANY_INDEX`."""
    if model is None:
        from flipbook.spec.model import Spec

        model = Spec
    for name, info in model.model_fields.items():
        here = (*location, name)
        marker = marker_of(model, name)
        if marker is not None:
            yield here, marker
            continue
        for section, in_list in _sections(info.annotation):
            yield from marked_fields(section, (*here, ANY_INDEX) if in_list else here)


def _sections(annotation: Any, in_list: bool = False) -> Iterator[tuple[type[BaseModel], bool]]:
    """The section classes an annotation holds (``X``, ``X | None``, ``list[X]``), and whether in a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, in_list
        return
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        for argument in typing.get_args(annotation)[: 1 if origin is typing.Annotated else None]:
            yield from _sections(argument, in_list)
    elif origin is list:
        for argument in typing.get_args(annotation):
            yield from _sections(argument, True)


# ---- locations -------------------------------------------------------------------------------------------

_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[(?:0|[1-9][0-9]*)\])*)")


def field_name(location: Location) -> str:
    """``("controlnet", 0, "image")`` -> ``controlnet[0].image``."""
    text = ""
    for part in location:
        if isinstance(part, int) or part == ANY_INDEX:
            text += f"[{'i' if part == ANY_INDEX else part}]"
        else:
            text += f".{part}" if text else part
    return text


def parse_field(name: str) -> Location:
    """``controlnet[0].image`` -> ``("controlnet", 0, "image")``; FlipbookError for anything else."""
    location: list[str | int] = []
    for piece in name.split("."):
        match = _PART.fullmatch(piece)
        if match is None:
            raise FlipbookError("field", name, "a spec field such as init.image or controlnet[0].image")
        location.append(match.group(1))
        location += [int(index) for index in re.findall(r"[0-9]+", match.group(2))]
    return tuple(location)


def pattern_of(location: Location) -> Location:
    """The location with every list index as :data:`ANY_INDEX` (as :func:`marked_fields` gives it)."""
    return tuple(ANY_INDEX if isinstance(part, int) else part for part in location)


def with_values(spec: BaseModel, values: dict[Location, Any]) -> Any:
    """A copy of ``spec`` with the fields at ``values``' locations set (values of the field's own type)."""
    if not values:
        return spec
    copy = spec.model_copy(deep=True)
    for location, value in values.items():
        node: Any = copy
        for part in location[:-1]:
            node = node[part] if isinstance(part, int) else getattr(node, part)
        setattr(node, str(location[-1]), value)
    return copy


def set_in_data(data: dict[str, Any], location: Location, value: Any) -> None:
    """Set ``location`` in plain spec data (a TOML file's dicts and lists): sections are made as needed, a list
    item (``controlnet[0]``) must exist; one error naming the field otherwise."""
    node: Any = data
    for depth, part in enumerate(location[:-1]):
        here = field_name(location[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node) or not isinstance(node[part], dict):
                raise FlipbookError(field_name(location), value, f"a field of the spec, which has no {here}")
            node = node[part]
        elif isinstance(location[depth + 1], int):
            node = node.get(part)  # a list: checked at the index
        else:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SpecError(here, node, "a table")
    node[location[-1]] = value


def pop_in_data(data: dict[str, Any], location: Location) -> None:
    """Remove ``location`` from plain spec data when it is there (sections emptied by it are removed too)."""
    nodes: list[Any] = [data]
    for part in location[:-1]:
        node = nodes[-1]
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
        nodes.append(node)
    if isinstance(nodes[-1], dict):
        nodes[-1].pop(location[-1], None)
    for parent, part, node in zip(
        reversed(nodes[:-1]), reversed(location[:-1]), reversed(nodes[1:]), strict=True
    ):
        if isinstance(part, str) and node == {}:
            parent.pop(part)


def _article(word: str) -> str:
    """ "an" before a vowel sound as written ("an upscaler", "an AnimateDiff ..."), else "a"."""
    return "an" if word[:1].lower() in "aeiou" else "a"

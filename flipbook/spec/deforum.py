"""Import Deforum settings files (the A1111 extension's, the notebook's, the forks') as flipbook specs.

The files people share come from three years of Deforum: CRLF line ends, a BOM, hand edits with trailing commas
or comments, Python dict literals, ``W``/``H`` or ``width``/``height``, prompts as a dict, a JSON string or the
notebook's list, samplers by k-diffusion name, A1111 name or (late 2022) index. Reading is lenient about the
syntax; mapping follows what the Deforum that wrote the file does with each value:

- keys the file leaves out take Deforum's defaults (:data:`~flipbook.spec.deforum_keys.EXTENSION_DEFAULTS`, the
  notebook's for notebook files), not flipbook's;
- schedules are read with that Deforum's keyframe parser (:mod:`flipbook.spec.deforum_keyframes`);
- settings that only matter in some modes (the camera in 2D/3D, the video in Video Input) are read only there;
- values Deforum reads loosely are read the same way (a border other than "wrap" is "replicate", a colour
  coherence it doesn't know is LAB), values flipbook can't take as they are are read as their closest
  counterpart (RAFT flow as DIS, a size not a multiple of 8 floored as A1111 floors it, a sampler flipbook lacks
  as the closest one it has), each with a warning;
- ControlNet units (:mod:`flipbook.spec.deforum_controlnet`) and Parseq manifests (:mod:`flipbook.spec.parseq`)
  are read too.

Nothing is dropped silently: the import returns notes for every value read otherwise than written and one
warning listing the settings flipbook has no counterpart for (:mod:`flipbook.spec.deforum_keys` says which
those are and when one is at a value that changes nothing). The CLI and the HTTP API import through
:func:`import_settings`, so they say the same things.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flipbook.errors import FlipbookError
from flipbook.modes import for_deforum, get_mode
from flipbook.spec.deforum_keyframes import DeforumVersion, deforum_version, read_deforum_schedule
from flipbook.spec.deforum_keys import (
    DEFAULT_ALIASES,
    EXTENSION_DEFAULTS,
    NOTEBOOK_DEFAULTS,
    lookup,
    notebook_keys,
)
from flipbook.spec.safe_parse import check_data, parse_json, parse_python_literal

# ------------------------------------------------------------------------------------------------- reading


def read_deforum_settings(path: str | Path) -> dict[str, Any]:
    """The settings in ``path`` as a dict; tolerant of BOM, CRLF, comments, trailing commas, Python literals."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise _not_settings(str(path), error.strerror or str(error)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _not_settings(str(path), f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    return parse_settings_text(text, str(path))


def parse_settings_text(text: str, source: str = "text") -> dict[str, Any]:
    """Settings text as a dict (see :func:`read_deforum_settings`); FlipbookError naming ``source`` else."""
    data = parse_lenient(text, source)
    if isinstance(data, str):
        raise _not_settings(source, data)
    if not isinstance(data, dict):
        raise _not_settings(source, f"the top level is a {type(data).__name__}, not an object of settings")
    return data


def _not_settings(source: str, detail: str) -> FlipbookError:
    return FlipbookError("settings", source, "a Deforum settings file (JSON)", detail=detail)


def parse_lenient(text: str, source: str = "text", field: str = "settings") -> Any:
    """JSON, then JSON with comments and trailing commas removed, then a Python dict literal; an error string
    (the strict JSON error, the most useful one) when nothing parses. Nesting, huge numbers and lone
    surrogates are a SpecError naming ``field`` whichever way the text is read (see
    :mod:`flipbook.spec.safe_parse`)."""
    try:
        return parse_json(text, field=field, source=source)
    except json.JSONDecodeError as error:
        first = f"{error.msg} at line {error.lineno} column {error.colno}"
    try:
        return parse_json(_strip_json_extras(text), field=field, source=source)
    except json.JSONDecodeError:
        pass
    try:
        value = parse_python_literal(text.strip(), field=field, source=source)
    except (ValueError, SyntaxError, MemoryError):
        return first
    return value if isinstance(value, dict) else first


def _strip_json_extras(text: str) -> str:
    """Remove ``//`` and ``/* */`` comments and trailing commas outside strings (hand-edited files have them)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i) or c == "#":
            while i < n and text[i] not in "\r\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(c)
            i += 1
    return re.sub(r",(\s*[}\]])", r"\1", "".join(out))


# ------------------------------------------------------------------------------------------------ the import


@dataclass
class DeforumImport:
    """One import: the settings (with Deforum's defaults for the keys the file leaves out), which keys the
    file has, the Deforum that wrote it, the folder its relative files are in (None: local files are not
    read, as in the server), and what the user must be told."""

    settings: dict[str, Any]
    present: frozenset[str]
    version: DeforumVersion
    base: Path | None = None
    notes: list[str] = field(default_factory=list)
    unused: set[str] = field(default_factory=set)
    controlnet: dict[int, int] = field(default_factory=dict)  # Deforum unit number -> index in [[controlnet]]

    def get(self, key: str, default: Any = None) -> Any:
        value = self.settings.get(key)
        return default if value is None else value

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def schedule(self, key: str, *, strings: bool = False) -> Any:
        """Deforum schedule ``key`` as flipbook takes it (see :func:`schedule_value`), noting a reading that
        differs from the text as written."""
        reading = read_deforum_schedule(key, self.settings[key], self.version, strings=strings)
        if reading.note:
            self.note(reading.note)
        return schedule_value(reading.value, strings=strings)

    def local_path(self, key: str, value: str, target: str) -> str:
        """A path Deforum reads, for flipbook field ``target``: a URL or (elsewhere than on Windows) a Windows
        path is kept, with a note naming the key and how to give a local file instead."""
        text = value.strip()
        kind = _foreign_path(text)
        if kind:
            self.note(f"{key}: {text!r} is {kind}, which flipbook can't open (it reads local files and never "
                      f"downloads); pass a local copy with --set {target}=PATH")  # fmt: skip
        return text


def _foreign_path(text: str) -> str:
    """ "a URL" or "a Windows path" (when not on Windows) for paths flipbook can't open here, else ""."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        return "a URL"
    if os.name != "nt" and (re.match(r"^[a-zA-Z]:[\\/]", text) or text.startswith("\\\\")):
        return "a Windows path"
    return ""


def schedule_value(text: Any, *, strings: bool = False) -> Any:
    """A lone keyframe at frame 0 as its value: ``0: (7)`` is 7, ``0: ("Euler a")`` is ``Euler a``."""
    if not isinstance(text, str):
        return text
    if strings:
        single = re.fullmatch(r'\s*0\s*:\s*\(\s*"([^"]*)"\s*\)\s*,?\s*', text)
        return single.group(1) if single else text
    match = re.fullmatch(r"\s*0\s*:\s*\(\s*(-?\d+(?:\.\d*)?)\s*\)\s*,?\s*", text)
    if match is None:
        return text
    number = float(match.group(1))
    return int(number) if number.is_integer() and "." not in match.group(1) else number


def start_import(settings: dict[str, Any], base: Path | None = None) -> DeforumImport:
    """The import of ``settings``: the Deforum that wrote them, and its defaults for the keys they leave out."""
    version = deforum_version(settings, notebook_keys())
    defaults = NOTEBOOK_DEFAULTS if version.notebook else EXTENSION_DEFAULTS
    missing = {key: value for key, value in defaults.items()
               if not any(alias in settings for alias in DEFAULT_ALIASES.get(key, ()))}  # fmt: skip
    return DeforumImport({**missing, **settings}, frozenset(settings), version, base)


def import_settings(
    settings: dict[str, Any], *, base: Path | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Spec data from Deforum settings, and what the user must be told: values read otherwise than written,
    and the settings flipbook has no counterpart for (one warning). ``base``: the folder relative files
    (a Parseq manifest file) are in; None reads none. The CLI and the HTTP API both import through here."""
    check_data(settings, field="settings")
    job = start_import(settings, base)
    data = spec_data(job)
    return data, [*job.notes, *unused_warnings(job)]


def deforum_to_spec_data(
    settings: dict[str, Any], *, base: Path | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Spec data and the sorted keys flipbook doesn't use (see :func:`import_settings` for the warnings)."""
    job = start_import(settings, base)
    data = spec_data(job)
    return data, unused_keys(job)


def spec_data(job: DeforumImport) -> dict[str, Any]:
    """The spec data for an import, section by section; a mode's sections only in that mode."""
    from flipbook.spec.deforum_controlnet import controlnet_units
    from flipbook.spec.parseq import apply_parseq

    mode = _animation_mode(job)
    data: dict[str, Any] = {"version": 1}
    prompts = _prompts(job)
    if prompts is not None:
        data["prompts"] = prompts
    for source, target in (("animation_prompts_positive", "positive_prompt"),
                           ("animation_prompts_negative", "negative_prompt")):  # fmt: skip
        if isinstance(job.settings.get(source), str) and job.settings[source].strip():
            data[target] = job.settings[source]
    model = _checkpoint(job)
    if model:
        data["model"] = model
    sampling = _sampling(job)
    if sampling:
        data["sampling"] = sampling
    data["animation"] = _animation(job, mode, prompts)
    init = _init(job, mode)
    if init:
        data["init"] = init
    if reads_camera(mode):
        camera = {**_camera(job, mode), **_hybrid(job)}
        if camera:
            data["camera"] = camera
    if deforum_mode_in(job.settings, "Video Input"):
        _video_input(job, data)
    units = controlnet_units(job, data)
    if units:
        data["controlnet"] = units
    apply_parseq(job, data)
    return data


# --------------------------------------------------------------------------------------- animation, prompts


def _animation_mode(job: DeforumImport) -> str:
    """flipbook's mode for ``animation_mode`` (each mode declares the Deforum modes it imports; a missing value
    is Deforum's "None"); Interpolation and other modes flipbook lacks are an error."""
    raw = job.settings.get("animation_mode")
    mode = for_deforum(raw)
    if mode is not None:
        return mode.name
    raise FlipbookError(
        "animation_mode",
        raw,
        'one of "None" (imported as flipbook\'s travel mode), "2D", "3D", "Video Input"',
        detail="Deforum's Interpolation mode has no flipbook counterpart yet (flipbook's interpolate mode is "
        "a latent walk, not the same thing)",
    )


def _animation(job: DeforumImport, mode: str, prompts: dict[str, str] | None) -> dict[str, Any]:
    animation: dict[str, Any] = {"mode": mode}
    frames = job.settings.get("max_frames")
    if frames is None and job.version.notebook and prompts:  # notebook stills: one frame per prompt
        frames = 1 + max((int(k) for k in prompts if str(k).isdigit()), default=0)
    if frames is not None:
        animation["max_frames"] = _integer(frames)
    for keys, target in ((("W", "width"), "width"), (("H", "height"), "height")):
        size = _size(job, keys)
        if size is not None:
            animation[target] = size
    if job.settings.get("fps") is not None:
        animation["fps"] = job.settings["fps"]
    # ``strength`` is the animation strength only in files without a schedule for it (notebook stills); with
    # ``strength_schedule`` or ``previous_frame_strength`` it is the init image's strength, see _init
    key = _first_key(job, "strength_schedule", "previous_frame_strength", "strength")
    if key is not None:
        animation["strength"] = job.schedule(key)
    return animation


def _size(job: DeforumImport, keys: tuple[str, ...]) -> Any:
    """``W``/``H`` floored to what the Deforum that wrote the file renders: A1111 makes latents of
    ``size // 8`` (the extension hands it the size), the notebook floors its args to a multiple of 64."""
    key = _first_key(job, *keys)
    if key is None:
        return None
    value = _integer(job.settings[key])
    step = job.version.size_multiple
    if isinstance(value, int) and not isinstance(value, bool) and value >= step and value % step:
        floored = value - value % step
        who = ("the notebook floors it to a multiple of 64" if job.version.notebook
               else "A1111, which Deforum hands the size to, floors it to a multiple of 8")  # fmt: skip
        job.note(f"{key}: {value} is read as {floored}, as {job.version.label} renders it ({who})")
        return floored
    return value


def _prompts(job: DeforumImport) -> dict[str, str] | None:
    """Keyframe prompts from any era: ``animation_prompts`` (a dict or its JSON text) when it holds prompts,
    as Deforum prefers it over ``prompts``; else ``prompts`` (a dict, the notebook's list of stills, or its
    inverted ``{prompt: "00000"}`` batch dict with the index as frame)."""
    raw = job.settings.get("animation_prompts")
    if not _has_prompts(raw):
        raw = job.settings.get("prompts")
    elif _has_prompts(job.settings.get("prompts")) and job.settings.get("prompts") != raw:
        job.note("prompts: the file has animation_prompts too; those are the animation's prompts (as in Deforum), "
                 "prompts is not used")  # fmt: skip
    if isinstance(raw, str):
        try:
            raw = parse_json(raw, field="animation_prompts", source="the animation_prompts text")
        except json.JSONDecodeError:
            return {"0": raw}
    if isinstance(raw, list):
        return {str(i): str(p) for i, p in enumerate(raw)}
    if not isinstance(raw, dict):
        return None
    inverted = raw and all(isinstance(v, str) and v.strip().isdigit() for v in raw.values())
    if inverted and not all(_looks_like_frame_key(k) for k in raw):
        return {str(int(v)): str(k) for k, v in raw.items()}
    return {str(k): v if isinstance(v, str) else str(v) for k, v in raw.items()}


def _has_prompts(value: Any) -> bool:
    """Whether a prompts value holds any text: ``[""]`` and ``{}`` hold none."""
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list):
        return any(isinstance(v, str) and v.strip() for v in value)
    if isinstance(value, dict):
        return any(isinstance(v, str) and v.strip() for v in value.values()) or any(
            isinstance(k, str) and k.strip() for k in value
        )
    return False


def _looks_like_frame_key(key: object) -> bool:
    """Frame numbers and max_f expressions; prompt texts (with commas and spaces between words) are not."""
    if isinstance(key, int | float):
        return True
    text = str(key).strip()
    return text.lstrip("-").isdigit() or (
        "max_f" in text and re.fullmatch(r"[\w\s+\-*/().%]*", text) is not None
    )


def _first_key(job: DeforumImport, *keys: str) -> str | None:
    """The first key with a value (the newest era's spelling comes first)."""
    for key in keys:
        if job.settings.get(key) is not None:
            return key
    return None


def _integer(value: Any) -> Any:
    """``2``, ``2.0`` and ``"2"`` as the int 2; anything else as it is (validation reports it)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# ---------------------------------------------------------------------------------------------- sampling

# k-diffusion / notebook sampler names -> A1111 names (the names flipbook's samplers know).
_NOTEBOOK_SAMPLERS: dict[str, str] = {
    "klms": "LMS", "lms": "LMS", "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "dpm2": "DPM2",
    "dpm2_ancestral": "DPM2 a", "dpm_2": "DPM2", "dpm_2_ancestral": "DPM2 a", "dpm_fast": "DPM fast",
    "dpm_adaptive": "DPM adaptive", "dpmpp_2s_a": "DPM++ 2S a", "dpmpp_2m": "DPM++ 2M", "dpmpp_sde": "DPM++ SDE",
    "ddim": "DDIM", "plms": "PLMS",
}  # fmt: skip

# A1111's img2img sampler list when the extension stored the sampler as its index (October to November 2022):
# k-diffusion's samplers with DPM++ (added to A1111 early in November 2022), then DDIM; PLMS can't img2img.
A1111_SAMPLERS_LATE_2022: tuple[str, ...] = (
    "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M", "DPM++ SDE", "DPM fast",
    "DPM adaptive", "LMS Karras", "DPM2 Karras", "DPM2 a Karras", "DPM++ 2S a Karras", "DPM++ 2M Karras",
    "DPM++ SDE Karras", "DDIM",
)  # fmt: skip

# A1111 samplers flipbook lacks -> the closest one it has (same solver family; Heun-based for Restart).
_SAMPLER_STANDINS: dict[str, str] = {
    "DPM fast": "DPM2", "DPM adaptive": "DPM2", "DPM++ 3M SDE": "DPM++ 2M SDE",
    "DPM++ 3M SDE Karras": "DPM++ 2M SDE Karras", "DPM++ 3M SDE Exponential": "DPM++ 2M SDE",
    "DPM++ 2M SDE Exponential": "DPM++ 2M SDE", "DPM++ 2M SDE Heun": "DPM++ 2M SDE",
    "DPM++ 2M SDE Heun Karras": "DPM++ 2M SDE Karras", "DPM++ 2M SDE Heun Exponential": "DPM++ 2M SDE",
    "DPM++ SDE Exponential": "DPM++ SDE", "DPM++ 2M Exponential": "DPM++ 2M", "Restart": "Heun",
    "Heun++": "Heun", "Heun++2": "Heun", "DDIM CFG++": "DDIM", "Euler CFG++": "Euler", "Euler a CFG++": "Euler a",
    "Euler Karras": "Euler", "Euler a Karras": "Euler a", "Euler Exponential": "Euler",
    "DPM++ 2M Beta": "DPM++ 2M", "DPM++ 2M SDE Beta": "DPM++ 2M SDE",
}  # fmt: skip
_FALLBACK_SAMPLER = "Euler a"


def deforum_sampler_name(name: str) -> str:
    """The A1111 name for a notebook/k-diffusion sampler name; A1111 names (and unknown ones) pass through."""
    return _NOTEBOOK_SAMPLERS.get(name.strip().casefold(), name)


def _sampling(job: DeforumImport) -> dict[str, Any]:
    sampling: dict[str, Any] = {}
    for key, target in (("seed", "seed"), ("seed_behavior", "seed_behavior")):
        if job.settings.get(key) is not None:
            sampling[target] = job.settings[key]
    iter_key = _first_key(job, "seed_iter_N", "seed_iter_n")
    if iter_key:
        sampling["seed_iter_n"] = _integer(job.settings[iter_key])
    if job.settings.get("seed_behavior") == "schedule" and job.settings.get("seed_schedule") is not None:
        sampling["seed_schedule"] = job.schedule("seed_schedule")
    cfg = _first_key(job, "cfg_scale_schedule", "scale")
    if job.settings.get("enable_cfg_scale_scheduling") is False and job.settings.get("scale") is not None:
        cfg = "scale"  # forks with the switch use the plain scale when it's off
    if cfg:
        sampling["cfg"] = job.schedule(cfg)
    sampler = _sampler(job)
    if sampler is not None:
        sampling["sampler"] = sampler
    steps = _switched(job, "steps", "steps_schedule", ("enable_steps_scheduling",))
    if steps is not None:
        sampling["steps"] = _integer(steps)
    clip_skip = _switched(job, "clip_skip", "clipskip_schedule", ("enable_clipskip_scheduling",))
    if isinstance(clip_skip, str):
        job.unused.add("clipskip_schedule")  # flipbook has one clip skip per animation
    elif clip_skip is not None:
        sampling["clip_skip"] = _integer(clip_skip)
    return sampling


def _switched(
    job: DeforumImport, plain: str, schedule: str, switches: tuple[str, ...], *, strings: bool = False
) -> Any:
    """A setting Deforum can schedule: the schedule when one of ``switches`` is on (its one value when
    constant), else the plain value."""
    if any(job.settings.get(s) for s in switches) and job.settings.get(schedule) is not None:
        return job.schedule(schedule, strings=strings)
    return job.settings.get(plain)


def _sampler(job: DeforumImport) -> Any:
    """``sampler`` (or an enabled ``sampler_schedule``) with every name as flipbook knows it: notebook names
    in A1111 spelling, a 2022 index from A1111's list of then, ``scheduler`` Karras as the Karras variant, a name
    flipbook lacks as its closest, each change noted."""
    raw = _switched(job, "sampler", "sampler_schedule", ("enable_sampler_scheduling", "enable_schedule_samplers"),
                    strings=True)  # fmt: skip
    if isinstance(raw, int) and not isinstance(raw, bool):
        return _sampler_index(job, raw)
    if not isinstance(raw, str):
        return raw
    from flipbook.spec.model import is_string_schedule

    if is_string_schedule(raw):
        return _rename_schedule(raw, lambda name: _sampler_name(job, name))
    return _sampler_name(job, raw)


def _sampler_index(job: DeforumImport, index: int) -> Any:
    if not 0 <= index < len(A1111_SAMPLERS_LATE_2022):
        return index  # validation names it
    name = A1111_SAMPLERS_LATE_2022[index]
    job.note(f"sampler: {index} is the extension's 2022 index into A1111's img2img sampler list, read as "
             f'"{name}" (the list of November 2022' + ("" if index < 6 else
             "; A1111 before its DPM++ samplers had another sampler at that place") + ")")  # fmt: skip
    return name


def _known_sampler(name: str) -> str | None:
    """flipbook's spelling of a sampler it has (A1111 names in any case, scheduler class names), else None."""
    from flipbook.samplers.names import resolve_sampler

    try:
        return resolve_sampler(name).name
    except FlipbookError:
        return None


def _sampler_name(job: DeforumImport, name: str) -> str:
    spelled = deforum_sampler_name(name).strip()
    spelled = _known_sampler(spelled) or spelled
    scheduler = job.settings.get("scheduler")
    if isinstance(scheduler, str) and scheduler.strip():
        spelled = _with_scheduler(job, spelled, scheduler.strip())
    if _known_sampler(spelled):
        return spelled
    plain = re.sub(r" (Karras|Exponential|Automatic)$", "", spelled)
    standin = _SAMPLER_STANDINS.get(spelled) or _known_sampler(plain) or _FALLBACK_SAMPLER
    job.note(f'sampler: flipbook has no "{spelled}" sampler; read as "{standin}", the closest it has')
    return standin


def _with_scheduler(job: DeforumImport, sampler: str, scheduler: str) -> str:
    """A1111 1.9+'s separate scheduler: Karras selects the Karras variant; Automatic is the sampler's own."""
    name = scheduler.casefold()
    if name == "automatic" or (sampler.endswith(" Karras") and name == "karras"):
        return sampler
    if name == "karras":
        variant = _known_sampler(f"{sampler} Karras")
        if variant:
            return variant
    job.note(f'scheduler: "{scheduler}" with "{sampler}" is read as that sampler\'s own noise schedule '
             "(flipbook's samplers come with theirs; Karras selects the Karras variants)")  # fmt: skip
    return sampler


def _rename_schedule(text: str, rename) -> str:
    """A string schedule with every value passed through ``rename``."""
    from flipbook.spec.schedules import parse_schedule

    parts = []
    for keyframe in parse_schedule(text):
        value = keyframe.value.strip().strip("\"'")
        parts.append(f'{keyframe.key}: ("{rename(value)}")')
    return ", ".join(parts)


def _checkpoint(job: DeforumImport) -> dict[str, Any]:
    """``model.name`` from an enabled ``checkpoint_schedule``: the one name when constant, else the schedule
    (flipbook switches checkpoints mid-animation too). Disabled, the schedule is inert, as in Deforum."""
    if (
        not job.settings.get("enable_checkpoint_scheduling")
        or job.settings.get("checkpoint_schedule") is None
    ):
        return {}
    return {"name": job.schedule("checkpoint_schedule", strings=True)}


# -------------------------------------------------------------------------------------------------- [init]


def _init(job: DeforumImport, mode: str) -> dict[str, Any]:
    """``[init]``: the init image (with ``use_init``; not in Video Input, whose frames are the init) and its
    strength, and the mask (with ``use_mask``, or the init image's alpha with ``use_alpha_as_mask``).
    ``strength_0_no_init`` needs no field: flipbook makes frame 0 without an init image by txt2img."""
    init: dict[str, Any] = {}
    s = job.settings
    image = s.get("init_image")
    if (
        not deforum_mode_in(s, "Video Input")
        and s.get("use_init")
        and isinstance(image, str)
        and image.strip()
    ):
        init["image"] = job.local_path("init_image", image, "init.image")
        if s.get("strength") is not None:
            init["strength"] = s["strength"]
    mask = s.get("mask_file")
    use_alpha = bool(s.get("use_alpha_as_mask"))
    if s.get("use_mask") and isinstance(mask, str) and mask.strip():
        init["mask"] = job.local_path("mask_file", mask, "init.mask")
        if use_alpha:
            job.unused.add(
                "use_alpha_as_mask"
            )  # Deforum's alpha mask comes from the init image; one mask here
    elif use_alpha and "image" in init:
        init["mask"] = init["image"]
        init["mask_use_alpha"] = True
    if "mask" in init:
        for key, target in (("invert_mask", "mask_invert"), ("mask_overlay_blur", "mask_feather")):
            if s.get(key) is not None:
                init[target] = s[key]
    return init


# ------------------------------------------------------------------------------------------------ [camera]

# Deforum camera schedules -> ``[camera]`` fields (older spellings after the newer ones).
_CAMERA_SCHEDULES: dict[tuple[str, ...], str] = {
    ("angle",): "angle", ("zoom",): "zoom", ("translation_x",): "translation_x",
    ("translation_y",): "translation_y", ("translation_z",): "translation_z",
    ("transform_center_x",): "transform_center_x", ("transform_center_y",): "transform_center_y",
    ("rotation_3d_x",): "rotation_3d_x", ("rotation_3d_y",): "rotation_3d_y", ("rotation_3d_z",): "rotation_3d_z",
    ("perspective_flip_theta",): "perspective_flip_theta", ("perspective_flip_phi",): "perspective_flip_phi",
    ("perspective_flip_gamma",): "perspective_flip_gamma", ("perspective_flip_fv",): "perspective_flip_fv",
    ("fov_schedule", "fov"): "fov", ("near_schedule", "near_plane"): "near", ("far_schedule", "far_plane"): "far",
    ("cadence_flow_factor_schedule",): "cadence_flow_factor", ("contrast_schedule",): "contrast",
    ("amount_schedule",): "antiblur_amount", ("kernel_schedule",): "antiblur_kernel",
    ("sigma_schedule",): "antiblur_sigma", ("threshold_schedule",): "antiblur_threshold",
    ("noise_schedule",): "noise",
}  # fmt: skip

# Deforum camera settings copied as they are -> ``[camera]`` fields.
_CAMERA_PLAIN: dict[tuple[str, ...], str] = {
    ("enable_perspective_flip", "flip_2d_perspective"): "perspective_flip",
    ("padding_mode",): "padding_mode", ("sampling_mode",): "sampling_mode",
    ("color_force_grayscale",): "color_force_grayscale", ("save_depth_maps",): "save_depth_maps",
}  # fmt: skip

# Deforum ``depth_algorithm`` (casefolded) -> the same model on the Hugging Face hub; Zoe, AdaBins and LeReS
# (and any other name) are reported as unused and the default depth model is kept.
_DEPTH_MODELS = {
    "depth-anything-v2-small": "depth-anything/Depth-Anything-V2-Small-hf",
    "midas-3-hybrid": "Intel/dpt-hybrid-midas",
    "midas-3.1-beitlarge": "Intel/dpt-beit-large-512",
}

# Optical-flow names flipbook reads as DIS, saying so: RAFT is torchvision's RAFT-large, DenseRLOF and SF are
# opencv-contrib's, Farneback (for cadence) is not among flipbook's cadence flows.
_FLOW_STANDINS = {"raft": "RAFT, torchvision's RAFT-large", "denserlof": "DenseRLOF (opencv-contrib)",
                  "sf": "SF (opencv-contrib)", "farneback": "Farneback"}  # fmt: skip


def _camera(job: DeforumImport, mode: str) -> dict[str, Any]:
    """``[camera]`` (2D and 3D files) from Deforum's keyframes tab: motion, depth, cadence, colour coherence,
    noise, anti-blur."""
    camera: dict[str, Any] = {}
    s = job.settings
    for keys, target in _CAMERA_SCHEDULES.items():
        key = _first_key(job, *keys)
        if key is not None:
            camera[target] = job.schedule(key)
    for keys, target in _CAMERA_PLAIN.items():
        key = _first_key(job, *keys)
        if key is not None:
            camera[target] = s[key]
    if s.get("border") is not None:
        camera["border"] = _border(job, s["border"], mode)
    if s.get("diffusion_cadence") is not None:
        camera["cadence"] = _integer(s["diffusion_cadence"])
    if s.get("optical_flow_cadence") is not None:
        camera["optical_flow_cadence"] = _cadence_flow(job, s["optical_flow_cadence"])
    _color_coherence(job, camera)
    _noise(job, camera)
    if s.get("noise_multiplier_schedule") is not None and s.get("enable_noise_multiplier_scheduling", True):
        camera["noise_multiplier"] = job.schedule("noise_multiplier_schedule")
    if s.get("use_depth_warping") is False:
        camera["depth_model"] = "flat"  # Deforum 3D without depth warping moves a flat picture
    elif isinstance(s.get("depth_algorithm"), str):
        model = _DEPTH_MODELS.get(s["depth_algorithm"].strip().casefold())
        if model is None:
            job.unused.add(
                "depth_algorithm"
            )  # Zoe, AdaBins, LeReS: no transformers model; the default is kept
        else:
            camera["depth_model"] = model
    return camera


def _border(job: DeforumImport, raw: Any, mode: str) -> str:
    """Deforum's 2D warp wraps for "wrap" and replicates for anything else."""
    if raw == "wrap":
        return "wrap"
    if raw != "replicate" and deforum_mode_in(job.settings, "2D"):
        job.note(f'border: {raw!r} is read as "replicate", as Deforum\'s 2D warp reads anything but "wrap"')
    return "replicate"


def _cadence_flow(job: DeforumImport, raw: Any) -> str:
    """``optical_flow_cadence``: "None" (or false, as Deforum reads old files) -> none; DIS presets (or true:
    "DIS Fine") -> dis; RAFT, Farneback and opencv-contrib flows -> dis, noted."""
    if raw is False or raw == "None":
        return "none"
    if raw is True or (isinstance(raw, str) and raw.strip().upper().startswith("DIS")):
        return "dis"
    name = raw.strip().casefold() if isinstance(raw, str) else raw
    if name in _FLOW_STANDINS:
        job.note(f'optical_flow_cadence: "{raw}" ({_FLOW_STANDINS[name]}) is read as "dis", OpenCV\'s DIS optical '
                 'flow (Deforum\'s "DIS Medium"), the one flipbook has')  # fmt: skip
        return "dis"
    raise FlipbookError(
        "optical_flow_cadence",
        raw,
        '"None", "DIS Medium", "DIS Fine", "DIS UltraFine", "RAFT" or "Farneback"',
    )


# Deforum ``color_coherence`` names -> flipbook's; "Image" and "Video Input" are handled on their own, anything
# else is LAB (Deforum's colour match treats every mode but RGB and HSV as LAB).
_COLOR_COHERENCE = {"None": "none", "RGB": "rgb", "Match Frame 0 RGB": "rgb", "HSV": "hsv",
                    "Match Frame 0 HSV": "hsv", "LAB": "lab", "Match Frame 0 LAB": "lab"}  # fmt: skip


def _color_coherence(job: DeforumImport, camera: dict[str, Any]) -> None:
    """Deforum's colour-coherence names; "Image" is LAB matching against ``color_coherence_image_path``, "Video
    Input" LAB matching against the hybrid video's frame, refreshed every ``color_coherence_video_every_N_frames``
    frames ("video"). Without hybrid video in use Deforum has no video sample and matches LAB against the first
    warped frame: read as "lab", noted."""
    raw = job.settings.get("color_coherence")
    if raw is None:
        return
    path = job.settings.get("color_coherence_image_path")
    if raw == "Image" and isinstance(path, str) and path.strip():
        camera["color_coherence"] = "lab"
        camera["color_coherence_image"] = job.local_path(
            "color_coherence_image_path", path, "camera.color_coherence_image"
        )
    elif raw == "Video Input":
        camera["color_coherence"] = "video" if uses_hybrid_video(job.settings) else "lab"
        every = job.settings.get("color_coherence_video_every_N_frames")
        if camera["color_coherence"] == "video" and every is not None:
            camera["color_coherence_video_every_n"] = _integer(every)
        if camera["color_coherence"] == "lab":
            job.note('color_coherence: "Video Input" without hybrid video in use has no video to match: read as '
                     '"lab" (Deforum then matches LAB against the first warped frame)')  # fmt: skip
    elif raw in _COLOR_COHERENCE:
        camera["color_coherence"] = _COLOR_COHERENCE[raw]
    else:
        camera["color_coherence"] = "lab"
        why = "an Image without color_coherence_image_path" if raw == "Image" else repr(raw)
        job.note(f'color_coherence: {why} is read as "lab", as Deforum\'s colour match reads it (LAB for '
                 'everything but "None", "RGB" and "HSV")')  # fmt: skip


def _noise(job: DeforumImport, camera: dict[str, Any]) -> None:
    """Deforum adds Perlin noise for ``noise_type`` "perlin" and Gaussian noise (``randn``, which it calls
    "uniform") for anything else; the Perlin settings only with Perlin noise."""
    raw = job.settings.get("noise_type")
    if raw is None:
        return
    camera["noise_type"] = "perlin" if raw == "perlin" else "gaussian"
    if raw not in ("perlin", "uniform"):
        job.note(
            f'noise_type: {raw!r} is read as "gaussian", the noise Deforum adds for anything but "perlin"'
        )
    if camera["noise_type"] == "perlin":
        for key in ("perlin_octaves", "perlin_persistence"):
            if job.settings.get(key) is not None:
                camera[key] = job.settings[key]


# ---------------------------------------------------------------------------------------------- hybrid video

_HYBRID_MOTION = {
    "none": "none",
    "optical flow": "optical_flow",
    "perspective": "perspective",
    "affine": "affine",
}
_HYBRID_MASKS = {"none": "none", "video depth": "depth", "blend": "blend", "difference": "difference"}
_HYBRID_COMPOSITE = {"none": "none", "normal": "normal", "before motion": "before_motion",
                     "after generation": "after_generation"}  # fmt: skip


def _named(value: Any, names: dict[str, str]) -> Any:
    """``names[value]`` matched case-insensitively; other values are returned as they are (None stays None)."""
    if isinstance(value, str):
        return names.get(value.strip().casefold(), value)
    return value


def _hybrid_composite(settings: dict[str, Any]) -> Any:
    """``hybrid_composite`` as flipbook's name; early-2023 files have a switch, whose "on" was "Normal"."""
    raw = settings.get("hybrid_composite")
    if isinstance(raw, bool):
        return "normal" if raw else "none"
    return _named(raw, _HYBRID_COMPOSITE)


def deforum_mode_in(settings: dict[str, Any], *names: str) -> bool:
    """Whether Deforum's ``animation_mode`` is one of ``names`` (Deforum's spelling, matched case-insensitively)."""
    raw = settings.get("animation_mode")
    return isinstance(raw, str) and raw.strip().casefold() in {name.casefold() for name in names}


def reads_camera(mode: str) -> bool:
    """Whether flipbook's ``mode`` reads ``[camera]`` as its own section (the 2D/3D camera modes)."""
    return get_mode(mode).section == "camera"


def uses_hybrid_video(settings: dict[str, Any]) -> bool:
    """Deforum's hybrid video is in use: a 2D/3D file with ``hybrid_motion`` or ``hybrid_composite`` on
    (render.py's ``hybrid_available``)."""
    if not deforum_mode_in(settings, "2D", "3D"):
        return False
    motion = _named(settings.get("hybrid_motion"), _HYBRID_MOTION)
    return motion not in (None, "none") or _hybrid_composite(settings) not in (None, "none")


def _hybrid(job: DeforumImport) -> dict[str, Any]:
    """Hybrid video (2D/3D): ``video_init_path`` is the hybrid video when ``hybrid_motion`` or
    ``hybrid_composite`` is on. RAFT and opencv-contrib flows are read as DIS, the generated frame's "Depth"
    mask as the video's depth, each noted."""
    s = job.settings
    if not uses_hybrid_video(s):
        return {}
    motion = _named(s.get("hybrid_motion"), _HYBRID_MOTION)
    composite = _hybrid_composite(s)
    camera: dict[str, Any] = {"hybrid_motion": motion or "none", "hybrid_composite": composite or "none"}
    path = s.get("video_init_path")
    if isinstance(path, str) and path.strip():
        camera["hybrid_video"] = job.local_path("video_init_path", path, "camera.hybrid_video")
    method = s.get("hybrid_flow_method")
    if motion == "optical_flow" and isinstance(method, str):
        camera["hybrid_flow_method"] = _flow_method(job, method)
    for key, target in (("hybrid_flow_factor_schedule", "hybrid_flow_factor"),
                        ("hybrid_comp_alpha_schedule", "hybrid_comp_alpha")):  # fmt: skip
        if s.get(key) is not None:
            camera[target] = job.schedule(key)
    if composite not in (None, "none"):
        mask = s.get("hybrid_comp_mask_type")
        if isinstance(mask, str) and mask.strip() == "Depth":
            job.note('hybrid_comp_mask_type: "Depth" (the generated frame\'s depth) is read as "depth", the video '
                     "frame's depth, the depth mask flipbook has")  # fmt: skip
            mask = "Video Depth"
        if mask is not None:
            camera["hybrid_comp_mask_type"] = _named(mask, _HYBRID_MASKS)
        if isinstance(s.get("hybrid_comp_mask_inverse"), bool):
            camera["hybrid_comp_mask_inverse"] = s["hybrid_comp_mask_inverse"]
    return camera


def _flow_method(job: DeforumImport, method: str) -> str:
    """Deforum's hybrid flow names: DIS presets -> "dis", Farneback -> "farneback", RAFT and opencv-contrib
    flows -> "dis" (noted); others are copied for validation to report."""
    name = method.strip()
    if name.upper().startswith("DIS"):
        return "dis"
    if name.casefold() == "farneback":
        return "farneback"
    if name.casefold() in _FLOW_STANDINS:
        job.note(f'hybrid_flow_method: "{name}" ({_FLOW_STANDINS[name.casefold()]}) is read as "dis", OpenCV\'s '
                 'DIS optical flow (Deforum\'s "DIS Medium")')  # fmt: skip
        return "dis"
    return name


# ----------------------------------------------------------------------------------------------- Video Input


def _video_input(job: DeforumImport, data: dict[str, Any]) -> None:
    """Deforum's Video Input mode: the source video, which frames to extract, and the mask video.

    ``extract_to_frame`` is inclusive in Deforum (-1: to the end), ``video.end_frame`` exclusive. Deforum keeps
    frames whose absolute index is a multiple of ``extract_nth_frame``; flipbook counts from ``start_frame``
    (the same unless the start is not a multiple of n)."""
    s = job.settings
    path = s.get("video_init_path")
    if isinstance(path, str) and path.strip():
        data.setdefault("init", {})["video"] = job.local_path("video_init_path", path, "init.video")
    video: dict[str, Any] = {}
    for key, target in (("extract_nth_frame", "every_nth"), ("extract_from_frame", "start_frame")):
        if s.get(key) is not None:
            video[target] = _integer(s[key])
    end = _integer(s.get("extract_to_frame"))
    if isinstance(end, int) and not isinstance(end, bool) and end >= 0:
        video["end_frame"] = end + 1
    mask = s.get("video_mask_path")
    if s.get("use_mask_video") and isinstance(mask, str) and mask.strip():
        video["mask_video"] = job.local_path("video_mask_path", mask, "video.mask_video")
    if video:
        data["video"] = video


# ---------------------------------------------------------------------------------------------- warnings


def unused_keys(job: DeforumImport) -> list[str]:
    """The file's keys flipbook doesn't use, sorted: keys the table calls unused (unless at a value that
    changes nothing or switched off), keys the mapping found unusable, and keys no Deforum flipbook knows
    writes."""
    keys = set(job.unused)
    for key in job.present:
        entry = lookup(key)
        if entry is None or (entry.status == "unused" and not _inert(job.settings, key)):
            keys.add(key)
    return sorted(keys)


def _inert(settings: dict[str, Any], key: str, depth: int = 0) -> bool:
    """Whether an unused setting changes nothing: its value is neutral, or the switch it depends on is off
    (missing, false, "None", or itself inert)."""
    entry = lookup(key)
    value = settings.get(key)
    if entry is None or value is None or any(_same(value, n) for n in entry.neutral):
        return entry is not None
    if entry.switch is None or depth > 4:
        return False
    unit = re.match(r"cn_\d+_", key)
    name = (
        unit.group() + entry.switch[len("cn_N_") :]
        if unit and entry.switch.startswith("cn_N_")
        else entry.switch
    )
    switch = settings.get(name)
    off = switch is None or switch is False or (isinstance(switch, str) and switch.strip() in ("", "None"))
    return off or _inert(settings, name, depth + 1)


def _same(value: Any, neutral: Any) -> bool:
    if isinstance(value, str) and isinstance(neutral, str):
        return "".join(value.split()) == "".join(neutral.split())
    if isinstance(value, bool) or isinstance(neutral, bool):
        return value is neutral
    return (
        type(value) is type(neutral)
        and value == neutral
        or (isinstance(value, int | float) and isinstance(neutral, int | float) and value == neutral)
    )


def unused_warnings(job: DeforumImport) -> list[str]:
    """One warning for the settings flipbook doesn't use, one for keys it doesn't know (none when none)."""
    keys = unused_keys(job)
    unknown = [key for key in keys if lookup(key) is None]
    known = [key for key in keys if key not in unknown]
    warnings = []
    if known:
        warnings.append(
            f"{len(known)} Deforum settings have no flipbook counterpart and are not used: "
            f"{summarize_unmapped(known)}"
        )
    if unknown:
        warnings.append(
            f"{len(unknown)} settings are no Deforum settings flipbook knows (a newer Deforum or a fork?) and are "
            f"not used: {summarize_unmapped(unknown)}"
        )
    return warnings


# Families of Deforum keys the unused-settings warning names by prefix: (pattern, what they are).
_FAMILIES: tuple[tuple[str, str], ...] = (
    (r"cn_(\d+)_", "ControlNet"),
    (r"controlnet_", "ControlNet, single unit"),
    (r"hybrid_", "hybrid video"),
    (r"video_init_", "video input"),
    (r"video_mask_", "video mask"),
    (r"extract_", "video input frames"),
    (r"loopback_", "loopback"),
    (r"parseq_", "Parseq"),
    (r"shake_", "camera shake"),
    (r"wan_", "Wan"),
    (r"freeu_", "FreeU"),
    (r"kohya_hrfix_", "Kohya HR fix"),
    (r"frame_interpolation_", "frame interpolation"),
    (r"r_upscale_", "upscaling"),
    (r"colormatch_", "notebook colour guidance"),
    (r"init_mse_", "notebook init-image guidance"),
    (r"clamp_", "notebook gradient clamping"),
    (r"aspect_ratio_", "3D aspect ratio"),
)


def summarize_unmapped(keys: list[str]) -> str:
    """The keys as one readable line: families of two or more keys named by prefix with a count
    (``cn_1..5_* (ControlNet, 90 keys)``, ``hybrid_* (hybrid video, 21 keys)``), every other key by name;
    in the keys' alphabetical order."""
    groups: dict[str, list[str]] = {}
    labels: dict[str, str] = {}
    units: dict[str, set[int]] = {}
    for key in sorted(keys):
        for pattern, label in _FAMILIES:
            match = re.match(pattern, key)
            if match:
                groups.setdefault(pattern, []).append(key)
                labels[pattern] = label
                if match.groups():
                    units.setdefault(pattern, set()).add(int(match.group(1)))
                break
        else:
            groups[key] = [key]
    parts = []
    for name, members in sorted(groups.items(), key=lambda item: item[1][0]):
        if name not in labels or len(members) == 1:
            parts.extend(members)
            continue
        prefix = name
        if name in units:  # cn_(\d+)_: the unit numbers as a range
            low, high = min(units[name]), max(units[name])
            prefix = f"cn_{low}_" if low == high else f"cn_{low}..{high}_"
        parts.append(f"{prefix}* ({labels[name]}, {len(members)} keys)")
    return ", ".join(parts)

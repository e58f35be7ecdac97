"""Import Deforum settings files (A1111-extension ``*_settings.txt`` and notebook-era files) as flipbook specs.

Deforum writes its settings as JSON, but the files people share come from several eras and forks: CRLF line
ends, a BOM, hand edits with trailing commas or comments, ``W``/``H`` or ``width``/``height``, a ``prompts`` dict
or an ``animation_prompts`` JSON string, k-diffusion sampler names (``euler_ancestral``) or A1111 ones
(``Euler a``). Reading is lenient about the syntax; mapping is strict about meaning: values are carried over
unchanged (validation reports what flipbook can't take) and every key flipbook has no meaning for yet is
returned, so the caller can warn once instead of dropping settings silently.
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path
from typing import Any

from flipbook.errors import FlipbookError

# k-diffusion / notebook sampler names -> A1111 names (the names flipbook's samplers know).
_NOTEBOOK_SAMPLERS: dict[str, str] = {
    "klms": "LMS",
    "lms": "LMS",
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "heun": "Heun",
    "dpm2": "DPM2",
    "dpm2_ancestral": "DPM2 a",
    "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a",
    "dpm_fast": "DPM fast",
    "dpm_adaptive": "DPM adaptive",
    "dpmpp_2s_a": "DPM++ 2S a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_sde": "DPM++ SDE",
    "ddim": "DDIM",
    "plms": "PLMS",
}

# Deforum animation modes that flipbook's "travel" mode renders (camera/3D keys are reported as unmapped).
_TRAVEL_MODES = {"none", "2d", "3d"}

# Keys that are read here (directly or as an alternative spelling of another era).
_MAPPED: frozenset[str] = frozenset(
    {
        "animation_mode", "prompts", "animation_prompts", "animation_prompts_positive",
        "animation_prompts_negative", "max_frames", "W", "H", "width", "height", "seed", "sampler", "steps",
        "scale", "cfg_scale_schedule", "enable_cfg_scale_scheduling", "strength", "strength_schedule",
        "previous_frame_strength", "seed_behavior", "seed_iter_N", "seed_iter_n", "seed_schedule", "fps",
        "clip_skip", "enable_clipskip_scheduling", "clipskip_schedule", "enable_steps_scheduling",
        "steps_schedule", "enable_sampler_scheduling", "sampler_schedule",
    }
)  # fmt: skip

# Bookkeeping that describes Deforum's run rather than the animation (output paths, UI state, runtime
# scratch values written by the notebook); ignoring them loses nothing a render could use.
_BOOKKEEPING: frozenset[str] = frozenset(
    {
        "batch_name", "outdir", "timestring", "filename_format", "save_settings", "save_samples",
        "display_samples", "save_sample_per_step", "show_sample_per_step", "n_batch", "n_samples",
        "make_grid", "grid_rows", "seed_internal", "init_latent", "init_sample", "init_sample_raw",
        "mask_sample", "init_c", "prompt", "precision", "C", "f", "bit_depth_output", "log_weighted_subprompts",
        "motion_preview_mode", "show_info_on_ui", "save_depth_maps", "override_settings_with_file",
        "custom_settings_file", "restore_faces", "tiling", "sd_model_name", "sd_model_hash", "deforum_git_commit_id",
    }
)  # fmt: skip


def read_deforum_settings(path: str | Path) -> dict[str, Any]:
    """The settings in ``path`` as a dict; tolerant of BOM, CRLF, comments, trailing commas, Python literals."""
    path = Path(path)

    def fail(detail: str) -> FlipbookError:
        return FlipbookError("settings", str(path), "a Deforum settings file (JSON)", detail=detail)

    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise fail(error.strerror or str(error)) from None
    except UnicodeDecodeError as error:
        raise fail(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    data = _parse_lenient(text)
    if isinstance(data, str):
        raise fail(data)
    if not isinstance(data, dict):
        raise fail(f"the top level is a {type(data).__name__}, not an object of settings")
    return data


def _parse_lenient(text: str) -> Any:
    """JSON, then JSON with comments and trailing commas removed, then a Python dict literal; an error string
    (the strict JSON error, the most useful one) when nothing parses."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        first = f"{error.msg} at line {error.lineno} column {error.colno}"
    try:
        return json.loads(_strip_json_extras(text))
    except json.JSONDecodeError:
        pass
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
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


def deforum_to_spec_data(settings: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Spec data for ``spec_from_data`` and the sorted Deforum keys flipbook has no meaning for yet.

    Values are copied, not repaired: a width that is not a multiple of 8 or a sampler flipbook lacks is left
    for validation to report, so the user sees what their file says rather than a silent substitute.
    """
    unmapped = {k for k in settings if k not in _MAPPED and k not in _BOOKKEEPING}
    mode = _animation_mode(settings)

    sampling: dict[str, Any] = {}
    animation: dict[str, Any] = {"mode": mode}
    data: dict[str, Any] = {"version": 1}

    prompts = _prompts(settings)
    if prompts is not None:
        data["prompts"] = prompts
    for source, target in (("animation_prompts_positive", "positive_prompt"),
                           ("animation_prompts_negative", "negative_prompt")):  # fmt: skip
        if isinstance(settings.get(source), str) and settings[source].strip():
            data[target] = settings[source]

    _copy(settings, animation, "max_frames", "max_frames")
    _copy(settings, animation, ("W", "width"), "width")
    _copy(settings, animation, ("H", "height"), "height")
    _copy(settings, animation, "fps", "fps")
    strength = _first(settings, "strength_schedule", "previous_frame_strength", "strength")
    if strength is not None:
        animation["strength"] = _schedule(strength)
    if "strength_schedule" not in settings and "previous_frame_strength" in settings:
        unmapped.add("strength")  # the init-image strength of old notebooks; flipbook has no init image yet

    _copy(settings, sampling, "seed", "seed")
    _copy(settings, sampling, "seed_behavior", "seed_behavior")
    _copy(settings, sampling, ("seed_iter_N", "seed_iter_n"), "seed_iter_n")
    if settings.get("seed_behavior") == "schedule" and "seed_schedule" in settings:
        sampling["seed_schedule"] = _schedule(settings["seed_schedule"])
    cfg_keys = ("cfg_scale_schedule", "scale")
    if settings.get("enable_cfg_scale_scheduling") is False:
        cfg_keys = ("scale", "cfg_scale_schedule")  # forks with the switch use the plain scale when it's off
    cfg = _first(settings, *cfg_keys)
    if cfg is not None:
        sampling["cfg"] = _schedule(cfg)
    _scheduled(
        settings,
        sampling,
        unmapped,
        "sampler",
        "sampler_schedule",
        "enable_sampler_scheduling",
        flipbook_schedules=True,
    )
    _scheduled(settings, sampling, unmapped, "steps", "steps_schedule", "enable_steps_scheduling")
    _scheduled(settings, sampling, unmapped, "clip_skip", "clipskip_schedule", "enable_clipskip_scheduling")
    if isinstance(sampling.get("sampler"), str):
        sampling["sampler"] = deforum_sampler_name(sampling["sampler"])
    if (
        "strength_schedule" in settings
        and "strength" in settings
        and "previous_frame_strength" not in settings
    ):
        unmapped.add("strength")  # A1111 extension: init-image strength; animation strength is the schedule

    if sampling:
        data["sampling"] = sampling
    data["animation"] = animation
    return data, sorted(unmapped)


def deforum_sampler_name(name: str) -> str:
    """The A1111 name for a notebook/k-diffusion sampler name; A1111 names (and unknown ones) pass through."""
    return _NOTEBOOK_SAMPLERS.get(name.strip().casefold(), name)


def _animation_mode(settings: dict[str, Any]) -> str:
    """flipbook's mode for Deforum's ``animation_mode``; modes flipbook can't render yet are an error."""
    raw = settings.get("animation_mode", "None")
    if raw is None or (isinstance(raw, str) and raw.strip().casefold() in _TRAVEL_MODES):
        return "travel"
    raise FlipbookError(
        "animation_mode",
        raw,
        'one of "None", "2D", "3D" (imported as flipbook\'s travel mode)',
        detail="Video Input, Interpolation and other Deforum modes have no flipbook counterpart yet",
    )


def _prompts(settings: dict[str, Any]) -> dict[str, str] | None:
    """Keyframe prompts from any era: a ``prompts`` dict, an ``animation_prompts`` dict or JSON string, a
    notebook still-image list, or the notebook's inverted ``{prompt: "00000"}`` batch dict (index as frame)."""
    raw = settings.get("prompts")
    if raw is None:
        raw = settings.get("animation_prompts")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
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


def _looks_like_frame_key(key: object) -> bool:
    """Frame numbers and max_f expressions; prompt texts (with commas and spaces between words) are not."""
    if isinstance(key, int | float):
        return True
    text = str(key).strip()
    return text.lstrip("-").isdigit() or (
        "max_f" in text and re.fullmatch(r"[\w\s+\-*/().%]*", text) is not None
    )


def _first(settings: dict[str, Any], *keys: str) -> Any:
    """The value of the first key present (the newest era's spelling comes first)."""
    for key in keys:
        if key in settings and settings[key] is not None:
            return settings[key]
    return None


def _copy(
    settings: dict[str, Any], section: dict[str, Any], keys: str | tuple[str, ...], target: str
) -> None:
    value = _first(settings, *((keys,) if isinstance(keys, str) else keys))
    if value is not None:
        section[target] = value


def _schedule(value: Any) -> Any:
    """A Deforum schedule as flipbook takes it: whitespace (deforum-studio presets wrap long schedules over
    lines) collapsed, a lone constant keyframe ``0: (7)`` becoming the number 7."""
    if not isinstance(value, str):
        return value
    text = " ".join(value.split())
    constant = _constant(text)
    return constant if constant is not None else text


def _constant(text: str) -> float | int | None:
    match = re.fullmatch(r"\s*0\s*:\s*\(\s*(-?\d+(?:\.\d*)?)\s*\)\s*,?\s*", text)
    if match is None:
        return None
    number = float(match.group(1))
    return int(number) if number.is_integer() and "." not in match.group(1) else number


def _scheduled(
    settings: dict[str, Any],
    section: dict[str, Any],
    unmapped: set[str],
    key: str,
    schedule: str,
    enable: str,
    *,
    flipbook_schedules: bool = False,
) -> None:
    """A setting Deforum can schedule: the plain value, or the schedule's only value when scheduling is on and
    the schedule is constant; a varying schedule is kept when flipbook schedules it too (``flipbook_schedules``,
    e.g. the sampler), otherwise reported as unmapped."""
    value = settings.get(key)
    if settings.get(enable) and isinstance(settings.get(schedule), str):
        text = " ".join(settings[schedule].split())
        sampler = re.fullmatch(r'0\s*:\s*\(\s*"([^"]*)"\s*\)\s*,?', text)
        constant = sampler.group(1) if sampler else _constant(text)
        if constant is not None:
            value = constant
        elif flipbook_schedules:
            value = text
        else:
            unmapped.add(schedule)
    if value is not None:
        section[key] = value


# ---------------------------------------------------------------------------------------------------- TOML


def spec_to_toml(spec_data: dict[str, Any]) -> str:
    """TOML text for nested spec data; top-level scalars first, then one ``[table]`` per nested dict."""
    lines: list[str] = []
    _write_table(spec_data, (), lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _write_table(table: dict[str, Any], path: tuple[str, ...], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        lines.append("")
        lines.append(f"[{'.'.join(_key(p) for p in path)}]")
    for key, value in scalars.items():
        lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in tables.items():
        _write_table(value, (*path, key), lines)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Path):
        return _string(str(value))
    raise TypeError(f"no TOML form for {type(value).__name__}")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped (TOML forbids raw ones)."""
    out = []
    for c in text:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'

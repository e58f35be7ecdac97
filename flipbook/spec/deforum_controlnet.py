"""Deforum's ControlNet units (``cn_1_*`` ... ``cn_5_*``, and the single ``controlnet_*`` unit of early 2023) as
flipbook ``[[controlnet]]`` units.

Deforum hands each enabled unit to A1111's ControlNet extension with its module (preprocessor), model (the name
A1111 shows, ``control_v11p_sd15_canny [d14c016b]``), weight and guidance start/end schedules, and a control
image: frames of ``cn_N_vid_path`` (a picture: the same every frame), or with ``cn_N_loopback_mode`` the frame's
own input (the init image at frame 0, then the previous frame). flipbook's unit takes a model looked up by name
in the models folder (the ``[hash]`` is dropped), a preprocessor, one image, a video or the frame's own input, a
weight schedule and one guidance window. Where that differs the import says so: a module flipbook has no
preprocessor for skips the unit; a varying guidance schedule keeps its frame-0 value.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np

from flipbook.spec.schedules import ScheduleError, parse_schedule, resolve_schedule

if TYPE_CHECKING:
    from flipbook.spec.deforum import DeforumImport

# The sd-webui-controlnet extension's module names -> flipbook preprocessors (Deforum's units and the A1111 API's
# alwayson_scripts units both name modules so; the depth model that matches is below).
EXTENSION_MODULES: dict[str, str] = {
    "none": "none", "canny": "canny", "lineart": "lineart", "lineart_realistic": "lineart",
    "lineart_coarse": "lineart", "lineart_standard": "lineart", "lineart_anime": "lineart",
    "lineart_anime_denoise": "lineart", "tile_resample": "tile", "tile_colorfix": "tile",
    "tile_colorfix+sharp": "tile", "tile": "tile", "shuffle": "shuffle", "depth": "depth",
    "depth_midas": "depth", "depth_leres": "depth", "depth_leres++": "depth", "depth_zoe": "depth",
    "depth_anything": "depth", "depth_anything_v2": "depth", "openpose": "openpose", "openpose_full": "openpose",
    "openpose_face": "openpose", "openpose_faceonly": "openpose", "openpose_hand": "openpose",
    "dw_openpose_full": "openpose",
}  # fmt: skip
_DEPTH_MODELS: dict[str, str] = {
    "depth": "Intel/dpt-hybrid-midas", "depth_midas": "Intel/dpt-hybrid-midas",
    "depth_anything": "depth-anything/Depth-Anything-V2-Small-hf",
    "depth_anything_v2": "depth-anything/Depth-Anything-V2-Small-hf",
}  # fmt: skip
_DEPTH_STANDIN = "Intel/dpt-hybrid-midas"
# Modules read as a flipbook preprocessor that does a little less: said in a note.
_APPROXIMATE = {
    "lineart_anime": "flipbook's lineart (not the anime-trained one)",
    "lineart_anime_denoise": "flipbook's lineart (not the anime-trained one)",
    "depth_leres": "MiDaS depth (Intel/dpt-hybrid-midas)", "depth_leres++": "MiDaS depth (Intel/dpt-hybrid-midas)",
    "depth_zoe": "MiDaS depth (Intel/dpt-hybrid-midas)",
    "tile_colorfix": "plain tile", "tile_colorfix+sharp": "plain tile",
}  # fmt: skip
_PICTURES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")  # Deforum copies these as a single control image
_HASH = re.compile(r"\s*\[[0-9a-fA-F]{6,}\]\s*$")


def controlnet_units(job: DeforumImport, data: dict[str, Any]) -> list[dict[str, Any]]:
    """The enabled units of ``job``'s settings as ``[[controlnet]]`` tables, in Deforum's unit order. Records
    which flipbook unit each Deforum unit became (for Parseq's ``cn_N_weight``) in ``job.controlnet``."""
    units = []
    for number, prefix in _prefixes(job.settings):
        unit = _unit(job, prefix, data)
        if unit is not None:
            job.controlnet[number] = len(units)
            units.append(unit)
    return units


def _prefixes(settings: dict[str, Any]) -> list[tuple[int, str]]:
    """(unit number, key prefix) of every unit the settings name: ``cn_1_`` ... and ``controlnet_`` (unit 1 of
    early 2023, when there was one)."""
    numbers = sorted({int(m.group(1)) for key in settings if (m := re.match(r"cn_(\d+)_enabled$", key))})
    prefixes = [(n, f"cn_{n}_") for n in numbers]
    if "controlnet_enabled" in settings and 1 not in numbers:
        prefixes.insert(0, (1, "controlnet_"))
    return prefixes


def _unit(job: DeforumImport, prefix: str, data: dict[str, Any]) -> dict[str, Any] | None:
    s = job.settings
    if not s.get(f"{prefix}enabled"):
        return None
    name = f"{prefix}model"
    model = _HASH.sub("", str(s.get(name) or "")).strip()
    if not model or model == "None":
        job.note(
            f"{name}: the unit is on without a model; ControlNet does nothing without one, so it is skipped"
        )
        return None
    unit: dict[str, Any] = {"model": model}
    module = str(s.get(f"{prefix}module") or "none").strip()
    preprocessor = EXTENSION_MODULES.get(module)
    if preprocessor is None:
        job.note(f"{prefix}module: flipbook has no {module!r} preprocessor (it has none, canny, lineart, tile, "
                 f"shuffle, depth, openpose), so the {model} unit is skipped")  # fmt: skip
        return None
    unit["preprocessor"] = preprocessor
    if module in _APPROXIMATE:
        job.note(f"{prefix}module: {module!r} is read as {_APPROXIMATE[module]}")
    if preprocessor == "depth":
        unit["preprocessor_model"] = _DEPTH_MODELS.get(module, _DEPTH_STANDIN)
    if not _control_image(job, prefix, unit):
        return None
    if not _guidance(job, prefix, unit):
        return None
    if preprocessor == "canny":
        _thresholds(job, prefix, unit)
    weight = s.get(f"{prefix}weight")
    if weight is not None:
        unit["weight"] = job.schedule(f"{prefix}weight")
    from flipbook.spec.deforum import deforum_mode_in

    if (
        "image" not in unit
        and "video" not in unit
        and "image" not in data.get("init", {})
        and not deforum_mode_in(job.settings, "Video Input")
    ):
        unit["weight"] = off_at_frame_zero(unit.get("weight", 1.0))
        job.note(f"{prefix[:-1]}: frame 0 is txt2img without an init image, so the unit has no image to control "
                 "with there and is off for it (weight 0), as in Deforum")  # fmt: skip
    return unit


def _control_image(job: DeforumImport, prefix: str, unit: dict[str, Any]) -> bool:
    """The unit's image from ``vid_path``: a picture is the control image, a video's frame N controls frame N
    (Deforum extracts every frame from the first; in Video Input mode it follows the init video's
    ``extract_nth_frame``/``extract_from_frame``, which flipbook's unit doesn't: noted). With loopback mode,
    or no path, the unit controls with each frame's own input."""
    from flipbook.spec.deforum import deforum_mode_in

    s = job.settings
    key = f"{prefix}vid_path"
    path = s.get(key)
    if s.get(f"{prefix}loopback_mode") or not isinstance(path, str) or not path.strip():
        return True
    index = len(job.controlnet)
    if PurePath(path.strip().split("?")[0]).suffix.lower() in _PICTURES:
        unit["image"] = job.local_path(key, path, f"controlnet.{index}.image")
        return True
    unit["video"] = job.local_path(key, path, f"controlnet.{index}.video")
    nth, start = s.get("extract_nth_frame", 1), s.get("extract_from_frame", 0)
    if deforum_mode_in(s, "Video Input") and (nth, start) != (1, 0):
        job.note(f"{key}: Deforum reads this video's frames as the init video's (extract_nth_frame {nth}, "
                 f"extract_from_frame {start}); flipbook's unit reads frame N for frame N from the first frame")  # fmt: skip
    return True


def _guidance(job: DeforumImport, prefix: str, unit: dict[str, Any]) -> bool:
    """Guidance start and end (schedules in Deforum, one window in flipbook): a varying schedule keeps its
    frame-0 value (noted); a window that ends before it starts does nothing in ControlNet: the unit is
    skipped (noted). The single unit's ``guidance_strength`` was ControlNet's name for the end."""
    for target, keys in (("guidance_start", ("guidance_start",)),
                         ("guidance_end", ("guidance_end", "guidance_strength"))):  # fmt: skip
        key = next((f"{prefix}{k}" for k in keys if job.settings.get(f"{prefix}{k}") is not None), None)
        if key is None:
            continue
        value = job.schedule(key)
        if isinstance(value, str):
            value = frame_zero_value(value, job.settings)
            job.note(f"{key}: a varying schedule; flipbook's units have one guidance window, so its frame-0 "
                     f"value {value:g} is used")  # fmt: skip
        unit[target] = float(value)
    start, end = unit.get("guidance_start", 0.0), unit.get("guidance_end", 1.0)
    if not 0 <= start < end <= 1:
        job.note(f"{prefix[:-1]}: guidance from {start:g} to {end:g} leaves ControlNet nothing to act on, so the "
                 f"{unit['model']} unit is skipped")  # fmt: skip
        return False
    return True


def _thresholds(job: DeforumImport, prefix: str, unit: dict[str, Any]) -> None:
    """Canny's thresholds (ControlNet's threshold A and B), kept within 0-255 and in order as OpenCV takes
    them (noted when that changes them)."""
    values = []
    for key in (f"{prefix}threshold_a", f"{prefix}threshold_b"):
        value = job.settings.get(key)
        values.append(
            int(round(float(value)))
            if isinstance(value, int | float) and not isinstance(value, bool)
            else None
        )
    if None in values:
        return
    low, high = sorted(min(max(v, 0), 255) for v in values)
    if [low, high] != values:
        job.note(f"{prefix}threshold_a/b: {values[0]}, {values[1]} are read as canny thresholds {low}, {high} "
                 "(0-255, low first, as OpenCV takes them)")  # fmt: skip
    unit["low_threshold"], unit["high_threshold"] = low, high


def frame_zero_value(text: str, settings: dict[str, Any]) -> float:
    """A schedule's value at frame 0."""
    frames = settings.get("max_frames")
    frames = frames if isinstance(frames, int) and frames > 0 else 1
    return float(resolve_schedule(text, max_frames=frames, fps=float(settings.get("fps") or 15), seed=0)[0])


def off_at_frame_zero(weight: Any) -> Any:
    """A weight schedule that is 0 at frame 0 and otherwise the same: ``w`` becomes ``0: (0), 1: (w)``; a
    schedule keeps its keys from frame 1 on, with frame 1's value written out where it was interpolated."""
    if not isinstance(weight, str):
        return f"0: (0), 1: ({weight})"
    try:
        keyframes = parse_schedule(weight)
    except ScheduleError:
        return weight  # validation names it
    later = [k for k in keyframes if k.frame is None or k.frame >= 1]
    if any(k.frame == 1 for k in later):
        first = ""
    else:
        values = resolve_schedule(weight, max_frames=max(2, max((k.frame or 0 for k in keyframes), default=0) + 1),
                                  fps=15.0, seed=0)  # fmt: skip
        expression = next((k for k in keyframes if k.frame == 0 and not _is_number(k.value)), None)
        first = f"1: ({expression.value}), " if expression is not None else f"1: ({_number(values[1])}), "
    rest = ", ".join(f"{_key(k)}: ({k.value})" for k in later)
    return f"0: (0), {first}{rest}".rstrip(", ")


def _key(keyframe) -> str:
    return str(keyframe.frame) if keyframe.frame is not None else f'"{keyframe.key}"'


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _number(value: float) -> str:
    return repr(float(np.round(value, 12)))

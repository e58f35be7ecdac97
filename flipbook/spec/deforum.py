"""Import Deforum settings files (A1111-extension ``*_settings.txt`` and notebook-era files) as flipbook specs.

Deforum writes its settings as JSON, but the files people share come from several eras and forks: CRLF line
ends, a BOM, hand edits with trailing commas or comments, ``W``/``H`` or ``width``/``height``, a ``prompts`` dict
or an ``animation_prompts`` JSON string, k-diffusion sampler names (``euler_ancestral``) or A1111 ones
(``Euler a``). Reading is lenient about the syntax; mapping is strict about meaning: values are carried over
unchanged (validation reports what flipbook can't take) and every key flipbook has no meaning for yet is
returned, so the caller can warn once instead of dropping settings silently.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from flipbook.errors import FlipbookError
from flipbook.modes import for_deforum
from flipbook.spec.safe_parse import check_data, parse_json, parse_python_literal

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

# Deforum camera schedules -> ``[camera]`` fields (notebook spellings after the A1111 ones).
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
    ("color_force_grayscale",): "color_force_grayscale", ("perlin_octaves",): "perlin_octaves",
    ("perlin_persistence",): "perlin_persistence", ("save_depth_maps",): "save_depth_maps",
}  # fmt: skip

# Deforum ``color_coherence`` names (casefolded) -> flipbook's; "Image" (LAB against ``color_coherence_image_path``)
# and "Video Input" (LAB against the hybrid video's frames) are handled on their own, anything else is copied for
# validation to report.
_COLOR_COHERENCE = {
    "none": "none", "rgb": "rgb", "match frame 0 rgb": "rgb", "hsv": "hsv", "match frame 0 hsv": "hsv",
    "lab": "lab", "match frame 0 lab": "lab",
}  # fmt: skip

# Deforum ``noise_type`` -> flipbook's: Deforum's "uniform" noise is drawn with randn, i.e. Gaussian.
_NOISE_TYPES = {"uniform": "gaussian", "perlin": "perlin"}

# Deforum ``depth_algorithm`` (casefolded) -> the same model on the Hugging Face hub; Zoe, AdaBins and LeReS
# (and any other name) are reported as unmapped and the default depth model is kept.
_DEPTH_MODELS = {
    "depth-anything-v2-small": "depth-anything/Depth-Anything-V2-Small-hf",
    "midas-3-hybrid": "Intel/dpt-hybrid-midas",
    "midas-3.1-beitlarge": "Intel/dpt-beit-large-512",
}

# Keys that are read here (directly, as an alternative spelling of another era, or as a switch that makes
# another key inert).
_MAPPED: frozenset[str] = frozenset(
    {
        "animation_mode", "prompts", "animation_prompts", "animation_prompts_positive",
        "animation_prompts_negative", "max_frames", "W", "H", "width", "height", "seed", "sampler", "steps",
        "scale", "cfg_scale_schedule", "enable_cfg_scale_scheduling", "strength", "strength_schedule",
        "previous_frame_strength", "seed_behavior", "seed_iter_N", "seed_iter_n", "seed_schedule", "fps",
        "clip_skip", "enable_clipskip_scheduling", "clipskip_schedule", "enable_steps_scheduling",
        "steps_schedule", "enable_sampler_scheduling", "sampler_schedule", "enable_checkpoint_scheduling",
        "checkpoint_schedule",
        # [camera]
        *(key for keys in (*_CAMERA_SCHEDULES, *_CAMERA_PLAIN) for key in keys), "border", "diffusion_cadence",
        "optical_flow_cadence", "color_coherence", "color_coherence_image_path",
        "color_coherence_video_every_N_frames", "noise_type",
        "enable_noise_multiplier_scheduling", "noise_multiplier_schedule", "depth_algorithm", "use_depth_warping",
        # [init]
        "use_init", "init_image", "strength_0_no_init", "use_mask", "mask_file", "invert_mask",
        "mask_overlay_blur", "use_alpha_as_mask",
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
        "motion_preview_mode", "show_info_on_ui", "override_settings_with_file",
        "custom_settings_file", "restore_faces", "tiling", "sd_model_name", "sd_model_hash", "deforum_git_commit_id",
        "hybrid_comp_save_extra_frames", "overwrite_extracted_frames",
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
    data = _parse_lenient(text, str(path))
    if isinstance(data, str):
        raise fail(data)
    if not isinstance(data, dict):
        raise fail(f"the top level is a {type(data).__name__}, not an object of settings")
    return data


def _parse_lenient(text: str, source: str = "text") -> Any:
    """JSON, then JSON with comments and trailing commas removed, then a Python dict literal; an error string
    (the strict JSON error, the most useful one) when nothing parses. Nesting, huge numbers and lone
    surrogates are a SpecError whichever way the text is read (see :mod:`flipbook.spec.safe_parse`)."""
    try:
        return parse_json(text, field="settings", source=source)
    except json.JSONDecodeError as error:
        first = f"{error.msg} at line {error.lineno} column {error.colno}"
    try:
        return parse_json(_strip_json_extras(text), field="settings", source=source)
    except json.JSONDecodeError:
        pass
    try:
        value = parse_python_literal(text.strip(), field="settings", source=source)
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
    # ``strength`` is the animation strength only in files without a schedule for it (notebook stills); with
    # ``strength_schedule`` (A1111 extension) or ``previous_frame_strength`` (old notebooks) it is the init
    # image's strength, see _init
    strength = _first(settings, "strength_schedule", "previous_frame_strength", "strength")
    if strength is not None:
        animation["strength"] = _schedule(strength)

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
    _scheduled(
        settings,
        sampling,
        unmapped,
        "steps",
        "steps_schedule",
        "enable_steps_scheduling",
        flipbook_schedules=True,
    )
    _scheduled(settings, sampling, unmapped, "clip_skip", "clipskip_schedule", "enable_clipskip_scheduling")
    if isinstance(sampling.get("sampler"), str):
        sampling["sampler"] = deforum_sampler_name(sampling["sampler"])

    model = _checkpoint(settings)
    if model:
        data["model"] = model
    if sampling:
        data["sampling"] = sampling
    data["animation"] = animation
    init = _init(settings, unmapped)
    if init:
        data["init"] = init
    camera = _camera(settings, unmapped)
    if camera:
        data["camera"] = camera
    if _deforum_mode_in(settings, "Video Input"):
        _video_input(settings, data, unmapped)
    if _deforum_mode_in(settings, "2D", "3D"):
        hybrid = _hybrid(settings, unmapped)
        if hybrid:
            data.setdefault("camera", {}).update(hybrid)
    return data, sorted(unmapped)


_HYBRID_MOTION = {
    "none": "none",
    "optical flow": "optical_flow",
    "perspective": "perspective",
    "affine": "affine",
}
_HYBRID_MASKS = {"none": "none", "video depth": "depth", "blend": "blend", "difference": "difference"}
_HYBRID_COMPOSITE = {"none": "none", "normal": "normal", "before motion": "before_motion",
                     "after generation": "after_generation"}  # fmt: skip
# Deforum's RAFT is torchvision's RAFT-large, which flipbook doesn't have; its closest flow is OpenCV DIS (which
# Deforum offers as "DIS Medium"). The substitution is reported by deforum_quirks.
_RAFT_NOTE = ('hybrid_flow_method: "RAFT" (torchvision\'s RAFT-large, which flipbook doesn\'t have) read as "dis", '
              'OpenCV\'s DIS optical flow (Deforum\'s "DIS Medium")')  # fmt: skip


def _hybrid_composite(settings: dict[str, Any]) -> Any:
    """``hybrid_composite`` as flipbook's name; early-2023 files have a switch, whose "on" was "Normal"."""
    raw = settings.get("hybrid_composite")
    if isinstance(raw, bool):
        return "normal" if raw else "none"
    return _named(raw, _HYBRID_COMPOSITE)


def _uses_hybrid_video(settings: dict[str, Any]) -> bool:
    """Deforum's hybrid video is in use: a 2D/3D file with ``hybrid_motion`` or ``hybrid_composite`` on
    (render.py's ``hybrid_available``)."""
    if not _deforum_mode_in(settings, "2D", "3D"):
        return False
    motion = _named(settings.get("hybrid_motion"), _HYBRID_MOTION)
    return motion not in (None, "none") or _hybrid_composite(settings) not in (None, "none")


def _hybrid(settings: dict[str, Any], unmapped: set[str]) -> dict[str, Any]:
    """Hybrid video (2D/3D): ``video_init_path`` is the hybrid video when ``hybrid_motion`` or
    ``hybrid_composite`` is on. RAFT flow is read as DIS (reported by :func:`deforum_quirks`); values flipbook
    does otherwise (DenseRLOF/SF flow, a "Depth" mask of the generated frame) are copied for validation to
    report. Settings left at what flipbook does, or made inert by another (a mask contrast without a mask), are
    read; the others stay unmapped."""
    if not _uses_hybrid_video(settings):
        return {}
    motion = _named(settings.get("hybrid_motion"), _HYBRID_MOTION)
    composite = _hybrid_composite(settings)
    camera: dict[str, Any] = {"hybrid_motion": motion or "none", "hybrid_composite": composite or "none"}
    path = settings.get("video_init_path")
    if isinstance(path, str) and path.strip():
        camera["hybrid_video"] = path.strip()
    method = settings.get("hybrid_flow_method")
    if motion == "optical_flow" and isinstance(method, str):
        camera["hybrid_flow_method"] = _flow_method(method)
    for key, target in (("hybrid_flow_factor_schedule", "hybrid_flow_factor"),
                        ("hybrid_comp_alpha_schedule", "hybrid_comp_alpha")):  # fmt: skip
        if key in settings:
            camera[target] = _schedule(settings[key])
    mask = None
    if composite not in (None, "none"):
        mask = _named(settings.get("hybrid_comp_mask_type"), _HYBRID_MASKS)
        if mask is not None:
            camera["hybrid_comp_mask_type"] = mask
        if isinstance(settings.get("hybrid_comp_mask_inverse"), bool):
            camera["hybrid_comp_mask_inverse"] = settings["hybrid_comp_mask_inverse"]
    unmapped -= {"hybrid_motion", "hybrid_composite", "video_init_path", "hybrid_flow_method",
                 "hybrid_flow_factor_schedule", "hybrid_comp_alpha_schedule", "hybrid_comp_mask_type",
                 "hybrid_comp_mask_inverse"}  # fmt: skip
    unmapped -= {key for key in _HYBRID_READ & unmapped if _hybrid_key_read(settings, key, motion, mask)}
    return camera


# Hybrid settings read when they are what flipbook does anyway, see _hybrid_key_read.
_HYBRID_READ = frozenset(
    {
        "hybrid_motion_use_prev_img", "hybrid_flow_consistency", "hybrid_consistency_blur",
        "hybrid_comp_mask_equalize", "hybrid_comp_mask_auto_contrast",
        "hybrid_comp_mask_auto_contrast_cutoff_low_schedule", "hybrid_comp_mask_auto_contrast_cutoff_high_schedule",
        "hybrid_comp_mask_contrast_schedule", "hybrid_comp_mask_blend_alpha_schedule", "hybrid_use_init_image",
        "hybrid_use_first_frame_as_init_image", "hybrid_generate_human_masks", "hybrid_generate_inputframes",
        "extract_nth_frame", "extract_from_frame", "extract_to_frame",
    }
)  # fmt: skip


def _flow_method(method: str) -> str:
    """Deforum's flow names: DIS presets -> "dis", Farneback -> "farneback", RAFT -> "dis" (reported); others
    are copied for validation to report."""
    name = method.strip()
    if name.upper().startswith("DIS") or name.casefold() == "raft":
        return "dis"
    return "farneback" if name.casefold() == "farneback" else name


def _hybrid_key_read(settings: dict[str, Any], key: str, motion: Any, mask: Any) -> bool:
    """Whether a hybrid setting is what flipbook does anyway (so it is read, not reported): a switch that is
    off (previous-image motion, flow consistency, mask equalize / auto contrast, compositing the init image, the
    first video frame as init image, human masks), frames extracted from the video (every frame, from the
    first to the last, as flipbook reads them), or a setting made inert by another (mask settings without a
    mask, flow settings without optical flow)."""
    value = settings[key]
    no_mask = mask in (None, "none")
    off = value is False or (isinstance(value, str) and value.strip().casefold() == "none")
    if key == "hybrid_motion_use_prev_img":
        return off or motion in (None, "none")
    if key in ("hybrid_flow_consistency", "hybrid_consistency_blur"):
        return motion != "optical_flow" or settings.get("hybrid_flow_consistency") is False
    if key in ("hybrid_comp_mask_equalize", "hybrid_comp_mask_auto_contrast"):
        return off or no_mask
    if key.startswith("hybrid_comp_mask_auto_contrast_cutoff_"):
        return no_mask or settings.get("hybrid_comp_mask_auto_contrast") is False
    if key == "hybrid_comp_mask_contrast_schedule":
        return no_mask or _schedule(value) == 1
    if key == "hybrid_comp_mask_blend_alpha_schedule":  # flipbook's blend mask is the plain average
        return mask != "blend" or _schedule(value) == 0.5
    if key in (
        "hybrid_use_init_image",
        "hybrid_use_first_frame_as_init_image",
        "hybrid_generate_human_masks",
    ):
        return off
    if key == "hybrid_generate_inputframes":
        return value is True
    default = {"extract_nth_frame": 1, "extract_from_frame": 0, "extract_to_frame": -1}.get(key)
    return type(value) is int and value == default


def _named(value: Any, names: dict[str, str]) -> Any:
    """``names[value]`` matched case-insensitively; other values are returned as they are (None stays None)."""
    if isinstance(value, str):
        return names.get(value.strip().casefold(), value)
    return value


def _video_input(settings: dict[str, Any], data: dict[str, Any], unmapped: set[str]) -> None:
    """Deforum's Video Input mode: the source video, which frames to extract, and the mask video.

    ``extract_to_frame`` is inclusive in Deforum (-1: to the end), ``video.end_frame`` exclusive. Deforum keeps
    frames whose absolute index is a multiple of ``extract_nth_frame``; flipbook counts from ``start_frame``
    (the same unless the start is not a multiple of n)."""
    path = settings.get("video_init_path")
    if isinstance(path, str) and path.strip():
        data.setdefault("init", {})["video"] = path.strip()
    video: dict[str, Any] = {}
    _copy(settings, video, "extract_nth_frame", "every_nth")
    _copy(settings, video, "extract_from_frame", "start_frame")
    end = settings.get("extract_to_frame")
    if isinstance(end, int) and not isinstance(end, bool) and end >= 0:
        video["end_frame"] = end + 1
    mask = settings.get("video_mask_path")
    if settings.get("use_mask_video") and isinstance(mask, str) and mask.strip():
        video["mask_video"] = mask.strip()
    if video:
        data["video"] = video
    unmapped -= {"video_init_path", "extract_nth_frame", "extract_from_frame", "extract_to_frame",
                 "use_mask_video", "video_mask_path"}  # fmt: skip


def _checkpoint(settings: dict[str, Any]) -> dict[str, Any]:
    """``model.name`` from an enabled ``checkpoint_schedule``: the one name when constant, else the schedule
    (flipbook switches checkpoints mid-animation too). Disabled, the schedule is inert, as in Deforum."""
    schedule = settings.get("checkpoint_schedule")
    if not settings.get("enable_checkpoint_scheduling") or not isinstance(schedule, str):
        return {}
    text = " ".join(schedule.split())
    single = re.fullmatch(r'0\s*:\s*\(\s*"([^"]*)"\s*\)\s*,?', text)
    return {"name": single.group(1) if single else text}


def _camera(settings: dict[str, Any], unmapped: set[str]) -> dict[str, Any]:
    """``[camera]`` from Deforum's keyframes tab (motion, depth, cadence, colour coherence, noise, anti-blur)."""
    camera: dict[str, Any] = {}
    for keys, target in _CAMERA_SCHEDULES.items():
        value = _first(settings, *keys)
        if value is not None:
            camera[target] = _schedule(value)
    for keys, target in _CAMERA_PLAIN.items():
        _copy(settings, camera, keys, target)
    border = settings.get("border")
    if border is not None:
        camera["border"] = border.strip().lower() if isinstance(border, str) else border
    cadence = settings.get("diffusion_cadence")
    if cadence is not None:
        camera["cadence"] = _integer(cadence)
    flow = settings.get("optical_flow_cadence")
    if isinstance(flow, str):
        name = flow.strip()
        # DIS Fine / DIS Medium / DIS UltraFine are OpenCV DIS presets; RAFT, Farneback, ... are copied as they
        # are for validation to report (flipbook has no RAFT model to substitute silently)
        camera["optical_flow_cadence"] = (
            "none" if name.casefold() == "none" else "dis" if name.upper().startswith("DIS") else flow
        )
    _color_coherence(settings, camera)
    noise_type = settings.get("noise_type")
    if noise_type is not None:
        key = noise_type.strip().casefold() if isinstance(noise_type, str) else noise_type
        camera["noise_type"] = _NOISE_TYPES.get(key, noise_type)
    multiplier = settings.get("noise_multiplier_schedule")
    if multiplier is not None and settings.get("enable_noise_multiplier_scheduling", True):
        camera["noise_multiplier"] = _schedule(multiplier)
    if settings.get("use_depth_warping") is False:
        camera["depth_model"] = "flat"  # Deforum 3D without depth warping moves a flat picture
    elif isinstance(settings.get("depth_algorithm"), str):
        model = _DEPTH_MODELS.get(settings["depth_algorithm"].strip().casefold())
        if model is None:
            unmapped.add("depth_algorithm")  # Zoe, AdaBins, LeReS: no transformers model; the default is kept
        else:
            camera["depth_model"] = model
    return camera


def _color_coherence(settings: dict[str, Any], camera: dict[str, Any]) -> None:
    """Deforum's colour-coherence names; "Image" is LAB matching against ``color_coherence_image_path``, "Video
    Input" LAB matching against the hybrid video's frame, refreshed every ``color_coherence_video_every_N_frames``
    frames ("video"). Without hybrid video in use Deforum has no video sample and matches LAB against the first
    warped frame: read as "lab" (reported by :func:`deforum_quirks`)."""
    raw = settings.get("color_coherence")
    if not isinstance(raw, str):
        if raw is not None:
            camera["color_coherence"] = raw
        return
    name = raw.strip().casefold()
    path = settings.get("color_coherence_image_path")
    if name == "image" and isinstance(path, str) and path.strip():
        camera["color_coherence"] = "lab"
        camera["color_coherence_image"] = path
    elif name == "video input":
        camera["color_coherence"] = "video" if _uses_hybrid_video(settings) else "lab"
        every = settings.get("color_coherence_video_every_N_frames")
        if camera["color_coherence"] == "video" and every is not None:
            camera["color_coherence_video_every_n"] = _integer(every)
    else:  # an "Image" without a path is copied as it is, for validation to report
        camera["color_coherence"] = _COLOR_COHERENCE.get(name, raw)


def _init(settings: dict[str, Any], unmapped: set[str]) -> dict[str, Any]:
    """``[init]``: the init image (with ``use_init``) and its strength, and the mask (with ``use_mask``, or the
    init image's alpha channel with ``use_alpha_as_mask``, as Deforum takes it). ``strength_0_no_init`` needs no
    field: flipbook makes frame 0 without an init image by txt2img, which is what that switch asks for."""
    init: dict[str, Any] = {}
    image = settings.get("init_image")
    if settings.get("use_init") and isinstance(image, str) and image.strip():
        init["image"] = image
        if settings.get("strength") is not None:
            init["strength"] = settings["strength"]
    mask = settings.get("mask_file")
    use_alpha = bool(settings.get("use_alpha_as_mask"))
    if settings.get("use_mask") and isinstance(mask, str) and mask.strip():
        init["mask"] = mask
        if use_alpha:
            unmapped.add("use_alpha_as_mask")  # Deforum's alpha mask comes from the init image; one mask here
    elif use_alpha and "image" in init:
        init["mask"] = init["image"]
        init["mask_use_alpha"] = True
    if "mask" in init:
        _copy(settings, init, "invert_mask", "mask_invert")
        _copy(settings, init, "mask_overlay_blur", "mask_feather")
    return init


def _integer(value: Any) -> Any:
    """``2``, ``2.0`` and ``"2"`` as the int 2; anything else as it is (validation reports it)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Families of Deforum keys the unmapped-settings warning names by prefix: (pattern, what they are).
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
    """The unmapped keys as one readable line: families of two or more keys named by prefix with a count
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


def deforum_sampler_name(name: str) -> str:
    """The A1111 name for a notebook/k-diffusion sampler name; A1111 names (and unknown ones) pass through."""
    return _NOTEBOOK_SAMPLERS.get(name.strip().casefold(), name)


def _deforum_mode_in(settings: dict[str, Any], *names: str) -> bool:
    """Whether Deforum's ``animation_mode`` is one of ``names`` (Deforum's spelling, matched case-insensitively)."""
    raw = settings.get("animation_mode")
    return isinstance(raw, str) and raw.strip().casefold() in {name.casefold() for name in names}


def _animation_mode(settings: dict[str, Any]) -> str:
    """flipbook's mode for Deforum's ``animation_mode`` (None -> travel, 2D -> 2d, 3D -> 3d, Video Input ->
    video); Interpolation and other modes flipbook can't render yet are an error."""
    raw = settings.get("animation_mode", "None")
    mode = for_deforum(raw)  # each mode declares the Deforum modes it imports
    if mode is not None:
        return mode.name
    raise FlipbookError(
        "animation_mode",
        raw,
        'one of "None" (imported as flipbook\'s travel mode), "2D", "3D", "Video Input"',
        detail="Deforum's Interpolation mode has no flipbook counterpart yet (flipbook's interpolate mode is "
        "a latent walk, not the same thing)",
    )


def _prompts(settings: dict[str, Any]) -> dict[str, str] | None:
    """Keyframe prompts from any era: a ``prompts`` dict, an ``animation_prompts`` dict or JSON string, a
    notebook still-image list, or the notebook's inverted ``{prompt: "00000"}`` batch dict (index as frame)."""
    raw = settings.get("prompts")
    if raw is None:
        raw = settings.get("animation_prompts")
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


# A keyframe written with its frame twice, "0: 0: (x)": Deforum's regex parser reads the key next to the
# parenthesis and skips the stray one before it.
_DOUBLED_KEY = re.compile(r"(^|,)\s*\d+\s*:\s*(?=\d+\s*:\s*\()")


def _schedule(value: Any) -> Any:
    """A Deforum schedule as flipbook takes it: whitespace (deforum-studio presets wrap long schedules over
    lines) collapsed, a doubled key ``0: 0: (x)`` read as Deforum reads it (reported by
    :func:`deforum_quirks`), a lone constant keyframe ``0: (7)`` becoming the number 7."""
    if not isinstance(value, str):
        return value
    text = _DOUBLED_KEY.sub(lambda m: m.group(1) + " " if m.group(1) else "", " ".join(value.split())).strip()
    constant = _constant(text)
    return constant if constant is not None else text


def deforum_quirks(settings: dict[str, Any]) -> list[str]:
    """What the import reads otherwise than as written, one line each, so the user sees it (nothing is changed
    silently): values read the way Deforum's lenient parser reads them, and values flipbook can't take as they
    are, read as its closest counterpart (RAFT flow as DIS; "Video Input" colours without a hybrid video as
    LAB)."""
    notes = []
    for key, value in settings.items():
        if isinstance(value, str) and _DOUBLED_KEY.search(" ".join(value.split())):
            notes.append(
                f"{key}: a keyframe with a doubled frame number ('0: 0: (...)') read as Deforum reads it"
            )
    hybrid = _uses_hybrid_video(settings)
    method = settings.get("hybrid_flow_method")
    motion = _named(settings.get("hybrid_motion"), _HYBRID_MOTION)
    if (
        hybrid
        and motion == "optical_flow"
        and isinstance(method, str)
        and method.strip().casefold() == "raft"
    ):
        notes.append(_RAFT_NOTE)
    coherence = settings.get("color_coherence")
    camera_mode = _deforum_mode_in(settings, "2D", "3D")
    if (
        camera_mode
        and not hybrid
        and isinstance(coherence, str)
        and coherence.strip().casefold() == "video input"
    ):
        notes.append(
            'color_coherence: "Video Input" without hybrid video in use has no video to match: read as "lab" '
            "(Deforum then matches LAB against the first warped frame)"
        )
    return notes


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


def import_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Spec data from Deforum settings, and what the user must be told: values read otherwise than written
    (:func:`deforum_quirks`) and the settings with no flipbook meaning yet, as one warning. The CLI and the
    HTTP API both import through here, so they say the same things."""
    check_data(settings, field="settings")
    data, unmapped = deforum_to_spec_data(settings)
    warnings = deforum_quirks(settings)
    if unmapped:
        warnings.append(
            f"{len(unmapped)} Deforum settings have no flipbook meaning yet and are not used: "
            f"{summarize_unmapped(unmapped)}"
        )
    return data, warnings

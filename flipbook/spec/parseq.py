"""Parseq manifests: per-frame values rendered by Parseq (github.com/rewbs/sd-parseq), read as Deforum reads them.

A manifest is JSON: ``options`` (``output_fps``, ``cadence``, ``bpm``...), ``keyframes`` and ``prompts`` (the
Parseq document), ``managedFields``, and ``rendered_frames``: one object per frame with ``frame`` and a value for
every field Parseq manages (``zoom``, ``angle``, ``translation_x``..., ``strength``, ``scale``, ``seed``,
``deforum_prompt``...) plus ``<field>_delta`` (the change since the frame before; for ``zoom`` 1 + it) and
``<field>_pc``. Deforum's Parseq adapter (``parseq_adapter.py``) takes schedules from the rendered values only:

- a field present in frame 0 replaces Deforum's schedule of the same name (``scale`` is the cfg, ``noise`` the
  noise schedule, ``antiblur_*`` the unsharp mask, ``seed`` the seeds, ``deforum_prompt`` the prompts as
  ``positive --neg negative``); frames past the last rendered one keep its values;
- motion (angle, zoom, translations, 3D rotations, perspective flip angles) comes from the ``_delta`` values
  with ``parseq_use_deltas`` on (the default), the absolute values otherwise;
- with ``parseq_non_schedule_overrides`` on (the default) the manifest's frame count, ``output_fps`` and
  ``cadence`` replace max_frames, fps and cadence;
- the 2D perspective flip is always on.

The per-frame values become schedules with a keyframe wherever a value changes (``0: (1.0), 1: (1.02), ...``;
runs of one value keep only their ends), which flipbook's linear interpolation reads back exactly, and which
keep working when ``--set animation.max_frames`` shortens the animation. Keyframes are not rendered again: that
is Parseq's language, and Deforum doesn't either. Manifests are inline JSON or a local file; a URL is an error
that says how to pass the file (flipbook never downloads).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flipbook.errors import FlipbookError

if TYPE_CHECKING:
    from flipbook.spec.deforum import DeforumImport

FIELD = "parseq_manifest"
ALLOWED = "a Parseq manifest: its JSON text or a local .json file with rendered_frames"

# Parseq motion fields (``_delta`` with parseq_use_deltas) -> [camera] fields.
MOTION: dict[str, str] = {
    name: name for name in (
        "angle", "zoom", "translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y",
        "rotation_3d_z", "perspective_flip_theta", "perspective_flip_phi", "perspective_flip_gamma")
}  # fmt: skip
# Other Parseq fields Deforum reads -> flipbook fields (section.field).
SCHEDULES: dict[str, str] = {
    "perspective_flip_fv": "camera.perspective_flip_fv", "noise": "camera.noise", "contrast": "camera.contrast",
    "fov": "camera.fov", "near": "camera.near", "far": "camera.far", "antiblur_kernel": "camera.antiblur_kernel",
    "antiblur_sigma": "camera.antiblur_sigma", "antiblur_amount": "camera.antiblur_amount",
    "antiblur_threshold": "camera.antiblur_threshold", "transform_center_x": "camera.transform_center_x",
    "transform_center_y": "camera.transform_center_y", "noise_multiplier": "camera.noise_multiplier",
    "cadence_flow_factor": "camera.cadence_flow_factor", "hybrid_comp_alpha": "camera.hybrid_comp_alpha",
    "hybrid_flow_factor": "camera.hybrid_flow_factor", "strength": "animation.strength", "scale": "sampling.cfg",
}  # fmt: skip
# Fields Deforum reads from a manifest that flipbook has no counterpart for.
UNSUPPORTED: frozenset[str] = frozenset(
    {"ddim_eta", "ancestral_eta", "pix2pix_img_cfg_scale", "checkpoint", "mask", "noise_mask", "aspect_ratio",
     "redo_flow_factor", "hybrid_comp_mask_blend_alpha", "hybrid_comp_mask_contrast",
     "hybrid_comp_mask_auto_contrast_cutoff_high", "hybrid_comp_mask_auto_contrast_cutoff_low",
     "guided_blendFactorMax", "guided_blendFactorSlope", "guided_tweening_frames",
     "guided_color_correction_factor"}
)  # fmt: skip
_THREE_D = ("translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z", "fov", "near", "far")


def is_parseq_manifest(document: Any) -> bool:
    """Whether parsed JSON is a Parseq manifest: rendered frames, or Parseq's own ``meta.generated_by``."""
    if not isinstance(document, dict):
        return False
    meta = document.get("meta")
    made_by_parseq = isinstance(meta, dict) and meta.get("generated_by") == "sd_parseq"
    return made_by_parseq or (
        isinstance(document.get("rendered_frames"), list) and "animation_mode" not in document
    )


def load_manifest(value: str, *, base: Path | None, field: str = FIELD) -> dict[str, Any]:
    """The manifest ``value`` names: its JSON text, or a local file (relative to ``base``; None reads no
    files). A URL is an error saying how to pass the manifest, since flipbook never downloads."""
    from flipbook.spec.deforum import parse_lenient

    text = value.strip()
    if text.startswith(("http://", "https://")):
        raise FlipbookError(
            field, text, ALLOWED,
            detail="flipbook never downloads; save the manifest (open the URL, or Parseq's Save) and put the file's "
            "path in parseq_manifest, or render the manifest itself: flipbook render manifest.json",
        )  # fmt: skip
    source = "the parseq_manifest text"
    if not text.startswith("{"):
        if base is None:
            raise FlipbookError(field, text[:200], "the manifest's JSON text (files are not read here)")
        path = (base / Path(text).expanduser()).resolve()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            raise FlipbookError(field, str(path), ALLOWED, detail=str(error)) from None
        source = str(path)
    document = parse_lenient(text, source)
    if isinstance(document, str):
        raise FlipbookError(field, source, ALLOWED, detail=document)
    check_manifest(document, field)
    return document


def check_manifest(document: Any, field: str = FIELD) -> None:
    """A manifest Deforum can use: an object with rendered frames (each an object with a whole frame number),
    every frame from 0 to the last one given."""
    if not isinstance(document, dict) or not isinstance(document.get("rendered_frames"), list):
        raise FlipbookError(field, type(document).__name__, ALLOWED,
                            detail="no rendered_frames: render the document in Parseq and save it again")  # fmt: skip
    frames = document["rendered_frames"]
    if not frames or not all(isinstance(f, dict) and _whole(f.get("frame")) for f in frames):
        raise FlipbookError(
            f"{field}.rendered_frames", f"{len(frames)} items", "objects with a frame number each"
        )
    numbers = {int(f["frame"]) for f in frames}
    missing = sorted(set(range(max(numbers) + 1)) - numbers)
    if missing:
        raise FlipbookError(
            f"{field}.rendered_frames", f"frames 0 to {max(numbers)}", "every frame rendered",
            detail=f"frame {missing[0]} is missing ({len(missing)} in all); Deforum would render it with no values",
        )  # fmt: skip


def _whole(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
        and float(value).is_integer()
    )


def apply_parseq(job: DeforumImport, data: dict[str, Any]) -> None:
    """With a non-empty ``parseq_manifest``, the manifest's values replace the settings' schedules as Deforum's
    adapter replaces them."""
    raw = job.settings.get("parseq_manifest")
    if not isinstance(raw, str) or not raw.strip():
        return
    manifest = load_manifest(raw, base=job.base)
    use_deltas = job.settings.get("parseq_use_deltas", True) is not False
    overrides = job.settings.get("parseq_non_schedule_overrides", True) is not False
    overlay(job, data, manifest, use_deltas=use_deltas, overrides=overrides)


def import_manifest(manifest: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Spec data from a manifest on its own: Deforum's defaults with the manifest's values, in 3D when the
    manifest moves the camera in 3D, else 2D (said in a note)."""
    from flipbook.spec.deforum import spec_data, start_import, unused_warnings

    check_manifest(manifest)
    fields = set(manifest["rendered_frames"][0])
    mode = "3D" if fields & set(_THREE_D) else "2D"
    job = start_import({"animation_mode": mode})
    data = spec_data(job)
    job.note(f"animation.mode: the manifest is rendered in {mode.lower()} mode (it "
             f"{'moves the camera in 3D' if mode == '3D' else 'has no 3D camera fields'}); other settings are "
             "Deforum's defaults")  # fmt: skip
    overlay(job, data, manifest, use_deltas=True, overrides=True)
    return data, [*job.notes, *unused_warnings(job)]


def overlay(
    job: DeforumImport, data: dict[str, Any], manifest: dict[str, Any], *, use_deltas: bool, overrides: bool
) -> None:
    """The manifest's rendered values over ``data``: frame count, fps and cadence (with ``overrides``), each
    managed schedule, seeds and prompts."""
    from flipbook.spec.deforum import reads_camera

    frames = sorted(manifest["rendered_frames"], key=lambda f: int(f["frame"]))
    listed = manifest["rendered_frames"]  # Deforum fills past the end with the last frame as listed
    first = listed[0]
    animation = data["animation"]
    mode = animation["mode"]
    options = manifest.get("options") if isinstance(manifest.get("options"), dict) else {}
    if overrides:
        animation["max_frames"] = len(listed)
        if _number(options.get("output_fps")):
            animation["fps"] = options["output_fps"]
        if _number(options.get("cadence")) and options["cadence"] and reads_camera(mode):
            data.setdefault("camera", {})["cadence"] = int(options["cadence"])
    count = animation.get("max_frames", 120)
    series = _Series(frames, listed, count)
    if reads_camera(mode):
        camera = data.setdefault("camera", {})
        camera["perspective_flip"] = True  # Deforum turns it on for every Parseq render
        for name, target in MOTION.items():
            source = f"{name}_delta" if use_deltas else name
            if source in first:
                camera[target] = series.schedule(source)
    for name, path in SCHEDULES.items():
        section, target = path.split(".")
        if name in first and (section != "camera" or reads_camera(mode)):
            data.setdefault(section, {})[target] = series.schedule(name)
    if "steps_schedule" in first:
        data.setdefault("sampling", {})["steps"] = series.schedule("steps_schedule", whole=True)
    if "seed" in first:
        _seeds(job, data, series, first)
    if "deforum_prompt" in first:
        _prompts(job, data, series)
    _controlnet(job, data, series, first)
    unsupported = sorted(name for name in first if name in UNSUPPORTED)
    if unsupported:
        job.note(
            f"parseq_manifest: Parseq's {', '.join(unsupported)} have no flipbook counterpart and are not used"
        )


def _seeds(job: DeforumImport, data: dict[str, Any], series: _Series, first: dict[str, Any]) -> None:
    """Parseq's seeds: one per frame (Deforum takes the whole part; the fraction is a subseed strength, which
    flipbook doesn't have, noted)."""
    sampling = data.setdefault("sampling", {})
    sampling["seed_behavior"] = "schedule"
    sampling["seed_schedule"] = series.schedule("seed", whole=True)
    if any(isinstance(v, float) and not float(v).is_integer() for v in series.values("seed")):
        job.note("parseq_manifest: Parseq's fractional seeds blend toward the next seed in Deforum (subseeds); "
                 "flipbook takes the whole seeds")  # fmt: skip


def _prompts(job: DeforumImport, data: dict[str, Any], series: _Series) -> None:
    """Parseq's prompt per frame (``positive --neg negative``) as keyframes where it changes. Deforum adds its
    prompt additions only to its own prompts, so they are dropped here (noted)."""
    prompts: dict[str, str] = {}
    previous = None
    for frame, prompt in enumerate(series.values("deforum_prompt")):
        if prompt != previous:
            prompts[str(frame)] = str(prompt)
            previous = prompt
    data["prompts"] = prompts
    for key in ("positive_prompt", "negative_prompt"):
        if data.pop(key, ""):
            job.note(f"{key}: not added to Parseq's prompts, as in Deforum (it adds it only to its own)")


def _controlnet(job: DeforumImport, data: dict[str, Any], series: _Series, first: dict[str, Any]) -> None:
    """Parseq's ``cn_N_weight`` (and guidance) for the units the settings enable."""
    from flipbook.spec.deforum_controlnet import frame_zero_value

    for number, index in job.controlnet.items():
        unit = data["controlnet"][index]
        if f"cn_{number}_weight" in first:
            unit["weight"] = series.schedule(f"cn_{number}_weight")
        for target in ("guidance_start", "guidance_end"):
            name = f"cn_{number}_{target}"
            if name in first:
                value = series.schedule(name)
                if isinstance(value, str):
                    value = frame_zero_value(value, {"max_frames": series.count})
                    job.note(f"parseq_manifest: {name} varies; flipbook's units have one guidance window, so its "
                             f"frame-0 value {value:g} is used")  # fmt: skip
                unit[target] = float(value)


class _Series:
    """Per-frame values of the manifest's fields over ``count`` frames, as Deforum's ``parseq_to_series``
    builds them: each rendered frame's value, frames after the last listed frame with that frame's value."""

    def __init__(self, frames: list[dict[str, Any]], listed: list[dict[str, Any]], count: int) -> None:
        self.frames, self.last, self.count = frames, listed[-1], count

    def values(self, name: str) -> list[Any]:
        given = {int(f["frame"]): f.get(name) for f in self.frames if int(f["frame"]) < self.count}
        fill = self.last.get(name)
        values = [given.get(i, fill) for i in range(self.count)]
        bad = next((i for i, v in enumerate(values) if v is None), None)
        if bad is not None:
            raise FlipbookError(
                f"{FIELD}.rendered_frames", f"frame {bad}", f"a value for {name} in every frame"
            )
        return values

    def schedule(self, name: str, *, whole: bool = False) -> Any:
        """The field as a schedule: its one value when constant, else a keyframe wherever it changes."""
        values = self.values(name)
        for i, value in enumerate(values):
            if not _number(value):
                raise FlipbookError(f"{FIELD}.rendered_frames", repr(value), f"a number for {name}",
                                    detail=f"at frame {i}")  # fmt: skip
        if whole:
            values = [int(v) for v in values]
        if all(v == values[0] for v in values):
            return _format(values[0])
        keys = [i for i in range(len(values))
                if i in (0, len(values) - 1) or values[i] != values[i - 1] or values[i] != values[i + 1]]  # fmt: skip
        return ", ".join(f"{i}: ({_format(values[i])})" for i in keys)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _format(value: float) -> float | int:
    return int(value) if isinstance(value, int) or float(value).is_integer() else float(value)

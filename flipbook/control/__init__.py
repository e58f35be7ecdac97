"""ControlNet units of a render: the spec's ``[[controlnet]]`` tables turned into each frame's controls.

A unit's control image is its ``image`` file (opened once per render, at the animation size), frame N of its
``video`` (decoded once per render, up to ``max_frames``; past the video's end as without one) or, without one,
the image the frame itself starts from (the init image at frame 0, then whatever the mode feeds img2img); the
unit's preprocessor runs on it for every frame. A frame with no image to control with (txt2img) needs the unit's
weight to be 0 there: the unit is off for that frame (as Deforum's loopback units are at frame 0). Weights are schedules, resolved per frame. The ControlNet
networks themselves are loaded by the sampling core (:class:`flipbook.models.controlnet.ControlNets`), once
per run, on the checkpoint's device and dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from flipbook.control.preprocess import OPENPOSE_WEIGHTS, load_openpose, preprocess
from flipbook.errors import FlipbookError, SpecError
from flipbook.io.images import open_image
from flipbook.sampling.requests import Control
from flipbook.spec.fields import PREPROCESSOR_MODEL
from flipbook.spec.model import UNION_CONTROL_TYPES, ControlNetUnit, Spec
from flipbook.spec.plan import FramePlan, resolve_value

MAX_WEIGHT = 10.0


class ControlUnits:
    """The spec's ControlNet units for one render, with what they need loaded once: unit images (opened
    now, so a missing file fails before any model loads), per-frame weights (resolved now), and preprocessor
    models (depth estimator, OpenPose detector: loaded on first use, kept for the render)."""

    def __init__(self, spec: Spec, variables: Mapping[str, np.ndarray] | None = None) -> None:
        """``variables``: the plan's audio variables (``Plan.variables``); analysed here when not given."""
        self.spec = spec
        self.units: list[ControlNetUnit] = list(spec.controlnet)
        if variables is None and spec.audio.file is not None:
            from flipbook.spec.plan import audio_features

            variables = audio_features(spec).variables
        self.weights = [_weights(spec, i, unit, variables) for i, unit in enumerate(self.units)]
        self._images = {
            i: _open(spec, i, unit) for i, unit in enumerate(self.units) if unit.image is not None
        }
        self._videos = {
            i: _open_video(spec, i, unit) for i, unit in enumerate(self.units) if unit.video is not None
        }
        self._models: dict[tuple[str, str | None], Any] = {}
        self._static: dict[int, PIL.Image.Image] = {}  # preprocessed unit images that don't change per frame

    def controls(self, frame: FramePlan, image: PIL.Image.Image | None) -> tuple[Control, ...]:
        """One request's controls: every unit, its control image from ``image`` (the frame's img2img input,
        None for txt2img) unless the unit has its own, preprocessed for this frame, at this frame's weight."""
        return tuple(self._control(i, unit, frame, image) for i, unit in enumerate(self.units))

    def _control(
        self, index: int, unit: ControlNetUnit, frame: FramePlan, image: PIL.Image.Image | None
    ) -> Control:
        source = self._images.get(index, image)
        video = self._videos.get(index, ())
        if frame.index < len(video):
            source = PIL.Image.fromarray(video[frame.index])
        weight = float(self.weights[index][frame.index])
        if source is None:
            if weight != 0:
                raise _needs_image(index, frame.index)
            return _off(unit, self.spec)
        if index in self._images and unit.preprocessor != "shuffle":  # the same image every frame: once
            if index not in self._static:
                self._static[index] = self.preprocess(index, source, seed=frame.seed)
            control_image = self._static[index]
        else:
            control_image = self.preprocess(index, source, seed=frame.seed)
        return Control(
            model=unit.model,
            image=control_image,
            conditioning_scale=weight,
            guidance_start=unit.guidance_start,
            guidance_end=unit.guidance_end,
            control_type=_union_index(unit),
        )

    def preprocess(self, index: int, image: PIL.Image.Image, *, seed: int) -> PIL.Image.Image:
        """Unit ``index``'s preprocessor on ``image`` (errors name ``controlnet[index].*``)."""
        unit = self.units[index]
        try:
            return preprocess(
                unit.preprocessor, image, seed=seed, low_threshold=unit.low_threshold,
                high_threshold=unit.high_threshold, tile_downscale=unit.tile_downscale,
                model=self._model(index, unit),
            )  # fmt: skip
        except FlipbookError as error:
            if error.field.startswith("controlnet["):
                raise
            raise SpecError(
                f"controlnet[{index}].{error.field}", error.value, error.allowed, detail=error.detail
            ) from None

    def _model(self, index: int, unit: ControlNetUnit) -> Any:
        """The preprocessor's model, loaded once per render (units naming the same one share it)."""
        if unit.preprocessor not in ("depth", "openpose"):
            return None
        key = (unit.preprocessor, unit.preprocessor_model)
        if key not in self._models:
            self._models[key] = _load_preprocessor_model(self.spec, index, unit)
        return self._models[key]


def _load_preprocessor_model(spec: Spec, index: int, unit: ControlNetUnit) -> Any:
    """A depth estimator (``preprocessor_model``, default the built-in ``tiny``) or controlnet_aux's OpenPose
    detector, on the model section's device and dtype; a name is looked up in ``model.models_dir`` among the
    folders the field's type names first. Errors name ``controlnet[i].preprocessor_model``."""
    models_dir = spec.model.models_dir
    try:
        if unit.preprocessor == "openpose":
            source = unit.preprocessor_model or OPENPOSE_WEIGHTS
            found = _preprocessor_folder(source, models_dir)
            return load_openpose(source if found is None else str(found))
        from flipbook.imaging.depth import DepthEstimator

        name = unit.preprocessor_model or "tiny"
        return DepthEstimator.load(
            name, device=spec.model.device, dtype=spec.model.dtype, models_dir=models_dir,
            folders=PREPROCESSOR_MODEL.folders,
        )  # fmt: skip
    except FlipbookError as error:
        if error.field == "models_dir":  # the models folder itself, not the unit
            raise SpecError("model.models_dir", error.value, error.allowed, detail=error.detail) from None
        # load_openpose names "preprocessor" (package missing) or "preprocessor_model"; depth names its own
        leaf = error.field if error.field in ("preprocessor", "preprocessor_model") else "preprocessor_model"
        raise SpecError(
            f"controlnet[{index}].{leaf}", error.value, error.allowed, detail=error.detail
        ) from None


def _preprocessor_folder(name: str, models_dir: Path | None) -> Path | None:
    """The folder ``name`` names in the models folder (``PREPROCESSOR_MODEL.folders``), or None: then the name
    is a folder or a hub id for controlnet_aux itself."""
    if models_dir is None or Path(name).expanduser().exists():
        return None
    return PREPROCESSOR_MODEL.find(name, models_dir)


def _weights(
    spec: Spec, index: int, unit: ControlNetUnit, variables: Mapping[str, np.ndarray] | None
) -> np.ndarray:
    """The unit's weight at every frame, range-checked (0 to 10)."""
    field = f"controlnet[{index}].weight"
    values = resolve_value(spec, field, unit.weight, variables)
    bad = np.flatnonzero((values < 0) | (values > MAX_WEIGHT) | ~np.isfinite(values))
    if bad.size:
        frame = int(bad[0])
        raise SpecError(field, float(values[frame]), "a weight from 0 to 10", detail=f"at frame {frame}")
    return values


def _open(spec: Spec, index: int, unit: ControlNetUnit) -> PIL.Image.Image:
    """The unit's image at the animation size (preprocessors then see what the frames will be)."""
    size = (spec.animation.width, spec.animation.height)
    image = open_image(unit.image, f"controlnet[{index}].image").convert("RGB")
    return image.resize(size, PIL.Image.LANCZOS)


def _open_video(spec: Spec, index: int, unit: ControlNetUnit) -> list[np.ndarray]:
    """The unit's video, its first ``animation.max_frames`` frames at the animation size (decoded no further)."""
    from flipbook.io.readers import read_frames

    size = (spec.animation.width, spec.animation.height)
    frames = read_frames(
        unit.video, field=f"controlnet[{index}].video", limit=spec.animation.max_frames
    ).frames
    return [np.asarray(PIL.Image.fromarray(frame).resize(size, PIL.Image.LANCZOS)) for frame in frames]


def _off(unit: ControlNetUnit, spec: Spec) -> Control:
    """The unit switched off for one frame: weight 0 on a black image (no residual reaches the UNet)."""
    size = (spec.animation.width, spec.animation.height)
    return Control(
        model=unit.model,
        image=PIL.Image.new("RGB", size),
        conditioning_scale=0.0,
        guidance_start=unit.guidance_start,
        guidance_end=unit.guidance_end,
        control_type=_union_index(unit),
    )


def _union_index(unit: ControlNetUnit) -> int | None:
    """The unit's control type as a union ControlNet indexes it (None: not a union unit)."""
    return None if unit.control_type is None else UNION_CONTROL_TYPES.index(unit.control_type)


def _needs_image(index: int, frame: int) -> SpecError:
    return SpecError(
        f"controlnet[{index}].image",
        None,
        "a control image file for this unit",
        detail=f"frame {frame} is txt2img (no init image), so it has no image of its own to control with "
        "(or make the unit's weight 0 there)",
    )


def check_controlnet(spec: Spec, variables: Mapping[str, np.ndarray] | None = None) -> None:
    """Everything about the ControlNet units that can fail, checked before any model loads: model names
    resolve, image files open, weight schedules resolve in range, every txt2img frame has a control image
    (or the unit's weight is 0 there), and the openpose preprocessor's package is installed."""
    if not spec.controlnet:
        return
    from flipbook.models.controlnet import is_union, locate_controlnet

    units = ControlUnits(spec, variables)
    for index, unit in enumerate(spec.controlnet):
        kind, where = locate_controlnet(
            unit.model, models_dir=spec.model.models_dir, field=f"controlnet[{index}].model"
        )
        union = is_union(kind, where)
        if union is True and unit.control_type is None:
            raise SpecError(
                f"controlnet[{index}].control_type", None, "the control this unit's image is (" +
                ", ".join(UNION_CONTROL_TYPES) + f"): {unit.model} is a union ControlNet",
            )  # fmt: skip
        if union is False and unit.control_type is not None:
            raise SpecError(
                f"controlnet[{index}].control_type", unit.control_type,
                f"no control type: {unit.model} is not a union ControlNet",
            )  # fmt: skip
        no_image = (
            unit.image is None and unit.video is None and spec.init.image is None and spec.init.video is None
        )
        if no_image and units.weights[index][0] != 0:
            raise _needs_image(index, 0)
        if unit.preprocessor == "openpose":
            try:
                import controlnet_aux  # noqa: F401
            except ImportError:
                from flipbook.control.preprocess import OPENPOSE_INSTALL

                raise SpecError(
                    f"controlnet[{index}].preprocessor",
                    "openpose",
                    OPENPOSE_INSTALL,
                    detail="controlnet_aux is not installed",
                ) from None

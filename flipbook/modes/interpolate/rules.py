"""What the ``interpolate`` mode (the latent walk) plans, checks and says with only the spec (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from flipbook.modes.camera.settings import TWO_D, camera_schedules

if TYPE_CHECKING:
    import numpy as np

    from flipbook.spec.model import Spec
    from flipbook.spec.plan import AudioFeatures, Plan


def reads(spec: Spec) -> dict[str, frozenset[str]]:
    """``interpolate.motion`` moves the init frames by the ``[camera]`` 2D schedules: those are read then."""
    return {"camera": camera_schedules(TWO_D)} if spec.interpolate.motion else {}


def _easings(spec: Spec) -> list[str]:
    easing = spec.interpolate.easing
    return easing if isinstance(easing, list) else [easing]


def wants_audio_energy(spec: Spec) -> bool:
    """The "audio" easing follows ``audio.file``'s cumulative percussive energy."""
    return "audio" in _easings(spec)


def walk(spec: Spec, starts: Sequence[int], audio: AudioFeatures) -> np.ndarray:
    """The eased weight toward the next keyframe at every frame (``interpolate.easing``)."""
    from flipbook.spec.easing import walk_weights
    from flipbook.spec.plan import resolve_value

    def schedule(text: str, u: np.ndarray) -> np.ndarray:
        return resolve_value(spec, "interpolate.easing", text, {**audio.variables, "u": u})

    return walk_weights(
        list(starts),
        spec.animation.max_frames,
        spec.interpolate.easing,
        frequencies=spec.interpolate.sine_frequencies,
        energy=audio.energy,
        schedule=schedule,
        field="interpolate.easing",
    )


def describe(spec: Spec, plan: Plan) -> list[str]:
    """The latent walk: noise, easing, text blending, batching, and what each frame starts from."""
    from flipbook.spec.summary import span

    w = spec.interpolate
    easing = w.easing if isinstance(w.easing, str) else ", ".join(w.easing)
    init = "txt2img"
    if spec.init.image is not None or spec.init.video is not None:
        source = f"init video {spec.init.video}" if spec.init.video else f"init image {spec.init.image}"
        motion = " moved by the camera" if w.motion else ""
        init = f"img2img from the {source}{motion}, strength {span(plan, 'strength')}"
    return [
        f"latent walk: {w.noise} noise, easing {easing}, text {spec.animation.text_interpolation()}, "
        f"{w.batch_size} frames per batch; frames are {init}"
    ]

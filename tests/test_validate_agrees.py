"""``flipbook validate`` accepts exactly what ``render`` can render.

Whatever a render refuses after validation passed costs the user a model load (and, on the server, a failed
job after a 201). So a grid of edge values across modes is rendered on the tiny models (64x64, 1-2 frames,
1-2 steps) and validated the way ``flipbook validate`` does (the spec model, then the plan and its summary):
a case passes when both accept it, or both refuse it naming the same field. Model-dependent limits (a clip
skip deeper than the checkpoint's text encoder, an SVD model that isn't there) are known only once the model
loads and are not part of the grid.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from flipbook.errors import FlipbookError
from flipbook.runs.render import render
from flipbook.spec.load import spec_from_data
from flipbook.spec.summary import summarize

pytestmark = pytest.mark.usefixtures("one_thread")

MODES = {
    "travel": {},
    "2d": {},
    "3d": {"camera": {"depth_model": "tiny"}},
    "interpolate": {},
    "video": {"init": {"video": "{frames}"}},
    "variations": {"init": {"image": "{image}", "mask": "{mask}"}},
    "animatediff": {},
    "svd": {"svd": {"num_frames": 2, "num_inference_steps": 1}},
    "loop": {"prompts": {"0": "a lighthouse", "1": "a lighthouse at night"}},
    "restyle": {"init": {"video": "{frames}"}},
    "videomodel": {
        "videomodel": {"model": "tiny-wan-i2v", "segment_frames": 5},
        "init": {"image": "{image}"},
    },
}
EDGES = {
    "one step": {"sampling": {"steps": 1}},  # every feedback frame denoised fully (denoise 1)
    "strength 0.999 of 2 steps": {"animation": {"strength": 0.999}},  # one step at the lowest noise
    "strength 0, cfg 0": {"animation": {"strength": 0.0}, "sampling": {"cfg": 0}},
    "one frame": {"animation": {"max_frames": 1}},
    "8x8 pixels": {"animation": {"width": 8, "height": 8}},
    "cadence beyond the frames": {"camera": {"cadence": 5}},
    "init image kept 0.999": {"init": {"image": "{image}", "strength": 0.999}},
}
REFUSED = {  # (mode, what): values a mode can't render, which validate must refuse too
    ("animatediff", "a steps schedule"): {"sampling": {"steps": "0:(1), 1:(2)"}},
    ("animatediff", "composable prompts"): {"prompts": {"0": "a cat AND a dog"}},
    ("svd", "falling guidance"): {"svd": {"min_guidance_scale": 3.0, "max_guidance_scale": 1.0}},
    ("svd", "a second prompt"): {"prompts": {"0": "a", "1": "b"}},
    ("variations", "no mask"): {"init": {"mask": None}},
    ("loop", "one keyframe"): {"prompts": {"0": "a lighthouse"}},
    ("restyle", "a keyframe past the end"): {"restyle": {"keyframes": "list", "keyframe_list": [5]}},
}
CASES = [
    (mode, edge, values)
    for mode in MODES
    for edge, values in EDGES.items()
    if "camera" not in values or mode in ("2d", "3d")  # the other modes have no cadence
]
CASES += [(mode, what, values) for (mode, what), values in REFUSED.items()]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    y, x = np.mgrid[0:64, 0:64]
    picture = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    PIL.Image.fromarray(picture).save(folder / "image.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    PIL.Image.fromarray(mask).save(folder / "mask.png")
    (folder / "frames").mkdir()
    for i in range(3):
        PIL.Image.fromarray(np.roll(picture, 3 * i, axis=1)).save(folder / "frames" / f"frame_{i}.png")
    return {"image": folder / "image.png", "mask": folder / "mask.png", "frames": folder / "frames"}


def case_data(mode: str, values: dict, inputs: dict, out) -> dict:
    data = {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"steps": 2, "seed": 3, "sampler": "Euler"},
        "animation": {"mode": mode, "max_frames": 2, "width": 64, "height": 64, "fps": 8},
        "prompts": {"0": "a lighthouse"},
        "output": {"dir": str(out), "name": "case", "formats": ["png"]},
    }
    for changes in (MODES[mode], values):
        for section, fields in changes.items():
            if isinstance(fields, dict) and section != "prompts":
                data[section] = {**data.get(section, {}), **fields}
            else:
                data[section] = fields
    return _fill(data, {name: str(path) for name, path in inputs.items()})


def _fill(value, paths: dict):
    """Input paths into the placeholders ({image}, {mask}, {frames})."""
    if isinstance(value, dict):
        return {key: _fill(item, paths) for key, item in value.items()}
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return paths[value[1:-1]]
    return value


def validate(data: dict) -> FlipbookError | None:
    """What ``flipbook validate`` does with the data (spec model, plan, summary)."""
    try:
        summarize(spec_from_data(data))
    except FlipbookError as error:
        return error
    return None


def rendered(data: dict) -> FlipbookError | None:
    try:
        render(spec_from_data(data))
    except FlipbookError as error:
        return error
    return None


@pytest.mark.parametrize(("mode", "edge", "values"), CASES, ids=[f"{m}: {e}" for m, e, _ in CASES])
def test_validate_accepts_exactly_what_render_renders(mode, edge, values, inputs, tmp_path):
    data = case_data(mode, values, inputs, tmp_path)
    refused = validate(data)
    failed = rendered(data)
    if refused is None:
        assert failed is None, f"validate passed, render refused: {failed}"
    else:
        assert failed is not None and failed.field == refused.field, (
            f"validate refused ({refused}), render: {failed}"
        )
    if (mode, edge) in REFUSED:
        assert refused is not None, "a spec the mode can't render must be refused"

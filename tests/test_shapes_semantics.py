"""The animation features, seen on the trained ``shapes`` model: each test renders a short animation and the
toy world's judge (:mod:`flipbook.toy.judge`) checks that it means what the feature promises."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from flipbook.motion.consistency import temporal_error
from flipbook.runs.render import render
from flipbook.sampling.core import SamplingCore
from flipbook.sampling.requests import FrameRequest
from flipbook.spec.load import spec_from_data
from flipbook.toy.judge import judge, look
from flipbook.toy.world import render as draw
from flipbook.toy.world import scene_from_caption

pytestmark = pytest.mark.usefixtures("one_thread")

UNRECOGNISABLE_SHAPES = pytest.mark.xfail(
    strict=True,
    reason="the shipped shapes weights have learned colour, position and background but draw every shape as "
    "a rounded blob (shape 25%: README, The shapes model)",
)
SNAPS_TO_SIZES = pytest.mark.xfail(
    strict=True,
    reason="the shipped shapes weights put a shape back at one of the world's two sizes (radius 5.5-8.5 or "
    "10.5-13.5): at denoise 0.4 each frame undoes the zoom (README, The shapes model)",
)


@pytest.fixture(scope="module")
def shapes_model():
    from flipbook.models.loading import load_model

    return load_model("shapes", device="cpu")


@pytest.fixture(autouse=True)
def shared_model(monkeypatch, shapes_model):
    monkeypatch.setattr("flipbook.runs.cores.load_model", lambda name, **kwargs: shapes_model)


def frames_of(tmp_path, mode, prompts, frames, name="run", **sections):
    data = {
        "model": {"name": "shapes", "device": "cpu"},
        "sampling": {"steps": 12, "seed": 3, "cfg": 5.0, "sampler": "Euler a"},
        "animation": {"mode": mode, "max_frames": frames, "width": 64, "height": 64},
        "prompts": prompts,
        "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    result = render(spec_from_data(data))
    return [np.asarray(PIL.Image.open(path).convert("RGB")) for path in result.frames]


def still(model, prompt, seed=0, **kwargs):
    request = FrameRequest(
        prompt, seed=seed, num_inference_steps=20, guidance_scale=5.0, width=64, height=64, **kwargs
    )
    image = SamplingCore(model).generate([request], output_type="np")[0]
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def colour_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_shapes_ships_small_and_is_an_ordinary_sd1_model(shapes_model, tmp_path):
    from importlib import resources

    from flipbook.models.families.sd.convert import save_original_checkpoint
    from flipbook.models.loading import load_model

    shipped = resources.files("flipbook.models.families.sd.data").joinpath("shapes.safetensors")
    assert shipped.is_file() and len(shipped.read_bytes()) <= 10 * 1024 * 1024
    assert shapes_model.family == "sd1" and shapes_model.pipe.unet.config.sample_size == 8
    exported = load_model(
        str(save_original_checkpoint(shapes_model.pipe, tmp_path / "s.safetensors")), device="cpu"
    )
    prompt = "a large (red:1.2) circle on the left, blue background"
    built_in = still(shapes_model, prompt, sampler="DPM++ 2M Karras").astype(int)
    assert np.abs(built_in - still(exported, prompt, sampler="DPM++ 2M Karras")).max() <= 1


@UNRECOGNISABLE_SHAPES
def test_prompt_travel_changes_colour_and_shape_across_the_keyframe(tmp_path):
    frames = frames_of(
        tmp_path,
        "travel",
        {"0": "a large red circle", "3": "a large blue square"},
        6,
        animation={"strength": 0.3},
    )
    first, last = look(frames[0]), look(frames[-1])
    assert (first.colour, first.shape) == ("red", "circle")
    assert last.colour == "blue" and last.shape == "square"


@SNAPS_TO_SIZES
def test_a_2d_zoom_in_grows_the_shape_frame_over_frame(tmp_path):
    frames = frames_of(
        tmp_path,
        "2d",
        {"0": "a small red circle in the center, blue background"},
        6,
        animation={"strength": 0.6},
        camera={"zoom": "0:(1.12)"},
    )
    areas = [look(frame).area for frame in frames]
    assert areas[-1] > 1.5 * areas[0]
    assert sum(b > a for a, b in zip(areas, areas[1:], strict=False)) >= len(areas) - 2


def test_a_2d_translation_moves_the_centroid_the_right_way(tmp_path):
    frames = frames_of(
        tmp_path,
        "2d",
        {"0": "a small yellow square, purple background"},  # no position: the prompt does not pull it back
        5,
        animation={"strength": 0.6},
        camera={"translation_x": "0:(3)"},
    )
    xs = [look(frame).centroid[0] for frame in frames]
    assert xs[-1] > xs[0] + 6  # positive translation_x slides the picture right


def palette_drift(frames: list[np.ndarray]) -> float:
    """How far the mean colour of the last frames wandered from frame 0's (0-255 per channel)."""
    reference = frames[0].reshape(-1, 3).mean(axis=0)
    return float(np.mean([np.abs(f.reshape(-1, 3).mean(axis=0) - reference).mean() for f in frames[-6:]]))


def test_colour_coherence_keeps_the_palette_stabler_than_none(tmp_path):
    def drift(coherence):
        frames = frames_of(
            tmp_path,
            "2d",
            {"0": "a large green circle, orange background"},
            24,
            name=coherence,
            sampling={"steps": 6},
            animation={"strength": 0.55},
            camera={"zoom": "0:(1.02)", "angle": "0:(2)", "color_coherence": coherence},
        )
        return palette_drift(frames)

    assert drift("lab") < drift("none")  # 19.0 against 22.7 levels with the shipped weights


def test_img2img_at_low_denoise_keeps_shape_and_position(shapes_model):
    text = "a large purple triangle on the right, white background"
    source = draw(scene_from_caption(text, np.random.default_rng(0)))
    out = still(
        shapes_model, "a large purple triangle", seed=5, image=PIL.Image.fromarray(source), strength=0.3
    )
    verdict = judge(out, text)
    assert verdict["shape"] and verdict["position"] and verdict["colour"]


def test_the_latent_walks_middle_frame_lies_between_its_keyframes(tmp_path):
    frames = frames_of(tmp_path, "interpolate", {"0": "a large red circle", "4": "a large blue circle"}, 5)
    first, middle, last = frames[0], frames[2], frames[4]
    span = colour_distance(first, last)
    assert colour_distance(first, middle) < span and colour_distance(middle, last) < span


def test_a_loop_closes_without_a_seam(tmp_path):
    """The step from the last frame back to the first is no bigger than the walk's steps between frames, and
    the walk goes somewhere. A deterministic sampler, as README advises for walks: an ancestral one adds
    noise from each frame's own seed, so the frames a walk mirrors (1 and 7 here) differ."""
    frames = frames_of(
        tmp_path,
        "loop",
        {"0": "a large red circle", "4": "a large yellow star"},
        8,
        sampling={"sampler": "Euler"},
    )
    steps = [colour_distance(a, b) for a, b in zip(frames, frames[1:], strict=False)]
    assert colour_distance(frames[-1], frames[0]) <= max(steps)
    assert colour_distance(frames[4], frames[0]) > 10


def test_a_2d_zoom_is_steadier_than_a_random_seed_flip_book(tmp_path, shapes_model):
    zoom = frames_of(
        tmp_path,
        "2d",
        {"0": "a large white star in the center, blue background"},
        6,
        animation={"strength": 0.6},
        camera={"zoom": "0:(1.05)"},
    )
    flip_book = [
        still(shapes_model, "a large white star in the center, blue background", seed=s) for s in range(6)
    ]
    assert temporal_error(zoom) < temporal_error(flip_book)

"""The ``variations`` mode (inpaint loops) on the tiny model (64x64, 2 denoising steps): still outside the mask,
moving inside, played in the stored variations' order, resumed from the stored variations."""

import numpy as np
import PIL.Image
import pytest

from flipbook.errors import FlipbookError
from flipbook.events import Events, RenderCancelled
from flipbook.imaging.ordering import order_images
from flipbook.modes.frame import animation_mask, init_image, keep_still
from flipbook.modes.variations.render import variation_path
from flipbook.runs.render import render, resume
from flipbook.sampling.core import SamplingCore
from flipbook.spec.load import spec_from_data
from flipbook.spec.plan import build_plan

pytestmark = pytest.mark.usefixtures("one_thread")
N = 4


@pytest.fixture(autouse=True)
def shared_model(monkeypatch, tiny_model):
    monkeypatch.setattr("flipbook.runs.cores.load_model", lambda name, **kwargs: tiny_model)


@pytest.fixture()
def batches(monkeypatch):
    """Every batch the sampling core runs, as a list of (seed, prompt, strength, inpainting) per request."""
    calls = []
    original = SamplingCore.run_batch

    def spy(self, requests, **kwargs):
        calls.append([(r.seed, r.prompt, r.strength, r.mask_image is not None) for r in requests])
        return original(self, requests, **kwargs)

    monkeypatch.setattr(SamplingCore, "run_batch", spy)
    return calls


@pytest.fixture()
def inputs(tmp_path, init_image, mask_image):
    init_image.save(tmp_path / "init.png")
    mask_image.save(tmp_path / "mask.png")
    return {"image": str(tmp_path / "init.png"), "mask": str(tmp_path / "mask.png")}


def make_spec(tmp_path, inputs, name="loop", **sections):
    data = {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"steps": 6, "seed": 25, "sampler": "Euler"},  # 6 x 0.35 denoise: 2 steps
        "animation": {"mode": "variations", "max_frames": N, "width": 64, "height": 64},
        "prompts": {"0": "flames", "2": "waves"},
        "init": dict(inputs),
        "variations": {"denoise": 0.35},
        "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return spec_from_data(data)


def frames(result):
    return [np.asarray(PIL.Image.open(p).convert("RGB")) for p in result.frames]


def stored(run_dir):
    return [np.asarray(PIL.Image.open(variation_path(run_dir, k)).convert("RGB")) for k in range(N)]


def renamed(spec, name):
    return spec.model_copy(update={"output": spec.output.model_copy(update={"name": name})})


def test_outside_the_mask_stays_the_init_image_and_inside_every_frame_differs(tmp_path, inputs, batches):
    spec = make_spec(tmp_path, inputs)
    out = frames(render(spec))
    mask, still = animation_mask(spec), np.asarray(init_image(spec))
    outside, inside = mask == 0, mask == 1
    assert outside.any() and inside.any()
    for frame in out:  # exactly, not within a level: the composite takes weight-0 pixels from the init image
        np.testing.assert_array_equal(frame[outside], still[outside])
    for a in range(N):
        for b in range(a + 1, N):
            assert np.abs(out[a][inside].astype(int) - out[b][inside]).mean() > 1
    # one batch of N inpainting requests: variation k has frame k's seed and prompt, at the denoise asked
    plan = build_plan(spec)
    assert batches == [[(plan[k].seed, plan[k].prompt, 0.35, True) for k in range(N)]]
    assert [plan[k].prompt for k in range(N)] == ["flames", "flames", "waves", "waves"]


@pytest.mark.parametrize("order", ["loop", "path", "seed"])
def test_frames_play_the_stored_variations_in_their_order(tmp_path, inputs, order):
    spec = make_spec(tmp_path, inputs, name=order, variations={"order": order})
    result = render(spec)
    variations = stored(result.run_dir)
    mask, still = animation_mask(spec), init_image(spec)
    expected = order_images(variations, mask, order)
    assert sorted(expected) == list(range(N))
    for frame, k in zip(frames(result), expected, strict=True):
        np.testing.assert_array_equal(
            frame, np.asarray(keep_still(PIL.Image.fromarray(variations[k]), still, mask))
        )
    if order == "seed":
        assert expected == list(range(N))


def test_frames_follow_whatever_order_the_ordering_gives(tmp_path, inputs, monkeypatch):
    """Deterministically not generation order (the real order of four tiny-model images may happen to be)."""
    monkeypatch.setattr("flipbook.modes.variations.render.order_for", lambda distances, how: [2, 0, 3, 1])
    spec = make_spec(tmp_path, inputs)
    result = render(spec)
    variations, mask, still = stored(result.run_dir), animation_mask(spec), init_image(spec)
    for frame, k in zip(frames(result), [2, 0, 3, 1], strict=True):
        np.testing.assert_array_equal(
            frame, np.asarray(keep_still(PIL.Image.fromarray(variations[k]), still, mask))
        )


def test_a_resume_after_a_cancel_at_frame_1_reuses_every_variation(tmp_path, inputs, batches):
    spec = make_spec(tmp_path, inputs, name="whole")
    whole = frames(render(spec))

    def on_frame(event):
        if event.index == 1:
            events.cancel()

    events = Events(on_frame=on_frame)
    with pytest.raises(RenderCancelled):
        render(renamed(spec, "part"), events)
    assert len(batches) == 2  # the whole render's batch and the cancelled one's
    result = resume(tmp_path / "part")
    assert len(batches) == 2  # nothing sampled again
    assert result.resumed_from == 1
    assert all(np.array_equal(a, b) for a, b in zip(whole, frames(result), strict=True))


def test_a_resume_during_generation_makes_only_the_missing_batch(tmp_path, inputs, batches):
    spec = make_spec(tmp_path, inputs, name="whole", variations={"batch_size": 2})
    whole = frames(render(spec))
    steps = []

    def on_step(event):
        steps.append(event)
        if len(steps) == 3:  # the first step of the second batch of two variations
            events.cancel()

    events = Events(on_step=on_step)
    with pytest.raises(RenderCancelled):
        render(renamed(spec, "part"), events)
    part = tmp_path / "part"
    assert [variation_path(part, k).is_file() for k in range(N)] == [True, True, False, False]
    assert not list((part / "frames").glob("*.png"))
    del batches[:]
    result = resume(part)
    plan = build_plan(spec)
    assert [[seed for seed, *_ in batch] for batch in batches] == [[plan[2].seed, plan[3].seed]]
    assert all(np.array_equal(a, b) for a, b in zip(whole, frames(result), strict=True))


def test_a_fresh_render_into_the_same_folder_reuses_only_variations_made_the_same_way(
    tmp_path, inputs, batches
):
    """The prompt at variations 0 and 1 changes, at 2 and 3 it does not: only 0 and 1 are replaced (their batch
    of four is made whole, so every variation still comes from the batch an uninterrupted render uses). The
    folder holds a run, so the new render replaces it (overwrite), which keeps the stored variations."""
    first = stored(render(make_spec(tmp_path, inputs, name="same")).run_dir)
    changed = make_spec(tmp_path, inputs, name="same", prompts={"0": "smoke"})
    second = stored(render(changed, overwrite=True).run_dir)
    assert [[prompt for _, prompt, *_ in batch] for batch in batches[1:]] == [
        ["smoke", "smoke", "waves", "waves"]
    ]
    assert [np.array_equal(a, b) for a, b in zip(first, second, strict=True)] == [False, False, True, True]


@pytest.mark.parametrize("missing", ["mask", "image"])
def test_a_missing_init_input_is_an_error_before_any_model_loads(tmp_path, inputs, monkeypatch, missing):
    def no_model(name, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("flipbook.runs.cores.load_model", no_model)
    spec = make_spec(tmp_path, {k: v for k, v in inputs.items() if k != missing})
    with pytest.raises(FlipbookError) as error:
        render(spec)
    assert error.value.field == f"init.{missing}"


@pytest.mark.parametrize(
    ("variations", "field"),
    [
        ({"denoise": 0}, "variations.denoise"),
        ({"denoise": 1.5}, "variations.denoise"),
        ({"denoise": "low"}, "variations.denoise"),
        ({"order": "random"}, "variations.order"),
        ({"masked_content": "noise"}, "variations.masked_content"),
        ({"batch_size": 0}, "variations.batch_size"),
    ],
)
def test_bad_settings_name_the_field(tmp_path, inputs, variations, field):
    with pytest.raises(FlipbookError) as error:
        make_spec(tmp_path, inputs, variations=variations)
    assert error.value.field == field

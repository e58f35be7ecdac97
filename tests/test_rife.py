"""RIFE 4.6 (Practical-RIFE's IFNet_HDv3) from a user's state dict: the key layout a real flownet.pkl has,
strict loading from .pkl / .pth with ``module.`` / .safetensors, in-betweens through ``interpolate_frames``,
properties that hold for any weights, and the refusals (pickled objects, wrong keys, other RIFE versions)."""

import pickle

import numpy as np
import pytest
import torch

from flipbook.errors import FlipbookError
from flipbook.post.frame_interpolation import interpolate_frames
from flipbook.post.rife import ALIGN, IFNet, RifeInterpolator, load_rife
from flipbook.runs.finish import check_post_inputs, post_process
from flipbook.spec.load import spec_from_data

# The layout of Practical-RIFE 4.6's train_log/flownet.pkl (as in vs-rife's IFNet_HDv3_v4_6.py and
# ComfyUI-Frame-Interpolation's rife_arch.py arch_ver "4.6"): block N has in-channels 7 (block0) or 12, width c.
BLOCKS = ((7, 192), (12, 128), (12, 96), (12, 64))


def expected_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for index, (channels, c) in enumerate(BLOCKS):
        prefix = f"block{index}."
        shapes[prefix + "conv0.0.0.weight"] = (c // 2, channels, 3, 3)
        shapes[prefix + "conv0.0.0.bias"] = (c // 2,)
        shapes[prefix + "conv0.1.0.weight"] = (c, c // 2, 3, 3)
        shapes[prefix + "conv0.1.0.bias"] = (c,)
        for k in range(8):
            shapes[prefix + f"convblock.{k}.conv.weight"] = (c, c, 3, 3)
            shapes[prefix + f"convblock.{k}.conv.bias"] = (c,)
            shapes[prefix + f"convblock.{k}.beta"] = (1, c, 1, 1)
        shapes[prefix + "lastconv.0.weight"] = (c, 24, 4, 4)  # ConvTranspose2d(c, 4 * 6, 4, 2, 1)
        shapes[prefix + "lastconv.0.bias"] = (24,)
    return shapes


def random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded random IFNet's weights, scaled down so the random flows stay a few pixels long (the default
    init makes flows that are far outside the frame, which tests nothing but the border)."""
    torch.manual_seed(seed)
    model = IFNet()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("beta"):
                parameter.fill_(0.5)
            else:
                parameter.mul_(0.5)
    return {key: value.clone() for key, value in model.state_dict().items()}


@pytest.fixture(scope="module")
def state():
    return random_state()


@pytest.fixture()
def weight_files(tmp_path, state):
    """The same weights as flownet.pkl (plain keys), rife46.pth (``module.`` keys) and .safetensors."""
    from safetensors.torch import save_file

    pkl = tmp_path / "flownet.pkl"
    torch.save(state, pkl)
    pth = tmp_path / "rife46.pth"
    torch.save({f"module.{key}": value for key, value in state.items()}, pth)
    safe = tmp_path / "rife46.safetensors"
    save_file({key: value.contiguous() for key, value in state.items()}, str(safe))
    return {"pkl": pkl, "pth": pth, "safetensors": safe}


def frames_pair(height=50, width=70, seed=3):
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    second = np.roll(first, (2, 3), axis=(0, 1))  # a small motion
    return first, second


# --- the architecture matches the real file -----------------------------------------------------------------


def test_key_layout_and_shapes_are_rife_46s():
    shapes = {key: tuple(value.shape) for key, value in IFNet().state_dict().items()}
    expected = expected_shapes()
    assert shapes == expected
    assert len(shapes) == 120
    assert sum(int(np.prod(shape)) for shape in shapes.values()) == 5_306_256  # ~21 MB in float32
    assert shapes["block0.conv0.0.0.weight"] == (96, 7, 3, 3)
    assert shapes["block0.lastconv.0.weight"] == (192, 24, 4, 4)
    assert shapes["block3.conv0.0.0.weight"] == (32, 12, 3, 3)


def test_rife_45_layout_is_detected_from_lastconv(tmp_path):
    """RIFE 4.5 differs from 4.6 only in lastconv's 4 x 5 channels."""
    torch.manual_seed(1)
    path = tmp_path / "flownet45.pkl"
    torch.save(IFNet(out_channels=5).state_dict(), path)
    model = load_rife(path)
    assert model.block0.lastconv[0].weight.shape == (192, 20, 4, 4)
    first, second = frames_pair(32, 32)
    assert RifeInterpolator(model).between(first, second, 0.5).shape == (32, 32, 3)


# --- loading and interpolating ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pkl", "pth", "safetensors"])
def test_state_dicts_load_strictly_and_interpolate_odd_sizes(weight_files, state, kind):
    model = load_rife(weight_files[kind])
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[key], state[key]) for key in state)
    first, second = frames_pair()
    for factor in (2, 4):
        out = interpolate_frames(
            [first, second], factor=factor, method="rife", model_path=weight_files[kind], device="cpu"
        )
        assert len(out) == factor + 1
        assert out[0] is first and out[factor] is second
        for frame in out[1:factor]:
            assert frame.shape == (50, 70, 3) and frame.dtype == np.uint8


def test_loop_and_several_pairs_keep_every_original(weight_files):
    frames = [frames_pair(40, 36, seed)[0] for seed in range(3)]
    out = interpolate_frames(frames, factor=3, loop=True, method="rife", model_path=weight_files["pkl"])
    assert len(out) == 9
    assert all(out[3 * k] is frames[k] for k in range(3))


def test_network_output_is_finite_and_aligned_sizes_round_trip(state):
    model = IFNet()
    model.load_state_dict(state, strict=True)
    first, second = frames_pair()
    interpolator = RifeInterpolator(model.eval(), "cpu")
    img_0, img_1 = interpolator._tensor(first), interpolator._tensor(second)
    assert img_0.shape == (1, 3, 64, 96) and img_0.shape[2] % ALIGN == 0 and img_0.shape[3] % ALIGN == 0
    with torch.inference_mode():
        result = model(img_0, img_1, torch.full_like(img_0[:, :1], 0.25))
    assert result.shape == img_0.shape and torch.isfinite(result).all()


def test_deterministic_and_depends_on_time(weight_files):
    model = load_rife(weight_files["pkl"])
    first, second = frames_pair()
    interpolator = RifeInterpolator(model)
    a = interpolator.between(first, second, 0.25)
    assert np.array_equal(a, interpolator.between(first, second, 0.25))
    assert not np.array_equal(a, interpolator.between(first, second, 0.75))


# --- properties that hold for any weights -------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_output_stays_within_the_inputs_colours(seed):
    """The in-between is a sigmoid-weighted mix of two bilinear, border-clamped warps of the (edge-padded)
    frames, so whatever the weights, each channel stays within the two frames' range."""
    torch.manual_seed(seed)
    model = IFNet().eval()  # default init: long, wild flows
    first, second = frames_pair(45, 66, seed)
    first = (first // 4 + 60).astype(np.uint8)  # channel values 60..123
    second = (second // 4 + 100).astype(np.uint8)  # 100..163
    for s in (0.1, 0.5, 0.9):
        out = RifeInterpolator(model).between(first, second, s)
        for channel in range(3):
            low = min(first[..., channel].min(), second[..., channel].min())
            high = max(first[..., channel].max(), second[..., channel].max())
            assert low <= out[..., channel].min() and out[..., channel].max() <= high


def test_a_uniform_colour_stays_that_colour(state):
    model = IFNet()
    model.load_state_dict(state)
    frame = np.full((50, 70, 3), (200, 30, 120), dtype=np.uint8)
    out = RifeInterpolator(model.eval()).between(frame, frame.copy(), 0.5)
    assert np.abs(out.astype(int) - frame.astype(int)).max() <= 1


# --- refusals -----------------------------------------------------------------------------------------------

MARKER = []


class Evil:
    """Unpickling this would call MARKER.append: weights_only loading must refuse it, not run it."""

    def __reduce__(self):
        return (MARKER.append, ("ran",))


def test_pickled_objects_are_refused_not_run(tmp_path):
    path = tmp_path / "flownet.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"block0.conv0.0.0.weight": Evil()}, handle, protocol=2)
    torch_path = tmp_path / "evil.pth"
    torch.save(Evil(), torch_path)
    MARKER.clear()
    for bad in (path, torch_path):
        with pytest.raises(FlipbookError) as error:
            load_rife(bad)
        assert error.value.field == "interpolate.model"
    assert MARKER == []


def test_wrong_keys_are_listed(tmp_path, state):
    missing = dict(state)
    del missing["block2.convblock.3.beta"]
    extra = dict(state) | {"block0.something.weight": torch.zeros(1)}
    shaped = dict(state) | {"block1.conv0.0.0.weight": torch.zeros(64, 11, 3, 3)}
    for data, words in (
        (missing, ["missing", "block2.convblock.3.beta"]),
        (extra, ["unexpected", "block0.something.weight"]),
        (shaped, ["mis-shaped", "block1.conv0.0.0.weight"]),
    ):
        path = tmp_path / "flownet.pkl"
        torch.save(data, path)
        with pytest.raises(FlipbookError) as error:
            load_rife(path)
        assert error.value.field == "interpolate.model"
        assert all(word in str(error.value) for word in words)


def test_other_versions_junk_and_missing_files_are_refused(tmp_path, state):
    v47 = dict(state) | {"encode.0.weight": torch.zeros(16, 3, 3, 3)}
    v43 = {
        "block0.convblock.0.0.weight": torch.zeros(192, 192, 3, 3),
        "block0.lastconv.weight": torch.zeros(1),
    }
    cases = {"v47.pkl": v47, "v43.pkl": v43, "list.pkl": [torch.zeros(1)]}
    for name, data in cases.items():
        torch.save(data, tmp_path / name)
    (tmp_path / "notes.pkl").write_text("not weights")
    (tmp_path / "notes.safetensors").write_text("not weights")
    expected = {
        "v47.pkl": "4.7 or later",
        "v43.pkl": "4.0-4.3",
        "list.pkl": "not a mapping",
        "notes.pkl": "truncated or corrupt",
        "notes.safetensors": "not a safetensors",
        "missing.pkl": "no such file",
    }
    for name, words in expected.items():
        with pytest.raises(FlipbookError) as error:
            load_rife(tmp_path / name)
        assert error.value.field == "interpolate.model" and words in str(error.value), str(error.value)
    with pytest.raises(FlipbookError) as error:
        interpolate_frames(list(frames_pair()), method="rife", model_path=tmp_path / "v47.pkl", device="cpu")
    assert error.value.field == "interpolate.model"


def test_rife_without_a_model_names_interpolate_model(tmp_path):
    frames = list(frames_pair())
    for path in (None, tmp_path / "missing.pkl"):
        with pytest.raises(FlipbookError) as error:
            interpolate_frames(frames, method="rife", model_path=path)
        assert error.value.field == "interpolate.model"
        assert ("needs a model file" if path is None else "no such file") in str(error.value)


# --- the spec's [post] --------------------------------------------------------------------------------------


def spec_with_post(tmp_path, **post):
    return spec_from_data(
        {
            "model": {"name": "tiny", "device": "cpu"},
            "sampling": {"steps": 2, "seed": 5, "sampler": "Euler"},
            "animation": {"mode": "interpolate", "max_frames": 4, "fps": 8, "width": 64, "height": 64},
            "prompts": {"0": "a forest", "3": "a city"},
            "output": {"dir": str(tmp_path), "name": "out", "formats": ["png"]},
            "post": post,
        }
    )


def test_spec_post_rife_needs_and_uses_rife_model(tmp_path, weight_files):
    with pytest.raises(FlipbookError) as error:
        spec_with_post(tmp_path, interpolate=2, interpolate_method="rife")
    assert error.value.field == "post" and "rife_model" in str(error.value)
    missing = spec_with_post(tmp_path, interpolate=2, interpolate_method="rife", rife_model="nope.pkl")
    with pytest.raises(FlipbookError) as error:
        check_post_inputs(missing)
    assert error.value.field == "post.rife_model"
    spec = spec_with_post(tmp_path, interpolate=2, interpolate_method="rife", rife_model=weight_files["pkl"])
    check_post_inputs(spec)
    frames = [frames_pair(32, 48, seed)[0] for seed in range(2)]
    out = post_process(spec, frames)
    assert len(out) == 3 and out[0] is frames[0] and out[2] is frames[1]
    assert out[1].shape == (32, 48, 3)


def test_rife_weights_are_found_by_name_in_the_models_folder(tmp_path, weight_files):
    """Deforum's models/Deforum/RIFE46.pkl and ComfyUI-Frame-Interpolation's ckpts/rife/rife46.pth: the spec's
    post.rife_model by name with model.models_dir, checked before any frame and used by the post-processing."""
    webui, comfy = tmp_path / "webui", tmp_path / "ComfyUI"
    (webui / "models/Deforum").mkdir(parents=True)
    weight_files["pkl"].rename(webui / "models/Deforum/RIFE46.pkl")
    (comfy / "models/checkpoints").mkdir(parents=True)
    (comfy / "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife").mkdir(parents=True)
    weight_files["pth"].rename(comfy / "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife/rife46.pth")
    frames = [frames_pair(32, 48, seed)[0] for seed in range(2)]
    outputs = []
    for root, name in ((webui, "RIFE46"), (comfy, "rife46")):
        spec = spec_with_post(tmp_path, interpolate=2, interpolate_method="rife", rife_model=name)
        spec = spec.model_copy(update={"model": spec.model.model_copy(update={"models_dir": root})})
        check_post_inputs(spec)
        outputs.append(post_process(spec, frames)[1])
    np.testing.assert_array_equal(outputs[0], outputs[1])  # the same weights under both names
    missing = spec_with_post(tmp_path, interpolate=2, interpolate_method="rife", rife_model="RIFE47")
    missing = missing.model_copy(update={"model": missing.model.model_copy(update={"models_dir": webui})})
    with pytest.raises(FlipbookError) as error:
        check_post_inputs(missing)
    assert error.value.field == "post.rife_model" and "RIFE46" in error.value.allowed

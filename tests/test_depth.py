"""Monocular depth: estimators (flat, tiny, folder, hub), disparity -> depth, 16-bit depth maps."""

from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest

from flipbook.errors import FlipbookError
from flipbook.imaging.depth import (
    DepthEstimator,
    depth_from_disparity,
    predicts_metric_depth,
    save_depth_map,
    tiny_depth_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A non-square 48 x 64 RGB picture with structure."""
    y, x = np.mgrid[0:48, 0:64]
    array = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)
    array[10:30, 20:40] = (250, 40, 40)
    return array


@pytest.fixture(scope="module")
def tiny() -> DepthEstimator:
    return DepthEstimator.load("tiny", device="cpu")


def test_flat_is_all_ones(image):
    flat = DepthEstimator.load("flat", device="cpu")
    disparity = flat(image)
    assert disparity.shape == (48, 64) and disparity.dtype == np.float32
    assert np.all(disparity == 1.0)
    assert "flat" in repr(flat) and flat.name == "flat"


def test_tiny_output_shape_range_and_determinism(tiny, image):
    disparity = tiny(image)
    assert disparity.shape == (48, 64) and disparity.dtype == np.float32
    assert np.all(np.isfinite(disparity))
    assert disparity.min() >= 0.0 and disparity.max() <= 1.0
    again = DepthEstimator.load("tiny", device="cpu")(image)
    np.testing.assert_array_equal(disparity, again)
    assert (
        repr(tiny)
        == "DepthEstimator(name='tiny', model=DPTForDepthEstimation, device='cpu', dtype='float32')"
    )


def test_tiny_is_not_degenerate(tiny, image):
    """The random model still varies over the picture, so demos show a real depth gradient."""
    disparity = tiny(image)
    assert disparity.min() == 0.0 and disparity.max() == 1.0
    assert disparity.std() > 0.05


def test_rejects_non_rgb_uint8(tiny):
    with pytest.raises(ValueError, match="uint8"):
        tiny(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        tiny(np.zeros((8, 8, 3), dtype=np.float32))


def test_saved_folder_loads_like_the_builtin(tmp_path, tiny, image):
    model, processor = tiny_depth_model()
    folder = tmp_path / "tiny-depth"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    loaded = DepthEstimator.load(str(folder), device="cpu")
    np.testing.assert_allclose(loaded(image), tiny(image), atol=1e-6)


def test_folder_without_weights_is_one_error(tmp_path):
    model, _ = tiny_depth_model()
    model.config.save_pretrained(tmp_path)
    with pytest.raises(FlipbookError, match="camera.depth_model") as caught:
        DepthEstimator.load(str(tmp_path), device="cpu")
    assert "folder could not be loaded" in str(caught.value)


def test_uncached_hub_id_offline_is_one_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FlipbookError, match="camera.depth_model") as caught:
        DepthEstimator.load("flipbook-tests/no-such-depth-model", device="cpu")
    assert caught.value.field == "camera.depth_model"
    assert "HF_HUB_OFFLINE" in str(caught.value)


def test_missing_path_is_one_error():
    with pytest.raises(FlipbookError, match="no such folder"):
        DepthEstimator.load("./no/such/depth-model/here", device="cpu")


def test_metric_models_are_recognised():
    assert predicts_metric_depth(SimpleNamespace(depth_estimation_type="metric", model_type="depth_anything"))
    assert predicts_metric_depth(SimpleNamespace(model_type="zoedepth"))
    assert not predicts_metric_depth(SimpleNamespace(depth_estimation_type="relative", model_type="dpt"))


def test_depth_from_disparity_maps_ends_and_is_monotonic():
    disparity = np.linspace(0.0, 1.0, 11, dtype=np.float32)
    depth = depth_from_disparity(disparity, near=0.5, far=20.0)
    assert depth.dtype == np.float32
    assert depth[-1] == pytest.approx(0.5) and depth[0] == pytest.approx(20.0)
    assert np.all(np.diff(depth) < 0)
    np.testing.assert_allclose(1.0 / depth, disparity * (1 / 0.5 - 1 / 20.0) + 1 / 20.0, rtol=1e-6)


@pytest.mark.parametrize(("near", "far"), [(0.0, 10.0), (-1.0, 10.0), (5.0, 5.0), (10.0, 1.0)])
def test_depth_from_disparity_rejects_bad_planes(near, far):
    with pytest.raises(ValueError, match="near"):
        depth_from_disparity(np.ones((2, 2), dtype=np.float32), near, far)


def test_save_depth_map_writes_16_bit_png_near_bright(tmp_path, tiny, image):
    disparity = tiny(image)
    depth = depth_from_disparity(disparity, near=1.0, far=100.0)
    path = save_depth_map(depth, tmp_path / "depth" / "00001.png")
    assert path == tmp_path / "depth" / "00001.png"
    assert [p.name for p in path.parent.iterdir()] == ["00001.png"]  # no temp file left behind
    with PIL.Image.open(path) as saved:
        assert saved.format == "PNG" and saved.size == (64, 48)
        assert saved.mode in ("I;16", "I")
        pixels = np.array(saved)
    assert pixels.max() == 65535 and pixels.min() == 0
    np.testing.assert_allclose(pixels / 65535, disparity, atol=1e-4)  # near (disparity 1) is bright


def test_save_depth_map_constant_is_white_and_rejects_disparity(tmp_path):
    path = save_depth_map(np.full((4, 6), 3.0), tmp_path / "flat.png")
    with PIL.Image.open(path) as saved:
        assert np.all(np.array(saved) == 65535)
    with pytest.raises(ValueError, match="positive"):
        save_depth_map(np.linspace(0, 1, 24).reshape(4, 6), tmp_path / "disparity.png")


def _saved_tiny(folder) -> None:
    model, processor = tiny_depth_model()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


@pytest.mark.parametrize(
    ("install", "models"),
    [
        ("webui", "models/Deforum"),
        ("ComfyUI", "models/depthanything"),
    ],  # Deforum's and ComfyUI's depth folders
)
def test_a_depth_model_is_found_by_name_in_the_models_folder(tmp_path, tiny, image, install, models):
    root = tmp_path / install
    _saved_tiny(root / models / "my-dpt")
    loaded = DepthEstimator.load("my-dpt", device="cpu", models_dir=root)
    np.testing.assert_allclose(loaded(image), tiny(image), atol=1e-6)
    with pytest.raises(FlipbookError) as caught:  # not there: the error lists what is
        DepthEstimator.load("other-dpt", device="cpu", models_dir=root)
    assert caught.value.field == "camera.depth_model" and "my-dpt" in caught.value.allowed


def test_the_camera_loads_its_depth_model_from_the_spec_s_models_folder(tmp_path, tiny, image):
    from flipbook.modes.camera.render import depth_estimator
    from flipbook.spec.load import spec_from_data

    _saved_tiny(tmp_path / "webui" / "models" / "Deforum" / "my-dpt")
    spec = spec_from_data(
        {
            "prompts": {"0": "a cat"},
            "model": {"device": "cpu", "models_dir": str(tmp_path / "webui")},
            "animation": {"mode": "3d", "max_frames": 2},
            "camera": {"depth_model": "my-dpt"},
        }
    )
    np.testing.assert_allclose(depth_estimator(spec)(image), tiny(image), atol=1e-6)

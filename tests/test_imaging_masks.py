import numpy as np
import PIL.Image
import pytest

from flipbook.imaging.masks import composite, feather, load_mask


def _rgba() -> PIL.Image.Image:
    """Black RGB everywhere, alpha 255 on the left half and 0 on the right."""
    pixels = np.zeros((40, 60, 4), np.uint8)
    pixels[:, :30, 3] = 255
    return PIL.Image.fromarray(pixels, "RGBA")


def _luminance() -> PIL.Image.Image:
    """White on the top half, black below."""
    pixels = np.zeros((40, 60), np.uint8)
    pixels[:20] = 255
    return PIL.Image.fromarray(pixels, "L")


def test_alpha_and_luminance_give_different_masks():
    image = _rgba()
    alpha = load_mask(image, (60, 40), use_alpha=True)
    luminance = load_mask(image, (60, 40))
    assert alpha.dtype == np.float32 and alpha.shape == (40, 60)
    assert np.all(alpha[:, :30] == 1) and np.all(alpha[:, 30:] == 0)
    assert np.all(luminance == 0)  # the colour is black everywhere


def test_luminance_mask_and_invert():
    mask = load_mask(_luminance(), (60, 40))
    assert np.all(mask[:20] == 1) and np.all(mask[20:] == 0)
    inverted = load_mask(_luminance(), (60, 40), invert=True)
    assert np.array_equal(inverted, 1 - mask)


def test_resize_takes_width_then_height():
    down = load_mask(_luminance(), (30, 10))
    assert down.shape == (10, 30)
    assert np.all(down[:4] == 1) and np.all(down[6:] == 0)
    assert 0.5 < down[4, 0] < 1 and 0 < down[5, 0] < 0.5  # bilinear: a soft step across the edge
    up = load_mask(_luminance(), (60, 80))
    assert up.shape == (80, 60)
    assert np.all(up[:39] >= up[1:40])
    assert up.min() >= 0 and up.max() <= 1


def test_load_mask_from_a_file(tmp_path):
    path = tmp_path / "mask.png"
    _rgba().save(path)
    assert np.array_equal(
        load_mask(path, (60, 40), use_alpha=True), load_mask(_rgba(), (60, 40), use_alpha=True)
    )
    assert load_mask(str(path), (60, 40), use_alpha=True).shape == (40, 60)


def test_use_alpha_without_alpha_raises():
    with pytest.raises(ValueError, match="alpha"):
        load_mask(_luminance(), (60, 40), use_alpha=True)
    with pytest.raises(ValueError, match="alpha"):
        load_mask(_luminance().convert("RGB"), (60, 40), use_alpha=True)


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    image = PIL.Image.fromarray(np.full((4, 6), 32768, np.uint16))
    assert load_mask(image, (6, 4)).max() == pytest.approx(0.5, abs=1e-3)


def test_feather_smooths_an_edge():
    mask = np.zeros((40, 60), np.float32)
    mask[:, 30:] = 1
    soft = feather(mask, 3.0)
    assert soft.dtype == np.float32 and soft.min() >= 0 and soft.max() <= 1
    row = soft[20]
    assert 0 < row[29] < 0.5 < row[30] < 1
    assert np.all(np.diff(row) >= -1e-6)  # still a monotone ramp
    assert row[0] == pytest.approx(0, abs=1e-6) and row[-1] == pytest.approx(1, abs=1e-6)
    assert np.array_equal(feather(mask, 0), mask)
    with pytest.raises(ValueError):
        feather(mask, -1)


def test_composite_exact_at_zero_and_one_and_blends_between():
    rng = np.random.default_rng(0)
    animated = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    still = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert np.array_equal(composite(animated, still, np.ones((40, 60))), animated)
    assert np.array_equal(composite(animated, still, np.zeros((40, 60))), still)
    half = composite(animated, still, np.full((40, 60), 0.5, np.float32))
    assert np.abs(half.astype(float) - (animated.astype(float) + still) / 2).max() <= 0.5


def test_composite_requires_matching_sizes():
    image = np.zeros((40, 60, 3), np.uint8)
    with pytest.raises(ValueError):
        composite(image, np.zeros((40, 61, 3), np.uint8), np.ones((40, 60)))
    with pytest.raises(ValueError):
        composite(image, image, np.ones((40, 61)))

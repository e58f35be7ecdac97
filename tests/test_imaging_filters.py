import numpy as np
import pytest

from flipbook.imaging.filters import add_noise, adjust_contrast, perlin_noise, unsharp_mask


def _image(seed: int = 0, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 216, (*shape, 3), dtype=np.uint8)


def _edge(shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    """Left half 80, right half 170."""
    image = np.full((*shape, 3), 80, np.uint8)
    image[:, shape[1] // 2 :] = 170
    return image


def _neighbour_correlation(field: np.ndarray) -> float:
    return float(np.corrcoef(field[:, 1:].ravel(), field[:, :-1].ravel())[0, 1])


# contrast


def test_contrast_one_is_identity():
    image = _image()
    assert np.array_equal(adjust_contrast(image, 1.0), image)


def test_contrast_half_halves_and_high_contrast_saturates():
    image = np.array([[[0, 100, 255]]], np.uint8)
    assert adjust_contrast(image, 0.5).tolist() == [[[0, 50, 128]]]  # 127.5 rounds to even
    assert adjust_contrast(image, 2.0).tolist() == [[[0, 200, 255]]]  # no wrap-around past 255


# unsharp mask


def test_unsharp_amount_zero_is_identity():
    image = _image()
    out = unsharp_mask(image, amount=0, kernel_size=5, sigma=1.0, threshold=0)
    assert np.array_equal(out, image) and out is not image


def test_unsharp_increases_contrast_across_an_edge():
    image = _edge()
    out = unsharp_mask(image, amount=1.0, kernel_size=5, sigma=1.0, threshold=0)
    middle = image.shape[1] // 2
    assert out[:, middle - 1].max() < 80 and out[:, middle].min() > 170  # overshoot on both sides
    assert np.array_equal(out[:, :10], image[:, :10])  # flat areas unchanged
    assert np.array_equal(out[:, -10:], image[:, -10:])


def test_unsharp_threshold_keeps_small_differences():
    rng = np.random.default_rng(2)
    image = np.clip(_edge().astype(int) + rng.integers(-2, 3, (48, 64, 3)), 0, 255).astype(np.uint8)
    sharpened = unsharp_mask(image, amount=2.0, kernel_size=5, sigma=1.0, threshold=0)
    thresholded = unsharp_mask(image, amount=2.0, kernel_size=5, sigma=1.0, threshold=10)
    flat = np.s_[:, :20]
    assert not np.array_equal(sharpened[flat], image[flat])  # the noise got sharpened
    assert np.array_equal(thresholded[flat], image[flat])  # ... but not under the threshold
    middle = image.shape[1] // 2
    assert thresholded[:, middle].min() > 175  # the edge is still sharpened


def test_unsharp_kernel_size_zero_derives_from_sigma():
    out = unsharp_mask(_edge(), amount=1.0, kernel_size=0, sigma=1.5, threshold=0)
    assert out[:, 32].min() > 170


@pytest.mark.parametrize("kernel_size", [4, -3])
def test_unsharp_rejects_even_or_negative_kernel(kernel_size):
    with pytest.raises(ValueError, match=str(kernel_size)):
        unsharp_mask(_edge(), amount=1.0, kernel_size=kernel_size, sigma=1.0, threshold=0)


# noise


@pytest.mark.parametrize("noise_type", ["gaussian", "perlin"])
def test_noise_is_reproducible_per_seed(noise_type):
    image = _image()
    first = add_noise(image, 0.1, seed=5, noise_type=noise_type)
    assert np.array_equal(first, add_noise(image, 0.1, seed=5, noise_type=noise_type))
    assert not np.array_equal(first, add_noise(image, 0.1, seed=6, noise_type=noise_type))
    assert not np.array_equal(first, image)


@pytest.mark.parametrize("noise_type", ["gaussian", "perlin"])
def test_noise_amount_zero_is_identity(noise_type):
    image = _image()
    assert np.array_equal(add_noise(image, 0.0, seed=1, noise_type=noise_type), image)


def test_gaussian_noise_std_matches_amount():
    image = np.full((48, 64, 3), 128, np.uint8)
    out = add_noise(image, 0.1, seed=3)
    difference = out.astype(float) - image
    assert difference.std() == pytest.approx(0.1 * 127.5, rel=0.05)
    assert abs(difference.mean()) < 0.5
    assert abs(_neighbour_correlation(difference[..., 0])) < 0.1  # white noise


def test_perlin_noise_is_smooth_in_range_and_any_size():
    default = perlin_noise(37, 53, generator=np.random.default_rng(0))  # 64 cells in the 4th octave
    assert default.shape == (37, 53) and default.dtype == np.float32
    assert default.min() >= -1 and default.max() <= 1
    field = perlin_noise(37, 53, generator=np.random.default_rng(0), octaves=3, cells=(3, 4))
    assert field.shape == (37, 53)
    assert field.min() >= -1 and field.max() <= 1
    assert field.std() > 0.05
    assert _neighbour_correlation(field) > 0.8
    assert _neighbour_correlation(field.T) > 0.8


def test_perlin_noise_one_octave_is_smoother_and_repeatable():
    one = perlin_noise(48, 64, generator=np.random.default_rng(0), octaves=1, cells=(4, 4))
    assert _neighbour_correlation(one) > 0.95
    again = perlin_noise(48, 64, generator=np.random.default_rng(0), octaves=1, cells=(4, 4))
    assert np.array_equal(one, again)


def test_perlin_add_noise_works_for_odd_sizes_and_differs_per_channel():
    image = np.full((37, 53, 3), 128, np.uint8)
    out = add_noise(image, 0.5, seed=4, noise_type="perlin").astype(float) - 128
    assert _neighbour_correlation(out[..., 0]) > 0.6
    assert not np.array_equal(out[..., 0], out[..., 1])


@pytest.mark.parametrize("noise_type", ["gaussian", "perlin"])
def test_noise_mask_zero_leaves_pixels_unchanged(noise_type):
    image = _image()
    mask = np.zeros((48, 64), np.float32)
    mask[:, 32:] = 1
    out = add_noise(image, 0.3, seed=8, noise_type=noise_type, mask=mask)
    assert np.array_equal(out[:, :32], image[:, :32])
    assert not np.array_equal(out[:, 32:], image[:, 32:])


def test_noise_rejects_bad_type_and_mask_size():
    image = _image()
    with pytest.raises(ValueError):
        add_noise(image, 0.1, seed=0, noise_type="pink")
    with pytest.raises(ValueError):
        add_noise(image, 0.1, seed=0, mask=np.ones((10, 10)))

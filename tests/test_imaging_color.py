import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flipbook.imaging.color import (
    from_space,
    match_colors,
    match_histograms,
    to_grayscale,
    to_space,
    video_color_frame,
)


def _image(seed: int = 0, shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A colourful, smooth-ish RGB test image."""
    noise = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    return cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2), None, 0, 255, cv2.NORM_MINMAX)


def _red_reference(shape: tuple[int, int] = (30, 40)) -> np.ndarray:
    """Strong red channel, weak green and blue, some spread in each."""
    rng = np.random.default_rng(7)
    red = rng.integers(180, 256, shape)
    green_blue = rng.integers(0, 60, (*shape, 2))
    return np.dstack([red, green_blue]).astype(np.uint8)


@pytest.mark.parametrize("mode", ["none", "rgb", "hsv", "lab"])
def test_matching_an_image_to_itself_keeps_its_levels(mode):
    """Each level maps to itself; HSV and LAB keep only what OpenCV's 8-bit conversion there and back does."""
    image = _image()
    out = match_colors(image, image, mode)
    assert out.dtype == np.uint8 and out.shape == image.shape
    expected = image if mode in ("none", "rgb") else from_space(to_space(image, mode), mode)
    assert np.array_equal(out, expected)


_DEFORUM_CONVERSIONS = {
    "hsv": (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB),
    "lab": (cv2.COLOR_RGB2LAB, cv2.COLOR_LAB2RGB),
}


def _deforum_maintain_colors(image: np.ndarray, reference: np.ndarray, mode: str) -> np.ndarray:
    """Deforum's ``maintain_colors`` on uint8 frames (in RGB order): OpenCV's 8-bit conversion, scikit-image's
    ``match_histograms(..., channel_axis=-1)`` (its result stored in an array of the image's dtype, uint8:
    truncated), OpenCV's conversion back."""
    to_space_code, to_rgb_code = _DEFORUM_CONVERSIONS.get(mode, (None, None))
    converted = image if to_space_code is None else cv2.cvtColor(image, to_space_code)
    converted_reference = reference if to_space_code is None else cv2.cvtColor(reference, to_space_code)
    matched = np.empty(converted.shape, dtype=converted.dtype)
    for channel in range(3):
        matched[..., channel] = match_histograms(converted[..., channel], converted_reference[..., channel])
    return matched if to_rgb_code is None else cv2.cvtColor(matched, to_rgb_code)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    shape=st.tuples(st.integers(8, 70), st.integers(8, 70)),
    reference_shape=st.tuples(st.integers(8, 50), st.integers(8, 50)),
    mode=st.sampled_from(["rgb", "hsv", "lab"]),
    dark=st.floats(0.2, 1.0),
)
def test_colours_are_matched_as_deforum_matches_them(seed, shape, reference_shape, mode, dark):
    """The same bytes as Deforum's 8-bit computation, for any sizes (the reference's histograms are made once
    and each frame's levels mapped by a table; Deforum matches every value)."""
    image = _image(seed, shape)
    reference = (_image(seed + 1, reference_shape) * np.array([1.0, dark, 0.5])).astype(np.uint8)
    assert np.array_equal(
        match_colors(image, reference, mode), _deforum_maintain_colors(image, reference, mode)
    )


def test_match_histograms_gives_the_reference_distribution():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(40, 50))
    reference = rng.uniform(10, 20, size=(30, 30))
    matched = match_histograms(image, reference)
    assert matched.shape == image.shape
    assert np.all(np.diff(matched.ravel()[np.argsort(image.ravel())]) >= 0)  # order kept
    assert matched.min() >= reference.min() and matched.max() == reference.max()
    assert np.percentile(matched, 50) == pytest.approx(np.percentile(reference, 50), abs=0.3)


def test_match_histograms_rejects_channel_mismatch():
    with pytest.raises(ValueError):
        match_histograms(np.zeros((4, 4, 3)), np.zeros((4, 4, 2)))


def test_rgb_matching_restores_a_darkened_image():
    original = _image()
    darkened = (original * 0.5).astype(np.uint8)
    out = match_colors(darkened, original, "rgb")
    for channel in range(3):
        assert out[..., channel].mean() == pytest.approx(original[..., channel].mean(), abs=2)


@pytest.mark.parametrize("mode", ["rgb", "hsv", "lab"])
def test_red_reference_makes_the_result_red_in_rgb_order(mode):
    image = _image(3)
    reference = _red_reference()
    out = match_colors(image, reference, mode)
    means = out.reshape(-1, 3).mean(axis=0)
    assert means[0] > image[..., 0].mean() + 40  # channel 0 is red: a BGR swap would shrink it
    assert means[0] > means[1] + 80 and means[0] > means[2] + 80


@pytest.mark.parametrize("mode, space", [("hsv", cv2.COLOR_RGB2HSV), ("lab", cv2.COLOR_RGB2LAB)])
def test_hsv_and_lab_move_statistics_towards_the_reference(mode, space):
    image = _image(4)
    reference = np.clip(_image(5, (32, 32)).astype(int) // 3 + np.array([150, 40, 90]), 0, 255).astype(
        np.uint8
    )
    out = match_colors(image, reference, mode)
    assert out.dtype == np.uint8 and out.shape == image.shape  # uint8 is in range by construction

    def stats(x: np.ndarray) -> np.ndarray:
        converted = cv2.cvtColor(x.astype(np.float32) / 255, space).reshape(-1, 3)
        return np.concatenate([converted.mean(axis=0), converted.std(axis=0)])

    target = stats(reference)
    assert np.abs(stats(out) - target).sum() < 0.5 * np.abs(stats(image) - target).sum()


def test_reference_may_have_another_size():
    out = match_colors(_image(), _image(9, (20, 90)), "rgb")
    assert out.shape == (48, 64, 3)


def test_unknown_mode_and_bad_shapes_raise():
    image = _image()
    with pytest.raises(ValueError, match="coherence"):
        match_colors(image, image, "bgr")
    with pytest.raises(ValueError):
        match_colors(image[..., 0], image, "rgb")


def test_grayscale_has_three_equal_channels_of_rgb_luma():
    image = _image()
    gray = to_grayscale(image)
    assert gray.shape == image.shape and gray.dtype == np.uint8
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    assert to_grayscale(red)[0, 0, 0] == 76  # 0.299 * 255: RGB order, not BGR (which gives 29)


def test_video_colour_sample_is_refreshed_every_n_frames():
    """Deforum's "Video Input" colour coherence: frame k is matched to video frame (k // N) * N."""
    assert [video_color_frame(k, 1) for k in range(5)] == [0, 1, 2, 3, 4]
    assert [video_color_frame(k, 3) for k in range(8)] == [0, 0, 0, 3, 3, 3, 6, 6]
    for n in range(1, 7):
        assert all(video_color_frame(k, n) == (k // n) * n for k in range(40))
        assert all(
            video_color_frame(k, n, range(40)) == (k // n) * n for k in range(40)
        )  # every frame diffused


def test_video_colour_sample_is_taken_at_diffused_frames_only():
    """With cadence Deforum refreshes the sample only at diffused frames that are multiples of N."""
    diffused = [0, 2, 4, 6, 8, 9]  # cadence 2, 10 frames (flipbook diffuses the last frame too)
    assert [video_color_frame(k, 3, diffused) for k in diffused] == [0, 0, 0, 6, 6, 9]
    assert [video_color_frame(k, 2, diffused) for k in diffused] == [0, 2, 4, 6, 8, 8]
    with pytest.raises(ValueError):
        video_color_frame(3, 0)
    with pytest.raises(ValueError):
        video_color_frame(-1, 2)

"""The torch versions of the feedback loop's pixel operations against the numpy/OpenCV ones (the reference),
within the tolerances their modules state."""

import cv2
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flipbook.imaging import filters as reference_filters
from flipbook.imaging import filters_torch as tf
from flipbook.imaging.color import from_space, match_colors, to_grayscale, to_space
from flipbook.imaging.color_torch import HSV_TOLERANCE, ColorReference
from flipbook.imaging.masks import composite
from flipbook.motion.camera2d import (
    TENSOR_WARP_TOLERANCE,
    PerspectiveFlip,
    grid_sample_warp,
    matrix_2d,
    warp_2d,
    warp_2d_tensor,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _image(seed: int, shape=(48, 64), scale=(1.0, 1.0, 1.0)) -> np.ndarray:
    """A smooth colourful image, its channels scaled (a colour cast)."""
    noise = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    smooth = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2), None, 0, 255, cv2.NORM_MINMAX)
    return (smooth * np.array(scale)).astype(np.uint8)


def _diff(a, b) -> np.ndarray:
    a = a.numpy() if torch.is_tensor(a) else a
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def _match(reference: np.ndarray, image: np.ndarray, space: str, opencv: bool) -> torch.Tensor:
    """``image`` matched by a :class:`ColorReference`: OpenCV's kernel (the CPU's) or torch's (a GPU's)."""
    made = ColorReference.of(torch.from_numpy(reference), space, on_cpu_use_opencv=opencv)
    return made.match(torch.from_numpy(image), on_cpu_use_opencv=opencv)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    scale=st.tuples(*[st.floats(0.2, 1.0)] * 3),
    size=st.sampled_from([(48, 64), (61, 47), (64, 64)]),
    opencv=st.booleans(),
)
def test_lab_and_rgb_matching_equal_the_numpy_reference(seed, scale, size, opencv):
    """The CPU's kernel is the reference; the torch kernel looks OpenCV's 8-bit conversions up in tables of
    every RGB triple and histograms 256 levels as the reference does: the same bytes."""
    image, reference = _image(seed, size), _image(seed + 1, (48, 40), scale)
    for space in ("rgb", "lab"):
        assert (
            _diff(_match(reference, image, space, opencv), match_colors(image, reference, space)).max() == 0
        )


@pytest.mark.parametrize("opencv", [True, False])
@pytest.mark.parametrize("size", [(96, 96), (61, 47)])
def test_hsv_matching_equals_the_numpy_reference(opencv, size):
    """Exactly on the CPU; the torch kernel within HSV_TOLERANCE: OpenCV's own 8-bit HSV2RGB rounds the
    pixels of a row's tail (past its last full vector) differently from the rest (an odd width here)."""
    image, reference = _image(3, size), _image(4, (64, 64), (1.0, 0.6, 0.3))
    difference = _diff(_match(reference, image, "hsv", opencv), match_colors(image, reference, "hsv"))
    assert difference.max() <= (0 if opencv else HSV_TOLERANCE)


def test_a_reference_is_made_once_and_matched_many_times():
    reference = ColorReference.of(torch.from_numpy(_image(5)), "lab")
    first, second = _image(6), _image(7)
    out = [reference.match(torch.from_numpy(image)) for image in (first, second, first)]
    assert torch.equal(out[0], out[2])
    assert _diff(out[1], match_colors(second, _image(5), "lab")).max() == 0


@pytest.mark.parametrize("opencv", [True, False])
def test_matching_an_image_to_itself_keeps_its_levels(opencv):
    """Every level maps to itself: what is left is OpenCV's 8-bit conversion there and back (Deforum's)."""
    image = _image(8)
    for space in ("rgb", "hsv", "lab"):
        round_trip = from_space(to_space(image, space), space)
        assert _diff(_match(image, image, space, opencv), round_trip).max() == 0, space


def test_unknown_colour_space_is_refused():
    with pytest.raises(ValueError, match="video"):
        ColorReference.of(torch.zeros(4, 4, 3, dtype=torch.uint8), "video")


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    contrast=st.floats(0.0, 3.0),
    amount=st.floats(0.0, 3.0),
    kernel=st.sampled_from([0, 1, 3, 5, 9]),
    sigma=st.floats(0.0, 3.0),
    threshold=st.sampled_from([0.0, 2.0, 10.0]),
)
def test_contrast_and_unsharp_equal_the_numpy_reference(seed, contrast, amount, kernel, sigma, threshold):
    if kernel == 0 and sigma <= 0:
        sigma = 1.0
    image = _image(seed)
    tensor = torch.from_numpy(image)
    assert (
        _diff(tf.adjust_contrast(tensor, contrast), reference_filters.adjust_contrast(image, contrast)).max()
        == 0
    )
    kwargs = {"amount": amount, "kernel_size": kernel, "sigma": sigma, "threshold": threshold}
    expected = reference_filters.unsharp_mask(image, **kwargs)
    assert _diff(tf.unsharp_mask(tensor, **kwargs), expected).max() <= tf.UNSHARP_TOLERANCE


@pytest.mark.parametrize(("kernel", "sigma"), [(5, 1.0), (0, 2.0), (7, 0.0), (3, 0.5), (1, 1.0)])
def test_the_torch_blur_kernel_equals_opencvs(kernel, sigma):
    """The blur GPUs run (the CPU runs OpenCV's own): within float rounding of ``cv2.GaussianBlur``."""
    image = _image(14).astype(np.float32)
    blurred = tf.gaussian_blur(torch.from_numpy(image), kernel, sigma, on_cpu_use_opencv=False)
    assert np.abs(blurred.numpy() - cv2.GaussianBlur(image, (kernel, kernel), sigma)).max() < 1e-3


def test_unsharp_checks_its_kernel_as_the_numpy_one_does():
    with pytest.raises(ValueError, match="odd"):
        tf.unsharp_mask(
            torch.zeros(8, 8, 3, dtype=torch.uint8), amount=1, kernel_size=4, sigma=1, threshold=0
        )


@pytest.mark.parametrize("noise_type", ["gaussian", "perlin"])
def test_noise_is_the_numpy_draws_byte_for_byte(noise_type):
    image = _image(9)
    mask = np.random.default_rng(1).random(image.shape[:2]).astype(np.float32)
    field = tf.noise_field(*image.shape, seed=42, noise_type=noise_type)
    out = tf.add_noise(torch.from_numpy(image), 0.3, torch.from_numpy(field), torch.from_numpy(mask))
    expected = reference_filters.add_noise(image, 0.3, seed=42, noise_type=noise_type, mask=mask)
    assert _diff(out, expected).max() == 0


def test_grayscale_and_composite_equal_the_reference_byte_for_byte():
    image, other = _image(10), _image(11)
    mask = np.random.default_rng(2).random(image.shape[:2]).astype(np.float32)
    assert _diff(tf.to_grayscale(torch.from_numpy(image)), to_grayscale(image)).max() == 0
    blended = tf.composite(torch.from_numpy(image), torch.from_numpy(other), torch.from_numpy(mask))
    assert _diff(blended, composite(image, other, mask)).max() == 0


@settings(max_examples=30, deadline=None)
@given(
    border=st.sampled_from(["replicate", "wrap", "reflect", "zeros"]),
    zoom=st.floats(0.5, 1.5),
    angle=st.floats(-30, 30),
    tx=st.floats(-40, 40),
    ty=st.floats(-40, 40),
    flip=st.booleans(),
)
@example(border="replicate", zoom=0.75, angle=0.0, tx=0.0, ty=0.0, flip=False)
@example(border="reflect", zoom=0.6, angle=0.0, tx=13.3, ty=0.0, flip=False)
def test_tensor_warp_equals_opencvs(border, zoom, angle, tx, ty, flip):
    """Within a level or two, and rarely off: where a zoom or shift puts the sample positions halfway between
    pixels (zoom 0.6, 0.75, 1.0 with half-pixel shifts), OpenCV's 1/32-pixel fixed-point weights and float
    bilinear weights round differently on up to 13% of the values, each by one level."""
    image = _image(12, (40, 56))
    perspective = PerspectiveFlip(theta=3, phi=8, gamma=-5) if flip else None
    matrix = matrix_2d(width=56, height=40, zoom=zoom, angle=angle, translation_x=tx, translation_y=ty,
                       perspective_flip=perspective)  # fmt: skip
    expected = warp_2d(image, matrix, border)
    difference = _diff(grid_sample_warp(torch.from_numpy(image), matrix, border), expected)  # a GPU's kernel
    assert difference.max() <= TENSOR_WARP_TOLERANCE and difference.mean() < 0.2
    assert _diff(warp_2d_tensor(torch.from_numpy(image), matrix, border), expected).max() == 0  # the CPU's


def test_a_singular_warp_is_opencvs_flat_frame():
    image = _image(13)
    matrix = matrix_2d(width=64, height=48, zoom=0)
    assert _diff(warp_2d_tensor(torch.from_numpy(image), matrix), warp_2d(image, matrix)).max() == 0

"""The 2D camera: homography conventions, borders, and composition."""

from __future__ import annotations

import numpy as np
import pytest

from flipbook.motion.camera2d import PerspectiveFlip, compose, invert, matrix_2d, warp_2d

H, W = 48, 64
CX, CY = (W - 1) / 2, (H - 1) / 2


def blob(x: float, y: float, sigma: float = 2.0) -> np.ndarray:
    """A float32 H x W x 3 black image with a Gaussian spot centred at (x, y)."""
    ys, xs = np.mgrid[0:H, 0:W]
    spot = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)).astype(np.float32)
    return np.repeat(spot[..., None], 3, axis=2)


def centroid(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre (x, y) of channel 0."""
    weights = image[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()


def apply(matrix: np.ndarray, x: float, y: float) -> np.ndarray:
    """Where ``matrix`` sends the point (x, y)."""
    u, v, w = matrix @ np.array([x, y, 1.0])
    return np.array([u / w, v / w])


def gradient_image() -> np.ndarray:
    """uint8 H x W x 3 whose value identifies the column (and, in channel 1, the row)."""
    image = np.zeros((H, W, 3), np.uint8)
    image[..., 0] = (np.arange(W) * 3 + 10)[None, :]
    image[..., 1] = (np.arange(H) * 4 + 20)[:, None]
    image[..., 2] = 200
    return image


def test_identity_parameters_give_identity_matrix_and_unchanged_image():
    matrix = matrix_2d(width=W, height=H)
    assert matrix.dtype == np.float64 and matrix.shape == (3, 3)
    np.testing.assert_array_equal(matrix, np.eye(3))
    image = gradient_image()
    np.testing.assert_array_equal(warp_2d(image, matrix), image)
    flipped = matrix_2d(width=W, height=H, perspective_flip=PerspectiveFlip())
    np.testing.assert_allclose(flipped / flipped[2, 2], np.eye(3), atol=1e-12)


@pytest.mark.parametrize("image", [gradient_image(), blob(20, 20), blob(20, 20)[..., :1]])
def test_warp_keeps_shape_and_dtype(image):
    out = warp_2d(image, matrix_2d(width=W, height=H, angle=7, zoom=1.1, translation_x=2.5))
    assert out.shape == image.shape and out.dtype == image.dtype


def test_translation_moves_the_picture_right_and_down_by_exact_pixels():
    image = np.zeros((H, W, 3), np.uint8)
    image[10:15, 20:25] = 255
    out = warp_2d(image, matrix_2d(width=W, height=H, translation_x=7, translation_y=-5))
    expected = np.zeros_like(image)
    expected[5:10, 27:32] = 255
    np.testing.assert_array_equal(out, expected)


def test_positive_angle_rotates_counter_clockwise_on_screen():
    image = blob(CX + 15, CY)
    out = warp_2d(image, matrix_2d(width=W, height=H, angle=90), border="zeros")
    # A marker right of the centre goes to above it (y is down).
    np.testing.assert_allclose(centroid(out), [CX, CY - 15], atol=0.05)
    small = centroid(warp_2d(image, matrix_2d(width=W, height=H, angle=10), border="zeros"))
    assert small[1] < CY - 2  # moved up, i.e. counter-clockwise


def test_zoom_keeps_the_transform_center_fixed():
    fixed = (0.25 * (W - 1), 0.75 * (H - 1))
    matrix = matrix_2d(
        width=W, height=H, zoom=1.5, angle=20, transform_center_x=0.25, transform_center_y=0.75
    )
    np.testing.assert_allclose(apply(matrix, *fixed), fixed, atol=1e-12)
    np.testing.assert_allclose(centroid(warp_2d(blob(*fixed), matrix, "zeros")), fixed, atol=0.05)
    # Another point moves away from it by the zoom factor.
    moved = apply(matrix, fixed[0] + 10, fixed[1])
    assert np.linalg.norm(moved - fixed) == pytest.approx(15.0)


def test_zoom_above_one_grows_the_picture_about_the_centre():
    matrix = matrix_2d(width=W, height=H, zoom=2.0)
    np.testing.assert_allclose(apply(matrix, CX + 5, CY - 3), [CX + 10, CY - 6], atol=1e-12)


def test_perspective_flip_keeps_the_translation():
    flip = PerspectiveFlip(theta=5, phi=10, gamma=-15, fv=40)
    without = matrix_2d(width=W, height=H, angle=3, perspective_flip=flip)
    with_translation = matrix_2d(
        width=W, height=H, angle=3, translation_x=6, translation_y=-4, perspective_flip=flip
    )
    assert not np.allclose(apply(with_translation, CX, CY), apply(without, CX, CY), atol=1.0)
    flip_only = matrix_2d(width=W, height=H, perspective_flip=flip)
    expected = compose(matrix_2d(width=W, height=H, angle=3, translation_x=6, translation_y=-4), flip_only)
    np.testing.assert_allclose(with_translation, expected, atol=1e-9)
    # And the picture really lands where the translated-then-flipped point goes.
    out = warp_2d(blob(CX - 4, CY + 2), with_translation, "zeros")
    np.testing.assert_allclose(centroid(out), apply(flip_only, CX + 2, CY - 2), atol=0.3)


def test_perspective_flip_pivots_on_the_centre_with_deforum_signs():
    centre = (CX, CY)
    roll = matrix_2d(width=W, height=H, perspective_flip=PerspectiveFlip(theta=90))
    np.testing.assert_allclose(apply(roll, *centre), centre, atol=1e-9)
    # Deforum's theta rolls clockwise: a point right of the centre goes below it.
    np.testing.assert_allclose(apply(roll, CX + 10, CY), [CX, CY + 10], atol=1e-9)
    tilt = matrix_2d(width=W, height=H, perspective_flip=PerspectiveFlip(phi=20))
    top = apply(tilt, W - 1, 0)[0] - apply(tilt, 0, 0)[0]
    bottom = apply(tilt, W - 1, H - 1)[0] - apply(tilt, 0, H - 1)[0]
    assert bottom > W - 1 > top  # positive phi brings the bottom edge closer
    pan = matrix_2d(width=W, height=H, perspective_flip=PerspectiveFlip(gamma=20))
    left = apply(pan, 0, H - 1)[1] - apply(pan, 0, 0)[1]
    right = apply(pan, W - 1, H - 1)[1] - apply(pan, W - 1, 0)[1]
    assert left > H - 1 > right  # positive gamma brings the left edge closer


def test_border_modes_fill_uncovered_pixels():
    image = gradient_image()
    shift = matrix_2d(width=W, height=H, translation_x=10)
    zeros = warp_2d(image, shift, "zeros")
    np.testing.assert_array_equal(zeros[:, :10], 0)
    np.testing.assert_array_equal(zeros[:, 10:], image[:, :-10])
    replicate = warp_2d(image, shift, "replicate")
    np.testing.assert_array_equal(replicate[:, :10], np.repeat(image[:, :1], 10, axis=1))
    wrap = warp_2d(image, shift, "wrap")
    np.testing.assert_array_equal(wrap[:, :10], image[:, -10:])  # the right edge comes in on the left
    reflect = warp_2d(image, shift, "reflect")
    np.testing.assert_array_equal(reflect[:, :10], image[:, 10:0:-1])  # mirrored, edge not repeated
    assert warp_2d(image, shift).dtype == np.uint8


def test_bad_border_raises_naming_the_allowed_values():
    with pytest.raises(ValueError, match="replicate.*wrap.*reflect.*zeros"):
        warp_2d(gradient_image(), np.eye(3), border="mirror")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="3x3"):
        warp_2d(gradient_image(), np.eye(4))


def test_compose_applies_in_order_and_invert_round_trips():
    rotate = matrix_2d(width=W, height=H, angle=30)
    move = matrix_2d(width=W, height=H, translation_x=5)
    np.testing.assert_allclose(compose(rotate, move), move @ rotate)
    np.testing.assert_allclose(
        apply(compose(rotate, move), CX + 10, CY), [CX + 5 + 10 * np.cos(np.pi / 6), CY - 5]
    )
    np.testing.assert_array_equal(compose(), np.eye(3))
    matrix = matrix_2d(
        width=W,
        height=H,
        angle=12,
        zoom=1.2,
        translation_x=3,
        translation_y=-2,
        perspective_flip=PerspectiveFlip(theta=4, phi=-7, gamma=9),
    )
    round_trip = compose(matrix, invert(matrix))
    np.testing.assert_allclose(round_trip / round_trip[2, 2], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(apply(invert(matrix), *apply(matrix, 10.0, 20.0)), [10.0, 20.0], atol=1e-9)
    two_moves = compose(move, matrix_2d(width=W, height=H, translation_y=4))
    np.testing.assert_allclose(two_moves, matrix_2d(width=W, height=H, translation_x=5, translation_y=4))

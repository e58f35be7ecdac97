import numpy as np
import pytest

from flipbook.motion.flow import flow_tween, optical_flow, warp_by_flow

H, W = 48, 64
INTERIOR = np.s_[8:-8, 8:-8]


def _texture(dy: float = 0.0, dx: float = 0.0) -> np.ndarray:
    """A smooth analytic RGB texture whose content is moved by (dx, dy) pixels: texture(p) = base(p - d)."""
    y, x = np.mgrid[0:H, 0:W].astype(float)
    y, x = y - dy, x - dx
    rng = np.random.default_rng(5)
    out = np.zeros((H, W, 3))
    for channel in range(3):
        for _ in range(4):
            fy, fx = rng.uniform(-0.35, 0.35, 2)
            out[..., channel] += np.sin(fy * y + fx * x + rng.uniform(0, 2 * np.pi))
    return np.clip(128 + 30 * out, 0, 255).astype(np.uint8)


def test_flow_of_a_shift_is_the_shift():
    flow = optical_flow(_texture(), _texture(dy=2, dx=3))
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32
    assert np.median(flow[INTERIOR][..., 0]) == pytest.approx(3, abs=0.3)
    assert np.median(flow[INTERIOR][..., 1]) == pytest.approx(2, abs=0.3)


def test_flow_needs_equal_sizes():
    with pytest.raises(ValueError):
        optical_flow(_texture(), _texture()[:-1])


def test_warp_by_uniform_flow_moves_content():
    image = _texture()
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3, 2
    moved = warp_by_flow(image, flow)
    assert moved.dtype == image.dtype and moved.shape == image.shape
    assert np.array_equal(moved[2:, 3:], image[:-2, :-3])
    half = warp_by_flow(image.astype(np.float32), flow, scale=0.5)
    assert half.dtype == np.float32
    assert np.abs(half[INTERIOR] - _texture(dy=1, dx=1.5)[INTERIOR]).mean() < 1.0
    assert np.array_equal(warp_by_flow(image, flow, scale=0.0), image)
    with pytest.raises(ValueError):
        warp_by_flow(image, flow[:-1])


def test_flow_tween_puts_the_texture_half_way():
    previous, following = _texture(), _texture(dy=2, dx=3)
    tween = flow_tween(previous, following, 0.5)
    assert tween.dtype == np.uint8 and tween.shape == previous.shape
    expected = _texture(dy=1, dx=1.5).astype(float)
    error = np.abs(tween[INTERIOR] - expected[INTERIOR]).mean()
    crossfade_error = np.abs(
        (previous[INTERIOR].astype(float) + following[INTERIOR]) / 2 - expected[INTERIOR]
    )
    assert error < 1.5
    assert error < crossfade_error.mean() / 2  # better than a plain cross-fade


def test_flow_tween_end_points_and_range():
    previous, following = _texture(), _texture(dy=2, dx=3)
    assert np.array_equal(flow_tween(previous, following, 0.0), previous)
    assert np.array_equal(flow_tween(previous, following, 1.0), following)
    with pytest.raises(ValueError):
        flow_tween(previous, following, 1.5)


@pytest.mark.parametrize("size", [(8, 8), (1, 11), (11, 3)])
def test_images_smaller_than_dis_takes_get_their_own_flow(size):
    """The spec allows 8x8 frames; DIS refuses images under 12 pixels on both sides (cadence flow, video
    feedback and the consistency score all crashed after the frames were made)."""
    image = _texture()[: size[0], : size[1]]
    flow = optical_flow(image, image)
    assert flow.shape == (*size, 2) and flow.dtype == np.float32
    assert np.abs(flow).max() < 0.5

"""The 3D camera on synthetic scenes: analytic zoom, homographies, parallax, signs, and safety."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flipbook.motion.camera2d import invert, matrix_2d, warp_2d
from flipbook.motion.camera3d import (
    camera_motion,
    compose_motions,
    flat_depth,
    focal_length,
    intrinsics,
    invert_motion,
    source_positions,
    warp_3d,
)

H, W = 48, 64
CX, CY = (W - 1) / 2, (H - 1) / 2
FOV = 50.0
MARGIN = 6  # interior pixels only: near the edges the two warps pad differently

pytestmark = pytest.mark.usefixtures("one_thread")


def textured() -> torch.Tensor:
    """A smooth float32 (3, H, W) picture in [0, 1]."""
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij"
    )
    return torch.stack(
        (
            0.5 + 0.25 * torch.sin(xs / 4.0) + 0.2 * torch.cos(ys / 5.0),
            0.5 + 0.4 * torch.sin((xs + ys) / 6.0),
            0.5 + 0.3 * torch.cos(xs / 7.0) * torch.sin(ys / 3.0),
        )
    )


def blob(x: float, y: float, sigma: float = 2.0) -> torch.Tensor:
    """A float32 (3, H, W) black picture with a Gaussian spot at (x, y)."""
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij"
    )
    return torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)).expand(3, H, W).clone()


def centroid(image: torch.Tensor) -> np.ndarray:
    """Intensity-weighted centre (x, y) of channel 0 of a (C, H, W) tensor."""
    weights = image[0].double()
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    return np.array([float((weights * xs).sum()), float((weights * ys).sum())]) / float(weights.sum())


def bumpy_depth() -> torch.Tensor:
    """A random, far from flat, positive depth map."""
    generator = torch.Generator().manual_seed(0)
    return 2.0 + 6.0 * torch.rand(H, W, generator=generator)


def to_hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy()


def inverse_map(matrix: np.ndarray) -> np.ndarray:
    """Source pixel (H, W, 2) of every destination pixel under the homography ``matrix``."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    points = invert(matrix) @ np.stack((xs.ravel(), ys.ravel(), np.ones(H * W)))
    return (points[:2] / points[2]).T.reshape(H, W, 2)


def interior(array):
    return (
        array[..., MARGIN:-MARGIN, MARGIN:-MARGIN]
        if array.ndim == 3
        else array[MARGIN:-MARGIN, MARGIN:-MARGIN]
    )


def test_focal_length_and_intrinsics():
    assert focal_length(H, 90.0) == pytest.approx(H / 2)
    assert focal_length(H, 60.0) == pytest.approx((H / 2) / np.tan(np.radians(30)))
    k = intrinsics(W, H, FOV)
    assert k[0, 2] == CX and k[1, 2] == CY and k[0, 0] == k[1, 1] == focal_length(H, FOV)
    with pytest.raises(ValueError, match="fov"):
        focal_length(H, 180.0)


def test_identity_motion_leaves_the_picture_unchanged():
    image = textured()
    out = warp_3d(image, bumpy_depth(), camera_motion(), fov=FOV)
    torch.testing.assert_close(out, image, atol=1e-5, rtol=0)


def test_forward_on_a_plane_is_the_analytic_zoom():
    distance, forward = 10.0, 0.6
    zoom = distance / (distance - forward)
    depth = flat_depth(H, W, distance)
    motion = camera_motion(translation_z=forward)
    expected = matrix_2d(width=W, height=H, zoom=zoom)
    positions, visible = source_positions(depth, motion, fov=FOV)
    assert bool(visible.all())
    np.testing.assert_allclose(positions.numpy(), inverse_map(expected), atol=1e-3)
    image = textured()
    out = warp_3d(image, depth, motion, fov=FOV, sampling_mode="bilinear")
    reference = warp_2d(to_hwc(image), expected)
    np.testing.assert_allclose(interior(to_hwc(out)), interior(reference), atol=1e-2)


def test_pure_rotation_is_the_homography_k_r_k_inverse_whatever_the_depth():
    motion = camera_motion(rotation_x=2.0, rotation_y=-3.0, rotation_z=4.0)
    k = intrinsics(W, H, FOV)
    homography = k @ motion[:3, :3] @ np.linalg.inv(k)
    positions, visible = source_positions(bumpy_depth(), motion, fov=FOV)
    assert bool(visible.all())
    np.testing.assert_allclose(positions.numpy(), inverse_map(homography), atol=1e-3)
    image = textured()
    out = warp_3d(image, bumpy_depth(), motion, fov=FOV, sampling_mode="bilinear")
    reference = warp_2d(to_hwc(image), homography)
    np.testing.assert_allclose(interior(to_hwc(out)), interior(reference), atol=1e-2)


def test_rotation_z_matches_the_2d_angle():
    motion = camera_motion(rotation_z=7.0)
    positions, _ = source_positions(bumpy_depth(), motion, fov=FOV)
    np.testing.assert_allclose(
        positions.numpy(), inverse_map(matrix_2d(width=W, height=H, angle=7.0)), atol=1e-3
    )


def test_translation_x_on_a_plane_shifts_by_f_tx_over_z():
    distance = 5.0
    shift = 4.0
    tx = shift * distance / focal_length(H, FOV)
    depth = flat_depth(H, W, distance)
    positions, _ = source_positions(depth, camera_motion(translation_x=tx), fov=FOV)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    np.testing.assert_allclose(positions.numpy(), np.stack((xs - shift, ys), -1), atol=1e-4)
    out = warp_3d(blob(CX, CY), depth, camera_motion(translation_x=tx), fov=FOV, padding_mode="zeros")
    np.testing.assert_allclose(centroid(out), [CX + shift, CY], atol=0.05)


def test_translation_on_bumpy_depth_gives_parallax():
    depth = torch.full((H, W), 8.0)
    depth[:, W // 2 :] = 4.0  # the right half is twice as near: it moves twice as far
    positions, _ = source_positions(depth, camera_motion(translation_x=0.2), fov=FOV)
    f = focal_length(H, FOV)
    far_shift = float(W // 4 - positions[H // 2, W // 4, 0])
    near_shift = float(3 * W // 4 - positions[H // 2, 3 * W // 4, 0])
    assert far_shift == pytest.approx(f * 0.2 / 8.0, abs=1e-3)
    assert near_shift == pytest.approx(f * 0.2 / 4.0, abs=1e-3)


@pytest.mark.parametrize(
    ("motion", "direction"),
    [
        (dict(translation_x=0.3), (1, 0)),
        (dict(translation_y=0.3), (0, 1)),
        (dict(rotation_y=4.0), (1, 0)),  # the camera turns left: the picture moves right
        (dict(rotation_x=4.0), (0, 1)),  # the camera tilts up: the picture moves down
    ],
)
def test_sign_conventions_move_the_picture_right_and_down(motion, direction):
    out = warp_3d(blob(CX, CY), flat_depth(H, W, 5.0), camera_motion(**motion), fov=FOV, padding_mode="zeros")
    moved = centroid(out) - [CX, CY]
    assert np.dot(moved, direction) > 1.0
    assert abs(np.cross(moved, direction)) < 0.05


def test_rotation_z_turns_the_picture_counter_clockwise():
    out = warp_3d(
        blob(CX + 15, CY), bumpy_depth(), camera_motion(rotation_z=90.0 / 4), fov=FOV, padding_mode="zeros"
    )
    x, y = centroid(out)
    assert y < CY - 4 and x < CX + 15  # right of centre moves up


def test_translation_z_grows_the_picture():
    out = warp_3d(
        blob(CX + 10, CY - 8),
        flat_depth(H, W, 5.0),
        camera_motion(translation_z=1.0),
        fov=FOV,
        padding_mode="zeros",
    )
    np.testing.assert_allclose(centroid(out), [CX + 12.5, CY - 10], atol=0.1)


def test_compose_and_invert_motions():
    a = camera_motion(translation_x=0.3, rotation_y=5.0, translation_z=0.1)
    b = camera_motion(rotation_x=-2.0, translation_y=0.2, rotation_z=3.0)
    np.testing.assert_allclose(compose_motions(a, b), b @ a)
    np.testing.assert_allclose(compose_motions(a, invert_motion(a)), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(compose_motions(invert_motion(b), b), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(
        invert_motion(camera_motion(translation_x=1.0)), camera_motion(translation_x=-1.0)
    )
    np.testing.assert_array_equal(compose_motions(), np.eye(4))
    two_steps = compose_motions(
        camera_motion(translation_x=0.1), camera_motion(translation_x=0.2, translation_z=0.3)
    )
    np.testing.assert_allclose(two_steps, camera_motion(translation_x=0.3, translation_z=0.3), atol=1e-15)
    # Warping there and back on a plane returns the picture (interior).
    depth = flat_depth(H, W, 6.0)
    there = warp_3d(textured(), depth, a, fov=FOV, sampling_mode="bilinear")
    back_positions, _ = source_positions(depth, compose_motions(a, invert_motion(a)), fov=FOV)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    np.testing.assert_allclose(back_positions.numpy(), np.stack((xs, ys), -1), atol=1e-5)
    assert torch.isfinite(there).all()


def test_a_plane_behind_the_camera_gives_finite_padding():
    depth = flat_depth(H, W, 4.0)
    for motion in (
        camera_motion(translation_z=8.0),
        camera_motion(rotation_y=150.0),
        camera_motion(rotation_x=180.0),
    ):
        _, visible = source_positions(depth, motion, fov=FOV)
        assert not bool(visible.any())
        for padding in ("border", "reflection", "zeros"):
            for sampling in ("bilinear", "nearest", "bicubic"):
                out = warp_3d(
                    textured(), depth, motion, fov=FOV, padding_mode=padding, sampling_mode=sampling
                )
                assert torch.isfinite(out).all()
        zeros = warp_3d(textured(), depth, motion, fov=FOV, padding_mode="zeros")
        assert float(zeros.abs().max()) == 0.0


def test_partly_behind_the_camera_is_finite():
    depth = bumpy_depth()
    out = warp_3d(textured(), depth, camera_motion(translation_z=5.0, rotation_y=40.0), fov=FOV)
    assert torch.isfinite(out).all()


def test_batches_dtypes_and_validation():
    image = textured()
    batch = torch.stack((image, image.flip(0)))
    motion = camera_motion(translation_x=0.2, rotation_z=2.0)
    out = warp_3d(batch, bumpy_depth(), motion, fov=FOV)
    assert out.shape == batch.shape
    torch.testing.assert_close(out[0], warp_3d(image, bumpy_depth(), motion, fov=FOV))
    half = warp_3d(image.half(), bumpy_depth(), motion, fov=FOV)
    assert half.dtype == torch.float16 and half.shape == image.shape
    with pytest.raises(ValueError, match="border.*reflection.*zeros"):
        warp_3d(image, bumpy_depth(), motion, fov=FOV, padding_mode="wrap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bilinear.*nearest.*bicubic"):
        warp_3d(image, bumpy_depth(), motion, fov=FOV, sampling_mode="area")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="depth"):
        warp_3d(image, torch.ones(H, W + 1), motion, fov=FOV)
    with pytest.raises(ValueError, match="positive"):
        warp_3d(image, torch.zeros(H, W), motion, fov=FOV)
    with pytest.raises(ValueError, match="4x4"):
        warp_3d(image, bumpy_depth(), np.eye(3), fov=FOV)


@pytest.mark.parametrize(
    "motion",
    [
        camera_motion(translation_x=1.5, translation_z=2.0, rotation_x=3.0, rotation_y=-5.0, rotation_z=7.0),
        camera_motion(translation_z=-7.0, rotation_y=40.0),  # a part of the scene goes behind the camera
    ],
)
def test_forward_map_is_the_pinhole_projection_in_float64(motion):
    """The forward map (elementwise in float32) against the pinhole formula in float64 numpy:
    ``project(R @ unproject(p, depth) + t)``, within float32 rounding where visible (relative 3e-5: near the
    image plane a division by a small z amplifies it; the earlier matmul form was at 1.1e-5 here)."""
    from flipbook.motion.camera3d import _Camera

    depth = bumpy_depth()
    camera = _Camera.of(motion, H, W, FOV, depth)
    generator = torch.Generator().manual_seed(1)
    pixels = torch.rand(H, W, 2, generator=generator) * torch.tensor([W - 1.0, H - 1.0])
    projected, visible = camera.forward(pixels, depth)

    f = focal_length(H, FOV)
    p, d = pixels.double().numpy(), depth.double().numpy()
    points = np.stack(((p[..., 0] - CX) * d / f, (p[..., 1] - CY) * d / f, d), -1)
    moved = points @ motion[:3, :3].T + motion[:3, 3]
    expected_visible = moved[..., 2] > 1e-3 * d.min()
    z = np.where(expected_visible, moved[..., 2], 1.0)
    expected = np.stack((f * moved[..., 0] / z + CX, f * moved[..., 1] / z + CY), -1)
    assert np.array_equal(visible.numpy(), expected_visible)
    error = np.abs(projected.double().numpy() - expected)[expected_visible]
    scale = np.maximum(1.0, np.abs(expected[expected_visible]))
    assert (error / scale).max() < 3e-5 and np.isfinite(projected.numpy()).all()

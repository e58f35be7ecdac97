"""The ``restyle`` mode's propagation (flipbook.propagation.span) on a synthetic video with known motion and a
known per-pixel "style" (a colour transform), so the ideal restyled frame is known."""

import numpy as np
import pytest
import torch

from flipbook.bench.frame_interpolation import OBJECT_SPEED, _texture, scene_frames
from flipbook.propagation.patches import exemplar, nearest_patches, vote
from flipbook.propagation.span import blend_two, propagate_span

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 96


def style(frame):
    """A fixed per-pixel style: channels permuted and inverted."""
    return np.ascontiguousarray(255 - frame[..., [2, 0, 1]])


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / mse)


def shift_of(image, ideal, box):
    """The integer (dx, dy) within 3 px that best moves ``ideal`` onto ``image`` inside ``box``."""
    top, bottom, left, right = box
    best = min(
        ((dx, dy) for dx in range(-3, 4) for dy in range(-3, 4)),
        key=lambda d: np.abs(
            image[top:bottom, left:right].astype(float)
            - np.roll(ideal, d, axis=(1, 0))[top:bottom, left:right]
        ).mean(),
    )
    return best


@pytest.fixture(scope="module")
def clip():
    return scene_frames(9, SIZE, SIZE)


@pytest.fixture(scope="module")
def both_ways(clip):
    return propagate_span(clip, style(clip[0]), style(clip[-1]), device="cpu")


def test_in_betweens_follow_the_known_motion(clip, both_ways):
    assert sorted(both_ways) == list(range(1, 8))
    speed = OBJECT_SPEED[0] * SIZE / 512
    for j, frame in both_ways.items():
        ideal = style(clip[j])
        assert psnr(frame, ideal) > 26, j
        # the moving square (where the texture moves furthest: 2.25 px per frame here) sits where the source
        # says, within a pixel
        left = int(SIZE / 8 + speed * j) + 2
        top = int(SIZE / 3) + 2
        box = (top, top + SIZE // 4 - 4, left, left + SIZE // 4 - 4)
        dx, dy = shift_of(frame, ideal, box)
        assert abs(dx) <= 1 and abs(dy) <= 1, (j, dx, dy)


def test_without_a_closing_keyframe_the_first_is_carried_alone(clip, both_ways):
    alone = propagate_span(clip, style(clip[0]), None, device="cpu")
    assert sorted(alone) == list(range(1, 9))
    assert psnr(alone[1], style(clip[1])) > 26
    # from both ends is at least as good in the middle of the span as from one
    assert psnr(both_ways[6], style(clip[6])) > psnr(alone[6], style(clip[6]))


def test_wanted_frames_are_the_same_as_in_the_whole_span(clip, both_ways):
    part = propagate_span(clip, style(clip[0]), style(clip[-1]), wanted=[5, 6], device="cpu")
    assert sorted(part) == [5, 6]
    assert all(np.array_equal(part[j], both_ways[j]) for j in part)


def test_the_ends_weigh_in_by_distance(clip):
    """A keyframe pair styled differently: frames near a keyframe look like its style."""
    dark = propagate_span(clip, style(clip[0]), np.zeros_like(clip[-1]), device="cpu", blend="linear")
    means = [dark[j].mean() for j in sorted(dark)]
    assert all(a > b for a, b in zip(means, means[1:], strict=False))
    assert means[0] > 0.8 * style(clip[1]).mean() and means[-1] < 0.25 * style(clip[7]).mean()


def test_histogram_blend_keeps_contrast_that_a_linear_mix_loses():
    generator = torch.Generator().manual_seed(0)
    a = 128 + 40 * torch.randn(3, 64, 64, generator=generator)
    b = 128 + 40 * torch.randn(3, 64, 64, generator=generator)
    half = torch.full((1, 64, 64), 0.5)
    linear = blend_two(a, b, half, blend="linear")
    kept = blend_two(a, b, half, blend="histogram")
    assert linear.std() < 0.75 * a.std()
    assert kept.std().item() == pytest.approx(a.std().item(), rel=0.12)
    assert (kept.mean() - 128).abs() < 2
    # where the two agree, nothing changes
    assert torch.allclose(blend_two(a, a, half, blend="histogram"), a, atol=1e-3)
    assert torch.allclose(blend_two(a, b, torch.zeros_like(half), blend="histogram"), a, atol=1e-3)


def as_tensor(image):
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


def test_patch_match_finds_a_shifted_texture_and_votes_its_style():
    source = _texture(64, 64, 5)
    target = np.roll(source, (3, 5), axis=(0, 1))
    ys, xs = np.mgrid[0:64, 0:64]
    start = torch.from_numpy(np.stack([ys, xs], -1)).long()  # no idea of the motion to begin with
    key = exemplar(as_tensor(source), as_tensor(style(source)))
    field = nearest_patches(as_tensor(target), key, start)
    offset = (start - field)[8:-8, 8:-8]
    assert (offset == torch.tensor([3, 5])).all(-1).float().mean() > 0.99
    ys, xs = (torch.from_numpy(a.ravel()) for a in (ys, xs))
    voted = vote(key, field, ys, xs).T.reshape(64, 64, 3).numpy()
    assert np.abs(voted - style(target))[8:-8, 8:-8].mean() < 1


def test_uncovered_background_is_synthesised_from_the_keyframe_s_patches():
    """A red square slides right over a still texture: the strip it uncovers was never seen in keyframe 0.
    Carried by the flow alone it smears the square's style there; patch synthesis guided by the source puts
    the background's style back."""
    background = _texture(96, 96, 3)
    clip = []
    for j in range(7):
        frame = background.copy()
        frame[30:60, 20 + 4 * j : 50 + 4 * j] = (230, 40, 40)
        clip.append(frame)
    filled = propagate_span(clip, style(clip[0]), None, device="cpu")
    smeared = propagate_span(clip, style(clip[0]), None, device="cpu", fill=False)
    strip = (slice(30, 60), slice(20, 44))
    error = lambda frames: np.abs(frames[6][strip].astype(float) - style(clip[6])[strip]).mean()  # noqa: E731
    assert error(filled) < 25 < 60 < error(smeared)

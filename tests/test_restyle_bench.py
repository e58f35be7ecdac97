"""``flipbook bench propagation``: its pieces on small frames (the full case runs at 512x512 for minutes)."""

import numpy as np
import pytest

from flipbook.bench import CASES
from flipbook.bench.frame_interpolation import scene_frames
from flipbook.bench.propagation import fidelity, stand_in, style
from flipbook.errors import FlipbookError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_case_is_listed_and_refuses_too_few_frames(tmp_path):
    with pytest.raises(FlipbookError) as error:
        CASES["propagation"](out=tmp_path, frames=8)
    assert error.value.field == "frames"


def test_the_stand_in_is_the_style_plus_detail_that_changes_with_the_input():
    a, b = scene_frames(2, 64, 64)
    assert np.array_equal(stand_in(a, 1), stand_in(a, 1))
    detail_a = stand_in(a, 1).astype(int) - style(a)
    detail_b = stand_in(b, 1).astype(int) - style(b)
    assert 6 < np.abs(detail_a).mean() < 14
    assert np.corrcoef(detail_a.ravel(), detail_b.ravel())[0, 1] < 0.2


def test_fidelity_compares_propagated_frames_with_the_ideal():
    result = fidelity(scene_frames(9, 64, 64), 4, "cpu")
    assert result["keyframes"] == 3
    assert 22 < result["psnr_worst_db"] <= result["psnr_mean_db"] < 60

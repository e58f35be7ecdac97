"""``flipbook validate``'s summary: each mode says how its frames are made, and only what applies to it."""

from __future__ import annotations

from flipbook.spec.load import spec_from_data
from flipbook.spec.summary import summarize


def _summary(mode: str, **sections) -> str:
    data = {"prompts": {"0": "a lighthouse"}, "sampling": {"seed": 3}, "animation": {"mode": mode}}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return summarize(spec_from_data(data))


def test_feedback_modes_show_their_img2img_strength():
    text = _summary("travel", animation={"max_frames": 6, "strength": 0.6})
    assert text.startswith("ok: travel animation, 6 frames") and "img2img feedback: strength 0.6" in text


def test_animatediff_shows_windows_loop_and_start_not_feedback():
    text = _summary("animatediff", animation={"max_frames": 40}, animatediff={"free_noise": True})
    assert "ok: animatediff animation, 40 frames at 8 fps" in text
    assert "windows of 16 overlapping 4, stride 1, uniform, pyramid fusing; closed loop R-P" in text
    assert "FreeNoise" in text and "FreeInit" not in text and "img2img feedback" not in text
    assert "one window" in _summary("animatediff")  # max_frames unset: one context window


def test_svd_shows_the_video_model_and_where_frame_0_comes_from():
    text = _summary("svd", animation={"max_frames": 27}, svd={"num_frames": 14, "motion_bucket_id": 90})
    assert "ok: svd animation, 27 frames at 7 fps" in text and "1024x576" in text
    assert "14 frames per clip" in text and "motion bucket 90" in text and "txt2img" in text
    assert "img2img feedback" not in text
    with_image = _summary("svd", init={"image": "start.png"})
    assert "frame 0 is the init image start.png" in with_image
    assert "ok: svd animation, one clip of the model's frame count (read at render) at 7 fps" in with_image
    assert "ok: svd animation, 14 frames" in _summary("svd", svd={"num_frames": 14})

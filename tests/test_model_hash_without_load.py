"""Frames made from stored parts name their model's hash although the render never loads the model: a resumed
variations render reuses every stored variation (A1111's "Model hash" is then read from the file)."""

import pytest

from flipbook.events import Events, RenderCancelled
from flipbook.io.pnginfo import read_png_parameters
from flipbook.models.families.sd.convert import save_original_checkpoint
from flipbook.models.loading import load_model, short_hash
from flipbook.runs.render import render, resume
from flipbook.spec.load import spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_resume_from_stored_variations_names_the_checkpoint_and_its_hash(tmp_path, init_image, mask_image):
    checkpoint = save_original_checkpoint(load_model("tiny", device="cpu").pipe, tmp_path / "toy.safetensors")
    init_image.save(tmp_path / "init.png")
    mask_image.save(tmp_path / "mask.png")
    spec = spec_from_data({
        "model": {"name": str(checkpoint), "device": "cpu"},
        "sampling": {"steps": 6, "seed": 25, "sampler": "Euler"},
        "animation": {"mode": "variations", "max_frames": 4, "width": 64, "height": 64},
        "prompts": {"0": "flames"},
        "init": {"image": str(tmp_path / "init.png"), "mask": str(tmp_path / "mask.png")},
        "variations": {"denoise": 0.35},
        "output": {"dir": str(tmp_path), "name": "loop", "formats": ["png"]},
    })  # fmt: skip

    def on_frame(event):
        if event.index == 1:
            events.cancel()

    events = Events(on_frame=on_frame)
    with pytest.raises(RenderCancelled):
        render(spec, events)
    result = resume(tmp_path / "loop")

    assert result.resumed_from == 1
    for index in (2, 3):  # made after the resume, from the stored variations only
        text = read_png_parameters(result.run_dir / "frames" / f"frame_{index:05d}.png")
        assert f"Model hash: {short_hash(checkpoint)}, Model: toy" in text

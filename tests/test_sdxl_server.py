"""SDXL through the A1111 API: SDXL checkpoints are listed, and ``sd_model_checkpoint`` switches from an
SD 1.x model to an SDXL one (a single file in the models folder) and back."""

from __future__ import annotations

import pytest
import webuiapi

from flipbook.models.families.sdxl.convert import save_original_checkpoint
from flipbook.models.loading import load_model
from flipbook.server import ServerSettings
from flipbook.server.background import BackgroundServer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sd_model_checkpoint_switches_between_families(tmp_path):
    checkpoints = tmp_path / "webui" / "models" / "Stable-diffusion"
    save_original_checkpoint(load_model("tiny-xl", device="cpu").pipe, checkpoints / "my_pony.safetensors")
    settings = ServerSettings(runs_dir=tmp_path / "runs", workers=1, models_dir=tmp_path / "webui")
    with BackgroundServer(settings) as server:
        api = webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler", steps=2)
        titles = {model["title"] for model in api.get_sd_models()}
        assert {"tiny", "tiny-xl", "random-sdxl", "my_pony"} <= titles
        sizes = {}
        for name in ("my_pony", "tiny-xl", "tiny"):
            api.set_options({"sd_model_checkpoint": name})
            result = api.txt2img(prompt="a red fox", width=64, height=64, steps=2, seed=5)
            assert result.info["sd_model_name"] == name and result.image.size == (64, 64)
            assert f"Model: {name}" in result.info["infotexts"][0]
            sizes[name] = result.image
        assert sizes["my_pony"].tobytes() != sizes["tiny"].tobytes()

"""The end of a render on the tiny model: [post] frame interpolation and upscaling, every output format, the
soundtrack, the embedded spec, and re-rendering from an output file."""

import av
import numpy as np
import PIL.Image
import pytest

from flipbook.errors import FlipbookError
from flipbook.io.metadata import read_embedded
from flipbook.runs.render import render
from flipbook.spec.load import load_spec, spec_from_data

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def shared_model(monkeypatch, tiny_model):
    monkeypatch.setattr("flipbook.runs.cores.load_model", lambda name, **kwargs: tiny_model)


@pytest.fixture()
def song(tmp_path):
    import soundfile

    sr = 22050
    t = np.arange(3 * sr) / sr
    path = tmp_path / "song.wav"
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    return path


def make_spec(tmp_path, name="out", **sections):
    data = {
        "model": {"name": "tiny", "device": "cpu"},
        "sampling": {"steps": 2, "seed": 5, "sampler": "Euler"},
        "animation": {"mode": "interpolate", "max_frames": 4, "fps": 8, "width": 64, "height": 64},
        "prompts": {"0": "a forest", "3": "a city"},
        "output": {"dir": str(tmp_path), "name": name, "formats": ["png"]},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return spec_from_data(data)


def test_post_interpolation_and_upscale_feed_every_format(tmp_path):
    formats = ["png", "gif", "mp4", "webm", "webp", "apng", "contact"]
    spec = make_spec(tmp_path, post={"interpolate": 2, "upscale": 2}, output={"formats": formats})
    result = render(spec)
    assert set(result.outputs) == set(formats)
    originals = sorted((result.run_dir / "frames").glob("*.png"))
    assert len(originals) == 4 and PIL.Image.open(originals[0]).size == (64, 64)  # the run keeps its frames
    processed = sorted(result.outputs["png"].glob("*.png"))
    assert len(processed) == 7 and PIL.Image.open(processed[0]).size == (128, 128)
    with PIL.Image.open(result.outputs["gif"]) as gif:
        assert gif.n_frames == 7 and gif.size == (128, 128)
        assert gif.info["duration"] in (60, 70)  # 16 fps: 62.5 ms on GIF's 10 ms grid
    with av.open(str(result.outputs["mp4"])) as container:
        stream = container.streams.video[0]
        assert stream.frames == 7 and float(stream.average_rate) == 16
    for fmt in ("gif", "mp4", "webm", "webp", "apng", "contact"):
        embedded = read_embedded(result.outputs[fmt])
        assert embedded.spec["sampling"]["seed"] == 5, fmt
        assert "Seed: " in embedded.parameters and "Mode: interpolate" in embedded.parameters, fmt


def test_without_post_the_png_output_is_the_run_folder(tmp_path):
    result = render(make_spec(tmp_path, output={"formats": ["png", "gif"]}))
    assert result.outputs["png"] == result.run_dir / "frames"
    with PIL.Image.open(result.outputs["gif"]) as gif:
        assert gif.n_frames == 4


def test_soundtrack_is_muxed_and_trimmed_to_the_video(tmp_path, song):
    spec = make_spec(tmp_path, audio={"file": str(song), "offset": 0.5}, output={"formats": ["mp4", "webm"]})
    result = render(spec)
    for fmt in ("mp4", "webm"):
        with av.open(str(result.outputs[fmt])) as container:
            audio = container.streams.audio[0]
            end = 0.0
            for frame in container.decode(audio):
                end = max(end, float(frame.pts * frame.time_base) + frame.samples / frame.sample_rate)
        assert end == pytest.approx(4 / 8, abs=0.03), fmt  # 4 frames at 8 fps


def test_soundtrack_off_keeps_the_video_silent(tmp_path, song):
    spec = make_spec(tmp_path, audio={"file": str(song), "soundtrack": False}, output={"formats": ["mp4"]})
    with av.open(str(render(spec).outputs["mp4"])) as container:
        assert not container.streams.audio


def test_render_a_gif_again_from_its_embedded_spec(tmp_path, run_cli):
    first = render(make_spec(tmp_path, "first", output={"formats": ["gif"]}))
    code, out, err = run_cli("render", first.outputs["gif"], "--set", "output.name=again", "--set",
                             "output.formats=['png']")  # fmt: skip
    assert code == 0, err
    again = sorted((tmp_path / "again" / "frames").glob("*.png"))
    for a, b in zip(sorted((tmp_path / "first" / "frames").glob("*.png")), again, strict=True):
        assert np.array_equal(np.asarray(PIL.Image.open(a)), np.asarray(PIL.Image.open(b)))
    code, out, err = run_cli("info", first.outputs["gif"])
    assert code == 0 and "Seed: 5" in out and "flipbook render" in out
    code, out, err = run_cli("info", "--spec", first.outputs["gif"])
    assert code == 0 and '"mode": "interpolate"' in out
    assert load_spec(first.outputs["gif"]).animation.max_frames == 4


def test_a_file_without_a_spec_is_a_clear_error(tmp_path):
    PIL.Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    with pytest.raises(FlipbookError) as error:
        load_spec(tmp_path / "plain.png")
    assert error.value.field == "spec" and "no flipbook spec" in str(error.value)


@pytest.mark.parametrize(
    ("sections", "field"),
    [
        (
            {"animation": {"fps": 60}, "post": {"interpolate": 2}, "output": {"formats": ["gif"]}},
            "post.interpolate",
        ),
        ({"post": {"interpolate_method": "film"}}, "post"),
        ({"output": {"formats": ["avi"]}}, "output.formats.0"),
        ({"output": {"gif_palette": "adaptive"}}, "output.gif_palette"),
        ({"output": {"mp4_preset": "fastest"}}, "output.mp4_preset"),
        ({"post": {"upscale": 0}}, "post.upscale"),
    ],
)
def test_bad_output_settings_name_the_field(tmp_path, sections, field):
    with pytest.raises(FlipbookError) as error:
        make_spec(tmp_path, **sections)
    assert error.value.field == field


def test_missing_post_inputs_fail_before_any_frame(tmp_path):
    spec = make_spec(tmp_path, post={"interpolate": 2, "interpolate_method": "film", "film_model": "nope.pt"})
    with pytest.raises(FlipbookError) as error:
        render(spec)
    assert error.value.field == "post.film_model"
    spec = make_spec(tmp_path, "up", post={"upscale": 2, "upscale_model": "4x-missing"})
    with pytest.raises(FlipbookError) as error:
        render(spec)
    assert error.value.field == "post.upscale_model"
    assert not list(tmp_path.glob("*/frames/*.png"))


def test_spec_output_options_match_the_encoder():
    from dataclasses import asdict, fields

    from flipbook.io.writers import (
        DEFAULT_X264_PRESET,
        FORMATS,
        GIF_DITHERS,
        GIF_PALETTES,
        X264_PRESETS,
        EncodeOptions,
    )
    from flipbook.spec.model import OutputFormat, OutputSection

    assert set(OutputSection().encode_options()) == {f.name for f in fields(EncodeOptions)}
    assert set(OutputFormat.__args__) == set(FORMATS)
    EncodeOptions.from_mapping(OutputSection().encode_options())
    spec_fields = OutputSection.model_fields
    assert set(spec_fields["mp4_preset"].annotation.__args__) == set(X264_PRESETS)
    assert set(spec_fields["gif_palette"].annotation.__args__) == set(GIF_PALETTES)
    assert set(spec_fields["gif_dither"].annotation.__args__) == set(GIF_DITHERS)
    assert OutputSection().mp4_preset == DEFAULT_X264_PRESET
    assert OutputSection().encode_options() == asdict(EncodeOptions())  # the same defaults


def test_size_target_choice_is_in_the_render_log_and_result(tmp_path):
    spec = make_spec(tmp_path, output={"formats": ["gif", "webp"], "gif_max_mb": 0.004, "webp_max_mb": 1})
    result = render(spec)
    assert [note.split()[0] for note in result.notes] == ["gif", "webp"]
    assert result.outputs["gif"].stat().st_size <= 4000 or "does not fit" in result.notes[0]
    log = (result.run_dir / "render.log").read_text()
    assert all(note in log for note in result.notes)
    with PIL.Image.open(result.outputs["gif"]) as gif:
        assert gif.n_frames == 4  # a size target never drops frames unless max_mb_allow_fps


def test_lossy_gif_without_gifsicle_is_refused_before_any_frame(tmp_path, monkeypatch):
    monkeypatch.setattr("flipbook.io.gif.gifsicle_path", lambda: None)
    spec = make_spec(tmp_path, output={"formats": ["gif"], "gif_lossy": 40})
    with pytest.raises(FlipbookError) as error:
        render(spec)
    assert error.value.field == "output.gif_lossy"
    assert not list(tmp_path.glob("*/frames/*.png"))

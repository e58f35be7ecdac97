"""``flipbook inspire``: keyframed prompts from the shipped vocabularies, deterministic per seed, offline."""

import re
import tomllib

import pytest
import typer
from typer.testing import CliRunner

from flipbook.commands.inspire import register
from flipbook.errors import FlipbookError
from flipbook.inspire.vocabulary import (
    NEGATIVE,
    SHARED_LISTS,
    TOPIC_LISTS,
    inspire,
    load_list,
    load_topic,
    parse_entries,
    prompts_toml,
    resolve_topic,
    split_line,
    topics,
)
from flipbook.spec.prompt_keyframes import parse_prompt_lines, split_negative

REQUIRED_TOPICS = {"ocean", "city", "forest", "space", "mountains", "desert", "winter", "fantasy", "sci-fi",
                   "underwater", "flowers", "architecture"}  # fmt: skip
LINE = re.compile(r"(\d+): (\S.*)")


def _prompts(lines):
    """The prompt texts of ``FRAME: prompt`` lines."""
    return [LINE.fullmatch(line).group(2) for line in lines]


def _drawn_style(line):
    """The shipped style phrase used in a line (the longest one that appears, so none hides another)."""
    return max((style for style in load_list("styles") if f", {style}, " in line), key=len)


# ---------------------------------------------------------------------------------------------- generation
def test_same_seed_same_lines_and_other_seeds_differ():
    first = inspire(["ocean", "city"], 8, seed=1)
    assert inspire(["ocean", "city"], 8, seed=1) == first
    others = [tuple(inspire(["ocean", "city"], 8, seed=seed)) for seed in range(2, 7)]
    assert len({tuple(first), *others}) == 6


def test_lines_are_frame_colon_prompt_at_the_requested_frames():
    lines = inspire(["forest"], 5, seed=3, every=12, start=6)
    assert len(lines) == 5 and all(LINE.fullmatch(line) for line in lines)
    assert [split_line(line)[0] for line in lines] == [6, 18, 30, 42, 54]
    head, keys, tail = parse_prompt_lines("\n".join(lines))  # flipbook's own AnimateDiff-lines parser
    assert (head, tail) == ("", "") and list(keys) == [6, 18, 30, 42, 54]
    assert list(keys.values()) == _prompts(lines)
    assert [split_line(line)[0] for line in inspire(["forest"], 3)] == [0, 24, 48]  # defaults


def test_keyframes_cycle_through_the_topics():
    wanted = ["ocean", "city", "space"]
    lines = inspire(wanted, 8, seed=5)
    for i, prompt in enumerate(_prompts(lines)):
        subjects = load_topic(wanted[i % 3]).subjects
        assert any(prompt.startswith(subject + ", ") for subject in subjects), (i, prompt)
    for name in wanted:  # and every topic's vocabulary shows up over the 8 lines
        words = set().union(*(load_topic(name).__getattribute__(part) for part in TOPIC_LISTS))
        assert any(word in line for line in lines for word in words), name


def test_details_are_borrowed_between_topics_sometimes():
    borrowed = 0
    for seed in range(20):
        for i, prompt in enumerate(_prompts(inspire(["desert", "winter"], 4, seed=seed))):
            other = load_topic(["winter", "desert"][i % 2])
            borrowed += any(f", {detail}, " in prompt for detail in other.details)
    assert 0 < borrowed < 80  # some keyframes blend in the other topic, not all


def test_style_palette_and_quality_fixed_while_subject_and_light_travel():
    lines = inspire(["mountains"], 8, seed=11)
    style = _drawn_style(lines[0])
    assert all(f", {style}, " in line for line in lines)
    tails = {line.split(f", {style}, ")[1].split(", ", 1)[1] for line in lines}  # after style and lighting
    palettes = {tail.split(", ")[0] for tail in tails}
    assert len(palettes) == 1 and palettes <= set(load_list("palettes"))
    assert len({prompt.split(", ")[0] for prompt in _prompts(lines)}) == 8  # 8 different subjects
    lights = [next(light for light in load_list("lighting") if f", {light}, " in line) for line in lines]
    assert all(a != b for a, b in zip(lights, lights[1:], strict=False))


def test_style_option_replaces_only_the_style():
    plain = inspire(["flowers", "architecture"], 6, seed=4)
    drawn = _drawn_style(plain[0])
    styled = inspire(["flowers", "architecture"], 6, seed=4, style="  pressed flower collage ")
    assert styled == [line.replace(drawn, "pressed flower collage") for line in plain]
    assert len({_drawn_style(inspire(["ocean"], 2, seed=seed)[0]) for seed in range(30)}) > 5


def test_no_two_consecutive_keyframes_alike_even_past_a_reshuffle():
    for seed in range(40):
        lines = inspire(["ocean"], 300, seed=seed)  # 300 > any list's length: the decks reshuffle often
        subjects = [prompt.split(", ")[0] for prompt in _prompts(lines)]
        assert all(a != b for a, b in zip(subjects, subjects[1:], strict=False)), seed
        assert all(a != b for a, b in zip(_prompts(lines), _prompts(lines)[1:], strict=False))
        assert len(set(subjects[:20])) == 20  # dealt like cards: no repeats before the list is used up


def test_negative_appends_deforum_neg_without_changing_the_positive():
    plain = inspire(["underwater"], 3, seed=8)
    with_neg = inspire(["underwater"], 3, seed=8, negative=True)
    for a, b in zip(plain, with_neg, strict=True):
        assert b == a + " --neg " + NEGATIVE
        assert split_negative(split_line(b)[1]) == (split_line(a)[1], NEGATIVE)
    assert all("--neg" not in line for line in plain)


@pytest.mark.parametrize("spelling", ["sci-fi", "Sci-Fi", " sci fi ", "scifi", "SCI_FI", "science fiction"])
def test_topic_spellings(spelling):
    assert resolve_topic(spelling) == "sci-fi"
    assert inspire([spelling], 3, seed=2) == inspire(["sci-fi"], 3, seed=2)


def test_topic_case_spaces_plurals_and_a_comma_string():
    assert [resolve_topic(name) for name in (" OCEAN ", "Mountain", "flower", "sea")] == [
        "ocean", "mountains", "flowers", "ocean"]  # fmt: skip
    assert inspire("ocean, city", 4, seed=1) == inspire(["Ocean", " city"], 4, seed=1)
    assert inspire(["ocean", "Ocean ", "city"], 4, seed=1) == inspire(["ocean", "city"], 4, seed=1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"topics": ["ocean", "jungle gym"]}, "topics"),
        ({"topics": []}, "topics"),
        ({"topics": ["ocean"], "n": 0}, "n"),
        ({"topics": ["ocean"], "n": 1001}, "n"),
        ({"topics": ["ocean"], "n": 2.5}, "n"),
        ({"topics": ["ocean"], "every": 0}, "every"),
        ({"topics": ["ocean"], "start": -1}, "start"),
        ({"topics": ["ocean"], "style": "  "}, "style"),
    ],
)
def test_bad_input_raises_flipbook_error_naming_the_field(kwargs, field):
    with pytest.raises(FlipbookError) as caught:
        inspire(**kwargs)
    assert caught.value.field == field


def test_unknown_topic_lists_the_known_ones():
    with pytest.raises(FlipbookError) as caught:
        inspire(["ocean", "jungle gym"])
    assert caught.value.value == "jungle gym" and "one of: architecture, city" in str(caught.value)
    assert inspire(["ocean"], 1000, seed=0)[-1].startswith(f"{999 * 24}: ")  # the limits themselves are fine


def test_prompts_fit_in_one_clip_window():
    """Worst case (longest entry of every list, the longest borrowed detail) stays within CLIP's 75 tokens,
    so no keyframe is cut off."""
    from flipbook.models.families.sd.tokenizer import clip_tokenizer

    tokenizer = clip_tokenizer()

    def longest(entries):
        return max(len(tokenizer(entry, add_special_tokens=False).input_ids) for entry in entries)

    shared = sum(longest(load_list(name)) for name in ("styles", "lighting", "palettes", "camera"))
    quality = 2 * longest(load_list("quality"))
    any_detail = longest([detail for name in topics() for detail in load_topic(name).details])
    for name in topics():
        topic = load_topic(name)
        own = longest(topic.subjects) + longest(topic.scenes) + longest(topic.details)
        assert own + any_detail + shared + quality + 9 <= 75, name  # 9 joining commas


# ------------------------------------------------------------------------------------------------- TOML
def test_toml_table_parses_and_matches_the_lines():
    lines = inspire(["city", "winter"], 5, seed=3, every=10, negative=True)
    table = tomllib.loads(prompts_toml(lines))["prompts"]
    assert table == {str(frame): prompt for frame, prompt in map(split_line, lines)}

    from flipbook.spec.model import Spec

    assert Spec.model_validate({"prompts": table}).prompts == table  # a valid spec's prompts


def test_toml_escapes_quotes_backslashes_and_control_characters():
    style = 'a "quoted" \\ back\tslash\x7f\x01 style, ünïcode 🎨'
    lines = inspire(["space"], 2, seed=1, style=style)
    text = prompts_toml(lines)
    assert "\t" not in text and "\x7f" not in text
    assert list(tomllib.loads(text)["prompts"].values()) == [split_line(line)[1] for line in lines]
    assert all(style in prompt for prompt in tomllib.loads(text)["prompts"].values())


# ------------------------------------------------------------------------------------------ vocabularies
def test_parse_entries_skips_comments_and_blank_lines():
    assert parse_entries("# a comment\n\n  a red fox  \n   # indented comment\nan owl\r\n") == [
        "a red fox", "an owl"]  # fmt: skip


def test_required_topics_are_shipped():
    assert set(topics()) >= REQUIRED_TOPICS
    assert topics() == sorted(topics())


@pytest.mark.parametrize(
    "path",
    [("topics", name, part) for name in sorted(REQUIRED_TOPICS) for part in TOPIC_LISTS]
    + [(name,) for name in SHARED_LISTS],
    ids="/".join,
)
def test_every_vocabulary_file_loads_clean(path):
    entries = load_list(*path)
    assert len(entries) >= 20, "a list should offer some variety"
    assert all(entries), "no empty entries"
    assert len({entry.lower() for entry in entries}) == len(entries), "no duplicates"
    for entry in entries:
        assert entry == entry.strip() and "  " not in entry, entry
        assert not re.search(r"[()\[\]{}<>:|#`\\\"]|--|\bAND\b", entry), f"prompt syntax in {entry!r}"


def test_subjects_are_unique_across_topics():
    """So consecutive keyframes from different topics can never be identical."""
    subjects = [subject for name in topics() for subject in load_topic(name).subjects]
    assert len(set(subjects)) == len(subjects)


def test_every_listed_topic_loads():
    for name in topics():
        topic = load_topic(name)
        assert topic.name == name and topic.subjects and topic.scenes and topic.details


# --------------------------------------------------------------------------------------------------- CLI
@pytest.fixture()
def cli():
    """A small app with ``inspire`` registered, as flipbook/cli.py will do: ``cli(*args) -> Result``."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Keep ``inspire`` a subcommand."""

    register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["inspire", *map(str, args)])


def test_cli_prints_the_lines_for_a_seed(cli):
    result = cli("--topics", "ocean, city", "-n", "4", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == inspire(["ocean", "city"], 4, seed=1)
    assert "seed:" not in result.output


def test_cli_options_reach_the_generator(cli):
    result = cli("-t", "forest", "-n", "3", "-s", "9", "--every", "6", "--start", "2", "--style", "linocut",
                 "--negative")  # fmt: skip
    assert result.exit_code == 0, result.output
    expected = inspire(["forest"], 3, seed=9, every=6, start=2, style="linocut", negative=True)
    assert result.stdout.splitlines() == expected


def test_cli_random_seed_is_printed_and_repeats(cli):
    result = cli("--topics", "desert", "-n", "3")
    assert result.exit_code == 0, result.output
    seed = int(re.fullmatch(r"seed: (\d+)\n", result.stderr).group(1))
    assert result.stdout.splitlines() == inspire(["desert"], 3, seed=seed)


def test_cli_toml_format(cli):
    result = cli("--topics", "fantasy", "-n", "3", "--seed", "2", "--format", "toml")
    assert result.exit_code == 0, result.output
    table = tomllib.loads(result.stdout)["prompts"]
    assert list(table) == ["0", "24", "48"]
    assert result.stdout == prompts_toml(inspire(["fantasy"], 3, seed=2))


def test_cli_list(cli):
    result = cli("--list")
    assert result.exit_code == 0 and result.stdout.split() == topics()


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--topics", "ocean", "--format", "yaml"], "--format"),
        ([], "--topics"),
        (["--topics", " , "], "--topics"),
        (["--topics", "ocean, moon"], "topics"),
        (["--topics", "ocean", "-n", "0"], "n"),
    ],
)
def test_cli_bad_input_raises_flipbook_error(cli, args, field):
    result = cli(*args)
    assert isinstance(result.exception, FlipbookError) and result.exception.field == field

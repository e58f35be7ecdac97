"""``flipbook inspire``: keyframed prompt ideas from the vocabularies shipped in the package, offline.

A thin adapter over :mod:`flipbook.inspire.vocabulary`: it parses the topics, picks (and reports) a seed when
none is given, and prints ``FRAME: prompt`` lines or a ``[prompts]`` TOML table to paste into a spec.
"""

from __future__ import annotations

import random
from typing import Annotated

import typer

from flipbook.errors import FlipbookError

FORMATS = ("lines", "toml")
SEED_RANGE = 2**32
"""A random seed is drawn from ``0 .. SEED_RANGE - 1``."""


def register(app: typer.Typer) -> None:
    """Add the ``inspire`` command to ``app`` (the main CLI calls this)."""
    app.command("inspire")(inspire)


def inspire(
    topics: Annotated[
        str | None,
        typer.Option("--topics", "-t", help='comma-separated topics, e.g. "ocean, city" (see --list)'),
    ] = None,
    count: Annotated[int, typer.Option("--count", "-n", help="number of keyframes (1-1000)")] = 8,
    seed: Annotated[
        int | None, typer.Option("--seed", "-s", help="same seed, same prompts (default: random, printed)")
    ] = None,
    every: Annotated[int, typer.Option("--every", help="frames between keyframes")] = 24,
    start: Annotated[int, typer.Option("--start", help="frame of the first keyframe")] = 0,
    style: Annotated[
        str | None, typer.Option("--style", help="style for every keyframe (default: one drawn per run)")
    ] = None,
    negative: Annotated[
        bool, typer.Option("--negative", help="append Deforum's ' --neg ' and a short negative prompt")
    ] = False,
    format_: Annotated[
        str, typer.Option("--format", "-f", help="lines (FRAME: prompt) or toml (a [prompts] table)")
    ] = "lines",
    list_: Annotated[bool, typer.Option("--list", help="print the available topics and exit")] = False,
) -> None:
    """Print keyframed prompt ideas for the given topics: style and palette stay, subjects and light travel."""
    from flipbook.inspire import vocabulary

    if list_:
        typer.echo("\n".join(vocabulary.topics()))
        return
    if format_ not in FORMATS:
        raise FlipbookError("--format", format_, "lines or toml")
    if topics is None or not vocabulary.parse_topics(topics):
        raise FlipbookError(
            "--topics", topics or "", "a comma-separated list of: " + ", ".join(vocabulary.topics())
        )
    if seed is None:
        seed = random.SystemRandom().randrange(SEED_RANGE)
        typer.echo(f"seed: {seed}", err=True)
    lines = vocabulary.inspire(
        vocabulary.parse_topics(topics),
        count,
        seed=seed,
        every=every,
        start=start,
        style=style,
        negative=negative,
    )
    typer.echo(
        vocabulary.prompts_toml(lines) if format_ == "toml" else "\n".join(lines), nl=format_ != "toml"
    )

"""``flipbook train-toy`` and ``flipbook judge-toy``: the ``shapes`` model's training and its measured scores.

Thin adapters over :mod:`flipbook.toy.train` and :mod:`flipbook.toy.evaluate`; the defaults are the settings
the shipped ``shapes`` weights were trained with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flipbook.errors import FlipbookError


def register(app: typer.Typer) -> None:
    """Add the ``train-toy`` and ``judge-toy`` commands to ``app`` (the main CLI calls this)."""
    app.command("train-toy")(train_toy)
    app.command("judge-toy")(judge_toy)


def train_toy(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="the .safetensors file to write")],
    seed: Annotated[
        int, typer.Option("--seed", help="seeds the data, the initial weights and the noise")
    ] = 0,
    vae_steps: Annotated[int | None, typer.Option("--vae-steps", help="VAE training steps")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="text encoder + UNet training steps")] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads (results may differ between thread counts)")
    ] = None,
) -> None:
    """Train the built-in ``shapes`` model from scratch on the generated toy world (VAE, then text encoder +
    UNet), logging progress with an ETA; writes a single-file SD 1.x checkpoint. Same seed, same file."""
    from dataclasses import replace

    from flipbook.toy.train import TrainSettings, train

    if out.suffix.lower() != ".safetensors":
        raise FlipbookError("OUT", str(out), "a path ending in .safetensors")
    given = {"seed": seed, "vae_steps": vae_steps, "steps": steps, "threads": threads}
    for name, value in given.items():
        if value is not None and value < (0 if name == "seed" else 1):
            raise FlipbookError(f"--{name.replace('_', '-')}", value, "a positive whole number")
    settings = replace(TrainSettings(), **{k: v for k, v in given.items() if v is not None})
    train(settings, out, log=lambda line: typer.echo(line, err=True))


def judge_toy(
    model: Annotated[str, typer.Option("--model", "-m", help="built-in name or checkpoint file")] = "shapes",
    count: Annotated[int, typer.Option("--count", help="held-out captions")] = 200,
    steps: Annotated[int, typer.Option("--steps", help="sampling steps")] = 20,
    cfg: Annotated[list[float] | None, typer.Option("--cfg", help="guidance scales (repeatable)")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="A1111 sampler name")] = "Euler a",
) -> None:
    """Score a toy-world model: sample held-out captions and judge colour, shape, size, position and
    background of each picture; prints one JSON line per guidance scale."""
    from flipbook.toy.evaluate import evaluate

    if count < 1 or steps < 1:
        raise FlipbookError(
            "--count" if count < 1 else "--steps", min(count, steps), "a positive whole number"
        )
    for scores in evaluate(model, count=count, steps=steps, cfgs=tuple(cfg or (5.0, 1.0)), sampler=sampler):
        typer.echo(json.dumps({"cfg": scores.cfg, "count": count, "steps": steps, **scores.as_dict()}))

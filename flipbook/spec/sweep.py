"""``[sweep]``: a list of values per field, rendered as the grid of runs they make (pure: no torch).

```toml
[sweep]
"sampling.seed" = [1, 2, 3]      # a dotted field path, quoted ...
sampling.cfg = [5, 7]            # ... or TOML's dotted keys (the same table)
```

Every combination of the values (the cartesian product, the first field slowest) is one run: the spec with
those values set and the sweep removed, rendered into its own run folder ``output.dir/output.name/<label>``,
its label naming its values (``00_seed-1_cfg-5``). The seed is resolved once, before the grid, so a sweep
that does not sweep it renders every run from the same seed.

Checked when the spec is: each path must be a field of the spec (a section's field or a top-level one, not
``output.dir``/``output.name``, which the grid sets, nor ``version``), each value must be one that field
takes (the whole spec is validated with it: one :class:`~flipbook.errors.SpecError` naming
``sweep.<path>``, the value and what the field allows), every combination must make a valid spec, and the
grid holds at most :data:`MAX_RUNS` runs.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from annotated_types import Len
from pydantic import BaseModel, BeforeValidator, ValidationError

from flipbook.errors import SpecError

if TYPE_CHECKING:
    from flipbook.spec.model import Spec

MAX_RUNS = 64
"""Runs a sweep may make (the product of its value counts): a grid's contact sheet shows at most 64 cells."""
MAX_VALUES = MAX_RUNS
"""Values one field may take."""
FIXED = frozenset({("version",), ("output", "dir"), ("output", "name"), ("sweep",)})
"""Fields a sweep may not vary: the grid names the run folders itself."""
ALLOWED_PATH = (
    "a field of the spec as a dotted path (sampling.seed, sampling.cfg, animation.strength, prompts)"
)
LABEL_CHARS = 24
"""How much of one value a run's label keeps (a swept prompt is cut)."""


def flatten(value: Any) -> Any:
    """``{"sampling": {"seed": [1, 2]}}`` (TOML's dotted keys) and ``{"sampling.seed": [1, 2]}`` alike as
    ``{"sampling.seed": [1, 2]}``: every path down to a value that is not a table."""
    if not isinstance(value, dict):
        return value
    paths: dict[str, Any] = {}

    def walk(prefix: str, node: dict) -> None:
        for key, item in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(item, dict) and item:
                walk(path, item)
            else:
                paths[path] = item

    walk("", value)
    return paths


SweepValues = Annotated[
    dict[str, Annotated[list[Any], Len(1, MAX_VALUES)]],
    BeforeValidator(flatten),
]
"""The ``sweep`` section's type: dotted field path -> the values it takes (1 to :data:`MAX_VALUES`)."""


@dataclass(frozen=True)
class SweepRun:
    """One run of the grid: its values by path, its label (its run folder's name) and its spec."""

    values: tuple[tuple[str, Any], ...]
    label: str
    spec: Spec


def run_count(sweep: dict[str, list[Any]]) -> int:
    return math.prod(len(values) for values in sweep.values())


def check_sweep(spec: Spec) -> None:
    """The checks of the module docstring, each failure one SpecError naming the sweep's field; the
    combinations are checked by building them (:func:`sweep_runs`)."""
    sweep = spec.sweep
    count = run_count(sweep)
    if count > MAX_RUNS:
        sizes = " x ".join(str(len(values)) for values in sweep.values())
        raise SpecError(
            "sweep", f"{sizes} = {count} runs", f"at most {MAX_RUNS} runs (the product of the value counts)"
        )
    base = _base_data(spec)
    for path, values in sweep.items():
        _check_path(type(spec), path)
        for value in values:
            _spec_with(base, ((path, value),), field=f"sweep.{path}", value=value)
    sweep_runs(spec)


def sweep_runs(spec: Spec) -> list[SweepRun]:
    """Every run of the grid, in order (the first field slowest), each a checked spec without a sweep."""
    if not spec.sweep:
        return []
    spec = spec.with_seed()  # one seed for the whole grid, unless it is swept
    base = _base_data(spec)
    folder = spec.output.dir / (spec.output.name or "flipbook")
    paths = list(spec.sweep)
    combinations = list(itertools.product(*spec.sweep.values()))
    width = len(str(len(combinations) - 1))
    runs = []
    for number, combination in enumerate(combinations):
        values = tuple(zip(paths, combination, strict=True))
        label = f"{number:0{width}d}_" + "_".join(_label_part(path, value, paths) for path, value in values)
        data = _with_values(base, values)
        data.setdefault("output", {}).update({"dir": str(folder), "name": label})
        shown = ", ".join(f"{path} = {value!r}" for path, value in values)
        runs.append(SweepRun(values, label, _validated(data, field="sweep", value=shown)))
    return runs


def describe(values: tuple[tuple[str, Any], ...]) -> str:
    """A run's values as its contact-sheet cell says them: ``seed 1, cfg 5``."""
    paths = [path for path, _ in values]
    return ", ".join(f"{_short(path, paths)} {_shown(value)}" for path, value in values)


# ---- pieces ------------------------------------------------------------------------------------------------


def _base_data(spec: Spec) -> dict[str, Any]:
    """The spec as the user wrote it (fields left unset stay unset, so defaults that depend on them still
    apply), without its sweep."""
    return spec.model_dump(mode="json", exclude_unset=True, exclude={"sweep"})


def _check_path(model: type[BaseModel], path: str) -> None:
    """``path`` must name a field, through sections, that a sweep may vary."""
    parts = tuple(path.split("."))
    if parts in FIXED or not all(parts):
        raise SpecError(f"sweep.{path}", path, ALLOWED_PATH + "; not version, output.dir or output.name")
    node: Any = model
    for depth, part in enumerate(parts):
        fields = node.model_fields if isinstance(node, type) and issubclass(node, BaseModel) else {}
        if part not in fields:
            where = ".".join(parts[:depth]) or "the spec"
            raise SpecError(f"sweep.{path}", path, ALLOWED_PATH, detail=f"{where} has no field {part!r}")
        node = fields[part].annotation


def _with_values(base: dict[str, Any], values: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    import copy

    data = copy.deepcopy(base)
    for path, value in values:
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return data


def _spec_with(base: dict[str, Any], values: tuple[tuple[str, Any], ...], *, field: str, value: Any) -> Spec:
    return _validated(_with_values(base, values), field=field, value=value)


def _validated(data: dict[str, Any], *, field: str, value: Any) -> Spec:
    """The spec ``data`` makes; its first problem as one SpecError naming ``field`` (the sweep's) and the
    swept ``value``, with what the spec allows there."""
    from flipbook.spec.load import spec_error
    from flipbook.spec.model import Spec

    try:
        return Spec.model_validate(data)
    except ValidationError as error:
        problem = spec_error(error)
    except SpecError as error:
        problem = error
    raise SpecError(field, value, f"a value {problem.field} takes: {problem.allowed}") from None


def _short(path: str, paths: list[str]) -> str:
    """A path's last part, or the whole path where two swept paths share their last part."""
    leaf = path.rsplit(".", 1)[-1]
    return leaf if sum(p.rsplit(".", 1)[-1] == leaf for p in paths) == 1 else path


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 3] + "..."


def _label_part(path: str, value: Any, paths: list[str]) -> str:
    """``seed-1``: safe in a folder name on every system (other characters become ``-``)."""
    text = re.sub(r"[^A-Za-z0-9.+]+", "-", f"{_short(path, paths)}-{_shown(value)}").strip("-.")
    return text or "value"

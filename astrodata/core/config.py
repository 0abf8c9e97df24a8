"""One way to configure every stage: a strict pydantic model, read from YAML, with overrides.

Corpus and QA recipes, training and merge configs all go through `load_config`:
1. the stage's shipped defaults (`default`, a YAML file in the package), if it has any;
2. deep-merged with the user's YAML file (`path`);
3. deep-merged with overrides: a mapping, or `a.b=value` strings whose values are parsed as YAML
   (the form `astrodata train ... max_steps=20` takes on the command line);
4. validated by the model. Unknown keys are errors (`Strict`), so a typo in a threshold name fails
   loudly instead of silently training or building with a default.

Every error is one line naming the file and the dotted key: `r.yaml: qa.pairs_per_pasage: Extra
inputs are not permitted`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Strict(BaseModel):
    """Base of every settings model: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


M = TypeVar("M", bound=BaseModel)

# Constrained numbers for settings fields: finite, and in the range the field can mean.
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]  # a share, 0..1
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` laid over it; nested mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in override.items():
        nested = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
        out[key] = deep_merge(out[key], value) if nested else value
    return out


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """`["a.b=1", "c=[x, y]"]` -> `{"a": {"b": 1}, "c": ["x", "y"]}`; values are parsed as YAML.

    Raises ValueError for an item without `=` or with an empty key."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} is not of the form key=value")
        *parents, leaf = key.strip().split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The YAML file at `path` as a mapping (empty file: `{}`).

    Raises FileNotFoundError when it is missing, ValueError (naming the file) when it is not YAML
    or not a mapping at the top level."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def load_config(model: type[M], path: str | Path | None = None,
                overrides: Mapping[str, Any] | Iterable[str] | None = None, *, default: Path | None = None) -> M:
    """Defaults, then the user's file, then overrides, validated as `model` (see the module docstring).

    Raises FileNotFoundError for a missing file and ValueError, naming the file and each bad key,
    for invalid YAML or values."""
    data = read_yaml_mapping(default) if default is not None else {}
    if path is not None:
        data = deep_merge(data, read_yaml_mapping(path))
    if overrides:
        given = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
        data = deep_merge(data, given)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path or default or 'config'}: {describe_errors(exc)}") from None


def describe_errors(exc: ValidationError, names: Mapping[str, str] | None = None) -> str:
    """Every problem of a pydantic error on one line: `a.b: reason (got X); c: reason`.

    `names` renames top-level fields (e.g. `timeout_s` -> `--timeout` for command-line options)."""
    problems = []
    for e in exc.errors():
        loc = [str(p) for p in e["loc"]]
        if loc and names and loc[0] in names:
            loc[0] = names[loc[0]]
        got = f" (got {e['input']!r})" if e["type"] not in ("missing", "extra_forbidden") and not isinstance(
            e["input"], dict) else ""
        msg = e["msg"].removeprefix("Value error, ")
        problems.append(f"{'.'.join(loc)}: {msg}{got[:120]}" if loc else msg)
    return "; ".join(problems)

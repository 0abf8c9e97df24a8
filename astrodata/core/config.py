"""One way to configure every stage: a strict pydantic model, read from YAML, with overrides.

Corpus and QA recipes, training and merge configs all go through `load_config`:
1. the stage's shipped defaults (`default`, a YAML file in the package), if it has any;
2. deep-merged with the user's YAML file (`path`);
3. deep-merged with overrides: a mapping, or `a.b=value` strings whose values are parsed as YAML
   (the form `astrodata train ... max_steps=20` takes on the command line);
4. validated by the model. Unknown keys are errors (`Strict`), so a typo in a threshold name fails
   loudly instead of silently training or building with a default.

Every error is one line naming the file and the dotted key: `r.yaml: qa.pairs_per_pasage: Extra
inputs are not permitted`; a key set by an override says so: `r.yaml: max_stepz (override): ...`.
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

    Raises ValueError, one line naming the item, for an item without `=`, with an empty key or key
    part (`a..b`), a value that is not YAML, or a key both set and used as a parent (`a=1 a.b=2`)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        parts = [part.strip() for part in key.split(".")]
        if not sep or not all(parts):
            raise ValueError(f"override {item!r} is not of the form key=value (key parts separated by '.')")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"override {item!r}: value is not valid YAML: {' '.join(str(exc).split())}") from None
        node = out
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {'.'.join(parts[: i + 1])} is set to a value by another "
                                 "override, so it cannot also take keys")
        node[parts[-1]] = parsed
    return out


def _overridden(given: Mapping[str, Any], loc: tuple[Any, ...]) -> bool:
    """Whether the key at `loc` (or one of its parents) was set by an override."""
    node: Any = given
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
        if not isinstance(node, Mapping):
            return True
    return True


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
    given: Mapping[str, Any] = {}
    if overrides:
        given = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
        data = deep_merge(data, given)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path or default or 'config'}: {describe_errors(exc, overridden=given if path is not None else None)}") from None


def describe_errors(exc: ValidationError, names: Mapping[str, str] | None = None,
                    overridden: Mapping[str, Any] | None = None) -> str:
    """Every problem of a pydantic error on one line: `a.b: reason (got X); c: reason`.

    `names` renames top-level fields (e.g. `timeout_s` -> `--timeout` for command-line options);
    a key set by `overridden` (the overrides given) is marked `(override)`, since it is not in the file."""
    problems = []
    for e in exc.errors():
        loc = [str(p) for p in e["loc"]]
        if loc and names and loc[0] in names:
            loc[0] = names[loc[0]]
        got = f" (got {e['input']!r})" if e["type"] not in ("missing", "extra_forbidden") and not isinstance(
            e["input"], dict) else ""
        msg = e["msg"].removeprefix("Value error, ")
        mark = " (override)" if overridden and _overridden(overridden, tuple(e["loc"])) else ""
        problems.append(f"{'.'.join(loc)}{mark}: {msg}{got[:120]}" if loc else msg)
    return "; ".join(problems)

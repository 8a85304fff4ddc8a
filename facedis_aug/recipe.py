"""A recipe: one YAML file, one section per stage, parsed strictly into dataclasses.

    recipe = load_recipe("recipes/tiny.yaml", overrides=["gan.kimg=2"])

Unknown keys and wrong types raise `ConfigError` naming the file, the key and the valid choices.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml

from .data.config import DataConfig
from .decompose.config import DecomposeConfig
from .directions.config import DirectionsConfig
from .encode.config import EncodeConfig
from .export.config import ExportConfig
from .gan.config import GanConfig
from .ops.dataconf import ConfigError, from_dict, to_dict

# encode needs only gan's output; it runs after directions so that the stages of the paper come first
STAGES = ("gan", "decompose", "directions", "encode", "export")
Stage = Literal["gan", "decompose", "directions", "encode", "export"]


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    stages: list[Stage] = field(default_factory=lambda: list(STAGES))
    preview_images: int = 64  # faces in the data preview grid written at the start of a run


@dataclass
class Recipe:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    decompose: DecomposeConfig = field(default_factory=DecomposeConfig)
    directions: DirectionsConfig = field(default_factory=DirectionsConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _apply_override(tree: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    dotted, raw = item.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
        raise ConfigError(f"override {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({e.problem})") from None
    node = tree
    for k in keys[:-1]:
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {item!r}: '{k}' is not a section")
        node = nxt
    node[keys[-1]] = value


def recipe_from_dict(tree: dict[str, Any] | None, overrides: Sequence[str] = ()) -> Recipe:
    tree = dict(tree or {})
    for item in overrides:
        _apply_override(tree, item)
    return from_dict(Recipe, tree)


def load_recipe(path: str | os.PathLike, overrides: Sequence[str] = ()) -> Recipe:
    """Parse a recipe file (plus `section.key=value` overrides) into a `Recipe`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    try:
        return recipe_from_dict(tree, overrides)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None

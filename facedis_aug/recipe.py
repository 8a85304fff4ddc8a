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
    # ours: on a CPU with 2+ threads, a decompose stage that does not read the generator (decompose.source: data)
    # trains in a second process beside the gan stage, each on part of the cores, since one job gains only
    # 1.13x from a second thread (the tiny recipe's decompose step 0.191 s on 1 thread, 0.169 s on 2:
    # benchmarks/results/decompose_speed_1thread.md, _2threads.md); false: one after the other
    side_by_side: bool = True

    def __post_init__(self) -> None:
        d = self.device
        if not (d in ("auto", "cpu", "cuda") or (d.startswith("cuda:") and d[5:].isdigit())):
            raise ValueError(f"device = {d!r}: must be auto, cpu, cuda or cuda:N")
        if self.preview_images < 0:
            raise ValueError(f"preview_images = {self.preview_images!r}: must be >= 0")


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"key {key!r} given twice (lines {seen[key]} and {key_node.start_mark.line + 1})")
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


@dataclass
class Recipe:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    decompose: DecomposeConfig = field(default_factory=DecomposeConfig)
    directions: DirectionsConfig = field(default_factory=DirectionsConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def __post_init__(self) -> None:
        # constraints between sections, checked when the recipe loads rather than after the stages that
        # come first have run: least squares over w needs more samples than dim(w) (Eq. 3)
        d = self.gan.w_dim
        for key in ("num_pairs", "jacobian_pairs"):
            n = getattr(self.directions, key)
            if n <= d:
                raise ValueError(f"directions.{key} = {n} must exceed gan.w_dim = {d} (Eq. 3 needs N > d)")
        dec = self.decompose
        if dec.yaw_aug and dec.source != "data" and dec.aug_buffer <= d:
            raise ValueError(f"decompose.aug_buffer = {dec.aug_buffer} must exceed gan.w_dim = {d} "
                             "(the yaw augmentation's least-squares v_yaw needs N > d)")

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
    """Parse a recipe file (plus `section.key=value` overrides) into a `Recipe`.

    An error names where the bad value came from: the file (and the key), or the override."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    try:
        tree = yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if tree is not None and not isinstance(tree, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections (run, data, gan, ...), got a {type(tree).__name__}")
    try:
        recipe_from_dict(tree)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    try:
        return recipe_from_dict(tree, overrides)
    except ConfigError as full:
        # the file is fine: the first override that breaks it is to blame (overrides that are only valid
        # together, like a larger gan.w_dim with more directions.num_pairs, pass the full set above)
        for i in range(len(overrides)):
            try:
                recipe_from_dict(tree, overrides[: i + 1])
            except ConfigError as e:
                raise ConfigError(f"override {overrides[i]!r} (command line): {e}") from None
        raise full

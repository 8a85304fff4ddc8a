"""Lazy package faces (PEP 562): a package lists its public names and the modules that define them,
and a name's module is imported on first use, so that importing a package (or reading a recipe, which
imports every stage's config module) loads no torch, networks or renderer until something needs them."""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_face(package: str, public: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(__getattr__, __dir__) for `package` whose public names live in the modules `public` maps to."""

    def __getattr__(name: str) -> Any:
        module = public.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__

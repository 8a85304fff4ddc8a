"""Bottom layer: where faces come from (synthetic world, image folders, training streams).

Imports only `ops`. Submodules are imported where used; this file stays cheap.
"""
from .config import DataConfig, SyntheticConfig

__all__ = ["DataConfig", "SyntheticConfig"]

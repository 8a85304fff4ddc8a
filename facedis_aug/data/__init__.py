"""Bottom layer: where faces come from (synthetic world, image folders). Imports only `ops`."""
from .config import DataConfig, SyntheticConfig

__all__ = ["DataConfig", "SyntheticConfig"]

"""Trainer entry point: `python -m train_gan --recipe recipes/tiny.yaml [--data DIR] [--out RUN] [key=value ...]`."""
from .main import main

__all__ = ["main"]

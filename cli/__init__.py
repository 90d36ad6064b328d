"""The ``cellsift`` command-line interface (typer)."""

from .app import app, main

__all__ = ["app", "main"]

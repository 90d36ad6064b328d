"""The ``cellsift`` command-line interface (typer)."""

from cellsift.cli.app import app, main

__all__ = ["app", "main"]

"""The ``cellsift`` commands, one module per area: data, analysis, models."""

from cellsift.cli.commands import analysis, data, models

__all__ = ["analysis", "data", "models"]

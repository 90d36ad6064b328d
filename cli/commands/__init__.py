"""The ``cellsift`` commands, one module per area: data, analysis, models, export."""

from cellsift.cli.commands import analysis, data, export, models

__all__ = ["analysis", "data", "export", "models"]

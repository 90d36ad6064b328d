"""Versions of what cellsift computes, recorded beside every derived row and model."""

from __future__ import annotations

from typing import Final

__all__ = ["PIPELINE_VERSION"]

#: Bump when a change alters any value in the ``cells`` table.
PIPELINE_VERSION: Final = "1.0.0"

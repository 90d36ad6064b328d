"""Fixed file names that more than one part of cellsift reads or writes."""

from __future__ import annotations

from typing import Final

__all__ = ["CARD_FILE", "TABLE_PART_FILE", "TRUTH_FILE"]

#: A model folder's card (JSON): what the model is, how it was trained, its files' hashes.
CARD_FILE: Final = "card.json"
#: Simulator ground truth beside a simulated session's extraction.
TRUTH_FILE: Final = "truth.json"
#: The one Parquet file of a table's session partition.
TABLE_PART_FILE: Final = "part-0.parquet"

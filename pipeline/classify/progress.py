"""Progress lines of long classification jobs (training), for a person watching the terminal.

Library code calls :func:`report_progress`; the lines go to the ``cellsift.progress``
logger at INFO. Nothing is shown unless a handler listens: the ``cellsift train``
command attaches one that prints each line on stdout.
"""

from __future__ import annotations

import logging
from typing import Any, Final

__all__ = ["PROGRESS_LOGGER", "epoch_milestone", "report_progress"]

#: Name of the logger progress lines go to.
PROGRESS_LOGGER: Final = "cellsift.progress"

_logger = logging.getLogger(PROGRESS_LOGGER)


def report_progress(message: str, *args: Any) -> None:
    """Log one progress line (``%``-style ``args``, as :mod:`logging`)."""
    _logger.info(message, *args)


def epoch_milestone(epoch: int, n_epochs: int, *, every: int = 4) -> bool:
    """True for the epochs worth a progress line: the first and about ``every`` more per run."""
    step = max(1, -(-n_epochs // every))
    return epoch == 1 or epoch % step == 0 or epoch == n_epochs

"""Small helpers every stage uses: file hashes, natural sort, robust noise SD, UTC time.

Nothing here imports another part of :mod:`cellsift.pipeline`.
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any, Final

import numpy as np

from cellsift.schemas import InputFormatError

__all__ = [
    "MAD_OF_STD_NORMAL",
    "MAD_TO_SD",
    "diff_noise_sd",
    "file_sha256",
    "mad_sd",
    "natural_key",
    "utc_now",
]

#: ``Phi^-1(0.75)``: the median absolute deviation of a standard normal variable.
MAD_OF_STD_NORMAL: Final = 0.6744897501960817
#: Multiply a MAD by this to estimate a normal SD (``1 / MAD_OF_STD_NORMAL``).
MAD_TO_SD: Final = 1.0 / MAD_OF_STD_NORMAL

_HASH_BLOCK: Final = 1 << 20


def file_sha256(path: str | PathLike[str]) -> str:
    """Return the SHA-256 hex digest of a file's bytes, read in 1 MiB blocks.

    Raises
    ------
    InputFormatError
        The file exists but cannot be read (permissions, I/O error).
    FileNotFoundError
        The file does not exist.
    """
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as handle:
            while block := handle.read(_HASH_BLOCK):
                digest.update(block)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise InputFormatError(
            f"cannot read the file ({exc.strerror or exc})", path=path, fix="check the file's permissions"
        ) from None
    return digest.hexdigest()


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``"msCam2"`` before ``"msCam10"`` (case-insensitive)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def mad_sd(x: np.ndarray, *, axis: int | None = None, keepdims: bool = False) -> np.ndarray:
    """Robust SD: ``MAD / Phi^-1(0.75)`` along ``axis`` (exact for Gaussian data)."""
    x = np.asarray(x, dtype=np.float64)
    med = np.median(x, axis=axis, keepdims=True)
    mad = np.median(np.abs(x - med), axis=axis, keepdims=keepdims)
    return np.asarray(mad / MAD_OF_STD_NORMAL)


def diff_noise_sd(trace: np.ndarray) -> float:
    """Robust SD of a trace's fast (white) noise: ``MAD(diff) / (Phi^-1(0.75) * sqrt 2)``.

    Exact for white Gaussian noise and barely affected by transients, whose
    frame-to-frame changes are few.

    Parameters
    ----------
    trace
        1-D trace ``(frame,)``.

    Returns
    -------
    float
        ``>= 0``; 0 for traces shorter than 3 frames; the SD of the differences / sqrt 2
        when their MAD is 0 (e.g. a quantised, mostly constant trace).
    """
    x = np.asarray(trace, dtype=np.float64).ravel()
    if x.size < 3:
        return 0.0
    d = np.diff(x)
    mad = float(np.median(np.abs(d - np.median(d))))
    if mad > 0:
        return mad / (MAD_OF_STD_NORMAL * math.sqrt(2.0))
    return float(np.std(d)) / math.sqrt(2.0)


def utc_now() -> datetime:
    """Return the current time in UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0)

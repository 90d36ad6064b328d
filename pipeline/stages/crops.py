"""Clip crops sized to a session's cells: its median cell diameter and the crop side that follows."""

from __future__ import annotations

from typing import Final

import numpy as np

from cellsift.pipeline.stages.clips import ClipParams

__all__ = ["REFERENCE_CELL_DIAMETER_PX", "session_cell_diameter_px", "session_crop_px"]

#: Median cell diameter (px) at which ``ClipParams.crop_px`` applies unscaled (the
#: simulator's median soma diameter at its default settings).
REFERENCE_CELL_DIAMETER_PX: Final = 11.5

#: Bounds (px) of a session's scaled crop.
_CROP_BOUNDS: Final = (16, 128)


def session_cell_diameter_px(mask_areas_px: np.ndarray) -> float:
    """Median cell diameter (px) of a session: of a disc of its median mask area.

    Returns ``REFERENCE_CELL_DIAMETER_PX`` for a session without a non-empty mask.
    """
    a = np.asarray(mask_areas_px, dtype=np.float64)
    a = a[np.isfinite(a) & (a > 0)]
    if a.size == 0:
        return REFERENCE_CELL_DIAMETER_PX
    return float(2.0 * np.sqrt(np.median(a) / np.pi))


def session_crop_px(mask_areas_px: np.ndarray, params: ClipParams) -> int:
    """Crop side (px, even) of a session's clips.

    ``params.crop_px`` scaled by the session's median cell diameter over
    ``REFERENCE_CELL_DIAMETER_PX`` (with ``params.scale_with_cells``), rounded to an even
    number and kept within 16..128 px; ``params.crop_px`` as it is otherwise.
    """
    if not params.scale_with_cells:
        return int(params.crop_px)
    scale = session_cell_diameter_px(mask_areas_px) / REFERENCE_CELL_DIAMETER_PX
    side = 2 * int(round(params.crop_px * scale / 2.0))
    return int(min(max(side, _CROP_BOUNDS[0]), _CROP_BOUNDS[1]))

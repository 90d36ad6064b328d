"""Cell-card data: what the review page shows of one cell, read from the lake's stores.

Per session the server keeps (:class:`CardReader`, an LRU cache bounded in bytes) the
small arrays every card of that session needs: the max projection and correlation image,
the clip store's footprint crops (for this cell, its neighbours and overlap partner), peak frames, the clip array and the
session's CS+/CS-/shock events. A card then reads only one unit's rows of ``C_raw`` (one
zarr chunk) and slices the rest from memory, so it is cheap enough to prefetch.

Images travel as base64 ``uint8`` arrays (scaled between the 1st and 99.8th percentile)
and are drawn by the page in ``<canvas>`` elements; traces longer than
:data:`MAX_TRACE_POINTS` are reduced to a min/max envelope.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from cellsift.schemas import CellsiftError

logger = logging.getLogger(__name__)

__all__ = ["CARD_FEATURES", "MAX_TRACE_POINTS", "CardReader", "to_uint8"]

#: Longest trace sent to the page (points); longer traces become a min/max envelope.
MAX_TRACE_POINTS: Final = 2400
#: Quality features listed on a card.
CARD_FEATURES: Final = (
    "area_px",
    "compactness",
    "solidity",
    "eccentricity",
    "peak_to_noise",
    "n_transients",
    "transient_rate_per_min",
    "skewness",
    "noise_sd",
    "spatial_corr",
    "peak_contrast",
    "neighbour_trace_corr",
    "n_neighbours",
    "max_overlap_frac",
)
_EVENTS: Final = ("CS+", "CS-", "shock")


def to_uint8(image: np.ndarray, *, lo_pct: float = 1.0, hi_pct: float = 99.8) -> np.ndarray:
    """Scale ``image`` to 0..255 between two percentiles of its finite values."""
    x = np.asarray(image, dtype=np.float32)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.zeros(x.shape, dtype=np.uint8)
    lo, hi = np.percentile(finite, [lo_pct, hi_pct])
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip((np.nan_to_num(x, nan=lo) - lo) * scale, 0, 255).astype(np.uint8)


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _crop_grid(cy: float, cx: float, h: int, w: int, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a centroid-centred crop, as the clip stage cuts it (edges repeated)."""
    offs = np.arange(crop, dtype=np.int64)
    r0 = int(np.floor(cy + 0.5)) - crop // 2
    c0 = int(np.floor(cx + 0.5)) - crop // 2
    return np.clip(r0 + offs, 0, h - 1), np.clip(c0 + offs, 0, w - 1)


@dataclass
class _Session:
    dataset: Any
    fps: float
    n_frames: int
    height: int
    width: int
    unit_row: dict[int, int]
    max_proj: np.ndarray
    corr: np.ndarray | None
    clip_row: dict[int, int] = field(default_factory=dict)
    clips: np.ndarray | None = None
    valid: np.ndarray | None = None
    peak_frame: np.ndarray | None = None
    footprint: np.ndarray | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        arrays = [self.max_proj, self.corr, self.clips, self.footprint]
        return sum(int(a.nbytes) for a in arrays if a is not None) + 4096


class CardReader:
    """Build card and whole-field payloads, caching per-session arrays.

    Parameters
    ----------
    root
        The lake folder.
    sessions
        The lake's ``sessions`` table (``dataset_path``, ``clips_path``, ``fps`` per session).
    cache_bytes
        Memory the per-session cache may hold (least recently used sessions are dropped).
    """

    def __init__(self, root: Path, sessions: pd.DataFrame, *, cache_bytes: int = 1 << 30) -> None:
        self.root = Path(root)
        self._rows = {
            (str(r.cohort), str(r.animal), str(r.session)): r for r in sessions.itertuples(index=False)
        }
        self._cache: OrderedDict[tuple[str, str, str], _Session] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str, str], threading.Lock] = {}
        self.cache_bytes = int(cache_bytes)

    def session(self, key: tuple[str, str, str]) -> _Session:
        """The cached arrays of one session (loaded on first use; one loader per session)."""
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # other sessions' cards are served meanwhile
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None:
                return hit
            loaded = self._load(key)
            with self._lock:
                self._cache[key] = loaded
                while len(self._cache) > 1 and sum(x.nbytes for x in self._cache.values()) > self.cache_bytes:
                    self._cache.popitem(last=False)
            return loaded

    def _load(self, key: tuple[str, str, str]) -> _Session:
        import zarr

        row = self._rows.get(key)
        if row is None:
            raise KeyError(key)
        ds: Any = zarr.open_group(str(self.root / str(row.dataset_path)), mode="r")
        names = set(ds.array_keys())
        h, w = (int(v) for v in ds["max_proj"].shape) if "max_proj" in names else ds["A"].shape[1:]
        units = np.asarray(ds["unit_id"][:], dtype=np.int64)
        corr = np.asarray(ds["Cn"][:], dtype=np.float32) if "Cn" in names else None
        max_proj = (
            np.asarray(ds["max_proj"][:], dtype=np.float32) if "max_proj" in names else np.zeros((h, w))
        )
        s = _Session(
            dataset=ds,
            fps=float(row.fps),
            n_frames=int(ds["C_raw"].shape[1]),
            height=int(h),
            width=int(w),
            unit_row={int(u): i for i, u in enumerate(units)},
            max_proj=max_proj,
            corr=corr,
        )
        clips_path = getattr(row, "clips_path", None)
        if isinstance(clips_path, str) and (self.root / clips_path).exists():
            cs: Any = zarr.open_group(str(self.root / clips_path), mode="r")
            s.clip_row = {int(u): i for i, u in enumerate(np.asarray(cs["unit_id"][:]))}
            s.clips, s.valid = np.asarray(cs["clips"][:]), np.asarray(cs["valid"][:], dtype=bool)
            s.peak_frame = np.asarray(cs["peak_frame"][:], dtype=np.int64)
            s.footprint = np.asarray(cs["footprint"][:], dtype=np.float32)
        s.events = self._events(key)
        return s

    def _events(self, key: tuple[str, str, str]) -> list[dict[str, Any]]:
        """CS+/CS-/shock of the ``events`` table (imaging clock), else of the catalog's events file."""
        from cellsift.catalog import Catalog, LakeLayout
        from cellsift.pipeline.analysis import read_events

        path = LakeLayout(self.root).table_file("events", *key)
        aligned = path.is_file()
        try:
            if aligned:
                frame = pd.read_parquet(path, columns=["event", "onset_s", "offset_s"])
            else:  # before 'cellsift analyze': the logged times, not yet mapped to the imaging clock
                rec = Catalog(self.root).get(*key)
                source = getattr(rec, "events", None) if rec is not None else None
                if not source or not Path(source).is_file():
                    return []
                frame = read_events(source)
        except (CellsiftError, OSError, ValueError) as exc:
            logger.warning("events of %s not shown: %s", ":".join(key), exc)
            return []
        frame = frame[frame["event"].isin(_EVENTS)]
        return [
            {"event": str(e), "onset_s": float(a), "offset_s": float(b), "aligned": aligned}
            for e, a, b in frame[["event", "onset_s", "offset_s"]].itertuples(index=False)
        ]

    def field(self, key: tuple[str, str, str], cells: pd.DataFrame) -> dict[str, Any]:
        """The whole field of view of a session: images and every cell's centroid and id."""
        s = self.session(key)
        return {
            "height": s.height,
            "width": s.width,
            "max_proj": _b64(to_uint8(s.max_proj)),
            "corr": _b64(to_uint8(s.corr)) if s.corr is not None else None,
            "units": [int(u) for u in cells["unit_id"]],
            "centroids": np.round(cells[["centroid_y", "centroid_x"]].to_numpy(float), 1).tolist(),
        }

    def card(self, key: tuple[str, str, str], cell: pd.Series, session_cells: pd.DataFrame) -> dict[str, Any]:
        """Everything the page shows of one cell (see the module docstring)."""
        s = self.session(key)
        unit = int(cell["unit_id"])
        out: dict[str, Any] = {"fps": s.fps, "n_frames": s.n_frames, "height": s.height, "width": s.width}
        out["trace"] = self._trace(s, unit)
        out["events"] = s.events
        out.update(self._crops(s, cell, session_cells))
        return out

    def _trace(self, s: _Session, unit: int) -> dict[str, Any]:
        i = s.unit_row.get(unit)
        if i is None:
            return {"values": [], "transients": [], "step": 1}
        from cellsift.pipeline.stages import TransientParams, detect_transients

        raw = np.asarray(s.dataset["C_raw"][i], dtype=np.float64)
        found = detect_transients(raw, fps=s.fps, params=replace(TransientParams(), k_peaks=100_000))
        transients = sorted(int(f) for f in found.peak_frames) if found.n_transients else []
        step = max(1, int(np.ceil(len(raw) / (MAX_TRACE_POINTS / 2))))
        if step == 1:
            return {
                "values": np.round(raw, 3).tolist(),
                "transients": transients,
                "step": 1,
                "envelope": False,
            }
        n = len(raw) // step * step
        blocks = raw[:n].reshape(-1, step)
        pairs = np.stack([blocks.min(1), blocks.max(1)], axis=1).ravel()
        return {
            "values": np.round(pairs, 3).tolist(),
            "transients": transients,
            "step": step,
            "envelope": True,
        }

    def _crops(self, s: _Session, cell: pd.Series, session_cells: pd.DataFrame) -> dict[str, Any]:
        unit = int(cell["unit_id"])
        j = s.clip_row.get(unit)
        crop = int(s.footprint.shape[-1]) if s.footprint is not None else 32
        cy, cx = float(cell["centroid_y"]), float(cell["centroid_x"])
        rows, cols = _crop_grid(cy, cx, s.height, s.width, crop)
        out: dict[str, Any] = {
            "crop": {
                "size": crop,
                "row0": int(rows[0]),
                "col0": int(cols[0]),
                "max_proj": _b64(to_uint8(s.max_proj[np.ix_(rows, cols)])),
                "corr": _b64(to_uint8(s.corr[np.ix_(rows, cols)])) if s.corr is not None else None,
            }
        }
        if j is None or s.footprint is None or s.clips is None:
            out["clips"] = None
            return out
        fp = s.footprint[j]
        out["crop"]["footprint"] = _b64(fp >= 0.2 * float(fp.max()) if fp.max() > 0 else fp > 0)
        partner = cell.get("overlap_partner")
        partner = None if partner is None or pd.isna(partner) else int(partner)
        near = session_cells[
            ((session_cells["centroid_y"] - cy).abs() < crop)
            & ((session_cells["centroid_x"] - cx).abs() < crop)
            & (session_cells["unit_id"] != unit)
            & (session_cells["unit_id"] != (partner if partner is not None else -1))
        ]
        out["crop"]["neighbours"] = self._masks(s, near, rows, cols)
        if partner is not None:
            out["crop"]["partner"] = self._masks(
                s, session_cells[session_cells["unit_id"] == partner], rows, cols
            )
        clips = s.clips[j]
        valid = s.valid[j] if s.valid is not None else np.ones(clips.shape[0], bool)
        shown = clips[valid] if valid.any() else clips[:1]
        out["clips"] = {
            "n_peaks": int(shown.shape[0]),
            "n_frames": int(shown.shape[1]),
            "size": int(shown.shape[-1]),
            "frames": _b64(to_uint8(shown, lo_pct=0.5, hi_pct=99.9)),
            "peak_frames": [int(f) for f in (s.peak_frame[j][valid] if s.peak_frame is not None else [])],
        }
        return out

    def _masks(self, s: _Session, units: pd.DataFrame, rows: np.ndarray, cols: np.ndarray) -> str | None:
        """Union of ``units``' binary footprints (clip-store crops) seen in the crop ``rows x cols``."""
        if s.footprint is None or units.empty:
            return None
        full = np.zeros((s.height, s.width), dtype=bool)
        crop = s.footprint.shape[-1]
        for u, y, x in units[["unit_id", "centroid_y", "centroid_x"]].itertuples(index=False):
            k = s.clip_row.get(int(u))
            if k is None:
                continue
            fp = s.footprint[k]
            prow, pcol = _crop_grid(float(y), float(x), s.height, s.width, crop)
            full[np.ix_(prow, pcol)] |= fp >= 0.2 * float(fp.max()) if fp.max() > 0 else fp > 0
        return _b64(full[np.ix_(rows, cols)])

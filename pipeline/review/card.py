"""Cell-card data: what the review page shows of one cell, read from the lake's stores.

Per session the server keeps (:class:`CardReader`, an LRU cache bounded in bytes) the
small arrays every card of that session needs: the max projection and correlation image,
the clip store's footprint crops and their binary masks (for this cell, its neighbours and
overlap partner), peak frames, the clip array and the session's CS+/CS-/shock events. They
are read in one batch of concurrent zarr reads. A card then reads only one unit's row of
``C_raw`` and slices the rest from memory, so it is cheap enough to prefetch; and
:meth:`CardReader.warm` loads the sessions of the cells coming next in the queue on a
background thread while the reviewer looks at the current card.

Images travel as base64 ``uint8`` arrays (scaled between the 1st and 99.8th percentile)
and are drawn by the page in ``<canvas>`` elements; traces longer than
:data:`MAX_TRACE_POINTS` are reduced to a min/max envelope.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from cellsift.schemas import CellsiftError, SchemaError

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
    c_raw: Any  # the zarr (async) array of C_raw: one unit's row is read per card
    paths: tuple[str, str]
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
    masks: np.ndarray | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        arrays = [self.max_proj, self.corr, self.clips, self.footprint, self.masks]
        return sum(int(a.nbytes) for a in arrays if a is not None) + 4096


def _run(coro: Any) -> Any:
    """Run a zarr coroutine on zarr's own event loop (as zarr's synchronous API does)."""
    from zarr.core.sync import sync

    return sync(coro)


async def _open(store: Path, name: str, *, read: bool = True) -> Any:
    """Array ``name`` of a zarr store: its values (``read``) or its handle; None if it has none.

    Arrays are opened directly (their own small metadata), not through the group, whose
    consolidated metadata with every attribute costs more to parse than the reads.
    """
    from zarr.api.asynchronous import open_array

    try:
        array = await open_array(store=str(store / name), mode="r", zarr_format=3)
    except FileNotFoundError:  # zarr's NodeNotFoundError is one
        return None
    return np.asarray(await array.getitem(...)) if read else array


async def _read_stores(dataset: Path, clips: Path | None) -> dict[str, Any]:
    """The arrays a session's cards need, read concurrently (``clip_*``: from the clip store)."""
    jobs = {n: _open(dataset, n) for n in ("max_proj", "Cn", "unit_id")}
    jobs["C_raw"] = _open(dataset, "C_raw", read=False)
    if clips is not None:
        jobs.update(
            {f"clip_{n}": _open(clips, n) for n in ("unit_id", "clips", "valid", "peak_frame", "footprint")}
        )
    out = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
    if out["max_proj"] is None:
        out["A"] = await _open(dataset, "A", read=False)
    return out


def _binary(footprints: np.ndarray) -> np.ndarray:
    """Binary masks of footprint crops: pixels >= 0.2 x each crop's maximum (> 0 if that is <= 0)."""
    peak = footprints.max(axis=(-2, -1), keepdims=True)
    return np.where(peak > 0, footprints >= 0.2 * peak, footprints > 0)


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
        self._ahead: deque[tuple[str, str, str]] = deque()
        self._warmer: threading.Thread | None = None
        self._events_files: dict[tuple[str, str, str], str] | None = None
        self.cache_bytes = int(cache_bytes)

    def _paths(self, key: tuple[str, str, str]) -> tuple[str, str]:
        row = self._rows[key]
        clips = getattr(row, "clips_path", None)
        return str(row.dataset_path), clips if isinstance(clips, str) else ""

    def adopt(self, other: CardReader) -> None:
        """Keep ``other``'s cached sessions whose stores this reader's ``sessions`` table still names."""
        with other._lock:
            cached = list(other._cache.items())
        with self._lock:
            for key, s in cached:
                if key in self._rows and self._paths(key) == s.paths:
                    self._cache[key] = s

    def cached(self, key: tuple[str, str, str]) -> bool:
        """Whether the arrays of session ``key`` are in memory."""
        with self._lock:
            return key in self._cache

    def warm(self, keys: Iterable[tuple[str, str, str]]) -> None:
        """Load these sessions on a background thread, in order (replaces any earlier request)."""
        with self._lock:
            todo = [k for k in dict.fromkeys(keys) if k in self._rows and k not in self._cache]
            self._ahead.clear()
            self._ahead.extend(todo)
            if todo and self._warmer is None:
                self._warmer = threading.Thread(
                    target=self._warm_loop, name="cellsift-card-warm", daemon=True
                )
                self._warmer.start()

    def _warm_loop(self) -> None:
        while True:
            with self._lock:
                if not self._ahead:
                    self._warmer = None
                    return
                key = self._ahead.popleft()
            try:
                self.session(key)
            except Exception as exc:  # a read-ahead only: the card request itself reports the error
                logger.debug("card read-ahead of %s failed: %s", ":".join(key), exc)

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
                total = sum(x.nbytes for x in self._cache.values())
                while len(self._cache) > 1 and total > self.cache_bytes:
                    total -= self._cache.popitem(last=False)[1].nbytes
            return loaded

    def _load(self, key: tuple[str, str, str]) -> _Session:
        if key not in self._rows:
            raise KeyError(key)
        dataset_path, clips_path = self._paths(key)
        clips = self.root / clips_path if clips_path and (self.root / clips_path).exists() else None
        ds = _run(_read_stores(self.root / dataset_path, clips))
        if ds["unit_id"] is None or ds["C_raw"] is None:
            raise SchemaError(
                "the session store has no unit_id or C_raw array",
                path=self.root / dataset_path,
                fix="re-ingest the session (cellsift ingest)",
            )
        c_raw = ds["C_raw"]
        h, w = ds["max_proj"].shape if ds["max_proj"] is not None else ds["A"].shape[1:]
        s = _Session(
            c_raw=c_raw,
            paths=(dataset_path, clips_path),
            fps=float(self._rows[key].fps),
            n_frames=int(c_raw.shape[1]),
            height=int(h),
            width=int(w),
            unit_row={int(u): i for i, u in enumerate(ds["unit_id"])},
            max_proj=(
                ds["max_proj"].astype(np.float32)
                if ds["max_proj"] is not None
                else np.zeros((h, w), np.float32)
            ),
            corr=ds["Cn"].astype(np.float32) if ds["Cn"] is not None else None,
        )
        if clips is not None and all(ds[f"clip_{n}"] is not None for n in ("unit_id", "clips", "footprint")):
            s.clip_row = {int(u): i for i, u in enumerate(ds["clip_unit_id"])}
            s.clips = ds["clip_clips"]
            valid, peaks = ds["clip_valid"], ds["clip_peak_frame"]
            s.valid = valid.astype(bool) if valid is not None else None
            s.peak_frame = peaks.astype(np.int64) if peaks is not None else None
            s.footprint = ds["clip_footprint"].astype(np.float32)
            s.masks = _binary(s.footprint)
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
                if self._events_files is None:  # the catalog read once, not per session
                    self._events_files = {r.key: r.events for r in Catalog(self.root).records()}
                source = self._events_files.get(key)
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

    def field(self, key: tuple[str, str, str], cells: Mapping[str, Any]) -> dict[str, Any]:
        """The whole field of view of a session: images and every cell's centroid and id.

        ``cells`` maps ``unit_id``, ``centroid_y``, ``centroid_x`` to the session's values
        (a DataFrame or a dict of arrays).
        """
        s = self.session(key)
        if not s.images:  # scaled once per session
            s.images["max_proj"] = _b64(to_uint8(s.max_proj))
            s.images["corr"] = _b64(to_uint8(s.corr)) if s.corr is not None else ""
        yx = np.stack([np.asarray(cells["centroid_y"], float), np.asarray(cells["centroid_x"], float)], 1)
        return {
            "height": s.height,
            "width": s.width,
            "max_proj": s.images["max_proj"],
            "corr": s.images["corr"] or None,
            "units": [int(u) for u in np.asarray(cells["unit_id"])],
            "centroids": np.round(yx, 1).tolist(),
        }

    def card(
        self, key: tuple[str, str, str], cell: Mapping[str, Any], session_cells: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Everything the page shows of one cell (see the module docstring).

        ``cell`` maps column names to the cell's values (``unit_id``, ``centroid_y``,
        ``centroid_x``, ``overlap_partner``); ``session_cells`` maps ``unit_id``,
        ``centroid_y``, ``centroid_x`` to the session's values (a DataFrame or a dict of arrays).
        """
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

        raw = np.asarray(_run(s.c_raw.getitem((i, slice(None)))), dtype=np.float64)
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

    def _crops(
        self, s: _Session, cell: Mapping[str, Any], session_cells: Mapping[str, Any]
    ) -> dict[str, Any]:
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
        if j is None or s.masks is None or s.clips is None:
            out["clips"] = None
            return out
        out["crop"]["footprint"] = _b64(s.masks[j])
        partner = cell.get("overlap_partner")
        partner = None if partner is None or pd.isna(partner) else int(partner)
        units = np.asarray(session_cells["unit_id"], dtype=np.int64)
        ys = np.asarray(session_cells["centroid_y"], dtype=np.float64)
        xs = np.asarray(session_cells["centroid_x"], dtype=np.float64)
        near = (np.abs(ys - cy) < crop) & (np.abs(xs - cx) < crop) & (units != unit)
        if partner is not None:
            near &= units != partner
        out["crop"]["neighbours"] = self._masks(s, np.flatnonzero(near), units, ys, xs, rows, cols)
        if partner is not None:
            mate = np.flatnonzero(units == partner)
            out["crop"]["partner"] = self._masks(s, mate, units, ys, xs, rows, cols)
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

    def _masks(
        self,
        s: _Session,
        picks: np.ndarray,
        units: np.ndarray,
        ys: np.ndarray,
        xs: np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
    ) -> str | None:
        """Union of the binary footprints (clip-store crops) of ``units[picks]`` seen in the crop ``rows x cols``."""
        if s.masks is None or picks.size == 0:
            return None
        full = np.zeros((s.height, s.width), dtype=bool)
        crop = s.masks.shape[-1]
        for p in picks:
            k = s.clip_row.get(int(units[p]))
            if k is None:
                continue
            prow, pcol = _crop_grid(float(ys[p]), float(xs[p]), s.height, s.width, crop)
            full[np.ix_(prow, pcol)] |= s.masks[k]
        return _b64(full[np.ix_(rows, cols)])

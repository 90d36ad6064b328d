"""Per-unit quality features: movie-based spatial features and the session feature table.

Spatial features (:func:`spatial_features`), per clip
-----------------------------------------------------
``activity image``
    mean of the clip frames ``peak - peak_half_width .. peak + peak_half_width`` minus
    the mean of the first ``n_baseline_frames`` clip frames (the pre-peak baseline), in
    movie units: where the movie brightened at the transient.
``spatial_corr``
    Pearson correlation (over the crop pixels) of the activity image with the unit's
    footprint crop, averaged over the unit's valid clips; ``spatial_corr_min`` is the
    minimum over them. A real cell lights up in its footprint's shape (high); an
    artifact that borrows a neighbour's fluorescence lights up next door (low or
    negative); a unit without real transients shows noise (near 0).
``peak_contrast``
    ``(mean activity inside the binarised footprint - mean activity in a surround ring
    ring_px wide around it) / robust SD of the activity image`` (unitless, per clip,
    averaged over valid clips). The robust SD is ``1.4826 * MAD`` of the activity image
    (its SD if the MAD is 0).

Units without a valid clip get 0 for all three. Correlations with a constant image are 0.

Trace-noise features (:data:`RAW_TRACE_FEATURES`)
-------------------------------------------------
``peak_to_noise`` and ``noise_sd`` need the raw trace's noise. When the extraction has no
raw trace (``C_raw`` is the denoised ``C``: :func:`has_raw_trace` is false) they are NaN
(not measured), not a noise-free value that looks like a perfect cell; the models are
trained with such sessions and read NaN as missing.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from cellsift.pipeline._util import MAD_TO_SD
from cellsift.pipeline.readers import DENOISED_ONLY_SOURCE
from cellsift.pipeline.stages.footprints import check_csr, check_dims, shape_features
from cellsift.pipeline.stages.overlap import OverlapResult, neighbour_trace_corr
from cellsift.pipeline.stages.transients import TransientResult
from cellsift.schemas import FEATURE_COLUMNS, InputFormatError, ParameterError, SchemaError

logger = logging.getLogger(__name__)

__all__ = [
    "RAW_TRACE_FEATURES",
    "SPATIAL_FEATURE_NAMES",
    "SpatialParams",
    "has_raw_trace",
    "session_features",
    "spatial_features",
    "trace_features",
]

SPATIAL_FEATURE_NAMES = ("spatial_corr", "spatial_corr_min", "peak_contrast")

#: Features measured on the raw trace's noise: NaN when the session has no raw trace.
RAW_TRACE_FEATURES = ("peak_to_noise", "noise_sd")


def trace_features(
    transients: list[TransientResult], *, n_frames: int, fps: float, raw_trace: bool = True
) -> dict[str, np.ndarray]:
    """The per-unit features read off the transient detection, each ``(K,)``.

    ``peak_to_noise``, ``skewness``, ``noise_sd`` (float64), ``n_transients`` (int32) and
    ``transient_rate_per_min`` (per minute of the session's ``n_frames`` at ``fps`` Hz);
    ``raw_trace=False`` makes the :data:`RAW_TRACE_FEATURES` NaN.
    """
    duration_min = n_frames / max(fps, 1e-9) / 60.0
    n_tr = np.array([t.n_transients for t in transients], dtype=np.int32)
    out: dict[str, np.ndarray] = {
        "peak_to_noise": np.array([t.peak_to_noise for t in transients], dtype=np.float64),
        "n_transients": n_tr,
        "transient_rate_per_min": (n_tr / duration_min if duration_min > 0 else np.zeros(len(n_tr))).astype(
            np.float64
        ),
        "skewness": np.array([t.skewness for t in transients], dtype=np.float64),
        "noise_sd": np.array([t.noise_sd for t in transients], dtype=np.float64),
    }
    if not raw_trace:
        for name in RAW_TRACE_FEATURES:
            out[name] = np.full(len(n_tr), np.nan)
    return out


def has_raw_trace(c_raw_source: str) -> bool:
    """Whether a session's ``C_raw`` is a raw trace (``False``: the denoised ``C``).

    Parameters
    ----------
    c_raw_source
        The session store's ``c_raw_source`` attribute (what the reader took as ``C_raw``).
    """
    return c_raw_source.strip() != DENOISED_ONLY_SOURCE


@dataclass(frozen=True)
class SpatialParams:
    """Parameters of :func:`spatial_features`.

    Attributes
    ----------
    n_before
        Index of the peak frame inside a clip; must equal ``ClipParams.n_before``.
    peak_half_width
        Frames each side of the peak averaged into the activity image.
    n_baseline_frames
        First clip frames averaged as the pre-peak baseline.
    rel_threshold
        Footprint crop binarisation level (fraction of the crop's max weight).
    ring_px
        Width of the surround ring (px) for ``peak_contrast``.
    """

    n_before: int = 10
    peak_half_width: int = 1
    n_baseline_frames: int = 3
    rel_threshold: float = 0.2
    ring_px: int = 3

    def __post_init__(self) -> None:
        if self.n_before < 0 or self.peak_half_width < 0:
            raise ParameterError("n_before and peak_half_width must be >= 0", field="n_before")
        if self.n_baseline_frames < 1:
            raise ParameterError(
                f"n_baseline_frames must be >= 1, got {self.n_baseline_frames}",
                field="n_baseline_frames",
            )
        if not 0.0 <= self.rel_threshold <= 1.0:
            raise ParameterError(
                f"rel_threshold must be in [0, 1], got {self.rel_threshold}", field="rel_threshold"
            )
        if self.ring_px < 1:
            raise ParameterError(f"ring_px must be >= 1, got {self.ring_px}", field="ring_px")


def _rowwise_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis; 0 where either side is constant."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    num = np.sum(a * b, axis=-1)
    den = np.sqrt(np.sum(a * a, axis=-1) * np.sum(b * b, axis=-1))
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 1e-12 * (1 + np.abs(num)))
    return np.clip(out, -1.0, 1.0)


def _masked_mean(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    n = valid.sum(axis=1)
    s = np.where(valid, x, 0.0).sum(axis=1)
    return np.divide(s, n, out=np.zeros(x.shape[0]), where=n > 0)


def spatial_features(
    clips: np.ndarray,
    valid: np.ndarray,
    fp_crops: np.ndarray,
    *,
    params: SpatialParams = SpatialParams(),
) -> dict[str, np.ndarray]:
    """Movie-vs-footprint agreement at each unit's transient peaks (module docstring).

    Parameters
    ----------
    clips
        ``(n, k, L, c, c)`` clips from :func:`~cellsift.pipeline.stages.clips.extract_clips`.
    valid
        ``(n, k)`` bool, which clip slots hold a clip.
    fp_crops
        ``(n, c, c)`` footprint crops aligned with the clips.
    params
        Spatial feature parameters.

    Returns
    -------
    dict of str to numpy.ndarray
        ``spatial_corr``, ``spatial_corr_min``, ``peak_contrast``: ``(n,)`` float64,
        NaN-free.
    """
    clips = np.asarray(clips)
    valid = np.asarray(valid, dtype=bool)
    fp = np.asarray(fp_crops, dtype=np.float64)
    if clips.ndim != 5:
        raise InputFormatError(
            f"clips must be (unit, peak, frame, y, x), got shape {clips.shape}", field="clips"
        )
    n, k, L, cy, cx = clips.shape
    if valid.shape != (n, k) or fp.shape != (n, cy, cx):
        raise SchemaError(
            f"clips {clips.shape}, valid {valid.shape} and footprint crops {fp.shape} disagree",
            field="clips",
            fix="cut clips and footprint crops for the same units with the same crop_px",
        )
    p = params.n_before
    if p >= L:
        raise SchemaError(
            f"peak index n_before={p} outside a {L}-frame clip",
            field="n_before",
            fix="use the same n_before as ClipParams",
        )
    if not np.all(np.isfinite(fp)):
        raise InputFormatError("footprint crops contain NaN or Inf", field="A")
    out = {name: np.zeros(n, dtype=np.float64) for name in SPATIAL_FEATURE_NAMES}
    if n == 0 or k == 0:
        return out
    lo, hi = max(0, p - params.peak_half_width), min(L, p + params.peak_half_width + 1)
    nb = min(params.n_baseline_frames, L)
    act = clips[:, :, lo:hi].mean(axis=2, dtype=np.float64) - clips[:, :, :nb].mean(
        axis=2, dtype=np.float64
    )  # (n, k, c, c)
    act = np.where(valid[:, :, None, None], act, 0.0)
    if not np.all(np.isfinite(act)):
        raise InputFormatError("clips contain NaN or Inf", field="movie")
    act_flat = act.reshape(n, k, cy * cx)
    fp_flat = fp.reshape(n, 1, cy * cx)

    corr = _rowwise_corr(act_flat, np.broadcast_to(fp_flat, act_flat.shape))
    out["spatial_corr"] = _masked_mean(corr, valid)
    out["spatial_corr_min"] = np.where(valid.any(axis=1), np.where(valid, corr, np.inf).min(axis=1), 0.0)

    fp_max = fp.reshape(n, -1).max(axis=1)
    inside = (fp > 0) & (fp >= params.rel_threshold * fp_max[:, None, None])
    struct = np.zeros((1, 3, 3), dtype=bool)
    struct[0] = ndimage.generate_binary_structure(2, 1)
    ring = ndimage.binary_dilation(inside, structure=struct, iterations=params.ring_px) & ~inside
    n_in = inside.reshape(n, -1).sum(axis=1)
    n_ring = ring.reshape(n, -1).sum(axis=1)
    mean_in = np.einsum("nkp,np->nk", act_flat, inside.reshape(n, -1)) / np.maximum(n_in, 1)[:, None]
    mean_ring = np.einsum("nkp,np->nk", act_flat, ring.reshape(n, -1)) / np.maximum(n_ring, 1)[:, None]
    med = np.median(act_flat, axis=2, keepdims=True)
    rsd = MAD_TO_SD * np.median(np.abs(act_flat - med), axis=2)
    sd = act_flat.std(axis=2)
    rsd = np.where(rsd > 0, rsd, sd)
    ok = (n_in > 0)[:, None] & (n_ring > 0)[:, None] & (rsd > 0) & valid
    contrast = np.divide(mean_in - mean_ring, rsd, out=np.zeros((n, k)), where=ok)
    out["peak_contrast"] = _masked_mean(contrast, valid & ok)
    return out


def session_features(
    *,
    A: sp.spmatrix,
    dims: tuple[int, int],
    C_raw: np.ndarray,
    fps: float,
    transients: list[TransientResult],
    overlap: OverlapResult,
    clips: np.ndarray | None,
    valid: np.ndarray | None,
    fp_crops: np.ndarray | None,
    spatial_params: SpatialParams = SpatialParams(),
    shape_rel_threshold: float = 0.2,
    raw_trace: bool = True,
) -> dict[str, np.ndarray]:
    """Every column of :data:`~cellsift.schemas.tables.FEATURE_COLUMNS` for one session.

    Parameters
    ----------
    A
        Sparse footprints ``(K, H*W)``.
    dims
        ``(H, W)`` of the frame (px).
    C_raw
        Noisy traces ``(K, frame)``.
    fps
        Frame rate (Hz).
    transients
        :func:`~cellsift.pipeline.stages.transients.detect_all` output, one per unit.
    overlap
        :func:`~cellsift.pipeline.stages.overlap.compute_overlap` output.
    clips, valid, fp_crops
        Clip stage output for all K units in unit order; ``None`` when the session has
        no movie, in which case the three spatial features are NaN (not measured).
    spatial_params
        Parameters of :func:`spatial_features`.
    shape_rel_threshold
        Binarisation level of the shape features.
    raw_trace
        Whether ``C_raw`` is a raw trace; ``False`` (the denoised ``C``) makes the
        :data:`RAW_TRACE_FEATURES` NaN.

    Returns
    -------
    dict of str to numpy.ndarray
        Keys ``FEATURE_COLUMNS`` plus ``centroid_y``, ``centroid_x``, each ``(K,)``;
        ``n_transients`` and ``n_neighbours`` int32, the rest float64. NaN-free except
        the spatial features of a movie-less session and the trace-noise features of a
        session without a raw trace.
    """
    A = check_csr(A)
    check_dims(dims, A.shape[1])
    k = A.shape[0]
    C = np.asarray(C_raw)
    if C.ndim != 2 or C.shape[0] != k:
        raise SchemaError(
            f"C_raw has shape {C.shape}, expected ({k}, frame)",
            field="C_raw",
            fix="pass traces and footprints of the same units",
        )
    if len(transients) != k or overlap.max_overlap_frac.shape[0] != k:
        raise SchemaError(
            f"{len(transients)} transient results and {overlap.max_overlap_frac.shape[0]} "
            f"overlap rows for {k} units",
            field="unit_id",
        )
    if not (math.isfinite(fps) and fps > 0):
        raise InputFormatError(f"fps must be > 0, got {fps}", field="fps")
    out: dict[str, np.ndarray] = {}
    out.update(shape_features(A, dims, rel_threshold=shape_rel_threshold))

    out.update(trace_features(transients, n_frames=C.shape[1], fps=fps, raw_trace=raw_trace))

    if clips is None:
        logger.info("no movie clips: spatial features set to NaN (not measured)")
        for name in SPATIAL_FEATURE_NAMES:
            out[name] = np.full(k, np.nan)
    else:
        if valid is None or fp_crops is None:
            raise InputFormatError("clips given without valid mask or footprint crops", field="clips")
        if np.shape(clips)[0] != k:
            raise SchemaError(f"clips for {np.shape(clips)[0]} units, footprints for {k}", field="clips")
        out.update(spatial_features(clips, valid, fp_crops, params=spatial_params))

    out["neighbour_trace_corr"] = neighbour_trace_corr(C, overlap.pairs)
    out["n_neighbours"] = overlap.n_neighbours.astype(np.int32)
    out["max_overlap_frac"] = overlap.max_overlap_frac.astype(np.float64)

    missing = [c for c in FEATURE_COLUMNS if c not in out]
    if missing:  # pragma: no cover - guards the schema staying in sync
        raise SchemaError(f"features not computed: {missing}", field="FEATURE_COLUMNS")
    return {name: out[name] for name in (*FEATURE_COLUMNS, "centroid_y", "centroid_x")}

"""CaImAn results saved with ``cnm.save('results.hdf5')`` (format ``caiman_hdf5``).

Read with h5py only: CaImAn's ``save_dict_to_hdf5`` writes ``estimates/A`` as a group of
CSC parts (``data``, ``indices``, ``indptr``, ``shape``), arrays as datasets and ``None``
as the string ``'NoneType'``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.readers.base import (
    Extraction,
    UnitLabels,
    as_traces,
    corrupt_file,
    finite_positive,
    one_line,
    require_exists,
    to_csc,
)
from cellsift.pipeline.readers.checks import finish_extraction
from cellsift.pipeline.readers.matlab import MISSING, is_hdf5
from cellsift.pipeline.readers.traces import Traces, hdf5_traces, sum_traces, zero_traces
from cellsift.schemas import InputFormatError

logger = logging.getLogger(__name__)

__all__ = ["CaimanHdf5Reader"]

#: ``estimates`` fields the CaImAn reader uses or knows to be irrelevant (others are logged).
_CAIMAN_USED: Final = frozenset(
    {
        "A",
        "C",
        "S",
        "YrA",
        "b",
        "f",
        "W",
        "b0",
        "dims",
        "idx_components",
        "idx_components_bad",
        "SNR_comp",
        "r_values",
        "cnn_preds",
        "sn",
        "g",
        "bl",
        "c1",
        "neurons_sn",
        "lam",
        "center",
        "coordinates",
        "merged_ROIs",
        "F_dff",
        "R",
        "ecc",
        "discarded_components",
        "shifts",
        "A_thr",
        "Cn",
    }
)


def _h5_text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO" and value.size == 1:
        return _h5_text(value.reshape(-1)[0])
    return None


class CaimanHdf5Reader:
    """CaImAn results saved with ``cnm.save('results.hdf5')`` (read with h5py only).

    CaImAn's ``save_dict_to_hdf5`` writes ``estimates/A`` as a group of CSC parts
    (``data``, ``indices``, ``indptr``, ``shape``), arrays as datasets and ``None`` as the
    string ``'NoneType'``. Used: ``A`` ((d1*d2) x K, column-major pixels), ``C``, ``S``,
    ``YrA`` (raw trace = ``C + YrA``), ``dims`` (also ``params/data/dims``), frame rate
    ``params/data/fr``, ``idx_components``/``idx_components_bad`` (0-based; stored as
    labels of source ``caiman_idx_components``), ``SNR_comp``, ``r_values``,
    ``cnn_preds`` (per-unit columns). Unit ids are the 0-based component indices.

    Parameters
    ----------
    path
        The ``.hdf5``/``.h5`` file.
    """

    format: str = "caiman_hdf5"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def read(self) -> Extraction:
        """Read and check the CaImAn results (column-major ``"F"`` pixels).

        See :meth:`~cellsift.pipeline.readers.base.ExtractionReader.read`.
        """
        import h5py

        require_exists(self.path, field_name="extraction", what="extraction file")
        if not is_hdf5(self.path):
            raise InputFormatError(
                "not an HDF5 file (truncated, or not CaImAn's cnm.save output)",
                path=self.path,
                field="extraction",
                fix="save CaImAn results with cnm.save('results.hdf5') and give that file",
            )
        try:
            with h5py.File(self.path, "r") as handle:
                return self._read(handle)
        except InputFormatError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise corrupt_file(self.path, exc, "CaImAn HDF5 file") from None

    def _value(self, group: Any, name: str) -> Any:
        if group is None or name not in group:
            return MISSING
        obj = group[name]
        import h5py

        if isinstance(obj, h5py.Group):
            return obj
        value = obj[()]
        if _h5_text(value) == "NoneType":
            return MISSING
        return value

    def _read(self, handle: Any) -> Extraction:
        import h5py

        path = self.path
        est = handle.get("estimates")
        if not isinstance(est, h5py.Group):
            raise InputFormatError(
                f"no 'estimates' group (top-level: {', '.join(sorted(handle.keys())) or 'none'})",
                path=path,
                field="estimates",
                fix="save CaImAn results with cnm.save('results.hdf5')",
            )
        A = self._footprints(est)
        n_units = A.shape[1]
        C, C_raw, c_raw_source, S = self._traces(est, n_units)
        dims = None
        for group, name in ((est, "dims"), (handle, "dims"), (handle.get("params/data"), "dims")):
            value = self._value(group, name)
            if value is not MISSING and not isinstance(value, h5py.Group):
                arr = np.asarray(value).ravel()
                if arr.size == 2 and arr.dtype.kind in "iuf":
                    dims = (int(arr[0]), int(arr[1]))
                    break
        fr = self._value(handle.get("params/data"), "fr")
        fps = finite_positive(fr) if fr is not MISSING else None
        unit_ids = np.arange(n_units, dtype=np.int64)
        labels = self._labels(est, unit_ids)
        unit_vars: dict[str, np.ndarray] = {}
        for name, column in (
            ("SNR_comp", "caiman_snr"),
            ("r_values", "caiman_r_value"),
            ("cnn_preds", "caiman_cnn_pred"),
        ):
            value = self._value(est, name)
            if value is not MISSING and not isinstance(value, h5py.Group):
                arr = np.atleast_1d(np.asarray(value)).ravel()
                if arr.size == n_units and arr.dtype.kind in "biuf":
                    unit_vars[column] = arr.astype(np.float32)
        unknown = sorted(set(est.keys()) - _CAIMAN_USED)
        if unknown:
            logger.debug("%s: estimates fields not used: %s", path, unknown)
        ext = Extraction(
            A=A,
            C=C,
            C_raw=C_raw,
            S=S,
            unit_ids=unit_ids,
            d1=dims[0] if dims else None,
            d2=dims[1] if dims else None,
            fps=fps,
            pixel_order="F",
            unit_vars=unit_vars,
            labels=labels,
            source_format=self.format,
            c_raw_source=c_raw_source,
            ids_from_file=False,
        )
        return finish_extraction(ext, path)

    def _footprints(self, est: Any) -> sp.csc_matrix:
        """``estimates/A`` (CSC parts or a dense matrix) as CSC ``(d1*d2, K)`` float32."""
        import h5py

        path = self.path
        a_obj = self._value(est, "A")
        if a_obj is MISSING:
            raise InputFormatError(
                f"estimates has no 'A' (fields: {', '.join(sorted(est.keys()))})",
                path=path,
                field="estimates/A",
                fix="save the results after running CNMF (cnm.fit / cnm.refit)",
            )
        if not isinstance(a_obj, h5py.Group):
            return to_csc(a_obj, path=path, name="estimates/A")
        missing = [p for p in ("data", "indices", "indptr", "shape") if p not in a_obj]
        if missing:
            raise InputFormatError(
                f"estimates/A lacks the sparse parts {', '.join(missing)}",
                path=path,
                field="estimates/A",
                fix="save the results again with cnm.save",
            )
        shape = tuple(int(s) for s in np.asarray(a_obj["shape"][()]).ravel())
        try:
            return sp.csc_matrix(
                (
                    np.asarray(a_obj["data"][()]),
                    np.asarray(a_obj["indices"][()]),
                    np.asarray(a_obj["indptr"][()]),
                ),
                shape=shape,
                dtype=np.float32,
            )
        except ValueError as exc:
            raise InputFormatError(
                f"estimates/A sparse parts are inconsistent ({one_line(exc)})",
                path=path,
                field="estimates/A",
                fix="the file is truncated or corrupt; save the results again",
            ) from None

    def _trace(self, est: Any, name: str, n_units: int) -> Traces | None:
        """``estimates/<name>`` as :class:`LazyTraces` (a plain ``K x T`` dataset, read a
        block of units at a time) or read whole; ``None`` if absent or saved as ``None``."""
        if est is not None and name in est:
            lazy = hdf5_traces(est[name], transposed=False)
            if lazy is not None:
                return lazy
        value = self._value(est, name)
        if value is MISSING:
            return None
        return as_traces(value, name=name, n_units=n_units, path=self.path)

    def _traces(self, est: Any, n_units: int) -> tuple[Traces, Traces, str, Traces]:
        """``(C, C_raw, its source, S)``: ``C_raw = C + YrA`` (``C`` without ``YrA``)."""
        path = self.path
        C = self._trace(est, "C", n_units)
        if C is None:
            raise InputFormatError(
                "estimates has no 'C'", path=path, field="estimates/C", fix="save the results after CNMF"
            )
        s_value = self._trace(est, "S", n_units)
        S = zero_traces(C, source=path) if s_value is None else s_value
        residual = self._trace(est, "YrA", n_units)
        if residual is None:
            logger.warning("%s: no estimates/YrA; the raw trace is C (denoised)", path)
            return C, C, "C", S
        if residual.shape != C.shape:
            raise InputFormatError(
                f"YrA has shape {residual.shape}, expected {C.shape} like C",
                path=path,
                field="estimates/YrA",
                fix="save all estimates of one CNMF run",
            )
        return C, sum_traces(C, residual, source=path), "C + YrA", S

    def _labels(self, est: Any, unit_ids: np.ndarray) -> tuple[UnitLabels, ...]:
        """Labels from ``idx_components`` (good) / ``idx_components_bad``, if evaluated."""
        import h5py

        path, n_units = self.path, len(unit_ids)
        good = self._value(est, "idx_components")
        if good is MISSING or isinstance(good, h5py.Group):
            return ()
        good_idx = np.atleast_1d(np.asarray(good)).astype(np.int64)
        if good_idx.size and (good_idx.min() < 0 or good_idx.max() >= n_units):
            raise InputFormatError(
                f"idx_components holds indices outside 0..{n_units - 1}",
                path=path,
                field="estimates/idx_components",
                fix="save the estimates and the component evaluation of the same run",
            )
        is_good = np.zeros(n_units, dtype=bool)
        is_good[good_idx] = True
        bad = self._value(est, "idx_components_bad")
        if bad is not MISSING and not isinstance(bad, h5py.Group):
            bad_idx = np.atleast_1d(np.asarray(bad)).astype(np.int64)
            if np.intersect1d(bad_idx, good_idx).size:
                raise InputFormatError(
                    "idx_components and idx_components_bad overlap",
                    path=path,
                    field="estimates/idx_components_bad",
                    fix="save the component evaluation again",
                )
        return (
            UnitLabels(
                unit_ids, tuple("good" if g else "bad" for g in is_good), source="caiman_idx_components"
            ),
        )

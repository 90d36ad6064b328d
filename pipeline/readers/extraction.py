"""Extraction readers: one class per format, each returning an :class:`Extraction`.

================  ===========================================================================
format            what ``extraction`` points at
================  ===========================================================================
``cnmfe_mat``     CNMF-E (zhoupc/CNMF_E) results in a ``.mat`` (v5/v7 or v7.3): the ``results``
                  struct of ``neuron.obj2struct()``, the ``neuron_results`` of
                  ``neuron.save_results()``, the ``Sources2D`` object ``neuron`` that
                  ``neuron.save_workspace()`` writes (decoded with mat-io), or ``A``/``C`` at
                  the top level
``caiman_hdf5``   CaImAn's ``cnm.save('x.hdf5')`` (read with h5py: ``estimates/A`` as CSC
                  parts, ``C``, ``S``, ``YrA``, ``dims``, ``idx_components``)
``minian_zarr``   Minian's output folder, one ``<var>.zarr`` per variable (``A``, ``C``, ``S``,
                  ``YrA``, ...), with the ``unit_labels`` coordinate
``suite2p``       a Suite2p ``plane*/`` folder (``stat.npy``, ``F.npy``, ``Fneu.npy``,
                  ``spks.npy``, ``iscell.npy``, ``ops.npy``)
``nwb``           an NWB file: ``PlaneSegmentation`` masks and its ``RoiResponseSeries``
================  ===========================================================================
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Final

import numpy as np
import scipy.sparse as sp

from cellsift.schemas.errors import InputFormatError

from cellsift.pipeline.readers.base import (
    Extraction,
    UnitLabels,
    as_traces,
    dense_to_csc,
    finite_positive,
    natural_key,
    one_line,
    require_exists,
    to_csc,
)
from cellsift.pipeline.readers.checks import validate_extraction
from cellsift.pipeline.readers.matlab import (
    MISSING,
    H5Struct,
    field_names,
    get_field,
    is_empty,
    is_hdf5,
    load_mcos_object,
    load_v5,
    mat_variables,
    scalar,
)
from cellsift.pipeline.readers.video import nwb_photon_series, read_suite2p_ops

logger = logging.getLogger(__name__)

__all__ = [
    "EXTRACTION_FORMATS",
    "CnmfeMatReader",
    "CaimanHdf5Reader",
    "MinianZarrReader",
    "Suite2pReader",
    "NwbExtractionReader",
    "detect_extraction_format",
    "list_extraction_files",
    "open_extraction",
]

EXTRACTION_FORMATS: Final = ("cnmfe_mat", "caiman_hdf5", "minian_zarr", "suite2p", "nwb")
_FORMAT_ALIASES: Final = {
    "cnmfe_mat": "cnmfe_mat",
    "cnmfe": "cnmfe_mat",
    "cnmf-e": "cnmfe_mat",
    "cnmf_e": "cnmfe_mat",
    "caiman_hdf5": "caiman_hdf5",
    "caiman": "caiman_hdf5",
    "cnmf_hdf5": "caiman_hdf5",
    "minian_zarr": "minian_zarr",
    "minian": "minian_zarr",
    "suite2p": "suite2p",
    "nwb": "nwb",
}

#: Units read from a dense footprint array at a time (bounds memory of Minian's dense A).
_FOOTPRINT_BLOCK: Final = 32


def _corrupt(path: Path, exc: BaseException, what: str) -> InputFormatError:
    return InputFormatError(
        f"cannot read the {what} ({one_line(exc)})",
        path=path,
        fix="the file is truncated or corrupt; copy or export it again",
    )


def _ids_from(value: Any, *, n_units: int, path: Path, name: str = "ids") -> np.ndarray | None:
    if is_empty(value):
        return None
    ids = np.atleast_1d(np.asarray(value)).ravel()
    if ids.dtype.kind not in "biuf" or not np.all(np.isfinite(ids)) or not np.all(ids == np.round(ids)):
        raise InputFormatError(
            "unit ids are not whole numbers",
            path=path,
            field=name,
            fix="store integer unit ids, or drop them to number units 1..K",
        )
    return ids.astype(np.int64)


def _finish(ext: Extraction, path: Path) -> Extraction:
    validate_extraction(ext, path=path)
    logger.debug(
        "extraction %s (%s): %d units x %d frames, dims %s",
        path,
        ext.source_format,
        ext.n_units,
        ext.n_frames,
        ext.dims,
    )
    return ext


# =========================================================================== CNMF-E


_STRUCT_VARIABLES: Final = ("results", "neuron_results")
_OBJECT_VARIABLES: Final = ("neuron", "obj")
_PLAIN_CLASSES: Final = {
    "double",
    "single",
    "logical",
    "char",
    "struct",
    "cell",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "sparse",
    "hdf5",
    "function_handle",
}


class CnmfeMatReader:
    """CNMF-E results saved from MATLAB.

    Which variable is read, in order: ``results`` (``results = neuron.obj2struct();
    save(file, 'results')``), ``neuron_results`` (``neuron.save_results(file)``), a
    ``Sources2D`` object (``neuron`` of ``neuron.save_workspace()``, or ``obj`` of a
    ``viewNeurons`` workspace; decoded with mat-io), else ``A``/``C`` at the top level.

    Fields used: ``A`` ((d1*d2) x K, sparse or dense, column-major pixels), ``C``,
    ``C_raw``, ``S`` (K x T), ``options.d1``/``options.d2`` (else from ``Cn`` and
    ``ssub``), ``Fs`` (Hz), ``ids``, ``tags`` (bitmask: 1 few pixels, 2 no spikes, 4 low
    residual, 8 low PNR; kept as the column ``cnmfe_tags``), ``Cn``, ``options.tsub``. A
    missing ``C_raw`` is replaced by ``C``, a missing ``S`` by zeros (both logged).

    Parameters
    ----------
    path
        The ``.mat`` file.
    """

    format: str = "cnmfe_mat"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"CnmfeMatReader({str(self.path)!r})"

    def read(self) -> Extraction:
        """Read, normalise and check the CNMF-E results.

        Raises
        ------
        SessionNotFoundError
            If the file does not exist.
        InputFormatError
            Unreadable file, no recognisable variable, missing ``A``/``C``, inconsistent
            shapes, NaN/Inf values.
        """
        require_exists(self.path, field_name="extraction", what="extraction file")
        if self.path.is_dir():
            raise InputFormatError(
                "expected a .mat file, got a folder",
                path=self.path,
                field="extraction",
                fix="point extraction at the CNMF-E .mat file, or set format to the folder's format",
            )
        variables = mat_variables(self.path)
        name, kind = self._choose(variables)
        try:
            if kind == "object":
                return self._from_struct(load_mcos_object(self.path, name), origin=name)
            if is_hdf5(self.path):
                return self._read_h5(name)
            mat = load_v5(self.path, None if name == "" else [name])
            struct = mat[name] if name else {k: v for k, v in mat.items() if not k.startswith("__")}
            return self._from_struct(struct, origin=name or "top level")
        except InputFormatError:
            raise
        except Exception as exc:  # noqa: BLE001 - odd contents surface as many types
            raise _corrupt(self.path, exc, "CNMF-E results") from None

    def _choose(self, variables: dict[str, str]) -> tuple[str, str]:
        for name in _STRUCT_VARIABLES:
            if name in variables:
                return name, "struct"
        objects = [n for n, c in variables.items() if c == "Sources2D"]
        objects += [
            n
            for n in _OBJECT_VARIABLES
            if n in variables and variables[n] not in _PLAIN_CLASSES and n not in objects
        ]
        if objects:
            return objects[0], "object"
        if "A" in variables and "C" in variables:
            return "", "flat"
        listing = ", ".join(f"{n} ({c})" for n, c in sorted(variables.items())) or "none"
        raise InputFormatError(
            f"no CNMF-E results in the file: no 'results', 'neuron_results', Sources2D 'neuron' or A/C (variables: {listing})",
            path=self.path,
            field="results",
            fix="save CNMF-E results with 'results = neuron.obj2struct(); save(file, \"results\")' "
            "or neuron.save_workspace()",
        )

    def _read_h5(self, name: str) -> Extraction:
        import h5py

        try:
            with h5py.File(self.path, "r") as handle:
                group = handle[name] if name else handle["/"]
                return self._from_struct(H5Struct(group), origin=name or "top level")
        except InputFormatError:
            raise
        except Exception as exc:  # noqa: BLE001 - h5py raises OSError/KeyError/ValueError/RuntimeError
            raise _corrupt(self.path, exc, "MATLAB file") from None

    def _from_struct(self, struct: Any, *, origin: str) -> Extraction:
        path = self.path
        a_raw = get_field(struct, "A")
        c_in = get_field(struct, "C")
        for name, value in (("A", a_raw), ("C", c_in)):
            if is_empty(value):
                raise InputFormatError(
                    f"{origin} has no '{name}' (fields: {', '.join(field_names(struct)) or 'none'})",
                    path=path,
                    field=name,
                    fix="save the CNMF-E results after running the extraction",
                )
        if not sp.issparse(a_raw) and np.asarray(a_raw).ndim == 3:  # d1 x d2 x K
            a_arr = np.asarray(a_raw)
            a_raw = a_arr.reshape(-1, a_arr.shape[2], order="F")
        elif not sp.issparse(a_raw) and np.asarray(a_raw).ndim == 1:
            a_raw = np.asarray(a_raw)[:, None]
        A = to_csc(a_raw, path=path)
        n_units = A.shape[1]
        if n_units == 0:
            raise InputFormatError(
                "the extraction has no units (A has 0 columns)",
                path=path,
                field="A",
                fix="re-run the extraction; a session needs at least one cell candidate",
            )
        C = as_traces(c_in, name="C", n_units=n_units, path=path)
        c_raw_value = get_field(struct, "C_raw")
        if is_empty(c_raw_value):
            logger.info("%s: no C_raw; using C as the raw trace", path)
            C_raw, c_raw_source = C, "C"
        else:
            C_raw, c_raw_source = as_traces(c_raw_value, name="C_raw", n_units=n_units, path=path), "C_raw"
        s_value = get_field(struct, "S")
        if is_empty(s_value):
            logger.warning("%s: no S (deconvolved activity); writing zeros", path)
            S = np.zeros_like(C)
        else:
            S = as_traces(s_value, name="S", n_units=n_units, path=path)

        options = get_field(struct, "options")
        d1 = scalar(get_field(options, "d1"))
        d2 = scalar(get_field(options, "d2"))
        ssub = scalar(get_field(options, "ssub")) or scalar(get_field(struct, "ssub")) or 1.0
        tsub = scalar(get_field(options, "tsub")) or scalar(get_field(struct, "tsub"))
        extras: dict[str, np.ndarray] = {}
        cn = get_field(struct, "Cn")
        cn_arr = None
        if not is_empty(cn) and not isinstance(cn, (H5Struct, str)) and np.asarray(cn).dtype.kind in "biuf":
            cn_arr = np.asarray(cn, dtype=np.float32)
        dims = (int(d1), int(d2)) if d1 and d2 else None
        if dims is None and cn_arr is not None and cn_arr.ndim == 2:
            if cn_arr.size == A.shape[0]:
                dims = (int(cn_arr.shape[0]), int(cn_arr.shape[1]))
            elif ssub > 1 and all(s % int(ssub) == 0 for s in cn_arr.shape):
                sub = (cn_arr.shape[0] // int(ssub), cn_arr.shape[1] // int(ssub))
                if sub[0] * sub[1] == A.shape[0]:
                    dims = sub
                    cn_arr = cn_arr.reshape(sub[0], int(ssub), sub[1], int(ssub)).mean(axis=(1, 3))
                    logger.info("%s: frame size %dx%d from Cn and ssub=%d", path, sub[0], sub[1], int(ssub))
            if dims is not None:
                logger.info("%s: no options.d1/d2; frame size %dx%d taken from Cn", path, *dims)
        if cn_arr is not None and dims is not None and cn_arr.shape == dims:
            extras["Cn"] = cn_arr
        pnr = get_field(struct, "PNR")
        if dims is not None and not is_empty(pnr) and np.asarray(pnr).shape == dims:
            extras["PNR"] = np.asarray(pnr, dtype=np.float32)

        unit_ids = _ids_from(get_field(struct, "ids"), n_units=n_units, path=path)
        ids_from_file = unit_ids is not None
        if unit_ids is None:
            unit_ids = np.arange(1, n_units + 1, dtype=np.int64)
        unit_vars: dict[str, np.ndarray] = {}
        tags = get_field(struct, "tags")
        if not is_empty(tags):
            tag_arr = np.atleast_1d(np.asarray(tags)).ravel()
            if tag_arr.size == n_units and tag_arr.dtype.kind in "biuf":
                unit_vars["cnmfe_tags"] = tag_arr.astype(np.int32)
            else:
                logger.warning("%s: ignoring tags of %d values for %d units", path, tag_arr.size, n_units)
        keep = get_field(struct, "keep")
        if not is_empty(keep) and np.asarray(keep).dtype.kind in "iu":
            idx = np.atleast_1d(np.asarray(keep)).ravel().astype(np.int64)
            if idx.size and idx.min() >= 0 and idx.max() < n_units:
                flags = np.zeros(n_units, dtype=bool)
                flags[idx] = True
                unit_vars["keep"] = flags  # as found in the file: a prediction or a label, not told apart
        fps = scalar(get_field(struct, "Fs"))
        if fps is None or fps <= 0:
            fps = scalar(get_field(options, "Fs")) or scalar(get_field(options, "fs"))
        ext = Extraction(
            A=A,
            C=C,
            C_raw=C_raw,
            S=S,
            unit_ids=unit_ids,
            d1=dims[0] if dims else None,
            d2=dims[1] if dims else None,
            fps=fps if fps and fps > 0 else None,
            pixel_order="F",
            extras=extras,
            unit_vars=unit_vars,
            source_format=self.format,
            c_raw_source=c_raw_source,
            tsub=int(tsub) if tsub and tsub >= 1 else None,
            ids_from_file=ids_from_file,
        )
        return _finish(ext, path)


# =========================================================================== CaImAn


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
        """Read and check the CaImAn results.

        Raises
        ------
        SessionNotFoundError, InputFormatError
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
            raise _corrupt(self.path, exc, "CaImAn HDF5 file") from None

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
        a_obj = self._value(est, "A")
        if a_obj is MISSING:
            raise InputFormatError(
                f"estimates has no 'A' (fields: {', '.join(sorted(est.keys()))})",
                path=path,
                field="estimates/A",
                fix="save the results after running CNMF (cnm.fit / cnm.refit)",
            )
        if isinstance(a_obj, h5py.Group):
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
                A = sp.csc_matrix(
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
        else:
            A = to_csc(a_obj, path=path, name="estimates/A")
        n_units = A.shape[1]
        c_value = self._value(est, "C")
        if c_value is MISSING:
            raise InputFormatError(
                "estimates has no 'C'", path=path, field="estimates/C", fix="save the results after CNMF"
            )
        C = as_traces(c_value, name="C", n_units=n_units, path=path)
        s_value = self._value(est, "S")
        S = (
            np.zeros_like(C)
            if s_value is MISSING
            else as_traces(s_value, name="S", n_units=n_units, path=path)
        )
        yra = self._value(est, "YrA")
        if yra is MISSING:
            logger.warning("%s: no estimates/YrA; the raw trace is C (denoised)", path)
            C_raw, c_raw_source = C, "C"
        else:
            residual = as_traces(yra, name="YrA", n_units=n_units, path=path)
            if residual.shape != C.shape:
                raise InputFormatError(
                    f"YrA has shape {residual.shape}, expected {C.shape} like C",
                    path=path,
                    field="estimates/YrA",
                    fix="save all estimates of one CNMF run",
                )
            C_raw, c_raw_source = C + residual, "C + YrA"
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
        labels: list[UnitLabels] = []
        good = self._value(est, "idx_components")
        if good is not MISSING and not isinstance(good, h5py.Group):
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
            labels.append(
                UnitLabels(
                    unit_ids, tuple("good" if g else "bad" for g in is_good), source="caiman_idx_components"
                )
            )
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
            labels=tuple(labels),
            source_format=self.format,
            c_raw_source=c_raw_source,
            ids_from_file=False,
        )
        return _finish(ext, path)


# =========================================================================== Minian


#: Variables Minian writes (any other ``<var>.zarr`` is reported).
MINIAN_KNOWN: Final = frozenset(
    {
        "A",
        "C",
        "S",
        "YrA",
        "b",
        "f",
        "b0",
        "c0",
        "max_proj",
        "shifts",
        "motion",
        "Y",
        "Y_fm_chk",
        "Y_hw_chk",
        "org",
        "varr",
        "sig",
        "seeds",
        "A_init",
        "C_init",
        "b_init",
        "f_init",
        "S_init",
        "C_chk",
        "A_chk",
        "Y_fm",
        "Y_hw",
        "Yr",
        "max_proj_mc",
        "mean_proj",
    }
)


class MinianZarrReader:
    """Minian output: a folder of ``<var>.zarr`` stores (one per variable, zarr v2 or v3).

    Used: ``A`` (unit_id, height, width), ``C`` and ``S`` (unit_id, frame), ``YrA``
    (raw trace = ``C + YrA``; without it the raw trace is ``C``), ``max_proj`` (kept as
    ``max_proj_extraction``), the ``unit_labels`` coordinate (``-1`` = discarded in
    Minian's CNMFViewer; stored as labels of source ``minian_unit_labels`` unless it just
    repeats ``unit_id``, which means nobody curated). Dimensions are matched by name, so
    the stored axis order does not matter.

    Parameters
    ----------
    path
        The output folder holding ``A.zarr``, ``C.zarr``, ...
    """

    format: str = "minian_zarr"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def _open(self, name: str) -> Any:
        import xarray as xr

        store = self.path / f"{name}.zarr"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = xr.open_zarr(store, consolidated=False)
        except Exception as exc:  # noqa: BLE001 - zarr raises many types on broken stores
            raise InputFormatError(
                f"cannot open {name}.zarr ({one_line(exc)})",
                path=store,
                field=name,
                fix="copy the Minian output folder again; every <var>.zarr needs its .zarray/.zattrs metadata",
            ) from None
        if name not in ds.data_vars:
            raise InputFormatError(
                f"{name}.zarr holds no variable '{name}' (variables: {', '.join(ds.data_vars) or 'none'})",
                path=store,
                field=name,
                fix="give the folder Minian's save_minian wrote",
            )
        return ds[name]

    def read(self) -> Extraction:
        """Read and check the Minian output.

        Raises
        ------
        SessionNotFoundError, InputFormatError
        """
        require_exists(self.path, field_name="extraction", what="extraction folder")
        if not self.path.is_dir():
            raise InputFormatError(
                "expected Minian's output folder (holding A.zarr, C.zarr, ...), got a file",
                path=self.path,
                field="extraction",
                fix="point extraction at the folder",
            )
        present = {
            p.name[: -len(".zarr")] for p in self.path.iterdir() if p.is_dir() and p.name.endswith(".zarr")
        }
        for name in ("A", "C"):
            if name not in present:
                raise InputFormatError(
                    f"no {name}.zarr in the Minian output folder (found: {', '.join(sorted(present)) or 'none'})",
                    path=self.path,
                    field=name,
                    fix="point extraction at the folder Minian's save_minian wrote (A.zarr, C.zarr, S.zarr, ...)",
                )
        unknown = sorted(present - MINIAN_KNOWN)
        if unknown:
            logger.warning(
                "%s: unknown variables %s are not read", self.path, ", ".join(f"{u}.zarr" for u in unknown)
            )
        a = self._open("A")
        c = self._open("C")
        for name, arr, dims in (("A", a, {"unit_id", "height", "width"}), ("C", c, {"unit_id", "frame"})):
            if set(arr.dims) != dims:
                raise InputFormatError(
                    f"{name} has dimensions {tuple(arr.dims)}, expected {tuple(sorted(dims))}",
                    path=self.path / f"{name}.zarr",
                    field=name,
                    fix="give Minian's own output (dimension names unit_id, height, width, frame)",
                )
        a = a.transpose("unit_id", "height", "width")
        c = c.transpose("unit_id", "frame")
        unit_ids = np.asarray(a["unit_id"].values)
        if not np.array_equal(unit_ids, np.asarray(c["unit_id"].values)):
            if set(unit_ids.tolist()) != set(np.asarray(c["unit_id"].values).tolist()):
                raise InputFormatError(
                    "A and C have different unit ids",
                    path=self.path / "C.zarr",
                    field="unit_id",
                    fix="give A and C of the same Minian run",
                )
            c = c.sel(unit_id=unit_ids)
        n_units = len(unit_ids)
        h, w = int(a.sizes["height"]), int(a.sizes["width"])
        blocks = []
        store_a = self.path / "A.zarr"
        try:
            for start in range(0, n_units, _FOOTPRINT_BLOCK):
                block = np.asarray(
                    a.isel(unit_id=slice(start, start + _FOOTPRINT_BLOCK)).values, dtype=np.float32
                )
                blocks.append(dense_to_csc(block))
            C = np.ascontiguousarray(np.asarray(c.values, dtype=np.float32))
        except Exception as exc:  # noqa: BLE001 - a missing or truncated chunk file
            raise InputFormatError(
                f"cannot read the Minian arrays ({one_line(exc)})",
                path=store_a,
                fix="a chunk file is truncated or corrupt; copy the Minian output folder again",
            ) from None
        A = sp.hstack(blocks, format="csc") if blocks else sp.csc_matrix((h * w, 0), dtype=np.float32)

        def traces(name: str) -> np.ndarray | None:
            if name not in present:
                return None
            arr = self._open(name)
            if set(arr.dims) != {"unit_id", "frame"}:
                raise InputFormatError(
                    f"{name} has dimensions {tuple(arr.dims)}, expected (unit_id, frame)",
                    path=self.path / f"{name}.zarr",
                    field=name,
                    fix="give Minian's own output",
                )
            try:
                values = arr.transpose("unit_id", "frame").sel(unit_id=unit_ids).values
            except KeyError:
                raise InputFormatError(
                    f"{name} lacks some units of A",
                    path=self.path / f"{name}.zarr",
                    field=name,
                    fix="give one run's output",
                ) from None
            except Exception as exc:  # noqa: BLE001
                raise InputFormatError(
                    f"cannot read {name}.zarr ({one_line(exc)})",
                    path=self.path / f"{name}.zarr",
                    field=name,
                    fix="a chunk file is truncated or corrupt; copy the Minian output folder again",
                ) from None
            return np.ascontiguousarray(np.asarray(values, dtype=np.float32))

        S = traces("S")
        if S is None:
            logger.warning("%s: no S.zarr; writing zeros", self.path)
            S = np.zeros_like(C)
        yra = traces("YrA")
        if yra is not None and yra.shape == C.shape:
            C_raw, c_raw_source = C + yra, "C + YrA"
        else:
            logger.warning(
                "%s: no YrA.zarr; the raw trace is C (denoised), so noise features are not measured",
                self.path,
            )
            C_raw, c_raw_source = C, "C"
        labels: list[UnitLabels] = []
        unit_vars: dict[str, np.ndarray] = {}
        if "unit_labels" in a.coords:
            raw_labels = np.asarray(a["unit_labels"].values)
            if raw_labels.dtype.kind in "iuf" and raw_labels.shape == (n_units,):
                unit_vars["minian_unit_labels"] = raw_labels.astype(np.int64)
                if np.array_equal(raw_labels, unit_ids) and not np.any(raw_labels == -1):
                    logger.info("%s: unit_labels equal unit_id (not curated); no labels imported", self.path)
                else:
                    labels.append(
                        UnitLabels(
                            unit_ids.astype(np.int64),
                            tuple("bad" if v == -1 else "good" for v in raw_labels),
                            source="minian_unit_labels",
                        )
                    )
        extras: dict[str, np.ndarray] = {}
        if "max_proj" in present:
            mp = self._open("max_proj")
            if set(mp.dims) == {"height", "width"}:
                extras["max_proj_extraction"] = np.asarray(
                    mp.transpose("height", "width").values, dtype=np.float32
                )
        ext = Extraction(
            A=A,
            C=C,
            C_raw=C_raw,
            S=S,
            unit_ids=unit_ids.astype(np.int64),
            d1=h,
            d2=w,
            fps=None,
            pixel_order="C",
            extras=extras,
            unit_vars=unit_vars,
            labels=tuple(labels),
            source_format=self.format,
            c_raw_source=c_raw_source,
        )
        return _finish(ext, self.path)


# =========================================================================== Suite2p


_SUITE2P_FILES: Final = ("stat.npy", "F.npy", "Fneu.npy", "spks.npy", "iscell.npy", "ops.npy")


def suite2p_plane(path: Path) -> Path:
    """The plane folder of a Suite2p output (``plane0`` when given ``suite2p/``)."""
    if (path / "stat.npy").is_file():
        return path
    planes = sorted(
        (p for p in path.iterdir() if p.is_dir() and p.name.startswith("plane")),
        key=lambda p: natural_key(p.name),
    )
    if len(planes) == 1:
        return planes[0]
    if not planes:
        raise InputFormatError(
            "no stat.npy and no plane*/ folder",
            path=path,
            field="extraction",
            fix="point extraction at a Suite2p plane folder (suite2p/plane0)",
        )
    raise InputFormatError(
        f"several planes ({', '.join(p.name for p in planes)})",
        path=path,
        field="extraction",
        fix="give one plane folder per session row, e.g. suite2p/plane0",
    )


class Suite2pReader:
    """A Suite2p plane folder.

    ``stat.npy`` (per ROI ``ypix``, ``xpix``, ``lam``), ``F.npy``, ``Fneu.npy``,
    ``spks.npy`` (K x T), ``iscell.npy`` (K x 2: flag, probability; stored as labels of
    source ``suite2p_iscell`` and the column ``suite2p_iscell_prob``), ``ops.npy``
    (``Ly``, ``Lx``, ``fs``, ``neucoeff``, ``reg_file``). The raw trace is
    ``F - neucoeff * Fneu`` (default 0.7); there is no denoised trace, so ``C`` is the same.
    The plane's ``data.bin`` (or ``ops['reg_file']``) is the companion video. Unit ids
    are the 0-based ROI indices.

    ``stat.npy`` and ``ops.npy`` are pickles: only read folders you trust.

    Parameters
    ----------
    path
        The plane folder, or a ``suite2p/`` folder with one plane.
    """

    format: str = "suite2p"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def _load(self, plane: Path, name: str, *, pickled: bool = False) -> Any:
        file = plane / name
        if not file.is_file():
            raise InputFormatError(
                f"the plane folder has no {name}",
                path=plane,
                field=name,
                fix="copy the whole Suite2p plane folder (stat.npy, F.npy, Fneu.npy, spks.npy, iscell.npy, ops.npy)",
            )
        try:
            return np.load(file, allow_pickle=pickled)
        except Exception as exc:  # noqa: BLE001
            raise InputFormatError(
                f"cannot read {name} ({one_line(exc)})",
                path=file,
                field=name,
                fix="the file is truncated or corrupt; copy the plane folder again",
            ) from None

    def read(self) -> Extraction:
        """Read and check the plane folder.

        Raises
        ------
        SessionNotFoundError, InputFormatError
        """
        require_exists(self.path, field_name="extraction", what="extraction folder")
        if not self.path.is_dir():
            raise InputFormatError(
                "expected a Suite2p plane folder, got a file",
                path=self.path,
                field="extraction",
                fix="point extraction at suite2p/plane0",
            )
        plane = suite2p_plane(self.path)
        ops = read_suite2p_ops(plane / "ops.npy") if (plane / "ops.npy").is_file() else None
        if ops is None:
            raise InputFormatError(
                "the plane folder has no ops.npy (frame size, fs)",
                path=plane,
                field="ops.npy",
                fix="copy the whole Suite2p plane folder",
            )
        try:
            ly, lx = int(ops["Ly"]), int(ops["Lx"])
        except (KeyError, TypeError, ValueError):
            raise InputFormatError(
                "ops.npy has no Ly/Lx", path=plane / "ops.npy", field="Ly", fix="copy the plane folder again"
            ) from None
        stat = self._load(plane, "stat.npy", pickled=True)
        F = self._load(plane, "F.npy")
        n_units = len(stat)
        if n_units == 0:
            raise InputFormatError(
                "stat.npy holds no ROIs",
                path=plane / "stat.npy",
                field="stat.npy",
                fix="re-run Suite2p detection",
            )
        rows, cols, vals = [], [], []
        for k, roi in enumerate(stat):
            try:
                ypix = np.asarray(roi["ypix"], dtype=np.int64).ravel()
                xpix = np.asarray(roi["xpix"], dtype=np.int64).ravel()
                lam = np.asarray(roi.get("lam", np.ones(ypix.size)), dtype=np.float32).ravel()
            except (KeyError, TypeError, ValueError, AttributeError):
                raise InputFormatError(
                    f"ROI {k} of stat.npy has no ypix/xpix/lam",
                    path=plane / "stat.npy",
                    field="stat.npy",
                    fix="give stat.npy as Suite2p writes it",
                ) from None
            if not (ypix.size == xpix.size == lam.size):
                raise InputFormatError(
                    f"ROI {k}: ypix, xpix and lam differ in length",
                    path=plane / "stat.npy",
                    field="stat.npy",
                    fix="give stat.npy as Suite2p writes it",
                )
            if ypix.size and (ypix.min() < 0 or ypix.max() >= ly or xpix.min() < 0 or xpix.max() >= lx):
                raise InputFormatError(
                    f"ROI {k} has pixels outside the {ly}x{lx} frame of ops.npy",
                    path=plane / "stat.npy",
                    field="stat.npy",
                    fix="give stat.npy and ops.npy of the same Suite2p run",
                )
            rows.append(ypix * lx + xpix)
            cols.append(np.full(ypix.size, k, dtype=np.int64))
            vals.append(lam)
        A = sp.csc_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(ly * lx, n_units),
            dtype=np.float32,
        )
        F = as_traces(F, name="F", n_units=n_units, path=plane / "F.npy")
        fneu_file = plane / "Fneu.npy"
        neucoeff = float(ops.get("neucoeff", 0.7))
        if fneu_file.is_file():
            Fneu = as_traces(self._load(plane, "Fneu.npy"), name="Fneu", n_units=n_units, path=fneu_file)
            if Fneu.shape != F.shape:
                raise InputFormatError(
                    f"Fneu has shape {Fneu.shape}, F {F.shape}",
                    path=fneu_file,
                    field="Fneu.npy",
                    fix="copy F.npy and Fneu.npy of the same run",
                )
            C_raw, c_raw_source = F - np.float32(neucoeff) * Fneu, f"F - {neucoeff:g}*Fneu"
        else:
            logger.warning("%s: no Fneu.npy; the raw trace is F without neuropil correction", plane)
            C_raw, c_raw_source = F, "F"
        spks_file = plane / "spks.npy"
        S = (
            as_traces(self._load(plane, "spks.npy"), name="spks", n_units=n_units, path=spks_file)
            if spks_file.is_file()
            else np.zeros_like(F)
        )
        labels: list[UnitLabels] = []
        unit_vars: dict[str, np.ndarray] = {}
        unit_ids = np.arange(n_units, dtype=np.int64)
        if (plane / "iscell.npy").is_file():
            iscell = np.asarray(self._load(plane, "iscell.npy"))
            iscell = iscell.reshape(-1, 1) if iscell.ndim == 1 else iscell
            if iscell.shape[0] != n_units:
                raise InputFormatError(
                    f"iscell.npy has {iscell.shape[0]} rows for {n_units} ROIs",
                    path=plane / "iscell.npy",
                    field="iscell.npy",
                    fix="copy iscell.npy and stat.npy of the same run",
                )
            flags = iscell[:, 0] > 0.5
            labels.append(
                UnitLabels(unit_ids, tuple("good" if f else "bad" for f in flags), source="suite2p_iscell")
            )
            if iscell.shape[1] > 1:
                unit_vars["suite2p_iscell_prob"] = iscell[:, 1].astype(np.float32)
        companion = plane / "data.bin"
        if not companion.is_file():
            reg = ops.get("reg_file")
            companion = Path(str(reg)) if reg and Path(str(reg)).is_file() else None
        ext = Extraction(
            A=A,
            C=C_raw,
            C_raw=C_raw,
            S=S,
            unit_ids=unit_ids,
            d1=ly,
            d2=lx,
            fps=finite_positive(ops.get("fs")),
            pixel_order="C",
            extras={
                f"suite2p_{k}": np.asarray(ops[k], dtype=np.float32)
                for k in ("meanImg", "Vcorr", "max_proj")
                if k in ops and np.shape(ops[k]) == (ly, lx)
            },
            unit_vars=unit_vars,
            labels=tuple(labels),
            source_format=self.format,
            c_raw_source=c_raw_source,
            companion_video=companion,
            companion_video_format="suite2p_bin" if companion is not None else None,
            ids_from_file=False,
        )
        return _finish(ext, plane)


# =========================================================================== NWB


class NwbExtractionReader:
    """Cell candidates of an NWB file, read with pynwb.

    Takes the first ``PlaneSegmentation`` of the ``ImageSegmentation`` in any processing
    module (or the one named by ``name``). Masks: ``image_mask`` (ROI x d0 x d1) or
    ``pixel_mask`` (``x``, ``y``, ``weight``), both in the axis order of the photon
    series' frames. Traces: the ``RoiResponseSeries`` (time x ROI) that reference the
    segmentation; one whose name or container says ``deconv``/``spike``/``spks`` is ``S``,
    one that says ``neuropil`` is subtracted (``F - 0.7*Fneu``), the first other one is
    the raw trace. An ``iscell`` column is stored as labels of source ``nwb_iscell``. The
    ``OnePhotonSeries``/``TwoPhotonSeries`` with data is the companion video.

    Parameters
    ----------
    path
        The ``.nwb`` file.
    name
        Name of the ``PlaneSegmentation`` to read (default: the first).
    """

    format: str = "nwb"

    def __init__(self, path: Path | str, name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name

    def read(self) -> Extraction:
        """Read and check the NWB file.

        Raises
        ------
        SessionNotFoundError, InputFormatError
        """
        require_exists(self.path, field_name="extraction", what="extraction file")
        try:
            from pynwb import NWBHDF5IO
        except ImportError:
            raise InputFormatError(
                "reading NWB needs the pynwb package",
                path=self.path,
                field="extraction",
                fix="pip install pynwb",
            ) from None
        if not is_hdf5(self.path):
            raise InputFormatError(
                "not an HDF5 NWB file (truncated or another format)",
                path=self.path,
                field="extraction",
                fix="export the NWB file again",
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with NWBHDF5IO(str(self.path), "r", load_namespaces=True) as io:
                    nwbfile = io.read()
                    return self._read(nwbfile)
        except InputFormatError:
            raise
        except Exception as exc:  # noqa: BLE001 - pynwb/hdmf raise many types
            raise _corrupt(self.path, exc, "NWB file") from None

    def _segmentation(self, nwbfile: Any) -> tuple[Any, Any]:
        from pynwb.ophys import ImageSegmentation

        found = []
        for module in nwbfile.processing.values():
            for container in module.data_interfaces.values():
                if isinstance(container, ImageSegmentation):
                    for ps in container.plane_segmentations.values():
                        found.append((module, ps))
        if self.name is not None:
            found = [(m, ps) for m, ps in found if ps.name == self.name]
        if not found:
            raise InputFormatError(
                "no PlaneSegmentation in the NWB file" + (f" named '{self.name}'" if self.name else ""),
                path=self.path,
                field="PlaneSegmentation",
                fix="give an NWB file with an ImageSegmentation in a processing module (e.g. 'ophys')",
            )
        if len(found) > 1:
            logger.warning("%s: several PlaneSegmentations; using %s", self.path, found[0][1].name)
        return found[0]

    def _read(self, nwbfile: Any) -> Extraction:
        from pynwb.ophys import RoiResponseSeries

        path = self.path
        module, ps = self._segmentation(nwbfile)
        n_units = len(ps)
        if n_units == 0:
            raise InputFormatError(
                "the PlaneSegmentation has no ROIs",
                path=path,
                field="PlaneSegmentation",
                fix="export the segmentation with its ROIs",
            )
        unit_ids = np.asarray(ps.id[:], dtype=np.int64)
        series_names = nwb_photon_series_names(path)
        dims: tuple[int, int] | None = None
        if series_names:
            series = nwbfile.acquisition[series_names[0]]
            dims = (int(series.data.shape[1]), int(series.data.shape[2]))
        if "image_mask" in ps.colnames:
            masks = ps["image_mask"].data
            shape = tuple(int(s) for s in masks.shape)
            if len(shape) != 3:
                raise InputFormatError(
                    f"image_mask has shape {shape}, expected (ROI, d0, d1)",
                    path=path,
                    field="image_mask",
                    fix="store 2-D image masks",
                )
            blocks = [
                dense_to_csc(np.asarray(masks[s : s + _FOOTPRINT_BLOCK], dtype=np.float32))
                for s in range(0, n_units, _FOOTPRINT_BLOCK)
            ]
            A = sp.hstack(blocks, format="csc")
            mask_dims = (shape[1], shape[2])
            if dims is not None and dims != mask_dims:
                logger.info("%s: image masks are %dx%d, the photon series %dx%d", path, *mask_dims, *dims)
            dims = mask_dims
        elif "pixel_mask" in ps.colnames:
            if dims is None:
                reference = _reference_dims(ps)
                if reference is None:
                    raise InputFormatError(
                        "pixel masks but no frame size (no photon series with data and no reference image)",
                        path=path,
                        field="pixel_mask",
                        fix="add the OnePhotonSeries, a reference image, or store image_mask",
                    )
                dims = reference
            rows, cols, vals = [], [], []
            for k in range(n_units):
                pm = ps["pixel_mask"][k]
                arr = np.asarray([tuple(p) for p in pm], dtype=np.float64).reshape(-1, 3)
                x, y = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
                if x.size and (x.min() < 0 or x.max() >= dims[0] or y.min() < 0 or y.max() >= dims[1]):
                    raise InputFormatError(
                        f"ROI {unit_ids[k]} has pixels outside the {dims[0]}x{dims[1]} frame",
                        path=path,
                        field="pixel_mask",
                        fix="store pixel masks in the axis order of the photon series frames",
                    )
                rows.append(x * dims[1] + y)
                cols.append(np.full(x.size, k, dtype=np.int64))
                vals.append(arr[:, 2])
            A = sp.csc_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                shape=(dims[0] * dims[1], n_units),
                dtype=np.float32,
            )
        else:
            raise InputFormatError(
                "the PlaneSegmentation has neither image_mask nor pixel_mask",
                path=path,
                field="PlaneSegmentation",
                fix="store ROI masks",
            )
        raw = neuropil = spikes = None
        raw_name = ""
        for container in module.data_interfaces.values():
            candidates = getattr(container, "roi_response_series", None)
            members = (
                list(candidates.values())
                if candidates is not None
                else ([container] if isinstance(container, RoiResponseSeries) else [])
            )
            for rrs in members:
                if rrs.rois.table is not ps:
                    continue
                label = f"{container.name}/{rrs.name}".lower()
                if any(k in label for k in ("deconv", "spike", "spks")):
                    spikes = spikes or rrs
                elif "neuropil" in label:
                    neuropil = neuropil or rrs
                elif raw is None:
                    raw, raw_name = rrs, f"{container.name}/{rrs.name}"
        if raw is None:
            raise InputFormatError(
                "no RoiResponseSeries references the PlaneSegmentation",
                path=path,
                field="RoiResponseSeries",
                fix="store the ROI traces in a Fluorescence (or DfOverF) RoiResponseSeries",
            )

        def traces(rrs: Any, name: str) -> np.ndarray:
            data = np.asarray(rrs.data[:], dtype=np.float32)
            if data.ndim == 1:
                data = data[:, None]
            if data.shape[1] != n_units:
                hint = " (it looks ROI x time; NWB stores time x ROI)" if data.shape[0] == n_units else ""
                raise InputFormatError(
                    f"RoiResponseSeries '{rrs.name}' has shape {data.shape}, expected (time, {n_units} ROIs){hint}",
                    path=path,
                    field=name,
                    fix="store RoiResponseSeries data as time x ROI",
                )
            return np.ascontiguousarray(data.T)

        F = traces(raw, "RoiResponseSeries")
        if neuropil is not None:
            C_raw, c_raw_source = (
                F - np.float32(0.7) * traces(neuropil, "Neuropil"),
                f"{raw_name} - 0.7*neuropil",
            )
        else:
            C_raw, c_raw_source = F, raw_name
        S = traces(spikes, "Deconvolved") if spikes is not None else np.zeros_like(F)
        if S.shape != F.shape:
            raise InputFormatError(
                f"deconvolved series has {S.shape[1]} samples, fluorescence {F.shape[1]}",
                path=path,
                field="Deconvolved",
                fix="store series of the same length",
            )
        fps = finite_positive(raw.rate) if raw.rate else None
        if fps is None and raw.timestamps is not None and len(raw.timestamps) > 1:
            ts = np.asarray(raw.timestamps[:], dtype=np.float64)
            fps = finite_positive((len(ts) - 1) / (ts[-1] - ts[0])) if ts[-1] > ts[0] else None
        labels: list[UnitLabels] = []
        if "iscell" in ps.colnames:
            flags = np.asarray(ps["iscell"].data[:])
            flags = flags[:, 0] if flags.ndim == 2 else flags
            labels.append(
                UnitLabels(unit_ids, tuple("good" if f > 0.5 else "bad" for f in flags), source="nwb_iscell")
            )
        ext = Extraction(
            A=A,
            C=C_raw,
            C_raw=C_raw,
            S=S,
            unit_ids=unit_ids,
            d1=dims[0],
            d2=dims[1],
            fps=fps,
            pixel_order="C",
            labels=tuple(labels),
            source_format=self.format,
            c_raw_source=c_raw_source,
            companion_video=self.path if series_names else None,
            companion_video_format="nwb" if series_names else None,
            companion_video_dataset=series_names[0] if series_names else None,
        )
        return _finish(ext, path)


def nwb_photon_series_names(path: Path) -> list[str]:
    """Photon series with data in an NWB file (h5py; empty on any problem)."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return nwb_photon_series(handle)
    except Exception:  # noqa: BLE001
        return []


def _reference_dims(ps: Any) -> tuple[int, int] | None:
    refs = getattr(ps, "reference_images", None)
    for ref in refs.values() if hasattr(refs, "values") else refs or []:
        shape = getattr(getattr(ref, "data", None), "shape", ())
        if len(shape) >= 2:
            return (int(shape[-2]), int(shape[-1])) if len(shape) == 3 else (int(shape[0]), int(shape[1]))
    return None


# =========================================================================== choosing


def detect_extraction_format(path: Path) -> str:
    """Return the extraction format of ``path`` from its name and folder contents."""
    path = Path(path)
    require_exists(path, field_name="extraction", what="extraction")
    if path.is_dir():
        if (path / "stat.npy").is_file() or any(
            (p / "stat.npy").is_file() for p in path.iterdir() if p.is_dir() and p.name.startswith("plane")
        ):
            return "suite2p"
        if (path / "A.zarr").is_dir() or (path / "C.zarr").is_dir():
            return "minian_zarr"
        raise InputFormatError(
            "cannot tell the extraction format: the folder holds neither Suite2p (stat.npy) nor Minian (A.zarr) output",
            path=path,
            field="format",
            fix=f"point extraction at the results, or give a 'format' column (one of: {', '.join(EXTRACTION_FORMATS)})",
        )
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return "cnmfe_mat"
    if suffix in {".hdf5", ".h5"}:
        return "caiman_hdf5"
    if suffix == ".nwb":
        return "nwb"
    raise InputFormatError(
        f"cannot tell the extraction format from the file name '{path.name}'",
        path=path,
        field="format",
        fix=f"give a 'format' column in the manifest (one of: {', '.join(EXTRACTION_FORMATS)})",
    )


def normalise_extraction_format(name: str | None, *, path: Path) -> str | None:
    """Canonical extraction format for ``name`` (aliases allowed); ``None`` passes through."""
    if name is None:
        return None
    canonical = _FORMAT_ALIASES.get(name.strip().lower())
    if canonical is None:
        raise InputFormatError(
            f"unknown extraction format '{name}'",
            path=path,
            field="format",
            fix=f"use one of: {', '.join(EXTRACTION_FORMATS)}",
        )
    return canonical


def list_extraction_files(path: Path, *, format: str | None = None) -> list[Path]:  # noqa: A002
    """Every file an extraction reader reads (for hashing), without reading them."""
    path = Path(path)
    name = normalise_extraction_format(format, path=path) or detect_extraction_format(path)
    if name == "minian_zarr" and path.is_dir():
        stores = sorted(p for p in path.iterdir() if p.is_dir() and p.name.endswith(".zarr"))
        return [f for store in stores for f in sorted(store.rglob("*")) if f.is_file()]
    if name == "suite2p" and path.is_dir():
        plane = suite2p_plane(path)
        return [plane / f for f in _SUITE2P_FILES if (plane / f).is_file()]
    return [path]


def open_extraction(path: Path | str, format: str | None = None) -> Any:  # noqa: A002
    """Return the reader for an extraction file or folder.

    Parameters
    ----------
    path
        The extraction file or folder.
    format
        One of :data:`EXTRACTION_FORMATS` (aliases like ``"cnmfe"``, ``"caiman"``,
        ``"minian"`` allowed), or ``None`` to detect it.

    Raises
    ------
    InputFormatError
        Unknown or undetectable format.
    """
    path = Path(path)
    name = normalise_extraction_format(format, path=path)
    if name is None and path.exists():
        name = detect_extraction_format(path)
    elif name is None:  # a missing file: the reader reports it; pick by suffix
        name = {".mat": "cnmfe_mat", ".hdf5": "caiman_hdf5", ".h5": "caiman_hdf5", ".nwb": "nwb"}.get(
            path.suffix.lower()
        )
        if name is None:
            raise InputFormatError(
                f"cannot tell the extraction format from the file name '{path.name}'",
                path=path,
                field="format",
                fix=f"give a 'format' column in the manifest (one of: {', '.join(EXTRACTION_FORMATS)})",
            )
    readers = {
        "cnmfe_mat": CnmfeMatReader,
        "caiman_hdf5": CaimanHdf5Reader,
        "minian_zarr": MinianZarrReader,
        "suite2p": Suite2pReader,
        "nwb": NwbExtractionReader,
    }
    return readers[name](path)

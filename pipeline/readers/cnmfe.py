"""CNMF-E results saved from MATLAB (format ``cnmfe_mat``).

``extraction`` points at a ``.mat`` (v5/v7 or v7.3) holding the ``results`` struct of
``neuron.obj2struct()``, the ``neuron_results`` of ``neuron.save_results()``, the
``Sources2D`` object ``neuron`` that ``neuron.save_workspace()`` writes (decoded with
mat-io), or ``A``/``C`` at the top level.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.readers.base import (
    Extraction,
    as_traces,
    corrupt_file,
    require_exists,
    to_csc,
)
from cellsift.pipeline.readers.checks import finish_extraction
from cellsift.pipeline.readers.matlab import (
    MATLAB_DATA_CLASSES,
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
from cellsift.pipeline.readers.traces import LazyTraces, Traces, zero_traces
from cellsift.schemas import InputFormatError

logger = logging.getLogger(__name__)

__all__ = ["CnmfeMatReader"]

_STRUCT_VARIABLES: Final = ("results", "neuron_results")
_OBJECT_VARIABLES: Final = ("neuron", "obj")
#: Classes of a variable that cannot be a class object (``whosmat`` also says "sparse", "hdf5").
_PLAIN_CLASSES: Final = MATLAB_DATA_CLASSES | {"sparse", "hdf5"}


def _ids_from(value: Any, *, path: Path, name: str = "ids") -> np.ndarray | None:
    """Unit ids stored in the file, or ``None`` when there are none."""
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


def _trace_field(struct: Any, name: str) -> Any:
    """Trace field ``name``: left in a v7.3 file as :class:`LazyTraces` when it is a plain
    numeric matrix (read a block of units at a time), else the loaded value."""
    if isinstance(struct, H5Struct):
        lazy = struct.traces(name)
        if lazy is not None:
            return lazy
    return get_field(struct, name)


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
        """Read, normalise and check the CNMF-E results (column-major ``"F"`` pixels).

        See :meth:`~cellsift.pipeline.readers.base.ExtractionReader.read`;
        :class:`InputFormatError` here means an unreadable file, no recognisable variable,
        missing ``A``/``C``, inconsistent shapes or NaN/Inf values.
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
            raise corrupt_file(self.path, exc, "CNMF-E results") from None

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
            raise corrupt_file(self.path, exc, "MATLAB file") from None

    def _from_struct(self, struct: Any, *, origin: str) -> Extraction:
        A, c_in = self._footprints(struct, origin=origin)
        n_units = A.shape[1]
        C = self._as_traces(c_in, name="C", n_units=n_units)
        C_raw, c_raw_source, S = self._raw_and_spikes(struct, C)
        options = get_field(struct, "options")
        dims, extras = self._frame_size(struct, options, n_pixels=A.shape[0])
        tsub = scalar(get_field(options, "tsub")) or scalar(get_field(struct, "tsub"))
        unit_ids, ids_from_file, unit_vars = self._unit_columns(struct, n_units)
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
        return finish_extraction(ext, self.path)

    def _footprints(self, struct: Any, *, origin: str) -> tuple[sp.csc_matrix, Any]:
        """``A`` as CSC ``(d1*d2, K)`` and the raw ``C`` value, both checked present."""
        path = self.path
        a_raw = get_field(struct, "A")
        c_in = _trace_field(struct, "C")
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
        if A.shape[1] == 0:
            raise InputFormatError(
                "the extraction has no units (A has 0 columns)",
                path=path,
                field="A",
                fix="re-run the extraction; a session needs at least one cell candidate",
            )
        return A, c_in

    def _as_traces(self, value: Any, *, name: str, n_units: int) -> Traces:
        """``value`` as ``(K, T)`` float32: :class:`LazyTraces` stay in the file."""
        if isinstance(value, LazyTraces):
            return value
        return as_traces(value, name=name, n_units=n_units, path=self.path)

    def _raw_and_spikes(self, struct: Any, C: Traces) -> tuple[Traces, str, Traces]:
        """``(C_raw, its source, S)``: a missing ``C_raw`` is ``C``, a missing ``S`` zeros."""
        path, n_units = self.path, C.shape[0]
        c_raw_value = _trace_field(struct, "C_raw")
        if is_empty(c_raw_value):
            logger.info("%s: no C_raw; using C as the raw trace", path)
            C_raw, c_raw_source = C, "C"
        else:
            C_raw, c_raw_source = self._as_traces(c_raw_value, name="C_raw", n_units=n_units), "C_raw"
        s_value = _trace_field(struct, "S")
        if is_empty(s_value):
            logger.warning("%s: no S (deconvolved activity); writing zeros", path)
            S = zero_traces(C, source=path)
        else:
            S = self._as_traces(s_value, name="S", n_units=n_units)
        return C_raw, c_raw_source, S

    def _frame_size(
        self, struct: Any, options: Any, *, n_pixels: int
    ) -> tuple[tuple[int, int] | None, dict[str, np.ndarray]]:
        """Frame size from ``options.d1``/``d2`` (else from ``Cn`` and ``ssub``) and the
        images ``Cn`` / ``PNR`` that match it."""
        path = self.path
        d1 = scalar(get_field(options, "d1"))
        d2 = scalar(get_field(options, "d2"))
        ssub = scalar(get_field(options, "ssub")) or scalar(get_field(struct, "ssub")) or 1.0
        extras: dict[str, np.ndarray] = {}
        cn = get_field(struct, "Cn")
        cn_arr = None
        if not is_empty(cn) and not isinstance(cn, (H5Struct, str)) and np.asarray(cn).dtype.kind in "biuf":
            cn_arr = np.asarray(cn, dtype=np.float32)
        dims = (int(d1), int(d2)) if d1 and d2 else None
        if dims is None and cn_arr is not None and cn_arr.ndim == 2:
            if cn_arr.size == n_pixels:
                dims = (int(cn_arr.shape[0]), int(cn_arr.shape[1]))
            elif ssub > 1 and all(s % int(ssub) == 0 for s in cn_arr.shape):
                sub = (cn_arr.shape[0] // int(ssub), cn_arr.shape[1] // int(ssub))
                if sub[0] * sub[1] == n_pixels:
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
        return dims, extras

    def _unit_columns(self, struct: Any, n_units: int) -> tuple[np.ndarray, bool, dict[str, np.ndarray]]:
        """``(unit ids, whether stored in the file, per-unit columns tags / keep)``."""
        path = self.path
        unit_ids = _ids_from(get_field(struct, "ids"), path=path)
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
        return unit_ids, ids_from_file, unit_vars

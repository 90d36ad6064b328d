"""MATLAB file access for the readers: v5/v7 (scipy), v7.3 (h5py) and class objects (mat-io).

MATLAB writes ``.mat`` files in two container formats:

* v5/v7 (the default of ``save``): read with :func:`scipy.io.loadmat`;
* v7.3 (``save(..., '-v7.3')``): HDF5 with a 512-byte MATLAB header; arrays are stored
  transposed (column-major), sparse matrices as groups ``data``/``ir``/``jc``.

A MATLAB *class object* (CNMF-E's ``Sources2D`` ``neuron`` that ``save_workspace``
writes) is stored in either container as an opaque MCOS reference that neither scipy nor
h5py decode; the ``mat-io`` package does (imported only when such a file is read).

Values come back "squeezed" like ``loadmat(squeeze_me=True)``: 1x1 -> scalar, unit dims
dropped. Structs are wrapped so :func:`get_field` and :func:`field_names` work the same for
all three sources.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any, Final

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.readers.base import one_line
from cellsift.pipeline.readers.traces import LazyTraces, hdf5_traces
from cellsift.schemas import InputFormatError

logger = logging.getLogger(__name__)

__all__ = [
    "MATLAB_DATA_CLASSES",
    "MISSING",
    "is_hdf5",
    "is_matlab_hdf5",
    "mat_variables",
    "load_v5",
    "H5Struct",
    "h5_value",
    "load_mcos_object",
    "get_field",
    "field_names",
    "is_empty",
    "scalar",
    "squeeze",
]


class _Missing:
    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return "MISSING"


#: Marker for a field that is absent (or of a type the readers do not use).
MISSING: Final = _Missing()

#: MATLAB classes that are plain data (anything else in a v7.3 file is an object).
MATLAB_DATA_CLASSES: Final = frozenset(
    "double single logical char struct cell int8 uint8 int16 uint16 int32 uint32 int64 uint64 function_handle".split()
)


def _import_matio() -> Any:
    """Import mat-io quietly (it sets a pandas option that warns on import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import matio
    return matio


def is_hdf5(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file (MATLAB v7.3, CaImAn, NWB, ...)."""
    import h5py

    try:
        return bool(h5py.is_hdf5(str(path)))
    except OSError:
        return False


def is_matlab_hdf5(path: Path) -> bool:
    """Whether ``path`` is a MATLAB v7.3 file (HDF5 with the ``MATLAB 7.3`` header)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(128)
    except OSError:
        return False
    return head.startswith(b"MATLAB 7.3") and is_hdf5(path)


def _attr_text(obj: Any, name: str) -> str:
    value = obj.attrs.get(name)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
        return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    return "" if value is None else str(value)


def mat_variables(path: Path) -> dict[str, str]:
    """Return ``{variable name: MATLAB class}`` of a ``.mat`` file without loading data.

    Raises
    ------
    InputFormatError
        If the file is not a readable MATLAB file.
    """
    if is_hdf5(path):
        import h5py

        try:
            with h5py.File(path, "r") as handle:
                return {
                    name: _attr_text(handle[name], "MATLAB_class") or "hdf5"
                    for name in handle.keys()
                    if not name.startswith("#")
                }
        except Exception as exc:  # noqa: BLE001 - h5py raises OSError/KeyError/RuntimeError
            raise corrupt_mat(path, exc) from None
    import scipy.io

    try:
        return {name: str(cls) for name, _, cls in scipy.io.whosmat(str(path))}
    except Exception as exc:  # noqa: BLE001 - scipy raises many types on corrupt files
        first = exc
    try:  # scipy cannot list class objects (MCOS) of a v5/v7 file; mat-io can
        matio = _import_matio()
        return {name: str(info[1]) for name, info in matio.whosmat(str(path)).items()}
    except Exception:  # noqa: BLE001 - not installed, or the file really is corrupt
        raise corrupt_mat(path, first) from None


def corrupt_mat(path: Path, exc: BaseException) -> InputFormatError:
    """The error for a ``.mat`` file that cannot be decoded."""
    return InputFormatError(
        f"cannot read the MATLAB file ({one_line(exc)})",
        path=path,
        fix="the file is truncated or corrupt, or not a MATLAB file; save the results again",
    )


def load_v5(path: Path, names: list[str] | None) -> dict[str, Any]:
    """Load variables of a v5/v7 ``.mat`` with scipy (structs as attribute objects, squeezed)."""
    import scipy.io

    try:
        return scipy.io.loadmat(str(path), struct_as_record=False, squeeze_me=True, variable_names=names)
    except Exception as exc:  # noqa: BLE001
        raise corrupt_mat(path, exc) from None


#: MATLAB classes of a numeric matrix that can be read a block of rows at a time.
_NUMERIC_CLASSES: Final = frozenset("double single int8 uint8 int16 uint16 int32 uint32 int64 uint64".split())


class H5Struct:
    """Lazy view of a MATLAB struct stored in an HDF5 (v7.3) group; fields load on access."""

    def __init__(self, group: Any) -> None:
        self.group = group

    def fields(self) -> list[str]:
        return [k for k in self.group.keys() if not k.startswith("#")]

    def get(self, name: str) -> Any:
        if name not in self.group:
            return MISSING
        return h5_value(self.group[name])

    def traces(self, name: str) -> LazyTraces | None:
        """Field ``name`` as :class:`LazyTraces` when it is a plain numeric ``K x T`` matrix
        (read a block of units at a time); ``None`` otherwise (read it with :meth:`get`)."""
        if name not in self.group:
            return None
        obj = self.group[name]
        if _attr_text(obj, "MATLAB_class") not in _NUMERIC_CLASSES or "MATLAB_empty" in obj.attrs:
            return None
        return hdf5_traces(obj, transposed=True)  # MATLAB's K x T is stored as (T, K)


def h5_value(obj: Any) -> Any:
    """Convert one HDF5 object written by MATLAB v7.3 to numpy / scipy / :class:`H5Struct`."""
    import h5py

    mclass = _attr_text(obj, "MATLAB_class")
    if isinstance(obj, h5py.Group):
        if "MATLAB_sparse" in obj.attrs:
            n_rows = int(np.asarray(obj.attrs["MATLAB_sparse"]).reshape(()))
            jc = np.asarray(obj["jc"][()], dtype=np.int64).ravel()
            n_cols = len(jc) - 1
            if "data" in obj and "ir" in obj:
                data = np.asarray(obj["data"][()]).ravel()
                ir = np.asarray(obj["ir"][()], dtype=np.int64).ravel()
            else:  # an all-zero sparse matrix has no data/ir
                data = np.zeros(0)
                ir = np.zeros(0, dtype=np.int64)
            return sp.csc_matrix((data, ir, jc), shape=(n_rows, n_cols))
        return H5Struct(obj)
    if "MATLAB_empty" in obj.attrs and bool(np.asarray(obj.attrs["MATLAB_empty"]).any()):
        return np.zeros((0,))
    if mclass == "cell" or obj.dtype.kind == "O" or (mclass and mclass not in MATLAB_DATA_CLASSES):
        return MISSING  # cell arrays and objects are not needed
    value = obj[()]
    if isinstance(value, np.ndarray):
        value = value.T  # MATLAB writes column-major: HDF5 holds the transpose
        if np.iscomplexobj(value) or value.dtype.names:
            return MISSING
    if mclass == "char":
        return "".join(chr(c) for c in np.asarray(value).ravel(order="F"))
    return squeeze(value)


def squeeze(value: Any) -> Any:
    """Mimic ``scipy.io.loadmat(squeeze_me=True)``: drop unit dims, 1x1 -> scalar."""
    if isinstance(value, np.ndarray) and value.dtype.names is None:
        value = value.squeeze()
        if value.ndim == 0:
            return value.item()
    return value


def load_mcos_object(path: Path, name: str) -> dict[str, Any]:
    """Decode the MATLAB class object ``name`` with mat-io; return its properties.

    Raises
    ------
    InputFormatError
        mat-io is not installed, or the object cannot be decoded.
    """
    try:
        matio = _import_matio()
    except ImportError:
        raise InputFormatError(
            f"variable '{name}' is a MATLAB class object, which needs the mat-io package to read",
            path=path,
            field=name,
            fix="pip install mat-io (or save 'results = neuron.obj2struct()' in MATLAB instead)",
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = matio.load_from_mat(str(path), variable_names=[name])
    except Exception as exc:  # noqa: BLE001 - mat-io raises many types on corrupt files
        raise corrupt_mat(path, exc) from None
    obj = loaded.get(name)
    props = getattr(obj, "properties", None)
    if isinstance(props, np.ndarray) and props.dtype.kind == "O" and props.size == 1:
        props = props.reshape(()).item()
    if not isinstance(props, dict):
        raise InputFormatError(
            f"variable '{name}' could not be decoded as a MATLAB object (got {type(obj).__name__})",
            path=path,
            field=name,
            fix="save 'results = neuron.obj2struct()' in MATLAB and give that file",
        )
    logger.debug(
        "%s: decoded %s object '%s' with %d properties",
        path,
        getattr(obj, "classname", "?"),
        name,
        len(props),
    )
    return props


def _record_field(record: np.ndarray, name: str) -> Any:
    """Field of a numpy structured array as mat-io returns MATLAB structs."""
    value = record[name]
    if isinstance(value, np.ndarray) and value.dtype.kind == "O" and value.size == 1:
        value = value.reshape(-1)[0]
    return squeeze(value) if isinstance(value, np.ndarray) else value


def get_field(struct: Any, name: str) -> Any:
    """Field ``name`` of a MATLAB struct (scipy ``mat_struct``, dict, :class:`H5Struct` or a
    numpy structured array from mat-io); :data:`MISSING` if absent."""
    if struct is None or struct is MISSING:
        return MISSING
    if isinstance(struct, H5Struct):
        return struct.get(name)
    if isinstance(struct, dict):
        value = struct.get(name, MISSING)
        return squeeze(value) if isinstance(value, np.ndarray) else value
    if isinstance(struct, np.ndarray) and struct.dtype.names is not None:
        if name not in struct.dtype.names or struct.size == 0:
            return MISSING
        return _record_field(struct.reshape(-1)[0], name) if struct.ndim else _record_field(struct, name)
    return getattr(struct, name, MISSING)


def field_names(struct: Any) -> list[str]:
    """Names of the fields of a MATLAB struct (any of the forms :func:`get_field` takes)."""
    if isinstance(struct, H5Struct):
        return struct.fields()
    if isinstance(struct, dict):
        return [k for k in struct if not str(k).startswith("__")]
    if isinstance(struct, np.ndarray) and struct.dtype.names is not None:
        return list(struct.dtype.names)
    return list(getattr(struct, "_fieldnames", []) or [])


def is_empty(value: Any) -> bool:
    """Whether a MATLAB value is absent or empty (``[]``, ``''``, 0 x 0 sparse)."""
    if value is MISSING or value is None:
        return True
    if sp.issparse(value):
        return value.shape[0] == 0 or value.shape[1] == 0
    if isinstance(value, np.ndarray):
        return value.size == 0
    if isinstance(value, str):
        return value == ""
    return False


def scalar(value: Any) -> float | None:
    """A finite scalar from a MATLAB value, or ``None``."""
    if is_empty(value) or isinstance(value, (H5Struct, str)):
        return None
    try:
        arr = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None
    if arr.size != 1 or not math.isfinite(arr[0]):
        return None
    return float(arr[0])

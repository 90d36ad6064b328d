"""Suite2p output: a plane folder (format ``suite2p``) and its ``data.bin`` (``suite2p_bin``).

A plane folder (``suite2p/plane0``) holds ``stat.npy``, ``F.npy``, ``Fneu.npy``,
``spks.npy``, ``iscell.npy`` and ``ops.npy``, and the registered movie ``data.bin``
(int16 ``(T, Ly, Lx)``), which is the extraction's own (companion) video.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline._util import natural_key
from cellsift.pipeline.readers.base import (
    Extraction,
    UnitLabels,
    as_traces,
    blocks_from_array,
    finite_positive,
    one_line,
    require_exists,
    require_folder,
)
from cellsift.pipeline.readers.checks import finish_extraction
from cellsift.schemas import InputFormatError, SessionNotFoundError

logger = logging.getLogger(__name__)

__all__ = [
    "SUITE2P_FILES",
    "Suite2pReader",
    "Suite2pBinReader",
    "is_suite2p_bin_folder",
    "is_suite2p_output",
    "list_suite2p_bin_files",
    "list_suite2p_files",
    "read_suite2p_ops",
    "suite2p_companion_files",
    "suite2p_plane",
]

#: Files of a plane folder the extraction reader reads (in hashing order).
SUITE2P_FILES: Final = ("stat.npy", "F.npy", "Fneu.npy", "spks.npy", "iscell.npy", "ops.npy")


# =========================================================================== finding the files


def is_suite2p_output(folder: Path) -> bool:
    """Whether ``folder`` is a Suite2p plane folder or holds ``plane*/`` folders with ``stat.npy``."""
    return (folder / "stat.npy").is_file() or any(
        (p / "stat.npy").is_file() for p in folder.iterdir() if p.is_dir() and p.name.startswith("plane")
    )


def is_suite2p_bin_folder(folder: Path) -> bool:
    """Whether ``folder`` holds Suite2p's ``data.bin`` with its ``ops.npy``."""
    return (folder / "data.bin").is_file() and (folder / "ops.npy").is_file()


def suite2p_plane(path: Path) -> Path:
    """The plane folder of a Suite2p output (``plane0`` when given ``suite2p/``).

    Raises
    ------
    InputFormatError
        No ``stat.npy`` and no ``plane*/`` folder, or several planes.
    """
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


def list_suite2p_files(path: Path) -> list[Path]:
    """The plane folder's files of :data:`SUITE2P_FILES` that exist (``[path]`` for a file)."""
    if not path.is_dir():
        return [path]
    plane = suite2p_plane(path)
    return [plane / f for f in SUITE2P_FILES if (plane / f).is_file()]


def suite2p_companion_files(path: Path) -> list[Path]:
    """The plane's ``data.bin`` if it exists: the files of the extraction's own video."""
    if not path.is_dir():
        return []
    binary = suite2p_plane(path) / "data.bin"
    return [binary] if binary.is_file() else []


def list_suite2p_bin_files(path: Path) -> list[Path]:
    """``[data.bin, ops.npy]`` of a ``data.bin`` or its plane folder."""
    require_exists(path, field_name="video", what="video")
    binary = path / "data.bin" if path.is_dir() else path
    return [binary, binary.parent / "ops.npy"]


def read_suite2p_ops(path: Path) -> dict[str, Any]:
    """Load Suite2p's ``ops.npy`` (a pickled dict) with a clear error if it is broken."""
    try:
        ops = np.load(path, allow_pickle=True)
        ops = ops.item() if isinstance(ops, np.ndarray) and ops.dtype.kind == "O" and ops.size == 1 else ops
    except Exception as exc:  # noqa: BLE001 - pickle/np.load raise many types
        raise InputFormatError(
            f"cannot read Suite2p's ops ({one_line(exc)})",
            path=path,
            fix="the file is truncated or corrupt; copy the plane folder again",
        ) from None
    if not isinstance(ops, dict):
        raise InputFormatError("ops.npy does not hold a dict", path=path, fix="copy the plane folder again")
    return ops


# =========================================================================== extraction


def _companion_video(plane: Path, ops: dict[str, Any]) -> Path | None:
    """The plane's ``data.bin``, else ``ops['reg_file']`` if that file exists, else ``None``."""
    binary = plane / "data.bin"
    if binary.is_file():
        return binary
    reg = ops.get("reg_file")
    return Path(str(reg)) if reg and Path(str(reg)).is_file() else None


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
        """Read and check the plane folder (row-major ``"C"`` pixels).

        See :meth:`~cellsift.pipeline.readers.base.ExtractionReader.read`.
        """
        require_folder(self.path, expected="a Suite2p plane folder", fix="point extraction at suite2p/plane0")
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
        A = self._footprints(plane, stat, ly, lx)
        F = as_traces(F, name="F", n_units=n_units, path=plane / "F.npy")
        C_raw, c_raw_source, S = self._traces(plane, F, float(ops.get("neucoeff", 0.7)))
        unit_ids = np.arange(n_units, dtype=np.int64)
        labels, unit_vars = self._iscell(plane, unit_ids)
        companion = _companion_video(plane, ops)
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
            labels=labels,
            source_format=self.format,
            c_raw_source=c_raw_source,
            companion_video=companion,
            companion_video_format="suite2p_bin" if companion is not None else None,
            ids_from_file=False,
        )
        return finish_extraction(ext, plane)

    def _footprints(self, plane: Path, stat: Any, ly: int, lx: int) -> sp.csc_matrix:
        """ROI pixel lists of ``stat.npy`` as CSC ``(Ly*Lx, K)`` float32, row-major pixels."""
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
        return sp.csc_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(ly * lx, len(stat)),
            dtype=np.float32,
        )

    def _traces(self, plane: Path, F: np.ndarray, neucoeff: float) -> tuple[np.ndarray, str, np.ndarray]:
        """``(C_raw = F - neucoeff*Fneu, its source, S = spks)``."""
        n_units = F.shape[0]
        fneu_file = plane / "Fneu.npy"
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
        return C_raw, c_raw_source, S

    def _iscell(
        self, plane: Path, unit_ids: np.ndarray
    ) -> tuple[tuple[UnitLabels, ...], dict[str, np.ndarray]]:
        """Labels of ``iscell.npy`` (source ``suite2p_iscell``) and its probability column."""
        labels: list[UnitLabels] = []
        unit_vars: dict[str, np.ndarray] = {}
        n_units = len(unit_ids)
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
        return tuple(labels), unit_vars


# =========================================================================== video


class Suite2pBinReader:
    """Suite2p's registered binary movie ``data.bin`` (int16 ``(T, Ly, Lx)``), memory-mapped.

    Parameters
    ----------
    path
        ``data.bin`` or the plane folder holding it; ``ops.npy`` must sit beside it
        (frame size ``Ly``/``Lx``, frame rate ``fs``).
    """

    format: str = "suite2p_bin"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        require_exists(self.path, field_name="video", what="video")
        binary = self.path / "data.bin" if self.path.is_dir() else self.path
        ops_path = binary.parent / "ops.npy"
        if not binary.is_file():
            raise SessionNotFoundError(
                "no data.bin in the plane folder", path=binary, field="video", fix="check the video path"
            )
        if not ops_path.is_file():
            raise InputFormatError(
                "no ops.npy beside data.bin (it gives the frame size)",
                path=binary.parent,
                field="video",
                fix="keep data.bin in its Suite2p plane folder with ops.npy",
            )
        ops = read_suite2p_ops(ops_path)
        try:
            self.height, self.width = int(ops["Ly"]), int(ops["Lx"])
        except (KeyError, TypeError, ValueError):
            raise InputFormatError(
                "ops.npy has no Ly/Lx", path=ops_path, field="Ly", fix="copy the plane folder again"
            ) from None
        self.binary = binary
        self.files: tuple[Path, ...] = (binary, ops_path)
        self.dtype: np.dtype = np.dtype(np.int16)
        frame_bytes = self.height * self.width * self.dtype.itemsize
        size = binary.stat().st_size
        if size == 0 or size % frame_bytes:
            raise InputFormatError(
                f"data.bin holds {size} bytes, not a whole number of {self.height}x{self.width} int16 frames: truncated",
                path=binary,
                field="video",
                fix="copy data.bin again (or re-run Suite2p registration)",
            )
        self.n_frames = size // frame_bytes
        expected = ops.get("nframes")
        if expected is not None and int(expected) != self.n_frames:
            raise InputFormatError(
                f"data.bin holds {self.n_frames} frames but ops.npy says nframes = {int(expected)}: truncated or from another run",
                path=binary,
                field="video",
                fix="copy data.bin and ops.npy of the same Suite2p run",
            )
        self.fps = finite_positive(ops.get("fs"))
        self.timestamps_s: np.ndarray | None = None

    def iter_blocks(self, n_frames: int) -> Iterator[np.ndarray]:
        """Yield blocks of at most ``n_frames`` frames ``(n, Ly, Lx)`` int16 from the memory map."""
        frames = np.memmap(
            self.binary, dtype=self.dtype, mode="r", shape=(self.n_frames, self.height, self.width)
        )
        try:
            yield from blocks_from_array(frames, n_frames)
        finally:
            del frames

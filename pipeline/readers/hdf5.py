"""Movies in HDF5 or MATLAB files (format ``hdf5``): a 3-D dataset ``Y``, ``mov``, ...

HDF5 written by Python holds ``(frames, height, width)``; MATLAB's ``d1 x d2 x T`` movie
is transposed back (v7.3) or read whole with scipy (v5, which cannot be streamed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

import numpy as np

from cellsift.pipeline.readers.base import (
    blocks_from_array,
    corrupt_file,
    finite_positive,
    frame_dtype,
    require_exists,
    require_numeric,
)
from cellsift.pipeline.readers.matlab import corrupt_mat, is_hdf5, is_matlab_hdf5, load_v5
from cellsift.schemas import InputFormatError

__all__ = ["HDF5_VIDEO_DATASETS", "Hdf5VideoReader"]

#: Dataset names tried, in order, in an HDF5 / .mat video.
HDF5_VIDEO_DATASETS: Final = ("Y", "mov", "Yr", "data", "images", "movie")


class Hdf5VideoReader:
    """A movie stored as a 3-D dataset in an HDF5 file or a MATLAB ``.mat``.

    HDF5 written by Python holds ``(frames, height, width)``. MATLAB's ``Y`` is
    ``d1 x d2 x T``; a v7.3 file stores it transposed (``(T, d2, d1)``), so its frames
    are transposed back; a v5 ``.mat`` is read whole with scipy (it cannot be streamed).

    Parameters
    ----------
    path
        ``.h5``/``.hdf5``/``.mat`` file.
    dataset
        Dataset (HDF5 path) or variable name; default: the first of ``Y``, ``mov``,
        ``Yr``, ``data``, ``images``, ``movie`` that exists.
    """

    format: str = "hdf5"

    def __init__(self, path: Path | str, dataset: str | None = None) -> None:
        self.path = Path(path)
        require_exists(self.path, field_name="video", what="video")
        self.files: tuple[Path, ...] = (self.path,)
        self.fps: float | None = None
        self.timestamps_s: np.ndarray | None = None
        self.dataset = ""
        self.dtype: np.dtype = np.dtype(np.float32)
        self.n_frames = self.height = self.width = 0
        self._v5 = not is_hdf5(self.path)
        self._v5_names: list[str] = []
        self._matlab = False
        if self._v5:
            if self.path.suffix.lower() != ".mat":
                raise InputFormatError(
                    "the file is neither HDF5 nor a MATLAB .mat",
                    path=self.path,
                    field="video",
                    fix="give an HDF5 / .mat movie, or set video_format",
                )
            self._init_v5(dataset)
        else:
            self._init_h5(dataset)
        require_numeric(
            self.dtype,
            problem=f"dataset '{self.dataset}' has dtype {self.dtype}, expected numbers",
            path=self.path,
            field_name="video_dataset",
            fix="point video_dataset at the movie",
        )
        self.dtype = frame_dtype(self.dtype)

    def _corrupt(self, exc: Exception) -> InputFormatError:
        """The error for an HDF5 movie that h5py cannot read."""
        return corrupt_file(self.path, exc, "HDF5 movie", field_name="video", again="write it again")

    def _pick(self, available: dict[str, tuple[int, ...]], dataset: str | None) -> str:
        if dataset is not None:
            name = dataset.strip("/")
            three_d = ", ".join(sorted(k for k, s in available.items() if len(s) == 3)) or "none"
            if name not in available:
                raise InputFormatError(
                    f"no dataset '{dataset}' (3-D datasets: {three_d})",
                    path=self.path,
                    field="video_dataset",
                    fix="set video_dataset in the manifest to the movie's dataset",
                )
            if len(available[name]) != 3:
                raise InputFormatError(
                    f"dataset '{name}' has shape {available[name]}, expected 3 dimensions (3-D datasets: {three_d})",
                    path=self.path,
                    field="video_dataset",
                    fix="point video_dataset at the movie",
                )
            return name
        for name in HDF5_VIDEO_DATASETS:
            if name in available and len(available[name]) == 3:
                return name
        raise InputFormatError(
            f"no movie dataset ({', '.join(HDF5_VIDEO_DATASETS)}); 3-D datasets: "
            f"{', '.join(sorted(k for k, s in available.items() if len(s) == 3)) or 'none'}",
            path=self.path,
            field="video_dataset",
            fix="set video_dataset in the manifest to the movie's dataset",
        )

    def _init_h5(self, dataset: str | None) -> None:
        import h5py

        try:
            with h5py.File(self.path, "r") as handle:
                available: dict[str, tuple[int, ...]] = {}
                handle.visititems(
                    lambda name, obj: (
                        available.__setitem__(name, tuple(obj.shape))
                        if isinstance(obj, h5py.Dataset)
                        else None
                    )
                )
                self.dataset = self._pick(available, dataset)
                ds = handle[self.dataset]
                shape = tuple(int(s) for s in ds.shape)
                self.dtype = np.dtype(ds.dtype)
                self._matlab = "MATLAB_class" in ds.attrs or is_matlab_hdf5(self.path)
                rate = ds.attrs.get("fps", ds.attrs.get("fr"))
                self.fps = finite_positive(rate) if rate is not None else None
        except InputFormatError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._corrupt(exc) from None
        if len(shape) != 3:
            raise InputFormatError(
                f"dataset '{self.dataset}' has shape {shape}, expected 3 dimensions (frames, height, width)",
                path=self.path,
                field="video_dataset",
                fix="point video_dataset at the movie",
            )
        self.n_frames = shape[0]
        # MATLAB v7.3: Y (d1, d2, T) is stored as (T, d2, d1)
        self.height, self.width = (shape[2], shape[1]) if self._matlab else (shape[1], shape[2])

    def _init_v5(self, dataset: str | None) -> None:
        import scipy.io

        try:
            listing = scipy.io.whosmat(str(self.path))
        except Exception as exc:  # noqa: BLE001 - scipy raises many types on corrupt files
            raise corrupt_mat(self.path, exc) from None
        shapes = {name: tuple(int(s) for s in shape) for name, shape, _ in listing}
        self.dataset = self._pick(shapes, dataset)
        d1, d2, t = shapes[self.dataset]
        self.height, self.width, self.n_frames = d1, d2, t
        self._v5_names = [self.dataset]
        classes = {"uint8": np.uint8, "uint16": np.uint16, "int16": np.int16, "single": np.float32}
        mat_class = next(cls for name, _, cls in listing if name == self.dataset)
        self.dtype = np.dtype(classes.get(mat_class, np.float32))
        self._matlab = True

    def iter_blocks(self, n_frames: int) -> Iterator[np.ndarray]:
        """Yield blocks of at most ``n_frames`` frames."""
        if self._v5:
            movie = np.asarray(load_v5(self.path, self._v5_names)[self.dataset])
            if movie.ndim != 3:
                raise InputFormatError(
                    f"'{self.dataset}' is not 3-D",
                    path=self.path,
                    field="video_dataset",
                    fix="check the file",
                )
            frames = np.moveaxis(movie, 2, 0)  # (d1, d2, T) -> (T, d1, d2)
            yield from blocks_from_array(frames, n_frames, convert=lambda b: b.astype(self.dtype, copy=False))
            return
        import h5py

        try:
            with h5py.File(self.path, "r") as handle:
                ds = handle[self.dataset]
                convert = (
                    (lambda b: np.ascontiguousarray(b.transpose(0, 2, 1)).astype(self.dtype, copy=False))
                    if self._matlab
                    else (lambda b: b.astype(self.dtype, copy=False))
                )
                yield from blocks_from_array(ds, n_frames, convert=convert)
        except InputFormatError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._corrupt(exc) from None

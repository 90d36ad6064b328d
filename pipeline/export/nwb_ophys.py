"""The imaging part of an exported NWB file: video, segmentation, traces, summary images.

Large arrays (the movie, the footprints, the traces) are streamed from the session store
into HDF5 block by block (hdmf ``DataChunkIterator`` wrapped in a gzip ``H5DataIO``), so
memory stays bounded by one block whatever the session's length.

Names follow what cellsift's own NWB reader (and readers that take the first
``RoiResponseSeries`` of a segmentation as the raw trace) expect: the raw trace is
``Fluorescence/C_raw``; ``S`` is in a ``Fluorescence`` container named ``Deconvolved``;
ΔF/F is the standard ``DfOverF`` container (series ``dff``); the reader takes the raw trace
from ``Fluorescence`` whenever there is one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np

from cellsift.pipeline.export.nwb_columns import cell_columns
from cellsift.pipeline.export.nwb_inputs import SessionSource
from cellsift.schemas import CellsiftError

logger = logging.getLogger(__name__)

__all__ = [
    "BLOCK_BYTES",
    "VIDEO_MODES",
    "FrameClock",
    "add_segmentation",
    "add_summary_images",
    "add_traces",
    "add_video",
    "streamed",
]

VIDEO_MODES: Final = ("link", "copy", "none")
#: Bytes read from the session store per block when streaming an array into the file.
BLOCK_BYTES: Final = 64 << 20
#: Target size of one HDF5 chunk (bytes).
CHUNK_BYTES: Final = 1 << 20
DFF_CONTAINER: Final = "DfOverF"


class FrameClock:
    """Timing arguments of the series sampled at the session's frames.

    Regular frame times become ``starting_time`` and ``rate``; irregular ones are written
    once as ``timestamps`` and every later series links to that first one.
    """

    def __init__(self, time_s: np.ndarray, fps: float) -> None:
        self.time_s = np.asarray(time_s, dtype=np.float64)
        diffs = np.unique(np.round(np.diff(self.time_s), 9))  # nwbinspector's test of regularity
        self.regular = bool(diffs.size == 1 and diffs[0] > 0)
        span = float(self.time_s[-1] - self.time_s[0]) if self.time_s.size else 0.0
        self.rate = (self.time_s.size - 1) / span if self.regular else float(fps)
        self._first: Any = None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a ``TimeSeries`` sampled at every frame."""
        if self.regular:
            return {"starting_time": float(self.time_s[0]), "rate": self.rate}
        return {"timestamps": self._first if self._first is not None else self.time_s}

    def used_by(self, series: Any) -> Any:
        """Remember ``series`` as the holder of the timestamps (the first one); return it."""
        if not self.regular and self._first is None:
            self._first = series
        return series


def streamed(
    read: Callable[[int, int], np.ndarray],
    n: int,
    rest: tuple[int, ...],
    dtype: np.dtype,
    *,
    compress: bool = True,
) -> Any:
    """An ``H5DataIO`` that writes ``n`` rows of shape ``rest`` by calling ``read(start, stop)``.

    Parameters
    ----------
    read
        Returns rows ``[start, stop)`` as an array ``(stop - start, *rest)``.
    n
        Number of rows.
    rest
        Shape of one row.
    dtype
        Dtype of the written dataset.
    compress
        gzip the dataset.
    """
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.data_utils import DataChunkIterator

    row_bytes = max(1, int(np.prod(rest, dtype=np.int64)) * np.dtype(dtype).itemsize)
    block = max(1, min(n, BLOCK_BYTES // row_bytes))
    chunk_rows = max(1, min(n, CHUNK_BYTES // row_bytes))

    def rows() -> Iterator[np.ndarray]:
        for start in range(0, n, block):
            values = np.asarray(read(start, min(n, start + block)), dtype=dtype)
            yield from values

    iterator = DataChunkIterator(data=rows(), maxshape=(n, *rest), dtype=np.dtype(dtype), buffer_size=block)
    options: dict[str, Any] = {"chunks": (chunk_rows, *rest)}
    if compress:
        options.update(compression="gzip", compression_opts=4)
    return H5DataIO(iterator, **options)


# --------------------------------------------------------------------------- video


def _linkable_files(source: SessionSource) -> tuple[list[Path], list[int]] | str:
    """The original video's files and their frame counts, or why they cannot be linked."""
    from cellsift.pipeline.readers import open_video

    path = str(source.attrs.get("source_video") or "")
    fmt = str(source.attrs.get("video_format") or "") or None
    if not path:
        return "the session has no source video"
    if not Path(path).exists():
        return f"the source video {path} is gone"
    try:
        reader: Any = open_video(path, format=fmt)
    except CellsiftError as exc:  # a changed or broken source video must not cost the ROIs
        return f"the source video cannot be opened ({exc.one_line()})"
    files = getattr(reader, "chunks", None) or reader.files
    counts = getattr(reader, "chunk_frames", None) or getattr(reader, "part_frames", None)
    if reader.format not in ("miniscope_avi", "tiff") or counts is None or len(counts) != len(files):
        return f"a {reader.format} video cannot be linked as external files (use video='copy')"
    return [Path(f) for f in files], [int(c) for c in counts]


def _relative(path: Path, folder: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive (Windows): only an absolute path can reach it
        return path.resolve().as_posix()


def _link_series(source: SessionSource, plane: Any, out_dir: Path, clock: FrameClock) -> tuple[Any, str]:
    from pynwb.ophys import OnePhotonSeries

    found = _linkable_files(source)
    if isinstance(found, str):
        return None, f"video not linked: {found}"
    files, counts = found
    total = sum(counts)
    ratio = int(source.attrs.get("temporal_downsample") or 1)
    downsampled_movie = source.attrs.get("downsampled") == "movie" and ratio > 1
    if total == source.n_frames and not downsampled_movie:
        timing = clock.kwargs()
        note = "frame times as the traces"
    elif downsampled_movie and total == int(source.attrs.get("source_video_frames") or -1):
        timing = {"starting_time": 0.0, "rate": source.fps * ratio}
        note = f"full-rate video; the lake stores {ratio}-frame averages"
    else:
        return None, f"video not linked: it has {total} frames, the session store {source.n_frames}"
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    height, width = source.frame_size
    series = OnePhotonSeries(
        name="OnePhotonSeries",
        imaging_plane=plane,
        external_file=[_relative(f, out_dir) for f in files],
        starting_frame=[int(s) for s in starts],
        format="external",
        dimension=[height, width],
        num_samples=int(total),
        unit="n.a.",
        description=f"The original miniscope recording, linked as external file(s) ({note}); paths are "
        "relative to this file.",
        **timing,
    )
    return clock.used_by(series) if "timestamps" in timing else series, ""


def _copy_series(source: SessionSource, plane: Any, clock: FrameClock) -> tuple[Any, str]:
    from pynwb.ophys import OnePhotonSeries

    if "movie" not in source.group:
        return None, "video not copied: the session store has no movie"
    movie = source.group["movie"]
    shape = tuple(int(s) for s in movie.shape)
    data = streamed(lambda a, b: movie[a:b], shape[0], shape[1:], np.dtype(movie.dtype))
    series = OnePhotonSeries(
        name="OnePhotonSeries",
        imaging_plane=plane,
        data=data,
        unit=str(dict(movie.attrs).get("units") or "n.a."),
        description="The session's movie as stored in the cellsift lake (frame, height, width).",
        **clock.kwargs(),
    )
    return clock.used_by(series), ""


def add_video(
    nwbfile: Any, plane: Any, source: SessionSource, *, mode: str, out_dir: Path, clock: FrameClock
) -> tuple[str, list[str]]:
    """Add the session's video as ``/acquisition/OnePhotonSeries``.

    Parameters
    ----------
    nwbfile, plane
        The file being built and its imaging plane.
    source
        The open session.
    mode
        ``"link"`` (external links to the original video files, with starting frames),
        ``"copy"`` (the stored movie, streamed in blocks) or ``"none"``.
    out_dir
        Folder of the NWB file (external paths are relative to it).
    clock
        Timing of the session's frames.

    Returns
    -------
    (str, list of str)
        The mode actually written (``"none"`` when it was impossible) and warnings.
    """
    if mode == "none":
        return "none", []
    if mode == "link":
        series, warning = _link_series(source, plane, out_dir, clock)
    else:
        series, warning = _copy_series(source, plane, clock)
    if series is None:
        return "none", [warning]
    nwbfile.add_acquisition(series)
    return mode, []


# --------------------------------------------------------------------------- ROIs and traces


def add_segmentation(module: Any, plane: Any, source: SessionSource, cells: Any) -> Any:
    """Add ``ImageSegmentation/PlaneSegmentation``: image masks from ``A`` and the ``cells`` columns.

    Parameters
    ----------
    module
        The ``ophys`` processing module.
    plane
        The imaging plane.
    source
        The open session; ROI ids are its unit ids.
    cells
        The session's ``cells`` rows (``None`` or empty: masks only).

    Returns
    -------
    pynwb.ophys.PlaneSegmentation
    """
    from hdmf.common import ElementIdentifiers, VectorData
    from pynwb.ophys import ImageSegmentation, PlaneSegmentation

    footprints = source.group["A"]
    height, width = source.frame_size
    masks = streamed(lambda a, b: footprints[a:b], source.n_units, (height, width), np.dtype(np.float32))
    columns = [
        VectorData(
            name="image_mask",
            description="Spatial footprint (weights) of each ROI, (ROI, height, width) as the movie frames.",
            data=masks,
        )
    ]
    omitted: list[str] = []
    if cells is not None and len(cells):
        found, omitted = cell_columns(cells, source.unit_ids)
        columns += [VectorData(name=c.name, description=c.description, data=c.data) for c in found]
    description = (
        "Cell candidates of the session's extraction (ROI id = cellsift unit_id) with cellsift's "
        "quality features and classification."
    )
    if cells is None or not len(cells):
        description += " No current cells table: run 'cellsift run' for features and labels."
    elif omitted:
        description += f" Columns without any value were left out: {', '.join(omitted)}."
    ps = PlaneSegmentation(
        name="PlaneSegmentation",
        description=description,
        imaging_plane=plane,
        id=ElementIdentifiers(name="id", data=source.unit_ids.astype(np.int64)),
        columns=columns,
    )
    module.add(ImageSegmentation(name="ImageSegmentation", plane_segmentations=[ps]))
    return ps


def _trace_data(source: SessionSource, name: str) -> Any:
    array = source.group[name]
    return streamed(
        lambda a, b: np.asarray(array[:, a:b]).T, source.n_frames, (source.n_units,), np.dtype(np.float32)
    )


def add_traces(
    module: Any, ps: Any, source: SessionSource, dff: tuple[np.ndarray, np.ndarray] | None, clock: FrameClock
) -> None:
    """Add ``Fluorescence/C_raw``, ``Deconvolved/S`` and (if given) ``dff/dff`` (time x ROI).

    Parameters
    ----------
    module
        The ``ophys`` processing module.
    ps
        The ``PlaneSegmentation`` the series reference.
    source
        The open session.
    dff
        ``(matrix (frame, unit), unit positions)`` from the ``traces`` table, or ``None``.
    clock
        Timing of the session's frames.
    """
    from pynwb.ophys import DfOverF, Fluorescence

    every = list(range(source.n_units))
    raw = Fluorescence(name="Fluorescence")
    module.add(raw)  # in the file before its series, so their ROI regions share an ancestor
    clock.used_by(
        raw.create_roi_response_series(
            name="C_raw",
            data=_trace_data(source, "C_raw"),
            rois=ps.create_roi_table_region(region=every, description="every ROI"),
            unit="a.u.",
            description=f"Raw fluorescence trace of each ROI (extraction's {source.attrs.get('c_raw_source') or 'C_raw'}, "
            "before denoising), in extraction units.",
            **clock.kwargs(),
        )
    )
    deconvolved = Fluorescence(name="Deconvolved")
    module.add(deconvolved)
    deconvolved.create_roi_response_series(
        name="S",
        data=_trace_data(source, "S"),
        rois=ps.create_roi_table_region(region=every, description="every ROI"),
        unit="a.u.",
        description="Deconvolved activity S of each ROI (spike-rate proxy, extraction units).",
        **clock.kwargs(),
    )
    if dff is None:
        return
    matrix, present = dff
    container = DfOverF(name=DFF_CONTAINER)
    module.add(container)
    container.create_roi_response_series(
        name="dff",
        data=_array_io(matrix),
        rois=ps.create_roi_table_region(region=[int(i) for i in present], description="ROIs with dF/F"),
        unit="n.a.",
        description="dF/F of each ROI from the lake's traces table: (C_raw - F0(t)) / F_ref, "
        "see cellsift docs/analysis.md (dimensionless).",
        **clock.kwargs(),
    )


def _array_io(values: np.ndarray) -> Any:
    from hdmf.backends.hdf5 import H5DataIO

    row_bytes = max(1, values.shape[1] * values.itemsize) if values.ndim == 2 else values.itemsize
    rows = max(1, min(values.shape[0], CHUNK_BYTES // row_bytes))
    return H5DataIO(values, compression="gzip", compression_opts=4, chunks=(rows, *values.shape[1:]))


def add_summary_images(module: Any, source: SessionSource) -> None:
    """Add the store's summary images (``max_proj``, ``Cn``, ``PNR``) as ``Images/SummaryImages``."""
    from pynwb.base import Images
    from pynwb.image import GrayscaleImage

    docs = {
        "max_proj": "maximum projection of the movie (camera counts)",
        "Cn": "local correlation image of the extraction",
        "PNR": "peak-to-noise ratio image of the extraction",
    }
    images = [
        GrayscaleImage(name=name, data=np.asarray(source.group[name][:]), description=doc)
        for name, doc in docs.items()
        if name in source.group and len(source.group[name].shape) == 2
    ]
    if images:
        module.add(Images(name="SummaryImages", images=images, description="Summary images of the session."))

"""Writing a session dataset: the zarr store of one session, and its labels table.

:func:`write_session_store` writes ``LAKE/tmp/<uuid>.zarr``. The movie is decoded on a
thread of its own from the moment the write starts (PyAV releases the GIL while it
decodes), while this thread creates the store, writes the traces (a block of units at a
time, read lazily from v7.3/HDF5/zarr files) and the footprints (32 units at a time),
then compresses and writes the movie chunk by chunk as the decoder hands them over; the
max projection and the frames at the strongest cells' peaks (for the orientation check:
transposed or row/column-major mix-ups) are taken on the decoding thread. At most a few
chunks of frames and one block of units are in memory at a time, whatever the session's
length. The store is then read back and checked as a valid session dataset, and moved to
its final place in one rename.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from cellsift.catalog import publish_dir, staging_path
from cellsift.pipeline.ingest.inputs import SessionInputs
from cellsift.pipeline.ingest.streaming import MovieFeed
from cellsift.pipeline.readers import (
    Extraction,
    PeakFrameCheck,
    UnitLabels,
    check_orientation,
    image_orientation_scores,
    iter_unit_blocks,
    labels_rows,
)
from cellsift.schemas import (
    FRAME,
    HEIGHT,
    LABELS_SCHEMA,
    UNIT_ID,
    WIDTH,
    InputFormatError,
    validate_session_dataset,
)

if TYPE_CHECKING:
    import xarray as xr
    import zarr

__all__ = [
    "MOVIE_ZSTD_LEVEL",
    "TRACE_CHUNK_FRAMES",
    "UNITS_PER_CHUNK",
    "aligned_blocks",
    "footprint_block",
    "labels_table",
    "write_session_store",
]

#: Footprints are chunked (and written) this many units at a time.
UNITS_PER_CHUNK: Final = 32
#: Trace chunks span at most this many frames.
TRACE_CHUNK_FRAMES: Final = 65536
#: zstd level of the movie: on noisy 8-bit movies as small as level 3 and ~3x faster.
MOVIE_ZSTD_LEVEL: Final = 1
#: Dataset variable names extraction images and per-unit columns must not take.
_RESERVED: Final = frozenset(
    {"movie", "A", "C", "C_raw", "S", "max_proj", FRAME, UNIT_ID, HEIGHT, WIDTH, "time_s"}
)


def write_session_store(
    tmp_root: Path,
    final: Path,
    *,
    inputs: SessionInputs,
    attrs: dict[str, Any],
    chunk_frames: int,
    check_orientation: bool,
    extraction: Path,
) -> None:
    """Write a session's store under ``tmp_root``, check it and move it to ``final``.

    Parameters
    ----------
    tmp_root
        The lake's staging folder.
    final
        Where the store ends up (an older store there is replaced atomically).
    inputs
        The session, read and aligned.
    attrs
        The dataset's attributes.
    chunk_frames
        Frames per zarr chunk of the movie.
    check_orientation
        Check the footprints' orientation and store the outcome in the attributes.
    extraction
        The extraction file, named in messages.

    Raises
    ------
    InputFormatError
        The movie decodes to another number of frames than its headers say, the
        footprints are read the wrong way round, or the store does not read back.
    """
    import zarr

    with staging_path(tmp_root, suffix=".zarr") as staged:
        _write_store(staged, inputs=inputs, attrs=attrs, chunk_frames=chunk_frames)
        if check_orientation:
            checked = _orientation_attrs(inputs.ext, inputs.dims, inputs.peak_frames, path=extraction)
            zarr.open_group(staged, mode="r+").attrs.update(checked)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                zarr.consolidate_metadata(staged)
        _validate_store(staged, final)
        publish_dir(staged, final)


def labels_table(cohort: str, animal: str, session: str, sets: list[UnitLabels]) -> pa.Table | None:
    """The lake's labels table of one session (``LABELS_SCHEMA``), or ``None`` without labels."""
    if not sets:
        return None
    rows = labels_rows(sets)
    n = len(rows["unit_id"])
    keys = {"cohort": [cohort] * n, "animal": [animal] * n, "session": [session] * n}
    return pa.Table.from_pydict({**keys, **rows}, schema=LABELS_SCHEMA)


def footprint_block(A: sp.csc_matrix, start: int, stop: int, h: int, w: int, order: str) -> np.ndarray:
    """Return footprints ``start:stop`` as ``(n, h, w)`` float32, reading pixels in ``order``.

    The non-zeros are scattered straight into a zeroed block in row-major layout (no
    dense transposed copies: a block of 608 x 608 px footprints is 47 MB).
    """
    sub = sp.csc_matrix(A[:, start:stop], dtype=np.float32)
    sub.sum_duplicates()
    n = stop - start
    out = np.zeros((n, h * w), dtype=np.float32)
    units = np.repeat(np.arange(n), np.diff(sub.indptr))
    pixels = sub.indices.astype(np.int64)
    if order == "F":  # pixel index = y + x*h
        pixels = (pixels % h) * w + pixels // h
    out[units, pixels] = sub.data
    return out.reshape(n, h, w)


def aligned_blocks(blocks: Iterator[np.ndarray], chunk: int) -> Iterator[np.ndarray]:
    """Regroup frame blocks so every block but the last is a multiple of ``chunk`` frames.

    Writes then cover whole zarr chunks (no read-modify-write). At most one block plus
    ``chunk - 1`` frames are held at a time.
    """
    tail: np.ndarray | None = None
    for block in blocks:
        if tail is not None:
            block = np.concatenate([tail, block])
            tail = None
        full = (len(block) // chunk) * chunk
        if full:
            yield block[:full]
        if full < len(block):
            tail = block[full:]
    if tail is not None:
        yield tail


def _write_store(store: Path, *, inputs: SessionInputs, attrs: dict[str, Any], chunk_frames: int) -> None:
    """Write the session dataset to ``store`` (a fresh path): the movie decodes on its own
    thread while this one writes everything else, then compresses the movie's chunks."""
    import zarr

    ext, video = inputs.ext, inputs.video
    feed: MovieFeed | None = None
    if video is not None and inputs.frames is not None:
        feed = MovieFeed(
            inputs.frames,
            regroup=aligned_blocks,
            n_frames=ext.n_frames,
            chunk=min(chunk_frames, ext.n_frames),
            dtype=_movie_dtype(video.dtype),
            peak_frames=inputs.peak_frames,
            video=Path(video.path),
        )
    try:
        ds, encoding = _skeleton(inputs, attrs, chunk_frames)
        with warnings.catch_warnings():
            # zarr warns that consolidated metadata is not yet in the v3 spec; xarray reads it fine
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            ds.to_zarr(store, mode="w", compute=False, encoding=encoding, consolidated=True, zarr_format=3)
        group = zarr.open_group(store, mode="r+", zarr_format=3)
        if feed is not None:  # the movie compresses on its own thread while this one writes the rest
            feed.start_writing(cast("zarr.Array", group["movie"]), store)
        ku = min(UNITS_PER_CHUNK, ext.n_units)
        for name in ("C", "C_raw", "S"):
            traces = cast("zarr.Array", group[name])
            for start, rows in iter_unit_blocks(getattr(ext, name), ku):
                traces[start : start + len(rows)] = rows
        h, w = inputs.dims
        footprints = cast("zarr.Array", group["A"])
        for start in range(0, ext.n_units, ku):
            stop = min(start + ku, ext.n_units)
            footprints[start:stop] = footprint_block(ext.A, start, stop, h, w, ext.pixel_order)
        if feed is not None:
            movie = cast("zarr.Array", group["movie"])
            cast("zarr.Array", group["max_proj"])[...] = feed.write_into(movie, store)
    finally:
        if feed is not None:
            feed.stop()


def _movie_dtype(dtype: np.dtype) -> np.dtype:
    """The stored movie's dtype: the video's, with float64 stored as float32."""
    return np.dtype(np.float32) if dtype == np.float64 else np.dtype(dtype)


def _skeleton(
    inputs: SessionInputs, attrs: dict[str, Any], chunk_frames: int
) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
    """The dataset with coordinates filled in and lazy zeros for the movie, max
    projection, footprints and traces, and its zarr encoding."""
    import dask.array as da
    import xarray as xr
    from zarr.codecs import ZstdCodec

    ext, video = inputs.ext, inputs.video
    t, k = ext.n_frames, ext.n_units
    h, w = inputs.dims
    cf = min(chunk_frames, t)
    ku = min(UNITS_PER_CHUNK, k)
    trace_chunks = (ku, min(t, TRACE_CHUNK_FRAMES))
    compressors = (ZstdCodec(level=3),)
    data_vars: dict[str, Any] = {
        "A": ((UNIT_ID, HEIGHT, WIDTH), da.zeros((k, h, w), chunks=(ku, h, w), dtype=np.float32)),
        # traces are written a block of units at a time after the skeleton
        **{
            name: ((UNIT_ID, FRAME), da.zeros((k, t), chunks=trace_chunks, dtype=np.float32))
            for name in ("C", "C_raw", "S")
        },
    }
    encoding: dict[str, dict[str, Any]] = {
        "A": {"chunks": (ku, h, w), "compressors": compressors},
        **{name: {"chunks": trace_chunks, "compressors": compressors} for name in ("C", "C_raw", "S")},
    }
    if video is not None:
        dtype = _movie_dtype(video.dtype)
        data_vars["movie"] = ((FRAME, HEIGHT, WIDTH), da.zeros((t, h, w), chunks=(cf, h, w), dtype=dtype))
        data_vars["max_proj"] = ((HEIGHT, WIDTH), da.zeros((h, w), chunks=(h, w), dtype=dtype))
        encoding["movie"] = {"chunks": (cf, h, w), "compressors": (ZstdCodec(level=MOVIE_ZSTD_LEVEL),)}
        encoding["max_proj"] = {"chunks": (h, w), "compressors": compressors}
    for name, image in ext.extras.items():
        key = name if name not in _RESERVED else f"extraction_{name}"
        data_vars[key] = ((HEIGHT, WIDTH), np.asarray(image, dtype=np.float32))
    for name, values in ext.unit_vars.items():
        key = name if name not in _RESERVED else f"extraction_{name}"
        data_vars[key] = ((UNIT_ID,), np.asarray(values))
    ds = xr.Dataset(
        data_vars,
        coords={
            FRAME: np.arange(t, dtype=np.int64),
            "time_s": (FRAME, np.asarray(inputs.time_s, dtype=np.float64)),
            UNIT_ID: ext.unit_ids.astype(np.int64),
        },
        attrs=attrs,
    )
    if video is not None:
        ds["movie"].attrs.update(units="camera counts", long_name="raw miniscope movie")
    ds["A"].attrs.update(long_name="spatial footprints")
    ds["time_s"].attrs.update(units="s", long_name="frame time relative to the first frame")
    return ds, encoding


def _orientation_attrs(
    ext: Extraction, dims: tuple[int, int], peak_frames: PeakFrameCheck | None, *, path: Path
) -> dict[str, Any]:
    """Run the orientation check (movie peak frames, else a reference image); return attrs."""
    h, w = dims
    if peak_frames is not None and peak_frames.n_checked:
        scores = peak_frames.scores()
        against = f"the movie at the peak frames of {peak_frames.n_checked} cells"
        warn = True
    else:
        image = next(
            (ext.extras[n] for n in ("Cn", "max_proj_extraction", "suite2p_Vcorr") if n in ext.extras), None
        )
        if image is None:
            return {"orientation_check": "not checked"}
        scores = image_orientation_scores(ext.A, h, w, image)
        against = (
            "the extraction's correlation image" if "Cn" in ext.extras else "the extraction's reference image"
        )
        warn = False
    outcome = check_orientation(
        scores, declared=ext.pixel_order, path=path, square=h == w, against=against, warn_unclear=warn
    )
    return {
        "orientation_check": outcome,
        "orientation_scores": json.dumps({k: round(v, 4) for k, v in scores.items()}),
    }


def _validate_store(staged: Path, final: Path) -> None:
    import xarray as xr

    try:
        ds = xr.open_zarr(staged, consolidated=True)
    except Exception as exc:  # noqa: BLE001 - report any read-back failure as a lake error
        raise InputFormatError(
            f"the written session store cannot be read back ({type(exc).__name__}: {exc})",
            path=final,
            fix="report this as a cellsift bug",
        ) from None
    try:
        validate_session_dataset(ds, path=final)
    finally:
        ds.close()

"""Readers of raw session files: one module per file format, one registry of formats.

Two small interfaces keep ingest independent of file formats:

* :class:`VideoReader` — frame count, frame size, dtype, frame rate and timestamps
  known after opening (headers only); frames stream out of ``iter_blocks``, so a movie
  is never held in memory whole. :func:`open_video` picks one of
  :class:`MiniscopeAviReader` (Miniscope V4/V3 folders, numbered AVIs, one AVI),
  :class:`TiffStackReader` (multi-page / BigTIFF, memory-mapped when possible),
  :class:`Hdf5VideoReader` (HDF5 / ``.mat`` datasets ``Y``, ``mov``, ...),
  :class:`Suite2pBinReader` (``data.bin``) and :class:`NwbVideoReader`.
* :class:`ExtractionReader` — ``read()`` returns an :class:`Extraction` (footprints,
  traces, unit ids, per-unit columns, labels with their source). Traces of MATLAB v7.3,
  HDF5 and zarr files stay in the file as :class:`LazyTraces`, read a block of units at
  a time (:func:`iter_unit_blocks`), so memory does not grow with the session. :func:`open_extraction`
  picks one of :class:`CnmfeMatReader`, :class:`CaimanHdf5Reader`,
  :class:`MinianZarrReader`, :class:`Suite2pReader` and :class:`NwbExtractionReader`.

Which format a path holds is decided in one place, the registry :data:`FORMATS` of
:mod:`cellsift.pipeline.readers.formats` (detection, aliases, the files to hash).
Curation labels files are read by :func:`read_labels_file`; the checks that compare an
extraction with its video are :func:`check_frame_size`, :func:`frame_alignment` and the
orientation check (:class:`PeakFrameCheck`, :func:`check_orientation`).

Every problem with a file is raised as :class:`~cellsift.schemas.errors.InputFormatError`
(content) or :class:`~cellsift.schemas.errors.SessionNotFoundError` (missing), naming the
file, the field and the fix; library exceptions never escape.
"""

from __future__ import annotations

from cellsift.pipeline.readers.base import (
    DENOISED_ONLY_SOURCE,
    PIXEL_ORDERS,
    Extraction,
    ExtractionReader,
    UnitLabels,
    VideoReader,
)
from cellsift.pipeline.readers.caiman import CaimanHdf5Reader
from cellsift.pipeline.readers.checks import (
    FrameAlignment,
    check_frame_size,
    frame_alignment,
    validate_extraction,
)
from cellsift.pipeline.readers.cnmfe import CnmfeMatReader
from cellsift.pipeline.readers.formats import (
    EXTRACTION_FORMATS,
    FORMATS,
    VIDEO_FORMATS,
    Format,
    detect_extraction_format,
    detect_video_format,
    list_companion_video_files,
    list_extraction_files,
    list_video_files,
    normalise_extraction_format,
    normalise_video_format,
    open_extraction,
    open_video,
)
from cellsift.pipeline.readers.hdf5 import Hdf5VideoReader
from cellsift.pipeline.readers.labels import (
    LABELS_FORMATS,
    detect_labels_format,
    labels_rows,
    read_labels_file,
)
from cellsift.pipeline.readers.minian import MinianZarrReader
from cellsift.pipeline.readers.miniscope import MiniscopeAviReader
from cellsift.pipeline.readers.miniscope_files import parse_fps
from cellsift.pipeline.readers.nwb import NwbExtractionReader, NwbVideoReader
from cellsift.pipeline.readers.orientation import (
    PeakFrameCheck,
    check_orientation,
    image_orientation_scores,
    peak_traces,
)
from cellsift.pipeline.readers.suite2p import Suite2pBinReader, Suite2pReader
from cellsift.pipeline.readers.tiff import TiffStackReader
from cellsift.pipeline.readers.traces import (
    LazyTraces,
    Traces,
    any_nonzero,
    decimate_traces,
    iter_unit_blocks,
    trace_rows,
)

__all__ = [
    # interfaces and data
    "DENOISED_ONLY_SOURCE",
    "VideoReader",
    "ExtractionReader",
    "Extraction",
    "UnitLabels",
    "PIXEL_ORDERS",
    # traces read in blocks of units
    "Traces",
    "LazyTraces",
    "iter_unit_blocks",
    "trace_rows",
    "any_nonzero",
    "decimate_traces",
    # the registry of formats
    "Format",
    "FORMATS",
    "VIDEO_FORMATS",
    "EXTRACTION_FORMATS",
    "detect_video_format",
    "detect_extraction_format",
    "normalise_video_format",
    "normalise_extraction_format",
    "open_video",
    "open_extraction",
    "list_video_files",
    "list_extraction_files",
    "list_companion_video_files",
    # readers
    "MiniscopeAviReader",
    "TiffStackReader",
    "Hdf5VideoReader",
    "Suite2pBinReader",
    "NwbVideoReader",
    "CnmfeMatReader",
    "CaimanHdf5Reader",
    "MinianZarrReader",
    "Suite2pReader",
    "NwbExtractionReader",
    "parse_fps",
    # labels
    "LABELS_FORMATS",
    "detect_labels_format",
    "read_labels_file",
    "labels_rows",
    # checks
    "validate_extraction",
    "check_frame_size",
    "frame_alignment",
    "FrameAlignment",
    "PeakFrameCheck",
    "peak_traces",
    "image_orientation_scores",
    "check_orientation",
]

"""Readers of raw session files: the public facade.

Two small interfaces keep ingest independent of file formats (one class per format,
chosen by the manifest's ``format`` / ``video_format`` or detected from the files):

* :class:`VideoReader` — frame count, frame size, dtype, frame rate and timestamps
  known after opening (headers only); frames stream out of ``iter_blocks``, so a movie
  is never held in memory whole. :func:`open_video` picks one of
  :class:`MiniscopeAviReader` (Miniscope V4/V3 folders, numbered AVIs, one AVI),
  :class:`TiffStackReader` (multi-page / BigTIFF, memory-mapped when possible),
  :class:`Hdf5VideoReader` (HDF5 / ``.mat`` datasets ``Y``, ``mov``, ...),
  :class:`Suite2pBinReader` (``data.bin``) and :class:`NwbVideoReader`.
* :class:`ExtractionReader` — ``read()`` returns an :class:`Extraction` (footprints,
  traces, unit ids, per-unit columns, labels with their source). :func:`open_extraction`
  picks one of :class:`CnmfeMatReader`, :class:`CaimanHdf5Reader`,
  :class:`MinianZarrReader`, :class:`Suite2pReader` and :class:`NwbExtractionReader`.

Curation labels files are read by :func:`read_labels_file`; the checks that compare an
extraction with its video live in :mod:`cellsift.pipeline.readers.checks`.

Every problem with a file is raised as :class:`~cellsift.schemas.errors.InputFormatError`
(content) or :class:`~cellsift.schemas.errors.SessionNotFoundError` (missing), naming the
file, the field and the fix; library exceptions never escape.
"""

from __future__ import annotations

from pathlib import Path

from cellsift.pipeline.readers.base import PIXEL_ORDERS, Extraction, ExtractionReader, UnitLabels, VideoReader
from cellsift.pipeline.readers.checks import (
    FrameAlignment,
    PeakFrameCheck,
    check_frame_size,
    check_orientation,
    frame_alignment,
    image_orientation_scores,
    validate_extraction,
)
from cellsift.pipeline.readers.extraction import (
    EXTRACTION_FORMATS,
    CaimanHdf5Reader,
    CnmfeMatReader,
    MinianZarrReader,
    NwbExtractionReader,
    Suite2pReader,
    detect_extraction_format,
    list_extraction_files,
    normalise_extraction_format,
    open_extraction,
)
from cellsift.pipeline.readers.labels import LABELS_FORMATS, TRUTH_FILE, detect_labels_format, read_labels_file
from cellsift.pipeline.readers.video import (
    VIDEO_FORMATS,
    Hdf5VideoReader,
    MiniscopeAviReader,
    NwbVideoReader,
    Suite2pBinReader,
    TiffStackReader,
    _avi_layout,
    detect_video_format,
    list_video_files,
    normalise_video_format,
    open_video,
    parse_fps,
)

__all__ = [
    "VideoReader",
    "ExtractionReader",
    "Extraction",
    "UnitLabels",
    "PIXEL_ORDERS",
    "VIDEO_FORMATS",
    "EXTRACTION_FORMATS",
    "LABELS_FORMATS",
    "TRUTH_FILE",
    "MiniscopeAviReader",
    "MiniscopeV4Reader",
    "TiffStackReader",
    "Hdf5VideoReader",
    "Suite2pBinReader",
    "NwbVideoReader",
    "CnmfeMatReader",
    "CaimanHdf5Reader",
    "MinianZarrReader",
    "Suite2pReader",
    "NwbExtractionReader",
    "open_video",
    "open_extraction",
    "detect_video_format",
    "detect_extraction_format",
    "detect_labels_format",
    "normalise_video_format",
    "normalise_extraction_format",
    "list_video_files",
    "list_extraction_files",
    "video_files",
    "read_labels_file",
    "validate_extraction",
    "check_frame_size",
    "frame_alignment",
    "FrameAlignment",
    "PeakFrameCheck",
    "image_orientation_scores",
    "check_orientation",
    "parse_fps",
]

#: The reader of Miniscope folders (V4, V3 and any numbered AVI series), old name.
MiniscopeV4Reader = MiniscopeAviReader
_parse_fps = parse_fps


def video_files(path: Path) -> tuple[list[Path], list[Path]]:
    """AVI chunks and side files (timestamps, metadata) of a Miniscope video, without decoding.

    Raises
    ------
    SessionNotFoundError, InputFormatError
        Missing video or chunk.
    """
    chunks, extras, _ = _avi_layout(Path(path))
    return chunks, extras

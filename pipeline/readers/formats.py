"""The registry of file formats: the one place that tells which format a path holds.

Every format cellsift reads is registered once in :data:`FORMATS`, as a :class:`Format`:
its name, its kind (``"extraction"`` or ``"video"``), its reader class, the file suffixes
it reads, the aliases a manifest may use, and how to recognise a folder of it
(:meth:`Format.can_open`). Detection (:func:`detect_extraction_format`,
:func:`detect_video_format`), name checks (:func:`normalise_extraction_format`,
:func:`normalise_video_format`), opening (:func:`open_extraction`, :func:`open_video`)
and the lists of files to hash (:func:`list_extraction_files`,
:func:`list_video_files`, :func:`list_companion_video_files`) are all built on it, in
the spirit of xarray's backend entrypoints and ``guess_engine``.

=================  ==========  ===================================================================
format             kind        what the manifest's ``extraction`` / ``video`` points at
=================  ==========  ===================================================================
``cnmfe_mat``      extraction  CNMF-E results in a ``.mat`` (:mod:`~cellsift.pipeline.readers.cnmfe`)
``caiman_hdf5``    extraction  CaImAn's ``cnm.save`` HDF5 (:mod:`~cellsift.pipeline.readers.caiman`)
``minian_zarr``    extraction  Minian's output folder of ``<var>.zarr`` stores
``suite2p``        extraction  a Suite2p ``plane*/`` folder (:mod:`~cellsift.pipeline.readers.suite2p`)
``nwb``            extraction  an NWB ``PlaneSegmentation`` (:mod:`~cellsift.pipeline.readers.nwb`)
``miniscope_avi``  video       a Miniscope V4/V3 folder, numbered AVIs or one ``.avi``
``tiff``           video       a multi-page TIFF / BigTIFF, or a folder of numbered parts
``hdf5``           video       a 3-D dataset in an HDF5 file or MATLAB ``.mat``
``suite2p_bin``    video       Suite2p's registered ``data.bin`` beside ``ops.npy``
``nwb``            video       the ``OnePhotonSeries`` / ``TwoPhotonSeries`` of an NWB file
=================  ==========  ===================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from cellsift.pipeline.readers.base import ExtractionReader, VideoReader, require_exists
from cellsift.pipeline.readers.caiman import CaimanHdf5Reader
from cellsift.pipeline.readers.cnmfe import CnmfeMatReader
from cellsift.pipeline.readers.hdf5 import Hdf5VideoReader
from cellsift.pipeline.readers.minian import MinianZarrReader, is_minian_output, list_minian_files
from cellsift.pipeline.readers.miniscope import MiniscopeAviReader
from cellsift.pipeline.readers.miniscope_files import AVI_SUFFIXES, avi_layout, has_avi_files
from cellsift.pipeline.readers.nwb import NwbExtractionReader, NwbVideoReader
from cellsift.pipeline.readers.suite2p import (
    Suite2pBinReader,
    Suite2pReader,
    is_suite2p_bin_folder,
    is_suite2p_output,
    list_suite2p_bin_files,
    list_suite2p_files,
    suite2p_companion_files,
)
from cellsift.pipeline.readers.tiff import TIFF_SUFFIXES, TiffStackReader, has_tiff_files, list_tiff_files
from cellsift.schemas import InputFormatError

__all__ = [
    "EXTRACTION_FORMATS",
    "FORMATS",
    "VIDEO_FORMATS",
    "Format",
    "detect_extraction_format",
    "detect_video_format",
    "list_companion_video_files",
    "list_extraction_files",
    "list_video_files",
    "normalise_extraction_format",
    "normalise_video_format",
    "open_extraction",
    "open_video",
]

Kind = Literal["extraction", "video"]


@dataclass(frozen=True)
class Format:
    """One file format cellsift reads.

    Attributes
    ----------
    name
        Canonical name, e.g. ``"cnmfe_mat"`` (the manifest's ``format`` /
        ``video_format``, and the reader's ``format``).
    kind
        ``"extraction"`` or ``"video"``.
    reader
        The reader class, called with the path (and, with :attr:`takes_dataset`, the
        dataset or series name).
    suffixes
        File suffixes (lower case, with the dot) that mean this format.
    aliases
        Other names a manifest may use for it.
    folder_test
        Whether a folder holds this format, or ``None`` for file-only formats.
    list_files
        Every file the reader reads, without reading them (for hashing); ``None``: the
        path itself.
    companion_files
        Files of the video an extraction carries (for hashing); ``None``: none.
    detect_first
        Test folders for this format before the others (a Suite2p plane folder may also
        hold AVI/TIFF exports or zarr stores).
    takes_dataset
        The reader takes a dataset / series name inside the file.
    strict_suffix
        A file with another suffix is refused even when the manifest names this format.
    """

    name: str
    kind: Kind
    reader: Callable[..., Any]
    suffixes: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    folder_test: Callable[[Path], bool] | None = None
    list_files: Callable[[Path], list[Path]] | None = None
    companion_files: Callable[[Path], list[Path]] | None = None
    detect_first: bool = False
    takes_dataset: bool = False
    strict_suffix: bool = False

    def can_open(self, path: Path) -> bool:
        """Whether ``path`` (an existing file or folder) looks like this format."""
        if path.is_dir():
            return self.folder_test is not None and self.folder_test(path)
        return path.suffix.lower() in self.suffixes

    def files(self, path: Path) -> list[Path]:
        """Every file the reader of ``path`` reads, without reading them (for hashing)."""
        return [path] if self.list_files is None else self.list_files(path)


def _avi_files(path: Path) -> list[Path]:
    chunks, extras, _ = avi_layout(path)
    return chunks + extras


def _existing(path: Path) -> list[Path]:
    require_exists(path, field_name="video", what="video")
    return [path]


#: Every format, extraction formats first; within a kind, in the order messages list them.
FORMATS: Final[tuple[Format, ...]] = (
    Format("cnmfe_mat", "extraction", CnmfeMatReader, (".mat",), aliases=("cnmfe", "cnmf-e", "cnmf_e")),
    Format("caiman_hdf5", "extraction", CaimanHdf5Reader, (".hdf5", ".h5"), aliases=("caiman", "cnmf_hdf5")),
    Format(
        "minian_zarr",
        "extraction",
        MinianZarrReader,
        (),
        aliases=("minian",),
        folder_test=is_minian_output,
        list_files=list_minian_files,
    ),
    Format(
        "suite2p",
        "extraction",
        Suite2pReader,
        (),
        folder_test=is_suite2p_output,
        list_files=list_suite2p_files,
        companion_files=suite2p_companion_files,
        detect_first=True,
    ),
    Format("nwb", "extraction", NwbExtractionReader, (".nwb",)),
    Format(
        "miniscope_avi",
        "video",
        MiniscopeAviReader,
        AVI_SUFFIXES,
        aliases=("avi", "miniscope", "miniscope_v4", "miniscope_v3", "v4", "v3"),
        folder_test=has_avi_files,
        list_files=_avi_files,
        strict_suffix=True,
    ),
    Format(
        "tiff",
        "video",
        TiffStackReader,
        TIFF_SUFFIXES,
        aliases=("tif", "bigtiff"),
        folder_test=has_tiff_files,
        list_files=list_tiff_files,
    ),
    Format(
        "hdf5",
        "video",
        Hdf5VideoReader,
        (".h5", ".hdf5", ".mat"),
        aliases=("h5", "mat"),
        list_files=_existing,
        takes_dataset=True,
    ),
    Format(
        "suite2p_bin",
        "video",
        Suite2pBinReader,
        (".bin",),
        aliases=("suite2p", "bin"),
        folder_test=is_suite2p_bin_folder,
        list_files=list_suite2p_bin_files,
        detect_first=True,
    ),
    Format("nwb", "video", NwbVideoReader, (".nwb",), list_files=_existing, takes_dataset=True),
)

EXTRACTION_FORMATS: Final = tuple(f.name for f in FORMATS if f.kind == "extraction")
VIDEO_FORMATS: Final = tuple(f.name for f in FORMATS if f.kind == "video")


def _registered(kind: Kind) -> dict[str, Format]:
    return {f.name: f for f in FORMATS if f.kind == kind}


def _by_alias(kind: Kind) -> dict[str, Format]:
    return {alias: f for f in FORMATS if f.kind == kind for alias in (f.name, *f.aliases)}


def _detection_order(kind: Kind) -> list[Format]:
    return sorted((f for f in FORMATS if f.kind == kind), key=lambda f: not f.detect_first)


def _by_suffix(kind: Kind, path: Path) -> Format | None:
    suffix = path.suffix.lower()
    return next((f for f in FORMATS if f.kind == kind and suffix in f.suffixes), None)


def _detected(kind: Kind, path: Path) -> Format | None:
    """The first format of ``kind`` that recognises the existing ``path``, or ``None``."""
    require_exists(path, field_name=kind, what=kind)
    return next((entry for entry in _detection_order(kind) if entry.can_open(path)), None)


def _normalised(kind: Kind, name: str | None, *, path: Path, field: str) -> str | None:
    """Canonical format of ``kind`` for ``name`` (aliases allowed); ``None`` passes through."""
    if name is None:
        return None
    entry = _by_alias(kind).get(name.strip().lower())
    if entry is None:
        names = EXTRACTION_FORMATS if kind == "extraction" else VIDEO_FORMATS
        raise InputFormatError(
            f"unknown {kind} format '{name}'", path=path, field=field, fix=f"use one of: {', '.join(names)}"
        )
    return entry.name


def _unsupported_video(path: Path, kind: str) -> InputFormatError:
    return InputFormatError(
        f"unsupported video {kind} '{path.suffix or path.name}'",
        path=path,
        field="video",
        fix=f"give a video in one of the formats {', '.join(VIDEO_FORMATS)} (see docs/formats.md), "
        "or set video_format in the manifest",
    )


def _unknown_extraction_name(path: Path) -> InputFormatError:
    return InputFormatError(
        f"cannot tell the extraction format from the file name '{path.name}'",
        path=path,
        field="format",
        fix=f"give a 'format' column in the manifest (one of: {', '.join(EXTRACTION_FORMATS)})",
    )


# =========================================================================== extraction


def detect_extraction_format(path: Path) -> str:
    """Return the extraction format of ``path`` from its name and folder contents.

    Raises
    ------
    SessionNotFoundError
        ``path`` does not exist.
    InputFormatError
        A folder of no known format, or a file suffix of no extraction format.
    """
    path = Path(path)
    found = _detected("extraction", path)
    if found is not None:
        return found.name
    if path.is_dir():
        raise InputFormatError(
            "cannot tell the extraction format: the folder holds neither Suite2p (stat.npy) nor Minian (A.zarr) output",
            path=path,
            field="format",
            fix=f"point extraction at the results, or give a 'format' column (one of: {', '.join(EXTRACTION_FORMATS)})",
        )
    raise _unknown_extraction_name(path)


def normalise_extraction_format(name: str | None, *, path: Path) -> str | None:
    """Canonical extraction format for ``name`` (aliases allowed); ``None`` passes through.

    Raises
    ------
    InputFormatError
        ``name`` is no extraction format or alias (``field`` is ``format``).
    """
    return _normalised("extraction", name, path=path, field="format")


def _extraction_entry(path: Path, format: str | None) -> Format:  # noqa: A002
    name = normalise_extraction_format(format, path=path) or detect_extraction_format(path)
    return _registered("extraction")[name]


def list_extraction_files(path: Path, *, format: str | None = None) -> list[Path]:  # noqa: A002
    """Every file an extraction reader reads (for hashing), without reading them.

    Raises
    ------
    SessionNotFoundError, InputFormatError
        Missing path, unknown or undetectable format, several Suite2p planes.
    """
    path = Path(path)
    return _extraction_entry(path, format).files(path)


def list_companion_video_files(path: Path, *, format: str | None = None) -> list[Path]:  # noqa: A002
    """Files of the video an extraction carries (Suite2p's ``data.bin``), for hashing.

    Returns
    -------
    list of Path
        Empty when the format carries no separate video file (an NWB photon series is
        inside the extraction file itself).

    Raises
    ------
    SessionNotFoundError, InputFormatError
        Missing path, unknown or undetectable format, several Suite2p planes.
    """
    path = Path(path)
    entry = _extraction_entry(path, format)
    return [] if entry.companion_files is None else entry.companion_files(path)


def open_extraction(path: Path | str, format: str | None = None) -> ExtractionReader:  # noqa: A002
    """Return the reader for an extraction file or folder.

    Parameters
    ----------
    path
        The extraction file or folder.
    format
        One of :data:`EXTRACTION_FORMATS` (aliases like ``"cnmfe"``, ``"caiman"``,
        ``"minian"`` allowed), or ``None`` to detect it.

    Returns
    -------
    ExtractionReader
        Not read yet: call ``read()``.

    Raises
    ------
    InputFormatError
        Unknown or undetectable format.
    """
    path = Path(path)
    name = normalise_extraction_format(format, path=path)
    if name is not None:
        entry = _registered("extraction")[name]
    elif path.exists():
        entry = _registered("extraction")[detect_extraction_format(path)]
    else:  # a missing file: the reader reports it; pick by suffix
        found = _by_suffix("extraction", path)
        if found is None:
            raise _unknown_extraction_name(path)
        entry = found
    reader: ExtractionReader = entry.reader(path)
    return reader


# =========================================================================== video


def detect_video_format(path: Path) -> str:
    """Return the video format of ``path`` from its name and folder contents.

    Raises
    ------
    SessionNotFoundError
        ``path`` does not exist.
    InputFormatError
        A folder with no AVI, TIFF or ``data.bin``, or an unsupported file type.
    """
    path = Path(path)
    found = _detected("video", path)
    if found is not None:
        return found.name
    if path.is_dir():
        raise InputFormatError(
            "cannot tell the video format: the folder holds no AVI, TIFF or Suite2p data.bin",
            path=path,
            field="video",
            fix=f"point video at the recording, or set video_format (one of {', '.join(VIDEO_FORMATS)})",
        )
    raise _unsupported_video(path, "file type")


def normalise_video_format(name: str | None, *, path: Path) -> str | None:
    """Canonical video format name for ``name`` (aliases allowed), ``None`` passes through.

    Raises
    ------
    InputFormatError
        ``name`` is no video format or alias (``field`` is ``video_format``).
    """
    return _normalised("video", name, path=path, field="video_format")


def _video_entry(path: Path, format: str | None) -> Format:  # noqa: A002
    name = normalise_video_format(format, path=path) or detect_video_format(path)
    entry = _registered("video")[name]
    if entry.strict_suffix and path.is_file() and path.suffix.lower() not in entry.suffixes:
        raise _unsupported_video(path, "file type")
    return entry


def list_video_files(path: Path, *, format: str | None = None, dataset: str | None = None) -> list[Path]:  # noqa: A002
    """Every file a video reads, in order, without decoding anything (for hashing).

    Raises
    ------
    SessionNotFoundError, InputFormatError
        Missing video, missing chunk, unknown format.
    """
    path = Path(path)
    return _video_entry(path, format).files(path)


def open_video(path: Path | str, *, format: str | None = None, dataset: str | None = None) -> VideoReader:  # noqa: A002
    """Open a video for block-wise reading.

    Parameters
    ----------
    path
        Video file or folder.
    format
        One of :data:`VIDEO_FORMATS` (aliases allowed), or ``None`` to detect it.
    dataset
        Dataset / series inside an HDF5, ``.mat`` or NWB file (``None``: the default).

    Returns
    -------
    VideoReader
        Headers read; frames stream out of ``iter_blocks``.

    Raises
    ------
    SessionNotFoundError, InputFormatError
        Missing or unreadable video, unknown format.
    """
    path = Path(path)
    entry = _video_entry(path, format)
    reader: VideoReader = entry.reader(path, dataset) if entry.takes_dataset else entry.reader(path)
    return reader

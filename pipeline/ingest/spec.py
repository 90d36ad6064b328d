"""One session of a cohort as a manifest describes it, and the files it names.

:class:`SessionSpec` is what :func:`~cellsift.pipeline.ingest.manifest.read_manifest`
returns and every later step of ingest works from; :func:`check_spec_files` checks that
the files it names exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cellsift.schemas import ManifestError, SessionNotFoundError

__all__ = ["PATH_COLUMNS", "SessionSpec", "check_spec_files"]

#: Manifest columns that name files or folders.
PATH_COLUMNS: Final = ("video", "extraction", "events", "labels")


@dataclass(frozen=True)
class SessionSpec:
    """One session of a cohort, as a manifest describes it.

    Parameters
    ----------
    cohort, animal, session
        Names (usable as folder names).
    stage
        Experimental stage, e.g. ``"conditioning"``.
    day
        Day of the experiment.
    video
        The movie (folder or file, absolute), or ``None`` (see ``skip_video``).
    extraction
        Extraction results file or folder (absolute).
    events
        Behaviour events CSV, or ``None``.
    labels
        Curation labels file, or ``None``.
    fps
        Frame rate in Hz given by the manifest, or ``None`` to take it from the files.
        With ``temporal_downsample`` N it is the rate of the longer (full-rate) series.
    format
        Extraction format (e.g. ``"cnmfe_mat"``), or ``None`` to detect it.
    video_format
        Video format (e.g. ``"tiff"``), or ``None`` to detect it.
    video_dataset
        Dataset or series inside an HDF5, ``.mat`` or NWB video, or ``None``.
    temporal_downsample
        Declared ratio between trace and video frame counts, or ``None``.
    labels_format
        Labels format, or ``None`` to detect it.
    pixel_order
        ``"F"`` or ``"C"``: pixel order of flat footprints, or ``None`` (format default).
    skip_video
        ``True`` when the manifest says ``video: none`` (no movie, not even the
        extraction's own).
    manifest
        The manifest this session came from, if any (used in error messages).
    line
        Line of the session's entry in a CSV manifest (1 = header), or entry number
        (1-based) in a YAML manifest; ``None`` if not from a manifest.
    """

    cohort: str
    animal: str
    session: str
    stage: str
    day: int
    video: Path | None
    extraction: Path
    events: Path | None = None
    labels: Path | None = None
    fps: float | None = None
    format: str | None = None
    manifest: Path | None = None
    line: int | None = None
    video_format: str | None = None
    video_dataset: str | None = None
    temporal_downsample: int | None = None
    labels_format: str | None = None
    pixel_order: str | None = None
    skip_video: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        """``(cohort, animal, session)``."""
        return (self.cohort, self.animal, self.session)

    @property
    def where(self) -> str:
        """Where the entry is: ``"manifest.csv line 3"``, or ``""`` if not from a manifest."""
        if self.manifest is None:
            return ""
        unit = "line" if self.manifest.suffix.lower() == ".csv" else "entry"
        return f"{self.manifest} {unit} {self.line}" if self.line is not None else str(self.manifest)


def check_spec_files(spec: SessionSpec) -> None:
    """Check that every file a session names exists.

    Raises
    ------
    ManifestError
        If the session came from a manifest (names the manifest, line and column).
    SessionNotFoundError
        If the session was built directly (names the missing file).
    """
    for column in PATH_COLUMNS:
        path: Path | None = getattr(spec, column)
        if path is None or path.exists():
            continue
        if spec.manifest is not None:
            raise ManifestError(
                f"{spec.where.removeprefix(str(spec.manifest)).strip()}: {column} file {path} does not exist",
                path=spec.manifest,
                field=column,
                fix=f"correct the {column} path (relative paths are relative to the manifest's folder)",
            )
        raise SessionNotFoundError(
            f"{column} of session {'/'.join(spec.key)} does not exist",
            path=path,
            field=column,
            fix="check the path or copy the file there",
        )

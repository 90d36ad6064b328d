"""Cohort manifests: which sessions a cohort has and where their raw files are.

A manifest is a CSV or YAML file with one entry per recording session:

=====================  ========  ========================================================
column                 required  meaning
=====================  ========  ========================================================
cohort                 yes       cohort name (in YAML it may be given once at the top)
animal                 yes       animal name
session                yes       session name (unique per animal)
stage                  yes       experimental stage, e.g. ``conditioning``
day                    yes       day of the experiment (integer)
extraction             yes       extraction results: CNMF-E ``.mat``, CaImAn ``.hdf5``,
                                 Minian output folder, Suite2p plane folder or ``.nwb``
video                  no        the movie (Miniscope V4/V3 folder, AVI, TIFF, HDF5/.mat,
                                 Suite2p ``data.bin``, NWB); empty: the extraction's own
                                 video if it has one (Suite2p ``data.bin``, NWB photon
                                 series), else none; ``none``: no movie
events                 no        behaviour events CSV (``event,onset_s,offset_s``)
labels                 no        curation labels (see :mod:`cellsift.pipeline.readers.labels`)
fps                    no        frame rate in Hz of the recording; else from the files
format                 no        extraction format (default: detect from the file)
video_format           no        video format (default: detect from the file)
video_dataset          no        dataset / series inside an HDF5, ``.mat`` or NWB video
temporal_downsample    no        N when the traces and the video frame counts differ by
                                 exactly N (declared, never guessed)
labels_format          no        labels format (default: detect from the file)
pixel_order            no        ``F`` (column-major, default for CNMF-E/CaImAn) or ``C``
                                 (row-major) pixel order of flat footprints
=====================  ========  ========================================================

Paths are absolute or relative to the manifest's folder. The YAML form is either
``{cohort: NAME, sessions: [{animal: ..., ...}, ...]}`` (top-level keys are defaults for
every session) or a plain list of session mappings. A column the manifest does not know
is reported: an error when it is close to a known one (a typo), else a warning.

A *folder* laid out as the demo writes it is read too: its ``cohort.csv`` (or
``cohort.yaml``) if present, else every ``<animal>/<session>/`` folder holding a
``miniscope/`` folder and a ``cnmfe_results.mat``.
"""

from __future__ import annotations

import csv
import difflib
import logging
import math
import re
from pathlib import Path
from typing import Any, Final

import yaml

from cellsift.catalog import safe_name
from cellsift.pipeline._util import natural_key
from cellsift.pipeline.ingest.spec import PATH_COLUMNS, SessionSpec, check_spec_files
from cellsift.pipeline.readers import LABELS_FORMATS, normalise_extraction_format, normalise_video_format
from cellsift.schemas import CellsiftError, ManifestError, SessionNotFoundError

logger = logging.getLogger(__name__)

__all__ = [
    "REQUIRED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "NO_VIDEO",
    "read_manifest",
]

REQUIRED_COLUMNS: Final = ("cohort", "animal", "session", "stage", "day", "extraction")
OPTIONAL_COLUMNS: Final = (
    "video",
    "events",
    "labels",
    "fps",
    "format",
    "video_format",
    "video_dataset",
    "temporal_downsample",
    "labels_format",
    "pixel_order",
)
#: Values of the video column that mean "this session has no movie".
NO_VIDEO: Final = ("none", "-", "no")
_PIXEL_ORDER_ALIASES: Final = {
    "f": "F",
    "fortran": "F",
    "column-major": "F",
    "column_major": "F",
    "matlab": "F",
    "c": "C",
    "row-major": "C",
    "row_major": "C",
    "numpy": "C",
}

#: File names of the demo layout (``<animal>/<session>/...``).
DEMO_MANIFESTS: Final = ("cohort.csv", "cohort.yaml", "cohort.yml")
DEMO_VIDEO_DIR: Final = "miniscope"
DEMO_EXTRACTION: Final = "cnmfe_results.mat"
DEMO_EVENTS: Final = "events.csv"
DEMO_LABELS: Final = "labels.csv"


def read_manifest(source: Path | str, *, check_files: bool = True) -> list[SessionSpec]:
    """Read a cohort manifest (CSV, YAML or a demo folder) into session specs.

    Parameters
    ----------
    source
        A ``.csv``, ``.yaml``/``.yml`` manifest, or a folder laid out as the demo.
    check_files
        Raise if a session names a file that does not exist. :func:`ingest_cohort`
        passes ``False`` and checks per session, so one bad row does not stop a cohort.

    Returns
    -------
    list of SessionSpec
        In manifest order (folders: sorted by animal, then session, naturally).

    Raises
    ------
    ManifestError
        Missing column, bad value, duplicate session or (``check_files``) missing file;
        the message names the manifest, the line and the column.
    SessionNotFoundError
        ``source`` does not exist, or a folder holds no sessions.
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise SessionNotFoundError(
            "cohort source does not exist",
            path=source,
            fix="give a manifest (CSV or YAML) or a cohort folder",
        )
    if source.is_dir():
        specs = _read_folder(source)
    else:
        suffix = source.suffix.lower()
        if suffix == ".csv":
            specs = _read_csv(source)
        elif suffix in {".yaml", ".yml"}:
            specs = _read_yaml(source)
        else:
            raise ManifestError(
                f"unknown manifest type '{source.suffix}'",
                path=source,
                fix="use a .csv or .yaml manifest, or give the cohort folder",
            )
    _check_unique(specs)
    if check_files:
        for spec in specs:
            check_spec_files(spec)
    logger.debug("manifest %s: %d sessions", source, len(specs))
    return specs


# --------------------------------------------------------------------------- CSV / YAML


def _read_csv(path: Path) -> list[SessionSpec]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            _check_columns(header, path)
            specs = []
            for row in reader:
                if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                    continue  # blank line
                entry = {(k or "").strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
                specs.append(_make_spec(entry, manifest=path, line=reader.line_num))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(
            f"cannot read the manifest ({type(exc).__name__}: {exc})",
            path=path,
            fix="save it as a UTF-8 comma-separated file with a header line",
        ) from None
    if not specs:
        raise ManifestError("the manifest lists no sessions", path=path, fix="add one row per session")
    return specs


def _read_yaml(path: Path) -> list[SessionSpec]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        raise ManifestError(
            f"cannot read the manifest ({type(exc).__name__}: {reason})",
            path=path,
            fix="check the YAML syntax",
        ) from None
    defaults: dict[str, Any] = {}
    if isinstance(doc, dict):
        entries = doc.get("sessions")
        defaults = {k: v for k, v in doc.items() if k != "sessions"}
        if not isinstance(entries, list):
            raise ManifestError(
                "the manifest has no 'sessions' list",
                path=path,
                field="sessions",
                fix="write 'sessions:' followed by one mapping per session",
            )
    elif isinstance(doc, list):
        entries = doc
    else:
        raise ManifestError(
            "the manifest is neither a mapping with 'sessions' nor a list of sessions",
            path=path,
            fix="write '{cohort: NAME, sessions: [...]}' or a list of session mappings",
        )
    if not entries:
        raise ManifestError("the manifest lists no sessions", path=path, field="sessions", fix="add sessions")
    specs = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise ManifestError(
                f"entry {number} is not a mapping",
                path=path,
                fix="write each session as 'key: value' pairs",
            )
        merged = {**defaults, **entry}
        _check_columns(list(merged), path, entry=number)
        specs.append(_make_spec(merged, manifest=path, line=number))
    return specs


def _check_columns(columns: list[str], path: Path, *, entry: int | None = None) -> None:
    present = set(columns)
    for column in REQUIRED_COLUMNS:
        if column not in present:
            where = f"entry {entry} has no" if entry is not None else "no"
            raise ManifestError(
                f"{where} column '{column}'",
                path=path,
                field=column,
                fix=f"add a '{column}' column; required are {', '.join(REQUIRED_COLUMNS)}",
            )
    known = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
    unknown = sorted(present - set(known))
    for column in unknown:
        close = difflib.get_close_matches(column.lower(), known, n=1, cutoff=0.75)
        if close:
            where = f"entry {entry} has" if entry is not None else "the manifest has"
            raise ManifestError(
                f"{where} an unknown column '{column}' (did you mean '{close[0]}'?)",
                path=path,
                field=column,
                fix=f"rename the column to '{close[0]}'",
            )
    if unknown:
        logger.warning("manifest %s: ignoring unknown columns %s", path, ", ".join(unknown))


def _make_spec(entry: dict[str, Any], *, manifest: Path, line: int) -> SessionSpec:
    unit = "line" if manifest.suffix.lower() == ".csv" else "entry"

    def fail(column: str, problem: str, fix: str) -> ManifestError:
        return ManifestError(f"{unit} {line}: {problem}", path=manifest, field=column, fix=fix)

    def text(column: str, *, required: bool) -> str | None:
        value = entry.get(column)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            value = ""
        value = str(value).strip()
        if not value:
            if required:
                raise fail(column, "value is empty", f"fill in the {column}")
            return None
        return value

    names = {}
    for column in ("cohort", "animal", "session"):
        value = text(column, required=True) or ""
        try:
            names[column] = safe_name(value, field=column)
        except CellsiftError as exc:
            raise fail(column, exc.problem, exc.fix or "rename it") from None
    stage = text("stage", required=True) or ""
    day_text = text("day", required=True) or ""
    try:
        day_float = float(day_text)
        if not day_float.is_integer():
            raise ValueError
        day = int(day_float)
    except ValueError:
        raise fail("day", f"'{day_text}' is not a whole number", "write the day as an integer") from None
    fps: float | None = None
    fps_text = text("fps", required=False)
    if fps_text is not None:
        try:
            fps = float(fps_text)
        except ValueError:
            fps = math.nan
        if not math.isfinite(fps) or fps <= 0:
            raise fail(
                "fps", f"'{fps_text}' is not a positive number", "give the frame rate in Hz or leave it empty"
            )
    paths: dict[str, Path | None] = {}
    skip_video = False
    for column in PATH_COLUMNS:
        path_text = text(column, required=column in REQUIRED_COLUMNS)
        if column == "video" and path_text is not None and path_text.lower() in NO_VIDEO:
            skip_video, path_text = True, None
        paths[column] = None if path_text is None else _resolve(path_text, manifest.parent)
    fmt = text("format", required=False)
    options = _format_options(entry, text=text, fail=fail, manifest=manifest)
    video, extraction = paths["video"], paths["extraction"]
    if extraction is None:  # pragma: no cover - required above
        raise fail("extraction", "value is empty", "fill in the path")
    if options["temporal_downsample"] not in (None, 1) and video is None and skip_video:
        raise fail(
            "temporal_downsample",
            "temporal_downsample is given but the session has no video",
            "remove temporal_downsample, or give the video",
        )
    return SessionSpec(
        cohort=names["cohort"],
        animal=names["animal"],
        session=names["session"],
        stage=stage,
        day=day,
        video=video,
        extraction=extraction,
        events=paths["events"],
        labels=paths["labels"],
        fps=fps,
        format=fmt.lower() if fmt else None,
        manifest=manifest,
        line=line,
        video_format=options["video_format"],
        video_dataset=options["video_dataset"],
        temporal_downsample=options["temporal_downsample"],
        labels_format=options["labels_format"],
        pixel_order=options["pixel_order"],
        skip_video=skip_video,
    )


def _format_options(entry: dict[str, Any], *, text: Any, fail: Any, manifest: Path) -> dict[str, Any]:
    """Parse and check the optional format columns of one entry."""
    out: dict[str, Any] = {"video_dataset": text("video_dataset", required=False)}
    fmt = text("format", required=False)
    video_fmt = text("video_format", required=False)
    try:
        normalise_extraction_format(fmt, path=manifest)
        out["video_format"] = normalise_video_format(video_fmt, path=manifest)
    except CellsiftError as exc:
        raise fail(exc.field or "format", exc.problem, exc.fix or "fix the value") from None
    labels_fmt = text("labels_format", required=False)
    if labels_fmt is not None and labels_fmt.lower() not in LABELS_FORMATS:
        raise fail(
            "labels_format",
            f"unknown labels format '{labels_fmt}'",
            f"use one of: {', '.join(LABELS_FORMATS)}",
        )
    out["labels_format"] = labels_fmt.lower() if labels_fmt else None
    ratio_text = text("temporal_downsample", required=False)
    ratio: int | None = None
    if ratio_text is not None:
        try:
            value = float(ratio_text)
            if not value.is_integer() or value < 1:
                raise ValueError
            ratio = int(value)
        except ValueError:
            raise fail(
                "temporal_downsample",
                f"'{ratio_text}' is not a whole number >= 1",
                "give the factor between the trace and video frame counts, e.g. 2",
            ) from None
    out["temporal_downsample"] = ratio
    order_text = text("pixel_order", required=False)
    order = None
    if order_text is not None:
        order = _PIXEL_ORDER_ALIASES.get(order_text.strip().lower())
        if order is None:
            raise fail(
                "pixel_order", f"'{order_text}' is not a pixel order", "use F (column-major) or C (row-major)"
            )
    out["pixel_order"] = order
    return out


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base / path
    return path.resolve()


def _check_unique(specs: list[SessionSpec]) -> None:
    seen: dict[tuple[str, str, str], SessionSpec] = {}
    for spec in specs:
        first = seen.get(spec.key)
        if first is not None:
            raise ManifestError(
                f"session {'/'.join(spec.key)} is listed twice ({first.where} and {spec.where})",
                path=spec.manifest,
                field="session",
                fix="give every session of an animal its own name",
            )
        seen[spec.key] = spec


# --------------------------------------------------------------------------- demo folder


def _read_folder(root: Path) -> list[SessionSpec]:
    for name in DEMO_MANIFESTS:
        manifest = root / name
        if manifest.is_file():
            logger.debug("using %s", manifest)
            return read_manifest(manifest, check_files=False)
    cohort_name = root.resolve().name
    try:
        cohort = safe_name(cohort_name, field="cohort")
    except CellsiftError:
        cohort = re.sub(r"[^A-Za-z0-9._+-]", "_", cohort_name).lstrip("._+-") or "cohort"
    specs = []
    for animal_dir in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
        session_dirs = sorted(
            (
                p
                for p in animal_dir.iterdir()
                if p.is_dir() and (p / DEMO_VIDEO_DIR).is_dir() and (p / DEMO_EXTRACTION).is_file()
            ),
            key=lambda p: natural_key(p.name),
        )
        for ordinal, session_dir in enumerate(session_dirs, start=1):
            try:
                animal = safe_name(animal_dir.name, field="animal")
                session = safe_name(session_dir.name, field="session")
            except CellsiftError as exc:
                raise ManifestError(
                    exc.problem, path=session_dir, field=exc.field, fix="rename the folder"
                ) from None
            digits = re.findall(r"\d+", session)
            day = int(digits[-1]) if digits else ordinal
            events = session_dir / DEMO_EVENTS
            labels = session_dir / DEMO_LABELS
            specs.append(
                SessionSpec(
                    cohort=cohort,
                    animal=animal,
                    session=session,
                    stage=session,
                    day=day,
                    video=(session_dir / DEMO_VIDEO_DIR).resolve(),
                    extraction=(session_dir / DEMO_EXTRACTION).resolve(),
                    events=events.resolve() if events.is_file() else None,
                    labels=labels.resolve() if labels.is_file() else None,
                )
            )
    if not specs:
        raise SessionNotFoundError(
            "no sessions found: the folder has no cohort.csv and no "
            f"<animal>/<session>/ folders with {DEMO_VIDEO_DIR}/ and {DEMO_EXTRACTION}",
            path=root,
            fix="give a manifest (CSV or YAML) or the folder the demo simulator wrote",
        )
    logger.info("no manifest in %s: found %d sessions by folder; stage = session name", root, len(specs))
    return specs

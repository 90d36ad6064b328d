"""Existing curation labels as training data, each stored with its source.

The manifest's ``labels`` column names a file; its format is detected from its contents
(or given as ``labels_format``):

=====================  ======================================================  ==========================
format                 file                                                    source stored
=====================  ======================================================  ==========================
``csv``                ``unit_id,label[,reason]`` for the session              ``csv`` (``simulator``
                                                                               when ``truth.json`` is beside)
``cohort_csv``         ``[cohort,]animal,session,unit_id,label[,reason]``:     ``csv``
                       one file for a whole cohort, rows of this session used
``inscopix_status``    Inscopix cell status: ``Name,Status,...`` (props        ``inscopix_cell_status``
                       export) or the traces export whose second row is
                       ``Time(s)/Cell Status``; accepted = good, rejected = bad,
                       undecided skipped; ``C07`` is unit 7
``cnmfe_deleted``      CSV of CNMF-E manual deletions: ``deleted_id`` (one     ``cnmfe_manual_deletion``
                       deleted unit per row) or ``unit_id,deleted`` (0/1);
                       deleted = bad, the other units good
``cnmfe_pair``         the CNMF-E ``.mat`` saved *after* manual curation, the  ``cnmfe_manual_deletion``
                       extraction being the one *before*: units missing
                       after = bad, kept = good (matched by ``ids``, else by
                       footprint)
=====================  ======================================================  ==========================

Labels that come inside the extraction file (CaImAn ``idx_components``, Minian
``unit_labels``, Suite2p ``iscell``) are read by the extraction readers. All end up in the
lake's ``labels`` table with their ``source``, never mixed with model output.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Any, Final

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.readers.base import LABEL_VALUES, Extraction, UnitLabels, one_line
from cellsift.pipeline.readers.cnmfe import CnmfeMatReader
from cellsift.schemas import TRUTH_FILE, InputFormatError

logger = logging.getLogger(__name__)

__all__ = [
    "LABELS_FORMATS",
    "check_label_ids",
    "detect_labels_format",
    "labels_rows",
    "match_before_after",
    "read_labels_file",
]

LABELS_FORMATS: Final = ("csv", "cohort_csv", "inscopix_status", "cnmfe_deleted", "cnmfe_pair")
_GOOD: Final = {"good", "1", "true", "yes", "keep", "kept", "accepted", "accept", "cell"}
_BAD: Final = {"bad", "0", "false", "no", "exclude", "excluded", "rejected", "reject", "not_cell", "artifact"}
_DELETED_COLUMNS: Final = ("deleted_id", "deleted_unit_id", "deleted_ids", "deleted")


def _read_rows(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return [
                [c.strip() for c in row] for row in csv.reader(handle) if row and any(c.strip() for c in row)
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputFormatError(
            f"cannot read the labels ({one_line(exc)})",
            path=path,
            field="labels",
            fix="save it as a UTF-8 CSV with a header line",
        ) from None


def detect_labels_format(path: Path) -> str:
    """Return the labels format of ``path`` from its suffix and header."""
    if path.suffix.lower() == ".mat":
        return "cnmfe_pair"
    rows = _read_rows(path)
    if not rows:
        raise InputFormatError(
            "the labels file is empty", path=path, field="labels", fix="write a header and one row per unit"
        )
    header = [h.lower() for h in rows[0]]
    if len(rows) > 1 and "cell status" in rows[1][0].lower():
        return "inscopix_status"
    if "status" in header or "cell_status" in header:
        return "inscopix_status"
    if any(c in header for c in _DELETED_COLUMNS):
        return "cnmfe_deleted"
    if "animal" in header and "session" in header:
        return "cohort_csv"
    return "csv"


def _unit_id(text: str, *, path: Path, line: int, column: str) -> int:
    try:
        value = float(text)
        if not value.is_integer():
            raise ValueError
        return int(value)
    except ValueError:
        raise InputFormatError(
            f"line {line}: unit id '{text}' is not a whole number",
            path=path,
            field=column,
            fix="use the extraction's unit ids",
        ) from None


def _label(text: str, *, path: Path, line: int) -> str:
    value = text.strip().lower()
    if value in _GOOD:
        return "good"
    if value in _BAD:
        return "bad"
    raise InputFormatError(
        f"line {line}: label '{text}' is not one of {', '.join(LABEL_VALUES)}",
        path=path,
        field="label",
        fix="label each unit 'good' or 'bad' (1/0, keep/exclude and accepted/rejected work too)",
    )


def _columns(header: list[str], required: tuple[str, ...], *, path: Path, example: str) -> dict[str, int]:
    lower = [h.lower() for h in header]
    index = {name: i for i, name in enumerate(lower)}
    for column in required:
        if column not in index:
            raise InputFormatError(
                f"no '{column}' column (header: {', '.join(header) or 'empty'})",
                path=path,
                field=column,
                fix=f"write the header '{example}'",
            )
    return index


def _cell(row: list[str], index: dict[str, int], name: str) -> str:
    i = index.get(name)
    return row[i] if i is not None and i < len(row) else ""


def _plain_csv(path: Path, *, animal: str, session: str, cohort: str, cohort_wide: bool) -> UnitLabels | None:
    rows = _read_rows(path)
    required = ("animal", "session", "unit_id", "label") if cohort_wide else ("unit_id", "label")
    example = "animal,session,unit_id,label,reason" if cohort_wide else "unit_id,label,reason"
    if not rows:
        raise InputFormatError(
            "the labels file is empty", path=path, field="labels", fix=f"write the header '{example}'"
        )
    index = _columns(rows[0], required, path=path, example=example)
    ids: list[int] = []
    labels: list[str] = []
    reasons: list[str | None] = []
    for line, row in enumerate(rows[1:], start=2):
        if cohort_wide:
            if _cell(row, index, "animal") != animal or _cell(row, index, "session") != session:
                continue
            if "cohort" in index and _cell(row, index, "cohort") not in ("", cohort):
                continue
        ids.append(_unit_id(_cell(row, index, "unit_id"), path=path, line=line, column="unit_id"))
        labels.append(_label(_cell(row, index, "label"), path=path, line=line))
        reasons.append(_cell(row, index, "reason") or None)
    if cohort_wide and not ids:
        logger.warning("%s: no labels for %s/%s", path, animal, session)
        return None
    source = "simulator" if (path.parent / TRUTH_FILE).is_file() else "csv"
    return UnitLabels(np.asarray(ids, dtype=np.int64), tuple(labels), source=source, reasons=tuple(reasons))


def _inscopix(path: Path) -> UnitLabels:
    rows = _read_rows(path)
    names: list[str]
    statuses: list[str]
    if (
        len(rows) > 1 and "cell status" in rows[1][0].lower()
    ):  # traces export: names in row 1, status in row 2
        names, statuses = rows[0][1:], rows[1][1:]
    else:
        index = _columns(rows[0], (), path=path, example="Name,Status")
        name_col = next((index[c] for c in ("name", "cell_name", "cell", "unit_id") if c in index), None)
        status_col = next((index[c] for c in ("status", "cell_status") if c in index), None)
        if name_col is None or status_col is None:
            raise InputFormatError(
                f"no cell name and status columns (header: {', '.join(rows[0])})",
                path=path,
                field="status",
                fix="export the cell set's properties (Name,Status,...) or give labels_format",
            )
        names = [r[name_col] if name_col < len(r) else "" for r in rows[1:]]
        statuses = [r[status_col] if status_col < len(r) else "" for r in rows[1:]]
    ids: list[int] = []
    labels: list[str] = []
    for line, (name, status) in enumerate(zip(names, statuses, strict=False), start=2):
        match = re.search(r"(\d+)\s*$", name)
        if match is None:
            raise InputFormatError(
                f"cell name '{name}' holds no number",
                path=path,
                field="name",
                fix="keep Inscopix cell names (C00, C01, ...) or use unit ids",
            )
        value = status.strip().lower()
        if value in ("undecided", ""):
            continue
        if value not in ("accepted", "rejected"):
            raise InputFormatError(
                f"entry {line - 1}: cell status '{status}' is not accepted, rejected or undecided",
                path=path,
                field="status",
                fix="export the cell status from Inscopix Data Processing",
            )
        ids.append(int(match.group(1)))
        labels.append("good" if value == "accepted" else "bad")
    return UnitLabels(np.asarray(ids, dtype=np.int64), tuple(labels), source="inscopix_cell_status")


def _deleted_csv(path: Path, unit_ids: np.ndarray) -> UnitLabels:
    rows = _read_rows(path)
    index = _columns(rows[0], (), path=path, example="deleted_id")
    if "unit_id" in index and "deleted" in index:
        flags: dict[int, bool] = {}
        for line, row in enumerate(rows[1:], start=2):
            uid = _unit_id(_cell(row, index, "unit_id"), path=path, line=line, column="unit_id")
            flags[uid] = (
                _label(_cell(row, index, "deleted"), path=path, line=line) == "good"
            )  # 1/true = deleted
        ids = np.asarray(sorted(flags), dtype=np.int64)
        return UnitLabels(
            ids,
            tuple("bad" if flags[i] else "good" for i in ids),
            source="cnmfe_manual_deletion",
            reasons=tuple("manually_deleted" if flags[i] else None for i in ids),
        )
    column = next(c for c in _DELETED_COLUMNS if c in index)
    deleted = {
        _unit_id(_cell(row, index, column), path=path, line=line, column=column)
        for line, row in enumerate(rows[1:], start=2)
        if _cell(row, index, column)
    }
    unknown = sorted(deleted - set(unit_ids.tolist()))
    if unknown:
        raise InputFormatError(
            f"deleted ids the extraction does not have (e.g. {unknown[0]})",
            path=path,
            field=column,
            fix="list the ids of the extraction the deletions were made in",
        )
    return UnitLabels(
        unit_ids.astype(np.int64),
        tuple("bad" if u in deleted else "good" for u in unit_ids.tolist()),
        source="cnmfe_manual_deletion",
        reasons=tuple("manually_deleted" if u in deleted else None for u in unit_ids.tolist()),
    )


def match_before_after(
    before: Extraction, after: Extraction, *, path: Path, min_corr: float = 0.9
) -> UnitLabels:
    """Label the units of ``before`` by whether they survive in ``after`` (CNMF-E curation).

    Units are matched by ``ids`` when both files store them, else by footprint
    correlation (>= ``min_corr``; a kept unit whose footprint was trimmed still matches).
    Units of ``after`` that match nothing (merged or added) are ignored with a warning.

    Raises
    ------
    InputFormatError
        The files have different frame sizes, or ``after`` has ids ``before`` lacks.
    """
    if after.A.shape[0] != before.A.shape[0]:
        raise InputFormatError(
            f"the curated file has {after.A.shape[0]} pixels per footprint, the extraction {before.A.shape[0]}",
            path=path,
            field="labels",
            fix="pair the curated CNMF-E file with the extraction it was curated from",
        )
    if before.ids_from_file and after.ids_from_file:
        extra = np.setdiff1d(after.unit_ids, before.unit_ids)
        if extra.size:
            raise InputFormatError(
                f"the curated file has ids the extraction lacks (e.g. {int(extra[0])})",
                path=path,
                field="ids",
                fix="pair the curated CNMF-E file with the extraction it was curated from",
            )
        kept = np.isin(before.unit_ids, after.unit_ids)
    else:
        a = sp.csc_matrix(before.A, dtype=np.float64)
        b = sp.csc_matrix(after.A, dtype=np.float64)
        if after.pixel_order != before.pixel_order:
            raise InputFormatError(
                "the curated file stores pixels in another order",
                path=path,
                field="A",
                fix="save both files with the same CNMF-E version",
            )
        na = np.sqrt(np.asarray(a.multiply(a).sum(axis=0)).ravel()) + 1e-12
        nb = np.sqrt(np.asarray(b.multiply(b).sum(axis=0)).ravel()) + 1e-12
        sim = (
            np.asarray((a.T @ b).todense()) / na[:, None] / nb[None, :]
        )  # cosine similarity (K_before, K_after)
        kept = np.zeros(before.n_units, dtype=bool)
        unmatched = 0
        for j in range(after.n_units):
            i = int(np.argmax(sim[:, j]))
            if sim[i, j] >= min_corr and not kept[i]:
                kept[i] = True
            else:
                unmatched += 1
        if unmatched:
            logger.warning(
                "%s: %d curated units match no unit of the extraction (merged or edited); ignored",
                path,
                unmatched,
            )
    return UnitLabels(
        before.unit_ids.astype(np.int64),
        tuple("good" if k else "bad" for k in kept),
        source="cnmfe_manual_deletion",
        reasons=tuple(None if k else "manually_deleted" for k in kept),
    )


def read_labels_file(
    path: Path,
    *,
    ext: Extraction,
    fmt: str | None,
    cohort: str,
    animal: str,
    session: str,
) -> UnitLabels | None:
    """Read a labels file of any :data:`LABELS_FORMATS` and check it against ``ext``.

    Returns
    -------
    UnitLabels or None
        ``None`` when a cohort-wide file has no rows for this session.

    Raises
    ------
    InputFormatError
        Unreadable file, missing columns, bad values, unit ids the extraction does not
        have, a unit labelled twice.
    """
    name = (fmt or detect_labels_format(path)).strip().lower()
    if name not in LABELS_FORMATS:
        raise InputFormatError(
            f"unknown labels format '{fmt}'",
            path=path,
            field="labels_format",
            fix=f"use one of: {', '.join(LABELS_FORMATS)}",
        )
    if name == "csv":
        labels = _plain_csv(path, animal=animal, session=session, cohort=cohort, cohort_wide=False)
    elif name == "cohort_csv":
        labels = _plain_csv(path, animal=animal, session=session, cohort=cohort, cohort_wide=True)
    elif name == "inscopix_status":
        labels = _inscopix(path)
    elif name == "cnmfe_deleted":
        labels = _deleted_csv(path, ext.unit_ids)
    else:
        labels = match_before_after(ext, CnmfeMatReader(path).read(), path=path)
    if labels is None:
        return None
    check_label_ids(labels, ext, path=path)
    return labels


def check_label_ids(labels: UnitLabels, ext: Extraction, *, path: Path) -> None:
    """Raise if labels name units the extraction lacks, or a unit twice."""
    unknown = np.setdiff1d(labels.unit_ids, ext.unit_ids)
    if unknown.size:
        raise InputFormatError(
            f"labels name {unknown.size} unit ids the extraction does not have (e.g. {unknown[0]})",
            path=path,
            field="unit_id",
            fix="pair the labels with the extraction they were made for",
        )
    if len(np.unique(labels.unit_ids)) != len(labels.unit_ids):
        raise InputFormatError(
            "a unit is labelled more than once", path=path, field="unit_id", fix="keep one row per unit"
        )


def labels_rows(all_labels: list[UnitLabels]) -> dict[str, list[Any]]:
    """Columns ``unit_id, label, reason, source`` of several label sets, one row per unit and source."""
    out: dict[str, list[Any]] = {"unit_id": [], "label": [], "reason": [], "source": []}
    for labels in all_labels:
        out["unit_id"] += [int(u) for u in labels.unit_ids]
        out["label"] += list(labels.labels)
        out["reason"] += list(labels.reasons)
        out["source"] += [labels.source] * len(labels.labels)
    return out

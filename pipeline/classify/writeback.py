"""Classification results into the lake: the ``cells`` table's columns and the provenance record.

:func:`write_predictions` rewrites each scored session's ``cells`` file with ``p_good,
label, reason, model_id, ood_score, ood_flag``; :func:`write_classify_record` writes
``runs/classify-<run id>.json`` (model, card hash, versions, sessions scored and failed,
with each failure's type and traceback).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from cellsift.pipeline.classify.card import ModelCard
from cellsift.pipeline.classify.scoring import OUTPUT_COLUMNS
from cellsift.pipeline.executor import SessionOutcome
from cellsift.schemas import LakeError

logger = logging.getLogger(__name__)

__all__ = ["write_classify_record", "write_predictions"]

_KEY_COLUMNS: Final = ("cohort", "animal", "session")


def write_classify_record(
    root: Path,
    run_id: str,
    model_dir: str,
    card: ModelCard,
    preds: pd.DataFrame,
    failed: Sequence[SessionOutcome],
    skipped: int,
    strict: bool,
) -> Path:
    """Write the provenance record of a classification: model, card hash, versions, sessions scored and failed.

    Parameters
    ----------
    root
        The lake.
    run_id
        The record's id (``classify-<run id>``; also its file name).
    model_dir
        The model folder used.
    card
        Its card.
    preds
        The predictions (``cohort, animal, session, unit_id, label``, ...).
    failed
        Outcomes of the sessions that failed (message, exception type, traceback).
    skipped
        Sessions left alone as up to date.
    strict
        Whether card mismatches were refused.

    Returns
    -------
    pathlib.Path
        ``LAKE/runs/<run_id>.json``.
    """
    from cellsift.catalog import LakeLayout, write_json_atomic
    from cellsift.pipeline._util import utc_now
    from cellsift.pipeline.provenance import host_info, package_versions

    scored = (
        preds.groupby(list(_KEY_COLUMNS))
        .agg(n=("unit_id", "size"), good=("label", lambda s: int((s == "good").sum())))
        .reset_index()
        if len(preds)
        else pd.DataFrame(columns=[*_KEY_COLUMNS, "n", "good"])
    )
    record = {
        "run_id": run_id,
        "kind": "classify",
        "finished_at": utc_now().isoformat(),
        "model": {
            "model_id": card.model_id,
            "kind": card.kind,
            "path": model_dir,
            "card_hash": card.card_hash(),
            "decision_threshold": dict(card.params).get("decision_threshold"),
        },
        "strict": strict,
        "versions": package_versions(),
        "host": host_info(),
        "sessions": [
            {
                "cohort": r.cohort,
                "animal": r.animal,
                "session": r.session,
                "n_cells": int(r.n),
                "n_good": int(r.good),
            }
            for r in scored.itertuples()
        ],
        "failed": [
            {
                "cohort": o.cohort,
                "animal": o.animal,
                "session": o.session,
                "error": o.error,
                "error_type": o.error_type,
                "traceback": o.traceback,
            }
            for o in failed
        ],
        "skipped_up_to_date": skipped,
    }
    path = LakeLayout(root).runs / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, path)
    return path


def write_predictions(lake: str | PathLike[str], predictions: pd.DataFrame) -> int:
    """Fill the classification columns of the ``cells`` table from ``predictions``.

    Each session's Parquet file is rewritten whole (atomically) with ``p_good, label,
    reason, model_id, ood_score, ood_flag`` set for the predicted units; other columns,
    ``overlap_flag`` included, are unchanged. Holds the lake's run lock while writing.

    Returns
    -------
    int
        Number of session files rewritten.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cellsift.catalog import LakeLayout, run_lock, write_parquet_atomic
    from cellsift.schemas import CELLS_SCHEMA

    layout = LakeLayout(Path(lake))
    cols = [c for c in OUTPUT_COLUMNS if c != "unit_id"]
    n = 0
    with run_lock(layout.root, run_id=f"classify-{uuid.uuid4().hex[:12]}"):
        for (cohort, animal, session), pred in predictions.groupby(list(_KEY_COLUMNS), sort=True):
            path = layout.table_file("cells", str(cohort), str(animal), str(session))
            if not path.exists():
                raise LakeError(
                    "cells file of a scored session is missing",
                    path=path,
                    fix="run 'cellsift run' and classify again",
                )
            df = pq.read_table(path).to_pandas()
            idx = pd.Index(pred["unit_id"].to_numpy())
            pos = idx.get_indexer(df["unit_id"].to_numpy())
            hit = pos >= 0
            for c in cols:
                values = pred[c].to_numpy(dtype=object)
                col = (
                    np.array(df[c].astype(object).to_numpy(), dtype=object, copy=True)
                    if c in df
                    else np.full(len(df), None, dtype=object)
                )
                col[hit] = values[pos[hit]]
                df[c] = col
            out = pa.Table.from_pandas(df, schema=CELLS_SCHEMA, preserve_index=False)
            write_parquet_atomic(out, path, tmp_root=layout.tmp)
            n += 1
    logger.info("wrote predictions for %d session(s) into %s", n, layout.tables_dir("cells"))
    return n

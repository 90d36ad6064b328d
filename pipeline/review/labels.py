"""Review labels: written to the lake's ``labels`` table at once, one file per session.

Each session's review labels live in ``tables/labels/<cohort>/<animal>/<session>/review.parquet``
beside the ingested labels (``part-0.parquet``, which ``cellsift ingest`` owns and may
replace): readers of the ``labels`` table (:func:`cellsift.open_lake`, DuckDB, training)
see both, and a re-ingest never drops a reviewer's work. Rows have the ``labels`` table's
columns with ``source = "review"`` plus ``reviewer`` and ``labelled_at`` (UTC); a cell
has at most one row per reviewer, so several reviewers' labels are kept apart.

Writes are atomic (a temporary file in ``LAKE/tmp`` and :func:`os.replace`) and serialised:
a thread lock inside the process and an exclusive ``fcntl`` lock on
``tables/labels/.review.lock`` across processes (two review servers on one lake). The
pipeline's ``run.lock`` is not taken: no pipeline stage writes these files, and a label
must not wait for an hours-long ``cellsift run``.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cellsift.catalog import LakeLayout, write_parquet_atomic
from cellsift.pipeline._util import utc_now
from cellsift.pipeline.classify import REASONS
from cellsift.schemas import LABELS_SCHEMA, ParameterError

__all__ = [
    "REVIEW_FILE",
    "REVIEW_LABELS_SCHEMA",
    "REVIEW_SOURCE",
    "LabelStore",
    "check_label",
]

#: ``source`` of every label written by the review page.
REVIEW_SOURCE: Final = "review"
#: File name of a session's review labels inside its ``labels`` table folder.
REVIEW_FILE: Final = "review.parquet"
#: The ``labels`` table's schema plus who labelled and when.
REVIEW_LABELS_SCHEMA: Final = LABELS_SCHEMA.append(pa.field("reviewer", pa.string())).append(
    pa.field("labelled_at", pa.timestamp("us", tz="UTC"))
)
_KEY: Final = ("reviewer", "unit_id")


def check_label(label: str, reason: str | None) -> tuple[str, str | None]:
    """Return ``(label, reason)`` checked: ``good``/``bad``, a reason from ``REASONS`` (bad only).

    Raises
    ------
    ParameterError
        An unknown label or reason.
    """
    if label not in ("good", "bad"):
        raise ParameterError(f"label must be 'good' or 'bad', got '{str(label)[:20]}'", field="label")
    if label == "good" or reason in (None, ""):
        return label, None
    if reason not in REASONS:
        raise ParameterError(
            f"unknown reason '{str(reason)[:40]}'", field="reason", fix=f"use one of {', '.join(REASONS)}"
        )
    return label, reason


class LabelStore:
    """Read and write review labels of one lake.

    Parameters
    ----------
    root
        The lake folder.
    """

    def __init__(self, root: Path) -> None:
        self.layout = LakeLayout(Path(root))
        self._lock = threading.Lock()

    def path(self, cohort: str, animal: str, session: str) -> Path:
        """The review-labels file of a session (names checked by the lake layout)."""
        return self.layout.table_partition("labels", cohort, animal, session) / REVIEW_FILE

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        lock_file = self.layout.tables_dir("labels") / ".review.lock"
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(lock_file, "a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def read_session(self, cohort: str, animal: str, session: str) -> pd.DataFrame:
        """One session's review labels (empty frame with the schema's columns if none)."""
        path = self.path(cohort, animal, session)
        if not path.is_file():
            return REVIEW_LABELS_SCHEMA.empty_table().to_pandas()
        return pq.read_table(path).to_pandas()

    def read_all(self) -> pd.DataFrame:
        """Every review label of the lake, all reviewers."""
        folder = self.layout.tables_dir("labels")
        files = sorted(folder.rglob(REVIEW_FILE)) if folder.is_dir() else []
        if not files:
            return REVIEW_LABELS_SCHEMA.empty_table().to_pandas()
        return pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive").to_pandas()

    def set_label(
        self,
        *,
        cohort: str,
        animal: str,
        session: str,
        unit_id: int,
        label: str,
        reason: str | None,
        reviewer: str,
    ) -> dict[str, object]:
        """Write (or replace) ``reviewer``'s label of one cell; return the row written."""
        label, reason = check_label(label, reason)
        row = {
            "cohort": cohort,
            "animal": animal,
            "session": session,
            "unit_id": int(unit_id),
            "label": label,
            "reason": reason,
            "source": REVIEW_SOURCE,
            "reviewer": reviewer,
            "labelled_at": utc_now(),
        }

        def update(frame: pd.DataFrame) -> pd.DataFrame:
            keep = ~((frame["reviewer"] == reviewer) & (frame["unit_id"] == int(unit_id)))
            return pd.concat([frame[keep], pd.DataFrame([row])], ignore_index=True)

        self._update(cohort, animal, session, update)
        return row

    def clear_label(self, *, cohort: str, animal: str, session: str, unit_id: int, reviewer: str) -> bool:
        """Remove ``reviewer``'s label of one cell; return whether there was one."""
        found = []

        def update(frame: pd.DataFrame) -> pd.DataFrame:
            hit = (frame["reviewer"] == reviewer) & (frame["unit_id"] == int(unit_id))
            found.append(bool(hit.any()))
            return frame[~hit]

        self._update(cohort, animal, session, update)
        return found[0]

    def _update(
        self, cohort: str, animal: str, session: str, change: Callable[[pd.DataFrame], pd.DataFrame]
    ) -> None:
        path = self.path(cohort, animal, session)
        with self._exclusive():
            frame = change(self.read_session(cohort, animal, session))
            if len(frame) == 0:
                path.unlink(missing_ok=True)
                return
            frame = frame.sort_values(list(_KEY), kind="stable").reset_index(drop=True)
            table = pa.Table.from_pandas(frame, schema=REVIEW_LABELS_SCHEMA, preserve_index=False)
            write_parquet_atomic(table, path, tmp_root=self.layout.tmp)

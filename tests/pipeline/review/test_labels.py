"""Review labels: written at once, atomically, per reviewer, visible as the lake's labels table."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import cellsift
from cellsift.pipeline.review import REVIEW_FILE, REVIEW_SOURCE, LabelStore, check_label
from cellsift.schemas import LakeError, ParameterError


def _first_cells(lake, n):
    cells = cellsift.open_lake(lake).cells.sort_values(["animal", "session", "unit_id"])
    return cells.head(n)[["cohort", "animal", "session", "unit_id"]].to_dict("records")


def test_labels_are_written_per_reviewer_and_seen_by_the_lake(review_lake):
    store = LabelStore(review_lake)
    a, b = _first_cells(review_lake, 2)
    store.set_label(**a, label="good", reason=None, reviewer="ana")
    store.set_label(**a, label="bad", reason="background", reviewer="ben")
    store.set_label(**b, label="bad", reason="no_transients", reviewer="ana")
    store.set_label(**b, label="good", reason="overlap", reviewer="ana")  # replaces; reason dropped for good
    path = review_lake / "tables" / "labels" / a["cohort"] / a["animal"] / a["session"] / REVIEW_FILE
    assert path.is_file()
    lake = cellsift.open_lake(review_lake)
    review = lake.labels[lake.labels["source"] == REVIEW_SOURCE]
    assert len(review) == 3
    assert set(review["reviewer"]) == {"ana", "ben"}
    mine = review[(review["reviewer"] == "ana") & (review["unit_id"] == b["unit_id"])]
    assert mine["label"].tolist() == ["good"] and mine["reason"].isna().all()
    simulator = lake.labels.query("source == 'simulator'")
    assert len(simulator) > 0  # the ingested labels are still there, beside the review file
    counted = lake.sql(
        "SELECT reviewer, count(*) AS n FROM labels WHERE source = 'review' GROUP BY 1 ORDER BY 1"
    )
    assert counted.to_dict("list") == {"reviewer": ["ana", "ben"], "n": [2, 1]}
    assert store.clear_label(**a, reviewer="ana") is True
    assert store.clear_label(**a, reviewer="ana") is False
    assert len(store.read_all()) == 2
    assert not list((review_lake / "tmp").glob("*.parquet"))  # nothing staged is left behind


def test_check_label_refuses_unknown_values():
    assert check_label("bad", "background") == ("bad", "background")
    assert check_label("good", "background") == ("good", None)
    with pytest.raises(ParameterError, match="label must be"):
        check_label("maybe", None)
    with pytest.raises(ParameterError, match="unknown reason"):
        check_label("bad", "ugly")


def test_names_that_are_not_the_lake_s_cannot_become_paths(review_lake):
    store = LabelStore(review_lake)
    with pytest.raises(LakeError):
        store.set_label(
            cohort="..", animal="x", session="y", unit_id=1, label="good", reason=None, reviewer="ana"
        )


def test_concurrent_writers_lose_nothing(review_lake):
    """Threads of one server and a second process write labels of one session at once."""
    cells = [c for c in _first_cells(review_lake, 40)]
    session = (cells[0]["cohort"], cells[0]["animal"], cells[0]["session"])
    cells = [c for c in cells if (c["cohort"], c["animal"], c["session"]) == session][:12]
    store = LabelStore(review_lake)
    script = (
        "import sys; from pathlib import Path; from cellsift.pipeline.review import LabelStore\n"
        "s = LabelStore(Path(sys.argv[1]))\n"
        "for u in sys.argv[5:]:\n"
        "    s.set_label(cohort=sys.argv[2], animal=sys.argv[3], session=sys.argv[4], unit_id=int(u),"
        " label='bad', reason='background', reviewer='other')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(review_lake), *session, *[str(c["unit_id"]) for c in cells]]
    )

    def write(cell):
        store.set_label(**cell, label="good", reason=None, reviewer="ana")

    threads = [threading.Thread(target=write, args=(c,)) for c in cells]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert proc.wait(timeout=120) == 0
    frame = store.read_session(*session)
    assert sorted(frame[frame["reviewer"] == "ana"]["unit_id"]) == sorted(c["unit_id"] for c in cells)
    assert sorted(frame[frame["reviewer"] == "other"]["unit_id"]) == sorted(c["unit_id"] for c in cells)

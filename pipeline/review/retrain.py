"""Retrain from the review page: fine-tune on the review labels in the background, register, re-score.

:class:`RetrainJob` runs one job at a time in a daemon thread of the review server:

1. read the lake's review labels (``labels`` table, ``source = "review"``); at least
   ``min_labels`` cells of both classes are needed;
2. fine-tune the base model on them (the ``cellsift train --base`` path,
   :func:`cellsift.pipeline.classify.fine_tune_on_lake`) and register it as
   ``review-<UTC time>-n<labels>``; a base whose model card refuses the lake's cells (an
   older feature set) is replaced by a new ``features`` model trained on the same labels,
   and the progress says so;
3. wait until no pipeline run holds ``LAKE/run.lock``, then re-score every session with
   the new model (:func:`cellsift.pipeline.classify.classify_lake`, in-process), which
   rewrites the ``cells`` tables atomically under the run lock;
4. append ``(n labels, out-of-fold balanced accuracy)`` to ``LAKE/review/history.json``
   (the page plots it) and call ``on_done`` so the server reloads cells and queue.

Progress lines are the classifier's own (``cellsift.progress`` logger) plus the job's.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cellsift.catalog import wait_until_free, write_json_atomic
from cellsift.pipeline._util import utc_now
from cellsift.pipeline.classify import (
    PROGRESS_LOGGER,
    LabelSpec,
    classify_lake,
    cross_validate_on_lake,
    fine_tune_on_lake,
    train_on_lake,
)
from cellsift.pipeline.review.labels import REVIEW_SOURCE, LabelStore
from cellsift.schemas import CellsiftError, ModelMismatchError

logger = logging.getLogger(__name__)

__all__ = ["HISTORY_FILE", "RetrainJob", "RetrainParams", "read_history"]

#: The retrain history, relative to the lake.
HISTORY_FILE: Final = Path("review") / "history.json"


@dataclass(frozen=True)
class RetrainParams:
    """What a retrain does.

    Attributes
    ----------
    base
        Model to fine-tune (``default``, a registered id or a folder).
    fallback_kind
        Kind trained anew when the base's card refuses the cells; ``None``: fail instead.
    min_labels
        Fewest review labels (both classes present) to start.
    rescore
        Re-score the lake with the new model.
    seed
        Random seed.
    """

    base: str = "default"
    fallback_kind: str | None = "features"
    min_labels: int = 6
    rescore: bool = True
    seed: int = 0


def read_history(root: Path) -> list[dict[str, Any]]:
    """The retrain history of a lake (oldest first; empty if none)."""
    path = Path(root) / HISTORY_FILE
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text()))
    except (OSError, ValueError):
        logger.warning("unreadable retrain history %s: ignored", path)
        return []


class _Lines(logging.Handler):
    def __init__(self, sink: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink(record.getMessage())


class RetrainJob:
    """One background retrain at a time (see the module docstring).

    Parameters
    ----------
    root
        The lake folder.
    params
        What the job does.
    on_done
        Called with the new model id after a successful job (in the job's thread).
    """

    def __init__(
        self,
        root: Path,
        params: RetrainParams = RetrainParams(),
        *,
        on_done: Callable[[str], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.params = params
        self.on_done = on_done
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._lines: deque[str] = deque(maxlen=60)
        self._state: dict[str, Any] = {"state": "idle", "model_id": None, "error": None}

    def _say(self, line: str) -> None:
        with self._lock:
            self._lines.append(f"{time.strftime('%H:%M:%S')} {line}")

    def status(self) -> dict[str, Any]:
        """``state`` (idle/running/done/failed), ``model_id``, ``error``, ``lines``, ``history``."""
        with self._lock:
            return {**self._state, "lines": list(self._lines), "history": read_history(self.root)}

    def start(self) -> bool:
        """Start a job; ``False`` if one is running already."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self._lines.clear()
            self._state = {
                "state": "running",
                "model_id": None,
                "error": None,
                "started_at": utc_now().isoformat(),
            }
            self._thread = threading.Thread(target=self._run, name="cellsift-retrain", daemon=True)
            self._thread.start()
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running job; ``True`` if none is running afterwards."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _run(self) -> None:
        progress = logging.getLogger(PROGRESS_LOGGER)
        handler = _Lines(self._say)
        level = progress.level
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
        try:
            model_id = self._train_and_rescore()
            with self._lock:
                self._state.update(state="done", model_id=model_id, finished_at=utc_now().isoformat())
            if self.on_done is not None:
                self.on_done(model_id)
        except CellsiftError as exc:
            self._fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - a background job reports every failure to the page
            logger.exception("retrain failed")
            self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            progress.removeHandler(handler)
            progress.setLevel(level)

    def _fail(self, message: str) -> None:
        self._say(f"failed: {message}")
        with self._lock:
            self._state.update(state="failed", error=message, finished_at=utc_now().isoformat())

    def _train_and_rescore(self) -> str:
        labels = LabelStore(self.root).read_all()
        n, n_good = labels.drop_duplicates(["cohort", "animal", "session", "unit_id"]).pipe(
            lambda f: (len(f), int((f["label"] == "good").sum()))
        )
        if n < self.params.min_labels or n_good == 0 or n_good == n:
            raise CellsiftError(
                f"{n} labelled cells ({n_good} good): too few to retrain",
                field="labels",
                fix=f"label at least {self.params.min_labels} cells, good and bad ones",
            )
        model_id = f"review-{utc_now():%Y%m%dT%H%M%S}-n{n}"
        spec = LabelSpec(sources=(REVIEW_SOURCE,))
        self._say(f"fine-tuning {self.params.base} on {n} review labels ({n_good} good) -> {model_id}")
        t0 = time.perf_counter()
        try:
            model, _ = fine_tune_on_lake(
                self.root, base=self.params.base, labels=spec, model_id=model_id, seed=self.params.seed
            )
        except ModelMismatchError as exc:
            if self.params.fallback_kind is None:
                raise
            self._say(
                f"base model does not fit these cells ({exc.problem}); training a new {self.params.fallback_kind} model instead"
            )
            model, _ = train_on_lake(
                self.root,
                kind=self.params.fallback_kind,
                labels=spec,
                model_id=model_id,
                seed=self.params.seed,
            )
        self._say(f"registered {model_id} in {time.perf_counter() - t0:.1f} s")
        entry = {
            "model_id": model_id,
            "n_labels": n,
            "n_good": n_good,
            "kind": model.kind,
            "balanced_accuracy": self._oof(model, spec),
        }
        if self.params.rescore:
            self._say("re-scoring the lake with the new model...")
            wait_until_free(self.root, wait=True, poll_s=1.0, log=self._say)
            scored = classify_lake(self.root, model_id, client=None)
            failed = scored.attrs.get("failed") or []
            self._say(
                f"re-scored {len(scored)} cells" + (f"; {len(failed)} session(s) failed" if failed else "")
            )
        write_json_atomic(
            [*read_history(self.root), {**entry, "at": utc_now().isoformat()}], self.root / HISTORY_FILE
        )
        return model_id

    def _oof(self, model: Any, spec: LabelSpec) -> float | None:
        """Out-of-fold balanced accuracy from the model's card, else a grouped CV of its kind."""
        card = getattr(model, "card", None)
        oof = dict(card.metrics).get("out_of_fold", {}).get("p_good") if card is not None else None
        if isinstance(oof, dict) and oof.get("balanced_accuracy") is not None:
            return round(float(oof["balanced_accuracy"]), 4)
        try:
            metrics = cross_validate_on_lake(
                self.root, kind=model.kind, labels=spec, seed=self.params.seed, n_folds=3
            )
            return round(float(metrics["p_good"]["balanced_accuracy"]), 4)
        except (CellsiftError, ValueError, KeyError) as exc:
            self._say(f"no out-of-fold estimate ({exc})")
            return None

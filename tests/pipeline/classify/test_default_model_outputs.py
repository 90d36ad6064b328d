"""The shipped model, fed fixed inputs, gives fixed outputs.

``default_model_outputs.json`` holds the model's ``p_good``, OOD scores and reasons on a
fixed synthetic set of cells, with the SHA-256 of every weight file they came from. When
the shipped model is rebuilt, regenerate it (and look at the diff)::

    .venv/bin/python -m tests.pipeline.classify.test_default_model_outputs
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cellsift.pipeline.classify import load_model
from cellsift.pipeline.classify.clip_prep import prepare_clips
from cellsift.pipeline.classify.data import CellData
from cellsift.pipeline.classify.store import DEFAULT_MODEL_DIR
from cellsift.schemas import CARD_FILE
from tests.pipeline.classify.synthetic import raw_clips, synthetic_cells

GOLDEN = Path(__file__).with_name("default_model_outputs.json")


def _inputs() -> CellData:
    base = synthetic_cells(24, seed=5, clips=False)
    rng = np.random.default_rng(5)
    raw, fp, nb, valid = raw_clips(base.y == 1, rng, k=3, s=32)
    clips = prepare_clips(raw, fp, nb, valid, n_before=10, model_crop=24, pool=2)
    table = base.table.assign(overlap_partner=[None] * len(base), fps=20.0)
    return CellData(table=table, clips=clips, y=base.y, reasons=base.reasons, fps=20.0)


def _outputs() -> dict[str, object]:
    model = load_model("default")
    data = _inputs()
    p, _ = model.predict(data)
    score, flag = model.ood_scores(data)
    card = json.loads((DEFAULT_MODEL_DIR / CARD_FILE).read_text())
    return {
        "model_id": model.model_id,
        "files": card["files"],
        "p_good": [round(float(v), 5) for v in p],
        "ood_score": [round(float(v), 4) for v in score],
        "reason": [str(r) for r in model.predict_reason(data)],
    }


def test_shipped_model_gives_its_recorded_outputs():
    expected = json.loads(GOLDEN.read_text())
    got = _outputs()
    assert got["files"] == expected["files"], "the shipped model changed: regenerate the golden file"
    np.testing.assert_allclose(got["p_good"], expected["p_good"], atol=2e-5)
    np.testing.assert_allclose(got["ood_score"], expected["ood_score"], rtol=1e-3, atol=1e-3)
    assert got["reason"] == expected["reason"]


if __name__ == "__main__":  # pragma: no cover - regenerates the golden file
    GOLDEN.write_text(json.dumps(_outputs(), indent=1) + "\n")
    print(f"wrote {GOLDEN}")

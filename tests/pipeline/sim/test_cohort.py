"""Tests of the simulated demo cohort: files, formats, determinism, labels and truth."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from scipy import ndimage

from cellsift.pipeline.sim import ARTIFACT_REASONS, MANIFEST_NAME, SimulationConfig, simulate_cohort
from cellsift.pipeline.sim.adex import FIRING_CLASSES
from tests.conftest import tiny_config

SMALL = tiny_config(n_animals=1, stages=("conditioning", "safety"), n_frames=1100, cell_density=30.0, seed=11)
# one session at the default frame size: enough units for every artifact reason
WIDE = SimulationConfig(n_animals=1, stages=("conditioning",), n_frames=400, seed=3)


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def _decode(folder: Path) -> tuple[list[int], np.ndarray]:
    """Frames per AVI chunk and all frames of a miniscope folder."""
    counts, frames = [], []
    for f in sorted(folder.glob("*.avi"), key=lambda p: int(p.stem)):
        with av.open(str(f)) as c:
            fr = [x.to_ndarray() for x in c.decode(video=0)]
        counts.append(len(fr))
        frames += fr
    return counts, np.stack(frames)


def _load_results(path: Path):  # noqa: ANN202 - scipy mat_struct
    return scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)["results"]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small")
    simulate_cohort(out, SMALL, n_workers=1)
    return out


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wide")
    simulate_cohort(out, WIDE, n_workers=1)
    return out / "m01" / "d1_conditioning"


# --------------------------------------------------------------------------- layout


def test_layout_and_headers(small: Path) -> None:
    header, rows = _read_csv(small / MANIFEST_NAME)
    assert header == "cohort,animal,session,stage,day,video,extraction,events,labels,fps".split(",")
    assert [(r["session"], r["stage"], r["day"]) for r in rows] == [
        ("d1_conditioning", "conditioning", "1"),
        ("d2_safety", "safety", "2"),
    ]
    for r in rows:
        assert r["cohort"] == "tiny" and r["animal"] == "m01" and float(r["fps"]) == 20.0
        for key in ("video", "extraction", "events", "labels"):
            assert not Path(r[key]).is_absolute()
            assert (small / r[key]).exists(), r[key]
        sess = small / r["animal"] / r["session"]
        scope = sess / "miniscope"
        assert _read_csv(scope / "timeStamps.csv")[0] == ["Frame Number", "Time Stamp (ms)", "Buffer Index"]
        assert _read_csv(sess / "labels.csv")[0] == ["unit_id", "label", "reason"]
        assert _read_csv(sess / "events.csv")[0] == ["event", "onset_s", "offset_s"]
        meta = json.loads((scope / "metaData.json").read_text())
        assert meta["deviceType"] == "Miniscope_V4_BNO" and meta["deviceName"] == "Miniscope"
        assert meta["ROI"] == {"height": 64, "width": 64, "leftEdge": 0, "topEdge": 0}
        assert meta["frameRate"] == "20FPS" and meta["framesPerFile"] == 1000
        assert meta["compression"] == "FFV1" and meta["gain"] == "Low" and "ledPower" in meta
        truth = json.loads((sess / "truth.json").read_text())
        assert truth["config"]["seed"] == 11 and truth["stage"] == r["stage"]


def test_avi_chunks_decode(small: Path) -> None:
    counts, frames = _decode(small / "m01" / "d1_conditioning" / "miniscope")
    assert counts == [1000, 100]
    assert frames.shape == (1100, 64, 64) and frames.dtype == np.uint8
    # 1-photon look: a bright, smooth background, not clipped
    assert 30 <= np.median(frames) <= 200
    assert (frames == 255).mean() < 1e-3 and (frames == 0).mean() < 1e-3
    with av.open(str(small / "m01" / "d1_conditioning" / "miniscope" / "0.avi")) as c:
        assert c.streams.video[0].codec_context.name == "ffv1"


def test_grey_codec(tmp_path: Path) -> None:
    cfg = SimulationConfig(
        n_animals=1, stages=("safety",), n_frames=60, height=32, width=40, video_codec="gray"
    )
    simulate_cohort(tmp_path, cfg)
    scope = tmp_path / "m01" / "d1_safety" / "miniscope"
    with av.open(str(scope / "0.avi")) as c:
        st = c.streams.video[0]
        assert st.codec_context.name == "rawvideo" and st.codec_context.codec_tag == "GREY"
    counts, frames = _decode(scope)
    assert counts == [60] and frames.shape == (60, 32, 40)
    assert json.loads((scope / "metaData.json").read_text())["compression"] == "GREY"


def test_timestamps(small: Path) -> None:
    _, rows = _read_csv(small / "m01" / "d2_safety" / "miniscope" / "timeStamps.csv")
    frame = np.array([int(r["Frame Number"]) for r in rows])
    ts = np.array([int(r["Time Stamp (ms)"]) for r in rows])
    assert np.array_equal(frame, np.arange(1100))
    assert ts[0] == 0 and np.all(np.diff(ts) > 0)
    assert np.all(np.abs(ts - frame * 50.0) <= 3)
    assert np.abs(np.diff(ts) - 50).max() <= 6 and np.diff(ts).std() > 0.3  # jittered


def test_events(small: Path) -> None:
    for session, shocks in (("d1_conditioning", True), ("d2_safety", False)):
        _, rows = _read_csv(small / "m01" / session / "events.csv")
        names = [r["event"] for r in rows]
        on = np.array([float(r["onset_s"]) for r in rows])
        off = np.array([float(r["offset_s"]) for r in rows])
        assert set(names) <= {"CS+", "CS-", "shock"}
        assert np.all(np.diff(on) >= 0) and np.all(off > on) and off.max() <= 55.0
        assert names.count("CS+") == names.count("CS-") >= 1
        assert ("shock" in names) == shocks
        cs_plus_off = {o for n, o in zip(names, off, strict=True) if n == "CS+"}
        for n, a, b in zip(names, on, off, strict=True):
            if n == "shock":  # co-terminates with a CS+
                assert b in cs_plus_off and b - a == pytest.approx(1.0)


# --------------------------------------------------------------------------- CNMF-E .mat


def test_mat_roundtrip(small: Path) -> None:
    sess = small / "m01" / "d1_conditioning"
    res = _load_results(sess / "cnmfe_results.mat")
    truth = json.loads((sess / "truth.json").read_text())
    d1, d2 = int(res.options.d1), int(res.options.d2)
    assert (d1, d2) == (64, 64) and float(res.Fs) == 20.0
    assert sp.issparse(res.A) and res.A.format == "csc" and res.A.dtype == np.float64
    k = res.A.shape[1]
    assert res.A.shape == (d1 * d2, k) and k == len(truth["units"]) >= 5
    for name in ("C", "C_raw", "S"):
        assert getattr(res, name).shape == (k, 1100)
    assert np.all(res.C >= 0) and np.all(res.S >= 0)
    assert res.Cn.shape == (d1, d2) and res.PNR.shape == (d1, d2)
    ids = np.asarray(res.ids).astype(int)
    assert ids[0] >= 1 and np.all(np.diff(ids) >= 1)
    _, labels = _read_csv(sess / "labels.csv")
    assert [int(r["unit_id"]) for r in labels] == ids.tolist()
    assert [u["unit_id"] for u in truth["units"]] == ids.tolist()
    a = res.A.toarray()
    cells = {c["index"]: c for c in truth["cells"]}
    n_checked = 0
    for col, unit in enumerate(truth["units"]):
        img = a[:, col].reshape(d1, d2, order="F")
        assert np.isclose(np.linalg.norm(img), 1.0)
        peak = np.unravel_index(int(np.argmax(img)), img.shape)
        assert list(peak) == unit["peak_yx"]
        if unit["label"] == "good":  # the footprint sits on the true soma
            cy, cx = cells[unit["true_cell"]]["centroid_yx"]
            assert np.hypot(peak[0] - cy, peak[1] - cx) <= 3.0
            n_checked += 1
    assert n_checked >= 3


def test_mat_header_is_fixed(small: Path) -> None:
    head = (small / "m01" / "d1_conditioning" / "cnmfe_results.mat").read_bytes()[:116]
    assert head.startswith(b"MATLAB 5.0 MAT-file") and b"Created on" not in head


# --------------------------------------------------------------------------- determinism


def _session_files(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in {".mat", ".csv", ".json"}:
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def test_determinism(small: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    simulate_cohort(again, SMALL, n_workers=2)  # workers must not change anything
    a, b = _session_files(small), _session_files(again)
    assert a.keys() == b.keys() and len(a) == 1 + 2 * 7  # + freezing.csv per session
    assert any(name.endswith("freezing.csv") for name in a)
    for name in a:
        assert a[name] == b[name], name
    for session in ("d1_conditioning", "d2_safety"):
        _, f1 = _decode(small / "m01" / session / "miniscope")
        _, f2 = _decode(again / "m01" / session / "miniscope")
        assert np.array_equal(f1, f2)

    other = tmp_path / "other"
    simulate_cohort(other, SimulationConfig(**{**SMALL.__dict__, "seed": 12}), n_workers=1)
    r1 = _load_results(small / "m01" / "d1_conditioning" / "cnmfe_results.mat")
    r2 = _load_results(other / "m01" / "d1_conditioning" / "cnmfe_results.mat")
    assert r1.C.shape != r2.C.shape or not np.allclose(r1.C, r2.C)
    assert (
        (small / "m01" / "d1_conditioning" / "labels.csv").read_bytes()
        != (other / "m01" / "d1_conditioning" / "labels.csv").read_bytes()
        or r1.A.shape != r2.A.shape
        or (r1.A != r2.A).nnz > 0
    )


def test_rerun_removes_stale_chunks(tmp_path: Path) -> None:
    cfg = SimulationConfig(n_animals=1, stages=("safety",), n_frames=1050, height=24, width=24)
    simulate_cohort(tmp_path, cfg)
    simulate_cohort(tmp_path, SimulationConfig(**{**cfg.__dict__, "n_frames": 40}))
    counts, _ = _decode(tmp_path / "m01" / "d1_safety" / "miniscope")
    assert counts == [40]


# --------------------------------------------------------------------------- labels and physics


def test_label_mix_default_size(wide: Path) -> None:
    _, labels = _read_csv(wide / "labels.csv")
    reasons = [r["reason"] for r in labels if r["label"] == "bad"]
    good = [r for r in labels if r["label"] == "good"]
    assert all(r["reason"] == "" for r in good)
    assert set(reasons) == set(ARTIFACT_REASONS)
    frac = len(reasons) / len(labels)
    assert 0.25 <= frac <= 0.45
    assert 20 <= len(good) <= 50


def test_artifacts_are_not_separable_by_one_feature(wide: Path) -> None:
    """Sizes and trace amplitudes of good cells and artifacts overlap."""
    res = _load_results(wide / "cnmfe_results.mat")
    _, labels = _read_csv(wide / "labels.csv")
    good = np.array([r["label"] == "good" for r in labels])
    a = res.A.toarray()
    area = np.array([(a[:, k] > 0.1 * a[:, k].max()).sum() for k in range(a.shape[1])])
    c_raw = res.C_raw
    noise = 1.4826 * np.median(np.abs(np.diff(c_raw, axis=1)), axis=1) / np.sqrt(2)
    pnr = (c_raw.max(axis=1) - np.median(c_raw, axis=1)) / noise
    for feat in (area, pnr):
        # some artifact lies inside the range of good cells, some good cell inside the artifacts'
        lo, hi = np.percentile(feat[good], [10, 90])
        assert np.any((feat[~good] >= lo) & (feat[~good] <= hi))
        lo, hi = feat[~good].min(), feat[~good].max()
        assert np.any((feat[good] >= lo) & (feat[good] <= hi))


def test_good_cells_match_the_movie_better_than_borrowed(wide: Path) -> None:
    res = _load_results(wide / "cnmfe_results.mat")
    truth = json.loads((wide / "truth.json").read_text())
    _, movie = _decode(wide / "miniscope")
    t, h, w = movie.shape
    m = movie.reshape(t, -1).astype(np.float64)
    a = res.A.toarray()
    corr: dict[str, list[float]] = {"good": [], "borrowed_fluorescence": []}
    for k, unit in enumerate(truth["units"]):
        key = "good" if unit["label"] == "good" else unit["reason"]
        if key not in corr:
            continue
        img = a[:, k].reshape(h, w, order="F")
        sup = img > 0
        ring = ndimage.binary_dilation(sup, iterations=6) & ~ndimage.binary_dilation(sup, iterations=2)
        local = m @ img.ravel() - img.sum() * m[:, ring.ravel()].mean(axis=1)
        corr[key].append(float(np.corrcoef(local, res.C_raw[k])[0, 1]))
    assert len(corr["borrowed_fluorescence"]) >= 1
    assert np.median(corr["good"]) > 0.3
    assert np.median(corr["good"]) > np.median(corr["borrowed_fluorescence"]) + 0.2


def test_truth_describes_units(wide: Path) -> None:
    truth = json.loads((wide / "truth.json").read_text())
    kinds = {u["kind"] for u in truth["units"]}
    assert "cell" in kinds and len(kinds) >= 5
    for u in truth["units"]:
        if u["label"] == "good":
            assert u["true_cell"] is not None and u["firing_class"] in FIRING_CLASSES
            assert u["tone_selectivity"] in {"CS+", "CS-", "both", "none"} and u["n_spikes"] > 0
        else:
            assert u["reason"] in ARTIFACT_REASONS and u["kind"] != "cell"
        if u["reason"] == "borrowed_fluorescence":
            assert u["source_cell"] is not None
    extracted = [c for c in truth["cells"] if c["extracted_as"] is not None]
    assert len(extracted) == sum(u["label"] == "good" for u in truth["units"])


def test_no_empty_footprint_even_when_an_artifact_falls_outside_the_frame(tmp_path: Path) -> None:
    """Regression: seed 2024 at 10 Hz drew a fragment outside the field of view of m03/d2_safety
    (an all-zero component that ingest rightly refuses); such units are dropped."""
    cfg = SimulationConfig(
        n_animals=3,
        n_frames=1000,
        fps=10.0,
        seed=2024,
        noise_scale=1.0,
        cell_density=16.0,
        artifact_fraction=0.35,
        cohort="zs10hz",
    )
    simulate_cohort(tmp_path, cfg, n_workers=1)
    for path in sorted(tmp_path.glob("m*/*/cnmfe_results.mat")):
        A = sp.csc_matrix(_load_results(path).A)
        assert (np.asarray(abs(A).sum(axis=0)).ravel() > 0).all(), path

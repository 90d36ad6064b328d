"""A corpus of malformed inputs, each run through the real ``cellsift ingest`` command.

Every case re-ingests the session ``c/m1/s1`` of a lake that already holds a good version
of it, from inputs broken in one way (or from a broken manifest). Each must give exit
code 1, exactly one line on stderr naming the file and the problem, no traceback, and
leave the lake byte for byte as it was (every file's path, size, mtime and SHA-256).

Cases run in-process through :class:`typer.testing.CliRunner` (fast); a few also run as
real subprocesses of the installed ``cellsift`` script.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from typer.testing import CliRunner

from cellsift.cli.app import app
from cellsift.pipeline.ingest import ingest_cohort
from tests.commands import BIN
from tests.pipeline.fixtures import (
    blob_footprints,
    cnmfe_arrays,
    make_session,
    render_frames,
    synthetic_traces,
    to_cnmfe_A,
    write_avi,
    write_caiman_hdf5,
    write_cnmfe_neuron,
    write_cnmfe_v5,
    write_cnmfe_v73,
    write_hdf5_movie,
    write_manifest_csv,
    write_minian,
    write_miniscope_v4,
    write_nwb,
    write_suite2p_plane,
)

H, W, T = 32, 40, 60
KEY = {"cohort": "c", "animal": "m1", "session": "s1", "stage": "conditioning", "day": 1}


@dataclass
class Case:
    """A malformed input: ``root`` is a private copy of the good raw session."""

    root: Path
    footprints: np.ndarray
    C: np.ndarray
    C_raw: np.ndarray
    S: np.ndarray
    movie: np.ndarray

    @property
    def mat(self) -> Path:
        return self.root / "cnmfe_results.mat"

    @property
    def video(self) -> Path:
        return self.root / "miniscope"

    def row(self, **changes: object) -> dict[str, object]:
        row: dict[str, object] = {
            **KEY,
            "video": "miniscope",
            "extraction": "cnmfe_results.mat",
            "labels": "labels.csv",
        }
        row.update(changes)
        return row

    def manifest(self, **changes: object) -> Path:
        return write_manifest_csv(self.root / "cohort.csv", [self.row(**changes)])

    def write_mat(self, writer: Callable[..., Path] = write_cnmfe_v5, **changes: object) -> None:
        """Write the good session's CNMF-E results to :attr:`mat` with ``changes``."""
        values = cnmfe_arrays(self.footprints, self.C, self.C_raw, self.S)
        writer(self.mat, **{**values, "ids": np.array([10, 20, 30]), **changes})


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# --------------------------------------------------------------------------- the cases
# Each builder breaks the copy and returns (manifest, text the error must contain, the
# file the error must name).

Builder = Callable[[Case], tuple[Path, str, str]]
CASES: dict[str, Builder] = {}


def case(name: str) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        CASES[name] = builder
        return builder

    return register


@case("manifest_missing_column")
def _(c: Case):  # type: ignore[no-untyped-def]
    path = c.root / "cohort.csv"
    path.write_text("cohort,animal,session,stage,day,video\nc,m1,s1,x,1,miniscope\n")
    return path, "no column 'extraction'", "cohort.csv"


@case("manifest_bad_day")
def _(c: Case):  # type: ignore[no-untyped-def]
    return c.manifest(day="three"), "'three' is not a whole number", "cohort.csv"


@case("manifest_typo_column")
def _(c: Case):  # type: ignore[no-untyped-def]
    return c.manifest(temporal_downsampling=2), "did you mean 'temporal_downsample'", "cohort.csv"


@case("manifest_bad_downsample")
def _(c: Case):  # type: ignore[no-untyped-def]
    return c.manifest(temporal_downsample="two"), "'two' is not a whole number >= 1", "cohort.csv"


@case("manifest_unknown_format")
def _(c: Case):  # type: ignore[no-untyped-def]
    return c.manifest(format="imagej_roi"), "unknown extraction format 'imagej_roi'", "cohort.csv"


@case("manifest_bad_yaml")
def _(c: Case):  # type: ignore[no-untyped-def]
    path = c.root / "cohort.yaml"
    path.write_text("cohort: c\nsessions: [ {animal: m1, session: s1\n")
    return path, "check the YAML syntax", "cohort.yaml"


@case("manifest_duplicate_session")
def _(c: Case):  # type: ignore[no-untyped-def]
    path = write_manifest_csv(c.root / "cohort.csv", [c.row(), c.row()])
    return path, "listed twice", "cohort.csv"


@case("missing_extraction_file")
def _(c: Case):  # type: ignore[no-untyped-def]
    return c.manifest(extraction="nope.mat"), "extraction file", "nope.mat"


@case("mat_v5_truncated")
def _(c: Case):  # type: ignore[no-untyped-def]
    _truncate(c.mat, 0.4)
    return c.manifest(), "truncated or corrupt", "cnmfe_results.mat"


@case("mat_v73_truncated")
def _(c: Case):  # type: ignore[no-untyped-def]
    c.write_mat(write_cnmfe_v73)
    _truncate(c.mat, 0.5)
    return c.manifest(), "truncated or corrupt", "cnmfe_results.mat"


@case("mat_garbage")
def _(c: Case):  # type: ignore[no-untyped-def]
    c.mat.write_bytes(b"this is not a MATLAB file, it is a text file renamed to .mat\n" * 20)
    return c.manifest(), "cannot read the MATLAB file", "cnmfe_results.mat"


@case("mat_no_results_variable")
def _(c: Case):  # type: ignore[no-untyped-def]
    scipy.io.savemat(str(c.mat), {"footprints": np.zeros((4, 3)), "traces": np.zeros((3, 5))})
    return c.manifest(), "no CNMF-E results in the file", "cnmfe_results.mat"


@case("neuron_object_truncated")
def _(c: Case):  # type: ignore[no-untyped-def]
    write_cnmfe_neuron(c.mat, A=to_cnmfe_A(c.footprints), C=c.C, d1=H, d2=W)
    _truncate(c.mat, 0.3)
    return c.manifest(), "cannot read the MATLAB file", "cnmfe_results.mat"


@case("footprint_pixel_count")
def _(c: Case):  # type: ignore[no-untyped-def]
    c.write_mat(A=to_cnmfe_A(c.footprints)[: (H - 2) * W])
    return c.manifest(), "pixels per footprint but the frame size d1*d2", "cnmfe_results.mat"


@case("footprints_cropped_vs_video")
def _(c: Case):  # type: ignore[no-untyped-def]
    c.write_mat(A=to_cnmfe_A(c.footprints[:, 2:, :]), d1=H - 2)
    return c.manifest(), "footprints are 30x40 px (height x width) but the video", "cnmfe_results.mat"


@case("footprints_d1_d2_swapped")
def _(c: Case):  # type: ignore[no-untyped-def]
    c.write_mat(d1=W, d2=H)
    return c.manifest(), "d1/d2 (height/width) look swapped", "cnmfe_results.mat"


@case("footprints_row_major")
def _(c: Case):  # type: ignore[no-untyped-def]
    c.write_mat(A=sp.csc_matrix(np.stack([f.ravel() for f in c.footprints], axis=1).astype(np.float64)))
    return c.manifest(), "row-major/column-major mixed up", "cnmfe_results.mat"


@case("footprints_transposed_square")
def _(c: Case):  # type: ignore[no-untyped-def]
    fp = blob_footprints(36, 36, [(5, 20), (28, 9), (18, 30)])
    C, C_raw, S = synthetic_traces(3, 200, seed=2)
    shutil.rmtree(c.video)
    write_miniscope_v4(c.video, render_frames(fp, C, seed=2), frames_per_file=100)
    write_cnmfe_v5(c.mat, **cnmfe_arrays(fp.transpose(0, 2, 1), C, C_raw, S), ids=np.array([10, 20, 30]))
    return c.manifest(), "footprints look transposed", "cnmfe_results.mat"


@case("trace_length_mismatch")
def _(c: Case):  # type: ignore[no-untyped-def]
    c.write_mat(C=c.C[:, :-5], C_raw=c.C_raw[:, :-5], S=c.S[:, :-5])
    return c.manifest(), "traces have 55 frames but the video", "cnmfe_results.mat"


@case("trace_length_ratio_undeclared")
def _(c: Case):  # type: ignore[no-untyped-def]
    c.write_mat(C=np.repeat(c.C, 2, axis=1), C_raw=np.repeat(c.C_raw, 2, axis=1), S=np.repeat(c.S, 2, axis=1))
    return c.manifest(), "a ratio of exactly 2, a temporal downsampling", "cnmfe_results.mat"


@case("trace_length_ratio_declared_wrong")
def _(c: Case):  # type: ignore[no-untyped-def]
    c.write_mat(C=np.repeat(c.C, 2, axis=1), C_raw=np.repeat(c.C_raw, 2, axis=1), S=np.repeat(c.S, 2, axis=1))
    return c.manifest(temporal_downsample=3), "differ by a factor of 2", "cnmfe_results.mat"


@case("nan_in_C")
def _(c: Case):  # type: ignore[no-untyped-def]
    C = c.C.copy()
    C[1, 7] = np.nan
    c.write_mat(C=C)
    return c.manifest(), "field 'C': contains NaN or Inf", "cnmfe_results.mat"


@case("inf_in_footprints")
def _(c: Case):  # type: ignore[no-untyped-def]
    A = to_cnmfe_A(c.footprints).toarray()
    A[np.flatnonzero(A[:, 2])[0], 2] = np.inf
    c.write_mat(A=A)
    return c.manifest(), "footprints contain NaN or Inf (units 30)", "cnmfe_results.mat"


@case("empty_footprint")
def _(c: Case):  # type: ignore[no-untyped-def]
    A = to_cnmfe_A(c.footprints).toarray()
    A[:, 1] = 0
    c.write_mat(A=A)
    return c.manifest(), "1 of 3 footprints are empty (all zero): units 20", "cnmfe_results.mat"


@case("all_zero_traces")
def _(c: Case):  # type: ignore[no-untyped-def]
    c.write_mat(C_raw=np.zeros_like(c.C_raw))
    return c.manifest(), "every raw trace is all zero", "cnmfe_results.mat"


@case("traces_transposed")
def _(c: Case):  # type: ignore[no-untyped-def]
    c.write_mat(C=c.C.T.copy(), C_raw=c.C_raw.T.copy(), S=c.S.T.copy())
    return c.manifest(), "C looks transposed", "cnmfe_results.mat"


@case("duplicate_unit_ids")
def _(c: Case):  # type: ignore[no-untyped-def]
    c.write_mat(ids=np.array([10, 10, 30]))
    return c.manifest(), "unit ids are not unique", "cnmfe_results.mat"


@case("avi_missing_chunk")
def _(c: Case):  # type: ignore[no-untyped-def]
    shutil.rmtree(c.video)
    write_miniscope_v4(c.video, c.movie, frames_per_file=20)
    (c.video / "1.avi").unlink()
    return c.manifest(), "video chunk 1.avi is missing", "1.avi"


@case("avi_last_chunk_missing")
def _(c: Case):  # type: ignore[no-untyped-def]
    (c.video / "1.avi").unlink()  # only timeStamps.csv and framesPerFile tell
    return c.manifest(), "video chunk 1.avi is missing: timeStamps.csv lists 60 frames", "1.avi"


@case("avi_chunk_out_of_order")
def _(c: Case):  # type: ignore[no-untyped-def]
    shutil.rmtree(c.video)
    write_miniscope_v4(c.video, c.movie, frames_per_file=25)  # 25 + 25 + 10 frames
    (c.video / "1.avi").rename(c.root / "x.avi")
    (c.video / "2.avi").rename(c.video / "1.avi")
    (c.root / "x.avi").rename(c.video / "2.avi")
    return c.manifest(), "the chunks are out of order", "1.avi"


@case("avi_truncated_chunk")
def _(c: Case):  # type: ignore[no-untyped-def]
    _truncate(c.video / "1.avi", 0.5)
    return c.manifest(), "chunk is truncated or corrupt", "1.avi"


@case("avi_garbage_chunk")
def _(c: Case):  # type: ignore[no-untyped-def]
    (c.video / "0.avi").write_bytes(b"RIFF" + bytes(300))
    return c.manifest(), "cannot open the video chunk", "0.avi"


@case("avi_chunk_other_frame_size")
def _(c: Case):  # type: ignore[no-untyped-def]
    write_avi(c.video / "1.avi", iter(np.zeros((30, 16, 16), np.uint8)), height=16, width=16)
    return c.manifest(), "differs from the first chunk", "1.avi"


@case("metadata_json_broken")
def _(c: Case):  # type: ignore[no-untyped-def]
    (c.video / "metaData.json").write_text('{"frameRate": "20FPS", ')
    return c.manifest(), "cannot read the Miniscope metadata", "metaData.json"


@case("timestamps_broken")
def _(c: Case):  # type: ignore[no-untyped-def]
    (c.video / "timeStamps.csv").write_text("Frame Number,Time Stamp (ms)\n0,zero\n")
    return c.manifest(), "cannot read the timestamps", "timeStamps.csv"


@case("unsupported_video_file")
def _(c: Case):  # type: ignore[no-untyped-def]
    (c.root / "movie.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    return c.manifest(video="movie.mp4"), "unsupported video file type '.mp4'", "movie.mp4"


@case("tiff_corrupt")
def _(c: Case):  # type: ignore[no-untyped-def]
    (c.root / "movie.tif").write_bytes(b"II*\x00\x08\x00\x00\x00" + bytes(40))
    return c.manifest(video="movie.tif"), "cannot open the TIFF stack", "movie.tif"


@case("hdf5_video_without_movie_dataset")
def _(c: Case):  # type: ignore[no-untyped-def]
    write_hdf5_movie(c.root / "movie.h5", c.movie, dataset="frames_raw")
    return c.manifest(video="movie.h5"), "no movie dataset", "movie.h5"


@case("labels_unknown_unit_ids")
def _(c: Case):  # type: ignore[no-untyped-def]
    (c.root / "labels.csv").write_text("unit_id,label,reason\n999,good,\n")
    return c.manifest(), "unit ids the extraction does not have", "labels.csv"


@case("labels_bad_value")
def _(c: Case):  # type: ignore[no-untyped-def]
    (c.root / "labels.csv").write_text("unit_id,label,reason\n10,maybe,\n")
    return c.manifest(), "label 'maybe' is not one of good, bad", "labels.csv"


@case("caiman_without_estimates")
def _(c: Case):  # type: ignore[no-untyped-def]
    with h5py.File(c.root / "cnm.hdf5", "w") as handle:
        handle["dims"] = np.array([H, W])
        handle["params/data/fr"] = 20.0
    return c.manifest(extraction="cnm.hdf5", labels=""), "no 'estimates' group", "cnm.hdf5"


@case("caiman_truncated")
def _(c: Case):  # type: ignore[no-untyped-def]
    write_caiman_hdf5(
        c.root / "cnm.hdf5", A=to_cnmfe_A(c.footprints), C=c.C, S=c.S, YrA=c.C_raw - c.C, dims=(H, W)
    )
    _truncate(c.root / "cnm.hdf5", 0.5)
    return c.manifest(extraction="cnm.hdf5", labels=""), "CaImAn", "cnm.hdf5"


@case("minian_missing_C")
def _(c: Case):  # type: ignore[no-untyped-def]
    folder = write_minian(c.root / "minian", footprints=c.footprints, C=c.C, S=c.S, YrA=c.C_raw - c.C)
    shutil.rmtree(folder / "C.zarr")
    return c.manifest(extraction="minian", labels=""), "no C.zarr in the Minian output folder", "minian"


@case("minian_corrupt_chunk")
def _(c: Case):  # type: ignore[no-untyped-def]
    folder = write_minian(c.root / "minian", footprints=c.footprints, C=c.C, S=c.S, YrA=c.C_raw - c.C)
    (folder / "A.zarr" / "A" / "1.0.0").write_bytes(b"\x02\x01garbage-not-blosc")
    return c.manifest(extraction="minian", labels=""), "cannot read the Minian arrays", "A.zarr"


@case("suite2p_missing_F")
def _(c: Case):  # type: ignore[no-untyped-def]
    plane = write_suite2p_plane(c.root / "suite2p" / "plane0", footprints=c.footprints, F=c.C_raw)
    (plane / "F.npy").unlink()
    return c.manifest(extraction="suite2p/plane0", labels=""), "the plane folder has no F.npy", "plane0"


@case("suite2p_data_bin_truncated")
def _(c: Case):  # type: ignore[no-untyped-def]
    plane = write_suite2p_plane(
        c.root / "suite2p" / "plane0", footprints=c.footprints, F=c.C_raw, movie=c.movie
    )
    _truncate(plane / "data.bin", 0.5)
    return c.manifest(extraction="suite2p/plane0", video="", labels=""), "data.bin holds", "data.bin"


@case("nwb_traces_roi_by_time")
def _(c: Case):  # type: ignore[no-untyped-def]
    write_nwb(c.root / "s.nwb", footprints=c.footprints, F=c.C_raw, traces_time_first=False)
    return c.manifest(extraction="s.nwb", labels=""), "it looks ROI x time", "s.nwb"


@case("extraction_only_without_frame_size")
def _(c: Case):  # type: ignore[no-untyped-def]
    scipy.io.savemat(str(c.mat), {"A": to_cnmfe_A(c.footprints), "C": c.C, "C_raw": c.C_raw, "S": c.S})
    return c.manifest(video="none", fps=20), "the frame size is unknown", "cnmfe_results.mat"


# --------------------------------------------------------------------------- harness


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Case]:
    """A good raw session and a lake holding it as c/m1/s1."""
    raw = tmp_path_factory.mktemp("malformed") / "raw"
    session = make_session(
        raw, n_frames=T, height=H, width=W, frames_per_file=30, seed=11, ids=np.array([10, 20, 30])
    )
    truth = Case(raw, session.footprints, session.C, session.C_raw, session.S, np.zeros(0))
    assert session.video is not None
    from cellsift.pipeline.readers import open_video

    truth.movie = np.concatenate(list(open_video(session.video).iter_blocks(100)))
    lake = raw.parent / "lake"
    (result,) = ingest_cohort(truth.manifest(), lake)
    assert result.status == "ingested", result.error
    (raw / "cohort.csv").unlink()
    return raw, lake, truth


def _listing(root: Path) -> list[tuple[str, ...]]:
    """Every file (path, size, mtime, SHA-256) and folder (path) below ``root``."""
    out: list[tuple[str, ...]] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            out.append((rel, "dir"))
        else:
            stat = path.stat()
            out.append(
                (rel, str(stat.st_size), str(stat.st_mtime_ns), hashlib.sha256(path.read_bytes()).hexdigest())
            )
    return out


def _prepare(name: str, base: tuple[Path, Path, Case], tmp_path: Path) -> tuple[Path, Path, str, str]:
    raw, lake, truth = base
    root = tmp_path / "raw"
    shutil.copytree(raw, root)
    my_lake = tmp_path / "lake"
    shutil.copytree(lake, my_lake)  # copy2: sizes, contents and mtimes preserved
    case = Case(root, truth.footprints, truth.C, truth.C_raw, truth.S, truth.movie)
    manifest, problem, file_part = CASES[name](case)
    return manifest, my_lake, problem, file_part


def _check_output(stderr: str, stdout: str, *, problem: str, file_part: str, manifest_level: bool) -> None:
    assert "Traceback" not in stderr + stdout
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    (line,) = lines
    assert problem in line, line
    assert file_part in line, line  # names the file
    assert "Fix:" in line
    if manifest_level:
        assert line.startswith("error: ")
    else:
        assert line.lstrip().startswith("FAILED    c/m1/s1: ")
        assert "0 ingested, 0 unchanged, 1 failed" in stdout


MANIFEST_LEVEL = {name for name in CASES if name.startswith("manifest_")}


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_input(name: str, base: tuple[Path, Path, Case], tmp_path: Path) -> None:
    manifest, lake, problem, file_part = _prepare(name, base, tmp_path)
    before = _listing(lake)
    result = CliRunner().invoke(app, ["ingest", str(manifest), "--lake", str(lake)])
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    _check_output(
        result.stderr,
        result.stdout,
        problem=problem,
        file_part=file_part,
        manifest_level=name in MANIFEST_LEVEL,
    )
    assert _listing(lake) == before  # the lake is exactly as it was


@pytest.mark.parametrize("name", ["manifest_typo_column", "footprints_row_major", "avi_truncated_chunk"])
def test_malformed_input_real_process(name: str, base: tuple[Path, Path, Case], tmp_path: Path) -> None:
    manifest, lake, problem, file_part = _prepare(name, base, tmp_path)
    before = _listing(lake)
    proc = subprocess.run(
        [str(BIN / "cellsift"), "ingest", str(manifest), "--lake", str(lake)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    _check_output(
        proc.stderr, proc.stdout, problem=problem, file_part=file_part, manifest_level=name in MANIFEST_LEVEL
    )
    assert _listing(lake) == before

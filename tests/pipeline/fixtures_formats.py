"""Builders of small raw-format fixtures, written with the formats' own libraries.

Not a test module: other tests import it (``from tests.pipeline.fixtures_formats import ...``).

* Miniscope V4 folders (``0.avi``, ``1.avi``, ... via PyAV, FFV1 or GREY rawvideo;
  ``timeStamps.csv``; ``metaData.json``),
* CNMF-E results ``.mat`` as MATLAB v5 (:func:`scipy.io.savemat`) or v7.3 (h5py,
  imitating MATLAB: 512-byte user block, transposed arrays, sparse groups with
  ``data``/``ir``/``jc``, ``MATLAB_class`` attributes),
* ``labels.csv``, ``events.csv`` and cohort manifests,
* :func:`make_session`: a whole consistent session with known footprints and traces.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "SyntheticSession",
    "blob_footprints",
    "render_frames",
    "write_avi",
    "write_miniscope_v4",
    "write_cnmfe_v5",
    "write_cnmfe_v73",
    "write_labels_csv",
    "write_events_csv",
    "write_manifest_csv",
    "make_session",
]


# --------------------------------------------------------------------------- video


def write_avi(
    path: Path, frames: Iterable[np.ndarray], *, height: int, width: int, codec: str = "ffv1", fps: int = 20
) -> int:
    """Write 8-bit gray frames to one AVI (``codec`` ``"ffv1"`` or ``"rawvideo"`` as GREY)."""
    import av

    n = 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "gray"
        if codec == "rawvideo":
            stream.codec_context.codec_tag = "GREY"
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image, dtype=np.uint8), format="gray")
            for packet in stream.encode(frame):
                container.mux(packet)
            n += 1
        for packet in stream.encode():
            container.mux(packet)
    return n


def write_miniscope_v4(
    folder: Path,
    frames: np.ndarray | Iterable[np.ndarray],
    *,
    n_frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    frames_per_file: int = 1000,
    codec: str = "ffv1",
    fps: float = 20.0,
    frame_rate: Any = "20FPS",
    timestamps: bool = True,
    metadata: bool = True,
) -> Path:
    """Write a Miniscope V4 folder: ``0.avi``, ``1.avi``, ..., ``timeStamps.csv``, ``metaData.json``.

    ``frames`` is a ``(T, H, W)`` uint8 array or an iterable of ``(H, W)`` frames (then
    give ``n_frames``, ``height`` and ``width``), so long movies never sit in memory.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(frames, np.ndarray):
        n_frames, height, width = frames.shape
        source: Iterator[np.ndarray] = iter(frames)
    else:
        if n_frames is None or height is None or width is None:
            raise ValueError("give n_frames, height and width with an iterable of frames")
        source = iter(frames)
    index = 0
    for start in range(0, n_frames, frames_per_file):
        count = min(frames_per_file, n_frames - start)
        chunk = (next(source) for _ in range(count))
        write_avi(folder / f"{index}.avi", chunk, height=height, width=width, codec=codec, fps=int(round(fps)))
        index += 1
    if timestamps:
        with (folder / "timeStamps.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["Frame Number", "Time Stamp (ms)", "Buffer Index"])
            t0 = 1234.0
            for i in range(n_frames):
                writer.writerow([i, round(t0 + 1000.0 * i / fps), i % 8])
    if metadata:
        meta = {
            "ROI": {"height": height, "leftEdge": 0, "topEdge": 0, "width": width},
            "compression": "FFV1" if codec == "ffv1" else "GREY",
            "deviceName": "Miniscope",
            "deviceType": "Miniscope_V4_BNO",
            "frameRate": frame_rate,
            "framesPerFile": frames_per_file,
            "gain": "Low",
            "led0": 6,
        }
        (folder / "metaData.json").write_text(json.dumps(meta, indent=4))
    return folder


# --------------------------------------------------------------------------- content


def blob_footprints(
    height: int, width: int, centres: list[tuple[int, int]], *, radius: float = 3.0
) -> np.ndarray:
    """Return ``(K, height, width)`` float32 Gaussian blobs (peak 1) at ``(y, x)`` centres."""
    yy, xx = np.mgrid[0:height, 0:width]
    out = np.zeros((len(centres), height, width), dtype=np.float32)
    for k, (y, x) in enumerate(centres):
        blob = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * radius**2))
        blob[blob < 0.05] = 0.0
        out[k] = blob
    return out


def to_cnmfe_A(footprints: np.ndarray) -> sp.csc_matrix:
    """``(K, d1, d2)`` footprints -> CNMF-E ``A``: ``(d1*d2, K)`` with column-major pixels."""
    k = footprints.shape[0]
    columns = np.stack([footprints[i].ravel(order="F") for i in range(k)], axis=1)
    return sp.csc_matrix(columns.astype(np.float64))


def render_frames(
    footprints: np.ndarray, C: np.ndarray, *, start: int = 0, stop: int | None = None, seed: int = 0,
    baseline: float = 20.0, gain: float = 40.0,
) -> np.ndarray:
    """Render frames ``start:stop`` of a movie ``baseline + gain * sum_k A_k C_k(t) + noise`` as uint8."""
    stop = C.shape[1] if stop is None else stop
    rng = np.random.default_rng(seed + start)
    k, h, w = footprints.shape
    flat = footprints.reshape(k, h * w)
    movie = baseline + gain * (C[:, start:stop].T @ flat)
    movie += rng.normal(0, 2.0, movie.shape)
    return np.clip(np.rint(movie), 0, 255).astype(np.uint8).reshape(stop - start, h, w)


def iter_rendered(footprints: np.ndarray, C: np.ndarray, *, block: int = 500, seed: int = 0) -> Iterator[np.ndarray]:
    """Yield the frames of :func:`render_frames` one by one, rendering ``block`` at a time."""
    for start in range(0, C.shape[1], block):
        yield from render_frames(footprints, C, start=start, stop=min(start + block, C.shape[1]), seed=seed)


def synthetic_traces(n_units: int, n_frames: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``C, C_raw, S`` (K, T) float64: decaying transients, noisy copy, spikes."""
    rng = np.random.default_rng(seed)
    S = (rng.random((n_units, n_frames)) < 0.02) * rng.uniform(0.5, 1.5, (n_units, n_frames))
    C = np.zeros_like(S)
    for t in range(n_frames):
        C[:, t] = (0.9 * C[:, t - 1] if t else 0.0) + S[:, t]
    C_raw = C + rng.normal(0, 0.05, C.shape)
    return C, C_raw, S


# --------------------------------------------------------------------------- MATLAB


def write_cnmfe_v5(
    path: Path,
    *,
    A: sp.csc_matrix | np.ndarray,
    C: np.ndarray,
    d1: int,
    d2: int,
    C_raw: np.ndarray | None = None,
    S: np.ndarray | None = None,
    fps: float | None = 20.0,
    ids: np.ndarray | None = None,
    Cn: np.ndarray | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write CNMF-E ``results`` as a MATLAB v5 ``.mat`` (struct = dict; sparse A stays sparse)."""
    import scipy.io

    results: dict[str, Any] = {"A": A, "C": C, "options": {"d1": float(d1), "d2": float(d2)}}
    if C_raw is not None:
        results["C_raw"] = C_raw
    if S is not None:
        results["S"] = S
    if fps is not None:
        results["Fs"] = float(fps)
    if ids is not None:
        results["ids"] = np.asarray(ids, dtype=np.float64)
    if Cn is not None:
        results["Cn"] = Cn
    results.update(extra or {})
    scipy.io.savemat(str(path), {"results": results}, do_compression=True)
    return path


_MAT73_HEADER = (
    b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
)


def _h5_dense(group: Any, name: str, value: np.ndarray | float) -> None:
    arr = np.atleast_2d(np.asarray(value, dtype=np.float64))
    ds = group.create_dataset(name, data=arr.T)  # MATLAB is column-major: HDF5 holds the transpose
    ds.attrs["MATLAB_class"] = np.bytes_("double")


def _h5_sparse(group: Any, name: str, value: sp.spmatrix) -> None:
    csc = sp.csc_matrix(value)
    csc.sort_indices()
    sub = group.create_group(name)
    sub.attrs["MATLAB_class"] = np.bytes_("double")
    sub.attrs["MATLAB_sparse"] = np.uint64(csc.shape[0])
    sub.create_dataset("data", data=csc.data.astype(np.float64))
    sub.create_dataset("ir", data=csc.indices.astype(np.uint64))
    sub.create_dataset("jc", data=csc.indptr.astype(np.uint64))


def write_cnmfe_v73(
    path: Path,
    *,
    A: sp.csc_matrix | np.ndarray,
    C: np.ndarray,
    d1: int,
    d2: int,
    C_raw: np.ndarray | None = None,
    S: np.ndarray | None = None,
    fps: float | None = 20.0,
    ids: np.ndarray | None = None,
    Cn: np.ndarray | None = None,
) -> Path:
    """Write CNMF-E ``results`` as MATLAB v7.3 would (HDF5 with a 512-byte MAT header)."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as handle:
        results = handle.create_group("results")
        results.attrs["MATLAB_class"] = np.bytes_("struct")
        if sp.issparse(A):
            _h5_sparse(results, "A", A)
        else:
            _h5_dense(results, "A", A)
        _h5_dense(results, "C", C)
        if C_raw is not None:
            _h5_dense(results, "C_raw", C_raw)
        if S is not None:
            _h5_dense(results, "S", S)
        if fps is not None:
            _h5_dense(results, "Fs", fps)
        if ids is not None:
            _h5_dense(results, "ids", np.asarray(ids, dtype=np.float64)[None, :])
        if Cn is not None:
            _h5_dense(results, "Cn", Cn)
        options = results.create_group("options")
        options.attrs["MATLAB_class"] = np.bytes_("struct")
        _h5_dense(options, "d1", d1)
        _h5_dense(options, "d2", d2)
        name = options.create_dataset("name", data=np.array([ord(c) for c in "cnmfe"], dtype=np.uint16)[:, None])
        name.attrs["MATLAB_class"] = np.bytes_("char")
    header = _MAT73_HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as handle:
        handle.write(header)
    return path


# --------------------------------------------------------------------------- CSVs


def write_labels_csv(path: Path, unit_ids: Iterable[int], labels: Iterable[str], reasons: Iterable[str] | None = None) -> Path:
    ids, labs = list(unit_ids), list(labels)
    reas = list(reasons) if reasons is not None else ["" for _ in ids]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["unit_id", "label", "reason"])
        writer.writerows(zip(ids, labs, reas, strict=True))
    return path


def write_events_csv(path: Path, events: list[tuple[str, float, float]] | None = None) -> Path:
    events = events or [("tone", 1.0, 1.5), ("shock", 1.4, 1.5)]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["event", "onset_s", "offset_s"])
        writer.writerows(events)
    return path


def write_manifest_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return path


# --------------------------------------------------------------------------- whole sessions


@dataclass
class SyntheticSession:
    """A session written by :func:`make_session` and the truth it was made from."""

    folder: Path
    video: Path
    extraction: Path
    events: Path
    labels: Path
    footprints: np.ndarray  # (K, H, W) float32
    C: np.ndarray  # (K, T)
    C_raw: np.ndarray
    S: np.ndarray
    unit_ids: np.ndarray
    fps: float

    def row(self, cohort: str, animal: str, session: str, *, stage: str = "baseline", day: int = 1, **extra: Any) -> dict[str, Any]:
        """A manifest row for this session (absolute paths)."""
        row = {
            "cohort": cohort,
            "animal": animal,
            "session": session,
            "stage": stage,
            "day": day,
            "video": str(self.video),
            "extraction": str(self.extraction),
            "events": str(self.events),
            "labels": str(self.labels),
        }
        row.update(extra)
        return row


def make_session(
    folder: Path,
    *,
    n_frames: int = 60,
    height: int = 32,
    width: int = 40,
    frames_per_file: int = 30,
    centres: list[tuple[int, int]] | None = None,
    mat: str = "v5",
    codec: str = "ffv1",
    fps: float = 20.0,
    seed: int = 0,
    ids: np.ndarray | None = None,
    sparse_A: bool = True,
    render_block: int = 500,
) -> SyntheticSession:
    """Write a consistent session (Miniscope folder, CNMF-E .mat, labels, events) to ``folder``.

    Footprints are Gaussian blobs at ``centres`` (``(y, x)``); the movie is rendered from
    them and the traces, streamed in ``render_block`` frames.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if centres is None:
        centres = [(5, 6), (height - 8, width // 2), (height // 2, width - 7)]
    footprints = blob_footprints(height, width, centres)
    k = len(centres)
    C, C_raw, S = synthetic_traces(k, n_frames, seed=seed)
    unit_ids = np.asarray(ids if ids is not None else np.arange(1, k + 1) * 10, dtype=np.int64)
    video = write_miniscope_v4(
        folder / "miniscope",
        iter_rendered(footprints, C, block=render_block, seed=seed),
        n_frames=n_frames,
        height=height,
        width=width,
        frames_per_file=frames_per_file,
        codec=codec,
        fps=fps,
        frame_rate=f"{int(fps)}FPS",
    )
    A = to_cnmfe_A(footprints)
    writer = write_cnmfe_v5 if mat == "v5" else write_cnmfe_v73
    extraction = writer(
        folder / "cnmfe_results.mat",
        A=A if sparse_A else A.toarray(),
        C=C,
        C_raw=C_raw,
        S=S,
        d1=height,
        d2=width,
        fps=fps,
        ids=unit_ids,
        Cn=footprints.max(axis=0).astype(np.float64),
    )
    labels = write_labels_csv(
        folder / "labels.csv", unit_ids, ["good"] * (k - 1) + ["bad"], [""] * (k - 1) + ["dendrite"]
    )
    events = write_events_csv(folder / "events.csv")
    return SyntheticSession(
        folder=folder,
        video=video,
        extraction=extraction,
        events=events,
        labels=labels,
        footprints=footprints,
        C=C,
        C_raw=C_raw,
        S=S,
        unit_ids=unit_ids,
        fps=fps,
    )

"""Builders of small raw-format fixtures, written with the formats' own libraries.

Not a test module: other tests import it (``from tests.pipeline.fixtures_formats import ...``).
Each writer follows the layout the format's own software writes (see the docstrings):

* videos: Miniscope V4 folders (``0.avi``, ... via PyAV, FFV1 or GREY rawvideo;
  ``timeStamps.csv``; ``metaData.json``; session ``metaData.json`` with the nested or the
  flat recording start time), Miniscope V3 folders (``msCam1.avi``, ... +
  ``timestamp.dat`` of two cameras), multi-page TIFF / BigTIFF (tifffile), HDF5 and
  MATLAB movies (h5py, scipy.io), Suite2p ``data.bin``, NWB photon series (pynwb);
* extractions: CNMF-E ``results`` / ``neuron_results`` structs as MATLAB v5
  (:func:`scipy.io.savemat`) or v7.3 (h5py, imitating MATLAB: 512-byte user block,
  transposed arrays, sparse groups with ``data``/``ir``/``jc``, ``MATLAB_class``
  attributes), the CNMF-E ``Sources2D`` object (mat-io), CaImAn ``cnm.save`` HDF5
  (h5py, imitating ``save_dict_to_hdf5``), Minian ``<var>.zarr`` folders (xarray, zarr
  v2), Suite2p plane folders (numpy), NWB ``PlaneSegmentation`` + ``RoiResponseSeries``
  (pynwb);
* ``labels.csv``, Inscopix cell-status CSVs, CNMF-E deletion CSVs, ``events.csv`` and
  cohort manifests;
* :func:`make_session`: a whole consistent session with known footprints and traces, in
  any of the extraction and video formats.
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
    "iter_rendered",
    "synthetic_traces",
    "to_cnmfe_A",
    "write_avi",
    "write_miniscope_v4",
    "write_miniscope_v3",
    "write_tiff_stack",
    "write_hdf5_movie",
    "write_suite2p_bin",
    "write_cnmfe_v5",
    "write_cnmfe_v73",
    "write_cnmfe_neuron",
    "write_caiman_hdf5",
    "write_minian",
    "write_suite2p_plane",
    "write_nwb",
    "write_labels_csv",
    "write_events_csv",
    "write_manifest_csv",
    "write_inscopix_props",
    "write_inscopix_traces",
    "make_session",
    "EXTRACTION_WRITERS",
    "VIDEO_WRITERS",
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
    start_time_layout: str | None = None,
) -> Path:
    """Write a Miniscope V4 folder: ``0.avi``, ``1.avi``, ..., ``timeStamps.csv``, ``metaData.json``.

    ``frames`` is a ``(T, H, W)`` uint8 array or an iterable of ``(H, W)`` frames (then
    give ``n_frames``, ``height`` and ``width``), so long movies never sit in memory.
    ``start_time_layout`` ``"nested"`` or ``"flat"`` also writes the session folder's
    ``metaData.json`` (in ``folder.parent``) with the recording start as Miniscope-DAQ
    writes it: under ``recordingStartTime`` (newer software) or at the top level (older).
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
        write_avi(
            folder / f"{index}.avi", chunk, height=height, width=width, codec=codec, fps=int(round(fps))
        )
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
    if start_time_layout is not None:
        start = {"year": 2024, "month": 3, "day": 5, "hour": 14, "minute": 7, "second": 9, "msec": 250}
        session: dict[str, Any] = {
            "animalName": "m1",
            "experimentName": "fear",
            "researcherName": "lab",
            "cameras": [],
            "miniscopes": [folder.name],
        }
        if start_time_layout == "nested":
            session["recordingStartTime"] = {**start, "msecSinceEpoch": 1709647629250}
        else:
            session.update(start)
        (folder.parent / "metaData.json").write_text(json.dumps(session, indent=4))
    return folder


def write_miniscope_v3(
    folder: Path,
    movie: np.ndarray,
    *,
    frames_per_file: int = 1000,
    fps: float = 30.0,
    behav_frames: int | None = None,
) -> Path:
    """Write a Miniscope V3 folder as the V3 DAQ software does: ``msCam1.avi``, ...
    (1-based), ``behavCam1.avi`` (a behaviour camera) and ``timestamp.dat``, a
    tab-separated ``camNum frameNum sysClock buffer`` table of both cameras, the first
    ``sysClock`` of each camera not a real time."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = movie.shape
    for index, start in enumerate(range(0, n, frames_per_file), start=1):
        write_avi(
            folder / f"msCam{index}.avi",
            iter(movie[start : start + frames_per_file]),
            height=h,
            width=w,
            codec="rawvideo",
            fps=int(round(fps)),
        )
    behav_n = behav_frames if behav_frames is not None else n + 7
    write_avi(
        folder / "behavCam1.avi",
        iter(np.zeros((behav_n, 8, 8), np.uint8)),
        height=8,
        width=8,
        codec="rawvideo",
    )
    lines = ["camNum\tframeNum\tsysClock\tbuffer"]
    for i in range(n):
        lines.append(f"1\t{i + 1}\t{123456 if i == 0 else int(round(i * 1000 / fps))}\t{i % 4}")
    for i in range(behav_n):
        lines.append(f"0\t{i + 1}\t{int(round(i * 1000 / 29.0)) + 3}\t0")
    (folder / "timestamp.dat").write_text("\n".join(lines) + "\n")
    (folder / "settings_and_notes.dat").write_text("animal\texcitation\tmsCamExposure\n m1\t10\t255\n")
    return folder


def write_tiff_stack(
    path: Path,
    movie: np.ndarray,
    *,
    bigtiff: bool = False,
    compression: str | None = None,
    fps: float | None = 20.0,
) -> Path:
    """Write a multi-page TIFF (one page per frame) with tifffile, ImageJ-style unless BigTIFF."""
    import tifffile

    if bigtiff:
        tifffile.imwrite(path, movie, bigtiff=True, photometric="minisblack", compression=compression)
    else:
        tifffile.imwrite(
            path,
            movie,
            imagej=True,
            metadata={"axes": "TYX", **({"finterval": 1 / fps} if fps else {})},
            compression=compression,
        )
    return path


_MAT73_USERBLOCK = 512


def _mat73_header(path: Path) -> None:
    header = _MAT73_HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as handle:
        handle.write(header)


def write_hdf5_movie(path: Path, movie: np.ndarray, *, dataset: str = "mov", matlab: bool = False) -> Path:
    """Write a movie as CaImAn does (``mov``: (T, H, W)) or as MATLAB ``save(..., 'Y', '-v7.3')``
    does (``Y`` is d1 x d2 x T, so HDF5 holds (T, d2, d1) with ``MATLAB_class``); ``.mat``
    paths without ``matlab`` get a v5 file from :func:`scipy.io.savemat`."""
    import h5py

    if path.suffix == ".mat" and not matlab:
        import scipy.io

        scipy.io.savemat(str(path), {dataset: np.ascontiguousarray(np.moveaxis(movie, 0, 2))})
        return path
    with h5py.File(path, "w", userblock_size=_MAT73_USERBLOCK if matlab else 0) as handle:
        if matlab:
            ds = handle.create_dataset(dataset, data=np.ascontiguousarray(movie.transpose(0, 2, 1)))
            ds.attrs["MATLAB_class"] = np.bytes_(
                {np.uint8: "uint8", np.uint16: "uint16"}.get(movie.dtype.type, "double")
            )
        else:
            handle.create_dataset(dataset, data=movie, chunks=(min(len(movie), 50), *movie.shape[1:]))
    if matlab:
        _mat73_header(path)
    return path


def write_suite2p_bin(plane: Path, movie: np.ndarray, *, fs: float = 20.0) -> Path:
    """Write Suite2p's registered ``data.bin`` (int16 (T, Ly, Lx)) and a minimal ``ops.npy``."""
    plane.mkdir(parents=True, exist_ok=True)
    binary = plane / "data.bin"
    np.asarray(movie, dtype=np.int16).tofile(binary)
    ops_path = plane / "ops.npy"
    if not ops_path.is_file():
        n, ly, lx = movie.shape
        np.save(
            ops_path,
            {
                "Ly": ly,
                "Lx": lx,
                "fs": fs,
                "nframes": n,
                "reg_file": str(binary),
                "save_path": str(plane),
                "neucoeff": 0.7,
                "meanImg": movie.mean(axis=0).astype(np.float32),
            },
        )
    return binary


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
    footprints: np.ndarray,
    C: np.ndarray,
    *,
    start: int = 0,
    stop: int | None = None,
    seed: int = 0,
    baseline: float = 20.0,
    gain: float = 40.0,
) -> np.ndarray:
    """Render frames ``start:stop`` of a movie ``baseline + gain * sum_k A_k C_k(t) + noise`` as uint8."""
    stop = C.shape[1] if stop is None else stop
    rng = np.random.default_rng(seed + start)
    k, h, w = footprints.shape
    flat = footprints.reshape(k, h * w)
    movie = baseline + gain * (C[:, start:stop].T @ flat)
    movie += rng.normal(0, 2.0, movie.shape)
    return np.clip(np.rint(movie), 0, 255).astype(np.uint8).reshape(stop - start, h, w)


def iter_rendered(
    footprints: np.ndarray, C: np.ndarray, *, block: int = 500, seed: int = 0
) -> Iterator[np.ndarray]:
    """Yield the frames of :func:`render_frames` one by one, rendering ``block`` at a time."""
    for start in range(0, C.shape[1], block):
        yield from render_frames(footprints, C, start=start, stop=min(start + block, C.shape[1]), seed=seed)


def synthetic_traces(
    n_units: int, n_frames: int, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    variable: str = "results",
    tags: np.ndarray | None = None,
) -> Path:
    """Write CNMF-E ``results`` (``obj2struct``) or ``neuron_results`` (``save_results``) as a
    MATLAB v5 ``.mat`` (struct = dict; sparse A stays sparse)."""
    import scipy.io

    results: dict[str, Any] = {
        "A": A,
        "C": C,
        "options": {"d1": float(d1), "d2": float(d2), "tsub": 1.0, "ssub": 1.0},
    }
    if tags is not None:
        results["tags"] = np.asarray(tags, dtype=np.uint16)[:, None]
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
    scipy.io.savemat(str(path), {variable: results}, do_compression=True)
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
    variable: str = "results",
) -> Path:
    """Write CNMF-E ``results`` as MATLAB v7.3 would (HDF5 with a 512-byte MAT header)."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as handle:
        results = handle.create_group(variable)
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
        name = options.create_dataset(
            "name", data=np.array([ord(c) for c in "cnmfe"], dtype=np.uint16)[:, None]
        )
        name.attrs["MATLAB_class"] = np.bytes_("char")
    _mat73_header(path)
    return path


def write_cnmfe_neuron(
    path: Path,
    *,
    A: sp.csc_matrix | np.ndarray,
    C: np.ndarray,
    d1: int,
    d2: int,
    C_raw: np.ndarray | None = None,
    S: np.ndarray | None = None,
    fps: float = 20.0,
    ids: np.ndarray | None = None,
    Cn: np.ndarray | None = None,
    version: str = "v7.3",
    variable: str = "neuron",
) -> Path:
    """Write the ``Sources2D`` object CNMF-E's ``save_workspace`` saves (``-v7.3``; ``v7``
    for the older ``save(file)``), with mat-io. Empty properties are ``[]`` as in the real file."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import matio
        from matio.utils.matclass import MatlabOpaque

    k, t = C.shape
    empty = np.zeros((0, 0))
    props: dict[str, Any] = {
        "A": A,
        "C": C,
        "C_raw": C if C_raw is None else C_raw,
        "S": np.zeros_like(C) if S is None else S,
        "kernel": {"type": "exp2", "pars": np.array([[10.0, 1.0]])},
        "b": empty,
        "f": empty,
        "W": empty,
        "b0": empty,
        "options": {
            "d1": float(d1),
            "d2": float(d2),
            "d3": 1.0,
            "ssub": 1.0,
            "tsub": 1.0,
            "gSig": 3.0,
            "gSiz": 11.0,
            "min_corr": 0.8,
            "min_pnr": 8.0,
            "name": "video.avi",
        },
        "P": {"sn": np.ones((d1 * d2, 1)), "k_ids": 0.0},
        "Fs": float(fps),
        "file": "",
        "frame_range": empty,
        "ids": empty if ids is None else np.asarray(ids, dtype=np.float64)[None, :],
        "tags": empty,
        "Cn": empty if Cn is None else Cn,
        "PNR": empty,
        "Coor": empty,
        "neurons_per_patch": empty,
        "Df": empty,
        "C_df": empty,
        "S_df": empty,
        "batches": empty,
        "file_id": empty,
    }
    obj = MatlabOpaque(properties=props, classname="Sources2D")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        matio.save_to_mat(str(path), {variable: obj}, version=version)
    return path


def write_caiman_hdf5(
    path: Path,
    *,
    A: sp.csc_matrix,
    C: np.ndarray,
    dims: tuple[int, int],
    S: np.ndarray | None = None,
    YrA: np.ndarray | None = None,
    fr: float = 20.0,
    idx_components: np.ndarray | None = None,
    idx_components_bad: np.ndarray | None = None,
) -> Path:
    """Write CaImAn's ``cnm.save(path)`` layout (``caiman.utils.utils.save_dict_to_hdf5`` of
    ``cnm.__dict__``): ``estimates`` and ``params`` groups, sparse ``A`` as CSC parts
    (``data``/``indptr``/``indices``/``shape``), ``None`` as the string ``'NoneType'``."""
    import h5py

    def put(group: Any, key: str, value: Any) -> None:
        if value is None:
            group[key] = "NoneType"
        elif sp.issparse(value):
            csc = sp.csc_matrix(value)
            group[f"{key}/data"] = csc.data
            group[f"{key}/indptr"] = csc.indptr
            group[f"{key}/indices"] = csc.indices
            group[f"{key}/shape"] = np.array(csc.shape)
        else:
            group[key] = value

    k = A.shape[1]
    with h5py.File(path, "w") as handle:
        est = handle.create_group("estimates")
        for key, value in {
            "A": A,
            "C": C,
            "S": S,
            "YrA": YrA,
            "b": np.ones((dims[0] * dims[1], 1)),
            "f": np.ones((1, C.shape[1])),
            "dims": np.array(dims),
            "idx_components": idx_components,
            "idx_components_bad": idx_components_bad,
            "SNR_comp": np.linspace(1, 5, k),
            "r_values": np.linspace(0.1, 0.9, k),
            "cnn_preds": np.linspace(0.2, 0.8, k),
            "sn": None,
            "g": None,
            "bl": None,
            "c1": None,
            "neurons_sn": None,
            "lam": None,
            "center": None,
            "merged_ROIs": None,
            "W": None,
            "b0": None,
        }.items():
            put(est, key, value)
        params = handle.create_group("params")
        put(params, "data/fr", np.float64(fr))
        put(params, "data/dims", np.array(dims))
        put(params, "data/fnames", np.array([b"movie.tif"]))
        put(params, "init/K", np.int64(k))
        put(handle, "dims", np.array(dims))
        put(handle, "dview", None)
        put(handle, "skip_refinement", np.bool_(False))
        put(handle, "remove_very_bad_comps", np.bool_(False))
    return path


def write_minian(
    folder: Path,
    *,
    footprints: np.ndarray,
    C: np.ndarray,
    S: np.ndarray | None = None,
    YrA: np.ndarray | None = None,
    unit_ids: np.ndarray | None = None,
    unit_labels: np.ndarray | None = None,
    frames: np.ndarray | None = None,
    extra_vars: tuple[str, ...] = (),
) -> Path:
    """Write Minian's output as ``save_minian`` does: one zarr v2 store per variable
    (``A.zarr`` (unit_id, height, width), ``C.zarr``/``S.zarr``/``YrA.zarr`` (unit_id, frame),
    ``max_proj.zarr``), each with the ``animal``/``session``/``session_id`` coordinates and
    ``unit_labels`` on units."""
    import xarray as xr

    folder.mkdir(parents=True, exist_ok=True)
    k, h, w = footprints.shape
    t = C.shape[1]
    uid = np.arange(1, k + 1) if unit_ids is None else np.asarray(unit_ids)
    labels = uid.copy() if unit_labels is None else np.asarray(unit_labels)
    frame = np.arange(t) if frames is None else np.asarray(frames)
    meta = {"animal": "m1", "session": "demo", "session_id": "m1"}
    unit_coords = {"unit_id": uid, "unit_labels": ("unit_id", labels), **meta}
    variables = {
        "A": xr.DataArray(
            footprints.astype(np.float64),
            dims=("unit_id", "height", "width"),
            coords={**unit_coords, "height": np.arange(h), "width": np.arange(w)},
        ),
        "C": xr.DataArray(
            C.astype(np.float64), dims=("unit_id", "frame"), coords={**unit_coords, "frame": frame}
        ),
        "max_proj": xr.DataArray(
            footprints.max(axis=0).astype(np.float64),
            dims=("height", "width"),
            coords={"height": np.arange(h), "width": np.arange(w), **meta},
        ),
    }
    if S is not None:
        variables["S"] = xr.DataArray(
            S.astype(np.float64), dims=("unit_id", "frame"), coords={**unit_coords, "frame": frame}
        )
    if YrA is not None:
        variables["YrA"] = xr.DataArray(
            YrA.astype(np.float64), dims=("unit_id", "frame"), coords={**unit_coords, "frame": frame}
        )
    for name in extra_vars:
        variables[name] = xr.DataArray(np.zeros(t), dims=("frame",), coords={"frame": frame, **meta})
    for name, array in variables.items():
        chunks = {d: (1 if d == "unit_id" else -1) for d in array.dims}
        array.rename(name).to_dataset().chunk(chunks).to_zarr(
            folder / f"{name}.zarr", mode="w", zarr_format=2, consolidated=False
        )
    return folder


def write_suite2p_plane(
    plane: Path,
    *,
    footprints: np.ndarray,
    F: np.ndarray,
    Fneu: np.ndarray | None = None,
    spks: np.ndarray | None = None,
    iscell: np.ndarray | None = None,
    fs: float = 20.0,
    movie: np.ndarray | None = None,
) -> Path:
    """Write a Suite2p plane folder: ``stat.npy`` (object array of dicts with ``ypix``,
    ``xpix``, ``lam``, ``med``, ``npix``, ...), ``F.npy``, ``Fneu.npy``, ``spks.npy``,
    ``iscell.npy`` (flag, probability), ``ops.npy`` (dict) and, with ``movie``, ``data.bin``."""
    plane.mkdir(parents=True, exist_ok=True)
    k, ly, lx = footprints.shape
    t = F.shape[1]
    stat = []
    for fp in footprints:
        ypix, xpix = np.nonzero(fp)
        lam = fp[ypix, xpix].astype(np.float32)
        stat.append(
            {
                "ypix": ypix.astype(np.int32),
                "xpix": xpix.astype(np.int32),
                "lam": lam,
                "med": [int(np.median(ypix)), int(np.median(xpix))],
                "npix": int(ypix.size),
                "overlap": np.zeros(ypix.size, bool),
                "radius": 3.0,
                "compact": 1.0,
                "footprint": 1.0,
                "skew": 1.0,
                "std": 1.0,
                "aspect_ratio": 1.0,
                "soma_crop": np.ones(ypix.size, bool),
            }
        )
    np.save(plane / "stat.npy", np.array(stat, dtype=object), allow_pickle=True)
    np.save(plane / "F.npy", F.astype(np.float32))
    np.save(plane / "Fneu.npy", (np.zeros_like(F) if Fneu is None else Fneu).astype(np.float32))
    np.save(plane / "spks.npy", (np.zeros_like(F) if spks is None else spks).astype(np.float32))
    flags = np.ones(k) if iscell is None else np.asarray(iscell, dtype=np.float64)
    np.save(plane / "iscell.npy", np.column_stack([flags, np.clip(flags * 0.8 + 0.1, 0, 1)]))
    ops = {
        "Ly": ly,
        "Lx": lx,
        "fs": fs,
        "nframes": t,
        "neucoeff": 0.7,
        "save_path": str(plane),
        "reg_file": str(plane / "data.bin"),
        "meanImg": footprints.max(axis=0).astype(np.float32),
        "yrange": [0, ly],
        "xrange": [0, lx],
        "nplanes": 1,
        "nchannels": 1,
    }
    np.save(plane / "ops.npy", ops, allow_pickle=True)
    if movie is not None:
        np.asarray(movie, dtype=np.int16).tofile(plane / "data.bin")
    return plane


def write_nwb(
    path: Path,
    *,
    footprints: np.ndarray,
    F: np.ndarray,
    spikes: np.ndarray | None = None,
    movie: np.ndarray | None = None,
    fps: float = 20.0,
    mask: str = "image",
    photon: str = "OnePhotonSeries",
    roi_ids: np.ndarray | None = None,
    traces_time_first: bool = True,
) -> Path:
    """Write an NWB file with pynwb as suite2p/CaImAn exports do: an ``ophys`` processing
    module with ``ImageSegmentation``/``PlaneSegmentation`` (``image_mask`` (ROI, d0, d1)
    or ``pixel_mask`` rows ``(x, y, weight)`` with ``x`` the first frame axis), a
    ``Fluorescence`` ``RoiResponseSeries`` (time x ROI), a ``Deconvolved`` one, and the
    movie as ``OnePhotonSeries`` / ``TwoPhotonSeries`` (time, d0, d1) in ``/acquisition``."""
    import warnings

    with warnings.catch_warnings():  # hdmf warns about table regions built before the file is assembled
        warnings.simplefilter("ignore")
        return _write_nwb(
            path,
            footprints=footprints,
            F=F,
            spikes=spikes,
            movie=movie,
            fps=fps,
            mask=mask,
            photon=photon,
            roi_ids=roi_ids,
            traces_time_first=traces_time_first,
        )


def _write_nwb(
    path: Path,
    *,
    footprints: np.ndarray,
    F: np.ndarray,
    spikes: np.ndarray | None,
    movie: np.ndarray | None,
    fps: float,
    mask: str,
    photon: str,
    roi_ids: np.ndarray | None,
    traces_time_first: bool,
) -> Path:
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ophys import (
        Fluorescence,
        ImageSegmentation,
        OnePhotonSeries,
        OpticalChannel,
        RoiResponseSeries,
        TwoPhotonSeries,
    )

    k, h, w = footprints.shape
    nwbfile = NWBFile(
        session_description="cellsift fixture",
        identifier="fixture",
        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
    )
    device = nwbfile.create_device(name="Miniscope", description="UCLA Miniscope V4")
    channel = OpticalChannel(name="OpticalChannel", description="green", emission_lambda=520.0)
    plane = nwbfile.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=channel,
        imaging_rate=fps,
        description="CA1",
        device=device,
        excitation_lambda=470.0,
        indicator="GCaMP6f",
        location="CA1",
    )
    if movie is not None:
        cls = OnePhotonSeries if photon == "OnePhotonSeries" else TwoPhotonSeries
        nwbfile.add_acquisition(cls(name=photon, data=movie, imaging_plane=plane, rate=fps, unit="n.a."))
    module = nwbfile.create_processing_module(name="ophys", description="processed 1p data")
    seg = ImageSegmentation()
    module.add(seg)
    ps = seg.create_plane_segmentation(name="PlaneSegmentation", description="CNMF-E", imaging_plane=plane)
    ps.add_column("iscell", "two columns: is cell, probability")
    ids = np.arange(k) if roi_ids is None else np.asarray(roi_ids)
    for i in range(k):
        extra = {"iscell": [1.0 if i % 3 else 0.0, 0.5]}
        if mask == "image":
            ps.add_roi(id=int(ids[i]), image_mask=footprints[i], **extra)
        else:
            ys, xs = np.nonzero(footprints[i])
            ps.add_roi(
                id=int(ids[i]),
                pixel_mask=[
                    (int(y), int(x), float(footprints[i][y, x])) for y, x in zip(ys, xs, strict=True)
                ],
                **extra,
            )
    region = ps.create_roi_table_region(region=list(range(k)), description="all ROIs")
    data = F.T if traces_time_first else F
    fl = Fluorescence(
        roi_response_series=RoiResponseSeries(
            name="RoiResponseSeries", data=data, rois=region, unit="lumens", rate=fps
        )
    )
    module.add(fl)
    if spikes is not None:
        region2 = ps.create_roi_table_region(region=list(range(k)), description="all ROIs")
        module.add(
            Fluorescence(
                name="Deconvolved",
                roi_response_series=RoiResponseSeries(
                    name="Deconvolved", data=spikes.T, rois=region2, unit="lumens", rate=fps
                ),
            )
        )
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


# --------------------------------------------------------------------------- CSVs


def write_labels_csv(
    path: Path, unit_ids: Iterable[int], labels: Iterable[str], reasons: Iterable[str] | None = None
) -> Path:
    ids, labs = list(unit_ids), list(labels)
    reas = list(reasons) if reasons is not None else ["" for _ in ids]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["unit_id", "label", "reason"])
        writer.writerows(zip(ids, labs, reas, strict=True))
    return path


def write_inscopix_props(path: Path, unit_ids: Iterable[int], statuses: Iterable[str]) -> Path:
    """Inscopix Data Processing's cell-set properties export (``Name,Status,ColorR,...``)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "Name",
                "Status",
                "ColorR",
                "ColorG",
                "ColorB",
                "CentroidX",
                "CentroidY",
                "NumComponents",
                "Size",
            ]
        )
        for uid, status in zip(unit_ids, statuses, strict=True):
            writer.writerow([f"C{uid:02d}", status, 255, 255, 0, 10.5, 12.5, 1, 8.0])
    return path


def write_inscopix_traces(
    path: Path, unit_ids: list[int], statuses: list[str], traces: np.ndarray, fps: float = 20.0
) -> Path:
    """Inscopix's cell-set traces export: names in row 1, ``Time(s)/Cell Status`` in row 2."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([" "] + [f" C{u:02d}" for u in unit_ids])
        writer.writerow(["Time(s)/Cell Status"] + [f" {s}" for s in statuses])
        for t in range(traces.shape[1]):
            writer.writerow([f"{t / fps:.3f}"] + [f"{v:.4f}" for v in traces[:, t]])
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
    video: Path | None
    extraction: Path
    events: Path
    labels: Path
    footprints: np.ndarray  # (K, H, W) float32
    C: np.ndarray  # (K, T)
    C_raw: np.ndarray
    S: np.ndarray
    unit_ids: np.ndarray
    fps: float
    movie: np.ndarray | None = None  # (T, H, W) uint8, when rendered in memory

    def row(
        self, cohort: str, animal: str, session: str, *, stage: str = "baseline", day: int = 1, **extra: Any
    ) -> dict[str, Any]:
        """A manifest row for this session (absolute paths)."""
        row = {
            "cohort": cohort,
            "animal": animal,
            "session": session,
            "stage": stage,
            "day": day,
            "video": "" if self.video is None else str(self.video),
            "extraction": str(self.extraction),
            "events": str(self.events),
            "labels": str(self.labels),
        }
        row.update(extra)
        return row


#: Extraction formats :func:`make_session` writes (name -> file or folder name).
EXTRACTION_WRITERS: dict[str, str] = {
    "cnmfe_v5": "cnmfe_results.mat",
    "cnmfe_v73": "cnmfe_results.mat",
    "cnmfe_neuron_results": "cnmfe_neuron_results.mat",
    "cnmfe_neuron": "cnmfe_workspace.mat",
    "caiman": "caiman_results.hdf5",
    "minian": "minian",
    "suite2p": "suite2p/plane0",
    "nwb": "session.nwb",
}
#: Video formats :func:`make_session` writes (name -> file or folder name).
VIDEO_WRITERS: dict[str, str] = {
    "miniscope_v4": "miniscope",
    "miniscope_v3": "v3",
    "avi": "movie.avi",
    "tiff": "movie.tif",
    "bigtiff": "movie_big.tif",
    "hdf5": "movie.h5",
    "mat73": "movie.mat",
    "mat_v5": "movie_v5.mat",
    "suite2p_bin": "suite2p/plane0",
    "nwb": "session.nwb",
    "none": "",
}


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
    extraction: str | None = None,
    video: str = "miniscope_v4",
    footprints: np.ndarray | None = None,
) -> SyntheticSession:
    """Write a consistent session (video, extraction, labels, events) to ``folder``.

    Footprints are Gaussian blobs at ``centres`` (``(y, x)``) unless ``footprints``
    (``(K, H, W)``) are given; the movie is rendered from them and the traces.
    ``extraction`` is a key of :data:`EXTRACTION_WRITERS` (default ``"cnmfe_v5"`` /
    ``"cnmfe_v73"`` from ``mat``), ``video`` a key of :data:`VIDEO_WRITERS`; for
    ``suite2p_bin`` and ``nwb`` the movie goes into the extraction's own files and the
    session's ``video`` is ``None`` (the extraction's companion video is used).
    """
    folder.mkdir(parents=True, exist_ok=True)
    extraction = extraction or ("cnmfe_v5" if mat == "v5" else "cnmfe_v73")
    if footprints is None:
        if centres is None:
            centres = [(5, 6), (height - 8, width // 2), (height // 2, width - 7)]
        footprints = blob_footprints(height, width, centres)
    else:
        footprints = np.asarray(footprints, dtype=np.float32)
        height, width = footprints.shape[1:]
    k = footprints.shape[0]
    C, C_raw, S = synthetic_traces(k, n_frames, seed=seed)
    unit_ids = np.asarray(ids if ids is not None else np.arange(1, k + 1) * 10, dtype=np.int64)
    if extraction in ("caiman", "suite2p"):
        unit_ids = np.arange(k, dtype=np.int64)  # these formats number components by index
    movie: np.ndarray | None = None
    video_path: Path | None
    if video in ("miniscope_v4",):
        video_path = write_miniscope_v4(
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
    else:
        movie = render_frames(footprints, C, seed=seed) if video != "none" else None
        target = folder / VIDEO_WRITERS[video]
        if video == "miniscope_v3":
            video_path = write_miniscope_v3(target, movie, frames_per_file=frames_per_file, fps=fps)
        elif video == "avi":
            write_avi(target, iter(movie), height=height, width=width, codec=codec, fps=int(fps))
            video_path = target
        elif video in ("tiff", "bigtiff"):
            video_path = write_tiff_stack(target, movie, bigtiff=video == "bigtiff", fps=fps)
        elif video == "hdf5":
            video_path = write_hdf5_movie(target, movie, dataset="mov")
        elif video == "mat73":
            video_path = write_hdf5_movie(target, movie, dataset="Y", matlab=True)
        elif video == "mat_v5":
            video_path = write_hdf5_movie(target, movie, dataset="Y")
        else:  # suite2p_bin, nwb: written with the extraction; none
            video_path = None
    A = to_cnmfe_A(footprints)
    target = folder / EXTRACTION_WRITERS[extraction]
    Cn = footprints.max(axis=0).astype(np.float64)
    if extraction in ("cnmfe_v5", "cnmfe_neuron_results"):
        extraction_path = write_cnmfe_v5(
            target,
            A=A if sparse_A else A.toarray(),
            C=C,
            C_raw=C_raw,
            S=S,
            d1=height,
            d2=width,
            fps=fps,
            ids=unit_ids,
            Cn=Cn,
            variable="results" if extraction == "cnmfe_v5" else "neuron_results",
        )
    elif extraction == "cnmfe_v73":
        extraction_path = write_cnmfe_v73(
            target,
            A=A if sparse_A else A.toarray(),
            C=C,
            C_raw=C_raw,
            S=S,
            d1=height,
            d2=width,
            fps=fps,
            ids=unit_ids,
            Cn=Cn,
        )
    elif extraction == "cnmfe_neuron":
        extraction_path = write_cnmfe_neuron(
            target,
            A=A if sparse_A else A.toarray(),
            C=C,
            C_raw=C_raw,
            S=S,
            d1=height,
            d2=width,
            fps=fps,
            ids=unit_ids,
            Cn=Cn,
        )
    elif extraction == "caiman":
        extraction_path = write_caiman_hdf5(
            target,
            A=A,
            C=C,
            S=S,
            YrA=C_raw - C,
            dims=(height, width),
            fr=fps,
            idx_components=np.arange(k - 1),
            idx_components_bad=np.array([k - 1]),
        )
    elif extraction == "minian":
        extraction_path = write_minian(
            target, footprints=footprints, C=C, S=S, YrA=C_raw - C, unit_ids=unit_ids
        )
    elif extraction == "suite2p":
        extraction_path = write_suite2p_plane(
            target,
            footprints=footprints,
            F=C_raw,
            Fneu=np.zeros_like(C_raw),
            spks=S,
            iscell=np.r_[np.ones(k - 1), 0],
            fs=fps,
            movie=movie if video == "suite2p_bin" else None,
        )
    elif extraction == "nwb":
        extraction_path = write_nwb(
            target,
            footprints=footprints,
            F=C_raw,
            spikes=S,
            fps=fps,
            roi_ids=unit_ids,
            movie=movie if video == "nwb" else None,
        )
    else:  # pragma: no cover
        raise ValueError(extraction)
    if extraction in ("caiman", "suite2p"):
        C_raw_truth = C_raw if extraction == "suite2p" else C + (C_raw - C)
    else:
        C_raw_truth = C_raw
    labels = write_labels_csv(
        folder / "labels.csv", unit_ids, ["good"] * (k - 1) + ["bad"], [""] * (k - 1) + ["dendrite"]
    )
    events = write_events_csv(folder / "events.csv")
    return SyntheticSession(
        folder=folder,
        video=video_path,
        extraction=extraction_path,
        events=events,
        labels=labels,
        footprints=footprints,
        C=C,
        C_raw=C_raw_truth,
        S=S,
        unit_ids=unit_ids,
        fps=fps,
        movie=movie,
    )

"""Writers of the simulated cohort, in the file formats labs really have.

* Miniscope V4 folder (Miniscope-DAQ-QT layout): ``0.avi, 1.avi, ...`` with at most
  ``framesPerFile`` frames each (FFV1 or raw ``GREY`` 8-bit grayscale, via PyAV),
  ``timeStamps.csv`` and ``metaData.json``.
* CNMF-E result as a MATLAB v5 ``.mat`` holding the struct ``results`` as
  ``obj2struct`` writes it (``A`` sparse, pixels in column-major order).
* CSV tables (labels, events, manifest) and a JSON truth file.

Every writer is deterministic: the same inputs give the same bytes (the ``.mat``
header's creation time is replaced by a fixed text; AVI files hold identical pixels).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import av
import numpy as np
import scipy.io
import scipy.sparse as sp

from cellsift.schemas import ParameterError

__all__ = [
    "TIMESTAMP_HEADER",
    "LABELS_HEADER",
    "EVENTS_HEADER",
    "MANIFEST_HEADER",
    "MiniscopeWriter",
    "write_timestamps",
    "write_miniscope_metadata",
    "write_cnmfe_mat",
    "write_csv",
    "write_json",
]

log = logging.getLogger(__name__)

TIMESTAMP_HEADER: Final = ("Frame Number", "Time Stamp (ms)", "Buffer Index")
LABELS_HEADER: Final = ("unit_id", "label", "reason")
EVENTS_HEADER: Final = ("event", "onset_s", "offset_s")
MANIFEST_HEADER: Final = (
    "cohort",
    "animal",
    "session",
    "stage",
    "day",
    "video",
    "extraction",
    "events",
    "labels",
    "fps",
)

#: PyAV codec name, pixel format, fourcc and metaData ``compression`` per video codec.
_CODECS: Final = {
    "ffv1": ("ffv1", "gray", None, "FFV1"),
    "gray": ("rawvideo", "gray", "GREY", "GREY"),
}

_MAT_HEADER: Final = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: cellsift simulate"


class MiniscopeWriter:
    """Write 8-bit grayscale frames into Miniscope V4 AVI chunks ``0.avi, 1.avi, ...``.

    Parameters
    ----------
    folder
        The ``miniscope`` folder (created if missing).
    height, width
        Frame size (px).
    fps
        Frame rate (Hz), stored in the AVI header.
    codec
        ``"ffv1"`` (lossless FFV1) or ``"gray"`` (uncompressed, fourcc ``GREY``).
    frames_per_file
        Frames per AVI file (Miniscope-DAQ-QT default 1000).

    Raises
    ------
    ParameterError
        On an unknown codec or a bad size.
    """

    def __init__(
        self,
        folder: Path,
        *,
        height: int,
        width: int,
        fps: float,
        codec: str = "ffv1",
        frames_per_file: int = 1000,
    ) -> None:
        if codec not in _CODECS:
            raise ParameterError(
                f"video codec must be one of {sorted(_CODECS)}, got {codec!r}", field="codec"
            )
        if height < 1 or width < 1 or frames_per_file < 1:
            raise ParameterError("height, width and frames_per_file must be >= 1", field="frames_per_file")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.height, self.width, self.fps = height, width, fps
        self.codec = codec
        self.frames_per_file = frames_per_file
        self.n_written = 0
        self.files: list[Path] = []
        self._container: Any = None
        self._stream: Any = None
        self._in_file = 0

    def _open(self) -> None:
        name, pix_fmt, tag, _ = _CODECS[self.codec]
        path = self.folder / f"{len(self.files)}.avi"
        self._container = av.open(str(path), mode="w", format="avi")
        self._stream = self._container.add_stream(name, rate=Fraction(self.fps).limit_denominator(1000))
        self._stream.width = self.width
        self._stream.height = self.height
        self._stream.pix_fmt = pix_fmt
        if tag is not None:
            self._stream.codec_context.codec_tag = tag
        self._stream.codec_context.thread_count = 1
        self.files.append(path)
        self._in_file = 0

    def _close_file(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
            self._stream = None

    def write(self, frames: np.ndarray) -> None:
        """Append frames ``(n, height, width)`` uint8.

        Raises
        ------
        ParameterError
            On a wrong dtype or shape.
        """
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 3 or frames.shape[1:] != (self.height, self.width):
            raise ParameterError(
                f"frames must be uint8 (n, {self.height}, {self.width}), got {frames.dtype} {frames.shape}",
                field="frames",
            )
        for frame in frames:
            if self._container is None or self._in_file >= self.frames_per_file:
                self._close_file()
                self._open()
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="gray")
            for packet in self._stream.encode(vf):
                self._container.mux(packet)
            self._in_file += 1
            self.n_written += 1

    def close(self) -> None:
        """Flush and close the current file."""
        self._close_file()

    def __enter__(self) -> MiniscopeWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_timestamps(path: Path, n_frames: int, *, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Write a Miniscope ``timeStamps.csv`` with realistic jitter.

    Parameters
    ----------
    path
        Output file.
    n_frames
        Number of frames.
    fps
        Nominal frame rate (Hz).
    rng
        Random generator of the jitter (SD 1 ms, clipped to +-3 ms).

    Returns
    -------
    numpy.ndarray
        Time stamps (ms since the first frame), ``(n_frames,)`` int64, increasing.
    """
    nominal = np.arange(n_frames) * (1000.0 / fps)
    jitter = np.clip(rng.normal(0.0, 1.0, n_frames), -3.0, 3.0)
    jitter[:1] = 0.0
    ts = np.rint(nominal + jitter).astype(np.int64)
    ts = np.maximum.accumulate(ts)
    for i in range(1, n_frames):  # strictly increasing, even at high frame rates
        if ts[i] <= ts[i - 1]:
            ts[i] = ts[i - 1] + 1
    rows = [(i, int(t), 0) for i, t in enumerate(ts)]
    write_csv(path, TIMESTAMP_HEADER, rows)
    return ts


def write_miniscope_metadata(
    path: Path,
    *,
    height: int,
    width: int,
    fps: float,
    codec: str,
    frames_per_file: int = 1000,
    led_power: int = 12,
    ewl: int = 0,
    start_time: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Write a Miniscope-DAQ-QT V4 device ``metaData.json``.

    Parameters
    ----------
    path
        Output file.
    height, width
        Frame size (px), written as the ``ROI``.
    fps
        Frame rate (Hz), written as e.g. ``"20FPS"``.
    codec
        ``"ffv1"`` or ``"gray"``.
    frames_per_file
        Frames per AVI file.
    led_power
        Excitation LED power (% of maximum).
    ewl
        Electro-wetting lens setting (focus).
    start_time
        Optional ``recordingStartTime`` mapping (year, month, day, hour, minute, ...).

    Returns
    -------
    dict
        The metadata written.
    """
    rate = f"{fps:g}FPS"
    meta: dict[str, Any] = {
        "ROI": {"height": int(height), "leftEdge": 0, "topEdge": 0, "width": int(width)},
        "compression": _CODECS[codec][3],
        "deviceDirectory": "miniscope",
        "deviceID": 0,
        "deviceName": "Miniscope",
        "deviceType": "Miniscope_V4_BNO",
        "ewl": int(ewl),
        "frameRate": rate,
        "framesPerFile": int(frames_per_file),
        "gain": "Low",
        "led0": int(led_power),
        "ledPower": int(led_power),
    }
    if start_time is not None:
        meta["recordingStartTime"] = dict(start_time)
    write_json(path, meta)
    return meta


def write_cnmfe_mat(
    path: Path,
    *,
    A: sp.csc_matrix,
    C: np.ndarray,
    C_raw: np.ndarray | None,
    S: np.ndarray,
    ids: np.ndarray,
    height: int,
    width: int,
    fps: float,
    Cn: np.ndarray,
    PNR: np.ndarray | None = None,
    extra_options: Mapping[str, Any] | None = None,
) -> None:
    """Write a CNMF-E ``results`` struct to a MATLAB v5 ``.mat`` (compressed).

    Parameters
    ----------
    path
        Output file.
    A
        Footprints ``(height * width, K)``, pixels column-major (``x * height + y``).
    C, C_raw, S
        Traces ``(K, n_frames)``; ``C_raw`` None leaves it out of the file (an export
        without the raw trace).
    ids
        1-based unit ids ``(K,)`` (stored as a ``1 x K`` double row, as MATLAB does).
    height, width
        Frame size (px), stored as ``options.d1`` and ``options.d2``.
    fps
        Frame rate (Hz), stored as ``Fs``.
    Cn, PNR
        Summary images ``(height, width)``.
    extra_options
        More fields of ``options``.

    Raises
    ------
    ParameterError
        On inconsistent shapes.
    """
    k = A.shape[1]
    if A.shape[0] != height * width:
        raise ParameterError(f"A has {A.shape[0]} rows, expected height*width = {height * width}", field="A")
    for name, arr in (("C", C), ("C_raw", C_raw), ("S", S)):
        if arr is not None and arr.shape[0] != k:
            raise ParameterError(f"{name} has {arr.shape[0]} rows, expected K = {k}", field=name)
    if np.shape(ids) != (k,):
        raise ParameterError(f"ids must have shape ({k},), got {np.shape(ids)}", field="ids")
    options: dict[str, Any] = {"d1": float(height), "d2": float(width)}
    options.update(dict(extra_options or {}))
    results: dict[str, Any] = {
        "A": sp.csc_matrix(A, dtype=np.float64),
        "C": np.asarray(C, dtype=np.float64),
        "C_raw": None if C_raw is None else np.asarray(C_raw, dtype=np.float64),
        "S": np.asarray(S, dtype=np.float64),
        "ids": np.asarray(ids, dtype=np.float64).reshape(1, -1),
        "options": options,
        "Fs": float(fps),
        "Cn": np.asarray(Cn, dtype=np.float64),
    }
    if C_raw is None:
        del results["C_raw"]
    if PNR is not None:
        results["PNR"] = np.asarray(PNR, dtype=np.float64)
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"results": results}, do_compression=True, format="5", oned_as="row")
    data = bytearray(buf.getvalue())
    data[:116] = _MAT_HEADER.ljust(116, b" ")  # replace the creation time: same bytes every run
    Path(path).write_bytes(bytes(data))


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Write a CSV with ``\\n`` line ends and values formatted by ``str``.

    Parameters
    ----------
    path
        Output file.
    header
        Column names.
    rows
        Rows of values (floats should be pre-formatted or rounded by the caller).
    """
    with open(path, "w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(header)
        wr.writerows(rows)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return round(v, 6) if math.isfinite(v) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(path: Path, obj: Any) -> None:
    """Write JSON (sorted keys, 2-space indent, floats rounded to 6 decimals)."""
    Path(path).write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n", encoding="utf-8")

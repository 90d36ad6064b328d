"""NWB files (format ``nwb``): cell candidates and the photon series.

The extraction is a ``PlaneSegmentation`` with its ``RoiResponseSeries`` (read with
pynwb); the video is the ``OnePhotonSeries`` / ``TwoPhotonSeries`` in ``/acquisition``
(streamed with h5py), which is also the extraction's own (companion) video.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.readers.base import (
    FOOTPRINT_BLOCK,
    Extraction,
    UnitLabels,
    blocks_from_array,
    corrupt_file,
    dense_to_csc,
    finite_positive,
    frame_dtype,
    require_exists,
    require_numeric,
)
from cellsift.pipeline.readers.checks import finish_extraction
from cellsift.pipeline.readers.matlab import is_hdf5
from cellsift.schemas import InputFormatError

logger = logging.getLogger(__name__)

__all__ = ["NwbExtractionReader", "NwbVideoReader", "nwb_photon_series", "nwb_photon_series_names"]

_PHOTON_SERIES: Final = ("OnePhotonSeries", "TwoPhotonSeries")


# =========================================================================== photon series


def _neurodata_type(obj: Any) -> str:
    value = obj.attrs.get("neurodata_type", b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def nwb_photon_series(handle: Any) -> list[str]:
    """Names of the photon series with their own data in ``/acquisition`` of an open NWB file."""
    group = handle.get("acquisition")
    if group is None:
        return []
    names = []
    for name, obj in group.items():
        if (
            _neurodata_type(obj) in _PHOTON_SERIES
            and "data" in obj
            and obj["data"].ndim >= 3
            and obj["data"].shape[0] > 0
        ):
            names.append(name)
    return names


def nwb_photon_series_names(path: Path) -> list[str]:
    """Photon series with data in an NWB file (h5py; empty on any problem)."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return nwb_photon_series(handle)
    except Exception:  # noqa: BLE001
        return []


# =========================================================================== extraction


def _reference_dims(ps: Any) -> tuple[int, int] | None:
    refs = getattr(ps, "reference_images", None)
    for ref in refs.values() if refs is not None and hasattr(refs, "values") else refs or []:
        shape: tuple[int, ...] = tuple(getattr(getattr(ref, "data", None), "shape", ()))
        if len(shape) >= 2:
            return (int(shape[-2]), int(shape[-1])) if len(shape) == 3 else (int(shape[0]), int(shape[1]))
    return None


class NwbExtractionReader:
    """Cell candidates of an NWB file, read with pynwb.

    Takes the first ``PlaneSegmentation`` of the ``ImageSegmentation`` in any processing
    module (or the one named by ``name``). Masks: ``image_mask`` (ROI x d0 x d1) or
    ``pixel_mask`` (``x``, ``y``, ``weight``), both in the axis order of the photon
    series' frames. Traces: the ``RoiResponseSeries`` (time x ROI) that reference the
    segmentation; one whose name or container says ``deconv``/``spike``/``spks`` is ``S``,
    one that says ``neuropil`` is subtracted (``F - 0.7*Fneu``), the first other one is
    the raw trace. An ``iscell`` column is stored as labels of source ``nwb_iscell``. The
    ``OnePhotonSeries``/``TwoPhotonSeries`` with data is the companion video.

    Parameters
    ----------
    path
        The ``.nwb`` file.
    name
        Name of the ``PlaneSegmentation`` to read (default: the first).
    """

    format: str = "nwb"

    def __init__(self, path: Path | str, name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name

    def read(self) -> Extraction:
        """Read and check the NWB file (row-major ``"C"`` pixels).

        See :meth:`~cellsift.pipeline.readers.base.ExtractionReader.read`.
        """
        require_exists(self.path, field_name="extraction", what="extraction file")
        try:
            from pynwb import NWBHDF5IO
        except ImportError:
            raise InputFormatError(
                "reading NWB needs the pynwb package",
                path=self.path,
                field="extraction",
                fix="pip install pynwb",
            ) from None
        if not is_hdf5(self.path):
            raise InputFormatError(
                "not an HDF5 NWB file (truncated or another format)",
                path=self.path,
                field="extraction",
                fix="export the NWB file again",
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with NWBHDF5IO(str(self.path), "r", load_namespaces=True) as io:
                    nwbfile = io.read()
                    return self._read(nwbfile)
        except InputFormatError:
            raise
        except Exception as exc:  # noqa: BLE001 - pynwb/hdmf raise many types
            raise corrupt_file(self.path, exc, "NWB file") from None

    def _segmentation(self, nwbfile: Any) -> tuple[Any, Any]:
        from pynwb.ophys import ImageSegmentation

        found = []
        for module in nwbfile.processing.values():
            for container in module.data_interfaces.values():
                if isinstance(container, ImageSegmentation):
                    for ps in container.plane_segmentations.values():
                        found.append((module, ps))
        if self.name is not None:
            found = [(m, ps) for m, ps in found if ps.name == self.name]
        if not found:
            raise InputFormatError(
                "no PlaneSegmentation in the NWB file" + (f" named '{self.name}'" if self.name else ""),
                path=self.path,
                field="PlaneSegmentation",
                fix="give an NWB file with an ImageSegmentation in a processing module (e.g. 'ophys')",
            )
        if len(found) > 1:
            logger.warning("%s: several PlaneSegmentations; using %s", self.path, found[0][1].name)
        return found[0]

    def _read(self, nwbfile: Any) -> Extraction:
        path = self.path
        module, ps = self._segmentation(nwbfile)
        n_units = len(ps)
        if n_units == 0:
            raise InputFormatError(
                "the PlaneSegmentation has no ROIs",
                path=path,
                field="PlaneSegmentation",
                fix="export the segmentation with its ROIs",
            )
        unit_ids = np.asarray(ps.id[:], dtype=np.int64)
        series_names = nwb_photon_series_names(path)
        dims: tuple[int, int] | None = None
        if series_names:
            series = nwbfile.acquisition[series_names[0]]
            dims = (int(series.data.shape[1]), int(series.data.shape[2]))
        A, dims = self._footprints(ps, unit_ids, dims)
        raw, raw_name, neuropil, spikes = self._response_series(module, ps)
        F = self._traces(raw, "RoiResponseSeries", n_units)
        if neuropil is not None:
            C_raw, c_raw_source = (
                F - np.float32(0.7) * self._traces(neuropil, "Neuropil", n_units),
                f"{raw_name} - 0.7*neuropil",
            )
        else:
            C_raw, c_raw_source = F, raw_name
        S = self._traces(spikes, "Deconvolved", n_units) if spikes is not None else np.zeros_like(F)
        if S.shape != F.shape:
            raise InputFormatError(
                f"deconvolved series has {S.shape[1]} samples, fluorescence {F.shape[1]}",
                path=path,
                field="Deconvolved",
                fix="store series of the same length",
            )
        fps = finite_positive(raw.rate) if raw.rate else None
        if fps is None and raw.timestamps is not None and len(raw.timestamps) > 1:
            ts = np.asarray(raw.timestamps[:], dtype=np.float64)
            fps = finite_positive((len(ts) - 1) / (ts[-1] - ts[0])) if ts[-1] > ts[0] else None
        labels: list[UnitLabels] = []
        if "iscell" in ps.colnames:
            flags = np.asarray(ps["iscell"].data[:])
            flags = flags[:, 0] if flags.ndim == 2 else flags
            labels.append(
                UnitLabels(unit_ids, tuple("good" if f > 0.5 else "bad" for f in flags), source="nwb_iscell")
            )
        ext = Extraction(
            A=A,
            C=C_raw,
            C_raw=C_raw,
            S=S,
            unit_ids=unit_ids,
            d1=dims[0],
            d2=dims[1],
            fps=fps,
            pixel_order="C",
            labels=tuple(labels),
            source_format=self.format,
            c_raw_source=c_raw_source,
            companion_video=self.path if series_names else None,
            companion_video_format="nwb" if series_names else None,
            companion_video_dataset=series_names[0] if series_names else None,
        )
        return finish_extraction(ext, path)

    def _footprints(
        self, ps: Any, unit_ids: np.ndarray, dims: tuple[int, int] | None
    ) -> tuple[sp.csc_matrix, tuple[int, int]]:
        """ROI masks as CSC ``(d0*d1, K)`` float32 (row-major pixels) and the frame size."""
        path, n_units = self.path, len(unit_ids)
        if "image_mask" in ps.colnames:
            masks = ps["image_mask"].data
            shape = tuple(int(s) for s in masks.shape)
            if len(shape) != 3:
                raise InputFormatError(
                    f"image_mask has shape {shape}, expected (ROI, d0, d1)",
                    path=path,
                    field="image_mask",
                    fix="store 2-D image masks",
                )
            blocks = [
                dense_to_csc(np.asarray(masks[s : s + FOOTPRINT_BLOCK], dtype=np.float32))
                for s in range(0, n_units, FOOTPRINT_BLOCK)
            ]
            A = sp.hstack(blocks, format="csc")
            mask_dims = (shape[1], shape[2])
            if dims is not None and dims != mask_dims:
                logger.info("%s: image masks are %dx%d, the photon series %dx%d", path, *mask_dims, *dims)
            return A, mask_dims
        if "pixel_mask" not in ps.colnames:
            raise InputFormatError(
                "the PlaneSegmentation has neither image_mask nor pixel_mask",
                path=path,
                field="PlaneSegmentation",
                fix="store ROI masks",
            )
        if dims is None:
            reference = _reference_dims(ps)
            if reference is None:
                raise InputFormatError(
                    "pixel masks but no frame size (no photon series with data and no reference image)",
                    path=path,
                    field="pixel_mask",
                    fix="add the OnePhotonSeries, a reference image, or store image_mask",
                )
            dims = reference
        rows, cols, vals = [], [], []
        for k in range(n_units):
            pm = ps["pixel_mask"][k]
            arr = np.asarray([tuple(p) for p in pm], dtype=np.float64).reshape(-1, 3)
            x, y = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
            if x.size and (x.min() < 0 or x.max() >= dims[0] or y.min() < 0 or y.max() >= dims[1]):
                raise InputFormatError(
                    f"ROI {unit_ids[k]} has pixels outside the {dims[0]}x{dims[1]} frame",
                    path=path,
                    field="pixel_mask",
                    fix="store pixel masks in the axis order of the photon series frames",
                )
            rows.append(x * dims[1] + y)
            cols.append(np.full(x.size, k, dtype=np.int64))
            vals.append(arr[:, 2])
        A = sp.csc_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(dims[0] * dims[1], n_units),
            dtype=np.float32,
        )
        return A, dims

    def _response_series(self, module: Any, ps: Any) -> tuple[Any, str, Any, Any]:
        """``(raw series, its name, neuropil series or None, deconvolved series or None)``.

        The raw series is the first one in a ``Fluorescence`` container; a ``DfOverF``
        series is taken only when no ``Fluorescence`` series references the segmentation
        (converters such as neuroconv write both, and ΔF/F is not the raw trace).
        """
        from pynwb.ophys import DfOverF, RoiResponseSeries

        raw = neuropil = spikes = None
        raw_name = ""
        raw_is_dff = False
        for container in module.data_interfaces.values():
            candidates = getattr(container, "roi_response_series", None)
            members = (
                list(candidates.values())
                if candidates is not None
                else ([container] if isinstance(container, RoiResponseSeries) else [])
            )
            for rrs in members:
                if rrs.rois.table is not ps:
                    continue
                label = f"{container.name}/{rrs.name}".lower()
                if any(k in label for k in ("deconv", "spike", "spks")):
                    spikes = spikes or rrs
                elif "neuropil" in label:
                    neuropil = neuropil or rrs
                elif raw is None or (raw_is_dff and not isinstance(container, DfOverF)):
                    raw, raw_name = rrs, f"{container.name}/{rrs.name}"
                    raw_is_dff = isinstance(container, DfOverF)
        if raw is None:
            raise InputFormatError(
                "no RoiResponseSeries references the PlaneSegmentation",
                path=self.path,
                field="RoiResponseSeries",
                fix="store the ROI traces in a Fluorescence (or DfOverF) RoiResponseSeries",
            )
        return raw, raw_name, neuropil, spikes

    def _traces(self, rrs: Any, name: str, n_units: int) -> np.ndarray:
        """A ``RoiResponseSeries`` (time x ROI) as ``(K, T)`` float32."""
        data = np.asarray(rrs.data[:], dtype=np.float32)
        if data.ndim == 1:
            data = data[:, None]
        if data.shape[1] != n_units:
            hint = " (it looks ROI x time; NWB stores time x ROI)" if data.shape[0] == n_units else ""
            raise InputFormatError(
                f"RoiResponseSeries '{rrs.name}' has shape {data.shape}, expected (time, {n_units} ROIs){hint}",
                path=self.path,
                field=name,
                fix="store RoiResponseSeries data as time x ROI",
            )
        return np.ascontiguousarray(data.T)


# =========================================================================== video


class NwbVideoReader:
    """The ``OnePhotonSeries`` / ``TwoPhotonSeries`` of an NWB file, streamed with h5py.

    NWB stores frames as ``(time, d0, d1)`` in the axis order its writer used (the same
    order as its ``PlaneSegmentation`` image masks), so frames are taken as stored.

    Parameters
    ----------
    path
        The ``.nwb`` file.
    series
        Name of the series in ``/acquisition``; default: the only (or first) photon series.
    """

    format: str = "nwb"

    def __init__(self, path: Path | str, series: str | None = None) -> None:
        import h5py

        self.path = Path(path)
        require_exists(self.path, field_name="video", what="video")
        self.files: tuple[Path, ...] = (self.path,)
        try:
            with h5py.File(self.path, "r") as handle:
                series = self._choose(handle, series)
                group = handle["acquisition"][series]
                data = group["data"]
                shape = tuple(int(s) for s in data.shape)
                self.dtype: np.dtype = np.dtype(data.dtype)
                self.fps: float | None = None
                self.timestamps_s: np.ndarray | None = None
                if "starting_time" in group:
                    self.fps = finite_positive(group["starting_time"].attrs.get("rate"))
                if "timestamps" in group:
                    ts = np.asarray(group["timestamps"][()], dtype=np.float64)
                    if len(ts) == shape[0] and np.all(np.diff(ts) >= 0):
                        self.timestamps_s = ts - ts[0]
        except InputFormatError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise corrupt_file(
                self.path, exc, "NWB file", field_name="video", again="export it again"
            ) from None
        squeezed = shape[:3] if all(s == 1 for s in shape[3:]) else shape
        if len(squeezed) != 3:
            raise InputFormatError(
                f"series '{series}' has shape {shape}, expected (time, height, width)",
                path=self.path,
                field="video",
                fix="store single-plane, single-channel frames",
            )
        self.series = series
        self.n_frames, self.height, self.width = squeezed
        require_numeric(
            self.dtype,
            problem=f"series '{series}' has dtype {self.dtype}",
            path=self.path,
            field_name="video",
            fix="store numeric frames",
        )
        self.dtype = frame_dtype(self.dtype)

    def _choose(self, handle: Any, series: str | None) -> str:
        """The series to read: ``series`` if it has data, else the first photon series."""
        names = nwb_photon_series(handle)
        if series is None:
            if not names:
                raise InputFormatError(
                    "the NWB file has no OnePhotonSeries or TwoPhotonSeries with data in /acquisition",
                    path=self.path,
                    field="video",
                    fix="give the video separately in the manifest's video column (or leave it empty for no movie)",
                )
            if len(names) > 1:
                logger.warning("%s: several photon series %s; using %s", self.path, names, names[0])
            return names[0]
        if series not in names:
            raise InputFormatError(
                f"no photon series '{series}' with data (found: {', '.join(names) or 'none'})",
                path=self.path,
                field="video_dataset",
                fix="set video_dataset to one of the series names",
            )
        return series

    def iter_blocks(self, n_frames: int) -> Iterator[np.ndarray]:
        """Yield blocks of at most ``n_frames`` frames ``(n, height, width)``."""
        import h5py

        try:
            with h5py.File(self.path, "r") as handle:
                data = handle["acquisition"][self.series]["data"]
                shape = (self.height, self.width)
                yield from blocks_from_array(
                    data, n_frames, convert=lambda b: b.reshape(len(b), *shape).astype(self.dtype, copy=False)
                )
        except Exception as exc:  # noqa: BLE001
            raise corrupt_file(
                self.path, exc, "NWB series", field_name="video", again="export it again"
            ) from None

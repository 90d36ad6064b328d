"""The clip model: a per-frame CNN encoder over each peak clip feeding a bidirectional LSTM.

This is the capstone's design (GoogLeNet frame features + LSTM over 21-frame clips
around the fluorescence peak) done right:

* **Input per frame**: four channels — the frame's change from the clip's pre-peak
  baseline in units of the clip's robust noise SD (so the model is invariant to raw
  brightness), the footprint (scaled to max 1), the mask of the neighbouring cells'
  footprints, and the robust z-score of the baseline image (background structure).
  Crops are centre-cropped to ``model_crop`` px and average-pooled by ``pool``.
* **Encoder**: a small CNN trained from scratch (default), or a torchvision ResNet-18 /
  GoogLeNet whose weights are read from a *local file* the user points to (nothing is
  downloaded); a 1x1 convolution maps the four channels to the backbone's three.
* **Sequence model**: a bidirectional LSTM over the frames; its final states feed a
  ``p_good`` head and an artifact-reason head (trained on artifacts with a known reason).
* **Training**: one random valid peak per cell per epoch with random rotations/flips,
  class-balanced loss, Adam, early stopping on a validation split (grouped by animal
  when there are enough animals), the best epoch's weights kept.
* **Prediction**: logits averaged over the cell's strongest ``max_peaks_predict`` valid
  peaks.

Weights are saved as a torch state dict and loaded with ``weights_only=True``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from os import PathLike
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np

from cellsift.schemas.errors import InputFormatError, LakeError, ModelMismatchError

from cellsift.pipeline.classify.base import (
    REASONS,
    CellClassifier,
    CellData,
    ClipArrays,
    file_sha256,
    new_card,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ClipModelConfig",
    "ClipClassifier",
    "prepare_clips",
    "read_clip_store",
    "choose_device",
    "batch_size_for",
]

_WEIGHTS: Final = "clips.pt"
_BACKBONES: Final = ("resnet18", "googlenet")
#: Channels of every frame fed to the encoder.
N_CHANNELS: Final = 4


# ---------------------------------------------------------------------------
# clip preparation


def _robust_sd(x: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    med = np.median(x, axis=axis, keepdims=True)
    return 1.4826 * np.median(np.abs(x - med), axis=axis, keepdims=True)


def prepare_clips(
    clips: np.ndarray,
    footprint: np.ndarray,
    neighbour_mask: np.ndarray,
    valid: np.ndarray,
    *,
    n_before: int,
    model_crop: int = 24,
    pool: int = 2,
    crop_px: int | None = None,
    time_step: float = 1.0,
) -> ClipArrays:
    """Turn raw clip-store arrays into model input, normalised per clip.

    Parameters
    ----------
    clips
        ``(n, k, T, S, S)`` clips in movie units (any numeric dtype).
    footprint
        ``(n, S, S)`` footprint crops (float).
    neighbour_mask
        ``(n, S, S)`` neighbour masks (bool).
    valid
        ``(n, k)`` bool, True where a clip was cut.
    n_before
        Frames before the peak frame; the baseline is the mean of the first
        ``max(1, n_before - 2)`` frames (the rise can start a frame or two early).
    model_crop
        Centre crop (px) taken before pooling (``<= S``).
    pool
        Average-pooling factor (``model_crop`` must be divisible by it).
    crop_px
        Crop size of the clip store, recorded for the model card (default ``S``).
    time_step
        Clip frames per model frame, ``session fps / model fps`` (1: no resampling).
        Otherwise the clips are linearly resampled in time around the peak frame to the
        model's frame rate (same ``T`` frames, same ``n_before``); times beyond the
        stored clip take its edge frame.

    Returns
    -------
    ClipArrays
        ``dynamic`` = (frame - baseline) / robust noise SD of the baseline frames,
        clipped to [-20, 60]; ``static`` = footprint / max, neighbour mask, robust
        z-score of the baseline image clipped to [-10, 10]; float16.
    """
    clips = np.asarray(clips)
    if clips.ndim != 5:
        raise InputFormatError(f"clips must be (unit, peak, frame, y, x), got shape {clips.shape}", field="clips")
    n, k, t, s, s2 = clips.shape
    if s != s2:
        raise InputFormatError(f"clip crops must be square, got {s}x{s2}", field="clips")
    if model_crop > s or model_crop < pool or model_crop % pool:
        raise InputFormatError(
            f"model_crop={model_crop} must be <= the store's crop ({s} px) and a multiple of pool={pool}",
            field="model_crop",
            fix="choose a smaller model_crop or re-run the pipeline with a larger crop",
        )
    if not 0 < n_before < t:
        raise InputFormatError(f"n_before={n_before} must lie in 1..{t - 1}", field="n_before")
    lo = (s - model_crop) // 2
    sl = slice(lo, lo + model_crop)
    m = model_crop // pool

    def _pool(a: np.ndarray) -> np.ndarray:
        a = a[..., sl, sl]
        if pool == 1:
            return a
        return a.reshape(*a.shape[:-2], m, pool, m, pool).mean(axis=(-3, -1))

    c = _pool(clips.astype(np.float32))  # (n, k, t, m, m)
    if not (np.isfinite(time_step) and time_step > 0):
        raise InputFormatError(f"time_step must be > 0, got {time_step}", field="fps")
    if abs(time_step - 1.0) > 1e-3:
        c = resample_time(c, n_before=n_before, time_step=time_step)
    nb = max(1, n_before - 2)
    base = c[:, :, :nb].mean(axis=2, keepdims=True)  # (n, k, 1, m, m)
    sd = _robust_sd(c[:, :, :nb] - base, axis=(2, 3, 4)) if nb > 1 else _robust_sd(c, axis=(2, 3, 4))
    sd = np.maximum(sd, 1e-3 * np.maximum(np.abs(base).mean(axis=(3, 4), keepdims=True), 1.0))
    dynamic = np.clip((c - base) / sd, -20.0, 60.0)
    base_img = base[:, :, 0]  # (n, k, m, m)
    bz = (base_img - np.median(base_img, axis=(2, 3), keepdims=True)) / np.maximum(
        _robust_sd(base_img, axis=(2, 3)), 1e-3
    )
    fp = _pool(np.asarray(footprint, dtype=np.float32))
    fmax = fp.reshape(n, -1).max(axis=1) if n else np.zeros(0, dtype=np.float32)
    fp = fp / np.where(fmax > 0, fmax, 1.0)[:, None, None]
    nbm = _pool(np.asarray(neighbour_mask, dtype=np.float32))
    static = np.empty((n, k, 3, m, m), dtype=np.float16)
    static[:, :, 0] = fp[:, None]
    static[:, :, 1] = nbm[:, None]
    static[:, :, 2] = np.clip(bz, -10.0, 10.0)
    v = np.asarray(valid, dtype=bool)
    dynamic = dynamic.astype(np.float16)
    dynamic[~v] = 0
    return ClipArrays(
        dynamic=dynamic,
        static=static,
        valid=v,
        n_before=int(n_before),
        crop_px=int(crop_px if crop_px is not None else s),
        pool=int(pool),
    )


def resample_time(c: np.ndarray, *, n_before: int, time_step: float) -> np.ndarray:
    """Resample clips ``(..., T, y, x)`` along ``T`` around frame ``n_before``.

    Output frame ``j`` samples input time ``n_before + (j - n_before) * time_step``
    (linear interpolation, clamped to the clip's first and last frame).
    """
    t = c.shape[-3]
    pos = np.clip(n_before + (np.arange(t) - n_before) * float(time_step), 0.0, t - 1.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, t - 1)
    w = (pos - lo).astype(np.float32)[:, None, None]
    return c[..., lo, :, :] * (1.0 - w) + c[..., hi, :, :] * w


def read_clip_store(
    path: str | PathLike[str],
    unit_ids: Sequence[int] | np.ndarray | None = None,
    *,
    model_crop: int = 24,
    pool: int = 2,
    batch_units: int = 256,
    time_step: float = 1.0,
) -> ClipArrays:
    """Read a session's clip store and prepare the clips of ``unit_ids`` (in that order).

    Parameters
    ----------
    path
        The clip store (zarr folder, ``LAKE / sessions.clips_path``).
    unit_ids
        Units to read; default all, in store order.
    model_crop, pool
        See :func:`prepare_clips`.
    batch_units
        Units read and prepared at a time (bounds memory).
    time_step
        ``session fps / model fps`` (see :func:`prepare_clips`).

    Raises
    ------
    LakeError
        The store is missing or unreadable, or a unit id is not in it.
    """
    import zarr

    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
        store_ids = np.asarray(group["unit_id"][:], dtype=np.int64)
        arrays = {name: group[name] for name in ("clips", "valid", "footprint", "neighbour_mask")}
    except (FileNotFoundError, KeyError, ValueError, OSError) as exc:
        raise LakeError(
            f"clip store cannot be read ({type(exc).__name__})",
            path=path,
            fix="run 'cellsift run' so every session has its clip store",
        ) from None
    params = dict(group.attrs.get("params", {}) or {})
    n_before = int(params.get("clips", {}).get("n_before", (arrays["clips"].shape[2] - 1) // 2))
    ids = store_ids if unit_ids is None else np.asarray(unit_ids, dtype=np.int64)
    order = np.argsort(store_ids, kind="stable")
    pos = np.searchsorted(store_ids[order], ids)
    pos = np.clip(pos, 0, max(len(store_ids) - 1, 0))
    if len(ids) and (len(store_ids) == 0 or not np.array_equal(store_ids[order][pos], ids)):
        missing = ids[~np.isin(ids, store_ids)][:5].tolist()
        raise LakeError(
            f"unit(s) {missing} are not in the clip store",
            path=path,
            field="unit_id",
            fix="re-run 'cellsift run --force' so cells table and clip store agree",
        )
    rows = order[pos]
    parts: list[ClipArrays] = []
    crop = int(arrays["clips"].shape[-1])
    for start in range(0, max(len(rows), 1), batch_units):
        sel = rows[start : start + batch_units]
        if len(sel) == 0 and parts:
            break
        srt = np.sort(sel)
        inv = np.searchsorted(srt, sel)

        def _read(a: Any) -> np.ndarray:
            if len(srt) == 0:
                return np.zeros((0, *a.shape[1:]), dtype=a.dtype)
            return np.asarray(a.get_orthogonal_selection((srt,) + (slice(None),) * (a.ndim - 1)))[inv]

        parts.append(
            prepare_clips(
                _read(arrays["clips"]),
                _read(arrays["footprint"]),
                _read(arrays["neighbour_mask"]),
                _read(arrays["valid"]),
                n_before=n_before,
                model_crop=min(model_crop, crop),
                pool=pool,
                crop_px=crop,
                time_step=time_step,
            )
        )
    first = parts[0]
    if len(parts) == 1:
        return first
    return replace(
        first,
        dynamic=np.concatenate([p.dynamic for p in parts]),
        static=np.concatenate([p.static for p in parts]),
        valid=np.concatenate([p.valid for p in parts]),
    )


# ---------------------------------------------------------------------------
# devices


def choose_device(preference: str = "auto") -> str:
    """Return ``"cuda"`` if requested/available, else ``"cpu"``."""
    import torch

    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("CUDA requested but not available; using the CPU")
        return "cpu"
    return preference


def batch_size_for(device: str, *, bytes_per_item: int, cpu_batch: int = 256, cap: int = 4096) -> int:
    """Items per inference batch for ``device``.

    On a GPU: a quarter of the free device memory divided by ``bytes_per_item``
    (activations of one item, bytes), between 32 and ``cap``. On the CPU: ``cpu_batch``.
    """
    if not device.startswith("cuda"):
        return cpu_batch
    import torch

    try:
        free, _total = torch.cuda.mem_get_info(torch.device(device))
    except (RuntimeError, AssertionError):
        return cpu_batch
    return int(np.clip(free // 4 // max(bytes_per_item, 1), 32, cap))


# ---------------------------------------------------------------------------
# the network


@dataclass(frozen=True)
class ClipModelConfig:
    """Settings of :class:`ClipClassifier`.

    Attributes
    ----------
    model_crop
        Centre crop of the stored crops (px) fed to the model.
    pool
        Spatial average-pooling factor (``model_crop / pool`` px per side in the model).
    width
        Channels of the first convolution of the built-in encoder (doubled later).
    embed
        Size of the per-frame embedding fed to the LSTM.
    hidden
        LSTM hidden size per direction.
    dropout
        Dropout before the heads.
    backbone
        ``None`` (built-in CNN trained from scratch), ``"resnet18"`` or ``"googlenet"``.
    backbone_weights
        Local file with the torchvision backbone's state dict (required with a backbone;
        nothing is downloaded).
    backbone_input
        Side (px) frames are resized to before the backbone.
    freeze_backbone
        Keep the backbone's weights fixed (only the adapter, LSTM and heads learn).
    epochs
        Maximum training epochs (one random valid peak per cell per epoch).
    patience
        Epochs without validation-loss improvement before stopping.
    min_epochs
        Epochs always trained.
    batch_size
        Training batch size (cells).
    lr, weight_decay
        Adam learning rate and weight decay.
    lr_schedule
        ``"constant"`` or ``"cosine"`` (decay to ``lr / 20`` over ``epochs``).
    reason_weight
        Weight of the reason loss (artifacts with a known reason only).
    val_fraction
        Fraction of cells split off for early stopping when no validation set is given.
    augment
        Random rotations by 90 degrees and flips during training.
    max_peaks_predict
        Valid peaks per cell averaged at prediction.
    device
        ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
    seed
        Random seed (weights, batches, augmentation).
    """

    model_crop: int = 24
    pool: int = 2
    width: int = 8
    embed: int = 64
    hidden: int = 32
    dropout: float = 0.2
    backbone: str | None = None
    backbone_weights: str | None = None
    backbone_input: int = 64
    freeze_backbone: bool = True
    epochs: int = 60
    patience: int = 8
    min_epochs: int = 5
    batch_size: int = 32
    lr: float = 2e-3
    lr_schedule: str = "constant"
    weight_decay: float = 1e-4
    reason_weight: float = 0.5
    val_fraction: float = 0.2
    augment: bool = True
    max_peaks_predict: int = 3
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.backbone is not None and self.backbone not in _BACKBONES:
            raise InputFormatError(
                f"unknown backbone {self.backbone!r}", field="backbone",
                fix=f"use one of {', '.join(_BACKBONES)} or None",
            )
        if self.backbone is not None and not self.backbone_weights:
            raise InputFormatError(
                f"backbone {self.backbone!r} needs a local weights file (nothing is downloaded)",
                field="backbone_weights",
                fix="pass the path of a torchvision state dict, e.g. resnet18-f37072fd.pth",
            )
        if self.model_crop % self.pool or self.pool < 1:
            raise InputFormatError("model_crop must be a multiple of pool", field="model_crop")
        if (self.model_crop // self.pool) % 4:
            raise InputFormatError(
                "model_crop / pool must be a multiple of 4 for the built-in encoder", field="model_crop"
            )
        if self.lr_schedule not in ("cosine", "constant"):
            raise InputFormatError(f"unknown lr_schedule {self.lr_schedule!r}", field="lr_schedule",
                                   fix="use cosine or constant")
        if self.epochs < 1 or self.batch_size < 2 or not 0 < self.val_fraction < 1:
            raise InputFormatError("epochs >= 1, batch_size >= 2 and 0 < val_fraction < 1", field="ClipModelConfig")


def _build_network(config: ClipModelConfig, *, load_backbone: bool = True) -> Any:
    import torch
    from torch import nn

    size = config.model_crop // config.pool

    class FrameEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = config.width
            self.conv = nn.Sequential(
                nn.Conv2d(N_CHANNELS, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),
            )
            self.fc = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * (size // 4) ** 2, config.embed), nn.ReLU(inplace=True))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x))

    class BackboneEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.adapter = nn.Conv2d(N_CHANNELS, 3, 1)
            self.net, dim = _torchvision_backbone(config, load=load_backbone)
            self.fc = nn.Sequential(nn.Linear(dim, config.embed), nn.ReLU(inplace=True))
            if config.freeze_backbone:
                for p in self.net.parameters():
                    p.requires_grad_(False)

        def train(self, mode: bool = True) -> BackboneEncoder:
            super().train(mode)
            if config.freeze_backbone:
                self.net.eval()  # frozen batch-norm statistics
            return self

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.adapter(x)
            x = nn.functional.interpolate(x, size=(config.backbone_input,) * 2, mode="bilinear", align_corners=False)
            return self.fc(torch.flatten(self.net(x), 1))

    class ClipNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = FrameEncoder() if config.backbone is None else BackboneEncoder()
            self.lstm = nn.LSTM(config.embed, config.hidden, batch_first=True, bidirectional=True)
            self.drop = nn.Dropout(config.dropout)
            self.head = nn.Linear(2 * config.hidden, 1)
            self.reason_head = nn.Linear(2 * config.hidden, len(REASONS))

        def forward(self, dynamic: torch.Tensor, static: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            b, t = dynamic.shape[:2]
            x = torch.cat([dynamic.unsqueeze(2), static.unsqueeze(1).expand(-1, t, -1, -1, -1)], dim=2)
            f = self.encoder(x.flatten(0, 1)).view(b, t, -1)
            _, (h, _) = self.lstm(f)
            z = self.drop(torch.cat([h[0], h[1]], dim=-1))
            return self.head(z).squeeze(-1), self.reason_head(z)

    return ClipNet()


def _torchvision_backbone(config: ClipModelConfig, *, load: bool) -> tuple[Any, int]:
    """A torchvision backbone without its classifier, weights from the local file."""
    import torch
    import torchvision
    from torch import nn

    if config.backbone == "resnet18":
        net = torchvision.models.resnet18(weights=None)
        dim = net.fc.in_features
    else:
        net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
        dim = net.fc.in_features
    if load:
        path = Path(str(config.backbone_weights))
        if not path.is_file():
            raise InputFormatError(
                "backbone weights file not found", path=path, field="backbone_weights",
                fix="pass the path of a local torchvision state dict (cellsift downloads nothing)",
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file
            raise InputFormatError(
                f"backbone weights cannot be read ({type(exc).__name__})", path=path,
                field="backbone_weights", fix="pass a torchvision state dict saved with torch.save",
            ) from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2.", "fc."))}
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise InputFormatError(
                f"backbone weights do not fit {config.backbone} ({str(exc).splitlines()[-1].strip()[:160]})",
                path=path, field="backbone_weights",
                fix=f"pass the state dict of a torchvision {config.backbone}",
            ) from None
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise InputFormatError(
                f"backbone weights do not fit {config.backbone}: missing {missing[:3]}, unexpected {list(unexpected)[:3]}",
                path=path, field="backbone_weights",
                fix=f"pass the state dict of a torchvision {config.backbone}",
            )
    net.fc = nn.Identity()
    return net, dim


# ---------------------------------------------------------------------------
# training helpers


def _dihedral(x: Any, op: int) -> Any:
    import torch

    if op >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k=op % 4, dims=(-2, -1))


def _pick_peaks(valid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random valid peak per row (peak 0 where none is valid)."""
    n, k = valid.shape
    r = rng.random((n, k)) * valid
    out = np.argmax(r, axis=1)
    out[~valid.any(axis=1)] = 0
    return out


def _split_valid(data: CellData, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, valid): grouped by animal when >= 10 animals, else stratified.

    With few animals a grouped split would hold out a large share of the data (whole
    animals); early stopping only needs a fair estimate of the epoch to stop at.
    """
    from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit

    y = data.require_labels(what="the early-stopping split")
    groups = data.groups
    idx = np.arange(len(data))
    if len(set(groups)) >= 10:
        splitter = GroupShuffleSplit(n_splits=8, test_size=fraction, random_state=seed)
        for tr, va in splitter.split(idx, y, groups):
            if len(np.unique(y[va])) == 2 and len(np.unique(y[tr])) == 2:
                return tr, va
    n_min = np.bincount(y, minlength=2).min()
    if n_min < 2:
        return idx, idx[:0]
    splitter2 = StratifiedShuffleSplit(n_splits=1, test_size=max(fraction, 2 / len(y)), random_state=seed)
    tr, va = next(splitter2.split(idx, y))
    return tr, va


class ClipClassifier(CellClassifier):
    """CNN encoder + bidirectional LSTM over peak clips (see the module docstring).

    Parameters
    ----------
    config
        Model settings.
    """

    kind: ClassVar[str] = "clips"
    uses_clips: ClassVar[bool] = True

    def __init__(self, config: ClipModelConfig = ClipModelConfig()) -> None:
        self.config = config
        self.net: Any = None
        self.history: list[dict[str, float]] = []
        self.best_epoch: int | None = None
        self.card = None
        self._device: str | None = None

    # -- internals ------------------------------------------------------------
    @property
    def device(self) -> str:
        """Device the network runs on."""
        if self._device is None:
            self._device = choose_device(self.config.device)
        return self._device

    def _clips(self, data: CellData) -> ClipArrays:
        if data.clips is None:
            raise InputFormatError(
                "the clip model needs clips; load them with training.load_cell_data(..., clips=True)",
                field="clips",
            )
        c = data.clips
        size = self.config.model_crop // self.config.pool
        if c.dynamic.shape[-1] != size or c.pool != self.config.pool:
            raise ModelMismatchError(
                f"clips were prepared at {c.dynamic.shape[-1]} px (pool {c.pool}), the model "
                f"expects {size} px (pool {self.config.pool})",
                field="clips",
                fix=f"prepare clips with model_crop={self.config.model_crop}, pool={self.config.pool}",
            )
        if self.card is not None and self.card.clip_frames and c.n_frames != self.card.clip_frames:
            raise ModelMismatchError(
                f"model '{self.card.model_id}' was trained on {self.card.clip_frames}-frame clips, "
                f"got {c.n_frames}-frame clips",
                field="clip_frames",
                fix="re-run the pipeline with the model's clip length, or re-train",
            )
        return c

    def _tensors(self, c: ClipArrays, rows: np.ndarray, peaks: np.ndarray) -> tuple[Any, Any]:
        import torch

        dyn = torch.from_numpy(np.ascontiguousarray(c.dynamic[rows, peaks], dtype=np.float32))
        sta = torch.from_numpy(np.ascontiguousarray(c.static[rows, peaks], dtype=np.float32))
        return dyn.to(self.device), sta.to(self.device)

    def _logits(
        self, c: ClipArrays, rows: np.ndarray, *, batch: int, max_peaks: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean logit and mean reason probabilities over up to ``max_peaks_predict`` valid peaks."""
        import torch

        k_use = min(max_peaks or self.config.max_peaks_predict, self.config.max_peaks_predict, c.valid.shape[1])
        valid = c.valid[rows, :k_use].copy()
        valid[~valid.any(axis=1), 0] = True
        logit_sum = np.zeros(len(rows))
        reason_sum = np.zeros((len(rows), len(REASONS)))
        count = valid.sum(axis=1).astype(np.float64)
        self.net.eval()
        with torch.inference_mode():
            for p in range(k_use):
                sel = np.flatnonzero(valid[:, p])
                for s in range(0, len(sel), batch):
                    part = sel[s : s + batch]
                    dyn, sta = self._tensors(c, rows[part], np.full(len(part), p))
                    lg, rl = self.net(dyn, sta)
                    logit_sum[part] += lg.double().cpu().numpy()
                    reason_sum[part] += torch.softmax(rl, dim=-1).double().cpu().numpy()
        return logit_sum / count, reason_sum / count[:, None]

    def _inference_batch(self) -> int:
        size = self.config.model_crop // self.config.pool
        t = 21
        per_item = 4 * t * (N_CHANNELS + 8 * self.config.width) * size * size * 4
        if self.config.backbone is not None:
            per_item = 4 * t * 64 * self.config.backbone_input**2 * 4
        return batch_size_for(self.device, bytes_per_item=per_item, cpu_batch=128)

    # -- API --------------------------------------------------------------------
    def fit(self, train: CellData, *, valid: CellData | None = None) -> ClipClassifier:
        """Train with early stopping on ``valid`` (or a split of ``train``).

        Parameters
        ----------
        train
            Labelled cells with clips.
        valid
            Labelled cells with clips for early stopping; ``None``: ``val_fraction`` of
            ``train`` is split off (grouped by animal when there are >= 4 animals).
        """
        return self._train(train, valid, init_state=None)

    def fit_from(self, base: ClipClassifier, train: CellData, *, valid: CellData | None = None) -> ClipClassifier:
        """Like :meth:`fit`, but start from the weights of a trained ``base`` (fine-tuning).

        The network architecture of ``base`` is kept (its config, with this model's
        training settings: learning rate, epochs, seed, ...).
        """
        base._check_fitted()
        arch = ("model_crop", "pool", "width", "embed", "hidden", "backbone", "backbone_input")
        self.config = replace(self.config, **{k: getattr(base.config, k) for k in arch},
                              backbone_weights=base.config.backbone_weights)
        state = {k: v.detach().clone() for k, v in base.net.state_dict().items()}
        return self._train(train, valid, init_state=state)

    def _train(self, train: CellData, valid: CellData | None, *, init_state: dict[str, Any] | None) -> ClipClassifier:
        import torch
        from torch import nn

        cfg = self.config
        train.require_labels(what="the clip model")
        if valid is None or len(valid) == 0 or valid.y is None or len(np.unique(valid.y)) < 2:
            tr_idx, va_idx = _split_valid(train, cfg.val_fraction, cfg.seed)
            fit_data, val_data = train.take(tr_idx), train.take(va_idx)
        else:
            fit_data, val_data = train, valid.take(valid.y >= 0)
        c_tr = self._clips(fit_data)
        c_va = self._clips(val_data) if len(val_data) else None
        y_tr = fit_data.require_labels(what="the clip model's training split")
        rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.net = _build_network(cfg, load_backbone=init_state is None).to(self.device)
        if init_state is not None:
            self.net.load_state_dict(init_state)
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = (
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr / 20)
            if cfg.lr_schedule == "cosine" else None
        )
        n_good, n_bad = int(y_tr.sum()), int((y_tr == 0).sum())
        pos_weight = torch.tensor(n_bad / max(n_good, 1), device=self.device)
        bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        ce = nn.CrossEntropyLoss()
        reasons = fit_data.reasons if fit_data.reasons is not None else np.full(len(fit_data), None, dtype=object)
        rcode = np.array([REASONS.index(r) if r in REASONS else -1 for r in reasons], dtype=np.int64)
        rcode[y_tr == 1] = -1
        best_loss, best_state, bad_epochs = math.inf, None, 0
        self.history = []
        started = time.perf_counter()
        for epoch in range(1, cfg.epochs + 1):
            self.net.train()
            order = rng.permutation(len(fit_data))
            peaks = _pick_peaks(c_tr.valid, rng)
            total, seen = 0.0, 0
            for s in range(0, len(order), cfg.batch_size):
                rows = order[s : s + cfg.batch_size]
                if len(rows) < 2:
                    continue
                dyn, sta = self._tensors(c_tr, rows, peaks[rows])
                if cfg.augment:
                    ops = rng.integers(0, 8, size=len(rows))
                    for op in np.unique(ops):
                        m = torch.from_numpy(ops == op).to(self.device)
                        dyn[m] = _dihedral(dyn[m], int(op))
                        sta[m] = _dihedral(sta[m], int(op))
                target = torch.from_numpy(y_tr[rows].astype(np.float32)).to(self.device)
                logit, rlogit = self.net(dyn, sta)
                loss = bce(logit, target)
                rc = torch.from_numpy(rcode[rows]).to(self.device)
                has = rc >= 0
                if cfg.reason_weight > 0 and bool(has.any()):
                    loss = loss + cfg.reason_weight * ce(rlogit[has], rc[has])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(rows)
                seen += len(rows)
            if sched is not None:
                sched.step()
            record = {"epoch": float(epoch), "train_loss": total / max(seen, 1)}
            if c_va is not None and val_data.y is not None:
                lg, _ = self._logits(c_va, np.arange(len(val_data)), batch=256, max_peaks=2)
                yv = val_data.y.astype(np.float64)
                p = 1 / (1 + np.exp(-np.clip(lg, -30, 30)))
                wv = np.where(yv == 1, 0.5 / max(yv.mean(), 1e-9), 0.5 / max(1 - yv.mean(), 1e-9))
                eps = 1e-6
                vloss = float(-np.mean(wv * (yv * np.log(p + eps) + (1 - yv) * np.log(1 - p + eps))))
                pred = p >= 0.5
                recalls = [np.mean(pred[yv == c] == c) for c in (0, 1) if np.any(yv == c)]
                record.update(valid_loss=vloss, valid_balanced_accuracy=float(np.mean(recalls)))
            else:
                vloss = record["train_loss"]
            self.history.append(record)
            logger.debug("clip model epoch %d: %s", epoch, record)
            if vloss < best_loss - 1e-4:
                best_loss, bad_epochs, self.best_epoch = vloss, 0, epoch
                best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            else:
                bad_epochs += 1
                if epoch >= cfg.min_epochs and bad_epochs >= cfg.patience:
                    break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.fit_seconds = time.perf_counter() - started
        logger.info(
            "clip model: %d cells, %d epochs (best %s) in %.1f s on %s",
            len(fit_data), len(self.history), self.best_epoch, self.fit_seconds, self.device,
        )
        self.fit_ood(train)
        card = new_card(self, train, params=self.params(), feature_columns=(), model_crop=cfg.model_crop)
        self.card = self._card_with_ood(card)
        return self

    def _check_fitted(self) -> None:
        if self.net is None:
            raise ModelMismatchError("the clip model is not trained", fix="call fit() or load a saved model")

    def predict_logit(self, data: CellData) -> tuple[np.ndarray, np.ndarray]:
        """Return (mean logit of ``p_good``, reason probabilities) per cell."""
        self._check_fitted()
        if len(data) == 0:
            return np.zeros(0), np.zeros((0, len(REASONS)))
        c = self._clips(data)
        return self._logits(c, np.arange(len(data)), batch=self._inference_batch())

    def predict_proba(self, data: CellData) -> np.ndarray:
        """Return ``p_good`` per cell (class-balanced, not calibrated)."""
        lg, _ = self.predict_logit(data)
        return 1.0 / (1.0 + np.exp(-np.clip(lg, -30, 30)))

    def predict(self, data: CellData) -> tuple[np.ndarray, np.ndarray | None]:
        """``(p_good, reason probabilities)`` from one pass over the clips."""
        lg, rp = self.predict_logit(data)
        return 1.0 / (1.0 + np.exp(-np.clip(lg, -30, 30))), rp

    def reason_proba(self, data: CellData) -> np.ndarray | None:
        """Return ``(n, len(REASONS))`` reason probabilities given an artifact."""
        _, rp = self.predict_logit(data)
        return rp

    def params(self) -> dict[str, Any]:
        """The configuration as JSON-able data (stored on the card)."""
        return {**asdict(self.config), "best_epoch": self.best_epoch, "epochs_run": len(self.history)}

    # -- persistence --------------------------------------------------------------
    def save_weights(self, folder: Path, *, prefix: str = "") -> dict[str, str]:
        """Write the state dict into ``folder``; return ``{name: sha256}``."""
        import torch

        self._check_fitted()
        name = prefix + _WEIGHTS
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        # the state dict includes a (frozen) backbone, so the folder is self-contained:
        # scoring never needs the user's backbone file again
        torch.save(state, folder / name)
        return {name: file_sha256(folder / name)}

    def load_weights(self, folder: Path, *, prefix: str = "") -> None:
        """Read the state dict written by :meth:`save_weights`."""
        import torch

        path = folder / (prefix + _WEIGHTS)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net = _build_network(self.config, load_backbone=False)
            net.load_state_dict(state)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise ModelMismatchError(
                f"clip-model weights cannot be read ({type(exc).__name__}: {str(exc)[:200]})",
                path=path,
                fix="restore the model folder or re-train",
            ) from None
        self.net = net.to(self.device)
        self.net.eval()

    def save(self, folder: str | PathLike[str]) -> Path:
        """Write ``clips.pt`` and ``card.json`` into ``folder``."""
        return self._save_base(folder, self.save_weights)

    @classmethod
    def load(cls, folder: str | PathLike[str]) -> ClipClassifier:
        """Load a clip-model folder (verifying its card's file hashes)."""
        folder = Path(folder)
        card = cls._checked_card(folder)
        model = cls(config_from_params(card.params))
        model.load_weights(folder)
        model._load_ood(folder)
        model.card = card
        return model


def config_from_params(params: Any) -> ClipModelConfig:
    """Rebuild a :class:`ClipModelConfig` from a card's ``params``."""
    names = ClipModelConfig.__dataclass_fields__
    return ClipModelConfig(**{k: v for k, v in dict(params).items() if k in names})

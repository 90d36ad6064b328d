"""The clip model: a per-frame CNN encoder over each peak clip feeding a bidirectional LSTM.

This is the capstone's design (GoogLeNet frame features + LSTM over 21-frame clips
around the fluorescence peak) done right:

* **Input**: clips prepared by :mod:`~cellsift.pipeline.classify.clip_prep` (changes
  from the pre-peak baseline in units of the clip's robust noise SD, footprint,
  neighbours' mask, baseline z-score), centre-cropped to ``model_crop`` px and pooled.
* **Network**: :func:`~cellsift.pipeline.classify.clip_net.build_network` (built-in CNN
  or a local torchvision backbone, then a bidirectional LSTM, a ``p_good`` head and an
  artifact-reason head trained on artifacts with a known reason).
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
from dataclasses import asdict, replace
from os import PathLike
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np

from cellsift.pipeline._util import file_sha256
from cellsift.pipeline.classify.base import CellClassifier
from cellsift.pipeline.classify.card_build import new_card
from cellsift.pipeline.classify.clip_net import (
    N_CHANNELS,
    ClipModelConfig,
    batch_size_for,
    build_network,
    choose_device,
)
from cellsift.pipeline.classify.data import REASONS, CellData, ClipArrays
from cellsift.pipeline.classify.progress import epoch_milestone, report_progress
from cellsift.pipeline.classify.splits import split_valid
from cellsift.schemas import InputFormatError, ModelMismatchError

logger = logging.getLogger(__name__)

__all__ = ["CLIPS_FILE", "ClipClassifier", "config_from_params"]

#: Weight file of the clip network inside a model folder.
CLIPS_FILE: Final = "clips.pt"
_DEFAULT_CONFIG: Final = ClipModelConfig()
#: Clip frames assumed when sizing inference batches.
_FRAMES_FOR_BATCHING: Final = 21


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


def _sigmoid(logit: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30)))


def config_from_params(params: Any) -> ClipModelConfig:
    """Rebuild a :class:`~cellsift.pipeline.classify.clip_net.ClipModelConfig` from a card's ``params``."""
    names = ClipModelConfig.__dataclass_fields__
    return ClipModelConfig(**{k: v for k, v in dict(params).items() if k in names})


class ClipClassifier(CellClassifier):
    """CNN encoder + bidirectional LSTM over peak clips (see the module docstring).

    Parameters
    ----------
    config
        Model settings.
    """

    kind: ClassVar[str] = "clips"
    uses_clips: ClassVar[bool] = True

    def __init__(self, config: ClipModelConfig = _DEFAULT_CONFIG) -> None:
        self.config = config
        self.net: Any = None
        self.history: list[dict[str, float]] = []
        self.best_epoch: int | None = None
        self.fit_seconds: float | None = None
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
                "the clip model needs clips; load them with load_cell_data(..., clips=True)",
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

        k_use = min(
            max_peaks or self.config.max_peaks_predict, self.config.max_peaks_predict, c.valid.shape[1]
        )
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
        t = _FRAMES_FOR_BATCHING
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
            ``train`` is split off (grouped by animal when there are >= 10 animals).
        """
        return self._train(train, valid, init_state=None)

    def fit_from(
        self, base: ClipClassifier, train: CellData, *, valid: CellData | None = None
    ) -> ClipClassifier:
        """Like :meth:`fit`, but start from the weights of a trained ``base`` (fine-tuning).

        The network architecture of ``base`` is kept (its config, with this model's
        training settings: learning rate, epochs, seed, ...).
        """
        base._check_fitted()
        arch = ("model_crop", "pool", "width", "embed", "hidden", "backbone", "backbone_input")
        self.config = replace(
            self.config,
            **{k: getattr(base.config, k) for k in arch},
            backbone_weights=base.config.backbone_weights,
        )
        state = {k: v.detach().clone() for k, v in base.net.state_dict().items()}
        return self._train(train, valid, init_state=state)

    # -- training ---------------------------------------------------------------
    def _fit_and_valid(self, train: CellData, valid: CellData | None) -> tuple[CellData, CellData]:
        """Cells to fit on and cells for early stopping (a split of ``train`` if ``valid`` is unusable)."""
        cfg = self.config
        if valid is None or len(valid) == 0 or valid.y is None or len(np.unique(valid.y)) < 2:
            tr_idx, va_idx = split_valid(train, cfg.val_fraction, cfg.seed)
            return train.take(tr_idx), train.take(va_idx)
        return train, valid.take(valid.y >= 0)

    def _optimizer(self) -> tuple[Any, Any]:
        """Adam over the trainable parameters and the learning-rate schedule (``None``: constant)."""
        import torch

        cfg = self.config
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = (
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr / 20)
            if cfg.lr_schedule == "cosine"
            else None
        )
        return opt, sched

    def _train_epoch(
        self,
        c_tr: ClipArrays,
        y_tr: np.ndarray,
        rcode: np.ndarray,
        rng: np.random.Generator,
        opt: Any,
        losses: tuple[Any, Any],
    ) -> float:
        """One pass over the fit cells (one random valid peak each); returns the mean training loss."""
        import torch

        cfg = self.config
        bce, ce = losses
        self.net.train()
        order = rng.permutation(len(y_tr))
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
        return total / max(seen, 1)

    def _validation(self, c_va: ClipArrays, y_va: np.ndarray) -> tuple[float, float]:
        """Class-balanced log-loss and balanced accuracy on the validation cells."""
        lg, _ = self._logits(c_va, np.arange(len(y_va)), batch=256, max_peaks=2)
        yv = y_va.astype(np.float64)
        p = _sigmoid(lg)
        wv = np.where(yv == 1, 0.5 / max(yv.mean(), 1e-9), 0.5 / max(1 - yv.mean(), 1e-9))
        eps = 1e-6
        vloss = float(-np.mean(wv * (yv * np.log(p + eps) + (1 - yv) * np.log(1 - p + eps))))
        pred = p >= 0.5
        recalls = [np.mean(pred[yv == c] == c) for c in (0, 1) if np.any(yv == c)]
        return vloss, float(np.mean(recalls))

    def _train(
        self, train: CellData, valid: CellData | None, *, init_state: dict[str, Any] | None
    ) -> ClipClassifier:
        import torch
        from torch import nn

        cfg = self.config
        train.require_labels(what="the clip model")
        fit_data, val_data = self._fit_and_valid(train, valid)
        c_tr = self._clips(fit_data)
        c_va = self._clips(val_data) if len(val_data) else None
        y_tr = fit_data.require_labels(what="the clip model's training split")
        rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.net = build_network(cfg, load_backbone=init_state is None).to(self.device)
        if init_state is not None:
            self.net.load_state_dict(init_state)
        opt, sched = self._optimizer()
        n_good, n_bad = int(y_tr.sum()), int((y_tr == 0).sum())
        pos_weight = torch.tensor(n_bad / max(n_good, 1), device=self.device)
        losses = (nn.BCEWithLogitsLoss(pos_weight=pos_weight), nn.CrossEntropyLoss())
        reasons = (
            fit_data.reasons if fit_data.reasons is not None else np.full(len(fit_data), None, dtype=object)
        )
        rcode = np.array([REASONS.index(r) if r in REASONS else -1 for r in reasons], dtype=np.int64)
        rcode[y_tr == 1] = -1
        best_loss, best_state, bad_epochs = math.inf, None, 0
        self.history = []
        started = time.perf_counter()
        for epoch in range(1, cfg.epochs + 1):
            record = {
                "epoch": float(epoch),
                "train_loss": self._train_epoch(c_tr, y_tr, rcode, rng, opt, losses),
            }
            if sched is not None:
                sched.step()
            if c_va is not None and val_data.y is not None:
                vloss, vbacc = self._validation(c_va, val_data.y)
                record.update(valid_loss=vloss, valid_balanced_accuracy=vbacc)
            else:
                vloss = record["train_loss"]
            self.history.append(record)
            logger.debug("clip model epoch %d: %s", epoch, record)
            if epoch_milestone(epoch, cfg.epochs):
                report_progress("  clips model epoch %d/%d", epoch, cfg.epochs)
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
            len(fit_data),
            len(self.history),
            self.best_epoch,
            self.fit_seconds,
            self.device,
        )
        self.fit_ood(train)
        card = new_card(self, train, params=self.params(), feature_columns=(), model_crop=cfg.model_crop)
        self.card = self._card_with_ood(card)
        return self

    # -- prediction -------------------------------------------------------------
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
        return _sigmoid(lg)

    def predict(self, data: CellData) -> tuple[np.ndarray, np.ndarray | None]:
        """``(p_good, reason probabilities)`` from one pass over the clips."""
        lg, rp = self.predict_logit(data)
        return _sigmoid(lg), rp

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
        name = prefix + CLIPS_FILE
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        # the state dict includes a (frozen) backbone, so the folder is self-contained:
        # scoring never needs the user's backbone file again
        torch.save(state, folder / name)
        return {name: file_sha256(folder / name)}

    def load_weights(self, folder: Path, *, prefix: str = "") -> None:
        """Read the state dict written by :meth:`save_weights`.

        Raises
        ------
        ModelMismatchError
            The file cannot be read or does not fit the network of the card's config.
        """
        import torch

        path = folder / (prefix + CLIPS_FILE)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net = build_network(self.config, load_backbone=False)
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

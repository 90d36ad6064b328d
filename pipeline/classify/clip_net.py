"""The clip network: its settings, a per-frame CNN encoder and a bidirectional LSTM.

* **Input per frame**: four channels (:data:`N_CHANNELS`) — the frame's change from the
  clip's pre-peak baseline in units of the clip's robust noise SD, the footprint, the
  neighbours' mask and the robust z-score of the baseline image
  (:mod:`~cellsift.pipeline.classify.clip_prep`).
* **Encoder**: a small CNN trained from scratch (default), or a torchvision ResNet-18 /
  GoogLeNet whose weights are read from a *local file* the user points to (nothing is
  downloaded); a 1x1 convolution maps the four channels to the backbone's three.
* **Sequence model**: a bidirectional LSTM over the frames; its final states feed a
  ``p_good`` head and an artifact-reason head.

:func:`choose_device` and :func:`batch_size_for` pick where and in what batches the
network runs. torch is imported only inside functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from cellsift.pipeline.classify.data import REASONS
from cellsift.schemas import InputFormatError, ParameterError

logger = logging.getLogger(__name__)

__all__ = [
    "BACKBONES",
    "N_CHANNELS",
    "ClipModelConfig",
    "batch_size_for",
    "build_network",
    "choose_device",
]

#: Torchvision backbones the encoder can use.
BACKBONES: Final = ("resnet18", "googlenet")
#: Channels of every frame fed to the encoder.
N_CHANNELS: Final = 4


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
    """Settings of :class:`~cellsift.pipeline.classify.clip_model.ClipClassifier`.

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
        if self.backbone is not None and self.backbone not in BACKBONES:
            raise ParameterError(
                f"unknown backbone {self.backbone!r}",
                field="backbone",
                fix=f"use one of {', '.join(BACKBONES)} or None",
            )
        if self.backbone is not None and not self.backbone_weights:
            raise ParameterError(
                f"backbone {self.backbone!r} needs a local weights file (nothing is downloaded)",
                field="backbone_weights",
                fix="pass the path of a torchvision state dict, e.g. resnet18-f37072fd.pth",
            )
        if self.pool < 1 or self.model_crop % self.pool:
            raise ParameterError(
                f"model_crop ({self.model_crop}) must be a multiple of pool ({self.pool} >= 1)",
                field="model_crop",
                fix="choose e.g. model_crop=24, pool=2",
            )
        if (self.model_crop // self.pool) % 4:
            raise ParameterError(
                "model_crop / pool must be a multiple of 4 for the built-in encoder",
                field="model_crop",
                fix="choose e.g. model_crop=24, pool=2",
            )
        if self.lr_schedule not in ("cosine", "constant"):
            raise ParameterError(
                f"unknown lr_schedule {self.lr_schedule!r}", field="lr_schedule", fix="use cosine or constant"
            )
        if self.epochs < 1 or self.batch_size < 2 or not 0 < self.val_fraction < 1:
            raise ParameterError(
                f"epochs ({self.epochs}) >= 1, batch_size ({self.batch_size}) >= 2 and "
                f"0 < val_fraction ({self.val_fraction}) < 1 are required",
                field="ClipModelConfig",
            )


def build_network(config: ClipModelConfig, *, load_backbone: bool = True) -> Any:
    """The clip network of ``config`` (a ``torch.nn.Module``; backbone weights read from their file).

    Its ``forward(dynamic, static)`` takes ``(b, T, s, s)`` frames and ``(b, 3, s, s)`` static
    channels and returns ``(b,)`` logits of ``p_good`` and ``(b, len(REASONS))`` reason logits.
    """
    import torch
    from torch import nn

    size = config.model_crop // config.pool

    class FrameEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = config.width
            self.conv = nn.Sequential(
                nn.Conv2d(N_CHANNELS, w, 3, padding=1),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
                nn.Conv2d(w, w, 3, padding=1),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(w, 2 * w, 3, padding=1),
                nn.BatchNorm2d(2 * w),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Conv2d(2 * w, 2 * w, 3, padding=1),
                nn.BatchNorm2d(2 * w),
                nn.ReLU(inplace=True),
            )
            self.fc = nn.Sequential(
                nn.Flatten(), nn.Linear(2 * w * (size // 4) ** 2, config.embed), nn.ReLU(inplace=True)
            )

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
            x = nn.functional.interpolate(
                x, size=(config.backbone_input,) * 2, mode="bilinear", align_corners=False
            )
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
                "backbone weights file not found",
                path=path,
                field="backbone_weights",
                fix="pass the path of a local torchvision state dict (cellsift downloads nothing)",
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file
            raise InputFormatError(
                f"backbone weights cannot be read ({type(exc).__name__})",
                path=path,
                field="backbone_weights",
                fix="pass a torchvision state dict saved with torch.save",
            ) from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2.", "fc."))}
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise InputFormatError(
                f"backbone weights do not fit {config.backbone} ({str(exc).splitlines()[-1].strip()[:160]})",
                path=path,
                field="backbone_weights",
                fix=f"pass the state dict of a torchvision {config.backbone}",
            ) from None
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise InputFormatError(
                f"backbone weights do not fit {config.backbone}: missing {missing[:3]}, unexpected {list(unexpected)[:3]}",
                path=path,
                field="backbone_weights",
                fix=f"pass the state dict of a torchvision {config.backbone}",
            )
    net.fc = nn.Identity()
    return net, dim

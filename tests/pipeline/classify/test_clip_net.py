"""The clip network: settings checks and backbones read from a local file only."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cellsift.pipeline.classify.clip_net import ClipModelConfig, build_network
from cellsift.pipeline.classify.data import REASONS
from cellsift.schemas.errors import InputFormatError, ParameterError
from tests.pipeline.classify.synthetic import TINY_CLIPS


def test_backbone_is_read_from_a_local_file_only(tmp_path):
    import torch
    import torchvision

    with pytest.raises(ParameterError, match="local weights file"):
        ClipModelConfig(backbone="resnet18")
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    cfg = replace(TINY_CLIPS, backbone="resnet18", backbone_weights=str(weights), backbone_input=32)
    net = build_network(cfg)
    logit, reason = net(torch.zeros(2, 21, 8, 8), torch.zeros(2, 3, 8, 8))
    assert logit.shape == (2,) and reason.shape == (2, len(REASONS))
    assert not any(p.requires_grad for p in net.encoder.net.parameters())  # frozen backbone
    missing = replace(cfg, backbone_weights=str(tmp_path / "nope.pth"))
    with pytest.raises(InputFormatError, match="not found"):
        build_network(missing)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(InputFormatError):
        build_network(replace(cfg, backbone_weights=str(wrong)))


@pytest.mark.parametrize(
    "bad",
    [
        dict(backbone="vgg"),
        dict(model_crop=25),
        dict(pool=0),
        dict(model_crop=20, pool=2),
        dict(lr_schedule="step"),
        dict(epochs=0),
        dict(batch_size=1),
        dict(val_fraction=1.0),
    ],
)
def test_bad_settings_are_parameter_errors(bad):
    with pytest.raises(ParameterError):
        ClipModelConfig(**bad)

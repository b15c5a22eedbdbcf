"""Tiny real models for the engine tests (no mocks): a 2-frame 32x32, 0.25 s FusionNet."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.spec import ModelSpec

TINY_CLASSES = ("a", "b", "c")


@pytest.fixture(scope="session")
def tiny_spec() -> ModelSpec:
    return ModelSpec(
        name="tiny", frames=2, height=32, width=32, window_seconds=0.25, classes=TINY_CLASSES,
        thresholds={c: 0.5 for c in TINY_CLASSES}, embedding_dim=16,
    )


@pytest.fixture(scope="session")
def tiny_arch():
    from engines.model import Arch

    return Arch(video_channels=(4, 8, 8), video_strides=(2, 2, 1), audio_channels=(4, 8),
                audio_strides=(2, 2), n_mels=16, hidden=16, dropout=0.0)


def _perturbed(model):
    """Move BatchNorm statistics and affine parameters off their identity defaults, so the tests
    exercise the eval-mode graph with non-trivial values."""
    import torch

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model


@pytest.fixture(scope="session")
def tiny_model(tiny_spec, tiny_arch):
    import torch

    from engines.model import FusionNet

    torch.manual_seed(0)
    return _perturbed(FusionNet(tiny_spec, tiny_arch)).eval()


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tiny_spec, tmp_path_factory) -> Path:
    """tiny.onnx + tiny.json + tiny.pt in a temporary folder."""
    from engines.export import export_onnx, save_torch_weights

    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    export_onnx(tiny_model, tiny_spec, path)
    save_torch_weights(tiny_model, path)
    return path

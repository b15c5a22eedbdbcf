"""Small real models for the engine tests (no mocks): the v5 FusionNet on its real pretrained
backbones, on 2 frames of 64x64 (the pose model runs at any size) and 1 s of audio (one YAMNet patch)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.spec import ModelSpec

TINY_CLASSES = ("a", "b", "c")


@pytest.fixture(scope="session")
def tiny_arch():
    from engines.model import Arch

    return Arch(pose_frames=(0, 1))


@pytest.fixture(scope="session")
def tiny_spec(tiny_arch) -> ModelSpec:
    from engines.model import embedding_dim

    return ModelSpec(
        name="tiny", frames=2, height=64, width=64, window_seconds=1.0, classes=TINY_CLASSES,
        thresholds={c: 0.5 for c in TINY_CLASSES}, modality={"a": "audio", "b": "video"},
        embedding_dim=embedding_dim(tiny_arch),
    )


def _perturbed(model):
    """Random trained-looking heads: feature statistics off identity, weights seeded."""
    import torch

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        h = model.heads
        h.mean.copy_(torch.randn(h.mean.shape, generator=g) * 0.1)
        h.std.copy_(torch.rand(h.std.shape, generator=g) + 0.5)
        for p in h.net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


@pytest.fixture(scope="session")
def tiny_model(tiny_spec, tiny_arch):
    from engines.model import FusionNet

    return _perturbed(FusionNet(tiny_spec, tiny_arch)).eval()


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tiny_spec, tmp_path_factory) -> Path:
    """tiny.onnx + tiny.json + tiny.pt in a temporary folder."""
    from engines.export import export_onnx, save_torch_weights

    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    export_onnx(tiny_model, tiny_spec, path)
    save_torch_weights(tiny_model, path)
    return path

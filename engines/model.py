"""The fusion network (v4): pretrained backbones, frozen, and small trained heads, in one graph.

Shapes: video uint8 [B, T, H, W, 3], audio float32 [B, S], masks float32 [B]
-> event_logits [B, K], embedding [B, D].

- Audio: YAMNet's own log-mel front end (a windowed DFT as a fixed Conv1d, magnitude, HTK mel as a
  1x1 Conv1d, log) and YAMNet (AudioSet): a 1024-d embedding and 521 AudioSet logits per window.
- Video: ImageNet MobileNetV2 on `Arch.frame_index` frames (1280-d each): their mean (what is in the
  scene) and their mean absolute change between sampled frames (how fast its content changes); and a
  fixed G x G grid of grey level and frame-to-frame change over all T frames (where, and how much,
  things move), whose log motion also feeds the heads.
- Heads: one linear layer (or a small MLP) over the standardised features, each modality's part
  multiplied by its mask, giving one logit per trained class; classes mapped from AudioSet take the
  max of YAMNet's logits over their AudioSet names. A class that needs a modality the window lacks
  gets a logit of -30 (a score of ~1e-13).
- `embedding`: [YAMNet embedding | mean MobileNetV2 features | the spatial grid], each zero when its
  modality is masked; the layout is recorded in the ONNX metadata and the sidecar.

The backbone weights come from `engines/weights/backbones/*.onnx` (engines/backbones.py); the torch
state dict beside a model holds only what was trained (heads and feature statistics).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from engines.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MOBILENET_DIM,
    YAMNET_DIM,
    YamnetFrontEnd,
    load_mobilenet,
    load_yamnet,
)
from engines.spec import LAYOUT_KEY, ModelSpec

SPATIAL_FEATURES = ("intensity", "motion_mean", "motion_max")
BACKBONE_PREFIXES = ("yamnet.", "mobilenet.", "frontend.")
MASKED_LOGIT = -30.0
# feature groups the heads see, in order, and the modality each needs
GROUPS = (("audio", "audio"), ("video", "video"), ("video_change", "video"), ("motion", "video"))
MODALITIES = ("audio", "video", "any")


@dataclass(frozen=True)
class Arch:
    """Architecture hyper-parameters; saved with the weights so a checkpoint rebuilds its own model."""

    frame_index: tuple[int, ...] = (1, 3, 5, 7)  # frames of the window that go through MobileNetV2
    spatial_grid: int = 7
    hidden: int = 0  # 0: a linear head; > 0: one hidden ReLU layer of this width
    groups: tuple[str, ...] = tuple(g for g, _ in GROUPS)  # feature groups the trained heads use

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["frame_index"], d["groups"] = list(self.frame_index), list(self.groups)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arch:
        d = dict(d)
        for k in ("frame_index", "groups"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def group_dims(arch: Arch) -> dict[str, int]:
    g2 = arch.spatial_grid * arch.spatial_grid
    return {"audio": YAMNET_DIM, "video": MOBILENET_DIM, "video_change": MOBILENET_DIM, "motion": 2 * g2}


def spatial_dim(arch: Arch) -> int:
    return arch.spatial_grid * arch.spatial_grid * len(SPATIAL_FEATURES)


def embedding_layout(spec: ModelSpec, arch: Arch) -> dict[str, Any]:
    """Where things sit in the `embedding` output (the spatial grid cell-major, [G, G, F] row by row)."""
    a, v = YAMNET_DIM, YAMNET_DIM + MOBILENET_DIM
    return {"audio": [0, a], "video": [a, v], "fused": [0, v], "spatial": [v, v + spatial_dim(arch)],
            "grid": arch.spatial_grid, "features": list(SPATIAL_FEATURES)}


def embedding_dim(arch: Arch) -> int:
    return YAMNET_DIM + MOBILENET_DIM + spatial_dim(arch)


class Heads(nn.Module):
    """Standardised, masked feature groups -> one logit per trained class."""

    mean: torch.Tensor
    std: torch.Tensor
    is_audio: torch.Tensor

    def __init__(self, arch: Arch, n_classes: int) -> None:
        super().__init__()
        dims = group_dims(arch)
        self.groups = [(g, dims[g], m) for g, m in GROUPS if g in arch.groups]
        width = sum(d for _, d, _ in self.groups)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        sel = torch.cat([torch.full((d,), float(m == "audio")) for _, d, m in self.groups])
        self.register_buffer("is_audio", sel, persistent=False)
        n_in = width + 2
        if arch.hidden:
            self.net: nn.Module = nn.Sequential(nn.Linear(n_in, arch.hidden), nn.ReLU(), nn.Dropout(0.2),
                                                nn.Linear(arch.hidden, n_classes))
        else:
            self.net = nn.Sequential(nn.Dropout(0.2), nn.Linear(n_in, n_classes))

    def inputs(self, feats: dict[str, torch.Tensor], am: torch.Tensor, vm: torch.Tensor) -> torch.Tensor:
        x = torch.cat([feats[g] for g, _, _ in self.groups], dim=1)
        x = (x - self.mean) / self.std
        masks = am * self.is_audio + vm * (1.0 - self.is_audio)  # [B, width]: each group's modality mask
        return torch.cat([x * masks, am, vm], dim=1)

    def forward(self, feats: dict[str, torch.Tensor], am: torch.Tensor, vm: torch.Tensor) -> torch.Tensor:
        return self.net(self.inputs(feats, am, vm))


class FusionNet(nn.Module):
    """See the module docstring. `spec.classes` = the trained classes, then the AudioSet-mapped ones
    (`spec.audioset`), in that order; `spec.modality` says which input each class needs."""

    rgb_scale: torch.Tensor
    rgb_shift: torch.Tensor
    gate_audio: torch.Tensor
    gate_video: torch.Tensor

    def __init__(self, spec: ModelSpec, arch: Arch | None = None) -> None:
        super().__init__()
        if not spec.classes:
            raise ValueError("ModelSpec.classes is empty: the model needs at least one class")
        self.spec, self.arch = spec, (arch := arch or Arch())
        if max(arch.frame_index) >= spec.frames:
            raise ValueError(f"frame_index {arch.frame_index} needs {max(arch.frame_index) + 1} frames, "
                             f"the window has {spec.frames}")
        if spec.height % arch.spatial_grid or spec.width % arch.spatial_grid:
            raise ValueError(f"frame size {spec.height}x{spec.width} is not divisible by spatial_grid={arch.spatial_grid}")
        a = torch.tensor([1.0 / (255.0 * s) for s in IMAGENET_STD]).view(1, 3, 1, 1)
        b = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]).view(1, 3, 1, 1)
        self.register_buffer("rgb_scale", a)
        self.register_buffer("rgb_shift", b)
        self.frontend = YamnetFrontEnd()
        self.yamnet = load_yamnet()
        self.mobilenet = load_mobilenet()
        for p in (*self.yamnet.parameters(), *self.mobilenet.parameters()):
            p.requires_grad_(False)
        mapped = spec.audioset or {}
        self.trained = [c for c in spec.classes if c not in mapped]
        self.heads = Heads(arch, len(self.trained))
        self.mapped_index = [list(map(int, mapped[c])) for c in spec.classes if c in mapped]
        gates = [spec.modality.get(c, "any") for c in spec.classes]
        bad = sorted({g for g in gates if g not in MODALITIES})
        if bad:
            raise ValueError(f"unknown class modality {bad}: expected one of {MODALITIES}")
        self.register_buffer("gate_audio", torch.tensor([float(g == "audio") for g in gates]))
        self.register_buffer("gate_video", torch.tensor([float(g == "video") for g in gates]))

    # -- features (frozen) ---------------------------------------------------------------------------
    def video_features(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [B, T, H, W, 3] -> (mean [B, 1280], mean |change| between sampled frames [B, 1280])."""
        idx = list(self.arch.frame_index)
        k, h, w = len(idx), self.spec.height, self.spec.width
        x = video[:, idx].reshape(-1, h, w, 3).permute(0, 3, 1, 2).to(torch.float32)
        f = self.mobilenet(x * self.rgb_scale + self.rgb_shift).reshape(-1, k, MOBILENET_DIM)
        change = (f[:, 1:] - f[:, :-1]).abs().mean(dim=1) if k > 1 else torch.zeros_like(f[:, 0])
        return f.mean(dim=1), change

    def spatial_stats(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, H, W, 3] -> [B, G*G*3]: per cell of a G x G grid, the mean grey level, and the
        mean and max over time of the mean |frame-to-frame change| (grey, in [0, 1])."""
        t, h, w, g = self.spec.frames, self.spec.height, self.spec.width, self.arch.spatial_grid
        x = video.to(torch.float32).mean(dim=4) * (1.0 / 255.0)
        cells = x.reshape(-1, t, g, h // g, g, w // g).mean(dim=(3, 5))
        intensity = cells.mean(dim=1)
        d = (x[:, 1:] - x[:, :-1]).abs().reshape(-1, t - 1, g, h // g, g, w // g).mean(dim=(3, 5))
        return torch.stack([intensity, d.mean(dim=1), d.amax(dim=1)], dim=3).reshape(-1, g * g * 3)

    def features(self, video: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every frozen feature of a batch of windows (what training caches)."""
        emb, logits = self.yamnet(self.frontend(audio))
        v_mean, v_change = self.video_features(video)
        sp = self.spatial_stats(video)
        g2 = self.arch.spatial_grid ** 2
        motion = torch.log(sp.reshape(-1, g2, 3)[:, :, 1:].reshape(-1, 2 * g2) + 1e-3)
        return {"audio": emb, "audioset": logits, "video": v_mean, "video_change": v_change, "motion": motion,
                "spatial": sp}

    # -- heads ---------------------------------------------------------------------------------------
    def logits(self, feats: dict[str, torch.Tensor], am: torch.Tensor, vm: torch.Tensor) -> torch.Tensor:
        """Features + masks [B, 1] -> gated event logits [B, K] in `spec.classes` order."""
        trained = self.heads(feats, am, vm)
        mapped = [feats["audioset"][:, ix].amax(dim=1, keepdim=True) for ix in self.mapped_index]
        out = torch.cat([trained, *mapped], dim=1) if mapped else trained
        order = self.trained + [c for c in self.spec.classes if c not in self.trained]
        if order != list(self.spec.classes):
            out = out[:, [order.index(c) for c in self.spec.classes]]
        gate = 1.0 - self.gate_audio * (1.0 - am) - self.gate_video * (1.0 - vm)
        gate = gate * torch.clamp(am + vm, max=1.0)  # nothing at all: every class is off
        return out * gate + (1.0 - gate) * MASKED_LOGIT

    def forward(self, video: torch.Tensor, audio: torch.Tensor, video_mask: torch.Tensor,
                audio_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        am, vm = audio_mask.reshape(-1, 1), video_mask.reshape(-1, 1)
        feats = self.features(video, audio)
        emb = torch.cat([feats["audio"] * am, feats["video"] * vm, feats["spatial"] * vm], dim=1)
        return self.logits(feats, am, vm), emb

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The state dict without the backbones (those load from their own ONNX files)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(BACKBONE_PREFIXES)}


def build_model(spec: ModelSpec, arch: Arch | None = None) -> FusionNet:
    return FusionNet(spec, arch)


def example_inputs(spec: ModelSpec, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random but valid inputs: uint8 video, audio in [-1, 1], masks of ones."""
    g = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 256, (batch, spec.frames, spec.height, spec.width, 3), generator=g)
    audio = torch.rand((batch, spec.samples), generator=g) * 2 - 1
    ones = torch.ones(batch)
    return video.to(torch.uint8), audio.to(torch.float32), ones, ones.clone()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: FusionNet, spec: ModelSpec) -> int:
    """Multiply-accumulates of one window (batch 1): Conv2d, Conv1d and Linear layers, counted by hooks."""
    macs = 0

    def conv_hook(mod: nn.Conv2d, inp: Any, out: torch.Tensor) -> None:
        nonlocal macs
        w = mod.weight
        macs += out.numel() * (int(w.shape[1]) * int(np.prod(w.shape[2:])))

    def lin_hook(mod: nn.Linear, inp: Any, out: torch.Tensor) -> None:
        nonlocal macs
        macs += out.numel() * int(mod.in_features)

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(lin_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*example_inputs(spec, batch=1))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    fe = model.frontend
    macs += int(fe.dft.shape[0] * fe.dft.shape[2] * 96 + fe.mel.shape[0] * fe.mel.shape[1] * 96)
    return int(macs)


def write_layout(onnx_path, layout: dict[str, Any]) -> None:
    """Record the embedding layout in the ONNX file's metadata (`LAYOUT_KEY`, JSON)."""
    import json

    import onnx

    m = onnx.load(str(onnx_path))
    for p in list(m.metadata_props):
        if p.key == LAYOUT_KEY:
            m.metadata_props.remove(p)
    m.metadata_props.add(key=LAYOUT_KEY, value=json.dumps(layout, sort_keys=True))
    onnx.save(m, str(onnx_path))


def set_static_output_dims(onnx_path, spec: ModelSpec) -> None:
    """Write the class and embedding widths into the ONNX outputs' shapes; only the batch axis stays
    dynamic, as TensorRT engines and the runtimes' shape checks expect."""
    import onnx

    from engines.spec import OUTPUT_EMBEDDING, OUTPUT_LOGITS

    m = onnx.load(str(onnx_path))
    widths = {OUTPUT_LOGITS: len(spec.classes), OUTPUT_EMBEDDING: spec.embedding_dim}
    for o in m.graph.output:
        if o.name in widths:
            dim = o.type.tensor_type.shape.dim[1]
            dim.Clear()
            dim.dim_value = widths[o.name]
    onnx.save(m, str(onnx_path))

"""The fusion network (v5): pretrained backbones, frozen, and small trained heads, in one graph.

Shapes: video uint8 [B, T, H, W, 3], audio float32 [B, S], masks float32 [B]
-> event_logits [B, K], embedding [B, D].

- Audio: YAMNet's own log-mel front end (a windowed DFT as a fixed Conv1d, magnitude, HTK mel as a
  1x1 Conv1d, log) and YAMNet (AudioSet): a 1024-d embedding and 521 AudioSet logits per window; the
  logits of the AudioSet classes a fight sounds like (engines/people.py `AUDIO_CUES`) are a group too.
- Video: MoveNet MultiPose (engines/pose.py) on frames `Arch.pose_frames` of the window, and what the
  people in them do (engines/people.py): how many, how close, how fast their wrists, ankles, heads and
  bodies move in body heights per second. Nothing about the scene or where in the frame.
- Heads: one linear layer (or a small MLP) over the standardised feature groups, each group times its
  modality's mask; a linear head's class sees only the groups of its own modality (an audio class never
  the people, `fight` never the audio embedding, which would let it learn the place). Classes mapped
  from AudioSet take the max of YAMNet's logits over their AudioSet names. A class that needs a
  modality the window lacks gets a logit of -30 (a score of ~1e-13).
- `embedding`: [YAMNet embedding | people features], each zero when its modality is masked; the layout
  is recorded in the ONNX metadata and the sidecar.

The backbone weights come from `engines/weights/backbones/` (YAMNet: engines/backbones.py, loaded into
torch; the pose model: run by ONNX Runtime), and the exported graph reads them from there too (its
YAMNet weights are references into `backbones/yamnet.bin`, its `poses` come from the pose model file:
engines/shared.py, engines/pose.py); the torch state dict beside a model holds only what was trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from engines.backbones import YAMNET_DIM, YamnetFrontEnd, load_yamnet, yamnet_class_names
from engines.people import AUDIO_CUES, PeopleFeatures
from engines.people import FEATURES as PEOPLE_FEATURES
from engines.pose import PoseRunner
from engines.spec import ModelSpec

BACKBONE_PREFIXES = ("yamnet.", "frontend.")
MASKED_LOGIT = -30.0
# feature groups the heads may see, in order, and the modality each needs
GROUPS = (("audio", "audio"), ("people", "video"), ("cues", "audio"))
MODALITIES = ("audio", "video", "any")


@dataclass(frozen=True)
class Arch:
    """Architecture hyper-parameters; saved with the weights so a checkpoint rebuilds its own model."""

    # frames of the window the pose model sees (evenly spaced): 0.25 s apart, so with the 0.5 s hop a
    # window's first two are the last two of the window before and each is computed once (engines/pose.py);
    # chosen over 2-5 (0.125 s apart) by source-grouped CV on the fight training sources: AP 0.796 vs 0.777
    pose_frames: tuple[int, ...] = (0, 2, 4, 6)
    hidden: int = 0  # 0: a linear head; > 0: one hidden ReLU layer of this width
    groups: tuple[str, ...] = ("audio", "people")  # feature groups the trained heads use

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pose_frames"], d["groups"] = list(self.pose_frames), list(self.groups)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arch:
        d = dict(d)
        for k in ("pose_frames", "groups"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def group_dims(arch: Arch) -> dict[str, int]:
    return {"audio": YAMNET_DIM, "people": len(PEOPLE_FEATURES), "cues": len(AUDIO_CUES)}


def embedding_layout(spec: ModelSpec, arch: Arch) -> dict[str, Any]:
    """Where things sit in the `embedding` output."""
    a = YAMNET_DIM
    return {"audio": [0, a], "people": [a, a + len(PEOPLE_FEATURES)], "features": list(PEOPLE_FEATURES)}


def embedding_dim(arch: Arch) -> int:
    return YAMNET_DIM + len(PEOPLE_FEATURES)


class Heads(nn.Module):
    """Standardised, masked feature groups -> one logit per trained class (`modalities`: each one's)."""

    mean: torch.Tensor
    std: torch.Tensor
    is_audio: torch.Tensor
    allow: torch.Tensor

    def __init__(self, arch: Arch, modalities: list[str]) -> None:
        super().__init__()
        dims = group_dims(arch)
        self.groups = [(g, dims[g], m) for g, m in GROUPS if g in arch.groups]
        width, n_classes = sum(d for _, d, _ in self.groups), len(modalities)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        sel = torch.cat([torch.full((d,), float(m == "audio")) for _, d, m in self.groups])
        self.register_buffer("is_audio", sel, persistent=False)
        rows = [[float(c in ("any", m)) for _, d, m in self.groups for _ in range(d)] + [1.0, 1.0] for c in modalities]
        self.register_buffer("allow", torch.tensor(rows).reshape(n_classes, width + 2), persistent=False)
        n_in = width + 2
        self.hidden = arch.hidden
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
        x = self.inputs(feats, am, vm)
        if self.hidden:
            return self.net(x)
        drop, lin = self.net[0], self.net[1]
        return nn.functional.linear(drop(x), lin.weight * self.allow, lin.bias)


class FusionNet(nn.Module):
    """See the module docstring. `spec.classes` = the trained classes, then the AudioSet-mapped ones
    (`spec.audioset`), in that order; `spec.modality` says which input each class needs."""

    gate_audio: torch.Tensor
    gate_video: torch.Tensor
    cue_index: torch.Tensor
    mapped_index: torch.Tensor
    class_order: torch.Tensor

    def __init__(self, spec: ModelSpec, arch: Arch | None = None, pose_threads: int = 0) -> None:
        super().__init__()
        if not spec.classes:
            raise ValueError("ModelSpec.classes is empty: the model needs at least one class")
        self.spec, self.arch = spec, (arch := arch or Arch())
        pf = arch.pose_frames
        if len(pf) < 2 or max(pf) >= spec.frames or min(pf) < 0:
            raise ValueError(f"pose_frames {pf}: need at least 2 frames, each below the window's {spec.frames}")
        if len({b - a for a, b in zip(pf, pf[1:])}) != 1 or pf[1] <= pf[0]:
            raise ValueError(f"pose_frames {pf} must be increasing and evenly spaced")
        gates = [spec.modality.get(c, "any") for c in spec.classes]
        bad = sorted({g for g in gates if g not in MODALITIES})
        if bad:
            raise ValueError(f"unknown class modality {bad}: expected one of {MODALITIES}")
        self.frontend = YamnetFrontEnd()
        self.yamnet = load_yamnet()
        for p in self.yamnet.parameters():
            p.requires_grad_(False)
        self.pose_runner = PoseRunner(threads=pose_threads)  # ONNX Runtime on the CPU, each distinct frame once
        self.people = PeopleFeatures(dt=(pf[1] - pf[0]) * spec.window_seconds / spec.frames, aspect=spec.width / spec.height)
        names = yamnet_class_names()
        mapped = spec.audioset or {}
        self.trained = [c for c in spec.classes if c not in mapped]
        self.heads = Heads(arch, [spec.modality.get(c, "any") for c in self.trained])
        # index tensors made once (indexing by a list would make a host tensor on every call)
        self.register_buffer("cue_index", torch.tensor([names.index(n) for n in AUDIO_CUES]), persistent=False)
        self.register_buffer("mapped_index", _padded([list(map(int, mapped[c])) for c in spec.classes if c in mapped]),
                             persistent=False)
        order = self.trained + [c for c in spec.classes if c in mapped]
        self.register_buffer("class_order", torch.tensor([order.index(c) for c in spec.classes]), persistent=False)
        self.register_buffer("gate_audio", torch.tensor([float(g == "audio") for g in gates]))
        self.register_buffer("gate_video", torch.tensor([float(g == "video") for g in gates]))

    # -- features (frozen) ---------------------------------------------------------------------------
    def poses(self, video: torch.Tensor, video_mask: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 [B, T, H, W, 3] -> poses [B, K, 6, 56] of frames `Arch.pose_frames`; zeros (no people)
        for windows whose `video_mask` is 0, which are not run (as in the exported graph). The one step
        that goes through the host: the pose graph runs on ONNX Runtime (engines.pose.PoseRunner)."""
        mask = np.ones(len(video), np.float32) if video_mask is None else video_mask.detach().cpu().numpy()
        found = self.pose_runner.poses(video.detach().cpu().numpy(), mask, self.arch.pose_frames)
        return torch.from_numpy(found).to(video.device)

    def audio_features(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        emb, logits = self.yamnet(self.frontend(audio))
        return {"audio": emb, "audioset": logits, "cues": logits.index_select(1, self.cue_index)}

    def features(self, video: torch.Tensor, audio: torch.Tensor, poses: torch.Tensor | None = None,
                 video_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every frozen feature of a batch of windows (what training caches); `poses`: already computed."""
        feats = self.audio_features(audio)
        feats["people"] = self.people(self.poses(video, video_mask) if poses is None else poses)
        return feats

    # -- heads ---------------------------------------------------------------------------------------
    def logits(self, feats: dict[str, torch.Tensor], am: torch.Tensor, vm: torch.Tensor) -> torch.Tensor:
        """Features + masks [B, 1] -> gated event logits [B, K] in `spec.classes` order."""
        out = self.heads(feats, am, vm)
        if self.mapped_index.numel():  # [B, mapped, L] -> the max over each mapped class's AudioSet logits
            out = torch.cat([out, feats["audioset"][:, self.mapped_index].amax(dim=2)], dim=1)
        out = out.index_select(1, self.class_order)
        gate = 1.0 - self.gate_audio * (1.0 - am) - self.gate_video * (1.0 - vm)
        gate = gate * torch.clamp(am + vm, max=1.0)  # nothing at all: every class is off
        return out * gate + (1.0 - gate) * MASKED_LOGIT

    def scores(self, video: torch.Tensor, audio: torch.Tensor, video_mask: torch.Tensor, audio_mask: torch.Tensor,
               poses: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.from_poses(audio, video_mask, audio_mask, self.poses(video, video_mask) if poses is None else poses)

    def from_poses(self, audio: torch.Tensor, video_mask: torch.Tensor, audio_mask: torch.Tensor,
                   poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network after the pose model: (event_logits, embedding). It makes no host tensor and reads
        nothing back to the host, so a CUDA graph can capture it (engines/runtime/torch.py)."""
        am, vm = audio_mask.reshape(-1, 1), video_mask.reshape(-1, 1)
        feats = self.audio_features(audio)
        feats["people"] = self.people(poses)
        emb = torch.cat([feats["audio"] * am, feats["people"] * vm], dim=1)
        return self.logits(feats, am, vm), emb

    def forward(self, video: torch.Tensor, audio: torch.Tensor, video_mask: torch.Tensor,
                audio_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scores(video, audio, video_mask, audio_mask, None)

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The state dict without the backbones (those load from their own ONNX files)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(BACKBONE_PREFIXES)}


class WithPoses(nn.Module):
    """The network after the pose model: (video, audio, masks, poses) -> outputs. What is exported; the
    runtimes fill `poses` with the pose model file (engines.pose.PoseRunner), and TensorRT builds
    engines.pose.one_graph, which computes `poses` from `video` inside the graph."""

    def __init__(self, net: FusionNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, video: torch.Tensor, audio: torch.Tensor, video_mask: torch.Tensor, audio_mask: torch.Tensor,
                poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.scores(video, audio, video_mask, audio_mask, poses)


def _padded(rows: list[list[int]]) -> torch.Tensor:
    """Index lists of different lengths -> [len(rows), longest], each row padded with its own first index
    (which leaves its max unchanged); [0, 1] when there are none."""
    width = max((len(r) for r in rows), default=1)
    return torch.tensor([r + r[:1] * (width - len(r)) for r in rows], dtype=torch.long).reshape(len(rows), width)


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
    """Multiply-accumulates of one window (batch 1) in torch: Conv2d, Conv1d and Linear layers, counted by
    hooks. The pose model runs in ONNX Runtime and is not counted (its cost is measured in time)."""
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


def set_static_output_dims(onnx_path, spec: ModelSpec) -> None:
    """Write the class and embedding widths into the ONNX outputs' shapes; only the batch axis stays
    dynamic, as TensorRT engines and the runtimes' shape checks expect."""
    from engines.shared import read_graph, save_graph
    from engines.spec import OUTPUT_EMBEDDING, OUTPUT_LOGITS

    m = read_graph(onnx_path)
    widths = {OUTPUT_LOGITS: len(spec.classes), OUTPUT_EMBEDDING: spec.embedding_dim}
    for o in m.graph.output:
        if o.name in widths:
            dim = o.type.tensor_type.shape.dim[1]
            dim.Clear()
            dim.dim_value = widths[o.name]
    save_graph(m, onnx_path)

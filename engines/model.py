"""The fusion network: one audio-visual model that takes a window as it is and classifies events.

Preprocessing lives inside the graph so every backend (and the GPU path) gets the same numbers from
the same uint8 video and float32 audio: video is cast, scaled and normalised; audio becomes a log-mel
spectrogram through a fixed-basis Conv1d (a windowed DFT as cos/sin kernels) and a fixed mel matrix
(a 1x1 Conv1d), so the exported graph holds only Conv, Mul, Add, Log, Reduce*, Reshape, Transpose,
Cast, Concat, Gemm/MatMul and Relu: no STFT/DFT op, no data-dependent shape.

Shapes: video uint8 [B, T, H, W, 3], audio float32 [B, S], masks float32 [B]
-> event_logits [B, K], embedding [B, D].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from engines.spec import ModelSpec

# ImageNet statistics: a sensible fixed normalisation for RGB frames.
_RGB_MEAN = (0.485, 0.456, 0.406)
_RGB_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Arch:
    """Architecture hyper-parameters; saved with the weights so a checkpoint rebuilds its own model."""

    video_channels: tuple[int, ...] = (16, 32, 64, 128, 128)  # stem, then one DS block each
    video_strides: tuple[int, ...] = (2, 2, 2, 2, 1)
    video_diff: bool = True  # add frame-to-frame differences as 3 more input channels (motion)
    audio_channels: tuple[int, ...] = (32, 64, 128, 128)
    audio_strides: tuple[int, ...] = (2, 2, 2, 1)
    n_fft: int = 400  # 25 ms at 16 kHz
    hop: int = 160  # 10 ms
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 8000.0
    hidden: int = 256
    dropout: float = 0.3
    log_eps: float = 1e-6
    spec_augment: tuple[int, int, int, int] = (2, 8, 2, 10)  # training only: freq masks, max width, time masks, max width
    audio_full: bool = False  # audio blocks: full 3x3 convolutions (True) or depthwise-separable (False)
    spatial_grid: int = 0  # > 0: append a G x G grid of raw intensity/motion statistics to the embedding
    motion_to_fuse: bool = False  # also feed the grid's motion statistics to the fusion MLP

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("video_channels", "video_strides", "audio_channels", "audio_strides", "spec_augment"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arch:
        d = dict(d)
        for k in ("video_channels", "video_strides", "audio_channels", "audio_strides", "spec_augment"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_matrix(n_fft: int, sample_rate: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """HTK-style triangular mel filterbank, [n_mels, n_fft // 2 + 1], area-normalised (Slaney)."""
    n_freqs = n_fft // 2 + 1
    f_max = min(f_max, sample_rate / 2)
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_freqs)
    mel_pts = np.linspace(_hz_to_mel(np.array(f_min)), _hz_to_mel(np.array(f_max)), n_mels + 2)
    hz_pts = _mel_to_hz(mel_pts)
    fb = np.zeros((n_mels, n_freqs), dtype=np.float64)
    for m in range(n_mels):
        lo, ce, hi = hz_pts[m], hz_pts[m + 1], hz_pts[m + 2]
        up = (fft_freqs - lo) / max(ce - lo, 1e-9)
        down = (hi - fft_freqs) / max(hi - ce, 1e-9)
        fb[m] = np.maximum(0.0, np.minimum(up, down))
        fb[m] *= 2.0 / (hi - lo)
    return fb.astype(np.float32)


def dft_kernels(n_fft: int) -> np.ndarray:
    """Hann-windowed DFT basis as Conv1d weights [2 * (n_fft // 2 + 1), 1, n_fft]: cos rows, then sin."""
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)[:, None]
    window = 0.5 - 0.5 * np.cos(2.0 * math.pi * n / n_fft)  # periodic Hann
    ang = 2.0 * math.pi * k * n / n_fft
    cos = np.cos(ang) * window
    sin = -np.sin(ang) * window
    return np.concatenate([cos, sin], axis=0)[:, None, :].astype(np.float32)


class LogMel(nn.Module):
    """[B, S] float audio -> [B, n_mels, N] log-mel, N = 1 + (S - n_fft) // hop (no padding)."""

    dft: torch.Tensor
    mel: torch.Tensor

    def __init__(self, arch: Arch, sample_rate: int) -> None:
        super().__init__()
        self.hop = arch.hop
        self.eps = arch.log_eps
        self.register_buffer("dft", torch.from_numpy(dft_kernels(arch.n_fft)))
        mel = mel_matrix(arch.n_fft, sample_rate, arch.n_mels, arch.f_min, arch.f_max)
        # power = re^2 + im^2, so mel @ power == [mel, mel] @ [re^2; im^2]: one 1x1 conv, no slicing.
        self.register_buffer("mel", torch.from_numpy(np.concatenate([mel, mel], axis=1))[:, :, None])

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = nn.functional.conv1d(audio.unsqueeze(1), self.dft, stride=self.hop)  # [B, 2F, N]
        power = spec * spec
        mel = nn.functional.conv1d(power, self.mel)  # [B, M, N]
        return torch.log(mel + self.eps)


def spec_augment(m: torch.Tensor, n_freq: int, max_f: int, n_time: int, max_t: int) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) on a standardised log-mel [B, M, N]: zero random bands of mel bins
    and of frames, independently per row. Training only; never part of the exported graph."""
    b, n_mels, n_frames = m.shape
    keep = torch.ones_like(m)
    for count, width, size, axis in ((n_freq, max_f, n_mels, 1), (n_time, max_t, n_frames, 2)):
        pos = torch.arange(size, device=m.device)
        for _ in range(count):
            w = torch.randint(0, width + 1, (b, 1), device=m.device)
            s = (torch.rand(b, 1, device=m.device) * (size - w + 1)).long()
            band = ((pos >= s) & (pos < s + w)).to(m.dtype)  # [B, size]
            keep = keep * (1 - band.unsqueeze(3 - axis))
    return m * keep


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DSBlock(nn.Sequential):
    """Depthwise-separable conv: depthwise 3x3 (strided) + pointwise 1x1, each BN + ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__(_conv_bn(cin, cin, 3, stride, groups=cin), _conv_bn(cin, cout, 1, 1))


def _cnn(cin: int, channels: tuple[int, ...], strides: tuple[int, ...], full: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [_conv_bn(cin, channels[0], 3, strides[0])]
    for i in range(1, len(channels)):
        if full:
            layers.append(_conv_bn(channels[i - 1], channels[i], 3, strides[i]))
        else:
            layers.append(DSBlock(channels[i - 1], channels[i], strides[i]))
    return nn.Sequential(*layers)


SPATIAL_FEATURES = ("intensity", "motion_mean", "motion_max")


def spatial_dim(arch: Arch) -> int:
    """Width of the raw spatial block at the end of the embedding (0 when the arch has none)."""
    return arch.spatial_grid * arch.spatial_grid * len(SPATIAL_FEATURES) if arch.spatial_grid else 0


def embedding_layout(spec: ModelSpec, arch: Arch) -> dict[str, Any]:
    """Where things sit in the `embedding` output: the learned (fused) part first, then, when the arch
    has one, a G x G grid of raw statistics per cell, cell-major ([G, G, F] flattened row by row)."""
    s = spatial_dim(arch)
    return {
        "fused": [0, spec.embedding_dim - s],
        "spatial": [spec.embedding_dim - s, spec.embedding_dim] if s else None,
        "grid": arch.spatial_grid,
        "features": list(SPATIAL_FEATURES) if s else [],
    }


class FusionNet(nn.Module):
    """Video branch (per-frame 2D CNN, pooled over time) + audio branch (2D CNN on log-mel), fused
    with the modality masks by an MLP into an embedding and per-class logits (independent sigmoids)."""

    rgb_scale: torch.Tensor
    rgb_shift: torch.Tensor

    def __init__(self, spec: ModelSpec, arch: Arch | None = None) -> None:
        super().__init__()
        if not spec.classes:
            raise ValueError("ModelSpec.classes is empty: the model needs at least one class")
        if spec.embedding_dim <= 0:
            raise ValueError("ModelSpec.embedding_dim must be > 0")
        self.spec = spec
        self.arch = arch = arch or Arch()
        if spec.samples < arch.n_fft:
            raise ValueError(f"window has {spec.samples} samples, fewer than n_fft={arch.n_fft}")
        a = torch.tensor([1.0 / (255.0 * s) for s in _RGB_STD]).view(1, 3, 1, 1)
        b = torch.tensor([-m / s for m, s in zip(_RGB_MEAN, _RGB_STD)]).view(1, 3, 1, 1)
        self.register_buffer("rgb_scale", a)
        self.register_buffer("rgb_shift", b)
        self.video_cnn = _cnn(6 if arch.video_diff else 3, arch.video_channels, arch.video_strides)
        self.logmel = LogMel(arch, spec.sample_rate)
        self.mel_norm = nn.BatchNorm1d(arch.n_mels)  # per-mel-bin standardisation, learned statistics
        self.audio_cnn = _cnn(1, arch.audio_channels, arch.audio_strides, full=arch.audio_full)
        cv, ca = arch.video_channels[-1], arch.audio_channels[-1]
        self.video_dim, self.audio_dim = 3 * cv, 2 * ca
        self.spatial_dim = spatial_dim(arch)
        if self.spatial_dim and (spec.height % arch.spatial_grid or spec.width % arch.spatial_grid):
            raise ValueError(f"frame size {spec.height}x{spec.width} is not divisible by spatial_grid={arch.spatial_grid}")
        fused_dim = spec.embedding_dim - self.spatial_dim
        if fused_dim <= 0:
            raise ValueError(f"embedding_dim={spec.embedding_dim} leaves no room beside the {self.spatial_dim}-d spatial block")
        # motion statistics of the grid (2 of the 3 features per cell) as extra fusion inputs
        self.motion_dim = 2 * arch.spatial_grid * arch.spatial_grid if (self.spatial_dim and arch.motion_to_fuse) else 0
        if self.motion_dim:
            self.motion_norm = nn.BatchNorm1d(self.motion_dim)
        self.fuse = nn.Sequential(
            nn.Linear(self.video_dim + self.audio_dim + self.motion_dim + 2, arch.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(arch.dropout),
            nn.Linear(arch.hidden, fused_dim),
            nn.ReLU(inplace=True),
        )
        # Evaluation speed-up (training code only): skip a branch for rows whose mask is 0. Never set
        # when exporting: the exported graph always runs both branches with static shapes.
        self.skip_absent = False
        self.head = nn.Sequential(nn.Dropout(arch.dropout), nn.Linear(fused_dim, len(spec.classes)))

    # -- branches -----------------------------------------------------------------------------------
    def video_embed(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, H, W, 3] -> [B, 3C]: mean, max and mean |frame-to-frame change| over time."""
        t, h, w = self.spec.frames, self.spec.height, self.spec.width
        x = video.reshape(-1, h, w, 3).permute(0, 3, 1, 2).to(torch.float32)
        x = x * self.rgb_scale + self.rgb_shift  # [B*T, 3, H, W]
        if self.arch.video_diff:
            xt = x.reshape(-1, t, 3, h, w)
            if t > 1:  # change since the previous frame; the first frame gets the second's change
                d = xt[:, 1:] - xt[:, :-1]
                d = torch.cat([d[:, :1], d], dim=1)
            else:
                d = torch.zeros_like(xt)
            x = torch.cat([xt, d], dim=2).reshape(-1, 6, h, w)
        f = self.video_cnn(x).mean(dim=(2, 3))  # [B*T, C]
        f = f.reshape(-1, t, self.arch.video_channels[-1])
        parts = [f.mean(dim=1), f.amax(dim=1)]
        if t > 1:
            parts.append((f[:, 1:] - f[:, :-1]).abs().mean(dim=1))  # motion, at feature level
        else:
            parts.append(torch.zeros_like(parts[0]))
        return torch.cat(parts, dim=1)

    def spatial_stats(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, H, W, 3] -> [B, G*G*3]: per cell of a G x G grid, the mean grey level, and the
        mean and max over time of the mean |frame-to-frame change| (grey, in [0, 1]). Fixed, not learnt:
        the per-camera normality model compares these with the camera's own normal footage."""
        t, h, w, g = self.spec.frames, self.spec.height, self.spec.width, self.arch.spatial_grid
        x = video.to(torch.float32).mean(dim=4) * (1.0 / 255.0)  # [B, T, H, W] grey
        cells = x.reshape(-1, t, g, h // g, g, w // g).mean(dim=(3, 5))  # [B, T, G, G]
        intensity = cells.mean(dim=1)
        if t > 1:
            d = (x[:, 1:] - x[:, :-1]).abs().reshape(-1, t - 1, g, h // g, g, w // g).mean(dim=(3, 5))
            m_mean, m_max = d.mean(dim=1), d.amax(dim=1)
        else:
            m_mean = m_max = torch.zeros_like(intensity)
        return torch.stack([intensity, m_mean, m_max], dim=3).reshape(-1, g * g * 3)

    def audio_embed(self, audio: torch.Tensor) -> torch.Tensor:
        """float32 [B, S] -> [B, 2C]: mean and max over time of the frequency-averaged feature map."""
        m = self.mel_norm(self.logmel(audio))  # [B, M, N]
        if self.training and any(self.arch.spec_augment):
            m = spec_augment(m, *self.arch.spec_augment)
        m = m.unsqueeze(1)  # [B, 1, M, N]
        f = self.audio_cnn(m).mean(dim=2)  # [B, C, N']
        return torch.cat([f.mean(dim=2), f.amax(dim=2)], dim=1)

    def _masked_branch(self, fn, x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
        if self.training or self.skip_absent:
            # Train only on rows that carry the modality, so BatchNorm statistics never see the zero
            # placeholders of absent inputs (inference always runs the full, static-shape path).
            out = x.new_zeros((x.shape[0], dim), dtype=torch.float32)
            idx = torch.nonzero(mask > 0, as_tuple=False).flatten()
            if idx.numel() > 0:
                out = out.index_copy(0, idx, fn(x.index_select(0, idx)))
            return out
        return fn(x)

    def forward(
        self,
        video: torch.Tensor,
        audio: torch.Tensor,
        video_mask: torch.Tensor,
        audio_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        vm = video_mask.reshape(-1, 1)
        am = audio_mask.reshape(-1, 1)
        v = self._masked_branch(self.video_embed, video, video_mask, self.video_dim) * vm
        a = self._masked_branch(self.audio_embed, audio, audio_mask, self.audio_dim) * am
        parts = [v, a]
        sp = None
        if self.spatial_dim:
            sp = self.spatial_stats(video) * vm
            if self.motion_dim:
                g2 = self.arch.spatial_grid ** 2
                motion = torch.log(sp.reshape(-1, g2, 3)[:, :, 1:].reshape(-1, 2 * g2) + 1e-3)
                parts.append(self._masked_branch(self.motion_norm, motion, video_mask, self.motion_dim) * vm)
        emb = self.fuse(torch.cat([*parts, vm, am], dim=1))
        logits = self.head(emb)
        if sp is not None:
            emb = torch.cat([emb, sp], dim=1)
        return logits, emb


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
    """Multiply-accumulates of one window (batch 1): Conv, Conv1d and Linear layers, counted by hooks."""
    macs = 0

    def conv_hook(mod: nn.Conv2d, inp: Any, out: torch.Tensor) -> None:
        nonlocal macs
        w = mod.weight
        macs += out.numel() * (int(w.shape[1]) * int(np.prod(w.shape[2:])))

    def lin_hook(mod: nn.Linear, inp: Any, out: torch.Tensor) -> None:
        nonlocal macs
        macs += out.numel() * int(mod.in_features)

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*example_inputs(spec, batch=1))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    # the two fixed-basis Conv1d of the log-mel front end (functional calls, so no hooks)
    arch = model.arch
    n = 1 + (spec.samples - arch.n_fft) // arch.hop
    n_bins = arch.n_fft // 2 + 1
    macs += 2 * n_bins * arch.n_fft * n + arch.n_mels * 2 * n_bins * n
    return int(macs)


from engines.eval import LAYOUT_KEY  # noqa: E402 - the key lives beside its torch-free reader


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


def read_layout(onnx_path) -> dict[str, Any] | None:
    """See engines.eval.read_layout (torch-free)."""
    from engines.eval import read_layout as _read

    return _read(onnx_path)


def set_static_output_dims(onnx_path, spec: ModelSpec) -> None:
    """Write the class and embedding widths into the ONNX outputs' shapes (the exporter leaves the
    embedding's width symbolic when it is a Concat); only the batch axis stays dynamic, as TensorRT
    engines and the runtimes' shape checks expect."""
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

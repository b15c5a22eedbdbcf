"""Frozen backbone features of decoded windows, computed once and cached as .npz.

The heads of the fusion model train on these (engines/model.py `FusionNet.features`): the backbones
never change during training, so each window goes through them once, not once per step.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from engines.spec import ModelSpec
from streamer.train.data import CACHE_DIR, WindowSet

log = logging.getLogger(__name__)

def feature_model(spec: ModelSpec, arch=None):
    """A FusionNet with one placeholder class: only its frozen `features` are used."""
    from dataclasses import replace

    from engines.model import FusionNet

    return FusionNet(replace(spec, classes=("_",), thresholds={}, modality={}, audioset={}), arch).eval()


def _fingerprint(arch) -> str:
    from engines.backbones import BACKBONE_DIR

    h = hashlib.sha256((BACKBONE_DIR / "SHA256SUMS").read_bytes())
    h.update(repr(arch.to_dict()).encode())
    for f in ("model.py", "people.py", "pose.py"):
        h.update((Path(__file__).resolve().parents[2] / "engines" / f).read_bytes())
    return h.hexdigest()[:12]


def compute(model, video: np.ndarray | None, audio: np.ndarray | None, batch: int = 32,
            desc: str = "features") -> dict[str, np.ndarray]:
    """Features of windows: `audio` [N, S] -> audio, audioset, cues; `video` [N, T, H, W, 3] -> people
    (and the poses behind them)."""
    import torch
    from tqdm import tqdm

    out: dict[str, list[np.ndarray]] = {}
    n = len(audio) if audio is not None else len(video) if video is not None else 0
    with torch.inference_mode():
        for s in tqdm(range(0, n, batch), desc=desc, unit="batch", leave=False, disable=n <= batch):
            if audio is not None:
                for k, x in model.audio_features(torch.from_numpy(audio[s : s + batch])).items():
                    out.setdefault(k, []).append(x.numpy())
            if video is not None:
                poses = model.poses(torch.from_numpy(video[s : s + batch]))
                out.setdefault("poses", []).append(poses.numpy())
                out.setdefault("people", []).append(model.people(poses).numpy())
    return {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}


def dataset_features(ws: WindowSet, spec: ModelSpec, arch=None, cache_dir: Path = CACHE_DIR,
                     key: str = "") -> dict[str, np.ndarray]:
    """Per-window features of a decoded dataset: audio keys for every window (zeros where it has no
    audio), video keys for every window (zeros where it has no video). Cached by `key` + fingerprint."""
    from engines.model import Arch

    arch = arch or Arch()
    cp = cache_dir / f"features-{ws.dataset}-{key}-{_fingerprint(arch)}.npz"
    if cp.is_file():
        with np.load(cp) as z:
            return {k: z[k] for k in z.files}
    model = feature_model(spec, arch)
    n = len(ws)
    feats: dict[str, np.ndarray] = {}
    has_a = np.flatnonzero(ws.audio_mask > 0)
    if len(has_a):
        fa = compute(model, None, ws.audio[has_a], desc=f"audio {ws.dataset}")
        for k, x in fa.items():
            feats[k] = np.zeros((n, *x.shape[1:]), np.float32)
            feats[k][has_a] = x
    has_v = np.flatnonzero(ws.video_mask > 0)
    if len(has_v):
        fv = compute(model, ws.video[ws.video_row[has_v]], None, desc=f"video {ws.dataset}")
        for k, x in fv.items():
            feats[k] = np.zeros((n, *x.shape[1:]), np.float32)
            feats[k][has_v] = x
    from engines.model import group_dims
    from engines.pose import PEOPLE, POSE_WIDTH

    shapes = {**{g: (d,) for g, d in group_dims(arch).items()}, "audioset": (521,),
              "poses": (len(arch.pose_frames), PEOPLE, POSE_WIDTH)}
    for k, shape in shapes.items():  # a dataset without audio (or video) still has every key
        feats.setdefault(k, np.zeros((n, *shape), np.float32))
    cp.parent.mkdir(parents=True, exist_ok=True)
    tmp = cp.with_name(cp.stem + ".tmp.npz")
    np.savez(tmp, **feats)
    tmp.replace(cp)
    log.info("%s: features of %d windows cached at %s", ws.dataset, n, cp)
    return feats

"""The default recipe's data: the labelled folders of ../shared/data as feature tables.

Roles of each dataset (which targets its windows define):
- urbansound8k: its 10 classes (one-hot), and a negative for glass_break;
- glass_break: glass_break, and a negative for the urbansound8k classes (`background` is ambience);
- fight: fight (video), and a negative for every audio class (CCTV audio: streets, rooms, crowds);
- ucsd_ped2 (normal training footage, no audio): a negative for fight.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.spec import ModelSpec
from streamer.train.data import LABEL_MAP, URBAN_CLASSES, WindowSet, cache_path, decode_dataset
from streamer.train.features import dataset_features
from streamer.train.fit import Table

TRAINED = URBAN_CLASSES + ("glass_break", "fight")
MODALITY = {**{c: "audio" for c in URBAN_CLASSES}, "glass_break": "audio", "fight": "video"}
NEGATIVE_FOR = {
    "urbansound8k": ("glass_break",),
    "glass_break": URBAN_CLASSES,
    "fight": URBAN_CLASSES + ("glass_break",),
    "ucsd_ped2": ("fight",),
}
POSITIVE_CLASSES = {"urbansound8k": URBAN_CLASSES, "glass_break": ("glass_break",), "fight": ("fight",),
                    "ucsd_ped2": ()}


def load(data_dir: Path, dataset: str, spec: ModelSpec, arch=None, seed: int = 0,
         workers: int = 2) -> tuple[WindowSet, dict[str, np.ndarray]]:
    ws = decode_dataset(data_dir, dataset, spec, workers=workers, seed=seed)
    key = cache_path(data_dir, dataset, spec).stem
    return ws, dataset_features(ws, spec, arch, key=key)


def table(ws: WindowSet, feats: dict[str, np.ndarray], classes: tuple[str, ...], clip_offset: int = 0) -> Table:
    """Every window of a dataset as a Table over `classes` (its roles from POSITIVE_CLASSES/NEGATIVE_FOR)."""
    idx = {c: i for i, c in enumerate(classes)}
    n, k = len(ws), len(classes)
    y = ws.targets(classes) if POSITIVE_CLASSES[ws.dataset] else np.zeros((n, k), np.float32)
    defined = np.zeros((n, k), np.float32)
    for c in (*POSITIVE_CLASSES[ws.dataset], *NEGATIVE_FOR[ws.dataset]):
        if c in idx:
            defined[:, idx[c]] = 1.0
    return Table(feats, ws.audio_mask.astype(np.float32), ws.video_mask.astype(np.float32), y.astype(np.float32),
                 defined, ws.clip.astype(np.int64) + clip_offset, np.ones(n, np.float32))


def label_of(ws: WindowSet) -> list[str]:
    """The class name (or "" for a negative) of each clip of `ws`."""
    return [LABEL_MAP[c.dataset][c.label] or "" for c in ws.clips]


def mix_backgrounds(audio: np.ndarray, backgrounds: np.ndarray, rng: np.random.Generator,
                    snr_db: tuple[float, float] = (0.0, 20.0), gain_db: tuple[float, float] = (-12.0, 6.0)) -> np.ndarray:
    """Each window mixed with a random background window at a random SNR, then a random gain, clipped
    to [-1, 1]: the same event heard in another place, nearer or further."""
    def rms(x: np.ndarray) -> np.ndarray:
        return np.sqrt((x * x).mean(axis=-1, keepdims=True) + 1e-12)

    bg = backgrounds[rng.integers(0, len(backgrounds), len(audio))]
    snr = rng.uniform(*snr_db, (len(audio), 1))
    out = audio + bg * rms(audio) / rms(bg) / 10 ** (snr / 20)
    out *= 10 ** (rng.uniform(*gain_db, (len(audio), 1)) / 20)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def augmented(t: Table, audio: np.ndarray, rows: np.ndarray, backgrounds: np.ndarray, spec: ModelSpec,
              base_offset: int, clip_offset: int, seed: int = 0) -> Table:
    """One background-mixed copy of the audio windows `rows` of table `t` (whose raw audio is `audio`),
    as new clips (`clip_offset` + the original's local id) in the original's group (out-of-fold
    folds keep a copy with its original)."""
    from streamer.train.features import compute, feature_model

    mixed = mix_backgrounds(audio[rows], backgrounds, np.random.default_rng(seed))
    fa = compute(feature_model(spec), None, mixed, desc="augmented audio")
    sub = t.take(rows)
    feats = {k: np.zeros_like(v) for k, v in sub.feats.items()}
    feats.update(fa)
    local = sub.clip - base_offset
    return Table(feats, np.ones(len(rows), np.float32), np.zeros(len(rows), np.float32), sub.y, sub.defined,
                 clip_offset + local, sub.weight, sub.clip)

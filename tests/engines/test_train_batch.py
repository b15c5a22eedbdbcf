"""Training batches: the per-dataset mix, and the cheap audio-only steps (no video, none paired)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.train.data import CLASSES, Clip, WindowSet
from engines.train.loop import AUDIO_MIX, BATCH_MIX, Sampler, Split, TrainConfig, _batch

T, H, W, S = 2, 8, 8, 1600


def _set(dataset: str, labels: list[str], video: bool) -> Split:
    clips = [Clip(dataset, f"{i}.x", lab, f"s{i}", "train") for i, lab in enumerate(labels)]
    n = len(clips)
    rng = np.random.default_rng(0)
    ws = WindowSet(dataset, clips, np.arange(n, dtype=np.int32), np.zeros(n, np.float32),
                   (rng.standard_normal((n, S)) * 0.1).astype(np.float32),
                   np.full(n, 1.0 if video else 0.0, np.float32), np.ones(n, np.float32),
                   np.arange(n, dtype=np.int32) if video else -np.ones(n, np.int32),
                   rng.integers(0, 255, (n if video else 0, T, H, W, 3), dtype=np.uint8))
    return Split(ws, np.arange(n), ws.targets(CLASSES))


def _splits() -> dict[str, Split]:
    return {"urbansound8k": _set("urbansound8k", ["siren", "dog_bark", "gun_shot"], False),
            "glass_break": _set("glass_break", ["glass_break", "background"], False),
            "fight": _set("fight", ["fight", "no_fight"], True)}


def _make(mix, pair_p: float = 1.0):
    splits = _splits()
    samplers = {d: Sampler(len(sp.idx), np.random.default_rng(i)) for i, (d, sp) in enumerate(splits.items())}
    cfg = TrainConfig(data_dir=Path("."), out_dir=Path("."), pair_video_p=pair_p, background_p=0.0, reverb_p=0.0)
    bank = [np.zeros((T, H, W, 3), np.uint8)]
    return _batch(splits, samplers, bank, [], cfg, np.random.default_rng(0), (T, H, W, 3), mix)


def test_default_mix_has_video_and_pairs_audio_clips_with_video():
    v, a, vm, am, y = _make(None, pair_p=1.0)
    n = sum(k for d, k in BATCH_MIX.items() if d != "ucsd_ped2")
    assert len(v) == len(a) == len(y) == n
    assert vm.all()  # every audio-only window was paired with a video (p = 1)


def test_audio_only_steps_carry_no_video():
    v, a, vm, am, y = _make(dict(AUDIO_MIX), pair_p=1.0)
    assert len(y) == sum(AUDIO_MIX.values())
    assert not vm.any() and not v.any()
    assert y[:, CLASSES.index("fight")].sum() == 0
    assert am.all() and np.isfinite(a).all()

"""Training augmentations: SNR mixing, reverberation, video transforms, thresholds for a false-alarm rate."""

from __future__ import annotations

import numpy as np
import pytest

from engines.train.augment import augment_audio, augment_video, mix_at_snr, reverberate, rms, synthetic_rir
from engines.train.metrics import false_alarm_rate, far_threshold


def test_mix_at_snr_sets_the_ratio():
    rng = np.random.default_rng(0)
    ev = rng.normal(0, 0.1, 16000).astype(np.float32)
    bg = rng.normal(0, 0.3, 16000).astype(np.float32)
    out = mix_at_snr(ev, bg, 10.0)
    added = out - ev
    assert 20 * np.log10(rms(ev) / rms(added)) == pytest.approx(10.0, abs=1e-3)
    assert np.array_equal(mix_at_snr(np.zeros(100, np.float32), bg[:100], 0.0), np.zeros(100))


def test_reverb_keeps_length_and_level_and_spreads_a_click():
    rng = np.random.default_rng(1)
    rir = synthetic_rir(rng, 0.5)
    assert rir[0] == 1.0 and len(rir) == 8000
    click = np.zeros(16000, np.float32)
    click[100] = 1.0
    wet = reverberate(click, rir)
    assert wet.shape == click.shape and rms(wet) == pytest.approx(rms(click), rel=1e-3)
    assert np.count_nonzero(np.abs(wet[2000:]) > 1e-4) > 1000  # a tail after the click


def test_augment_audio_is_seeded_and_bounded():
    a = np.random.default_rng(2).uniform(-1, 1, 16000).astype(np.float32)
    bgs = [np.random.default_rng(3).normal(0, 0.1, 16000).astype(np.float32)]
    x = augment_audio(a, np.random.default_rng(5), bgs)
    y = augment_audio(a, np.random.default_rng(5), bgs)
    assert np.array_equal(x, y) and x.dtype == np.float32 and np.abs(x).max() <= 1.0
    assert not np.array_equal(a, augment_audio(a, np.random.default_rng(6), bgs))


def test_augment_video_keeps_shape_and_dtype():
    v = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    for seed in range(10):
        out = augment_video(v, np.random.default_rng(seed), p_blur=0.5, p_jpeg=0.5)
        assert out.shape == v.shape and out.dtype == np.uint8 and out.flags.c_contiguous


def test_far_threshold():
    y = np.r_[np.zeros(100), np.ones(10)]
    s = np.r_[np.linspace(0, 0.9, 100), np.full(10, 0.95)]
    t = far_threshold(y, s, 0.02)
    assert false_alarm_rate(y, s, t) == 0.02
    assert s[98] < t <= s[99] or (s[97] < t <= s[98])
    t0 = far_threshold(y, s, 0.0)
    assert false_alarm_rate(y, s, t0) == 0.0 and t0 <= 0.99
    assert far_threshold(np.ones(3), np.ones(3), 0.1) == 0.05  # no negatives: the floor

from __future__ import annotations

import numpy as np
import pytest

from engines.train.metrics import average_precision, best_f1_threshold, prf, roc_auc


def test_average_precision_known_values():
    y = np.array([1, 0, 1, 0])
    assert average_precision(y, np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(y, np.array([0.9, 0.1, 0.8, 0.2])) == pytest.approx(1.0)
    assert np.isnan(average_precision(np.zeros(3), np.ones(3)))


def test_roc_auc_known_values():
    y = np.array([1, 0, 1, 0])
    assert roc_auc(y, np.array([0.9, 0.1, 0.8, 0.2])) == 1.0
    assert roc_auc(y, np.array([0.1, 0.9, 0.2, 0.8])) == 0.0
    assert roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5


def test_threshold_choice():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(50), np.zeros(50)]
    s = np.r_[rng.uniform(0.6, 1.0, 50), rng.uniform(0.0, 0.4, 50)]
    t, how = best_f1_threshold(y, s)
    assert 0.4 <= t <= 0.6 + 1e-9 and how == "max F1"
    assert prf(y, s, t)[2] == 1.0
    t, how = best_f1_threshold(np.r_[1, 1, np.zeros(20)], rng.random(22))
    assert t == 0.5 and how.startswith("default")

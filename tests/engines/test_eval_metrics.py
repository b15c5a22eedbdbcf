"""The clip-level classification report and the frame mapping of the anomaly evaluation, on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.evaluate import EvalError, classify_report, frame_scores

CLASSES = ("siren", "dog_bark", "fight", "glass_break")
THR = {"siren": 0.5, "dog_bark": 0.5, "fight": 0.6, "glass_break": 0.7}


def test_argmax_among_present_labels_only():
    # glass_break scores highest on clip 0 but is not a label of this folder: siren/dog_bark decide
    labels = ["siren", "dog_bark", "siren", "dog_bark"]
    s = np.array([[0.6, 0.2, 0.0, 0.99], [0.1, 0.3, 0.0, 0.0], [0.2, 0.4, 0.0, 0.0], [0.3, 0.8, 0.0, 0.0]])
    r = classify_report(labels, s, CLASSES, THR)
    assert r["n"] == 4 and r["accuracy"] == 0.75  # clip 2 is wrong; no negatives, so thresholds play no part
    assert set(r["per_class"]) == {"siren", "dog_bark"}
    assert r["per_class"]["siren"] == {"ap": pytest.approx(5 / 6, abs=1e-4), "precision": 1.0, "recall": 0.5, "n": 2}
    assert r["per_class"]["dog_bark"]["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert r["per_class"]["dog_bark"]["recall"] == 1.0
    f1_s, f1_d = 2 * 0.5 / 1.5, 2 * (2 / 3) / (5 / 3)
    assert r["macro_f1"] == pytest.approx((f1_s + f1_d) / 2, abs=1e-4)


def test_negative_wins_when_no_positive_passes_its_threshold():
    labels = ["fight", "fight", "no_fight", "no_fight"]
    s = np.zeros((4, 4))
    s[:, 2] = [0.9, 0.55, 0.3, 0.65]  # fight threshold 0.6: clip 1 missed, clip 3 a false alarm
    r = classify_report(labels, s, CLASSES, THR, negatives=["no_fight"])
    assert r["accuracy"] == 0.5
    assert r["per_class"]["fight"] == {"ap": pytest.approx(5 / 6, abs=1e-4), "precision": 0.5, "recall": 0.5, "n": 2}
    neg = r["per_class"]["no_fight"]
    assert neg["n"] == 2 and neg["precision"] == 0.5 and neg["recall"] == 0.5
    assert neg["ap"] == pytest.approx(5 / 6, abs=1e-4)  # scored by 1 - the fight score


def test_unknown_labels_and_no_class_are_errors():
    s = np.zeros((2, 4))
    with pytest.raises(EvalError, match="neither model classes"):
        classify_report(["siren", "cat"], s, CLASSES, THR)
    with pytest.raises(EvalError, match="nothing to score"):
        classify_report(["none", "none"], s, CLASSES, THR, negatives=["none"])


def test_frame_scores_mean_or_max_of_covering_windows():
    start = np.array([0.0, 0.5, 1.0])
    end = start + 1.0
    s = np.array([1.0, 3.0, 5.0])
    t = np.array([0.1, 0.6, 1.2, 1.9, 2.5])
    assert frame_scores(t, start, end, s).tolist() == [1.0, 2.0, 4.0, 5.0, 5.0]  # 2.5: nearest window
    assert frame_scores(t, start, end, s, agg="max").tolist() == [1.0, 3.0, 5.0, 5.0, 5.0]

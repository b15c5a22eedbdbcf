"""Per-camera normality on synthetic embeddings: fit, score, calibration, files, errors."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.detect.normality import NormalityError, NormalityModel, camera_path

G, FEATS = 4, ("intensity", "motion_mean", "motion_max")
FUSED = 8
LAYOUT = {"fused": [0, FUSED], "spatial": [FUSED, FUSED + G * G * 3], "grid": G, "features": list(FEATS)}


def normal_rows(n: int, seed: int) -> np.ndarray:
    """A camera's normal windows: every cell has its own typical grey level, motion is small."""
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(123).uniform(0.2, 0.8, G * G)  # the scene, fixed
    cells = np.zeros((n, G * G, 3), np.float32)
    cells[:, :, 0] = base + rng.normal(0, 0.02, (n, G * G))
    cells[:, :, 1] = np.abs(rng.normal(0.01, 0.005, (n, G * G)))
    cells[:, :, 2] = cells[:, :, 1] * 2
    fused = rng.normal(0, 1, (n, FUSED)).astype(np.float32)
    return np.concatenate([fused, cells.reshape(n, -1)], axis=1)


def test_fit_scores_an_odd_cell_above_threshold_and_normal_below():
    nm = NormalityModel.fit(normal_rows(600, 0), layout=LAYOUT, camera="cam1", far=0.02)
    fresh = normal_rows(400, 1)
    rate = float((nm.score(fresh) >= nm.threshold).mean())
    assert rate <= 0.06  # calibrated to 2 % (with sampling slack)
    odd = fresh[:50].copy()
    cell = FUSED + (2 * G + 1) * 3  # cell (2, 1): something fast and bright
    odd[:, cell] += 0.3
    odd[:, cell + 1] += 0.1
    assert (nm.score(odd) >= nm.threshold).all()
    assert nm.where(odd[:3]) == [(2, 1)] * 3
    # the learned (fused) part is ignored when a spatial block exists: it does not move the score
    shuffled = fresh[:20].copy()
    shuffled[:, :FUSED] = 100.0
    assert np.allclose(nm.score(shuffled), nm.score(fresh[:20]))


def test_false_alarm_rate_controls_the_threshold():
    rows = normal_rows(500, 2)
    strict = NormalityModel.fit(rows, layout=LAYOUT, far=0.001)
    loose = NormalityModel.fit(rows, layout=LAYOUT, far=0.2)
    assert strict.threshold > loose.threshold


def test_without_layout_the_whole_embedding_is_one_vector():
    rng = np.random.default_rng(0)
    rows = rng.normal(0, 1, (300, 6)).astype(np.float32)
    nm = NormalityModel.fit(rows, layout=None, far=0.05)
    assert nm.score(rows[:5]).shape == (5,)
    far = rng.normal(0, 1, (20, 6)).astype(np.float32) + 8.0
    assert (nm.score(far) > nm.threshold).all()
    assert nm.where(rows[:2]) == [None, None]


def test_list_of_clips_and_save_load_round_trip(tmp_path):
    clips = [normal_rows(120, s) for s in range(3)]
    nm = NormalityModel.fit(clips, layout=LAYOUT, camera="gate/2", far=0.01)
    assert nm.windows == 360
    p = nm.save(camera_path(tmp_path, "gate/2"))
    assert p.name == "gate_2.npz" and p.is_file()
    back = NormalityModel.load(p)
    assert back.camera == "gate/2" and back.threshold == pytest.approx(nm.threshold)
    q = normal_rows(10, 9)
    assert np.allclose(back.score(q), nm.score(q))


def test_errors(tmp_path):
    with pytest.raises(NormalityError, match="too few"):
        NormalityModel.fit(normal_rows(4, 0), layout=LAYOUT)
    with pytest.raises(NormalityError, match="far"):
        NormalityModel.fit(normal_rows(100, 0), layout=LAYOUT, far=0.0)
    nm = NormalityModel.fit(normal_rows(100, 0), layout=LAYOUT)
    with pytest.raises(NormalityError, match="layout expects"):
        nm.score(np.zeros((2, 10), np.float32))
    bad = tmp_path / "x.npz"
    np.savez(bad, meta=np.array('{"format": "other"}'), mean=np.zeros(1), scale=np.ones(1), bank=np.zeros(1))
    with pytest.raises(NormalityError, match="not a normality model"):
        NormalityModel.load(bad)


def test_learning_period_fits_once_enough_windows_arrived(tmp_path):
    from streamer.detect.normality import NormalityLearner

    learner = NormalityLearner("cam", LAYOUT, windows=100, path=tmp_path / "cam.npz", far=0.05)
    rows = normal_rows(130, 4)
    assert learner.add(rows[:60]) is None and learner.progress == 0.6
    model = learner.add(rows[60:110])
    assert model is not None and model.windows == 110 and (tmp_path / "cam.npz").is_file()
    assert learner.add(rows[110:]) is model
    with pytest.raises(NormalityError):
        NormalityLearner("cam", LAYOUT, windows=3)

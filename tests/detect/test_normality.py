"""Per-camera normality on object rows: fit, score, calibration, files, errors (rows as the ingest makes
them: frame time, slot, then streamer.detect.objects.FEATURES)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamer.detect.normality import (
    FORMAT,
    NormalityError,
    NormalityLearner,
    NormalityModel,
    camera_path,
)
from streamer.detect.objects import FEATURES

FRAMES = 8


def walker(rng: np.random.Generator, n: int, speed: float = 0.06, y: float = 0.6) -> np.ndarray:
    """n objects like people walking left or right along a band: x, y, w, h, vx, vy, speed, p90, fill."""
    vx = speed * rng.choice([-1.0, 1.0], n) + rng.normal(0, 0.008, n)
    return np.c_[rng.uniform(0.05, 0.95, n), y + rng.normal(0, 0.03, n), rng.normal(0.06, 0.006, n),
                 rng.normal(0.13, 0.01, n), vx, rng.normal(0, 0.005, n), np.abs(vx), np.abs(vx) * 1.3,
                 rng.normal(0.5, 0.05, n)]


def windows(n: int, seed: int, per_frame: int = 2, **kw) -> list[np.ndarray]:
    """n consecutive windows (hop = half a window) of frames with `per_frame` objects each."""
    rng = np.random.default_rng(seed)
    frames = [(i * 0.125, walker(rng, per_frame, **kw)) for i in range(n * FRAMES // 2 + FRAMES)]
    out = []
    for w in range(n):
        rows = [np.c_[np.full(len(o), t), np.full(len(o), s), o]
                for s, (t, o) in enumerate(frames[w * FRAMES // 2 : w * FRAMES // 2 + FRAMES])]
        out.append(np.concatenate(rows))
    return out


def with_object(win: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """A window with one more object in each of its frames."""
    extra = [np.r_[t, s, obj] for t, s in np.unique(win[:, :2], axis=0)]
    return np.concatenate([win, np.array(extra)])


def test_normal_windows_score_below_and_fast_or_misplaced_objects_above():
    nm = NormalityModel.fit([windows(300, 0)], FRAMES, camera="cam1", far=0.02)
    fresh = windows(200, 1)
    rate = float((nm.score(fresh) >= nm.threshold).mean())
    assert rate <= 0.06  # calibrated to 2 % (with sampling slack)
    rng = np.random.default_rng(2)
    cyclist = walker(rng, 1, speed=0.3)[0]  # five times walking pace
    lawn = walker(rng, 1, y=0.15)[0]  # walking pace, where nobody walks
    for obj in (cyclist, lawn):
        odd = [with_object(w, obj) for w in fresh[:20]]
        assert (nm.score(odd) >= nm.threshold).all()
    score, cell = nm.score_window(with_object(fresh[0], lawn))
    assert cell == (int(lawn[1] * 7), int(lawn[0] * 7))
    assert nm.score_window(np.zeros((0, 2 + len(FEATURES)))) == (0.0, None)  # nothing moves


def test_false_alarm_rate_controls_the_threshold():
    wins = [windows(200, 2)]
    assert NormalityModel.fit(wins, FRAMES, far=0.001).threshold > NormalityModel.fit(wins, FRAMES, far=0.2).threshold


def test_save_load_and_an_older_file_is_refused_with_how_to_relearn(tmp_path):
    nm = NormalityModel.fit([windows(60, 3)], FRAMES, camera="cam1")
    path = nm.save(camera_path(tmp_path, "cam/1"))
    assert path.name == "cam_1.npz"
    back = NormalityModel.load(path)
    w = windows(3, 4)
    assert np.allclose(back.score(w), nm.score(w)) and back.threshold == nm.threshold and back.frames == FRAMES
    old = tmp_path / "old.npz"
    meta = {"format": "streamer.normality/1", "camera": "cam1", "layout": None, "features": [], "threshold": 1.0,
            "far": 0.01, "windows": 40}
    np.savez(old, meta=np.array(json.dumps(meta)), mean=np.zeros((1, 8)), scale=np.ones((1, 8)), bank=np.zeros((5, 1, 8)))
    with pytest.raises(NormalityError) as e:
        NormalityModel.load(old)
    assert "older kind" in str(e.value) and "streamer learn-normal --camera" in str(e.value)
    assert "\n" not in str(e.value) and FORMAT != "streamer.normality/1"


def test_errors():
    with pytest.raises(NormalityError, match="too few"):
        NormalityModel.fit([windows(5, 0)], FRAMES)
    empty = [np.zeros((0, 2 + len(FEATURES)))] * 40
    with pytest.raises(NormalityError, match="moving objects"):
        NormalityModel.fit([empty], FRAMES)
    with pytest.raises(NormalityError, match="values, expected"):
        NormalityModel.fit([[np.zeros((3, 4))] * 40], FRAMES)
    with pytest.raises(NormalityError, match="far"):
        NormalityModel.fit([windows(40, 0)], FRAMES, far=1.0)


def test_learner_fits_once_it_has_its_windows(tmp_path):
    path = tmp_path / "cam.npz"
    learner = NormalityLearner("cam", FRAMES, windows=40, path=path)
    wins = windows(40, 5)
    for w in wins[:-1]:
        assert learner.add(w) is None
    assert learner.progress == pytest.approx(39 / 40)
    nm = learner.add(wins[-1])
    assert nm is not None and nm.windows == 40 and path.exists() and learner.progress == 1.0
    with pytest.raises(NormalityError):
        NormalityLearner("cam", FRAMES, windows=5)
